//! NodePorts: a pod's host ports must be free on the node. A port bound on
//! 0.0.0.0 conflicts with the same protocol/port on any address.

use std::sync::Arc;

use crate::cache::node_name;
use crate::framework::node_info::{HostPort, host_ports};
use crate::framework::{
    ClusterEvent, CycleState, EventObjects, EventResource, FilterPlugin, Handle, NodeInfo, Plugin,
    PodInfo, PreFilterPlugin, PreFilterResult, QueueingHint, Snapshot, Status, action,
};

/// The plugin's name.
pub const NAME: &str = "NodePorts";
/// The reason for a conflict.
pub const ERR_REASON: &str = "node(s) didn't have free ports for the requested pod ports";
const BIND_ALL: &str = "0.0.0.0";

/// Checks host port conflicts.
#[derive(Debug, Default)]
pub struct NodePorts;

/// The factory (no args).
pub fn new(_args: Option<&serde_json::Value>, _handle: &Handle) -> Result<Arc<dyn Plugin>, String> {
    Ok(Arc::new(NodePorts))
}

/// True when `want` conflicts with a port in use on the node (upstream's
/// `HostPortInfo.CheckConflict`).
fn conflicts(node: &NodeInfo, want: &HostPort) -> bool {
    node.used_ports.iter().any(|used| clash(used, want))
}

fn clash((uip, uproto, uport): &HostPort, (ip, proto, port): &HostPort) -> bool {
    uport == port && uproto == proto && (ip == BIND_ALL || uip == BIND_ALL || uip == ip)
}

fn fits(node: &NodeInfo, wanted: &[HostPort]) -> bool {
    !wanted.iter().any(|w| conflicts(node, w))
}

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events_to_register(&self) -> Vec<ClusterEvent> {
        vec![
            ClusterEvent {
                resource: EventResource::Pod,
                action: action::DELETE,
            },
            // Only a new node adds free ports (upstream's registration
            // with queueing hints).
            ClusterEvent {
                resource: EventResource::Node,
                action: action::ADD,
            },
        ]
    }
    /// Upstream's `isSchedulableAfterPodDeleted`: a deleted pod frees ports
    /// only when it was on a node and held a port the pod wants.
    fn queueing_hint(
        &self,
        pod: &PodInfo,
        _event: &ClusterEvent,
        objects: &EventObjects,
    ) -> QueueingHint {
        let Some((Some(deleted), None)) = objects.pods() else {
            return QueueingHint::Queue;
        };
        let assigned = node_name(deleted).is_some();
        let freed = host_ports(deleted);
        QueueingHint::queue_if(
            assigned
                && pod
                    .host_ports
                    .iter()
                    .any(|w| freed.iter().any(|f| clash(f, w))),
        )
    }
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        Some(self)
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
}

impl PreFilterPlugin for NodePorts {
    /// Skips pods without host ports. The ports themselves need no cycle
    /// state: [`PodInfo`] holds them.
    fn pre_filter(
        &self,
        _state: &mut CycleState,
        pod: &PodInfo,
        _snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        if pod.host_ports.is_empty() {
            return (None, Status::skip());
        }
        (None, Status::success())
    }
}

impl FilterPlugin for NodePorts {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if fits(node, &pod.host_ports) {
            Status::success()
        } else {
            Status::unschedulable(ERR_REASON)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::plugins::testing::{handle, node_with_pods, pod, run_filter, snapshot, verdict};
    use serde_json::{Value, json};

    /// A pod asking for `ports` as "proto/ip/hostPort" strings.
    fn pod_with_ports(name: &str, ports: &[&str]) -> PodInfo {
        let ports: Vec<Value> = ports
            .iter()
            .map(|p| {
                let parts: Vec<&str> = p.split('/').collect();
                json!({"protocol": parts[0], "hostIP": parts[1],
                       "hostPort": parts[2].parse::<i32>().unwrap(), "containerPort": 80})
            })
            .collect();
        pod(json!({"metadata": {"name": name},
                   "spec": {"containers": [{"name": "c", "ports": ports}]}}))
    }

    #[test]
    fn conflicts_table() {
        let plugin = new(None, &handle()).unwrap();
        // (wanted, in use, fits), from upstream's node_ports_test.
        let cases: &[(&[&str], &[&str], bool)] = &[
            (&[], &[], true),
            (&["UDP/127.0.0.1/8080"], &["UDP/127.0.0.1/9090"], true),
            (&["UDP/127.0.0.1/8080"], &["UDP/127.0.0.1/8080"], false),
            (&["TCP/127.0.0.1/8080"], &["UDP/127.0.0.1/8080"], true),
            (
                &["TCP/127.0.0.1/8001", "UDP/127.0.0.1/8080"],
                &["UDP/127.0.0.1/8080"],
                false,
            ),
            (&["TCP/127.0.0.1/8080"], &["TCP/127.0.0.2/8080"], true),
            (&["TCP/0.0.0.0/8001"], &["TCP/127.0.0.1/8001"], false),
            (&["TCP/127.0.0.1/8001"], &["TCP/0.0.0.0/8001"], false),
            (&["UDP/0.0.0.0/8001"], &["TCP/0.0.0.0/8001"], true),
            (&["TCP/0.0.0.0/8001"], &["TCP/0.0.0.0/8001"], false),
        ];
        for (wanted, used, fits) in cases {
            let p = pod_with_ports("p", wanted);
            let existing = if used.is_empty() {
                vec![]
            } else {
                vec![pod_with_ports("other", used)]
            };
            let n = node_with_pods(json!({"metadata": {"name": "n"}}), existing);
            let (_, s, statuses) = run_filter(plugin.as_ref(), &p, &snapshot(vec![n]));
            if wanted.is_empty() {
                assert!(s.is_skip());
                continue;
            }
            if *fits {
                assert!(statuses[0].is_success(), "{wanted:?} vs {used:?}");
            } else {
                assert_eq!(
                    verdict(&statuses[0]),
                    (Code::Unschedulable, vec![ERR_REASON.to_owned()]),
                    "{wanted:?} vs {used:?}"
                );
            }
        }
    }

    #[test]
    fn defaults_and_sidecars() {
        // No hostIP means 0.0.0.0, no protocol TCP; plain init containers
        // have exited, sidecars keep their ports.
        let p = pod(json!({"spec": {
            "initContainers": [
                {"name": "init", "ports": [{"containerPort": 1, "hostPort": 7000}]},
                {"name": "side", "restartPolicy": "Always",
                 "ports": [{"containerPort": 1, "hostPort": 7001}]}],
            "containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}}));
        assert_eq!(
            host_ports(&p.pod),
            vec![
                ("0.0.0.0".to_owned(), "TCP".to_owned(), 7001),
                ("0.0.0.0".to_owned(), "TCP".to_owned(), 8080)
            ]
        );
    }
}
