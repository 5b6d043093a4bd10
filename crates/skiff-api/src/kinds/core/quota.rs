//! LimitRanges (ResourceQuotas are in `resource_quota`). Quantities are syntax-checked here; their
//! canonical form is the Quantity walker's business (see `normalize`).

use serde_json::Value;

use super::util::{arr, obj, quantity, quantity_text, resource_name, str_or_empty};
use crate::field::{BadValue, Error, ErrorList, Path};
use crate::validation::is_qualified_name;

/// `SetDefaults_LimitRangeItem`: for `Container` items, `default` falls
/// back to `max`, and `defaultRequest` to `default`, then to `min`.
pub(super) fn default_limit_range(lr: &mut Value) {
    let Some(limits) = lr.pointer_mut("/spec/limits").and_then(Value::as_array_mut) else {
        return;
    };
    for item in limits.iter_mut().filter(|i| i.is_object()) {
        if str_or_empty(item, "type") != "Container" {
            continue;
        }
        let map = |item: &Value, key: &str| obj(item, key).cloned().unwrap_or_default();
        let (max, min) = (map(item, "max"), map(item, "min"));
        let mut default = map(item, "default");
        for (k, v) in &max {
            default.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let mut request = map(item, "defaultRequest");
        for (k, v) in default.iter().chain(min.iter()) {
            request.entry(k.clone()).or_insert_with(|| v.clone());
        }
        // Empty maps are omitted on the wire.
        for (key, m) in [("default", default), ("defaultRequest", request)] {
            if !m.is_empty() {
                item[key] = Value::Object(m);
            }
        }
    }
}

pub(super) const STANDARD_RESOURCE: &str = "must be a standard resource type or fully qualified";

const LIMIT_TYPES: &[&str] = &["Pod", "Container", "PersistentVolumeClaim"];

fn limit_type_name(errs: &mut ErrorList, path: &Path, ty: &str) {
    let msgs = is_qualified_name(ty);
    let failed = !msgs.is_empty();
    for msg in msgs {
        errs.push(Error::invalid(path, ty, &msg));
    }
    if !failed && !ty.contains('/') && !LIMIT_TYPES.contains(&ty) {
        errs.push(Error::invalid(
            path,
            ty,
            "must be a standard limit type or fully qualified",
        ));
    }
}

type Quantities = Vec<(String, f64, String)>;

/// Checks one resource list of a limit item; returns its parsed values.
fn limit_map(item: &Value, key: &str, path: &Path, errs: &mut ErrorList) -> Quantities {
    let container_like = matches!(str_or_empty(item, "type"), "Pod" | "Container");
    let mut out = Vec::new();
    for (name, q) in obj(item, key).into_iter().flatten() {
        let p = path.child(key).key(name);
        let before = errs.len();
        resource_name(errs, &p, name, STANDARD_RESOURCE);
        // Upstream's `validateContainerResourceName` for Pod and Container items.
        let container_resource = matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage")
            || name.starts_with("hugepages-");
        if container_like && errs.len() == before && !name.contains('/') && !container_resource {
            errs.push(Error::invalid(
                &p,
                name.as_str(),
                "must be a standard resource for containers",
            ));
        }
        if let Some(v) = quantity(errs, &p, q) {
            out.push((name.clone(), v, quantity_text(q)));
        }
    }
    out
}

fn find<'a>(list: &'a Quantities, name: &str) -> Option<&'a (String, f64, String)> {
    list.iter().find(|(n, _, _)| n == name)
}

/// Upstream's `ValidateLimitRange`.
pub(super) fn validate_limit_range(lr: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    let base = Path::new("spec").child("limits");
    let null = Value::Null;
    let limits = arr(lr.get("spec").unwrap_or(&null), "limits");
    let mut types: Vec<&str> = Vec::new();
    for (i, item) in limits.iter().enumerate() {
        let p = base.index(i);
        let ty = str_or_empty(item, "type");
        limit_type_name(&mut errs, &p.child("type"), ty);
        if types.contains(&ty) {
            errs.push(Error::duplicate(&p.child("type"), ty));
        }
        types.push(ty);
        let max = limit_map(item, "max", &p, &mut errs);
        let min = limit_map(item, "min", &p, &mut errs);
        let (default, request) = if ty == "Pod" {
            for key in ["default", "defaultRequest"] {
                if obj(item, key).is_some_and(|m| !m.is_empty()) {
                    errs.push(Error::forbidden(
                        &p.child(key),
                        "may not be specified when `type` is 'Pod'",
                    ));
                }
            }
            (Vec::new(), Vec::new())
        } else {
            (
                limit_map(item, "default", &p, &mut errs),
                limit_map(item, "defaultRequest", &p, &mut errs),
            )
        };
        if ty == "PersistentVolumeClaim"
            && find(&min, "storage").is_none()
            && find(&max, "storage").is_none()
        {
            errs.push(Error::required(
                &p.child("limits"),
                "either minimum or maximum storage value is required, but neither was provided",
            ));
        }
        let ratio = limit_map(item, "maxLimitRequestRatio", &p, &mut errs);
        let mut keys: Vec<&str> = Vec::new();
        for (name, _, _) in max
            .iter()
            .chain(&min)
            .chain(&default)
            .chain(&request)
            .chain(&ratio)
        {
            if !keys.contains(&name.as_str()) {
                keys.push(name);
            }
        }
        for k in keys {
            compare_limits(k, &p, [&min, &max, &default, &request, &ratio], &mut errs);
        }
    }
    errs
}

