//! What PodTopologySpread's filtering and scoring share: parsed
//! constraints, the default constraints' selector, node inclusion policies
//! and pod counting.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, TopologySpreadConstraint};
use skiff_api::selector::labels::{Selector, from_label_selector, from_map};

use super::PodTopologySpread;
use crate::framework::topology::hash_label;
use crate::framework::{NodeInfo, PodInfo, TopologyValue};
pub(crate) use crate::plugins::helper::node_selector::RequiredNodeAffinity;
use crate::plugins::helper::{do_not_schedule_taints_filter, find_matching_untolerated_taint};

/// `whenUnsatisfiable` of the constraints Filter enforces.
pub(crate) const DO_NOT_SCHEDULE: &str = "DoNotSchedule";
/// `whenUnsatisfiable` of the constraints Score prefers.
pub(crate) const SCHEDULE_ANYWAY: &str = "ScheduleAnyway";
/// The well-known node name label (counted per node during Score).
pub(crate) const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
/// The well-known zone label.
pub(crate) const LABEL_TOPOLOGY_ZONE: &str = "topology.kubernetes.io/zone";

/// A topology spread constraint with its selector parsed (upstream's
/// internal `topologySpreadConstraint`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Constraint {
    pub(crate) max_skew: i32,
    pub(crate) topology_key: String,
    /// [`hash_label`] of `topology_key`.
    pub(crate) topology_key_hash: u64,
    /// The key is the hostname label (Score counts such domains per node).
    pub(crate) is_hostname: bool,
    pub(crate) selector: Selector,
    pub(crate) min_domains: i32,
    /// nodeAffinityPolicy Honor (the default): only nodes matching the
    /// pod's nodeSelector/required node affinity count.
    pub(crate) honor_node_affinity: bool,
    /// nodeTaintsPolicy Honor (default Ignore): only nodes whose NoSchedule
    /// and NoExecute taints the pod tolerates count.
    pub(crate) honor_node_taints: bool,
}

impl Constraint {
    /// Whether `node` is in the constraint's domains for `pod` (upstream's
    /// `matchNodeInclusionPolicies`).
    pub(crate) fn includes_node(
        &self,
        pod: &Pod,
        affinity: &RequiredNodeAffinity,
        node: &NodeInfo,
    ) -> bool {
        if self.honor_node_affinity && !affinity.matches(&node.label_set(), node.name()) {
            return false;
        }
        if self.honor_node_taints {
            let tolerations = pod
                .spec
                .as_ref()
                .and_then(|s| s.tolerations.as_deref())
                .unwrap_or(&[]);
            let untolerated = find_matching_untolerated_taint(
                &node.taints,
                tolerations,
                do_not_schedule_taints_filter,
            );
            if untolerated.is_some() {
                return false;
            }
        }
        true
    }
}

impl PodTopologySpread {
    /// The pod's constraints with `action` (`DoNotSchedule` for Filter,
    /// `ScheduleAnyway` for Score); without constraints of its own, the
    /// default ones with the selector derived from the pod's Services and
    /// controller.
    pub(crate) fn constraints(
        &self,
        pod: &PodInfo,
        action: &str,
    ) -> Result<Vec<Constraint>, String> {
        let own = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_deref())
            .unwrap_or(&[]);
        let kind = if action == DO_NOT_SCHEDULE {
            "hard"
        } else {
            "soft"
        };
        if !own.is_empty() {
            return filter_constraints(own, pod.labels(), action)
                .map_err(|e| format!("obtaining pod's {kind} topology spread constraints: {e}"));
        }
        let mut constraints =
            filter_constraints(&self.default_constraints, pod.labels(), action)
                .map_err(|e| format!("setting default {kind} topology spread constraints: {e}"))?;
        if constraints.is_empty() {
            return Ok(constraints);
        }
        let selector = self.default_selector(&pod.pod);
        if selector.is_empty() {
            return Ok(Vec::new());
        }
        for c in &mut constraints {
            c.selector = selector.clone();
        }
        Ok(constraints)
    }

    /// The union of the selectors of the Services selecting `pod` and of its
    /// controlling ReplicationController, ReplicaSet or StatefulSet
    /// (upstream's `helper.DefaultSelector`).
    fn default_selector(&self, pod: &Pod) -> Selector {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let pod_labels = pod.metadata.labels.as_ref().unwrap_or(&EMPTY);
        let mut label_set = BTreeMap::new();
        for svc in self.lister.services(ns) {
            // A Service without a selector selects nothing, not everything.
            let Some(sel) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
                continue;
            };
            if from_map(sel).matches(pod_labels) {
                label_set.extend(sel.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        let mut selector = from_map(&label_set);
        let Some(owner) = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
        else {
            return selector;
        };
        let (group, version) = match owner.api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", owner.api_version.as_str()),
        };
        let with_requirements = |selector: Selector, extra: Option<Selector>| match extra {
            // A nil selector has no requirements to add.
            Some(extra) if !is_nothing(&extra) => {
                let mut reqs = selector.requirements().to_vec();
                reqs.extend(extra.requirements().iter().cloned());
                Selector::from_requirements(reqs)
            }
            _ => selector,
        };
        match (group, version, owner.kind.as_str()) {
            ("", "v1", "ReplicationController") => {
                if let Some(rc) = self.lister.replication_controller(ns, &owner.name) {
                    let rc_sel = rc.spec.as_ref().and_then(|s| s.selector.as_ref());
                    label_set.extend(
                        rc_sel
                            .into_iter()
                            .flatten()
                            .map(|(k, v)| (k.clone(), v.clone())),
                    );
                    selector = from_map(&label_set);
                }
            }
            ("apps", "v1", "ReplicaSet") => {
                if let Some(rs) = self.lister.replica_set(ns, &owner.name) {
                    let extra = rs
                        .spec
                        .as_ref()
                        .and_then(|s| from_label_selector(Some(&s.selector)).ok());
                    selector = with_requirements(selector, extra);
                }
            }
            ("apps", "v1", "StatefulSet") => {
                if let Some(ss) = self.lister.stateful_set(ns, &owner.name) {
                    let extra = ss
                        .spec
                        .as_ref()
                        .and_then(|s| from_label_selector(Some(&s.selector)).ok());
                    selector = with_requirements(selector, extra);
                }
            }
            _ => {}
        }
        selector
    }
}

