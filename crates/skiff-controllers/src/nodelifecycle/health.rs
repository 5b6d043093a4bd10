//! A node's health as the controller tracks it (upstream's
//! `tryUpdateNodeHealth`): the controller's own clock stamps each change it
//! observes (a new Ready heartbeat, a renewed Lease) as the node's probe
//! time, so skew between the node's clock and ours does not matter; a node
//! not heard from for the grace period gets its conditions set Unknown.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, NodeCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

/// Conditions set Unknown when the node stops reporting (NetworkUnavailable
/// is managed by the control plane, not the kubelet, so it is left alone).
pub const MONITORED_CONDITIONS: &[&str] =
    &["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// What the controller remembers of a node between passes.
#[derive(Debug, Clone)]
pub struct NodeHealthData {
    /// When (our clock) the node was last heard from.
    pub probe_timestamp: Instant,
    /// When (our clock) its Ready condition last changed.
    pub ready_transition_timestamp: Instant,
    /// Its Ready condition when last seen.
    pub ready: Option<NodeCondition>,
    /// Its Lease's renewTime when last seen.
    pub lease_renew_time: Option<Timestamp>,
}

/// The grace periods.
#[derive(Debug, Clone, Copy)]
pub struct GracePeriods {
    /// `--node-monitor-grace-period`.
    pub monitor: Duration,
    /// `--node-startup-grace-period` (for nodes that never reported).
    pub startup: Duration,
}

/// One pass's result for one node.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthUpdate {
    /// The Ready condition as found (a made-up Unknown one when missing).
    pub observed_ready: NodeCondition,
    /// The Ready condition after this pass (None when missing and not
    /// stale yet).
    pub current_ready: Option<NodeCondition>,
    /// The node's new conditions, when they must be written.
    pub new_conditions: Option<Vec<NodeCondition>>,
}

fn conditions(node: &Node) -> &[NodeCondition] {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[])
}

fn ready_of(node: &Node) -> Option<&NodeCondition> {
    conditions(node).iter().find(|c| c.type_ == "Ready")
}

fn creation(node: &Node) -> Option<Time> {
    node.metadata.creation_timestamp.clone()
}

/// `wall_then` on our monotonic clock, given that `wall_now` is `now`.
fn instant_of(wall_then: Option<&Time>, now: Instant, wall_now: Timestamp) -> Instant {
    let Some(t) = wall_then else { return now };
    let ago = wall_now.duration_since(t.0).as_secs_f64().max(0.0);
    now.checked_sub(Duration::from_secs_f64(ago)).unwrap_or(now)
}

/// Brings `saved` up to date with `node` and its Lease's renewTime at
/// `now` (`wall` on the wall clock): the new health data and what to do.
pub fn update_node_health(
    saved: Option<&NodeHealthData>,
    node: &Node,
    lease_renew_time: Option<Timestamp>,
    grace: GracePeriods,
    now: Instant,
    wall: Timestamp,
) -> (NodeHealthData, HealthUpdate) {
    let current = ready_of(node).cloned();
    let (observed_ready, grace_period) = match &current {
        Some(c) => (c.clone(), grace.monitor),
        // Never reported: judge it from its creation, with the startup grace.
        None => (
            NodeCondition {
                type_: "Ready".to_owned(),
                status: "Unknown".to_owned(),
                last_heartbeat_time: creation(node),
                last_transition_time: creation(node),
                ..NodeCondition::default()
            },
            grace.startup,
        ),
    };
    let created = instant_of(creation(node).as_ref(), now, wall);
    let fresh = |ready: Option<NodeCondition>| NodeHealthData {
        probe_timestamp: now,
        ready_transition_timestamp: now,
        ready,
        lease_renew_time: None,
    };
    let mut health = match (saved, &current) {
        (None, None) => NodeHealthData {
            probe_timestamp: created,
            ready_transition_timestamp: created,
            ready: None,
            lease_renew_time: None,
        },
        (None, Some(_)) => fresh(current.clone()),
        (Some(s), None) => {
            if s.ready.is_some() {
                // The Ready condition was removed: start over.
                fresh(None)
            } else {
                s.clone()
            }
        }
        (Some(s), Some(c)) => match &s.ready {
            None => NodeHealthData {
                lease_renew_time: s.lease_renew_time,
                ..fresh(current.clone())
            },
            Some(old) if old.last_heartbeat_time != c.last_heartbeat_time => {
                let transition = if old.last_transition_time != c.last_transition_time {
                    now
                } else {
                    s.ready_transition_timestamp
                };
                NodeHealthData {
                    probe_timestamp: now,
                    ready_transition_timestamp: transition,
                    ready: current.clone(),
                    lease_renew_time: s.lease_renew_time,
                }
            }
            Some(_) => NodeHealthData {
                ready: current.clone(),
                ..s.clone()
            },
        },
    };
    // A renewed Lease is a heartbeat too.
    if let Some(renew) = lease_renew_time
        && health.lease_renew_time.is_none_or(|old| old < renew)
    {
        health.lease_renew_time = Some(renew);
        health.probe_timestamp = now;
    }
    let mut update = HealthUpdate {
        observed_ready,
        current_ready: current,
        new_conditions: None,
    };
    if now <= health.probe_timestamp + grace_period {
        return (health, update);
    }
    // Not heard from for the grace period: every monitored condition
    // becomes Unknown, whatever it was.
    let now_time = Time(wall);
    let mut conds = conditions(node).to_vec();
    for type_ in MONITORED_CONDITIONS {
        match conds.iter_mut().find(|c| c.type_ == *type_) {
            None => conds.push(NodeCondition {
                type_: (*type_).to_owned(),
                status: "Unknown".to_owned(),
                reason: Some("NodeStatusNeverUpdated".to_owned()),
                message: Some("Kubelet never posted node status.".to_owned()),
                last_heartbeat_time: creation(node),
                last_transition_time: Some(now_time.clone()),
            }),
            Some(c) if c.status != "Unknown" => {
                c.status = "Unknown".to_owned();
                c.reason = Some("NodeStatusUnknown".to_owned());
                c.message = Some("Kubelet stopped posting node status.".to_owned());
                c.last_transition_time = Some(now_time.clone());
            }
            Some(_) => {}
        }
    }
    let new_ready = conds.iter().find(|c| c.type_ == "Ready").cloned();
    if new_ready.as_ref() != Some(&update.observed_ready) {
        update.current_ready = new_ready;
        update.new_conditions = Some(conds);
    }
    (health, update)
}

/// Records that the conditions of `update` were written.
pub fn status_written(health: &mut NodeHealthData, update: &HealthUpdate, now: Instant) {
    health.ready = update.current_ready.clone();
    health.ready_transition_timestamp = now;
}
