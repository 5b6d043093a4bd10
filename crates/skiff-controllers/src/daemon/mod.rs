//! The DaemonSet controller (upstream's `pkg/controller/daemon`): one pod
//! per eligible node, pinned there by node affinity for the scheduler;
//! ControllerRevision history; RollingUpdate (maxUnavailable, maxSurge) and
//! OnDelete updates; status.

pub mod backoff;
mod status;
mod sync;
mod update;
pub mod util;

#[cfg(test)]
mod update_tests;
#[cfg(test)]
mod util_tests;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::Node;
use kube::runtime::reflector::{ObjectRef, Store};
use skiff_client::EventSink;

use crate::cached_pod::CachedPod;
use crate::expectations::ControllerExpectations;
use crate::history::History;
use crate::informer::{ControllerIndex, InformerFactory, NamespaceIndex, ResourceEventHandler};
use crate::podutil::{controller_of, is_pod_ready, key_of};
use crate::workqueue::WorkQueue;
use backoff::Backoff;
use util::node_should_run_daemon_pod;

/// The controller's name (`--controllers`).
pub const CONTROLLER_NAME: &str = "daemonset";

/// Workers (`--concurrent-daemonset-syncs`).
pub const DEFAULT_WORKERS: usize = 2;

/// At most this many pods are created or deleted per sync (upstream's
/// `BurstReplicas` of this controller).
pub const BURST_REPLICAS: usize = 250;

/// The failed-pod deletion back-off (upstream: 1 s doubling to 15 min).
const FAILED_POD_BACKOFF: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(15 * 60));

/// The DaemonSet controller.
pub struct DaemonSetsController {
    pub(crate) client: kube::Client,
    pub(crate) daemon_sets: Store<DaemonSet>,
    pub(crate) nodes: Store<Node>,
    pub(crate) pods: Arc<NamespaceIndex<CachedPod>>,
    /// Pods by controller UID (orphans by namespace): what a claim reads.
    pub(crate) pods_by_controller: Arc<ControllerIndex<CachedPod>>,
    pub(crate) revisions: Arc<NamespaceIndex<ControllerRevision>>,
    pub(crate) history: History,
    pub(crate) queue: Arc<WorkQueue<String>>,
    pub(crate) expectations: Arc<ControllerExpectations>,
    pub(crate) events: Arc<dyn EventSink>,
    pub(crate) failed_pods_backoff: Backoff,
    pub(crate) burst_replicas: usize,
}

impl std::fmt::Debug for DaemonSetsController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonSetsController")
            .finish_non_exhaustive()
    }
}

impl DaemonSetsController {
    /// A controller on `factory`'s informers (DaemonSets, pods, nodes,
    /// ControllerRevisions) with its handlers registered.
    pub fn new(
        client: kube::Client,
        factory: &InformerFactory,
        events: Arc<dyn EventSink>,
    ) -> Arc<Self> {
        let ds_informer = factory.informer::<DaemonSet>();
        let pod_informer = factory.informer::<CachedPod>();
        let node_informer = factory.informer::<Node>();
        let rev_informer = factory.informer::<ControllerRevision>();
        let c = Arc::new(DaemonSetsController {
            history: History::new(client.clone()),
            client,
            daemon_sets: ds_informer.store(),
            nodes: node_informer.store(),
            pods: pod_informer.namespace_index(),
            pods_by_controller: pod_informer.controller_index(),
            revisions: rev_informer.namespace_index(),
            queue: Arc::new(factory.metrics().queue("daemonset")),
            expectations: Arc::new(ControllerExpectations::new()),
            events,
            failed_pods_backoff: Backoff::new(FAILED_POD_BACKOFF.0, FAILED_POD_BACKOFF.1),
            burst_replicas: BURST_REPLICAS,
        });
        ds_informer.add_event_handler(Arc::new(DaemonSetHandler(c.clone())));
        pod_informer.add_event_handler(Arc::new(PodHandler(c.clone())));
        node_informer.add_event_handler(Arc::new(NodeHandler(c.clone())));
        rev_informer.add_event_handler(Arc::new(HistoryHandler(c.clone())));
        c
    }

    /// The controller's work queue.
    pub fn queue(&self) -> Arc<WorkQueue<String>> {
        self.queue.clone()
    }

    fn enqueue(&self, ds: &DaemonSet) {
        self.queue.add(key_of(&ds.metadata));
    }

