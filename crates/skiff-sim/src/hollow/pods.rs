//! One pod watch for all hollow nodes: pods bound to one of them are
//! reported Running and Ready (status computed by the kubelet's own status
//! module, podIP from the node's podCIDR) unless the nodes are bare
//! (`kubelets: false`), and pods being deleted are removed at once with
//! grace 0, as kwok does.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use skiff_client::Lean;
use skiff_kubelet::status::{self, Exited, RuntimeContainer, RuntimePod, RuntimeState};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::node::now;
use super::{Shared, Stats, ignore_not_found};

/// Addresses handed out on one node: bit `n` = offset `n` in its podCIDR.
#[derive(Debug, Clone, Default)]
struct Addresses([u64; 4]);

impl Addresses {
    /// The lowest free offset from 2 (0 is the network, 1 the gateway).
    fn allocate(&mut self, size: u32) -> Option<u32> {
        let limit = size.min(256).saturating_sub(1);
        let free = (2..limit).find(|&n| self.0[(n / 64) as usize] & (1 << (n % 64)) == 0)?;
        self.0[(free / 64) as usize] |= 1 << (free % 64);
        Some(free)
    }

    fn release(&mut self, n: u32) {
        if n < 256 {
            self.0[(n / 64) as usize] &= !(1 << (n % 64));
        }
    }
}

#[derive(Debug)]
struct Entry {
    node: usize,
    offset: Option<u32>,
    /// A request for this pod is in flight.
    busy: bool,
    /// The newest version seen while busy.
    pending: Option<Pod>,
}

enum Done {
    Started(String),
    Deleted(String),
    Failed(String),
}

fn ready_and_running(pod: &Pod) -> bool {
    let Some(s) = pod.status.as_ref() else {
        return false;
    };
    s.phase.as_deref() == Some("Running")
        && s.pod_ip.is_some()
        && s.conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// What a hollow runtime reports for a pod: init containers completed,
/// sidecars and containers running and passing their probes.
fn runtime_view(spec: &PodSpec, pod_ip: String) -> RuntimePod {
    let started_at = now();
    let container =
        |c: &k8s_openapi::api::core::v1::Container, state: RuntimeState| RuntimeContainer {
            name: c.name.clone(),
            container_id: format!("hollow://{}", c.name),
            image: c.image.clone().unwrap_or_default(),
            image_id: String::new(),
            state,
            restart_count: 0,
            last_termination: None,
            startup_probe: Some(true),
            readiness_probe: Some(true),
        };
    let running = RuntimeState::Running {
        started_at: started_at.clone(),
    };
    let mut containers: Vec<RuntimeContainer> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| {
            if c.restart_policy.as_deref() == Some("Always") {
                container(c, running.clone())
            } else {
                container(
                    c,
                    RuntimeState::Exited(Exited {
                        exit_code: 0,
                        reason: "Completed".to_owned(),
                        started_at: Some(started_at.clone()),
                        finished_at: Some(started_at.clone()),
                        ..Exited::default()
                    }),
                )
            }
        })
        .collect();
    containers.extend(
        spec.containers
            .iter()
            .map(|c| container(c, running.clone())),
    );
    RuntimePod {
        sandbox_ready: true,
        pod_ips: vec![pod_ip],
        containers,
        waiting: Default::default(),
    }
}

/// The pod task's state: per pod a few bytes, per node an address bitmap.
struct Worker {
    shared: Arc<Shared>,
    pods: HashMap<String, Entry>,
    addresses: Vec<Addresses>,
    pod_cidr_size: u32,
    limit: Arc<Semaphore>,
    tasks: JoinSet<Done>,
}

impl Worker {
    /// A request for the pod finished; a change seen meanwhile is handled
    /// now (a deletion must not be lost behind a status update).
    fn finish(&mut self, done: Done) {
        let uid = match done {
            Done::Started(uid) | Done::Failed(uid) | Done::Deleted(uid) => uid,
        };
        let pending = self.pods.get_mut(&uid).and_then(|e| {
            e.busy = false;
            e.pending.take()
        });
        if let Some(pod) = pending {
            self.handle(pod);
        }
    }

