//! ResourceQuotas: resource names and values, scopes and scope selectors.

use serde_json::{Map, Value};

use super::quota::STANDARD_RESOURCE;
use super::util::{
    FIELD_IMMUTABLE, arr, bad, is_standard_resource_name, obj, quantity, quantity_text,
    resource_name, str_or_empty, strs,
};
use crate::field::{BadValue, Error, ErrorList, Path};

const QUOTA_SCOPES: &[&str] = &[
    "BestEffort",
    "CrossNamespacePodAffinity",
    "NotBestEffort",
    "NotTerminating",
    "PriorityClass",
    "Terminating",
    "VolumeAttributesClass",
];

/// Upstream's `IsIntegerResourceName`: object counts and extended
/// resources are whole numbers.
fn is_integer_resource(name: &str) -> bool {
    const COUNTS: &[&str] = &[
        "pods",
        "services",
        "replicationcontrollers",
        "resourcequotas",
        "secrets",
        "configmaps",
        "persistentvolumeclaims",
        "services.nodeports",
        "services.loadbalancers",
    ];
    let extended = |n: &str| {
        n.split_once('/')
            .is_some_and(|(domain, _)| !domain.ends_with("kubernetes.io") && domain != "count")
    };
    COUNTS.contains(&name)
        || name.starts_with("count/")
        || extended(name)
        || name.strip_prefix("requests.").is_some_and(extended)
}

fn quota_map(parent: &Value, key: &str, path: &Path, errs: &mut ErrorList) {
    for (name, q) in obj(parent, key).into_iter().flatten() {
        let p = path.child(key).key(name);
        // Upstream's `ValidateResourceQuotaResourceName`: the general name
        // rule, then the quota-specific one (both messages can appear).
        resource_name(errs, &p, name, STANDARD_RESOURCE);
        if !name.contains('/') && !is_standard_resource_name(name) {
            errs.push(Error::invalid(
                &p,
                name.as_str(),
                "must be a standard resource for quota",
            ));
        }
        if let Some(v) = quantity(errs, &p, q)
            && is_integer_resource(name)
            && (v * 1000.0).round() % 1000.0 != 0.0
        {
            errs.push(Error::invalid(
                &p,
                BadValue::Raw(quantity_text(q)),
                "must be an integer",
            ));
        }
    }
}

/// Go's `%#v` of a list of scopes.
fn scopes_repr(scopes: &[&str]) -> BadValue {
    if scopes.is_empty() {
        return BadValue::Raw("[]core.ResourceQuotaScope(nil)".to_owned());
    }
    let quoted: Vec<String> = scopes.iter().map(|s| crate::go_quote(s)).collect();
    BadValue::Raw(format!(
        "[]core.ResourceQuotaScope{{{}}}",
        quoted.join(", ")
    ))
}

/// Upstream's `IsResourceQuotaScopeValidForResource`.
fn scope_valid_for(scope: &str, resource: &str) -> bool {
    const COMPUTE: &[&str] = &[
        "cpu",
        "memory",
        "limits.cpu",
        "limits.memory",
        "requests.cpu",
        "requests.memory",
    ];
    match scope {
        "Terminating"
        | "NotTerminating"
        | "NotBestEffort"
        | "PriorityClass"
        | "CrossNamespacePodAffinity" => resource == "pods" || COMPUTE.contains(&resource),
        "BestEffort" => resource == "pods",
        "VolumeAttributesClass" => matches!(
            resource,
            "persistentvolumeclaims" | "requests.storage" | "storage"
        ),
        _ => true,
    }
}

/// Upstream's `IsStandardQuotaResourceName` (object counts by `count/`
/// are not among them).
fn is_standard_quota_resource(name: &str) -> bool {
    is_standard_resource_name(name) && !name.starts_with("count/")
}

/// The scope pairs that can never both match.
const CONFLICTING: &[(&str, &str)] = &[
    ("BestEffort", "NotBestEffort"),
    ("Terminating", "NotTerminating"),
];

fn conflicting(scopes: &[&str]) -> bool {
    CONFLICTING
        .iter()
        .any(|(a, b)| scopes.contains(a) && scopes.contains(b))
}

/// Upstream's `validateResourceQuotaScopes`.
fn validate_scopes(spec: &Value, hard: &[&String], errs: &mut ErrorList) {
    let scopes = strs(spec, "scopes");
    let path = Path::new("spec").child("scopes");
    for scope in &scopes {
        if !QUOTA_SCOPES.contains(scope) {
            errs.push(Error::invalid(
                &path,
                scopes_repr(&scopes),
                "unsupported scope",
            ));
        }
        for k in hard {
            if is_standard_quota_resource(k) && !scope_valid_for(scope, k) {
                errs.push(Error::invalid(
                    &path,
                    scopes_repr(&scopes),
                    "unsupported scope applied to resource",
                ));
            }
        }
    }
    if conflicting(&scopes) {
        errs.push(Error::invalid(
            &path,
            scopes_repr(&scopes),
            "conflicting scopes",
        ));
    }
}

