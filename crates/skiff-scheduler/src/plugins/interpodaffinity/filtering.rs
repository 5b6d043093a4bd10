//! PreFilter, Filter and the PreFilter extensions of InterPodAffinity.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{InterPodAffinity, TopologyCounts, counting, pod_matches_all_terms, term_matches};
use crate::framework::node_info::AffinityTerm;
use crate::framework::{
    CycleState, FilterPlugin, NodeInfo, PodInfo, PreFilterExtensions, PreFilterPlugin,
    PreFilterResult, Snapshot, Status,
};

/// Where PreFilter leaves its state in the [`CycleState`].
pub(crate) const PRE_FILTER_STATE_KEY: &str = "PreFilterInterPodAffinity";

/// The node would break an existing pod's required anti-affinity.
pub const ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";
/// The node does not satisfy the pod's required affinity.
pub const ERR_REASON_AFFINITY_RULES_NOT_MATCH: &str = "node(s) didn't match pod affinity rules";
/// The node does not satisfy the pod's required anti-affinity.
pub const ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH: &str =
    "node(s) didn't match pod anti-affinity rules";

/// What PreFilter computes once per cycle for Filter.
#[derive(Debug, Clone)]
pub(crate) struct PreFilterState {
    /// Existing pods whose required anti-affinity terms select the incoming
    /// pod, per topology pair of their node.
    pub(crate) existing_anti_affinity_counts: Arc<TopologyCounts>,
    /// Existing pods matching all the incoming pod's required affinity
    /// terms, per topology pair of each term.
    pub(crate) affinity_counts: Arc<TopologyCounts>,
    /// Existing pods matching one of the incoming pod's required
    /// anti-affinity terms, per topology pair of that term.
    pub(crate) anti_affinity_counts: Arc<TopologyCounts>,
    /// The incoming pod's required affinity terms, namespaceSelector merged.
    affinity_terms: Arc<[AffinityTerm]>,
    /// The incoming pod's required anti-affinity terms, merged likewise.
    anti_affinity_terms: Arc<[AffinityTerm]>,
    /// The incoming pod matches all its own affinity terms.
    self_match: bool,
    /// Labels of the incoming pod's namespace.
    namespace_labels: Option<Arc<BTreeMap<String, String>>>,
}

impl PreFilterState {
    /// Updates the counts as if `updated` were added (`delta` 1) to or
    /// removed (-1) from `node`.
    fn update_with_pod(
        &mut self,
        pod_to_schedule: &PodInfo,
        updated: &PodInfo,
        node: &NodeInfo,
        delta: i64,
    ) {
        for t in &updated.required_anti_affinity_terms {
            if term_matches(t, pod_to_schedule, self.namespace_labels.as_deref()) {
                Arc::make_mut(&mut self.existing_anti_affinity_counts).update(
                    node,
                    &t.topology_key,
                    t.topology_key_hash,
                    delta,
                );
            }
        }
        if pod_matches_all_terms(&self.affinity_terms, updated) {
            for t in self.affinity_terms.iter() {
                Arc::make_mut(&mut self.affinity_counts).update(
                    node,
                    &t.topology_key,
                    t.topology_key_hash,
                    delta,
                );
            }
        }
        for t in self.anti_affinity_terms.iter() {
            // The incoming pod's terms have their namespaceSelector merged,
            // so the existing pod's namespace labels are not needed.
            if term_matches(t, updated, None) {
                Arc::make_mut(&mut self.anti_affinity_counts).update(
                    node,
                    &t.topology_key,
                    t.topology_key_hash,
                    delta,
                );
            }
        }
    }
}

/// Adds the existing pods on `node` whose required anti-affinity selects
/// `pod`.
fn count_existing_anti_affinity(
    counts: &mut TopologyCounts,
    pod: &PodInfo,
    ns_labels: Option<&BTreeMap<String, String>>,
    node: &NodeInfo,
) {
    for existing in &node.pods_with_required_anti_affinity {
        for t in &existing.required_anti_affinity_terms {
            if term_matches(t, pod, ns_labels) {
                counts.update(node, &t.topology_key, t.topology_key_hash, 1);
            }
        }
    }
}

fn read_state(state: &CycleState) -> Result<&PreFilterState, Status> {
    state
        .read::<PreFilterState>(PRE_FILTER_STATE_KEY)
        .ok_or_else(missing_state)
}

fn missing_state() -> Status {
    Status::error(format!(
        "error reading {PRE_FILTER_STATE_KEY:?} from cycleState: not found"
    ))
}

