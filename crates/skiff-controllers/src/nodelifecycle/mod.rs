//! The node lifecycle controller (upstream's `node-lifecycle-controller`):
//! watches Nodes and their Leases; a node not heard from for
//! `--node-monitor-grace-period` gets its conditions set Unknown, its pods
//! marked not ready, and (at a per-zone rate that slows when a zone is
//! disrupted) the NoExecute `unreachable` / `not-ready` taints the taint
//! eviction controller acts on. It also keeps the NoSchedule taints that
//! mirror node conditions (`taintNodeByCondition`).

pub mod health;
mod monitor;
pub mod taints;
pub mod zone;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Taint};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use skiff_client::EventSink;
use skiff_client::events::PendingEvent;
use tokio::sync::watch;

use crate::cached_pod::CachedPod;
use crate::controller::{Action, Reconciler, SyncError, run_workers};
use crate::informer::{InformerFactory, ResourceEventHandler};
use crate::workqueue::WorkQueue;
use health::NodeHealthData;
use zone::{RateLimitedTimedQueue, ZoneState};

/// The controller's name in `--controllers`.
pub const CONTROLLER_NAME: &str = "node-lifecycle-controller";
/// Namespace of node Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// How often nodes waiting for a NoExecute taint are looked at
/// (upstream's `NodeEvictionPeriod`).
const NODE_EVICTION_PERIOD: Duration = Duration::from_millis(100);
/// Workers for the NoSchedule taint and pod queues.
const WORKERS: usize = 4;
/// Tries of a write that conflicts (upstream's `NodeHealthUpdateRetry`).
const UPDATE_RETRIES: usize = 5;
/// Nodes with this label are left out of zone disruption accounting.
const LABEL_EXCLUDE_DISRUPTION: &str = "node.kubernetes.io/exclude-disruption";

/// kube-controller-manager's node lifecycle options.
#[derive(Debug, Clone)]
pub struct NodeLifecycleOptions {
    /// `--node-monitor-period`.
    pub node_monitor_period: Duration,
    /// `--node-monitor-grace-period`.
    pub node_monitor_grace_period: Duration,
    /// `--node-startup-grace-period`.
    pub node_startup_grace_period: Duration,
    /// `--node-eviction-rate` (nodes a second per zone).
    pub node_eviction_rate: f32,
    /// `--secondary-node-eviction-rate`.
    pub secondary_node_eviction_rate: f32,
    /// `--large-cluster-size-threshold`.
    pub large_cluster_size_threshold: usize,
    /// `--unhealthy-zone-threshold`.
    pub unhealthy_zone_threshold: f32,
}

impl Default for NodeLifecycleOptions {
    fn default() -> Self {
        NodeLifecycleOptions {
            node_monitor_period: Duration::from_secs(5),
            node_monitor_grace_period: Duration::from_secs(40),
            node_startup_grace_period: Duration::from_secs(60),
            node_eviction_rate: 0.1,
            secondary_node_eviction_rate: 0.01,
            large_cluster_size_threshold: 50,
            unhealthy_zone_threshold: 0.55,
        }
    }
}

impl NodeLifecycleOptions {
    /// The eviction rate for a zone of `size` nodes in `state`.
    pub fn zone_rate(&self, size: usize, state: ZoneState) -> f32 {
        match state {
            ZoneState::PartialDisruption if size > self.large_cluster_size_threshold => {
                self.secondary_node_eviction_rate
            }
            ZoneState::PartialDisruption => 0.0,
            ZoneState::Initial | ZoneState::Normal | ZoneState::FullDisruption => {
                self.node_eviction_rate
            }
        }
    }
}

/// What persists between passes.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub health: HashMap<String, NodeHealthData>,
    /// Node name → UID, of the nodes seen so far.
    pub known: HashMap<String, String>,
    pub zone_states: HashMap<String, ZoneState>,
    pub tainters: HashMap<String, RateLimitedTimedQueue>,
    /// Nodes whose pods must still be marked not ready.
    pub nodes_to_retry: HashSet<String>,
}

/// The controller.
pub struct NodeLifecycleController {
    pub(crate) client: kube::Client,
    pub(crate) nodes: Store<Node>,
    pub(crate) leases: Store<Lease>,
    pub(crate) pods: Store<CachedPod>,
    pub(crate) events: Arc<dyn EventSink>,
    pub(crate) opts: NodeLifecycleOptions,
    pub(crate) state: Mutex<State>,
    queue: Arc<WorkQueue<String>>,
}

