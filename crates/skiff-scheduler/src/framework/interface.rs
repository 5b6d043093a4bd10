//! The plugin interface: one trait per extension point, as upstream's
//! `framework/interface.go`. A plugin is one object implementing [`Plugin`]
//! and exposing the extension points it implements through the `as_*`
//! accessors; the framework runtime collects them per profile.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{
    Node, PersistentVolume, PersistentVolumeClaim, Pod, ReplicationController, Service,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;

use super::cycle_state::CycleState;
use super::handle::FrameworkHandle;
use super::node_info::{NodeInfo, PodInfo};
use super::status::Status;

/// The highest score a Score plugin may return after normalisation.
pub const MAX_NODE_SCORE: i64 = 100;
/// The lowest score.
pub const MIN_NODE_SCORE: i64 = 0;

/// The nodes frozen for one scheduling cycle (upstream's `Snapshot`): every
/// node, by position and by name, plus the subsets the affinity plugins scan.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Every node with a Node object, in a stable order.
    pub nodes: Vec<Arc<NodeInfo>>,
    /// Index into `nodes` by node name.
    pub by_name: HashMap<String, usize>,
    /// Nodes with at least one pod that has pod (anti-)affinity.
    pub have_pods_with_affinity: Vec<Arc<NodeInfo>>,
    /// Nodes with at least one pod that has required anti-affinity.
    pub have_pods_with_required_anti_affinity: Vec<Arc<NodeInfo>>,
    /// `namespace/claim` of every PVC used by a scheduled pod.
    pub used_pvcs: BTreeSet<String>,
}

impl Snapshot {
    /// Builds a snapshot from node infos (tests, and the cache's first build).
    pub fn from_nodes(nodes: Vec<Arc<NodeInfo>>) -> Snapshot {
        let mut s = Snapshot {
            by_name: nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (n.name().to_owned(), i))
                .collect(),
            nodes,
            ..Snapshot::default()
        };
        s.refresh_subsets();
        s
    }

    /// Recomputes the affinity subsets and the used claims from `nodes`.
    fn refresh_subsets(&mut self) {
        self.have_pods_with_affinity.clear();
        self.have_pods_with_required_anti_affinity.clear();
        for n in &self.nodes {
            if !n.pods_with_affinity.is_empty() {
                self.have_pods_with_affinity.push(n.clone());
            }
            if !n.pods_with_required_anti_affinity.is_empty() {
                self.have_pods_with_required_anti_affinity.push(n.clone());
            }
        }
        self.refresh_used_claims();
    }

    /// Recomputes `used_pvcs` from `nodes` (after pods with claims came or
    /// went).
    pub fn refresh_used_claims(&mut self) {
        self.used_pvcs = self
            .nodes
            .iter()
            .flat_map(|n| n.pvc_ref_counts.keys().cloned())
            .collect();
    }

    /// The node named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<NodeInfo>> {
        self.by_name.get(name).and_then(|&i| self.nodes.get(i))
    }
}

