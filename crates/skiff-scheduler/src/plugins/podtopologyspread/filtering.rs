//! PreFilter, Filter and the PreFilter extensions of PodTopologySpread
//! (the `DoNotSchedule` constraints).

use std::sync::Arc;

use super::common::{
    Constraint, DO_NOT_SCHEDULE, RequiredNodeAffinity, node_labels_match_constraints,
};
use super::{PodTopologySpread, counting};
use crate::framework::{
    CycleState, FilterPlugin, NodeInfo, PodInfo, PreFilterExtensions, PreFilterPlugin,
    PreFilterResult, Snapshot, Status,
};
use crate::plugins::domains::DomainCounts;

/// Where PreFilter leaves its state in the [`CycleState`].
pub(crate) const PRE_FILTER_STATE_KEY: &str = "PreFilterPodTopologySpread";

/// Placing the pod on the node would exceed a constraint's maxSkew.
pub const ERR_REASON_CONSTRAINTS_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints";
/// The node lacks a constraint's topology key.
pub const ERR_REASON_NODE_LABEL_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

/// No domain (the placeholders a new [`CriticalPaths`] starts with).
const NO_DOMAIN: u32 = u32::MAX;

/// The two domains (by [`DomainCounts`] id) with the fewest matching pods:
/// `[0]` has the minimum, `[1]` a count no lower. Kept up to date in O(1)
/// when preemption adds or removes pods (upstream's `criticalPaths`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CriticalPaths([(u32, i64); 2]);

impl CriticalPaths {
    pub(crate) fn new() -> Self {
        let none = (NO_DOMAIN, i64::from(i32::MAX));
        CriticalPaths([none, none])
    }

    /// Records that domain `id` now has `num` matching pods.
    pub(crate) fn update(&mut self, id: u32, num: i64) {
        let p = &mut self.0;
        let existing = if p[0].0 == id {
            Some(0)
        } else if p[1].0 == id {
            Some(1)
        } else {
            None
        };
        match existing {
            Some(i) => {
                p[i].1 = num;
                if p[0].1 > p[1].1 {
                    p.swap(0, 1);
                }
            }
            None if num < p[0].1 => {
                p[1] = std::mem::replace(&mut p[0], (id, num));
            }
            None if num < p[1].1 => p[1] = (id, num),
            None => {}
        }
    }

    /// The lowest count.
    fn min(&self) -> i64 {
        self.0[0].1
    }

    /// The least loaded domain and its count.
    #[cfg(test)]
    pub(crate) fn first(&self) -> (u32, i64) {
        self.0[0]
    }
}

/// A constraint's domains and counts, critical minimum and domain number
/// (tests compare states by it).
#[cfg(test)]
pub(crate) type ConstraintSummary = (Vec<(String, i64)>, i64, usize);

/// What PreFilter computes once per cycle for Filter.
#[derive(Debug, Clone)]
pub(crate) struct PreFilterState {
    pub(crate) constraints: Arc<[Constraint]>,
    /// Per constraint, the two least loaded domains.
    pub(crate) critical_paths: Vec<CriticalPaths>,
    /// Per constraint, matching pods per topology value.
    pub(crate) tp_value_to_match_num: Vec<Arc<DomainCounts>>,
    /// Per constraint, the number of eligible domains of its topology key
    /// (for minDomains).
    tp_key_to_domains_num: Arc<[usize]>,
    /// The incoming pod's required node affinity (node inclusion policy).
    required_node_affinity: Arc<RequiredNodeAffinity>,
    /// Per constraint, 1 when the incoming pod matches its selector.
    self_match: Vec<i64>,
}

impl PreFilterState {
    /// The global minimum for constraint `i`: 0 while there are fewer
    /// eligible domains than minDomains.
    fn min_match_num(&self, i: usize, c: &Constraint) -> i64 {
        let domains = self.tp_key_to_domains_num.get(i).copied().unwrap_or(0);
        if i64::try_from(domains).unwrap_or(i64::MAX) < i64::from(c.min_domains) {
            return 0;
        }
        self.critical_paths.get(i).map_or(0, CriticalPaths::min)
    }

    /// Per constraint: every domain's count sorted, the minimum of the
    /// critical paths, and the number of domains.
    #[cfg(test)]
    pub(crate) fn summary_for_test(&self) -> Vec<ConstraintSummary> {
        (0..self.constraints.len())
            .map(|i| {
                let mut counts: Vec<_> = self.tp_value_to_match_num[i]
                    .iter()
                    .map(|(v, n)| (v.to_owned(), n))
                    .collect();
                counts.sort();
                (
                    counts,
                    self.critical_paths[i].min(),
                    self.tp_key_to_domains_num[i],
                )
            })
            .collect()
    }

