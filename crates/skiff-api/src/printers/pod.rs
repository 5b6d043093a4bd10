//! Pods: NAME READY STATUS RESTARTS AGE, and IP NODE NOMINATED NODE READINESS
//! GATES wide.
//!
//! STATUS is the aggregate upstream computes: the phase (or `status.reason`),
//! then the first init container that has not succeeded (`Init:N/M`,
//! `Init:<reason>`, `Init:ExitCode:N`), then the last app container with a
//! waiting or terminated reason, and finally `Terminating` / `Unknown` for pods
//! being deleted. Restartable init containers (sidecars) count as containers.

use std::collections::HashMap;

use serde_json::Value;
use time::OffsetDateTime;

use super::fields::{
    age, array_at, bool_at, get, int_at, is_deleting, name, since, str_at, time_at,
};
use super::{AGE, Ctx, TableColumnDefinition, col, name_col};

/// Pod columns.
pub(super) static COLUMNS: &[TableColumnDefinition] = &[
    name_col(0),
    col(
        "Ready",
        "string",
        0,
        "Ready containers out of all containers (sidecars included).",
    ),
    col(
        "Status",
        "string",
        0,
        "Summary of the pod's phase and its containers' states.",
    ),
    col(
        "Restarts",
        "string",
        0,
        "Container restarts, and how long ago the last one happened.",
    ),
    AGE,
    col("IP", "string", 1, "The pod's primary IP address."),
    col("Node", "string", 1, "The node the pod is bound to."),
    col(
        "Nominated Node",
        "string",
        1,
        "The node the scheduler nominated for the pod after preempting others.",
    ),
    col(
        "Readiness Gates",
        "string",
        1,
        "Readiness gates whose condition is True, out of all gates.",
    ),
];

/// Reason of pods the node controller marks lost (`NodeUnreachablePodReason`).
const NODE_LOST: &str = "NodeLost";

/// Tracks the restart count and the latest restart time of a set of containers.
#[derive(Debug, Default, Clone, Copy)]
struct Restarts {
    count: i64,
    last: Option<OffsetDateTime>,
}

impl Restarts {
    fn add(&mut self, status: &Value) {
        self.count = self.count.saturating_add(int_at(status, &["restartCount"]));
        let finished = time_at(status, &["lastState", "terminated", "finishedAt"]);
        if finished > self.last {
            self.last = finished;
        }
    }
}

/// A container's `state`, reduced to what the printer looks at.
enum State<'a> {
    Waiting { reason: &'a str },
    Terminated(&'a Value),
    Other,
}

fn state(status: &Value) -> State<'_> {
    if let Some(t) = get(status, &["state", "terminated"]).filter(|v| v.is_object()) {
        State::Terminated(t)
    } else if get(status, &["state", "waiting"]).is_some_and(Value::is_object) {
        State::Waiting {
            reason: str_at(status, &["state", "waiting", "reason"]),
        }
    } else {
        State::Other
    }
}

/// The reason a terminated container without a reason prints:
/// `Signal:N` or `ExitCode:N`.
fn exit_reason(terminated: &Value) -> String {
    let signal = int_at(terminated, &["signal"]);
    if signal != 0 {
        format!("Signal:{signal}")
    } else {
        format!("ExitCode:{}", int_at(terminated, &["exitCode"]))
    }
}