/// A plugin: a name, and the extension points it implements.
pub trait Plugin: Send + Sync {
    /// The plugin's name as in the scheduler configuration.
    fn name(&self) -> &'static str;
    /// Cluster events after which a pod this plugin rejected may fit
    /// (upstream's `EnqueueExtensions.EventsToRegister`). Empty means "any
    /// event" to be safe.
    fn events_to_register(&self) -> Vec<ClusterEvent> {
        Vec::new()
    }
    /// Whether `event` (with its `objects`) may make `pod`, which this
    /// plugin rejected, schedulable (upstream's `QueueingHintFn`). Asked
    /// only for events the plugin registered; the default queues. Hints
    /// must never skip an event that could make the pod fit: a wrong skip
    /// strands the pod until the periodic flush.
    fn queueing_hint(
        &self,
        _pod: &PodInfo,
        _event: &ClusterEvent,
        _objects: &EventObjects,
    ) -> QueueingHint {
        QueueingHint::Queue
    }
    /// PreEnqueue, if implemented.
    fn as_pre_enqueue(&self) -> Option<&dyn PreEnqueuePlugin> {
        None
    }
    /// QueueSort, if implemented.
    fn as_queue_sort(&self) -> Option<&dyn QueueSortPlugin> {
        None
    }
    /// PreFilter, if implemented.
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        None
    }
    /// Filter, if implemented.
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        None
    }
    /// PostFilter, if implemented.
    fn as_post_filter(&self) -> Option<&dyn PostFilterPlugin> {
        None
    }
    /// PreScore, if implemented.
    fn as_pre_score(&self) -> Option<&dyn PreScorePlugin> {
        None
    }
    /// Score, if implemented.
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        None
    }
    /// Reserve/Unreserve, if implemented.
    fn as_reserve(&self) -> Option<&dyn ReservePlugin> {
        None
    }
    /// Permit, if implemented.
    fn as_permit(&self) -> Option<&dyn PermitPlugin> {
        None
    }
    /// PreBind, if implemented.
    fn as_pre_bind(&self) -> Option<&dyn PreBindPlugin> {
        None
    }
    /// Bind, if implemented.
    fn as_bind(&self) -> Option<&dyn BindPlugin> {
        None
    }
    /// PostBind, if implemented.
    fn as_post_bind(&self) -> Option<&dyn PostBindPlugin> {
        None
    }
}

/// A pod waiting in the scheduling queue.
#[derive(Debug, Clone)]
pub struct QueuedPodInfo {
    /// The pod.
    pub pod_info: Arc<PodInfo>,
    /// When it was first added to the queue (for QueueSort ties).
    pub initial_attempt_timestamp: Instant,
    /// When it was last added to the active queue.
    pub timestamp: Instant,
    /// Scheduling attempts so far.
    pub attempts: u32,
    /// Plugins that rejected it in its last attempt.
    pub unschedulable_plugins: BTreeSet<&'static str>,
    /// Plugins that returned Pending in its last attempt.
    pub pending_plugins: BTreeSet<&'static str>,
}

/// Gates a pod before it enters the active queue (e.g. schedulingGates).
pub trait PreEnqueuePlugin: Send + Sync {
    /// Success lets the pod in; anything else parks it until an event.
    fn pre_enqueue(&self, pod: &Pod) -> Status;
}

/// Orders the active queue.
pub trait QueueSortPlugin: Send + Sync {
    /// True when `a` should be scheduled before `b`.
    fn less(&self, a: &QueuedPodInfo, b: &QueuedPodInfo) -> bool;
}

/// What a PreFilter may say about the nodes: `None` means all nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreFilterResult {
    /// Only these nodes can fit the pod (e.g. NodeAffinity on
    /// `metadata.name`); `None` means no restriction.
    pub node_names: Option<BTreeSet<String>>,
}

/// Runs once per cycle before Filter; may store state for Filter.
pub trait PreFilterPlugin: Send + Sync {
    /// Computes cycle state; `Skip` skips this plugin's Filter.
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status);
    /// Incremental updates of the state, used by preemption and nominated
    /// pods (upstream's `PreFilterExtensions`).
    fn extensions(&self) -> Option<&dyn PreFilterExtensions> {
        None
    }
}

/// Updates a PreFilter's state as if a pod were added to or removed from a
/// node.
pub trait PreFilterExtensions: Send + Sync {
    /// `pod_to_add` now runs on `node`.
    fn add_pod(
        &self,
        state: &mut CycleState,
        pod_to_schedule: &PodInfo,
        pod_to_add: &PodInfo,
        node: &NodeInfo,
    ) -> Status;
    /// `pod_to_remove` no longer runs on `node`.
    fn remove_pod(
        &self,
        state: &mut CycleState,
        pod_to_schedule: &PodInfo,
        pod_to_remove: &PodInfo,
        node: &NodeInfo,
    ) -> Status;
}

