//! The pod evaluator: compute usage (requests and limits of the pod as the
//! scheduler sees it), the pod count, scopes and the cpu/memory constraint.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{ResourceList, ScopeRequirement, add, to_set};
use crate::quantity::Quantity;

/// Resource names the pod evaluator tracks outright.
const POD_RESOURCES: &[&str] = &[
    "count/pods",
    "pods",
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
];

/// The names whose quota makes every container state them (a
/// backward-compatibility rule of upstream's pod evaluator).
const VALIDATION_SET: &[&str] = &[
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

/// Whether the pod evaluator accounts for `r`.
pub(super) fn tracks(r: &str) -> bool {
    POD_RESOURCES.contains(&r)
        || r.starts_with("hugepages-")
        || r.starts_with("requests.hugepages-")
        || r.strip_prefix("requests.")
            .is_some_and(is_extended_resource_name)
}

/// Upstream's `IsExtendedResourceName`: a qualified name outside the
/// `kubernetes.io/` domain, with a domain.
fn is_extended_resource_name(name: &str) -> bool {
    let native = !name.contains('/') || name.contains("kubernetes.io/");
    if native || name.starts_with("requests.") {
        return false;
    }
    let Some((prefix, rest)) = name.split_once('/') else {
        return false;
    };
    !prefix.is_empty()
        && !rest.is_empty()
        && rest.len() <= 63
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Upstream's `QuotaV1Pod`: terminal pods, and pods stuck terminating past
/// their grace period (a lost node), are not charged.
pub fn quota_v1_pod(pod: &Value, now: i64) -> bool {
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    let deletion = pod
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        });
    let grace = pod
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64);
    if let (Some(at), Some(grace)) = (deletion, grace)
        && now > at.unix_timestamp().saturating_add(grace)
    {
        return false;
    }
    true
}

/// A container's `resources.<which>` as a list.
fn container_list(c: &Value, which: &str) -> ResourceList {
    super::resource_list(c.get("resources").and_then(|r| r.get(which)))
}

fn containers<'a>(pod: &'a Value, field: &str) -> &'a [Value] {
    pod.get("spec")
        .and_then(|s| s.get(field))
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
}

/// Per resource, the larger of the two.
fn max_into(into: &mut ResourceList, other: &ResourceList) {
    for (k, q) in other {
        if into.get(k).is_none_or(|have| q > have) {
            into.insert(k.clone(), q.clone());
        }
    }
}

/// The pod's effective `which` (`requests` or `limits`): its containers'
/// sum with restartable init containers (sidecars), or the largest init
/// container's need if more, plus the pod overhead (upstream's
/// `PodRequests` / `PodLimits`). Limits here carry no overhead: a caller
/// that wants upstream's `PodLimits` adds it to the limits present.
pub fn pod_resources(pod: &Value, which: &str) -> ResourceList {
    let mut total = ResourceList::new();
    for c in containers(pod, "containers") {
        total = add(&total, &container_list(c, which));
    }
    let mut sidecars = ResourceList::new();
    let mut init_max = ResourceList::new();
    for c in containers(pod, "initContainers") {
        let own = container_list(c, which);
        let needs = if c.get("restartPolicy").and_then(Value::as_str) == Some("Always") {
            total = add(&total, &own);
            sidecars = add(&sidecars, &own);
            sidecars.clone()
        } else {
            add(&own, &sidecars)
        };
        max_into(&mut init_max, &needs);
    }
    max_into(&mut total, &init_max);
    if which == "requests" {
        total = add(&total, &super::resource_list(pod.pointer("/spec/overhead")));
    }
    total
}

/// Upstream's `podComputeUsageHelper`: the quota names of requests and
/// limits, and one pod.
fn compute_usage(requests: &ResourceList, limits: &ResourceList) -> ResourceList {
    let mut out = ResourceList::from([("pods".to_owned(), Quantity::from_int(1))]);
    for res in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(q) = requests.get(res) {
            out.insert(res.to_owned(), q.clone());
            out.insert(format!("requests.{res}"), q.clone());
        }
        if let Some(q) = limits.get(res) {
            out.insert(format!("limits.{res}"), q.clone());
        }
    }
    for (res, q) in requests {
        if res.starts_with("hugepages-") {
            out.insert(res.clone(), q.clone());
            out.insert(format!("requests.{res}"), q.clone());
        }
        if is_extended_resource_name(res) {
            out.insert(format!("requests.{res}"), q.clone());
        }
    }
    out
}

