//! Upstream's `resourceAllocationScorer` and its strategies: what the node
//! would have allocated with the pod, per configured resource, folded into
//! one score in [0, 100] without allocating per node.

use std::sync::Arc;

use crate::framework::node_info::is_scalar_resource_name;
use crate::framework::{CycleState, MAX_NODE_SCORE, NodeInfo, NodeScore, PodInfo, score_each};
use crate::plugins::helper::args::ResourceSpec;

/// Scores of a `requestedToCapacityRatio` shape are given in [0, 10]
/// (upstream's `MaxCustomPriorityScore`) and scaled to [0, 100].
pub const MAX_CUSTOM_PRIORITY_SCORE: i64 = 10;
const MAX_UTILIZATION: i64 = 100;

/// How the per-resource utilisation becomes a node score.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScoringStrategy {
    /// Prefer nodes with more free capacity.
    LeastAllocated,
    /// Prefer fuller nodes (bin packing).
    MostAllocated,
    /// A broken-linear function of utilisation: (utilization %, score
    /// already scaled to [0, 100]) points, sorted by utilisation.
    RequestedToCapacityRatio(Vec<(i64, i64)>),
    /// NodeResourcesBalancedAllocation: 1 minus the standard deviation of
    /// the utilisation fractions.
    Balanced,
}

/// Scores nodes on the configured resources.
#[derive(Debug, Clone)]
pub struct ResourceAllocationScorer {
    /// The strategy.
    pub strategy: ScoringStrategy,
    /// The resources and their weights.
    pub resources: Vec<ResourceSpec>,
    /// Count actual requests (true) or the non-zero defaults for cpu and
    /// memory of containers without requests (false).
    pub use_requested: bool,
}

/// What a scorer's PreScore keeps for its Score: the pod's request of each
/// configured resource ([`ResourceAllocationScorer::pod_requests`]).
#[derive(Debug, Clone)]
pub(crate) struct PodRequests(pub(crate) Vec<i64>);

impl ResourceAllocationScorer {
    /// The pod's requests as PreScore kept them under `key` in `state`, or
    /// computed now when PreScore did not run.
    fn cycle_requests<'s>(
        &self,
        state: &'s CycleState,
        key: &str,
        pod: &PodInfo,
    ) -> std::borrow::Cow<'s, [i64]> {
        match state.read::<PodRequests>(key) {
            Some(r) => std::borrow::Cow::Borrowed(&r.0),
            None => std::borrow::Cow::Owned(self.pod_requests(pod)),
        }
    }

    /// A plugin's Score for one node, with the requests kept under `key`.
    pub(crate) fn score_in_cycle(
        &self,
        state: &CycleState,
        key: &str,
        pod: &PodInfo,
        node: &NodeInfo,
    ) -> i64 {
        self.score(node, &self.cycle_requests(state, key, pod))
    }

    /// A plugin's Score for every node, with the requests kept under `key`.
    pub(crate) fn score_nodes_in_cycle<'n>(
        &self,
        state: &CycleState,
        key: &str,
        pod: &PodInfo,
        nodes: &'n [Arc<NodeInfo>],
        scores: &mut Vec<NodeScore<'n>>,
    ) {
        self.score_nodes(nodes, &self.cycle_requests(state, key, pod), scores);
    }

    /// The pod's request of each configured resource, in order (upstream's
    /// `calculatePodResourceRequestList`).
    pub fn pod_requests(&self, pod: &PodInfo) -> Vec<i64> {
        let reqs = if self.use_requested {
            &pod.requests
        } else {
            &pod.non_zero_requests
        };
        self.resources.iter().map(|r| reqs.get(&r.name)).collect()
    }

    /// The configured resources with the pod's requests (as returned by
    /// [`Self::pod_requests`]), each resolved to where its amounts live, so
    /// scoring a node matches no names.
    fn terms<'a>(&'a self, pod_requests: &[i64]) -> Vec<Term<'a>> {
        self.resources
            .iter()
            .zip(pod_requests)
            .map(|(r, &request)| {
                let amount = match r.name.as_str() {
                    // Extended resources the pod does not ask for do not count.
                    n if request == 0 && is_scalar_resource_name(n) => Amount::Ignored,
                    "cpu" => Amount::Cpu,
                    "memory" => Amount::Memory,
                    "ephemeral-storage" => Amount::EphemeralStorage,
                    n => Amount::Scalar(n),
                };
                Term {
                    amount,
                    request,
                    weight: r.weight,
                }
            })
            .collect()
    }

    /// (allocatable, requested including the pod) for one resource; (0, 0)
    /// means the resource is left out of the score.
    fn allocatable_requested(&self, node: &NodeInfo, term: &Term<'_>) -> (i64, i64) {
        let requested = if self.use_requested {
            &node.requested
        } else {
            &node.non_zero_requested
        };
        let pod_request = term.request;
        match term.amount {
            Amount::Cpu => (
                node.allocatable.milli_cpu,
                requested.milli_cpu + pod_request,
            ),
            Amount::Memory => (node.allocatable.memory, requested.memory + pod_request),
            Amount::EphemeralStorage => (
                node.allocatable.ephemeral_storage,
                node.requested.ephemeral_storage + pod_request,
            ),
            Amount::Scalar(name) => match node.allocatable.scalar.get(name) {
                Some(&alloc) => (
                    alloc,
                    node.requested.scalar.get(name).copied().unwrap_or(0) + pod_request,
                ),
                None => (0, 0),
            },
            Amount::Ignored => (0, 0),
        }
    }

    /// The node's score for a pod whose requests are `pod_requests` (as
    /// returned by [`Self::pod_requests`]).
    pub fn score(&self, node: &NodeInfo, pod_requests: &[i64]) -> i64 {
        self.score_terms(node, &self.terms(pod_requests))
    }

    /// Every node's score, in order, into `scores` (cleared first).
    pub fn score_nodes<'n>(
        &self,
        nodes: &'n [Arc<NodeInfo>],
        pod_requests: &[i64],
        scores: &mut Vec<NodeScore<'n>>,
    ) {
        let terms = self.terms(pod_requests);
        score_each(nodes, scores, |node| self.score_terms(node, &terms));
    }

    fn score_terms(&self, node: &NodeInfo, terms: &[Term<'_>]) -> i64 {
        let entries = || {
            terms
                .iter()
                .map(|t| {
                    let (alloc, requested) = self.allocatable_requested(node, t);
                    (alloc, requested, t.weight)
                })
                .filter(|&(alloc, _, _)| alloc != 0)
        };
        match &self.strategy {
            ScoringStrategy::LeastAllocated => weighted(entries(), least_requested_score),
            ScoringStrategy::MostAllocated => weighted(entries(), most_requested_score),
            ScoringStrategy::RequestedToCapacityRatio(shape) => {
                let (mut node_score, mut weight_sum) = (0i64, 0i64);
                for (alloc, req, weight) in entries() {
                    let utilization = if req > alloc {
                        MAX_UTILIZATION
                    } else {
                        req * MAX_UTILIZATION / alloc
                    };
                    let s = broken_linear(shape, utilization);
                    // Resources scoring 0 do not dilute the others.
                    if s > 0 {
                        node_score += s * weight;
                        weight_sum += weight;
                    }
                }
                if weight_sum == 0 {
                    0
                } else {
                    (node_score as f64 / weight_sum as f64).round() as i64
                }
            }
            ScoringStrategy::Balanced => {
                let fraction =
                    |(alloc, req, _): (i64, i64, i64)| (req as f64 / alloc as f64).min(1.0);
                let (mut n, mut total) = (0usize, 0.0f64);
                for e in entries() {
                    n += 1;
                    total += fraction(e);
                }
                let std = match n {
                    2 => {
                        let mut it = entries().map(fraction);
                        let (a, b) = (it.next().unwrap_or(0.0), it.next().unwrap_or(0.0));
                        ((a - b) / 2.0).abs()
                    }
                    n if n > 2 => {
                        let mean = total / n as f64;
                        let sum: f64 = entries().map(|e| (fraction(e) - mean).powi(2)).sum();
                        (sum / n as f64).sqrt()
                    }
                    _ => 0.0,
                };
                ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
            }
        }
    }
}

