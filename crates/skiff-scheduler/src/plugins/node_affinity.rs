//! NodeAffinity: `spec.nodeSelector` and required node affinity as a
//! Filter (with PreFilter narrowing to nodes pinned by `metadata.name`),
//! preferred node affinity as a Score; plus the scheduler-wide
//! `addedAffinity` from the plugin args.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{NodeAffinity as ApiNodeAffinity, Pod};
use skiff_api::field::{ErrorList, Path};

use super::helper::args;
use super::helper::default_normalize_score;
use super::helper::node_selector::{
    NodeSelector, OBJECT_NAME_FIELD, PreferredSchedulingTerms, RequiredNodeAffinity,
};
use crate::framework::{
    ClusterEvent, Code, CycleState, EventObjects, EventResource, FilterPlugin, Handle,
    MAX_NODE_SCORE, NodeInfo, NodeScore, Plugin, PodInfo, PreFilterPlugin, PreFilterResult,
    PreScorePlugin, QueueingHint, ScorePlugin, Snapshot, Status, action, hint_node_now_passes,
};

/// The plugin's name.
pub const NAME: &str = "NodeAffinity";
/// The reason when the pod's own selector/affinity does not match.
pub const ERR_REASON_POD: &str = "node(s) didn't match Pod's node affinity/selector";
/// The reason when the `addedAffinity` of the args does not match.
pub const ERR_REASON_ENFORCED: &str = "node(s) didn't match scheduler-enforced node affinity";
/// The reason when the required terms pin disjoint node names.
pub const ERR_REASON_CONFLICT: &str = "pod affinity terms conflict";

const PRE_FILTER_STATE_KEY: &str = "PreFilterNodeAffinity";
const PRE_SCORE_STATE_KEY: &str = "PreScoreNodeAffinity";

/// The plugin, with its parsed `addedAffinity`.
#[derive(Debug, Default)]
pub struct NodeAffinity {
    added_node_selector: Option<NodeSelector>,
    added_pref_sched_terms: Option<PreferredSchedulingTerms>,
}

#[derive(Debug, Clone)]
struct PreFilterState {
    required: RequiredNodeAffinity,
}

#[derive(Debug, Clone)]
struct PreScoreState {
    preferred: Option<PreferredSchedulingTerms>,
}

/// The factory: args `{addedAffinity: NodeAffinity}`.
pub fn new(
    args_value: Option<&serde_json::Value>,
    _handle: &Handle,
) -> Result<Arc<dyn Plugin>, String> {
    let obj = args::object(args_value)?;
    let Some(added) = obj.get("addedAffinity").filter(|v| !v.is_null()) else {
        return Ok(Arc::new(NodeAffinity::default()));
    };
    let added: ApiNodeAffinity =
        serde_json::from_value(added.clone()).map_err(|e| format!("addedAffinity: {e}"))?;
    let path = Path::new("addedAffinity");
    let mut errs = ErrorList::new();
    let mut plugin = NodeAffinity::default();
    if let Some(ns) = &added.required_during_scheduling_ignored_during_execution {
        match NodeSelector::new(
            ns,
            &path.child("requiredDuringSchedulingIgnoredDuringExecution"),
        ) {
            Ok(s) => plugin.added_node_selector = Some(s),
            Err(e) => errs.extend(e),
        }
    }
    if let Some(terms) = added
        .preferred_during_scheduling_ignored_during_execution
        .as_ref()
        .filter(|t| !t.is_empty())
    {
        match PreferredSchedulingTerms::new(
            terms,
            &path.child("preferredDuringSchedulingIgnoredDuringExecution"),
        ) {
            Ok(t) => plugin.added_pref_sched_terms = Some(t),
            Err(e) => errs.extend(e),
        }
    }
    args::aggregate(errs)?;
    Ok(Arc::new(plugin))
}

fn pod_node_affinity(pod: &Pod) -> Option<&ApiNodeAffinity> {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
}

fn pod_preferred(pod: &Pod) -> Result<Option<PreferredSchedulingTerms>, Status> {
    let Some(terms) = pod_node_affinity(pod).and_then(|na| {
        na.preferred_during_scheduling_ignored_during_execution
            .as_ref()
    }) else {
        return Ok(None);
    };
    PreferredSchedulingTerms::new(
        terms,
        &Path::new("preferredDuringSchedulingIgnoredDuringExecution"),
    )
    .map(Some)
    .map_err(|e| Status::error(e.aggregate_message().unwrap_or_default()))
}

