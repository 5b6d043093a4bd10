//! Resource quota evaluation shared by the API server's `ResourceQuota`
//! admission and the controller manager's `resourcequota` controller, as
//! upstream's `pkg/quota/v1` evaluators: what an object uses of a quota
//! (pods, services, persistent volume claims, object counts), whether a
//! quota's scopes match it, and the limits check with upstream's messages.
//! Objects are JSON documents, as the API server keeps them.

mod pods;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::quantity::Quantity;

pub use pods::{is_best_effort, is_terminating, pod_resources, pod_usage, quota_v1_pod};

/// Resource name → quantity, sorted by name (as upstream prints them).
pub type ResourceList = BTreeMap<String, Quantity>;

/// The `storageclass.storage.k8s.io/` infix of per-class claim quotas.
const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

/// A `ResourceList` from a JSON map of quantities (`spec.hard`,
/// `status.used`); entries that are not quantities are left out.
pub fn resource_list(v: Option<&Value>) -> ResourceList {
    v.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, q)| Some((k.clone(), Quantity::parse(q.as_str()?).ok()?)))
        .collect()
}

/// A `ResourceList` as a JSON map of quantity strings.
pub fn to_json(list: &ResourceList) -> Value {
    Value::Object(
        list.iter()
            .map(|(k, q)| (k.clone(), Value::String(q.to_string())))
            .collect::<Map<String, Value>>(),
    )
}

/// `a + b` per resource (upstream's `quota.Add`); a sum that overflows
/// keeps the left value. The sum has the left quantity's format unless
/// that is zero (as upstream's `Quantity.Add`), so `0 + 1Mi` is `1Mi`.
pub fn add(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = a.clone();
    for (k, q) in b {
        match out.get(k) {
            Some(have) => {
                let sum = if have.is_zero() {
                    q.checked_add(have)
                } else {
                    have.checked_add(q)
                };
                let sum = sum.unwrap_or_else(|| have.clone());
                out.insert(k.clone(), sum);
            }
            None => {
                out.insert(k.clone(), q.clone());
            }
        }
    }
    out
}

/// The entries of `list` named in `names` (upstream's `quota.Mask`).
pub fn mask<'a>(list: &ResourceList, names: impl IntoIterator<Item = &'a String>) -> ResourceList {
    names
        .into_iter()
        .filter_map(|n| Some((n.clone(), list.get(n)?.clone())))
        .collect()
}

/// Whether every entry of `a` that `b` also has is at most `b`'s, and the
/// names that are not (upstream's `quota.LessThanOrEqual`).
pub fn less_than_or_equal(a: &ResourceList, b: &ResourceList) -> (bool, Vec<String>) {
    let exceeded: Vec<String> = a
        .iter()
        .filter(|(k, q)| b.get(*k).is_some_and(|limit| *q > limit))
        .map(|(k, _)| k.clone())
        .collect();
    (exceeded.is_empty(), exceeded)
}

/// True when every quantity is zero (or the list is empty).
pub fn is_zero(list: &ResourceList) -> bool {
    list.values().all(Quantity::is_zero)
}

/// Whether `a` and `b` hold the same resources with equal quantities.
pub fn equals(a: &ResourceList, b: &ResourceList) -> bool {
    a.len() == b.len() && a.iter().all(|(k, q)| b.get(k) == Some(q))
}