/// What a pod uses: always `count/pods`; compute resources and `pods` only
/// while it is not terminal.
pub fn pod_usage(pod: &Value, now: i64) -> ResourceList {
    let mut out = ResourceList::from([("count/pods".to_owned(), Quantity::from_int(1))]);
    if !quota_v1_pod(pod, now) {
        return out;
    }
    let usage = compute_usage(
        &pod_resources(pod, "requests"),
        &pod_resources(pod, "limits"),
    );
    out.extend(usage);
    out
}

/// A pod with `activeDeadlineSeconds` is "terminating".
pub fn is_terminating(pod: &Value) -> bool {
    pod.pointer("/spec/activeDeadlineSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|d| d >= 0)
}

/// A pod of QoS class BestEffort: no container states a non-zero cpu or
/// memory request or limit.
pub fn is_best_effort(pod: &Value) -> bool {
    containers(pod, "containers")
        .iter()
        .chain(containers(pod, "initContainers"))
        .all(|c| {
            ["requests", "limits"].iter().all(|which| {
                let l = container_list(c, which);
                ["cpu", "memory"]
                    .iter()
                    .all(|r| l.get(*r).is_none_or(Quantity::is_zero))
            })
        })
}

/// Whether a pod matches one quota scope.
pub(super) fn matches_scope(scope: &ScopeRequirement, pod: &Value) -> bool {
    match scope.scope_name.as_str() {
        "Terminating" => is_terminating(pod),
        "NotTerminating" => !is_terminating(pod),
        "BestEffort" => is_best_effort(pod),
        "NotBestEffort" => !is_best_effort(pod),
        "PriorityClass" => {
            let class = pod
                .pointer("/spec/priorityClassName")
                .and_then(Value::as_str)
                .unwrap_or("");
            // The class is matched as a label that is always present
            // (possibly empty), except that `Exists` asks for a class.
            match scope.operator.as_str() {
                "Exists" => !class.is_empty(),
                "In" => scope.values.iter().any(|v| v == class),
                "NotIn" => !scope.values.iter().any(|v| v == class),
                _ => false,
            }
        }
        "CrossNamespacePodAffinity" => uses_cross_namespace_affinity(pod),
        _ => false,
    }
}

/// A pod affinity or anti-affinity term that names namespaces or a
/// namespace selector.
fn uses_cross_namespace_affinity(pod: &Value) -> bool {
    let Some(affinity) = pod.pointer("/spec/affinity") else {
        return false;
    };
    ["podAffinity", "podAntiAffinity"].iter().any(|kind| {
        let Some(a) = affinity.get(*kind) else {
            return false;
        };
        let required = a
            .get("requiredDuringSchedulingIgnoredDuringExecution")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        let preferred = a
            .get("preferredDuringSchedulingIgnoredDuringExecution")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|w| w.get("podAffinityTerm"));
        required.chain(preferred).any(|t| {
            t.get("namespaces")
                .and_then(Value::as_array)
                .is_some_and(|n| !n.is_empty())
                || t.get("namespaceSelector").is_some_and(|s| !s.is_null())
        })
    })
}

/// Every container (and init container) must state each cpu/memory
/// resource the quota restricts: `must specify <res> for: <containers>; ...`.
pub(super) fn constraints(required: &[String], pod: &Value) -> Result<(), String> {
    let required: BTreeSet<String> = to_set(required)
        .into_iter()
        .filter(|r| VALIDATION_SET.contains(&r.as_str()))
        .collect();
    if required.is_empty() {
        return Ok(());
    }
    let mut missing: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for c in containers(pod, "containers")
        .iter()
        .chain(containers(pod, "initContainers"))
    {
        let usage = compute_usage(&container_list(c, "requests"), &container_list(c, "limits"));
        let name = c.get("name").and_then(Value::as_str).unwrap_or("");
        for r in required.iter().filter(|r| !usage.contains_key(*r)) {
            missing
                .entry(r.clone())
                .or_default()
                .insert(name.to_owned());
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, names)| {
            format!(
                "{r} for: {}",
                names.iter().cloned().collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    Err(format!("must specify {}", parts.join("; ")))
}