    fn forget(&mut self, uid: &str) {
        if let Some(Entry {
            node,
            offset: Some(off),
            ..
        }) = self.pods.remove(uid)
        {
            self.addresses[node].release(off);
        }
    }

    fn handle(&mut self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let Some(node) = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .and_then(|n| self.shared.node_index(n))
        else {
            return;
        };
        if !self.shared.config.kubelets && pod.metadata.deletion_timestamp.is_none() {
            return;
        }
        let entry = self.pods.entry(uid.clone()).or_insert(Entry {
            node,
            offset: None,
            busy: false,
            pending: None,
        });
        if entry.busy {
            entry.pending = Some(pod);
            return;
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), &namespace);
        let (shared, limit) = (self.shared.clone(), self.limit.clone());
        if pod.metadata.deletion_timestamp.is_some() {
            entry.busy = true;
            self.tasks.spawn(async move {
                let _permit = limit.acquire().await;
                let params = DeleteParams {
                    grace_period_seconds: Some(0),
                    preconditions: Some(Preconditions {
                        uid: Some(uid.clone()),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                match ignore_not_found(api.delete(&name, &params).await.map(|_| ())) {
                    Ok(()) => {
                        Stats::inc(&shared.stats.pods_deleted);
                        Done::Deleted(uid)
                    }
                    Err(e) => {
                        tracing::debug!(pod = %name, error = %e, "deleting failed");
                        Stats::inc(&shared.stats.errors);
                        Done::Failed(uid)
                    }
                }
            });
            return;
        }
        if ready_and_running(&pod) {
            return;
        }
        if entry.offset.is_none() {
            entry.offset = self.addresses[node].allocate(self.pod_cidr_size);
        }
        let Some(offset) = entry.offset else {
            tracing::warn!(pod = %name, node, "podCIDR exhausted");
            return;
        };
        entry.busy = true;
        let pod_ip = self.shared.pod_cidr(node).nth(offset).to_string();
        let host_ip = self.shared.node_ip(node).to_string();
        self.tasks.spawn(async move {
            let _permit = limit.acquire().await;
            let spec = pod.spec.clone().unwrap_or_default();
            let runtime = runtime_view(&spec, pod_ip);
            let now = now();
            let new_status = status::generate_pod_status(status::StatusInput {
                pod: &pod,
                runtime: &runtime,
                host_ips: &[host_ip],
                pod_is_terminal: false,
                now: &now,
            });
            let patch = serde_json::json!({"status": new_status});
            match api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    Stats::inc(&shared.stats.pods_started);
                    Done::Started(uid)
                }
                Err(e) => {
                    tracing::debug!(pod = %name, error = %e, "status update failed");
                    Stats::inc(&shared.stats.errors);
                    Done::Failed(uid)
                }
            }
        });
    }
}

/// A pod's metadata and node, for watchers that read no more: bare hollow
/// nodes (which only finish deletions) and the benchmark's bindings watch.
/// The rest of each object is skipped while decoding.
#[derive(Debug, Clone, serde::Deserialize)]
pub(crate) struct PodHead {
    pub(crate) metadata: ObjectMeta,
    #[serde(default)]
    pub(crate) spec: Option<PodHeadSpec>,
}

/// The part of a pod's spec [`PodHead`] keeps.
#[derive(Debug, Clone, serde::Deserialize)]
pub(crate) struct PodHeadSpec {
    #[serde(rename = "nodeName", default)]
    pub(crate) node_name: Option<String>,
}

