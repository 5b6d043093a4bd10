//! PreFilter's counts over every node for a pod with required terms, kept
//! across cycles for pods with the same inputs (see
//! [`crate::plugins::incremental`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::scoring::{Incoming, contributes_without_preferred_terms};
use super::{TopologyCounts, pod_matches_all_terms, term_matches};
use crate::framework::node_info::{AffinityTerm, WeightedAffinityTerm};
use crate::framework::{NodeInfo, PodInfo};
use crate::plugins::domains::PairId;
use crate::plugins::incremental::SharedNodeResults;

/// Which count a node's pair adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Table {
    ExistingAntiAffinity,
    Affinity,
    AntiAffinity,
}

/// A node's result: one entry per matching (pod, term).
pub(super) type NodeCounts = Box<[(Table, PairId)]>;

/// Everything a node's [`NodeCounts`] depends on besides the node.
#[derive(Debug, PartialEq)]
pub(super) struct CountsKey {
    namespace: String,
    labels: BTreeMap<String, String>,
    namespace_labels: Option<Arc<BTreeMap<String, String>>>,
    affinity_terms: Arc<[AffinityTerm]>,
    anti_affinity_terms: Arc<[AffinityTerm]>,
}

/// The three counts of [`super::filtering`]'s PreFilter state, shared with
/// the cycle's state (the next cycle copies a table only if that state is
/// still alive).
#[derive(Debug, Default)]
pub(super) struct Totals {
    pub(super) existing_anti_affinity: Arc<TopologyCounts>,
    pub(super) affinity: Arc<TopologyCounts>,
    pub(super) anti_affinity: Arc<TopologyCounts>,
}

impl Totals {
    /// The table, copied first if a cycle's state still shares it.
    fn table(&mut self, t: Table) -> &mut TopologyCounts {
        Arc::make_mut(match t {
            Table::ExistingAntiAffinity => &mut self.existing_anti_affinity,
            Table::Affinity => &mut self.affinity,
            Table::AntiAffinity => &mut self.anti_affinity,
        })
    }
}

/// The kept counts of a [`super::InterPodAffinity`].
pub(super) type PreFilterCounts = SharedNodeResults<CountsKey, NodeCounts, Totals>;

/// Counts, over every node, the existing pods whose required anti-affinity
/// selects `pod`, and those matching the pod's (namespace-merged) required
/// affinity (all terms) and anti-affinity (each term).
pub(super) fn count(
    cache: &PreFilterCounts,
    pod: &PodInfo,
    namespace_labels: &Option<Arc<BTreeMap<String, String>>>,
    affinity_terms: &Arc<[AffinityTerm]>,
    anti_affinity_terms: &Arc<[AffinityTerm]>,
    nodes: &[Arc<NodeInfo>],
) -> Totals {
    let key = CountsKey {
        namespace: pod.namespace().to_owned(),
        labels: pod.labels().clone(),
        namespace_labels: namespace_labels.clone(),
        affinity_terms: affinity_terms.clone(),
        anti_affinity_terms: anti_affinity_terms.clone(),
    };
    let ns_labels = namespace_labels.as_deref();
    let mut cache = cache.lock();
    let totals = cache.refresh(
        key,
        nodes,
        |totals, node| {
            let mut out = Vec::new();
            for existing in &node.pods_with_required_anti_affinity {
                for t in &existing.required_anti_affinity_terms {
                    if term_matches(t, pod, ns_labels) {
                        out.extend(
                            totals
                                .table(Table::ExistingAntiAffinity)
                                .intern(node, &t.topology_key, t.topology_key_hash)
                                .map(|id| (Table::ExistingAntiAffinity, id)),
                        );
                    }
                }
            }
            for existing in &node.pods {
                if pod_matches_all_terms(affinity_terms, existing) {
                    for t in affinity_terms.iter() {
                        out.extend(
                            totals
                                .table(Table::Affinity)
                                .intern(node, &t.topology_key, t.topology_key_hash)
                                .map(|id| (Table::Affinity, id)),
                        );
                    }
                }
                for t in anti_affinity_terms.iter() {
                    // The incoming pod's terms have their namespaceSelector
                    // merged: the existing pod's namespace labels are not
                    // needed.
                    if term_matches(t, existing, None) {
                        out.extend(
                            totals
                                .table(Table::AntiAffinity)
                                .intern(node, &t.topology_key, t.topology_key_hash)
                                .map(|id| (Table::AntiAffinity, id)),
                        );
                    }
                }
            }
            out.into_boxed_slice()
        },
        |totals, r, sign| {
            for &(t, id) in r.iter() {
                totals.table(t).add_at(id, sign);
            }
        },
    );
    Totals {
        existing_anti_affinity: totals.existing_anti_affinity.clone(),
        affinity: totals.affinity.clone(),
        anti_affinity: totals.anti_affinity.clone(),
    }
}

/// Everything a node's score contributions depend on besides the node.
#[derive(Debug, PartialEq)]
pub(super) struct ScoreKey {
    namespace: String,
    labels: BTreeMap<String, String>,
    namespace_labels: Option<Arc<BTreeMap<String, String>>>,
    preferred_affinity: Vec<WeightedAffinityTerm>,
    preferred_anti_affinity: Vec<WeightedAffinityTerm>,
}

/// Summed weights per pair, and how many contributions there are.
#[derive(Debug, Default)]
pub(super) struct ScoreTotals {
    score: Arc<TopologyCounts>,
    contributions: i64,
}

/// A node's score contributions: pair and weight.
pub(super) type NodeScores = Box<[(PairId, i64)]>;

/// The kept score contributions of a [`super::InterPodAffinity`].
pub(super) type PreScoreCounts = SharedNodeResults<ScoreKey, NodeScores, ScoreTotals>;

/// PreScore's summed weights per topology pair over every node, and whether
/// any existing pod contributed. Without preferred terms of its own, only
/// pods with affinity can contribute.
pub(super) fn score(
    cache: &PreScoreCounts,
    incoming: &Incoming<'_>,
    has_constraints: bool,
    nodes: &[Arc<NodeInfo>],
) -> (Arc<TopologyCounts>, bool) {
    let pod = incoming.pod;
    let key = ScoreKey {
        namespace: pod.namespace().to_owned(),
        labels: pod.labels().clone(),
        namespace_labels: incoming.namespace_labels.clone(),
        preferred_affinity: incoming.preferred_affinity.clone(),
        preferred_anti_affinity: incoming.preferred_anti_affinity.clone(),
    };
    let mut cache = cache.lock();
    let totals = cache.refresh(
        key,
        nodes,
        |totals, node| {
            let pods = if has_constraints {
                &node.pods
            } else {
                &node.pods_with_affinity
            };
            let mut out = Vec::new();
            let mut emit = |t: &AffinityTerm, weight: i64| {
                out.extend(
                    Arc::make_mut(&mut totals.score)
                        .intern(node, &t.topology_key, t.topology_key_hash)
                        .map(|id| (id, weight)),
                );
            };
            for existing in pods {
                if has_constraints || contributes_without_preferred_terms(existing, incoming) {
                    incoming.process_existing_pod(&mut emit, existing);
                }
            }
            out.into_boxed_slice()
        },
        |totals, r, sign| {
            for &(id, weight) in r.iter() {
                Arc::make_mut(&mut totals.score).add_at(id, sign * weight);
                totals.contributions += sign;
            }
        },
    );
    (totals.score.clone(), totals.contributions > 0)
}
