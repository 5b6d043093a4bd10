//! PreFilter, Filter and the PreFilter extensions of PodTopologySpread
//! (the `DoNotSchedule` constraints).

use crate::plugins::fasthash::FastMap;
use std::sync::Arc;

use super::PodTopologySpread;
use super::common::{
    Constraint, DO_NOT_SCHEDULE, RequiredNodeAffinity, count_pods_match_selector,
    node_labels_match_constraints,
};
use crate::framework::{
    CycleState, FilterPlugin, NodeInfo, PodInfo, PreFilterExtensions, PreFilterPlugin,
    PreFilterResult, Snapshot, Status,
};

/// Where PreFilter leaves its state in the [`CycleState`].
pub(crate) const PRE_FILTER_STATE_KEY: &str = "PreFilterPodTopologySpread";

/// Placing the pod on the node would exceed a constraint's maxSkew.
pub const ERR_REASON_CONSTRAINTS_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints";
/// The node lacks a constraint's topology key.
pub const ERR_REASON_NODE_LABEL_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

/// The two domains with the fewest matching pods: `[0]` has the minimum,
/// `[1]` a count no lower. Kept up to date in O(1) when preemption adds or
/// removes pods (upstream's `criticalPaths`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CriticalPaths([(String, i64); 2]);

impl CriticalPaths {
    pub(crate) fn new() -> Self {
        let none = (String::new(), i64::from(i32::MAX));
        CriticalPaths([none.clone(), none])
    }

    /// Records that domain `value` now has `num` matching pods.
    pub(crate) fn update(&mut self, value: &str, num: i64) {
        let p = &mut self.0;
        let existing = if p[0].0 == value {
            Some(0)
        } else if p[1].0 == value {
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
                p[1] = std::mem::replace(&mut p[0], (value.to_owned(), num));
            }
            None if num < p[1].1 => p[1] = (value.to_owned(), num),
            None => {}
        }
    }

    /// The lowest count.
    fn min(&self) -> i64 {
        self.0[0].1
    }

    /// The least loaded domain and its count.
    #[cfg(test)]
    pub(crate) fn first(&self) -> (&str, i64) {
        (self.0[0].0.as_str(), self.0[0].1)
    }
}

/// What PreFilter computes once per cycle for Filter.
#[derive(Debug, Clone)]
pub(crate) struct PreFilterState {
    pub(crate) constraints: Arc<[Constraint]>,
    /// Per constraint, the two least loaded domains.
    pub(crate) critical_paths: Vec<CriticalPaths>,
    /// Per constraint, matching pods per topology value.
    pub(crate) tp_value_to_match_num: Vec<FastMap<String, i64>>,
    /// Per topology key, the number of eligible domains (for minDomains).
    pub(crate) tp_key_to_domains_num: Arc<FastMap<String, usize>>,
    /// The incoming pod's required node affinity (node inclusion policy).
    required_node_affinity: Arc<RequiredNodeAffinity>,
    /// Per constraint, 1 when the incoming pod matches its selector.
    self_match: Vec<i64>,
}

impl PreFilterState {
    /// The global minimum for constraint `i`: 0 while there are fewer
    /// eligible domains than minDomains.
    fn min_match_num(&self, i: usize, c: &Constraint) -> i64 {
        let domains = self
            .tp_key_to_domains_num
            .get(&c.topology_key)
            .copied()
            .unwrap_or(0);
        if i64::try_from(domains).unwrap_or(i64::MAX) < i64::from(c.min_domains) {
            return 0;
        }
        self.critical_paths.get(i).map_or(0, CriticalPaths::min)
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
        let labels = node.labels();
        if !node_labels_match_constraints(labels, &self.constraints) {
            return;
        }
        for (i, c) in self.constraints.iter().enumerate() {
            if !c.selector.matches(updated.labels())
                || !c.includes_node(&pod_to_schedule.pod, &self.required_node_affinity, node)
            {
                continue;
            }
            let Some(value) = labels.get(&c.topology_key) else {
                continue;
            };
            let counts = &mut self.tp_value_to_match_num[i];
            let n = add_count(counts, value, delta);
            self.critical_paths[i].update(value, n);
        }
    }
}

/// Adds `delta` to `value`'s count and returns the new count; allocates only
/// for a new value.
fn add_count(counts: &mut FastMap<String, i64>, value: &str, delta: i64) -> i64 {
    if let Some(n) = counts.get_mut(value) {
        *n += delta;
        return *n;
    }
    counts.insert(value.to_owned(), delta);
    delta
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
        let affinity = RequiredNodeAffinity::new(&pod.pod);
        let mut tp_value_to_match_num = vec![FastMap::default(); constraints.len()];
        for node in &snapshot.nodes {
            let labels = node.labels();
            if !node_labels_match_constraints(labels, &constraints) {
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if !c.includes_node(&pod.pod, &affinity, node) {
                    continue;
                }
                let Some(value) = labels.get(&c.topology_key) else {
                    continue;
                };
                let count = count_pods_match_selector(&node.pods, &c.selector, pod.namespace());
                add_count(&mut tp_value_to_match_num[i], value, count);
            }
        }
        let mut tp_key_to_domains_num = FastMap::default();
        for (c, counts) in constraints.iter().zip(&tp_value_to_match_num) {
            tp_key_to_domains_num.insert(c.topology_key.clone(), counts.len());
        }
        let critical_paths = tp_value_to_match_num
            .iter()
            .map(|counts| {
                let mut paths = CriticalPaths::new();
                for (value, &n) in counts {
                    paths.update(value, n);
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
            tp_key_to_domains_num: Arc::new(tp_key_to_domains_num),
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
    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<PreFilterState>(PRE_FILTER_STATE_KEY) else {
            return missing_state();
        };
        let labels = node.labels();
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = labels.get(&c.topology_key) else {
                return Status::unresolvable(ERR_REASON_NODE_LABEL_NOT_MATCH);
            };
            // Matching pods in the node's domain, plus the pod itself if it
            // matches, may exceed the least loaded domain by maxSkew.
            let match_num = s.tp_value_to_match_num[i].get(value).copied().unwrap_or(0);
            let skew = match_num + s.self_match[i] - s.min_match_num(i, c);
            if skew > i64::from(c.max_skew) {
                return Status::unschedulable(ERR_REASON_CONSTRAINTS_NOT_MATCH);
            }
        }
        Status::success()
    }
}