impl std::fmt::Debug for NodeLifecycleController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeLifecycleController")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl NodeLifecycleController {
    /// A controller on `factory`'s Node, Lease and Pod informers, handlers
    /// registered (start the factory afterwards).
    pub fn new(
        client: kube::Client,
        factory: &InformerFactory,
        events: Arc<dyn EventSink>,
        opts: NodeLifecycleOptions,
    ) -> Arc<Self> {
        let nodes = factory.informer::<Node>();
        let pods = factory.informer::<CachedPod>();
        let c = Arc::new(NodeLifecycleController {
            client,
            nodes: nodes.store(),
            leases: factory.informer::<Lease>().store(),
            pods: pods.store(),
            events,
            opts,
            state: Mutex::new(State::default()),
            queue: Arc::new(factory.metrics().queue("node_lifecycle_controller")),
        });
        nodes.add_event_handler(Arc::new(NodeHandler(c.queue.clone())));
        pods.add_event_handler(Arc::new(PodHandler(c.queue.clone())));
        c
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs the monitor and tainting loops and the queue workers until
    /// `stop`.
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let workers = tokio::spawn(run_workers(
            self.clone(),
            self.queue.clone(),
            WORKERS,
            stop.clone(),
        ));
        let mut monitor = tokio::time::interval(self.opts.node_monitor_period);
        monitor.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tainting = tokio::time::interval(NODE_EVICTION_PERIOD);
        tainting.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stop_rx = stop.clone();
        loop {
            let monitor_due = tokio::select! {
                _ = stop_rx.wait_for(|s| *s) => break,
                _ = monitor.tick() => true,
                _ = tainting.tick() => false,
            };
            if monitor_due {
                self.monitor_node_health().await;
            } else {
                self.do_no_execute_tainting_pass().await;
            }
        }
        let _ = workers.await;
    }

    /// Pods bound to `node`.
    pub(crate) fn pods_on(&self, node: &str) -> Vec<Arc<CachedPod>> {
        self.pods
            .state_filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
    }

    pub(crate) fn node_event(&self, node: &Node, normal: bool, reason: &str, note: String) {
        self.events.record(PendingEvent {
            regarding: ObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Node".to_owned()),
                name: node.metadata.name.clone(),
                uid: node.metadata.uid.clone(),
                ..ObjectReference::default()
            },
            normal,
            reason: reason.to_owned(),
            action: reason.to_owned(),
            note,
        });
    }

    /// Rewrites the node's taints with `f` (None: nothing to change),
    /// re-reading the node on a conflict; whether it was written.
    pub(crate) async fn update_node_taints(
        &self,
        node: &Node,
        f: impl Fn(&Node) -> Option<Vec<Taint>>,
    ) -> Result<bool, kube::Error> {
        let api: Api<Node> = Api::all(self.client.clone());
        let name = node.metadata.name.clone().unwrap_or_default();
        let mut node = node.clone();
        for attempt in 0..UPDATE_RETRIES {
            let Some(taints) = f(&node) else {
                return Ok(false);
            };
            let spec = node.spec.get_or_insert_default();
            spec.taints = (!taints.is_empty()).then_some(taints);
            match api.replace(&name, &PostParams::default(), &node).await {
                Ok(_) => return Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 && attempt + 1 < UPDATE_RETRIES => {
                    node = api.get(&name).await?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Removes the NoExecute `unreachable` and `not-ready` taints and takes
    /// the node out of its zone's queue (upstream's `markNodeAsReachable`).
    pub(crate) async fn mark_node_as_reachable(&self, node: &Node) -> Result<bool, kube::Error> {
        let remove = [
            taints::taint(taints::TAINT_NODE_UNREACHABLE, taints::NO_EXECUTE),
            taints::taint(taints::TAINT_NODE_NOT_READY, taints::NO_EXECUTE),
        ];
        self.update_node_taints(node, |n| {
            taints::swap_taints(taints::node_taints(n), &[], &remove, None)
        })
        .await?;
        let name = node.metadata.name.as_deref().unwrap_or_default();
        let mut st = self.lock();
        Ok(st
            .tainters
            .get_mut(&zone::zone_key(node))
            .is_some_and(|q| q.remove(name)))
    }

    /// Sets the Ready condition of `pods` (those bound to `node_name`)
    /// False (upstream's `MarkPodsNotReady`), with a `NodeNotReady` event
    /// on each.
    pub(crate) async fn mark_pods_not_ready(
        &self,
        pods: &[Arc<CachedPod>],
        node_name: &str,
    ) -> Result<(), kube::Error> {
        let mut first_err = None;
        for pod in pods {
            if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(node_name) {
                continue;
            }
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
            if ready.is_none_or(|c| c.status == "False") {
                continue;
            }
            // Only the condition changes: a strategic merge of it (keyed by
            // type), as the cached pod lacks most of the pod. The
            // resourceVersion keeps upstream's UpdateStatus conflict check.
            let patch = serde_json::json!({
                "metadata": {"resourceVersion": pod.metadata.resource_version},
                "status": {"conditions": [{
                    "type": "Ready",
                    "status": "False",
                    "lastTransitionTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        k8s_openapi::jiff::Timestamp::now(),
                    ),
                }]},
            });
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let api: Api<CachedPod> = Api::namespaced(self.client.clone(), &ns);
            match api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => continue,
                Err(e) => {
                    first_err.get_or_insert(e);
                    continue;
                }
            }
            self.events.record(PendingEvent {
                regarding: ObjectReference {
                    api_version: Some("v1".to_owned()),
                    kind: Some("Pod".to_owned()),
                    namespace: Some(ns),
                    name: Some(name),
                    uid: pod.metadata.uid.clone(),
                    ..ObjectReference::default()
                },
                normal: false,
                reason: "NodeNotReady".to_owned(),
                action: "NodeNotReady".to_owned(),
                note: "Node is not ready".to_owned(),
            });
        }
        first_err.map_or(Ok(()), Err)
    }

    /// A pod newly bound to a node: marked not ready if the node is not
    /// (upstream's `processPod`).
    async fn process_pod(&self, key: &str) -> Result<Action, SyncError> {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        let Some(pod) = self.pods.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(Action::Await);
        };
        let Some(node_name) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            return Ok(Action::Await);
        };
        let ready = {
            let st = self.lock();
            let Some(h) = st.health.get(&node_name) else {
                return Ok(Action::Await);
            };
            h.ready.as_ref().map(|c| c.status.clone())
        };
        if self.nodes.get(&ObjectRef::new(&node_name)).is_none() {
            return Err(format!("node {node_name} not in the cache").into());
        }
        match ready {
            Some(s) if s != "True" => {
                self.mark_pods_not_ready(&[pod], &node_name).await?;
                Ok(Action::Await)
            }
            _ => Ok(Action::Await),
        }
    }

    /// Keeps the node's condition taints (upstream's
    /// `doNoScheduleTaintingPass`).
    async fn process_node(&self, name: &str) -> Result<Action, SyncError> {
        let Some(node) = self.nodes.get(&ObjectRef::new(name)) else {
            return Ok(Action::Await);
        };
        self.update_node_taints(&node, taints::reconcile_condition_taints)
            .await?;
        Ok(Action::Await)
    }
}