/// Decides whether the pod can run on one node. Called concurrently for
/// many nodes with a shared, read-only state.
pub trait FilterPlugin: Send + Sync {
    /// Success, or Unschedulable(AndUnresolvable) with the reason shown in
    /// FailedScheduling.
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status;

    /// True when `filter` reads the node's labels, so the framework loads
    /// each node's label block ahead of the node it is filtering (a hint).
    fn reads_node_labels(&self) -> bool {
        false
    }
}

/// Each node's rejection, for PostFilter and the FailedScheduling message.
pub type NodeToStatus = HashMap<String, Status>;

/// What a PostFilter (preemption) achieved. A returned result overrides
/// the pod's nomination (upstream's `ModeOverride`): `None` or an empty name
/// clears it; no result at all leaves it as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostFilterResult {
    /// The node the pod is nominated to, after victims are evicted.
    pub nominated_node_name: Option<String>,
}

/// Runs when no node fits (preemption). May call the API server.
pub trait PostFilterPlugin: Send + Sync {
    /// Tries to make room for the pod. `filtered` holds each evaluated
    /// node's rejection; nodes absent from it had `absent_nodes_status`
    /// (None: UnschedulableAndUnresolvable).
    fn post_filter<'a>(
        &'a self,
        handle: &'a dyn FrameworkHandle,
        state: &'a CycleState,
        pod: &'a PodInfo,
        filtered: &'a NodeToStatus,
        absent_nodes_status: Option<&'a Status>,
    ) -> BoxFuture<'a, (Option<PostFilterResult>, Status)>;
}

/// Runs once per cycle over the feasible nodes before Score.
pub trait PreScorePlugin: Send + Sync {
    /// Computes cycle state for Score; `Skip` skips this plugin's Score.
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status;
}

/// A node's score. Borrows the node's name from the cycle's snapshot: a
/// cycle scores hundreds of nodes with every Score plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeScore<'a> {
    /// The node.
    pub name: &'a str,
    /// Its score.
    pub score: i64,
}

/// Fills `scores` (cleared first) with `score` of each of `nodes`, in order:
/// [`ScorePlugin::score_nodes`] for a plugin whose score cannot fail.
pub fn score_each<'n>(
    nodes: &'n [Arc<NodeInfo>],
    scores: &mut Vec<NodeScore<'n>>,
    score: impl Fn(&NodeInfo) -> i64,
) {
    scores.clear();
    scores.extend(nodes.iter().map(|node| NodeScore {
        name: node.name(),
        score: score(node),
    }));
}

/// Ranks feasible nodes.
pub trait ScorePlugin: Send + Sync {
    /// The raw score of `node`.
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> (i64, Status);
    /// The raw scores of `nodes`, in order, into `scores` (cleared first);
    /// the first failure stops it. The default calls [`ScorePlugin::score`]
    /// per node; plugins override it to read their cycle state once per
    /// cycle rather than once per node.
    fn score_nodes<'n>(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &'n [Arc<NodeInfo>],
        scores: &mut Vec<NodeScore<'n>>,
    ) -> Status {
        scores.clear();
        for node in nodes {
            let (score, s) = self.score(state, pod, node);
            if !s.is_success() {
                return s;
            }
            scores.push(NodeScore {
                name: node.name(),
                score,
            });
        }
        Status::success()
    }
    /// Maps raw scores onto [MIN_NODE_SCORE, MAX_NODE_SCORE] in place; the
    /// default leaves them as they are.
    fn normalize_scores(
        &self,
        _state: &CycleState,
        _pod: &PodInfo,
        _scores: &mut [NodeScore<'_>],
    ) -> Status {
        Status::success()
    }
}

/// Claims (and releases) per-node resources the plugin tracks itself.
pub trait ReservePlugin: Send + Sync {
    /// The pod is assumed onto `node_name`.
    fn reserve(&self, state: &mut CycleState, pod: &PodInfo, node_name: &str) -> Status;
    /// A later step failed: undo `reserve`. Must be idempotent.
    fn unreserve(&self, state: &mut CycleState, pod: &PodInfo, node_name: &str);
}