/// Upstream's `validateScopedResourceSelectorRequirement`.
fn validate_scope_selector(spec: &Value, hard: &[&String], errs: &mut ErrorList) {
    let Some(selector) = spec.get("scopeSelector").filter(|s| !s.is_null()) else {
        return;
    };
    let path = Path::new("spec")
        .child("scopeSelector")
        .child("matchExpressions");
    let mut seen: Vec<&str> = Vec::new();
    for req in arr(selector, "matchExpressions") {
        let scope = str_or_empty(req, "scopeName");
        if !QUOTA_SCOPES.contains(&scope) {
            errs.push(Error::invalid(
                &path.child("scopeName"),
                scope,
                "unsupported scope",
            ));
        }
        for k in hard {
            if is_standard_quota_resource(k) && !scope_valid_for(scope, k) {
                errs.push(Error::invalid(
                    &path,
                    bad(selector),
                    "unsupported scope applied to resource",
                ));
            }
        }
        let op = str_or_empty(req, "operator");
        let exists_only = matches!(
            scope,
            "BestEffort"
                | "NotBestEffort"
                | "Terminating"
                | "NotTerminating"
                | "CrossNamespacePodAffinity"
        );
        if exists_only && op != "Exists" {
            errs.push(Error::invalid(
                &path.child("operator"),
                op,
                "must be 'Exist' when scope is any of ResourceQuotaScopeTerminating, ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, ResourceQuotaScopeNotBestEffort or ResourceQuotaScopeCrossNamespacePodAffinity",
            ));
        }
        let values = strs(req, "values");
        match op {
            "In" | "NotIn" if values.is_empty() => errs.push(Error::required(
                &path.child("values"),
                "must be at least one value when `operator` is 'In' or 'NotIn' for scope selector",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(Error::invalid(
                &path.child("values"),
                BadValue::StrList(values.iter().map(|v| (*v).to_owned()).collect()),
                "must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope selector",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errs.push(Error::invalid(
                &path.child("operator"),
                other,
                "not a valid selector operator",
            )),
        }
        seen.push(scope);
    }
    if conflicting(&seen) {
        errs.push(Error::invalid(
            &path,
            scopes_repr(&strs(spec, "scopes")),
            "conflicting scopes",
        ));
    }
}

fn validate_spec(rq: &Value, errs: &mut ErrorList) {
    let null = Value::Null;
    let spec = rq.get("spec").unwrap_or(&null);
    quota_map(spec, "hard", &Path::new("spec"), errs);
    let mut hard: Vec<&String> = obj(spec, "hard")
        .map(|h| h.keys().collect())
        .unwrap_or_default();
    hard.sort();
    validate_scopes(spec, &hard, errs);
    validate_scope_selector(spec, &hard, errs);
}

fn validate_status(rq: &Value, errs: &mut ErrorList) {
    let null = Value::Null;
    let status = rq.get("status").unwrap_or(&null);
    let st = Path::new("status");
    quota_map(status, "hard", &st, errs);
    quota_map(status, "used", &st, errs);
}

/// Upstream's `ValidateResourceQuota` (spec and status values).
pub(super) fn validate_resource_quota(rq: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    validate_spec(rq, &mut errs);
    validate_status(rq, &mut errs);
    errs
}

/// Upstream's `ValidateResourceQuotaUpdate`: the spec, with fixed scopes.
pub(super) fn validate_resource_quota_update(new: &Value, old: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    validate_spec(new, &mut errs);
    let scopes = |v: &Value| {
        let mut s: Vec<String> = v
            .get("spec")
            .map(|s| strs(s, "scopes").into_iter().map(str::to_owned).collect())
            .unwrap_or_default();
        s.sort();
        s.dedup();
        s
    };
    if scopes(new) != scopes(old) {
        let shown = new
            .get("spec")
            .map(|s| strs(s, "scopes"))
            .unwrap_or_default();
        errs.push(Error::invalid(
            &Path::new("spec").child("scopes"),
            scopes_repr(&shown),
            FIELD_IMMUTABLE,
        ));
    }
    errs
}

/// Upstream's `ValidateResourceQuotaStatusUpdate`: the status values.
pub(super) fn validate_resource_quota_status(rq: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    validate_status(rq, &mut errs);
    errs
}

/// The strategy's `PrepareForCreate`: the status is the controller's.
pub(super) fn prepare_create_quota(rq: &mut Value) {
    if let Some(m) = rq.as_object_mut() {
        m.insert("status".into(), Value::Object(Map::new()));
    }
}

#[cfg(test)]
#[path = "resource_quota_tests.rs"]
mod tests;