impl Reconciler for NodeLifecycleController {
    fn name(&self) -> &str {
        CONTROLLER_NAME
    }

    async fn sync(&self, key: &str) -> Result<Action, SyncError> {
        match key.split_once(':') {
            Some(("node", name)) => self.process_node(name).await,
            Some(("pod", key)) => self.process_pod(key).await,
            _ => Ok(Action::Await),
        }
    }
}

struct NodeHandler(Arc<WorkQueue<String>>);

impl ResourceEventHandler<Node> for NodeHandler {
    fn on_add(&self, n: &Arc<Node>) {
        self.0
            .add(format!("node:{}", n.metadata.name.as_deref().unwrap_or("")));
    }
    fn on_update(&self, _old: &Arc<Node>, n: &Arc<Node>) {
        self.on_add(n);
    }
    fn on_delete(&self, _n: &Arc<Node>) {}
}

struct PodHandler(Arc<WorkQueue<String>>);

fn node_name(p: &CachedPod) -> Option<&str> {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

impl ResourceEventHandler<CachedPod> for PodHandler {
    fn on_add(&self, p: &Arc<CachedPod>) {
        if node_name(p).is_some() {
            self.0
                .add(format!("pod:{}", crate::podutil::key_of(&p.metadata)));
        }
    }
    fn on_update(&self, old: &Arc<CachedPod>, p: &Arc<CachedPod>) {
        if node_name(p).is_some() && node_name(p) != node_name(old) {
            self.0
                .add(format!("pod:{}", crate::podutil::key_of(&p.metadata)));
        }
    }
    fn on_delete(&self, _p: &Arc<CachedPod>) {}
}

#[cfg(test)]
mod tests;
