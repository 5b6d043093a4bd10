//! PreFilter's counts of matching pods per domain, kept across cycles for
//! pods with the same constraints (see [`crate::plugins::incremental`]).

use std::sync::Arc;

use k8s_openapi::api::core::v1::Toleration;

use super::common::{
    Constraint, RequiredNodeAffinity, count_pods_match_selector, node_labels_match_constraints,
};
use crate::framework::{NodeInfo, PodInfo};
use crate::plugins::domains::DomainCounts;
use crate::plugins::incremental::SharedNodeResults;

/// A node's result: per constraint, its domain id and matching pods, or
/// [`EXCLUDED`]; empty when the node lacks one of the topology keys.
pub(super) type NodeCounts = Box<[(u32, i64)]>;

/// The node is not counted for the constraint.
const EXCLUDED: u32 = u32::MAX;

/// Everything a node's [`NodeCounts`] depends on besides the node.
#[derive(Debug, PartialEq)]
pub(super) struct CountsKey {
    namespace: String,
    constraints: Vec<Constraint>,
    affinity: RequiredNodeAffinity,
    /// The pod's tolerations, when a constraint honours taints.
    tolerations: Option<Vec<Toleration>>,
}

/// Per constraint: matching pods per domain, and eligible nodes per domain
/// (a domain without any no longer exists).
#[derive(Debug, Default)]
pub(super) struct Totals {
    /// Shared with the cycle's state (copied on the next change only if
    /// that state is still alive).
    counts: Vec<Arc<DomainCounts>>,
    nodes: Vec<Vec<i64>>,
}

/// The kept counts of a [`super::PodTopologySpread`].
pub(super) type PreFilterCounts = SharedNodeResults<CountsKey, NodeCounts, Totals>;

/// Per constraint, the matching pods in each domain of the nodes that have
/// every topology key and pass the node inclusion policies (domains with no
/// matching pod counted 0).
pub(super) fn count(
    cache: &PreFilterCounts,
    pod: &PodInfo,
    constraints: &[Constraint],
    affinity: &RequiredNodeAffinity,
    nodes: &[Arc<NodeInfo>],
) -> Vec<Arc<DomainCounts>> {
    let honor_taints = constraints.iter().any(|c| c.honor_node_taints);
    let key = CountsKey {
        namespace: pod.namespace().to_owned(),
        constraints: constraints.to_vec(),
        affinity: affinity.clone(),
        tolerations: honor_taints.then(|| {
            pod.pod
                .spec
                .as_ref()
                .and_then(|s| s.tolerations.clone())
                .unwrap_or_default()
        }),
    };
    let mut cache = cache.lock();
    let totals = cache.refresh(
        key,
        nodes,
        |t, node| node_counts(t, pod, constraints, affinity, node),
        |t, r, sign| {
            for (i, &(id, n)) in r.iter().enumerate() {
                if id != EXCLUDED {
                    Arc::make_mut(&mut t.counts[i]).counts[id as usize] += sign * n;
                    t.nodes[i][id as usize] += sign;
                }
            }
        },
    );
    (0..constraints.len())
        .map(|i| match (totals.counts.get(i), totals.nodes.get(i)) {
            (Some(counts), Some(eligible)) if eligible.iter().all(|&n| n > 0) => counts.clone(),
            (Some(counts), Some(eligible)) => {
                // Some domain lost its last node: leave it out.
                let mut live = DomainCounts::default();
                for (id, (value, n)) in counts.iter().enumerate() {
                    if eligible[id] > 0 {
                        live.add(crate::framework::TopologyValue::new(value), n);
                    }
                }
                Arc::new(live)
            }
            _ => Arc::default(),
        })
        .collect()
}

fn node_counts(
    t: &mut Totals,
    pod: &PodInfo,
    constraints: &[Constraint],
    affinity: &RequiredNodeAffinity,
    node: &NodeInfo,
) -> NodeCounts {
    if !node_labels_match_constraints(node, constraints) {
        return Box::default();
    }
    if t.counts.len() < constraints.len() {
        t.counts.resize_with(constraints.len(), Arc::default);
        t.nodes.resize_with(constraints.len(), Vec::new);
    }
    constraints
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let Some(value) = c.value(node) else {
                return (EXCLUDED, 0);
            };
            if !c.includes_node(&pod.pod, affinity, node) {
                return (EXCLUDED, 0);
            }
            let (id, _) = Arc::make_mut(&mut t.counts[i]).add(value, 0);
            if t.nodes[i].len() <= id as usize {
                t.nodes[i].resize(id as usize + 1, 0);
            }
            (
                id,
                count_pods_match_selector(&node.pods, &c.selector, pod.namespace()),
            )
        })
        .collect()
}