/// The node names the required terms restrict the pod to: `None` when some
/// term does not pin `metadata.name` (terms are ORed).
fn pinned_node_names(na: &ApiNodeAffinity) -> Option<BTreeSet<String>> {
    let terms = &na
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    if terms.is_empty() {
        return None;
    }
    let mut node_names = BTreeSet::new();
    for term in terms {
        let mut term_names: Option<BTreeSet<String>> = None;
        for r in term.match_fields.iter().flatten() {
            if r.key == OBJECT_NAME_FIELD && r.operator == "In" {
                let values: BTreeSet<String> = r.values.iter().flatten().cloned().collect();
                // Requirements of one term are ANDed.
                term_names = Some(match term_names {
                    None => values,
                    Some(prev) => prev.intersection(&values).cloned().collect(),
                });
            }
        }
        node_names.extend(term_names?);
    }
    Some(node_names)
}

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events_to_register(&self) -> Vec<ClusterEvent> {
        vec![ClusterEvent {
            resource: EventResource::Node,
            action: action::ADD | action::UPDATE_NODE_LABEL | action::UPDATE_NODE_TAINT,
        }]
    }
    /// Upstream's `isSchedulableAfterNodeChange`: a node whose labels now
    /// match the pod's required affinity (and the enforced affinity) and
    /// did not before, or a new one that matches.
    fn queueing_hint(
        &self,
        pod: &PodInfo,
        _event: &ClusterEvent,
        objects: &EventObjects,
    ) -> QueueingHint {
        let required = RequiredNodeAffinity::from_pod(&pod.pod);
        hint_node_now_passes(objects, |n| {
            static EMPTY: BTreeMap<String, String> = BTreeMap::new();
            let labels = n.metadata.labels.as_ref().unwrap_or(&EMPTY);
            let name = n.metadata.name.as_deref().unwrap_or("");
            self.added_node_selector
                .as_ref()
                .is_none_or(|a| a.matches(labels, name))
                && required.matches(labels, name)
        })
    }
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        Some(self)
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
    fn as_pre_score(&self) -> Option<&dyn PreScorePlugin> {
        Some(self)
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
}

impl PreFilterPlugin for NodeAffinity {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        let na = pod_node_affinity(&pod.pod);
        let no_required = na
            .and_then(|na| {
                na.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .is_none();
        let no_node_selector = pod
            .pod
            .spec
            .as_ref()
            .is_none_or(|s| s.node_selector.is_none());
        if no_required && self.added_node_selector.is_none() && no_node_selector {
            return (None, Status::skip());
        }
        state.write(
            PRE_FILTER_STATE_KEY,
            PreFilterState {
                required: RequiredNodeAffinity::from_pod(&pod.pod),
            },
        );
        match na.and_then(pinned_node_names) {
            None => (None, Status::success()),
            Some(names) if names.is_empty() => (
                None,
                Status::new(Code::UnschedulableAndUnresolvable, ERR_REASON_CONFLICT),
            ),
            Some(names) => (
                Some(PreFilterResult {
                    node_names: Some(names),
                }),
                Status::success(),
            ),
        }
    }
}

impl FilterPlugin for NodeAffinity {
    fn reads_node_labels(&self) -> bool {
        true
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let (labels, name) = (&node.label_set(), node.name());
        if let Some(added) = &self.added_node_selector
            && !added.matches(labels, name)
        {
            return Status::unresolvable(ERR_REASON_ENFORCED);
        }
        let fits = match state.read::<PreFilterState>(PRE_FILTER_STATE_KEY) {
            Some(s) => s.required.matches(labels, name),
            // PreFilter disabled: parse here.
            None => RequiredNodeAffinity::from_pod(&pod.pod).matches(labels, name),
        };
        if fits {
            Status::success()
        } else {
            Status::unresolvable(ERR_REASON_POD)
        }
    }
}

impl PreScorePlugin for NodeAffinity {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        _snapshot: &Snapshot,
    ) -> Status {
        if nodes.is_empty() {
            return Status::success();
        }
        let preferred = match pod_preferred(&pod.pod) {
            Ok(p) => p,
            Err(s) => return s,
        };
        if preferred.is_none() && self.added_pref_sched_terms.is_none() {
            return Status::skip();
        }
        state.write(PRE_SCORE_STATE_KEY, PreScoreState { preferred });
        Status::success()
    }
}

impl ScorePlugin for NodeAffinity {
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        let (labels, name) = (&node.label_set(), node.name());
        let mut count = self
            .added_pref_sched_terms
            .as_ref()
            .map_or(0, |t| t.score(labels, name));
        match state.read::<PreScoreState>(PRE_SCORE_STATE_KEY) {
            Some(s) => count += s.preferred.as_ref().map_or(0, |t| t.score(labels, name)),
            None => match pod_preferred(&pod.pod) {
                Ok(p) => count += p.map_or(0, |t| t.score(labels, name)),
                Err(s) => return (0, s),
            },
        }
        (count, Status::success())
    }

    fn normalize_scores(
        &self,
        _state: &CycleState,
        _pod: &PodInfo,
        scores: &mut [NodeScore<'_>],
    ) -> Status {
        default_normalize_score(MAX_NODE_SCORE, false, scores)
    }
}

#[cfg(test)]
#[path = "node_affinity_tests.rs"]
mod tests;