/// Whether a resource may be overcommitted (requests below limits): native
/// resources other than huge pages (upstream's `IsOvercommitAllowed`).
fn overcommit_allowed(name: &str) -> bool {
    let native = !name.contains('/') || name.contains("kubernetes.io/");
    native && !name.starts_with("hugepages-")
}

/// The ordering rules between one resource's min, max, default, default
/// request and ratio (upstream's `ValidateLimitRange` loop over keys).
fn compare_limits(k: &str, p: &Path, lists: [&Quantities; 5], errs: &mut ErrorList) {
    let [min, max, default, request, ratio] = lists.map(|l| find(l, k));
    let at = |key: &str| p.child(key).key(k);
    // A quantity prints unquoted (its `String()`), as upstream renders it.
    let mut push = |key: &str, value: &(String, f64, String), msg: String| {
        errs.push(Error::invalid(
            &at(key),
            BadValue::Raw(value.2.clone()),
            &msg,
        ));
    };
    if let (Some(mn), Some(mx)) = (min, max)
        && mn.1 > mx.1
    {
        push(
            "min",
            mn,
            format!("min value {} is greater than max value {}", mn.2, mx.2),
        );
    }
    if let Some(dr) = request {
        if let Some(mn) = min
            && mn.1 > dr.1
        {
            push(
                "defaultRequest",
                dr,
                format!(
                    "min value {} is greater than default request value {}",
                    mn.2, dr.2
                ),
            );
        }
        if let Some(mx) = max
            && dr.1 > mx.1
        {
            push(
                "defaultRequest",
                dr,
                format!(
                    "default request value {} is greater than max value {}",
                    dr.2, mx.2
                ),
            );
        }
        if let Some(d) = default
            && dr.1 > d.1
        {
            push(
                "defaultRequest",
                dr,
                format!(
                    "default request value {} is greater than default limit value {}",
                    dr.2, d.2
                ),
            );
        }
    }
    if let Some(d) = default {
        // Upstream reports the bound (min or max) as the value here.
        if let Some(mn) = min
            && mn.1 > d.1
        {
            push(
                "default",
                mn,
                format!("min value {} is greater than default value {}", mn.2, d.2),
            );
        }
        if let Some(mx) = max
            && d.1 > mx.1
        {
            push(
                "default",
                mx,
                format!("default value {} is greater than max value {}", d.2, mx.2),
            );
        }
    }
    if let Some(r) = ratio {
        if r.1 < 1.0 {
            push(
                "maxLimitRequestRatio",
                r,
                format!("ratio {} is less than 1", r.2),
            );
        }
        if let (Some(mn), Some(mx)) = (min, max)
            && mn.1 > 0.0
        {
            let limit = mx.1 / mn.1;
            if r.1 > limit {
                push(
                    "maxLimitRequestRatio",
                    r,
                    format!("ratio {} is greater than max/min = {limit:.6}", r.2),
                );
            }
        }
    }
    if let (Some(d), Some(dr)) = (default, request)
        && !overcommit_allowed(k)
        && d.1 != dr.1
    {
        push(
            "defaultRequest",
            dr,
            format!(
                "default value {} must equal to defaultRequest value {} in {k}",
                d.2, dr.2
            ),
        );
    }
}

/// The approximate quantity parser, exposed to the tests.
#[cfg(test)]
fn quantity_value_for_tests(v: &Value) -> Option<f64> {
    super::util::quantity_value(v)
}

#[cfg(test)]
#[path = "quota_tests.rs"]
mod tests;
