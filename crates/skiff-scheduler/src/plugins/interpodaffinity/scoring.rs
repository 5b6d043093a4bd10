//! PreScore, Score and NormalizeScore of InterPodAffinity.

use std::collections::BTreeMap;

use std::sync::Arc;

use super::{InterPodAffinity, TopologyCounts, term_matches};
use crate::framework::node_info::{AffinityTerm, WeightedAffinityTerm};
use crate::framework::{
    CycleState, MAX_NODE_SCORE, NodeInfo, NodeScore, PodInfo, PreScorePlugin, ScorePlugin,
    Snapshot, Status,
};

/// Where PreScore leaves its state in the [`CycleState`].
pub(crate) const PRE_SCORE_STATE_KEY: &str = "PreScoreInterPodAffinity";

/// Summed weights per topology pair.
pub(crate) type TopologyScore = TopologyCounts;

/// What PreScore computes once per cycle for Score.
#[derive(Debug, Clone)]
pub(crate) struct PreScoreState {
    /// Summed weights per topology pair; a node scores the sum over the
    /// pairs it belongs to.
    pub(crate) topology_score: TopologyScore,
}

/// Adds `weight` to the pair of `term` on the existing pod's node when
/// `term` selects `pod`.
fn process_term(
    score: &mut TopologyScore,
    term: &AffinityTerm,
    weight: i64,
    pod: &PodInfo,
    ns_labels: Option<&BTreeMap<String, String>>,
    node: &NodeInfo,
) {
    if term_matches(term, pod, ns_labels) {
        score.update(node, &term.topology_key, term.topology_key_hash, weight);
    }
}

/// The incoming pod's weighted terms, namespaces merged, and what else
/// scoring an existing pod needs.
struct Incoming<'a> {
    pod: &'a PodInfo,
    preferred_affinity: Vec<WeightedAffinityTerm>,
    preferred_anti_affinity: Vec<WeightedAffinityTerm>,
    namespace_labels: Option<Arc<BTreeMap<String, String>>>,
    hard_pod_affinity_weight: i64,
}

impl Incoming<'_> {
    /// Adds what `existing` (running on `node`)
    /// contributes: the incoming pod's preferred terms that select it, and
    /// its own required affinity (hard weight) and preferred terms that
    /// select the incoming pod.
    fn process_existing_pod(&self, score: &mut TopologyScore, existing: &PodInfo, node: &NodeInfo) {
        // The incoming pod's terms have their namespaceSelector merged, so
        // the existing pod's namespace labels are not needed.
        for w in &self.preferred_affinity {
            process_term(score, &w.term, i64::from(w.weight), existing, None, node);
        }
        for w in &self.preferred_anti_affinity {
            process_term(score, &w.term, -i64::from(w.weight), existing, None, node);
        }
        let ns_labels = self.namespace_labels.as_deref();
        if self.hard_pod_affinity_weight > 0 {
            for t in &existing.required_affinity_terms {
                process_term(
                    score,
                    t,
                    self.hard_pod_affinity_weight,
                    self.pod,
                    ns_labels,
                    node,
                );
            }
        }
        for w in &existing.preferred_affinity_terms {
            process_term(
                score,
                &w.term,
                i64::from(w.weight),
                self.pod,
                ns_labels,
                node,
            );
        }
        for w in &existing.preferred_anti_affinity_terms {
            process_term(
                score,
                &w.term,
                -i64::from(w.weight),
                self.pod,
                ns_labels,
                node,
            );
        }
    }
}

/// Whether `existing` can add to the score of a pod without preferred terms
/// of its own: only through its required affinity (with a hard weight) or
/// its preferred terms; required anti-affinity never scores.
fn contributes_without_preferred_terms(existing: &PodInfo, incoming: &Incoming<'_>) -> bool {
    (incoming.hard_pod_affinity_weight > 0 && !existing.required_affinity_terms.is_empty())
        || !existing.preferred_affinity_terms.is_empty()
        || !existing.preferred_anti_affinity_terms.is_empty()
}

impl InterPodAffinity {
    fn merge_weighted(&self, terms: &[WeightedAffinityTerm]) -> Vec<WeightedAffinityTerm> {
        self.merge_namespaces(terms.iter().map(|w| &w.term))
            .into_iter()
            .zip(terms)
            .map(|(term, w)| WeightedAffinityTerm {
                term,
                weight: w.weight,
            })
            .collect()
    }
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

impl PreScorePlugin for InterPodAffinity {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status {
        if nodes.is_empty() {
            return Status::skip();
        }
        let has_constraints = !pod.preferred_affinity_terms.is_empty()
            || !pod.preferred_anti_affinity_terms.is_empty();
        if self.args.ignore_preferred_terms_of_existing_pods && !has_constraints {
            return Status::skip();
        }
        let incoming = Incoming {
            pod,
            preferred_affinity: self.merge_weighted(&pod.preferred_affinity_terms),
            preferred_anti_affinity: self.merge_weighted(&pod.preferred_anti_affinity_terms),
            namespace_labels: self.namespace_labels(pod),
            hard_pod_affinity_weight: i64::from(self.args.hard_pod_affinity_weight),
        };
        // Without preferred terms of its own, only pods with affinity can
        // contribute.
        let all_nodes = if has_constraints {
            &snapshot.nodes
        } else {
            &snapshot.have_pods_with_affinity
        };
        let mut topology_score = TopologyScore::default();
        for node in all_nodes {
            // Without labels a node is in no domain.
            if node.labels().is_empty() {
                continue;
            }
            let pods = if has_constraints {
                &node.pods
            } else {
                &node.pods_with_affinity
            };
            for existing in pods {
                if has_constraints || contributes_without_preferred_terms(existing, &incoming) {
                    incoming.process_existing_pod(&mut topology_score, existing, node);
                }
            }
        }
        if !topology_score.has_pairs() {
            return Status::skip();
        }
        state.write(PRE_SCORE_STATE_KEY, PreScoreState { topology_score });
        Status::success()
    }
}

impl ScorePlugin for InterPodAffinity {
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        let s = match read_state(state) {
            Ok(s) => s,
            Err(status) => return (0, status),
        };
        (s.topology_score.sum(node), Status::success())
    }

    /// Scales the scores linearly so the lowest maps to 0 and the highest
    /// to [`MAX_NODE_SCORE`] (all 0 when they are equal).
    fn normalize_scores(
        &self,
        state: &CycleState,
        _pod: &PodInfo,
        scores: &mut [NodeScore],
    ) -> Status {
        let s = match read_state(state) {
            Ok(s) => s,
            Err(status) => return status,
        };
        if !s.topology_score.has_pairs() {
            return Status::success();
        }
        let min = scores.iter().map(|s| s.score).min().unwrap_or(0);
        let max = scores.iter().map(|s| s.score).max().unwrap_or(0);
        let diff = max - min;
        for s in scores.iter_mut() {
            s.score = if diff > 0 {
                // Truncated like upstream's int64(float64) conversion.
                (MAX_NODE_SCORE as f64 * ((s.score - min) as f64 / diff as f64)) as i64
            } else {
                0
            };
        }
        Status::success()
    }
}