/// Where one configured resource's amounts are kept in a [`NodeInfo`].
#[derive(Debug, Clone, Copy)]
enum Amount<'a> {
    Cpu,
    Memory,
    EphemeralStorage,
    Scalar(&'a str),
    /// An extended resource the pod does not ask for.
    Ignored,
}

/// One configured resource, resolved for one pod.
#[derive(Debug, Clone, Copy)]
struct Term<'a> {
    amount: Amount<'a>,
    request: i64,
    weight: i64,
}

fn weighted(entries: impl Iterator<Item = (i64, i64, i64)>, f: fn(i64, i64) -> i64) -> i64 {
    let (mut node_score, mut weight_sum) = (0i64, 0i64);
    for (alloc, req, weight) in entries {
        node_score += f(req, alloc) * weight;
        weight_sum += weight;
    }
    if weight_sum == 0 {
        0
    } else {
        node_score / weight_sum
    }
}

/// The free share of capacity, in [0, 100].
fn least_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

/// The used share of capacity, in [0, 100]; requests past capacity (the
/// non-zero defaults can get there) count as full.
fn most_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 {
        return 0;
    }
    requested.min(capacity) * MAX_NODE_SCORE / capacity
}

/// Upstream's `BuildBrokenLinearFunction`: the first point's score below
/// it, linear interpolation between points, the last point's score past it.
pub fn broken_linear(shape: &[(i64, i64)], p: i64) -> i64 {
    for (i, &(u, s)) in shape.iter().enumerate() {
        if p <= u {
            if i == 0 {
                return s;
            }
            let (pu, ps) = shape[i - 1];
            return ps + (s - ps) * (p - pu) / (u - pu);
        }
    }
    shape.last().map_or(0, |&(_, s)| s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn broken_linear_table() {
        // Upstream's helper test shape: (10,1) (20,2) (30,3) scaled as given.
        let shape = [(10, 1), (15, 2), (20, 3), (25, 4)];
        let cases = [
            (0, 1),
            (5, 1),
            (10, 1),
            (11, 1),
            (14, 1),
            (15, 2),
            (17, 2),
            (20, 3),
            (24, 3),
            (25, 4),
            (100, 4),
        ];
        for (p, want) in cases {
            assert_eq!(broken_linear(&shape, p), want, "p={p}");
        }
        let down = [(0, 100), (100, 0)];
        assert_eq!(broken_linear(&down, 30), 70);
        assert_eq!(broken_linear(&down, 0), 100);
        assert_eq!(broken_linear(&[], 50), 0);
    }

    #[test]
    fn per_resource_scores() {
        assert_eq!(least_requested_score(3000, 4000), 25);
        assert_eq!(least_requested_score(5000, 4000), 0);
        assert_eq!(least_requested_score(1, 0), 0);
        assert_eq!(most_requested_score(3000, 4000), 75);
        assert_eq!(most_requested_score(5000, 4000), 100);
        assert_eq!(most_requested_score(1, 0), 0);
    }
}