/// Approves, denies or delays binding.
pub trait PermitPlugin: Send + Sync {
    /// Success, Wait (with a timeout), or a rejection.
    fn permit(&self, state: &mut CycleState, pod: &PodInfo, node_name: &str) -> (Status, Duration);
}

/// Runs before binding (e.g. provisioning volumes). May call the API server.
pub trait PreBindPlugin: Send + Sync {
    /// Success lets binding go ahead.
    fn pre_bind<'a>(
        &'a self,
        state: &'a CycleState,
        pod: &'a PodInfo,
        node_name: &'a str,
    ) -> BoxFuture<'a, Status>;
}

/// Binds the pod to the node. The first binder not returning Skip wins.
pub trait BindPlugin: Send + Sync {
    /// Writes the binding.
    fn bind<'a>(
        &'a self,
        state: &'a CycleState,
        pod: &'a PodInfo,
        node_name: &'a str,
    ) -> BoxFuture<'a, Status>;
}

/// Informational, after a successful bind.
pub trait PostBindPlugin: Send + Sync {
    /// Called once the binding is persisted.
    fn post_bind(&self, state: &CycleState, pod: &PodInfo, node_name: &str);
}

/// The kind of object a cluster event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventResource {
    /// A pod (assigned to a node, or being scheduled).
    Pod,
    /// A node.
    Node,
    /// A PersistentVolumeClaim.
    PersistentVolumeClaim,
    /// A PersistentVolume.
    PersistentVolume,
    /// A StorageClass.
    StorageClass,
    /// A namespace (its labels matter to namespaceSelectors).
    Namespace,
    /// Anything.
    Wildcard,
}

/// Bit flags of what changed (upstream's `ActionType`).
pub mod action {
    /// Created.
    pub const ADD: u32 = 1;
    /// Deleted.
    pub const DELETE: u32 = 1 << 1;
    /// A node's allocatable changed.
    pub const UPDATE_NODE_ALLOCATABLE: u32 = 1 << 2;
    /// A node's labels changed.
    pub const UPDATE_NODE_LABEL: u32 = 1 << 3;
    /// A node's taints (or unschedulable) changed.
    pub const UPDATE_NODE_TAINT: u32 = 1 << 4;
    /// A node's conditions changed.
    pub const UPDATE_NODE_CONDITION: u32 = 1 << 5;
    /// A node's annotations changed.
    pub const UPDATE_NODE_ANNOTATION: u32 = 1 << 6;
    /// A pod's labels changed.
    pub const UPDATE_POD_LABEL: u32 = 1 << 7;
    /// A pod's resource requests were scaled down.
    pub const UPDATE_POD_SCALE_DOWN: u32 = 1 << 8;
    /// A pod's tolerations changed.
    pub const UPDATE_POD_TOLERATIONS: u32 = 1 << 9;
    /// A pod's scheduling gates were removed.
    pub const UPDATE_POD_SCHEDULING_GATES_ELIMINATED: u32 = 1 << 10;
    /// Any other update.
    pub const UPDATE: u32 = 1 << 11;
    /// Any update of a node.
    pub const UPDATE_NODE_ANY: u32 = UPDATE_NODE_ALLOCATABLE
        | UPDATE_NODE_LABEL
        | UPDATE_NODE_TAINT
        | UPDATE_NODE_CONDITION
        | UPDATE_NODE_ANNOTATION
        | UPDATE;
    /// Anything.
    pub const ALL: u32 = u32::MAX;
}

/// An event that may make rejected pods schedulable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClusterEvent {
    /// What kind of object changed.
    pub resource: EventResource,
    /// What happened to it ([`action`] flags).
    pub action: u32,
}

/// A plugin's verdict on an event for a pod it rejected (upstream's
/// `QueueingHint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueingHint {
    /// The event cannot make the pod schedulable: leave it waiting.
    Skip,
    /// The event may make the pod schedulable: retry it.
    Queue,
}

