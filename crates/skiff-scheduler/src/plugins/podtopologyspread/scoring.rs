//! PreScore, Score and NormalizeScore of PodTopologySpread (the
//! `ScheduleAnyway` constraints): fewer matching pods in a node's domains
//! score higher.

use std::sync::Arc;

use super::PodTopologySpread;
use super::common::{
    Constraint, RequiredNodeAffinity, SCHEDULE_ANYWAY, count_pods_match_selector,
    node_labels_match_constraints,
};
use crate::framework::{
    CycleState, MAX_NODE_SCORE, NodeInfo, NodeScore, PodInfo, PreScorePlugin, ScorePlugin,
    Snapshot, Status, TopologyValue,
};
use crate::plugins::domains::DomainCounts;
use crate::plugins::fasthash::FastSet;

/// Where PreScore leaves its state in the [`CycleState`].
pub(crate) const PRE_SCORE_STATE_KEY: &str = "PreScorePodTopologySpread";

/// Marks ignored nodes between the two passes of NormalizeScore.
const INVALID_SCORE: i64 = -1;

/// What PreScore computes once per cycle for Score.
#[derive(Debug, Clone)]
pub(crate) struct PreScoreState {
    pub(crate) constraints: Vec<Constraint>,
    /// Feasible nodes missing a topology key: they score 0.
    pub(crate) ignored_nodes: FastSet<String>,
    /// Per constraint, matching pods per topology value of the feasible
    /// nodes (empty for hostname constraints: counted per node in Score).
    pub(crate) topology_value_to_pod_counts: Vec<DomainCounts>,
    /// Per constraint, log(domains + 2): counts in topologies with many
    /// domains weigh more, so small topologies are not watered down.
    pub(crate) topology_normalizing_weight: Vec<f64>,
}

/// upstream's `topologyNormalizingWeight`.
fn topology_normalizing_weight(size: usize) -> f64 {
    (size as f64 + 2.0).ln()
}

/// A domain's contribution: its matching pods weighted, plus `maxSkew - 1`
/// so that a larger maxSkew tolerates differences more.
fn score_for_count(count: i64, max_skew: i32, weight: f64) -> f64 {
    count as f64 * weight + f64::from(max_skew - 1)
}

fn read_state(state: &CycleState) -> Result<&PreScoreState, Status> {
    state
        .read::<PreScoreState>(PRE_SCORE_STATE_KEY)
        .ok_or_else(|| {
            Status::error(format!(
                "error reading {PRE_SCORE_STATE_KEY:?} from cycleState: not found"
            ))
        })
}

impl PodTopologySpread {
    /// Constraints, ignored nodes, domains and weights from the feasible
    /// nodes; the counts are filled from all nodes afterwards.
    fn init_pre_score_state(
        &self,
        pod: &PodInfo,
        filtered: &[Arc<NodeInfo>],
        require_all_topologies: bool,
    ) -> Result<PreScoreState, String> {
        let constraints = self.constraints(pod, SCHEDULE_ANYWAY)?;
        let mut s = PreScoreState {
            topology_value_to_pod_counts: vec![DomainCounts::default(); constraints.len()],
            topology_normalizing_weight: Vec::with_capacity(constraints.len()),
            ignored_nodes: FastSet::default(),
            constraints,
        };
        if s.constraints.is_empty() {
            return Ok(s);
        }
        let missing = TopologyValue::new("");
        for node in filtered {
            if require_all_topologies && !node_labels_match_constraints(node, &s.constraints) {
                s.ignored_nodes.insert(node.name().to_owned());
                continue;
            }
            for (i, c) in s.constraints.iter().enumerate() {
                if c.is_hostname {
                    continue;
                }
                // Nodes without the key share the "" domain.
                let value = c.value(node).unwrap_or(missing);
                s.topology_value_to_pod_counts[i].add(value, 0);
            }
        }
        for (i, c) in s.constraints.iter().enumerate() {
            let size = if c.is_hostname {
                filtered.len() - s.ignored_nodes.len()
            } else {
                s.topology_value_to_pod_counts[i].len()
            };
            s.topology_normalizing_weight
                .push(topology_normalizing_weight(size));
        }
        Ok(s)
    }
}

impl PreScorePlugin for PodTopologySpread {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status {
        if snapshot.nodes.is_empty() {
            return Status::skip();
        }
        // Only the system defaults let nodes without a zone label still be
        // spread by hostname.
        let has_own = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_ref())
            .is_some_and(|c| !c.is_empty());
        let require_all_topologies = has_own || !self.system_defaulted;
        let mut s = match self.init_pre_score_state(pod, nodes, require_all_topologies) {
            Ok(s) => s,
            Err(e) => return Status::error(format!("calculating preScoreState: {e}")),
        };
        if s.constraints.is_empty() {
            return Status::skip();
        }
        let affinity = RequiredNodeAffinity::from_pod(&pod.pod);
        let missing = TopologyValue::new("");
        // Hostname constraints are counted per node in Score.
        if s.constraints.iter().all(|c| c.is_hostname) {
            state.write(PRE_SCORE_STATE_KEY, s);
            return Status::success();
        }
        for node in &snapshot.nodes {
            if require_all_topologies && !node_labels_match_constraints(node, &s.constraints) {
                continue;
            }
            for (i, c) in s.constraints.iter().enumerate() {
                if c.is_hostname {
                    continue;
                }
                let counts = &mut s.topology_value_to_pod_counts[i];
                // Only domains of feasible nodes are counted.
                let Some(id) = counts.domains.get(c.value(node).unwrap_or(missing)) else {
                    continue;
                };
                if !c.includes_node(&pod.pod, &affinity, node) {
                    continue;
                }
                counts.counts[id as usize] +=
                    count_pods_match_selector(&node.pods, &c.selector, pod.namespace());
            }
        }
        state.write(PRE_SCORE_STATE_KEY, s);
        Status::success()
    }
}

impl ScorePlugin for PodTopologySpread {
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        let s = match read_state(state) {
            Ok(s) => s,
            Err(status) => return (0, status),
        };
        if !s.ignored_nodes.is_empty() && s.ignored_nodes.contains(node.name()) {
            return (0, Status::success());
        }
        let mut score = 0.0;
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = c.value(node) else {
                continue;
            };
            let count = if c.is_hostname {
                count_pods_match_selector(&node.pods, &c.selector, pod.namespace())
            } else {
                s.topology_value_to_pod_counts[i].get(value)
            };
            score += score_for_count(count, c.max_skew, s.topology_normalizing_weight[i]);
        }
        (score.round() as i64, Status::success())
    }

    /// Reverses the scores onto [0, MAX_NODE_SCORE]: the node with the
    /// fewest matching pods gets the most; ignored nodes get 0.
    fn normalize_scores(
        &self,
        state: &CycleState,
        _pod: &PodInfo,
        scores: &mut [NodeScore<'_>],
    ) -> Status {
        let s = match read_state(state) {
            Ok(s) => s,
            Err(status) => return status,
        };
        let mut min = i64::MAX;
        let mut max = 0;
        for ns in scores.iter_mut() {
            if !s.ignored_nodes.is_empty() && s.ignored_nodes.contains(ns.name) {
                ns.score = INVALID_SCORE;
                continue;
            }
            min = min.min(ns.score);
            max = max.max(ns.score);
        }
        for ns in scores.iter_mut() {
            ns.score = if ns.score == INVALID_SCORE {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - ns.score) / max
            };
        }
        Status::success()
    }
}
