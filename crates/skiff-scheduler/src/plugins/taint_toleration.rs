//! TaintToleration: Filter rejects nodes with a NoSchedule/NoExecute taint
//! the pod does not tolerate; Score prefers nodes with fewer intolerable
//! PreferNoSchedule taints.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Toleration};

use super::helper::{
    default_normalize_score, do_not_schedule_taints_filter, find_matching_untolerated_taint,
    tolerations_tolerate_taint,
};
use crate::framework::{
    ClusterEvent, CycleState, EventObjects, EventResource, FilterPlugin, Handle, MAX_NODE_SCORE,
    NodeInfo, NodeScore, Plugin, PodInfo, PreScorePlugin, QueueingHint, ScorePlugin, Snapshot,
    Status, action, hint_node_now_passes, score_each,
};

/// The plugin's name.
pub const NAME: &str = "TaintToleration";
const PRE_SCORE_STATE_KEY: &str = "PreScoreTaintToleration";

/// Taints versus tolerations.
#[derive(Debug, Default)]
pub struct TaintToleration;

/// The factory (no args).
pub fn new(_args: Option<&serde_json::Value>, _handle: &Handle) -> Result<Arc<dyn Plugin>, String> {
    Ok(Arc::new(TaintToleration))
}

/// The pod's tolerations that can tolerate PreferNoSchedule taints.
#[derive(Debug, Clone)]
struct PreScoreState {
    tolerations_prefer_no_schedule: Vec<Toleration>,
}

fn tolerations(pod: &PodInfo) -> &[Toleration] {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[])
}

fn prefer_no_schedule_tolerations(pod: &PodInfo) -> Vec<Toleration> {
    tolerations(pod)
        .iter()
        // An empty effect tolerates every effect.
        .filter(|t| {
            matches!(
                t.effect.as_deref(),
                None | Some("") | Some("PreferNoSchedule")
            )
        })
        .cloned()
        .collect()
}

/// The pod's PreferNoSchedule tolerations as PreScore kept them, or
/// computed now when PreScore did not run.
fn cycle_tolerations<'s>(
    state: &'s CycleState,
    pod: &PodInfo,
) -> std::borrow::Cow<'s, [Toleration]> {
    match state.read::<PreScoreState>(PRE_SCORE_STATE_KEY) {
        Some(s) => std::borrow::Cow::Borrowed(&s.tolerations_prefer_no_schedule),
        None => std::borrow::Cow::Owned(prefer_no_schedule_tolerations(pod)),
    }
}

fn count_intolerable_prefer_no_schedule(node: &NodeInfo, tolerations: &[Toleration]) -> i64 {
    node.taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule" && !tolerations_tolerate_taint(tolerations, t))
        .count() as i64
}

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events_to_register(&self) -> Vec<ClusterEvent> {
        vec![
            ClusterEvent {
                resource: EventResource::Node,
                action: action::ADD | action::UPDATE_NODE_TAINT | action::UPDATE_NODE_LABEL,
            },
            ClusterEvent {
                resource: EventResource::Pod,
                action: action::UPDATE_POD_TOLERATIONS,
            },
        ]
    }
    /// Upstream's `isSchedulableAfterNodeChange`: a node the pod now
    /// tolerates and did not before (or a new one it tolerates).
    fn queueing_hint(
        &self,
        pod: &PodInfo,
        _event: &ClusterEvent,
        objects: &EventObjects,
    ) -> QueueingHint {
        hint_node_now_passes(objects, |n: &Node| {
            let taints = n.spec.as_ref().and_then(|s| s.taints.as_deref());
            find_matching_untolerated_taint(
                taints.unwrap_or(&[]),
                tolerations(pod),
                do_not_schedule_taints_filter,
            )
            .is_none()
        })
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

impl FilterPlugin for TaintToleration {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match find_matching_untolerated_taint(
            &node.taints,
            tolerations(pod),
            do_not_schedule_taints_filter,
        ) {
            None => Status::success(),
            Some(taint) => Status::unresolvable(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint.key,
                taint.value.as_deref().unwrap_or("")
            )),
        }
    }
}

impl PreScorePlugin for TaintToleration {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[Arc<NodeInfo>],
        _snapshot: &Snapshot,
    ) -> Status {
        state.write(
            PRE_SCORE_STATE_KEY,
            PreScoreState {
                tolerations_prefer_no_schedule: prefer_no_schedule_tolerations(pod),
            },
        );
        Status::success()
    }
}

