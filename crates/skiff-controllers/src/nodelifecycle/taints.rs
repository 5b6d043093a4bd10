//! Node taints the node lifecycle controller manages, and the toleration
//! matching the taint eviction controller uses (upstream's `taints` and
//! `v1helper` utilities).

use k8s_openapi::api::core::v1::{Node, NodeCondition, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// The node's Ready condition is False.
pub const TAINT_NODE_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The node's Ready condition is Unknown (no heartbeats).
pub const TAINT_NODE_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// `spec.unschedulable` is set.
pub const TAINT_NODE_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// MemoryPressure is True.
pub const TAINT_NODE_MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
/// DiskPressure is True.
pub const TAINT_NODE_DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
/// NetworkUnavailable is True.
pub const TAINT_NODE_NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";
/// PIDPressure is True.
pub const TAINT_NODE_PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
/// Set by an administrator on a node that is out of service.
pub const TAINT_NODE_OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";

/// `NoExecute`.
pub const NO_EXECUTE: &str = "NoExecute";
/// `NoSchedule`.
pub const NO_SCHEDULE: &str = "NoSchedule";

/// Condition (type, status) → the NoSchedule taint key it implies
/// (upstream's `nodeConditionToTaintKeyStatusMap`).
const CONDITION_TAINTS: &[(&str, &str, &str)] = &[
    ("Ready", "False", TAINT_NODE_NOT_READY),
    ("Ready", "Unknown", TAINT_NODE_UNREACHABLE),
    ("MemoryPressure", "True", TAINT_NODE_MEMORY_PRESSURE),
    ("DiskPressure", "True", TAINT_NODE_DISK_PRESSURE),
    ("NetworkUnavailable", "True", TAINT_NODE_NETWORK_UNAVAILABLE),
    ("PIDPressure", "True", TAINT_NODE_PID_PRESSURE),
];

/// A taint with no value and no time.
pub fn taint(key: &str, effect: &str) -> Taint {
    Taint {
        key: key.to_owned(),
        effect: effect.to_owned(),
        value: None,
        time_added: None,
    }
}

/// Same key and effect (upstream's `MatchTaint`).
pub fn matches(a: &Taint, b: &Taint) -> bool {
    a.key == b.key && a.effect == b.effect
}

/// Whether `taints` has one matching `t`.
pub fn taint_exists(taints: &[Taint], t: &Taint) -> bool {
    taints.iter().any(|x| matches(x, t))
}

/// The node's taints (empty when none).
pub fn node_taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[])
}

/// The node's condition of `type_`.
pub fn node_condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// Ready=True.
pub fn is_node_ready(node: &Node) -> bool {
    node_condition(node, "Ready").is_some_and(|c| c.status == "True")
}

/// The NoSchedule taints the node's conditions and `spec.unschedulable`
/// call for (upstream's `doNoScheduleTaintingPass`).
pub fn condition_taints(node: &Node) -> Vec<Taint> {
    let mut out = Vec::new();
    for c in node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[])
    {
        if let Some((_, _, key)) = CONDITION_TAINTS
            .iter()
            .find(|(t, s, _)| *t == c.type_ && *s == c.status)
        {
            out.push(taint(key, NO_SCHEDULE));
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        out.push(taint(TAINT_NODE_UNSCHEDULABLE, NO_SCHEDULE));
    }
    out
}

fn is_managed_no_schedule(t: &Taint) -> bool {
    t.effect == NO_SCHEDULE
        && (t.key == TAINT_NODE_UNSCHEDULABLE
            || CONDITION_TAINTS.iter().any(|(_, _, k)| *k == t.key))
}

/// The node's new taint list when its condition taints must change: managed
/// NoSchedule taints not called for are removed, missing ones added; other
/// taints are kept. None when nothing changes.
pub fn reconcile_condition_taints(node: &Node) -> Option<Vec<Taint>> {
    let wanted = condition_taints(node);
    let current = node_taints(node);
    let to_remove: Vec<Taint> = current
        .iter()
        .filter(|t| is_managed_no_schedule(t) && !taint_exists(&wanted, t))
        .cloned()
        .collect();
    let to_add: Vec<Taint> = wanted
        .into_iter()
        .filter(|t| !taint_exists(current, t))
        .collect();
    if to_add.is_empty() && to_remove.is_empty() {
        return None;
    }
    swap_taints(current, &to_add, &to_remove, None)
}

/// `current` with `remove` taken off and `add` put on (replacing a taint
/// of the same key and effect); added NoExecute taints get `timeAdded`
/// `now`. None when the result equals `current`.
pub fn swap_taints(
    current: &[Taint],
    add: &[Taint],
    remove: &[Taint],
    now: Option<Timestamp>,
) -> Option<Vec<Taint>> {
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| !taint_exists(remove, t))
        .cloned()
        .collect();
    for a in add {
        if let Some(existing) = out.iter().find(|t| matches(t, a))
            && existing.value == a.value
        {
            continue;
        }
        out.retain(|t| !matches(t, a));
        let mut a = a.clone();
        if a.effect == NO_EXECUTE && a.time_added.is_none() {
            a.time_added = now.map(Time);
        }
        out.push(a);
    }
    (out.as_slice() != current).then_some(out)
}

/// The NoExecute taints of `taints`.
pub fn no_execute_taints(taints: &[Taint]) -> Vec<Taint> {
    taints
        .iter()
        .filter(|t| t.effect == NO_EXECUTE)
        .cloned()
        .collect()
}

/// Whether `tol` tolerates `taint` (upstream's `ToleratesTaint`).
pub fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = tol.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    let key = tol.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match tol.operator.as_deref().unwrap_or("") {
        "Exists" => true,
        "Equal" | "" => tol.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// Whether every taint is tolerated, and the tolerations used (upstream's
/// `GetMatchingTolerations`).
pub fn matching_tolerations(
    taints: &[Taint],
    tolerations: &[Toleration],
) -> (bool, Vec<Toleration>) {
    let mut used = Vec::new();
    for t in taints {
        match tolerations.iter().find(|tol| tolerates(tol, t)) {
            Some(tol) => used.push(tol.clone()),
            None => return (false, Vec::new()),
        }
    }
    (true, used)
}

/// How long `tolerations` tolerate their taints (upstream's
/// `getMinTolerationTime`): the shortest `tolerationSeconds` among those
/// that set it (zero or less counts as zero); None (forever) when none sets
/// it; zero when there are no tolerations.
pub fn min_toleration_seconds(tolerations: &[Toleration]) -> Option<i64> {
    if tolerations.is_empty() {
        return Some(0);
    }
    tolerations
        .iter()
        .filter_map(|t| t.toleration_seconds)
        .map(|s| s.max(0))
        .min()
}