/// `name=quantity` pairs, sorted and comma-separated, as upstream's
/// admission prints usage in its errors.
pub fn pretty_print(list: &ResourceList) -> String {
    list.iter()
        .map(|(k, q)| format!("{k}={q}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// One scope requirement of a quota (`spec.scopes` entries become
/// `Exists` requirements).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeRequirement {
    /// `Terminating`, `NotTerminating`, `BestEffort`, `NotBestEffort`,
    /// `PriorityClass`, `CrossNamespacePodAffinity`, ...
    pub scope_name: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// The values of `In` and `NotIn`.
    pub values: Vec<String>,
}

/// A quota's scopes: `spec.scopes` then `spec.scopeSelector.matchExpressions`.
pub fn quota_scopes(quota: &Value) -> Vec<ScopeRequirement> {
    let spec = quota.get("spec");
    let mut out: Vec<ScopeRequirement> = spec
        .and_then(|s| s.get("scopes"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|s| ScopeRequirement {
            scope_name: s.to_owned(),
            operator: "Exists".to_owned(),
            values: Vec::new(),
        })
        .collect();
    let exprs = spec
        .and_then(|s| s.pointer("/scopeSelector/matchExpressions"))
        .and_then(Value::as_array);
    for e in exprs.into_iter().flatten() {
        let field = |f: &str| e.get(f).and_then(Value::as_str).unwrap_or("").to_owned();
        out.push(ScopeRequirement {
            scope_name: field("scopeName"),
            operator: field("operator"),
            values: e
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        });
    }
    out
}

/// Which evaluator accounts for a resource (upstream's evaluator registry
/// plus the object-count evaluator made on demand for any other resource).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evaluator {
    /// Pods: compute resources and the pod count.
    Pods,
    /// Services: counts by type and node ports.
    Services,
    /// PersistentVolumeClaims: counts and storage, also per storage class.
    PersistentVolumeClaims,
    /// Any other resource: `count/<resource>[.<group>]`, and the legacy
    /// name for the core kinds that have one (`configmaps`, `secrets`, ...).
    ObjectCount {
        /// `count/<resource>[.<group>]`.
        count_name: String,
        /// `configmaps`, `secrets`, `replicationcontrollers`,
        /// `resourcequotas`, or none.
        legacy_name: Option<String>,
    },
}

/// The `count/<resource>[.<group>]` name of a resource.
pub fn object_count_name(group: &str, resource: &str) -> String {
    if group.is_empty() {
        format!("count/{resource}")
    } else {
        format!("count/{resource}.{group}")
    }
}

impl Evaluator {
    /// The evaluator of `group`/`resource` (a plural).
    pub fn for_resource(group: &str, resource: &str) -> Evaluator {
        match (group, resource) {
            ("", "pods") => Evaluator::Pods,
            ("", "services") => Evaluator::Services,
            ("", "persistentvolumeclaims") => Evaluator::PersistentVolumeClaims,
            _ => {
                let legacy = matches!(
                    (group, resource),
                    (
                        "",
                        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas"
                    )
                );
                Evaluator::ObjectCount {
                    count_name: object_count_name(group, resource),
                    legacy_name: legacy.then(|| resource.to_owned()),
                }
            }
        }
    }

    /// The names in `input` this evaluator accounts for.
    pub fn matching_resources<'a>(
        &self,
        input: impl IntoIterator<Item = &'a String>,
    ) -> Vec<String> {
        input
            .into_iter()
            .filter(|r| self.tracks(r))
            .cloned()
            .collect()
    }

    fn tracks(&self, r: &str) -> bool {
        match self {
            Evaluator::Pods => pods::tracks(r),
            Evaluator::Services => matches!(
                r,
                "count/services" | "services" | "services.loadbalancers" | "services.nodeports"
            ),
            Evaluator::PersistentVolumeClaims => {
                matches!(
                    r,
                    "count/persistentvolumeclaims" | "persistentvolumeclaims" | "requests.storage"
                ) || ["persistentvolumeclaims", "requests.storage"]
                    .iter()
                    .any(|res| r.ends_with(&format!("{STORAGE_CLASS_SUFFIX}{res}")))
            }
            Evaluator::ObjectCount {
                count_name,
                legacy_name,
            } => r == count_name || legacy_name.as_deref() == Some(r),
        }
    }

    /// What `obj` uses; `now` (Unix seconds) decides whether a pod stuck
    /// terminating past its grace period still counts.
    pub fn usage(&self, obj: &Value, now: i64) -> ResourceList {
        match self {
            Evaluator::Pods => pod_usage(obj, now),
            Evaluator::Services => service_usage(obj),
            Evaluator::PersistentVolumeClaims => pvc_usage(obj),
            Evaluator::ObjectCount {
                count_name,
                legacy_name,
            } => {
                let mut out = ResourceList::new();
                out.insert(count_name.clone(), Quantity::from_int(1));
                if let Some(l) = legacy_name {
                    out.insert(l.clone(), Quantity::from_int(1));
                }
                out
            }
        }
    }

    /// Whether `obj` matches one scope requirement; only pods have scopes,
    /// so a scoped quota never matches other kinds.
    pub fn matches_scope(&self, scope: &ScopeRequirement, obj: &Value) -> bool {
        match self {
            Evaluator::Pods => pods::matches_scope(scope, obj),
            _ => false,
        }
    }

    /// Whether `obj` matches every scope of `quota`.
    pub fn matches_scopes(&self, quota: &Value, obj: &Value) -> bool {
        quota_scopes(quota)
            .iter()
            .all(|s| self.matches_scope(s, obj))
    }

    /// Upstream's `Matches`: the quota's `status.hard` names a resource of
    /// this evaluator and its scopes match `obj`.
    pub fn matches(&self, quota: &Value, obj: &Value) -> bool {
        let hard = resource_list(quota.pointer("/status/hard"));
        !self.matching_resources(hard.keys()).is_empty() && self.matches_scopes(quota, obj)
    }

    /// Fails when `obj` cannot be charged to a quota restricting
    /// `required`: upstream's `must specify ...` for pods whose containers
    /// leave out a cpu or memory request or limit the quota tracks.
    pub fn constraints(&self, required: &[String], obj: &Value) -> Result<(), String> {
        match self {
            Evaluator::Pods => pods::constraints(required, obj),
            _ => Ok(()),
        }
    }
}

/// Checks `obj` against `quotas` (each quota's `status`), as upstream's
/// admission does: the quotas whose usage must grow, each with its new
/// `status.used`, or the 403 message. `Ok` with nothing to update when no
/// quota is concerned.
pub fn admit(
    evaluator: &Evaluator,
    quotas: &[Value],
    obj: &Value,
    now: i64,
) -> Result<Vec<(usize, ResourceList)>, String> {
    let mut interesting = Vec::new();
    for (i, q) in quotas.iter().enumerate() {
        if !evaluator.matches(q, obj) {
            continue;
        }
        let name = q
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let hard = resource_list(q.pointer("/status/hard"));
        let restricted = evaluator.matching_resources(hard.keys());
        evaluator
            .constraints(&restricted, obj)
            .map_err(|e| format!("failed quota: {name}: {e}"))?;
        let used = resource_list(q.pointer("/status/used"));
        let unknown: Vec<&String> = restricted
            .iter()
            .filter(|r| !used.contains_key(*r))
            .collect();
        if !unknown.is_empty() {
            let names: Vec<&str> = unknown.iter().map(|s| s.as_str()).collect();
            return Err(format!(
                "status unknown for quota: {name}, resources: {}",
                names.join(",")
            ));
        }
        interesting.push(i);
    }
    if interesting.is_empty() {
        return Ok(Vec::new());
    }
    let delta = evaluator.usage(obj, now);
    if is_zero(&delta) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for i in interesting {
        let Some(q) = quotas.get(i) else { continue };
        let name = q
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let hard = resource_list(q.pointer("/status/hard"));
        let used = resource_list(q.pointer("/status/used"));
        let requested = mask(&delta, hard.keys());
        let new_used = add(&used, &requested);
        let masked = mask(&new_used, requested.keys());
        let (ok, exceeded) = less_than_or_equal(&masked, &hard);
        if !ok {
            return Err(format!(
                "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
                pretty_print(&mask(&requested, &exceeded)),
                pretty_print(&mask(&used, &exceeded)),
                pretty_print(&mask(&hard, &exceeded)),
            ));
        }
        out.push((i, new_used));
    }
    Ok(out)
}

/// What the `resourcequota` controller writes to `status.used`: for each
/// evaluator tracking some of `hard`, the usage of the `objects` that match
/// the quota's scopes (zero when none), over the previous `used`, and only
/// the names in `hard`.
pub fn calculate_used<'a>(
    quota: &Value,
    hard: &ResourceList,
    previous_used: &ResourceList,
    evaluated: impl IntoIterator<Item = (&'a Evaluator, &'a [Value])>,
    now: i64,
) -> ResourceList {
    let mut used = previous_used.clone();
    for (evaluator, objects) in evaluated {
        let names = evaluator.matching_resources(hard.keys());
        if names.is_empty() {
            continue;
        }
        let mut sum: ResourceList = names
            .iter()
            .map(|n| (n.clone(), Quantity::from_int(0)))
            .collect();
        for o in objects {
            if evaluator.matches_scopes(quota, o) {
                sum = add(&sum, &mask(&evaluator.usage(o, now), &names));
            }
        }
        used.extend(sum);
    }
    mask(&used, hard.keys())
}