impl ScorePlugin for TaintToleration {
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        let tolerations = cycle_tolerations(state, pod);
        (
            count_intolerable_prefer_no_schedule(node, &tolerations),
            Status::success(),
        )
    }

    fn score_nodes<'n>(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &'n [Arc<NodeInfo>],
        scores: &mut Vec<NodeScore<'n>>,
    ) -> Status {
        let tolerations = cycle_tolerations(state, pod);
        score_each(nodes, scores, |node| {
            count_intolerable_prefer_no_schedule(node, &tolerations)
        });
        Status::success()
    }

    fn normalize_scores(
        &self,
        _state: &CycleState,
        _pod: &PodInfo,
        scores: &mut [NodeScore<'_>],
    ) -> Status {
        default_normalize_score(MAX_NODE_SCORE, true, scores)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::plugins::testing::{handle, node, pod, run_filter, run_score, snapshot, verdict};
    use serde_json::{Value, json};

    fn tainted(name: &str, taints: Value) -> NodeInfo {
        node(json!({"metadata": {"name": name}, "spec": {"taints": taints}}))
    }

    #[test]
    fn filter_table() {
        let plugin = new(None, &handle()).unwrap();
        let cases = [
            // (node taints, pod tolerations, expected reason or None)
            (
                json!([{"key": "dedicated", "value": "user1", "effect": "NoSchedule"}]),
                json!([]),
                Some("node(s) had untolerated taint {dedicated: user1}"),
            ),
            (
                json!([{"key": "dedicated", "value": "user1", "effect": "NoSchedule"}]),
                json!([{"key": "dedicated", "value": "user1", "effect": "NoSchedule"}]),
                None,
            ),
            (
                json!([{"key": "dedicated", "value": "user1", "effect": "NoSchedule"}]),
                json!([{"key": "dedicated", "operator": "Equal", "value": "user2", "effect": "NoSchedule"}]),
                Some("node(s) had untolerated taint {dedicated: user1}"),
            ),
            (
                json!([{"key": "foo", "value": "bar", "effect": "NoSchedule"}]),
                json!([{"key": "foo", "operator": "Exists", "effect": "NoSchedule"}]),
                None,
            ),
            (
                json!([{"key": "foo", "effect": "NoExecute"}]),
                json!([]),
                Some("node(s) had untolerated taint {foo: }"),
            ),
            // PreferNoSchedule does not filter.
            (
                json!([{"key": "foo", "value": "bar", "effect": "PreferNoSchedule"}]),
                json!([]),
                None,
            ),
            (
                json!([{"key": "a", "value": "1", "effect": "NoSchedule"},
                    {"key": "b", "value": "2", "effect": "NoSchedule"}]),
                json!([{"key": "a", "operator": "Exists"}]),
                Some("node(s) had untolerated taint {b: 2}"),
            ),
        ];
        for (taints, tols, want) in cases {
            let snap = snapshot(vec![tainted("n", taints.clone())]);
            let p = pod(json!({"spec": {"containers": [], "tolerations": tols}}));
            let (_, _, statuses) = run_filter(plugin.as_ref(), &p, &snap);
            match want {
                None => assert!(statuses[0].is_success(), "{taints} {tols}"),
                Some(msg) => assert_eq!(
                    verdict(&statuses[0]),
                    (Code::UnschedulableAndUnresolvable, vec![msg.to_owned()])
                ),
            }
        }
    }

    #[test]
    fn score_counts_prefer_no_schedule_reversed() {
        let plugin = new(None, &handle()).unwrap();
        let snap = snapshot(vec![
            tainted("n0", json!([])),
            tainted(
                "n1",
                json!([{"key": "cpu-type", "value": "arm64", "effect": "PreferNoSchedule"}]),
            ),
            tainted(
                "n2",
                json!([
                {"key": "cpu-type", "value": "arm64", "effect": "PreferNoSchedule"},
                {"key": "disk-type", "value": "hdd", "effect": "PreferNoSchedule"}]),
            ),
            // A NoSchedule taint does not count for scoring.
            tainted(
                "n3",
                json!([{"key": "x", "value": "y", "effect": "NoSchedule"}]),
            ),
        ]);
        let p = pod(json!({"spec": {"containers": []}}));
        // Raw counts 0,1,2,0; max 2 → 100, 50, 0, 100.
        assert_eq!(run_score(plugin.as_ref(), &p, &snap), vec![100, 50, 0, 100]);
        // Tolerating one of them (empty effect counts as tolerating all).
        let p = pod(json!({"spec": {"containers": [], "tolerations": [
            {"key": "cpu-type", "operator": "Equal", "value": "arm64"}]}}));
        assert_eq!(
            run_score(plugin.as_ref(), &p, &snap),
            vec![100, 100, 0, 100]
        );
        // A toleration for NoSchedule only does not help with PreferNoSchedule.
        let p = pod(json!({"spec": {"containers": [], "tolerations": [
            {"key": "cpu-type", "operator": "Exists", "effect": "NoSchedule"}]}}));
        assert_eq!(run_score(plugin.as_ref(), &p, &snap), vec![100, 50, 0, 100]);
    }
}
