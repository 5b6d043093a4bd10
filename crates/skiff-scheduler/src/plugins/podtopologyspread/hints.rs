//! PodTopologySpread's queueing hints (upstream's
//! `isSchedulableAfterPodChange` and `isSchedulableAfterNodeChange`).

use k8s_openapi::api::core::v1::{Node, Pod};

use super::PodTopologySpread;
use super::common::{Constraint, DO_NOT_SCHEDULE};
use crate::cache::node_name;
use crate::framework::{EventObjects, PodInfo, QueueingHint};

fn label<'a>(node: &'a Node, key: &str) -> Option<&'a String> {
    node.metadata.labels.as_ref().and_then(|l| l.get(key))
}

impl PodTopologySpread {
    pub(super) fn hint(&self, pod: &PodInfo, objects: &EventObjects) -> QueueingHint {
        let constraints = match self.constraints(pod, DO_NOT_SCHEDULE) {
            Ok(c) if !c.is_empty() => c,
            _ => return QueueingHint::Queue,
        };
        match objects {
            EventObjects::Pod { old, new } => {
                let counted = |p: &Pod| counts_for(pod, &constraints, p);
                QueueingHint::queue_if(
                    old.as_deref().is_some_and(counted) || new.as_deref().is_some_and(counted),
                )
            }
            // A new node is a candidate only with every topology key.
            EventObjects::Node {
                old: None,
                new: Some(new),
            } => QueueingHint::queue_if(
                constraints
                    .iter()
                    .all(|c| label(new, &c.topology_key).is_some()),
            ),
            // A node moved between domains, or its taints changed where a
            // constraint counts only tolerated nodes.
            EventObjects::Node {
                old: Some(old),
                new: Some(new),
            } => {
                let moved = constraints
                    .iter()
                    .any(|c| label(old, &c.topology_key) != label(new, &c.topology_key));
                let taints = |n: &Node| n.spec.as_ref().and_then(|s| s.taints.clone());
                let retainted =
                    constraints.iter().any(|c| c.honor_node_taints) && taints(old) != taints(new);
                QueueingHint::queue_if(moved || retainted)
            }
            _ => QueueingHint::Queue,
        }
    }
}

/// True when `other`, a scheduled pod, is counted by one of the pod's
/// constraints (same namespace, selected).
fn counts_for(pod: &PodInfo, constraints: &[Constraint], other: &Pod) -> bool {
    static EMPTY: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
    node_name(other).is_some()
        && other.metadata.namespace.as_deref().unwrap_or("") == pod.namespace()
        && constraints.iter().any(|c| {
            c.selector
                .matches(other.metadata.labels.as_ref().unwrap_or(&EMPTY))
        })
}
