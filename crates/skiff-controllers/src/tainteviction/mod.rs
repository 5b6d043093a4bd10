//! The taint eviction controller (upstream's `taint-eviction-controller`):
//! pods on a node with NoExecute taints they do not tolerate are deleted
//! at once; pods tolerating them for `tolerationSeconds` are deleted when
//! that runs out, unless the taint goes or the pod does first. Before the
//! deletion the pod gets a `DisruptionTarget` condition.

mod timers;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, ObjectReference, Taint};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use skiff_client::EventSink;
use skiff_client::events::PendingEvent;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cached_pod::CachedPod;
use crate::controller::{Action, Reconciler, SyncError, run_workers};
use crate::informer::{InformerFactory, ResourceEventHandler};
use crate::nodelifecycle::taints;
use crate::podutil::key_of;
use crate::workqueue::WorkQueue;
pub use timers::{Decision, TimedWorkers, decide};

/// The controller's name in `--controllers`.
pub const CONTROLLER_NAME: &str = "taint-eviction-controller";
/// Workers for node and pod updates (upstream runs 8 of each).
const WORKERS: usize = 8;
/// Tries of the condition patch and the deletion.
const DELETE_RETRIES: usize = 5;

/// The controller.
pub struct TaintEvictionController {
    client: kube::Client,
    nodes: Store<Node>,
    pods: Store<CachedPod>,
    events: Arc<dyn EventSink>,
    queue: Arc<WorkQueue<String>>,
    /// Node name → keys of the pods bound to it.
    pods_by_node: Arc<Mutex<HashMap<String, HashSet<String>>>>,
    timers: Arc<TimedWorkers>,
}

impl std::fmt::Debug for TaintEvictionController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaintEvictionController")
            .finish_non_exhaustive()
    }
}

fn pod_node(p: &CachedPod) -> Option<&str> {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn pod_ref(ns: &str, name: &str, uid: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("Pod".to_owned()),
        namespace: Some(ns.to_owned()),
        name: Some(name.to_owned()),
        uid,
        ..ObjectReference::default()
    }
}

impl TaintEvictionController {
    /// A controller on `factory`'s Node and Pod informers, handlers
    /// registered (start the factory afterwards).
    pub fn new(
        client: kube::Client,
        factory: &InformerFactory,
        events: Arc<dyn EventSink>,
    ) -> Arc<Self> {
        let nodes = factory.informer::<Node>();
        let pods = factory.informer::<CachedPod>();
        let c = Arc::new(TaintEvictionController {
            client,
            nodes: nodes.store(),
            pods: pods.store(),
            events,
            queue: Arc::new(factory.metrics().queue("noexec_taint_node")),
            pods_by_node: Arc::default(),
            timers: Arc::new(TimedWorkers::default()),
        });
        nodes.add_event_handler(Arc::new(NodeHandler(c.queue.clone())));
        pods.add_event_handler(Arc::new(PodHandler {
            queue: c.queue.clone(),
            by_node: c.pods_by_node.clone(),
        }));
        c
    }

    /// Runs the workers until `stop`, then cancels every pending eviction.
    pub async fn run(self: Arc<Self>, workers: usize, stop: watch::Receiver<bool>) {
        let worker = Arc::new(Worker(self.clone()));
        run_workers(worker, self.queue.clone(), workers.max(1), stop).await;
        self.timers.cancel_all();
    }

    /// Workers upstream runs.
    pub const DEFAULT_WORKERS: usize = WORKERS;

    fn node_no_execute_taints(&self, node: &str) -> Vec<Taint> {
        self.nodes
            .get(&ObjectRef::new(node))
            .map(|n| taints::no_execute_taints(taints::node_taints(&n)))
            .unwrap_or_default()
    }

    fn cancel_with_event(&self, key: &str) {
        if self.timers.cancel(key) {
            let (ns, name) = key.split_once('/').unwrap_or(("", key));
            self.events.record(PendingEvent {
                regarding: pod_ref(ns, name, None),
                normal: true,
                reason: "TaintManagerEviction".to_owned(),
                action: "TaintManagerEviction".to_owned(),
                note: format!("Cancelling deletion of Pod {key}"),
            });
        }
    }