    fn enqueue_after(&self, ds: &DaemonSet, after: Duration) {
        self.queue.add_after(key_of(&ds.metadata), after);
    }

    /// The DaemonSet a controllerRef names, if it exists with that UID.
    fn resolve_controller_ref(
        &self,
        ns: Option<&str>,
        r: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    ) -> Option<Arc<DaemonSet>> {
        if r.kind != "DaemonSet" {
            return None;
        }
        let ds = self
            .daemon_sets
            .get(&ObjectRef::new(&r.name).within(ns.unwrap_or("")))?;
        (ds.metadata.uid.as_deref() == Some(r.uid.as_str())).then_some(ds)
    }

    /// DaemonSets in `ns` whose (non-empty) selector matches `labels`.
    fn daemon_sets_selecting(
        &self,
        ns: Option<&str>,
        labels: Option<&std::collections::BTreeMap<String, String>>,
    ) -> Vec<Arc<DaemonSet>> {
        let Some(labels) = labels.filter(|l| !l.is_empty()) else {
            return Vec::new();
        };
        self.daemon_sets.state_filter(|ds| {
            ds.metadata.namespace.as_deref() == ns
                && sync::selector_of(ds).is_ok_and(|s| !s.is_empty() && s.matches(labels))
        })
    }

    fn on_pod_delete(&self, pod: &CachedPod) {
        let Some(r) = controller_of(&pod.metadata) else {
            return;
        };
        let Some(ds) = self.resolve_controller_ref(pod.metadata.namespace.as_deref(), r) else {
            return;
        };
        let key = key_of(&ds.metadata);
        self.expectations
            .deletion_observed(&key, &key_of(&pod.metadata));
        self.queue.add(key);
    }
}

struct DaemonSetHandler(Arc<DaemonSetsController>);

impl ResourceEventHandler<DaemonSet> for DaemonSetHandler {
    fn on_add(&self, ds: &Arc<DaemonSet>) {
        self.0.enqueue(ds);
    }
    fn on_update(&self, old: &Arc<DaemonSet>, cur: &Arc<DaemonSet>) {
        if old.metadata.uid != cur.metadata.uid {
            self.on_delete(old);
        }
        self.0.enqueue(cur);
    }
    fn on_delete(&self, ds: &Arc<DaemonSet>) {
        let key = key_of(&ds.metadata);
        self.0.expectations.delete_expectations(&key);
        self.0.queue.add(key);
    }
}

struct PodHandler(Arc<DaemonSetsController>);

impl ResourceEventHandler<CachedPod> for PodHandler {
    fn on_add(&self, pod: &Arc<CachedPod>) {
        let c = &self.0;
        if pod.metadata.deletion_timestamp.is_some() {
            // Seen for the first time already terminating: not a creation.
            c.on_pod_delete(pod);
            return;
        }
        if let Some(r) = controller_of(&pod.metadata) {
            if let Some(ds) = c.resolve_controller_ref(pod.metadata.namespace.as_deref(), r) {
                let key = key_of(&ds.metadata);
                c.expectations.creation_observed(&key);
                c.queue.add(key);
            }
            return;
        }
        for ds in c.daemon_sets_selecting(
            pod.metadata.namespace.as_deref(),
            pod.metadata.labels.as_ref(),
        ) {
            c.enqueue(&ds);
        }
    }

    fn on_update(&self, old: &Arc<CachedPod>, cur: &Arc<CachedPod>) {
        let c = &self.0;
        if old.metadata.resource_version == cur.metadata.resource_version {
            return;
        }
        if cur.metadata.deletion_timestamp.is_some() {
            // Terminating counts as gone, so a replacement starts at once.
            c.on_pod_delete(cur);
            if old.metadata.labels != cur.metadata.labels {
                c.on_pod_delete(old);
            }
            return;
        }
        let ns = cur.metadata.namespace.as_deref();
        let cur_ref = controller_of(&cur.metadata);
        let old_ref = controller_of(&old.metadata);
        let ref_changed = cur_ref != old_ref;
        if ref_changed
            && let Some(r) = old_ref
            && let Some(ds) = c.resolve_controller_ref(ns, r)
        {
            c.enqueue(&ds);
        }
        if let Some(r) = cur_ref {
            if let Some(ds) = c.resolve_controller_ref(ns, r) {
                c.enqueue(&ds);
                let mrs = util::min_ready_seconds(&ds);
                if !is_pod_ready(old) && is_pod_ready(cur) && mrs > 0 {
                    // Availability is due once minReadySeconds have passed.
                    let secs = u64::try_from(mrs).unwrap_or(0) + 1;
                    c.enqueue_after(&ds, Duration::from_secs(secs));
                }
            }
            return;
        }
        if old.metadata.labels != cur.metadata.labels || ref_changed {
            for ds in c.daemon_sets_selecting(ns, cur.metadata.labels.as_ref()) {
                c.enqueue(&ds);
            }
        }
    }