impl QueueingHint {
    /// Queue when the event `may_help`, else skip.
    pub fn queue_if(may_help: bool) -> QueueingHint {
        if may_help {
            QueueingHint::Queue
        } else {
            QueueingHint::Skip
        }
    }
}

/// The object an event is about, before and after, for queueing hints.
#[derive(Debug, Clone, Default)]
pub enum EventObjects {
    /// Not known (watchers that report only the new state): hints queue.
    #[default]
    Unknown,
    /// A node: `old` is None when added, `new` is None when deleted.
    Node {
        /// Before the event.
        old: Option<Arc<Node>>,
        /// After the event.
        new: Option<Arc<Node>>,
    },
    /// A pod: `old` is None when added, `new` is None when deleted.
    Pod {
        /// Before the event.
        old: Option<Arc<Pod>>,
        /// After the event.
        new: Option<Arc<Pod>>,
    },
}

impl EventObjects {
    /// The node before and after, when the event is about a node.
    pub fn nodes(&self) -> Option<(Option<&Node>, Option<&Node>)> {
        match self {
            EventObjects::Node { old, new } => Some((old.as_deref(), new.as_deref())),
            _ => None,
        }
    }

    /// The pod before and after, when the event is about a pod.
    pub fn pods(&self) -> Option<(Option<&Pod>, Option<&Pod>)> {
        match self {
            EventObjects::Pod { old, new } => Some((old.as_deref(), new.as_deref())),
            _ => None,
        }
    }

    /// For a node added or updated: whether it `now` passes `check`, and
    /// whether it did before (false when added). None for anything else.
    pub fn node_change(&self, check: impl Fn(&Node) -> bool) -> Option<(bool, bool)> {
        let (old, Some(new)) = self.nodes()? else {
            return None;
        };
        Some((old.is_some_and(&check), check(new)))
    }
}

/// The usual node-event hint: queue when the added or updated node now
/// passes a check it failed before (or did not exist for); queue on
/// anything the hint cannot judge.
pub fn hint_node_now_passes(objects: &EventObjects, check: impl Fn(&Node) -> bool) -> QueueingHint {
    QueueingHint::queue_if(matches!(
        objects.node_change(check),
        None | Some((false, true))
    ))
}

impl ClusterEvent {
    /// True when `self` (an event a plugin registered) covers `happened`.
    pub fn matches(&self, happened: &ClusterEvent) -> bool {
        (self.resource == EventResource::Wildcard || self.resource == happened.resource)
            && self.action & happened.action != 0
    }
}

/// What plugins may read about the cluster beyond the node snapshot
/// (upstream's listers). The scheduler implements it from its informers;
/// tests use [`StaticLister`].
pub trait ClusterLister: Send + Sync {
    /// The PVC `namespace/name`.
    fn pvc(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>>;
    /// The PersistentVolume `name`.
    fn pv(&self, name: &str) -> Option<Arc<PersistentVolume>>;
    /// The StorageClass `name`.
    fn storage_class(&self, name: &str) -> Option<Arc<StorageClass>>;
    /// Every namespace's name and labels.
    fn namespaces(&self) -> Vec<(String, BTreeMap<String, String>)>;
    /// The labels of namespace `name` (None when it is unknown). The default
    /// scans [`ClusterLister::namespaces`]; informer-backed listers should
    /// look it up directly.
    fn namespace_labels(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.namespaces()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, labels)| labels)
    }
    /// The Services in `namespace` (PodTopologySpread builds default
    /// constraints' selectors from the Services selecting a pod). The default
    /// knows none.
    fn services(&self, _namespace: &str) -> Vec<Arc<Service>> {
        Vec::new()
    }
    /// The ReplicationController `namespace/name` (a pod's controller, for
    /// PodTopologySpread's default selector). The default knows none.
    fn replication_controller(
        &self,
        _namespace: &str,
        _name: &str,
    ) -> Option<Arc<ReplicationController>> {
        None
    }
    /// The ReplicaSet `namespace/name` (a pod's controller). The default
    /// knows none.
    fn replica_set(&self, _namespace: &str, _name: &str) -> Option<Arc<ReplicaSet>> {
        None
    }
    /// The StatefulSet `namespace/name` (a pod's controller). The default
    /// knows none.
    fn stateful_set(&self, _namespace: &str, _name: &str) -> Option<Arc<StatefulSet>> {
        None
    }
    /// A client for plugins that write to the API server (DefaultBinder,
    /// preemption); None in unit tests.
    fn api_client(&self) -> Option<kube::Client> {
        None
    }
    /// Every PodDisruptionBudget (preemption prefers victims whose budgets
    /// allow a disruption). The default knows none.
    fn pdbs(&self) -> Vec<Arc<PodDisruptionBudget>> {
        Vec::new()
    }
}

