//! SchedulingGates: a pod with `spec.schedulingGates` stays out of the active
//! queue until every gate is removed.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{
    ClusterEvent, Code, EventResource, Handle, Plugin, PreEnqueuePlugin, Status, action,
};

/// The plugin's name.
pub const NAME: &str = "SchedulingGates";

/// Holds back gated pods.
#[derive(Debug, Default)]
pub struct SchedulingGates;

/// The factory (no args).
pub fn new(_args: Option<&serde_json::Value>, _handle: &Handle) -> Result<Arc<dyn Plugin>, String> {
    Ok(Arc::new(SchedulingGates))
}

impl Plugin for SchedulingGates {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events_to_register(&self) -> Vec<ClusterEvent> {
        vec![ClusterEvent {
            resource: EventResource::Pod,
            action: action::UPDATE_POD_SCHEDULING_GATES_ELIMINATED,
        }]
    }
    fn as_pre_enqueue(&self) -> Option<&dyn PreEnqueuePlugin> {
        Some(self)
    }
}

impl PreEnqueuePlugin for SchedulingGates {
    fn pre_enqueue(&self, pod: &Pod) -> Status {
        let gates = pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduling_gates.as_ref())
            .filter(|g| !g.is_empty());
        let Some(gates) = gates else {
            return Status::success();
        };
        // Go's %v of a []string: "[a b]".
        let names: Vec<&str> = gates.iter().map(|g| g.name.as_str()).collect();
        Status::new(
            Code::UnschedulableAndUnresolvable,
            format!("waiting for scheduling gates: [{}]", names.join(" ")),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::plugins::testing::{handle, pod, verdict};
    use serde_json::json;

    #[test]
    fn gated_pods_wait() {
        let plugin = new(None, &handle()).unwrap();
        let pe = plugin.as_pre_enqueue().unwrap();
        let cases = [
            (json!({"containers": []}), None),
            (json!({"containers": [], "schedulingGates": []}), None),
            (
                json!({"containers": [], "schedulingGates": [{"name": "foo"}]}),
                Some("waiting for scheduling gates: [foo]"),
            ),
            (
                json!({"containers": [], "schedulingGates": [{"name": "foo"}, {"name": "bar"}]}),
                Some("waiting for scheduling gates: [foo bar]"),
            ),
        ];
        for (spec, want) in cases {
            let p = pod(json!({"spec": spec}));
            let s = pe.pre_enqueue(&p.pod);
            match want {
                None => assert!(s.is_success()),
                Some(msg) => assert_eq!(
                    verdict(&s),
                    (Code::UnschedulableAndUnresolvable, vec![msg.to_owned()])
                ),
            }
        }
        assert_eq!(plugin.events_to_register().len(), 1);
    }
}