impl Resource for PodHead {
    type DynamicType = ();
    type Scope = <Pod as Resource>::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        Pod::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        Pod::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        Pod::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        Pod::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl From<PodHead> for Pod {
    fn from(head: PodHead) -> Pod {
        Pod {
            metadata: head.metadata,
            spec: head.spec.map(|s| PodSpec {
                node_name: s.node_name,
                ..PodSpec::default()
            }),
            status: None,
        }
    }
}

/// Serves the pods bound to the hollow nodes until `shutdown`. Bare nodes
/// only delete pods, so they decode no more of a pod than that needs.
pub(crate) async fn run(shared: Arc<Shared>, shutdown: watch::Receiver<bool>) {
    if shared.config.kubelets {
        serve::<Pod>(shared, shutdown).await;
    } else {
        serve::<PodHead>(shared, shutdown).await;
    }
}

async fn serve<K>(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    Pod: From<K>,
{
    // managedFields are skipped while decoding: nothing here reads them.
    let all: Api<Lean<K>> = Api::all(shared.client.clone());
    let config = watcher::Config::default().fields("spec.nodeName!=");
    let mut events = watcher(all, config).default_backoff().boxed();
    let mut w = Worker {
        addresses: vec![Addresses::default(); shared.config.count],
        pod_cidr_size: 1u32 << (32 - u32::from(shared.config.node_cidr_prefix)),
        limit: Arc::new(Semaphore::new(shared.config.concurrency.max(1))),
        pods: HashMap::new(),
        tasks: JoinSet::new(),
        shared,
    };
    let mut relisted: Option<HashSet<String>> = None;
    loop {
        let event = tokio::select! {
            _ = shutdown.changed() => break,
            Some(done) = w.tasks.join_next(), if !w.tasks.is_empty() => {
                if let Ok(done) = done {
                    w.finish(done);
                }
                continue;
            }
            event = events.next() => match event {
                Some(event) => event,
                None => break,
            },
        };
        match event {
            Ok(watcher::Event::Init) => relisted = Some(HashSet::new()),
            Ok(watcher::Event::InitDone) => {
                // Pods gone while the watch was down: free their addresses.
                if let Some(seen) = relisted.take() {
                    let gone: Vec<String> = w
                        .pods
                        .keys()
                        .filter(|uid| !seen.contains(*uid))
                        .cloned()
                        .collect();
                    for uid in gone {
                        w.forget(&uid);
                    }
                }
            }
            Ok(watcher::Event::Delete(Lean(pod))) => {
                if let Some(uid) = pod.meta().uid.as_deref() {
                    w.forget(uid);
                }
            }
            Ok(watcher::Event::Apply(Lean(pod))) | Ok(watcher::Event::InitApply(Lean(pod))) => {
                if let (Some(seen), Some(uid)) = (relisted.as_mut(), pod.meta().uid.as_ref()) {
                    seen.insert(uid.clone());
                }
                w.handle(pod.into());
            }
            Err(e) => tracing::warn!(error = %e, "pod watch failed; retrying"),
        }
    }
    w.tasks.shutdown().await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn bare_nodes_decode_the_head_of_a_pod() {
        let text = serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1",
                "deletionTimestamp": "2026-12-04T10:00:00Z",
                "managedFields": [{"manager": "m", "operation": "Update"}]},
            "spec": {"nodeName": "hollow-3", "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running"}
        })
        .to_string();
        let Lean(head): Lean<PodHead> = serde_json::from_str(&text).unwrap();
        let pod = Pod::from(head);
        assert_eq!(pod.metadata.uid.as_deref(), Some("u1"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("ns"));
        assert!(pod.metadata.deletion_timestamp.is_some());
        assert_eq!(pod.metadata.managed_fields, None);
        let spec = pod.spec.unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("hollow-3"));
        assert!(spec.containers.is_empty());
        assert_eq!(pod.status, None);
        // A pod with no spec at all still decodes.
        let Lean(bare): Lean<PodHead> =
            serde_json::from_str(r#"{"metadata":{"name":"q"}}"#).unwrap();
        assert_eq!(Pod::from(bare).spec, None);
    }

    #[test]
    fn addresses_skip_network_and_gateway_and_are_reused() {
        let mut a = Addresses::default();
        assert_eq!(a.allocate(256), Some(2));
        assert_eq!(a.allocate(256), Some(3));
        a.release(2);
        assert_eq!(a.allocate(256), Some(2));
        let mut small = Addresses::default();
        // A /30: network, gateway, one pod, broadcast.
        assert_eq!(small.allocate(4), Some(2));
        assert_eq!(small.allocate(4), None);
    }
}