/// The usage of a Service: its count, load balancers and node ports.
fn service_usage(svc: &Value) -> ResourceList {
    let spec = svc.get("spec");
    let ports = spec
        .and_then(|s| s.get("ports"))
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let typ = spec
        .and_then(|s| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    let count = |n: usize| Quantity::from_int(i64::try_from(n).unwrap_or(i64::MAX));
    let (lbs, node_ports) = match typ {
        "NodePort" => (0, ports.len()),
        "LoadBalancer" => {
            let allocate = spec
                .and_then(|s| s.get("allocateLoadBalancerNodePorts"))
                .and_then(Value::as_bool);
            if allocate == Some(false) {
                // Only ports asking for a node port explicitly get one.
                let explicit = ports
                    .iter()
                    .filter(|p| p.get("nodePort").and_then(Value::as_i64).unwrap_or(0) != 0)
                    .count();
                (1, explicit)
            } else {
                (1, ports.len())
            }
        }
        _ => (0, 0),
    };
    ResourceList::from([
        ("count/services".to_owned(), count(1)),
        ("services".to_owned(), count(1)),
        ("services.loadbalancers".to_owned(), count(lbs)),
        ("services.nodeports".to_owned(), count(node_ports)),
    ])
}

/// The usage of a PersistentVolumeClaim: its count and requested storage,
/// also under its storage class.
fn pvc_usage(pvc: &Value) -> ResourceList {
    let mut out = ResourceList::from([
        (
            "count/persistentvolumeclaims".to_owned(),
            Quantity::from_int(1),
        ),
        ("persistentvolumeclaims".to_owned(), Quantity::from_int(1)),
    ]);
    let class = pvc
        .pointer("/spec/storageClassName")
        .and_then(Value::as_str)
        .or_else(|| {
            pvc.pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
                .and_then(Value::as_str)
        })
        .unwrap_or("");
    if !class.is_empty() {
        out.insert(
            format!("{class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"),
            Quantity::from_int(1),
        );
    }
    let storage = pvc
        .pointer("/spec/resources/requests/storage")
        .and_then(Value::as_str)
        .and_then(|s| Quantity::parse(s).ok());
    if let Some(storage) = storage {
        if !class.is_empty() {
            out.insert(
                format!("{class}{STORAGE_CLASS_SUFFIX}requests.storage"),
                storage.clone(),
            );
        }
        out.insert("requests.storage".to_owned(), storage);
    }
    out
}

/// The names of `set` as a sorted set.
fn to_set<'a>(names: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
    names.into_iter().cloned().collect()
}
