//! InterPodAffinity's queueing hints (upstream's
//! `isSchedulableAfterPodChange` and `isSchedulableAfterNodeChange`).
//! Where upstream's check is narrower than the filter (a pod matching one
//! of several affinity terms), these queue: a wrong skip strands a pod.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};

use super::{InterPodAffinity, term_matches};
use crate::cache::node_name;
use crate::framework::node_info::AffinityTerm;
use crate::framework::{EventObjects, PodInfo, QueueingHint};

impl InterPodAffinity {
    pub(super) fn hint(&self, pod: &PodInfo, objects: &EventObjects) -> QueueingHint {
        match objects {
            EventObjects::Pod { old, new } => self.pod_hint(pod, old.as_ref(), new.as_ref()),
            EventObjects::Node {
                old: Some(old),
                new: Some(new),
            } => node_moved(pod, old, new),
            _ => QueueingHint::Queue,
        }
    }

    fn pod_hint(
        &self,
        pod: &PodInfo,
        old: Option<&Arc<Pod>>,
        new: Option<&Arc<Pod>>,
    ) -> QueueingHint {
        // Pending pods count for nobody's affinity.
        if old.is_some_and(|p| node_name(p).is_none())
            || new.is_some_and(|p| node_name(p).is_none())
        {
            return QueueingHint::Skip;
        }
        // Each changed pod is matched by several term lists: parse it once.
        let (old, new) = (
            old.map(|p| PodInfo::new(p.clone())),
            new.map(|p| PodInfo::new(p.clone())),
        );
        // Which of `terms` select `p`.
        let selected = |terms: &[AffinityTerm], p: &PodInfo| -> Vec<bool> {
            let ns_labels = self.lister.namespace_labels(p.namespace());
            terms
                .iter()
                .map(|t| term_matches(t, p, ns_labels.as_ref()))
                .collect()
        };
        let (affinity, anti) = (
            &pod.required_affinity_terms,
            &pod.required_anti_affinity_terms,
        );
        let any = |v: Vec<bool>| v.into_iter().any(|b| b);
        match (&old, &new) {
            // Relabelled: a term now selects it that did not (affinity), or
            // one no longer does (anti-affinity).
            (Some(old), Some(new)) => {
                let gained = selected(affinity, old)
                    .into_iter()
                    .zip(selected(affinity, new))
                    .any(|(before, after)| !before && after);
                let lost = selected(anti, old)
                    .into_iter()
                    .zip(selected(anti, new))
                    .any(|(before, after)| before && !after);
                QueueingHint::queue_if(gained || lost)
            }
            // Added: may satisfy an affinity term.
            (None, Some(new)) => QueueingHint::queue_if(any(selected(affinity, new))),
            // Deleted: may have been what repelled the pod, by the pod's
            // anti-affinity or by its own.
            (Some(old), None) => QueueingHint::queue_if(
                any(selected(anti, old)) || !old.required_anti_affinity_terms.is_empty(),
            ),
            (None, None) => QueueingHint::Queue,
        }
    }
}

/// A relabelled node matters when it changed a topology key of the pod's
/// terms; a pod without terms of its own was rejected by existing pods'
/// anti-affinity, whose keys are not at hand, so it always queues.
fn node_moved(pod: &PodInfo, old: &Node, new: &Node) -> QueueingHint {
    let terms: Vec<&AffinityTerm> = pod
        .required_affinity_terms
        .iter()
        .chain(&pod.required_anti_affinity_terms)
        .collect();
    if terms.is_empty() {
        return QueueingHint::Queue;
    }
    let label = |n: &Node, k: &str| n.metadata.labels.as_ref().and_then(|l| l.get(k)).cloned();
    QueueingHint::queue_if(
        terms
            .iter()
            .any(|t| label(old, &t.topology_key) != label(new, &t.topology_key)),
    )
}