/// Parses the constraints with `whenUnsatisfiable == action`: selector,
/// `matchLabelKeys` (the pod's values for those keys are ANDed into the
/// selector), minDomains (default 1) and the node inclusion policies.
pub(crate) fn filter_constraints(
    constraints: &[TopologySpreadConstraint],
    pod_labels: &BTreeMap<String, String>,
    action: &str,
) -> Result<Vec<Constraint>, String> {
    let mut out = Vec::new();
    for c in constraints
        .iter()
        .filter(|c| c.when_unsatisfiable == action)
    {
        let mut selector =
            from_label_selector(c.label_selector.as_ref()).map_err(|e| e.to_string())?;
        let match_labels: BTreeMap<String, String> = c
            .match_label_keys
            .iter()
            .flatten()
            .filter_map(|k| pod_labels.get(k).map(|v| (k.clone(), v.clone())))
            .collect();
        // A nil selector (matches nothing) stays as it is.
        if !match_labels.is_empty() && !is_nothing(&selector) {
            let mut reqs = from_map(&match_labels).requirements().to_vec();
            reqs.extend(selector.requirements().iter().cloned());
            selector = Selector::from_requirements(reqs);
        }
        out.push(Constraint {
            max_skew: c.max_skew,
            topology_key: c.topology_key.clone(),
            topology_key_hash: hash_label(&c.topology_key),
            is_hostname: c.topology_key == LABEL_HOSTNAME,
            selector,
            min_domains: c.min_domains.unwrap_or(1),
            honor_node_affinity: c.node_affinity_policy.as_deref().unwrap_or("Honor") == "Honor",
            honor_node_taints: c.node_taints_policy.as_deref().unwrap_or("Ignore") == "Honor",
        });
    }
    Ok(out)
}

/// The selector of a nil `LabelSelector`: it matches nothing and has no
/// requirements to merge.
fn is_nothing(s: &Selector) -> bool {
    !s.is_empty() && s.requirements().is_empty()
}

impl Constraint {
    /// The node's value for the constraint's topology key.
    pub(crate) fn value<'a>(&self, node: &'a NodeInfo) -> Option<TopologyValue<'a>> {
        node.label_value_hashed(&self.topology_key, self.topology_key_hash)
    }
}

/// The node has every constraint's topology key.
pub(crate) fn node_labels_match_constraints(node: &NodeInfo, constraints: &[Constraint]) -> bool {
    constraints.iter().all(|c| c.value(node).is_some())
}

/// Pods on the node in `namespace` that `selector` matches, leaving out
/// terminating pods. An empty selector counts nothing (as upstream).
pub(crate) fn count_pods_match_selector(
    pods: &[std::sync::Arc<PodInfo>],
    selector: &Selector,
    namespace: &str,
) -> i64 {
    if selector.is_empty() {
        return 0;
    }
    let n = pods
        .iter()
        .filter(|p| {
            !p.terminating
                && p.label_index.prefix() == namespace
                && selector.matches(&p.label_index)
        })
        .count();
    i64::try_from(n).unwrap_or(i64::MAX)
}