/// True when the pod has a condition `type` whose status is `True` (the first
/// condition of that type decides).
fn condition_true(pod: &Value, type_: &str) -> bool {
    array_at(pod, &["status", "conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == type_)
        .is_some_and(|c| str_at(c, &["status"]) == "True")
}

/// The cells of one pod.
pub(super) fn row(pod: &Value, ctx: &Ctx) -> Vec<Value> {
    let summary = summarize(pod);
    let restarts = match summary.restarts.last {
        Some(last) if summary.restarts.count != 0 => {
            format!(
                "{} ({} ago)",
                summary.restarts.count,
                since(Some(last), ctx)
            )
        }
        _ => summary.restarts.count.to_string(),
    };
    let or_none = |s: &str| {
        if s.is_empty() {
            "<none>".to_owned()
        } else {
            s.to_owned()
        }
    };
    vec![
        name(pod).into(),
        format!("{}/{}", summary.ready, summary.total).into(),
        summary.reason.into(),
        restarts.into(),
        age(pod, ctx),
        or_none(pod_ip(pod)).into(),
        or_none(str_at(pod, &["spec", "nodeName"])).into(),
        or_none(str_at(pod, &["status", "nominatedNodeName"])).into(),
        readiness_gates(pod).into(),
    ]
}

/// READY, STATUS and RESTARTS of a pod.
struct Summary {
    ready: usize,
    total: usize,
    reason: String,
    restarts: Restarts,
}

fn summarize(pod: &Value) -> Summary {
    let phase = str_at(pod, &["status", "phase"]);
    let status_reason = str_at(pod, &["status", "reason"]);
    let mut reason = if status_reason.is_empty() {
        phase.to_owned()
    } else {
        status_reason.to_owned()
    };
    let gated = array_at(pod, &["status", "conditions"]).iter().any(|c| {
        str_at(c, &["type"]) == "PodScheduled" && str_at(c, &["reason"]) == "SchedulingGated"
    });
    if gated {
        reason = "SchedulingGated".to_owned();
    }

    let init_specs = array_at(pod, &["spec", "initContainers"]);
    let sidecars: HashMap<&str, bool> = init_specs
        .iter()
        .map(|c| {
            (
                str_at(c, &["name"]),
                str_at(c, &["restartPolicy"]) == "Always",
            )
        })
        .collect();
    let is_sidecar = |name: &str| sidecars.get(name).copied().unwrap_or(false);
    let mut total = array_at(pod, &["spec", "containers"]).len();
    total += init_specs
        .iter()
        .filter(|c| str_at(c, &["restartPolicy"]) == "Always")
        .count();
    let mut ready = 0;

    let mut all_restarts = Restarts::default();
    let mut sidecar_restarts = Restarts::default();
    let mut initializing = false;
    for (i, status) in array_at(pod, &["status", "initContainerStatuses"])
        .iter()
        .enumerate()
    {
        all_restarts.add(status);
        let sidecar = is_sidecar(str_at(status, &["name"]));
        if sidecar {
            sidecar_restarts.add(status);
        }
        let state = state(status);
        match state {
            State::Terminated(t) if int_at(t, &["exitCode"]) == 0 => continue,
            _ if sidecar && bool_at(status, &["started"]) => {
                if bool_at(status, &["ready"]) {
                    ready += 1;
                }
                continue;
            }
            State::Terminated(t) => {
                let r = str_at(t, &["reason"]);
                reason = if r.is_empty() {
                    format!("Init:{}", exit_reason(t))
                } else {
                    format!("Init:{r}")
                };
            }
            State::Waiting { reason: r } if !r.is_empty() && r != "PodInitializing" => {
                reason = format!("Init:{r}");
            }
            _ => reason = format!("Init:{i}/{}", init_specs.len()),
        }
        initializing = true;
        break;
    }

    let mut restarts = all_restarts;
    if !initializing || condition_true(pod, "Initialized") {
        restarts = sidecar_restarts;
        let mut has_running = false;
        for status in array_at(pod, &["status", "containerStatuses"]).iter().rev() {
            restarts.add(status);
            // Unlike init containers, a waiting reason wins over a terminated state.
            let waiting = str_at(status, &["state", "waiting", "reason"]);
            if !waiting.is_empty() {
                reason = waiting.to_owned();
            } else if let State::Terminated(t) = state(status) {
                let r = str_at(t, &["reason"]);
                reason = if r.is_empty() {
                    exit_reason(t)
                } else {
                    r.to_owned()
                };
            } else if bool_at(status, &["ready"])
                && get(status, &["state", "running"]).is_some_and(Value::is_object)
            {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose last container completed while others still run is not done.
        if reason == "Completed" && has_running {
            let ready_condition = array_at(pod, &["status", "conditions"])
                .iter()
                .any(|c| str_at(c, &["type"]) == "Ready" && str_at(c, &["status"]) == "True");
            reason = if ready_condition {
                "Running".to_owned()
            } else {
                "NotReady".to_owned()
            };
        }
    }

    if is_deleting(pod) {
        if status_reason == NODE_LOST {
            reason = "Unknown".to_owned();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".to_owned();
        }
    }

    Summary {
        ready,
        total,
        reason,
        restarts,
    }
}

/// The primary pod IP: `status.podIP`, else the first of `status.podIPs` (the
/// v1 → internal conversion makes `podIP` authoritative).
fn pod_ip(pod: &Value) -> &str {
    let ip = str_at(pod, &["status", "podIP"]);
    if !ip.is_empty() {
        return ip;
    }
    array_at(pod, &["status", "podIPs"])
        .first()
        .map_or("", |p| str_at(p, &["ip"]))
}

/// `N/M`: readiness gates whose condition is `True`, out of all gates; `<none>`.
fn readiness_gates(pod: &Value) -> String {
    let gates = array_at(pod, &["spec", "readinessGates"]);
    if gates.is_empty() {
        return "<none>".to_owned();
    }
    let satisfied = gates
        .iter()
        .filter(|g| condition_true(pod, str_at(g, &["conditionType"])))
        .count();
    format!("{satisfied}/{}", gates.len())
}

/// The row conditions upstream attaches to finished pods: `Completed` with reason
/// `Succeeded` or `Failed`.
pub(super) fn row_conditions(pod: &Value) -> Option<Value> {
    let (reason, message) = match str_at(pod, &["status", "phase"]) {
        "Succeeded" => ("Succeeded", "The pod ran to completion successfully."),
        "Failed" => ("Failed", "The pod ran to completion and failed."),
        _ => return None,
    };
    Some(serde_json::json!([{
        "type": "Completed",
        "status": "True",
        "reason": reason,
        "message": message,
    }]))
}
