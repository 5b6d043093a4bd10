//! NodeName: a pod with `spec.nodeName` fits only that node.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::framework::{
    ClusterEvent, CycleState, EventResource, FilterPlugin, Handle, NodeInfo, Plugin, PodInfo,
    PreFilterPlugin, PreFilterResult, Snapshot, Status, action,
};

/// The plugin's name.
pub const NAME: &str = "NodeName";
/// The reason for any other node.
pub const ERR_REASON: &str = "node(s) didn't match the requested node name";

/// Pins pods with `spec.nodeName`.
#[derive(Debug, Default)]
pub struct NodeName;

/// The factory (no args).
pub fn new(_args: Option<&serde_json::Value>, _handle: &Handle) -> Result<Arc<dyn Plugin>, String> {
    Ok(Arc::new(NodeName))
}

fn requested_node_name(pod: &PodInfo) -> Option<&str> {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events_to_register(&self) -> Vec<ClusterEvent> {
        vec![ClusterEvent {
            resource: EventResource::Node,
            action: action::ADD | action::UPDATE_NODE_TAINT | action::UPDATE_NODE_LABEL,
        }]
    }
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        Some(self)
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
}

impl PreFilterPlugin for NodeName {
    fn pre_filter(
        &self,
        _state: &mut CycleState,
        pod: &PodInfo,
        _snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        match requested_node_name(pod) {
            // Nothing to check on any node.
            None => (None, Status::skip()),
            Some(name) => (
                Some(PreFilterResult {
                    node_names: Some(BTreeSet::from([name.to_owned()])),
                }),
                Status::success(),
            ),
        }
    }
}

impl FilterPlugin for NodeName {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match requested_node_name(pod) {
            Some(name) if name != node.name() => Status::unresolvable(ERR_REASON),
            _ => Status::success(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::plugins::testing::{handle, node, pod, run_filter, snapshot, verdict};
    use serde_json::json;

    #[test]
    fn node_name_table() {
        let plugin = new(None, &handle()).unwrap();
        let snap = snapshot(vec![
            node(json!({"metadata": {"name": "foo"}})),
            node(json!({"metadata": {"name": "bar"}})),
        ]);
        // No nodeName: PreFilter skips, every node fits.
        let (r, s, statuses) = run_filter(
            plugin.as_ref(),
            &pod(json!({"spec": {"containers": []}})),
            &snap,
        );
        assert!(s.is_skip() && r.is_none());
        assert!(statuses.iter().all(Status::is_success));

        let p = pod(json!({"spec": {"containers": [], "nodeName": "foo"}}));
        let (r, s, statuses) = run_filter(plugin.as_ref(), &p, &snap);
        assert!(s.is_success());
        assert_eq!(
            r.unwrap().node_names,
            Some(BTreeSet::from(["foo".to_owned()]))
        );
        assert!(statuses[0].is_success());
        assert_eq!(
            verdict(&statuses[1]),
            (
                Code::UnschedulableAndUnresolvable,
                vec![ERR_REASON.to_owned()]
            )
        );
    }
}