    fn on_delete(&self, pod: &Arc<CachedPod>) {
        self.0.on_pod_delete(pod);
    }
}

struct NodeHandler(Arc<DaemonSetsController>);

/// Whether the set of True conditions is the same (upstream's
/// `nodeInSameCondition`).
fn node_in_same_condition(old: &Node, cur: &Node) -> bool {
    let trues = |n: &Node| {
        let mut v: Vec<String> = n
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .map(|cs| {
                cs.iter()
                    .filter(|c| c.status == "True")
                    .map(|c| c.type_.clone())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v.dedup();
        v
    };
    trues(old) == trues(cur)
}

/// Whether an update changes nothing the controller looks at: same True
/// conditions, and the rest equal but for resourceVersion and conditions
/// (upstream's `shouldIgnoreNodeUpdate`; heartbeats are ignored).
fn should_ignore_node_update(old: &Node, cur: &Node) -> bool {
    if !node_in_same_condition(old, cur) {
        return false;
    }
    let strip = |n: &Node| {
        let mut n = n.clone();
        n.metadata.resource_version = None;
        if let Some(s) = n.status.as_mut() {
            s.conditions = None;
        }
        n
    };
    strip(old) == strip(cur)
}

impl ResourceEventHandler<Node> for NodeHandler {
    fn on_add(&self, node: &Arc<Node>) {
        for ds in self.0.daemon_sets.state() {
            if node_should_run_daemon_pod(node, &ds).0 {
                self.0.enqueue(&ds);
            }
        }
    }

    fn on_update(&self, old: &Arc<Node>, cur: &Arc<Node>) {
        if should_ignore_node_update(old, cur) {
            return;
        }
        for ds in self.0.daemon_sets.state() {
            if node_should_run_daemon_pod(old, &ds) != node_should_run_daemon_pod(cur, &ds) {
                self.0.enqueue(&ds);
            }
        }
    }

    fn on_delete(&self, node: &Arc<Node>) {
        // Upstream leaves a deleted node's pods to the pod GC; the node
        // leaving still changes every DaemonSet's status numbers.
        for ds in self.0.daemon_sets.state() {
            if node_should_run_daemon_pod(node, &ds).1 {
                self.0.enqueue(&ds);
            }
        }
    }
}

struct HistoryHandler(Arc<DaemonSetsController>);

impl HistoryHandler {
    fn changed(&self, cr: &ControllerRevision) {
        let c = &self.0;
        let ns = cr.metadata.namespace.as_deref();
        if let Some(r) = controller_of(&cr.metadata) {
            if let Some(ds) = c.resolve_controller_ref(ns, r) {
                c.enqueue(&ds);
            }
            return;
        }
        for ds in c.daemon_sets_selecting(ns, cr.metadata.labels.as_ref()) {
            c.enqueue(&ds);
        }
    }
}

impl ResourceEventHandler<ControllerRevision> for HistoryHandler {
    fn on_add(&self, cr: &Arc<ControllerRevision>) {
        if cr.metadata.deletion_timestamp.is_some() {
            self.on_delete(cr);
            return;
        }
        self.changed(cr);
    }
    fn on_update(&self, old: &Arc<ControllerRevision>, cur: &Arc<ControllerRevision>) {
        if old.metadata.resource_version == cur.metadata.resource_version {
            return;
        }
        if controller_of(&old.metadata) != controller_of(&cur.metadata) {
            self.changed(old);
        }
        self.changed(cur);
    }
    fn on_delete(&self, cr: &Arc<ControllerRevision>) {
        if let Some(r) = controller_of(&cr.metadata)
            && let Some(ds) = self
                .0
                .resolve_controller_ref(cr.metadata.namespace.as_deref(), r)
        {
            self.0.enqueue(&ds);
        }
    }
}