    /// Schedules, reschedules or cancels the eviction of one pod
    /// (upstream's `processPodOnNode`).
    fn process_pod_on_node(self: &Arc<Self>, pod: &CachedPod, taints: &[Taint], now: Instant) {
        let key = key_of(&pod.metadata);
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_deref())
            .unwrap_or(&[]);
        let scheduled = self.timers.scheduled(&key);
        match decide(taints, tolerations, scheduled, now) {
            Decision::Cancel => self.cancel_with_event(&key),
            Decision::Keep => {}
            Decision::EvictAt(at) => {
                if scheduled.is_some() {
                    self.cancel_with_event(&key);
                }
                let c = self.clone();
                let uid = pod.metadata.uid.clone();
                let k = key.clone();
                self.timers
                    .add(&key, now, at, async move { c.evict(&k, uid).await });
            }
        }
    }

    /// Marks the pod and deletes it (upstream's `addConditionAndDeletePod`
    /// with its retries); whether it went.
    async fn evict(&self, key: &str, uid: Option<String>) -> bool {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        self.events.record(PendingEvent {
            regarding: pod_ref(ns, name, uid.clone()),
            normal: true,
            reason: "TaintManagerEviction".to_owned(),
            action: "TaintManagerEviction".to_owned(),
            note: format!("Marking for deletion Pod {key}"),
        });
        let api: Api<CachedPod> = Api::namespaced(self.client.clone(), ns);
        let condition = serde_json::json!({"status": {"conditions": [{
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "DeletionByTaintManager",
            "message": "Taint manager: deleting due to NoExecute taint",
            "lastTransitionTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now()),
        }]}});
        for _ in 0..DELETE_RETRIES {
            let patched = api
                .patch_status(name, &PatchParams::default(), &Patch::Strategic(&condition))
                .await;
            let r = match patched {
                Err(kube::Error::Api(s)) if s.code == 404 => return true,
                Err(e) => Err(e),
                Ok(_) => api.delete(name, &DeleteParams::default()).await.map(|_| ()),
            };
            match r {
                Ok(()) => return true,
                Err(kube::Error::Api(s)) if s.code == 404 => return true,
                Err(e) => {
                    tracing::info!(pod = %key, error = %e, "cannot evict pod; retrying");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        false
    }

    fn handle_pod(self: &Arc<Self>, key: &str) {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        let Some(pod) = self.pods.get(&ObjectRef::new(name).within(ns)) else {
            self.timers.cancel(key);
            return;
        };
        let Some(node) = pod_node(&pod) else {
            return;
        };
        let taints = self.node_no_execute_taints(node);
        if taints.is_empty() {
            // Nothing to do on an untainted node.
            self.cancel_with_event(key);
            return;
        }
        self.process_pod_on_node(&pod, &taints, Instant::now());
    }

    fn handle_node(self: &Arc<Self>, name: &str) {
        let keys: Vec<String> = self
            .pods_by_node
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        if self.nodes.get(&ObjectRef::new(name)).is_none() {
            return;
        }
        let taints = self.node_no_execute_taints(name);
        let now = Instant::now();
        for key in keys {
            if taints.is_empty() {
                self.cancel_with_event(&key);
                continue;
            }
            let (ns, pod_name) = key.split_once('/').unwrap_or(("", &key));
            if let Some(pod) = self.pods.get(&ObjectRef::new(pod_name).within(ns)) {
                self.process_pod_on_node(&pod, &taints, now);
            }
        }
    }
}

/// The queue's reconciler (the controller itself is needed as an `Arc`
/// to start timers).
struct Worker(Arc<TaintEvictionController>);

impl Reconciler for Worker {
    fn name(&self) -> &str {
        CONTROLLER_NAME
    }

    async fn sync(&self, key: &str) -> Result<Action, SyncError> {
        match key.split_once(':') {
            Some(("node", name)) => self.0.handle_node(name),
            Some(("pod", key)) => self.0.handle_pod(key),
            _ => {}
        }
        Ok(Action::Await)
    }
}

struct NodeHandler(Arc<WorkQueue<String>>);

impl ResourceEventHandler<Node> for NodeHandler {
    fn on_add(&self, n: &Arc<Node>) {
        if !taints::no_execute_taints(taints::node_taints(n)).is_empty() {
            self.0
                .add(format!("node:{}", n.metadata.name.as_deref().unwrap_or("")));
        }
    }
    fn on_update(&self, old: &Arc<Node>, n: &Arc<Node>) {
        let before = taints::no_execute_taints(taints::node_taints(old));
        let after = taints::no_execute_taints(taints::node_taints(n));
        if before != after {
            self.0
                .add(format!("node:{}", n.metadata.name.as_deref().unwrap_or("")));
        }
    }
    fn on_delete(&self, n: &Arc<Node>) {
        self.0
            .add(format!("node:{}", n.metadata.name.as_deref().unwrap_or("")));
    }
}

struct PodHandler {
    queue: Arc<WorkQueue<String>>,
    by_node: Arc<Mutex<HashMap<String, HashSet<String>>>>,
}

impl PodHandler {
    fn index(&self, old: Option<&CachedPod>, new: Option<&CachedPod>) {
        let mut idx = self.by_node.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(o) = old
            && let Some(n) = pod_node(o)
            && let Some(set) = idx.get_mut(n)
        {
            set.remove(&key_of(&o.metadata));
            if set.is_empty() {
                idx.remove(n);
            }
        }
        if let Some(p) = new
            && let Some(n) = pod_node(p)
        {
            idx.entry(n.to_owned())
                .or_default()
                .insert(key_of(&p.metadata));
        }
    }
}

impl ResourceEventHandler<CachedPod> for PodHandler {
    fn on_add(&self, p: &Arc<CachedPod>) {
        self.index(None, Some(p));
        if pod_node(p).is_some() {
            self.queue.add(format!("pod:{}", key_of(&p.metadata)));
        }
    }
    fn on_update(&self, old: &Arc<CachedPod>, p: &Arc<CachedPod>) {
        self.index(Some(old), Some(p));
        let tolerations = |p: &CachedPod| p.spec.as_ref().map(|s| s.tolerations.clone());
        if pod_node(p).is_some()
            && (pod_node(old) != pod_node(p) || tolerations(old) != tolerations(p))
        {
            self.queue.add(format!("pod:{}", key_of(&p.metadata)));
        }
    }
    fn on_delete(&self, p: &Arc<CachedPod>) {
        self.index(Some(p), None);
        self.queue.add(format!("pod:{}", key_of(&p.metadata)));
    }
}

#[cfg(test)]
mod tests;
