//! PreScore, Score and NormalizeScore of InterPodAffinity.

use std::collections::BTreeMap;

use std::sync::Arc;

use super::{InterPodAffinity, TopologyCounts, counting, term_matches};
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
    pub(crate) topology_score: Arc<TopologyScore>,
    /// Some existing pod contributed to a pair (even if weights cancel).
    pub(crate) has_pairs: bool,
}

/// Emits (`term`, `weight`) when `term` selects `pod`.
fn process_term(
    emit: &mut impl FnMut(&AffinityTerm, i64),
    term: &AffinityTerm,
    weight: i64,
    pod: &PodInfo,
    ns_labels: Option<&BTreeMap<String, String>>,
) {
    if term_matches(term, pod, ns_labels) {
        emit(term, weight);
    }
}

/// The incoming pod's weighted terms, namespaces merged, and what else
/// scoring an existing pod needs.
pub(super) struct Incoming<'a> {
    pub(super) pod: &'a PodInfo,
    pub(super) preferred_affinity: Vec<WeightedAffinityTerm>,
    pub(super) preferred_anti_affinity: Vec<WeightedAffinityTerm>,
    pub(super) namespace_labels: Option<Arc<BTreeMap<String, String>>>,
    pub(super) hard_pod_affinity_weight: i64,
}

impl Incoming<'_> {
    /// Emits each term and weight `existing` contributes: the incoming
    /// pod's preferred terms that select it, and its own required affinity
    /// (hard weight) and preferred terms that select the incoming pod.
    pub(super) fn process_existing_pod(
        &self,
        emit: &mut impl FnMut(&AffinityTerm, i64),
        existing: &PodInfo,
    ) {
        // The incoming pod's terms have their namespaceSelector merged, so
        // the existing pod's namespace labels are not needed.
        for w in &self.preferred_affinity {
            process_term(emit, &w.term, i64::from(w.weight), existing, None);
        }
        for w in &self.preferred_anti_affinity {
            process_term(emit, &w.term, -i64::from(w.weight), existing, None);
        }
        let ns_labels = self.namespace_labels.as_deref();
        if self.hard_pod_affinity_weight > 0 {
            for t in &existing.required_affinity_terms {
                process_term(emit, t, self.hard_pod_affinity_weight, self.pod, ns_labels);
            }
        }
        for w in &existing.preferred_affinity_terms {
            process_term(emit, &w.term, i64::from(w.weight), self.pod, ns_labels);
        }
        for w in &existing.preferred_anti_affinity_terms {
            process_term(emit, &w.term, -i64::from(w.weight), self.pod, ns_labels);
        }
    }
}

/// Whether `existing` can add to the score of a pod without preferred terms
/// of its own: only through its required affinity (with a hard weight) or
/// its preferred terms; required anti-affinity never scores.
pub(super) fn contributes_without_preferred_terms(
    existing: &PodInfo,
    incoming: &Incoming<'_>,
) -> bool {
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
        // Without preferred terms of its own, only pods with affinity can
        // add to the score (as upstream, which then lists only their
        // nodes): with none anywhere there is nothing to count.
        if !has_constraints && snapshot.have_pods_with_affinity.is_empty() {
            return Status::skip();
        }
        let incoming = Incoming {
            pod,
            preferred_affinity: self.merge_weighted(&pod.preferred_affinity_terms),
            preferred_anti_affinity: self.merge_weighted(&pod.preferred_anti_affinity_terms),
            namespace_labels: self.namespace_labels(pod),
            hard_pod_affinity_weight: i64::from(self.args.hard_pod_affinity_weight),
        };
        let (topology_score, has_pairs) = counting::score(
            &self.pre_score_counts,
            &incoming,
            has_constraints,
            &snapshot.nodes,
        );
        if !has_pairs {
            return Status::skip();
        }
        state.write(
            PRE_SCORE_STATE_KEY,
            PreScoreState {
                topology_score,
                has_pairs,
            },
        );
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
        scores: &mut [NodeScore<'_>],
    ) -> Status {
        let s = match read_state(state) {
            Ok(s) => s,
            Err(status) => return status,
        };
        if !s.has_pairs {
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