/// A [`ClusterLister`] over fixed objects (unit tests).
#[derive(Debug, Clone, Default)]
pub struct StaticLister {
    /// PVCs by `namespace/name`.
    pub pvcs: HashMap<String, Arc<PersistentVolumeClaim>>,
    /// PVs by name.
    pub pvs: HashMap<String, Arc<PersistentVolume>>,
    /// StorageClasses by name.
    pub storage_classes: HashMap<String, Arc<StorageClass>>,
    /// Namespaces and their labels.
    pub namespaces: Vec<(String, BTreeMap<String, String>)>,
    /// Services (every namespace).
    pub services: Vec<Arc<Service>>,
    /// ReplicationControllers by `namespace/name`.
    pub replication_controllers: HashMap<String, Arc<ReplicationController>>,
    /// ReplicaSets by `namespace/name`.
    pub replica_sets: HashMap<String, Arc<ReplicaSet>>,
    /// StatefulSets by `namespace/name`.
    pub stateful_sets: HashMap<String, Arc<StatefulSet>>,
    /// PodDisruptionBudgets (every namespace).
    pub pdbs: Vec<Arc<PodDisruptionBudget>>,
}

impl ClusterLister for StaticLister {
    fn pvc(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.pvcs.get(&format!("{namespace}/{name}")).cloned()
    }
    fn pv(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.pvs.get(name).cloned()
    }
    fn storage_class(&self, name: &str) -> Option<Arc<StorageClass>> {
        self.storage_classes.get(name).cloned()
    }
    fn namespaces(&self) -> Vec<(String, BTreeMap<String, String>)> {
        self.namespaces.clone()
    }
    fn services(&self, namespace: &str) -> Vec<Arc<Service>> {
        self.services
            .iter()
            .filter(|s| s.metadata.namespace.as_deref() == Some(namespace))
            .cloned()
            .collect()
    }
    fn replication_controller(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<Arc<ReplicationController>> {
        self.replication_controllers
            .get(&format!("{namespace}/{name}"))
            .cloned()
    }
    fn replica_set(&self, namespace: &str, name: &str) -> Option<Arc<ReplicaSet>> {
        self.replica_sets
            .get(&format!("{namespace}/{name}"))
            .cloned()
    }
    fn stateful_set(&self, namespace: &str, name: &str) -> Option<Arc<StatefulSet>> {
        self.stateful_sets
            .get(&format!("{namespace}/{name}"))
            .cloned()
    }
    fn pdbs(&self) -> Vec<Arc<PodDisruptionBudget>> {
        self.pdbs.clone()
    }
}

/// What a plugin factory gets besides its arguments.
#[derive(Clone)]
pub struct Handle {
    /// Cluster objects beyond the snapshot.
    pub lister: Arc<dyn ClusterLister>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

/// Builds a plugin from its `pluginConfig` args (None: defaults). An error
/// names the offending field, e.g. `scoringStrategy.type: Unsupported value`.
pub type PluginFactory =
    fn(args: Option<&serde_json::Value>, handle: &Handle) -> Result<Arc<dyn Plugin>, String>;
