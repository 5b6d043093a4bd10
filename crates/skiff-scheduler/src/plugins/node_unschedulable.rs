//! NodeUnschedulable: rejects cordoned nodes (`spec.unschedulable`) unless
//! the pod tolerates the `node.kubernetes.io/unschedulable:NoSchedule` taint.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Taint};

use super::helper::tolerations_tolerate_taint;
use crate::framework::{
    ClusterEvent, CycleState, EventObjects, EventResource, FilterPlugin, Handle, NodeInfo, Plugin,
    PodInfo, QueueingHint, Status, action, hint_node_now_passes,
};

/// The plugin's name.
pub const NAME: &str = "NodeUnschedulable";
/// The reason for a cordoned node.
pub const ERR_REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
/// The reason when the Node object is unknown.
pub const ERR_REASON_UNKNOWN_CONDITION: &str = "node(s) had unknown conditions";
/// The taint a cordoned node carries.
pub const TAINT_NODE_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// Filters out cordoned nodes.
#[derive(Debug, Default)]
pub struct NodeUnschedulable;

/// The factory (no args).
pub fn new(_args: Option<&serde_json::Value>, _handle: &Handle) -> Result<Arc<dyn Plugin>, String> {
    Ok(Arc::new(NodeUnschedulable))
}

impl Plugin for NodeUnschedulable {
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
    /// Upstream's `isSchedulableAfterNodeChange`: a node that now admits
    /// the pod and did not before (or a new one that does).
    fn queueing_hint(
        &self,
        pod: &PodInfo,
        _event: &ClusterEvent,
        objects: &EventObjects,
    ) -> QueueingHint {
        hint_node_now_passes(objects, |n| admits(is_unschedulable(n), pod))
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
}

/// The node's `spec.unschedulable`.
pub fn is_unschedulable(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
}

/// True when `node` takes `pod`: not cordoned, or the pod tolerates the
/// cordon's taint.
fn admits(unschedulable: bool, pod: &PodInfo) -> bool {
    if !unschedulable {
        return true;
    }
    let tolerations = pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[]);
    let taint = Taint {
        key: TAINT_NODE_UNSCHEDULABLE.to_owned(),
        effect: "NoSchedule".to_owned(),
        ..Taint::default()
    };
    tolerations_tolerate_taint(tolerations, &taint)
}

impl FilterPlugin for NodeUnschedulable {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if node.node.is_none() {
            Status::unresolvable(ERR_REASON_UNKNOWN_CONDITION)
        } else if admits(node.unschedulable, pod) {
            Status::success()
        } else {
            Status::unresolvable(ERR_REASON_UNSCHEDULABLE)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::plugins::testing::{handle, node, pod, verdict};
    use serde_json::json;

    #[test]
    fn cordoned_nodes_table() {
        let plugin = new(None, &handle()).unwrap();
        let f = plugin.as_filter().unwrap();
        let tolerant = json!([{"key": TAINT_NODE_UNSCHEDULABLE, "operator": "Exists",
            "effect": "NoSchedule"}]);
        let cases = [
            (json!({}), json!(null), true),
            (json!({"unschedulable": false}), json!(null), true),
            (json!({"unschedulable": true}), json!(null), false),
            (json!({"unschedulable": true}), tolerant, true),
            (
                json!({"unschedulable": true}),
                json!([{"operator": "Exists"}]),
                true,
            ),
            (
                json!({"unschedulable": true}),
                json!([{"key": TAINT_NODE_UNSCHEDULABLE, "operator": "Exists",
                    "effect": "NoExecute"}]),
                false,
            ),
        ];
        for (spec, tolerations, fits) in cases {
            let n = node(json!({"metadata": {"name": "n"}, "spec": spec}));
            let p = pod(json!({"spec": {"containers": [], "tolerations": tolerations}}));
            let s = f.filter(&CycleState::new(), &p, &n);
            if fits {
                assert!(s.is_success(), "{spec} {tolerations}");
            } else {
                assert_eq!(
                    verdict(&s),
                    (
                        Code::UnschedulableAndUnresolvable,
                        vec![ERR_REASON_UNSCHEDULABLE.to_owned()]
                    )
                );
            }
        }
        let s = f.filter(
            &CycleState::new(),
            &pod(json!({"spec": {"containers": []}})),
            &NodeInfo::default(),
        );
        assert_eq!(s.reasons(), [ERR_REASON_UNKNOWN_CONDITION]);
    }
}