impl PreFilterPlugin for InterPodAffinity {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        let affinity_terms: Arc<[AffinityTerm]> =
            self.merge_namespaces(&pod.required_affinity_terms).into();
        let anti_affinity_terms: Arc<[AffinityTerm]> = self
            .merge_namespaces(&pod.required_anti_affinity_terms)
            .into();
        let namespace_labels = self.namespace_labels(pod);
        let ns_labels = namespace_labels.as_deref();
        let (existing, affinity_counts, anti_affinity_counts) =
            if affinity_terms.is_empty() && anti_affinity_terms.is_empty() {
                let mut counts = TopologyCounts::default();
                for node in &snapshot.have_pods_with_required_anti_affinity {
                    count_existing_anti_affinity(&mut counts, pod, ns_labels, node);
                }
                (Arc::new(counts), Arc::default(), Arc::default())
            } else {
                // Every node counts: keep the per-node results for the next pod
                // with the same terms (replicas of one workload).
                let totals = counting::count(
                    &self.pre_filter_counts,
                    pod,
                    &namespace_labels,
                    &affinity_terms,
                    &anti_affinity_terms,
                    &snapshot.nodes,
                );
                (
                    totals.existing_anti_affinity,
                    totals.affinity,
                    totals.anti_affinity,
                )
            };
        if existing.is_empty() && affinity_terms.is_empty() && anti_affinity_terms.is_empty() {
            return (None, Status::skip());
        }
        let self_match = pod_matches_all_terms(&affinity_terms, pod);
        state.write(
            PRE_FILTER_STATE_KEY,
            PreFilterState {
                existing_anti_affinity_counts: existing,
                affinity_counts,
                anti_affinity_counts,
                affinity_terms,
                anti_affinity_terms,
                self_match,
                namespace_labels,
            },
        );
        (None, Status::success())
    }

    fn extensions(&self) -> Option<&dyn PreFilterExtensions> {
        Some(self)
    }
}

impl PreFilterExtensions for InterPodAffinity {
    fn add_pod(
        &self,
        state: &mut CycleState,
        pod_to_schedule: &PodInfo,
        pod_to_add: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        let Some(s) = state.read_mut::<PreFilterState>(PRE_FILTER_STATE_KEY) else {
            return missing_state();
        };
        s.update_with_pod(pod_to_schedule, pod_to_add, node, 1);
        Status::success()
    }

    fn remove_pod(
        &self,
        state: &mut CycleState,
        pod_to_schedule: &PodInfo,
        pod_to_remove: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        let Some(s) = state.read_mut::<PreFilterState>(PRE_FILTER_STATE_KEY) else {
            return missing_state();
        };
        s.update_with_pod(pod_to_schedule, pod_to_remove, node, -1);
        Status::success()
    }
}

/// Every required affinity term's topology key is on the node and, per
/// term, some matching pod runs in the node's domain — or no pod matches
/// anywhere and the pod matches its own terms (the first of a group of pods
/// with affinity to each other).
fn satisfy_pod_affinity(s: &PreFilterState, node: &NodeInfo) -> bool {
    let mut pods_exist = true;
    for t in s.affinity_terms.iter() {
        let Some(value) = node.label_value_hashed(&t.topology_key, t.topology_key_hash) else {
            return false;
        };
        if pods_exist
            && s.affinity_counts
                .get_value(&t.topology_key, t.topology_key_hash, value)
                <= 0
        {
            pods_exist = false;
        }
    }
    pods_exist || (s.affinity_counts.is_empty() && s.self_match)
}

/// No pod matching one of the pod's anti-affinity terms runs in the node's
/// domain of that term.
fn satisfy_pod_anti_affinity(s: &PreFilterState, node: &NodeInfo) -> bool {
    if s.anti_affinity_counts.is_empty() {
        return true;
    }
    !s.anti_affinity_terms.iter().any(|t| {
        s.anti_affinity_counts
            .get(node, &t.topology_key, t.topology_key_hash)
            > 0
    })
}

/// No existing pod whose anti-affinity selects the incoming pod runs in a
/// domain the node belongs to.
fn satisfy_existing_pods_anti_affinity(s: &PreFilterState, node: &NodeInfo) -> bool {
    s.existing_anti_affinity_counts.is_empty()
        || !s.existing_anti_affinity_counts.any_positive(node)
}

impl FilterPlugin for InterPodAffinity {
    fn reads_node_labels(&self) -> bool {
        true
    }

    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let s = match read_state(state) {
            Ok(s) => s,
            Err(status) => return status,
        };
        if !satisfy_pod_affinity(s, node) {
            return Status::unresolvable(ERR_REASON_AFFINITY_RULES_NOT_MATCH);
        }
        if !satisfy_pod_anti_affinity(s, node) {
            return Status::unschedulable(ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH);
        }
        if !satisfy_existing_pods_anti_affinity(s, node) {
            return Status::unschedulable(ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH);
        }
        Status::success()
    }
}