    /// Updates the counts as if `updated` were added (`delta` 1) to or
    /// removed (-1) from `node`.
    fn update_with_pod(
        &mut self,
        pod_to_schedule: &PodInfo,
        updated: &PodInfo,
        node: &NodeInfo,
        delta: i64,
    ) {
        if updated.namespace() != pod_to_schedule.namespace() || node.node.is_none() {
            return;
        }
        if !node_labels_match_constraints(node, &self.constraints) {
            return;
        }
        for (i, c) in self.constraints.iter().enumerate() {
            if !c.selector.matches(updated.labels())
                || !c.includes_node(&pod_to_schedule.pod, &self.required_node_affinity, node)
            {
                continue;
            }
            let Some(value) = c.value(node) else {
                continue;
            };
            let (id, n) = Arc::make_mut(&mut self.tp_value_to_match_num[i]).add(value, delta);
            self.critical_paths[i].update(id, n);
        }
    }
}

impl PodTopologySpread {
    /// Counts matching pods per domain of every hard constraint.
    fn pre_filter_state(
        &self,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> Result<Option<PreFilterState>, String> {
        let constraints = self
            .constraints(pod, DO_NOT_SCHEDULE)
            .map_err(|e| format!("get constraints from pod: {e}"))?;
        if constraints.is_empty() {
            return Ok(None);
        }
        let affinity = RequiredNodeAffinity::from_pod(&pod.pod);
        let tp_value_to_match_num = counting::count(
            &self.pre_filter_counts,
            pod,
            &constraints,
            &affinity,
            &snapshot.nodes,
        );
        // Per topology key, as upstream's map by key: the last constraint
        // with the key gives its domains.
        let tp_key_to_domains_num = constraints
            .iter()
            .map(|c| {
                constraints
                    .iter()
                    .rposition(|o| o.topology_key == c.topology_key)
                    .map_or(0, |j| tp_value_to_match_num[j].len())
            })
            .collect();
        let critical_paths = tp_value_to_match_num
            .iter()
            .map(|counts| {
                let mut paths = CriticalPaths::new();
                for (id, &n) in counts.counts.iter().enumerate() {
                    paths.update(u32::try_from(id).unwrap_or(NO_DOMAIN), n);
                }
                paths
            })
            .collect();
        let self_match = constraints
            .iter()
            .map(|c| i64::from(c.selector.matches(pod.labels())))
            .collect();
        Ok(Some(PreFilterState {
            self_match,
            constraints: constraints.into(),
            critical_paths,
            tp_value_to_match_num,
            tp_key_to_domains_num,
            required_node_affinity: Arc::new(affinity),
        }))
    }
}

fn missing_state() -> Status {
    Status::error(format!(
        "error reading {PRE_FILTER_STATE_KEY:?} from cycleState: not found"
    ))
}

impl PreFilterPlugin for PodTopologySpread {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        match self.pre_filter_state(pod, snapshot) {
            Err(e) => (None, Status::error(e)),
            Ok(None) => (None, Status::skip()),
            Ok(Some(s)) => {
                state.write(PRE_FILTER_STATE_KEY, s);
                (None, Status::success())
            }
        }
    }

    fn extensions(&self) -> Option<&dyn PreFilterExtensions> {
        Some(self)
    }
}

impl PreFilterExtensions for PodTopologySpread {
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

impl FilterPlugin for PodTopologySpread {
    fn reads_node_labels(&self) -> bool {
        true
    }

    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<PreFilterState>(PRE_FILTER_STATE_KEY) else {
            return missing_state();
        };
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = c.value(node) else {
                return Status::unresolvable(ERR_REASON_NODE_LABEL_NOT_MATCH);
            };
            // Matching pods in the node's domain, plus the pod itself if it
            // matches, may exceed the least loaded domain by maxSkew.
            let match_num = s.tp_value_to_match_num[i].get(value);
            let skew = match_num + s.self_match[i] - s.min_match_num(i, c);
            if skew > i64::from(c.max_skew) {
                return Status::unschedulable(ERR_REASON_CONSTRAINTS_NOT_MATCH);
            }
        }
        Status::success()
    }
}
