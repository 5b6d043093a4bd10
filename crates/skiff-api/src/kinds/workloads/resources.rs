//! Validation of a container's resource requirements
//! (`ValidateResourceRequirements` and the resource name rules).

use serde_json::Value;

use crate::field::{Error, ErrorList, Path};
use crate::quantity::{self, Quantity};
use crate::validation::is_qualified_name;

fn is_native(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn is_standard_container_resource(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-")
}

/// Upstream's `ValidateResourceRequirements` for a container.
pub(super) fn validate_resources(r: &Value, path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let limits = resource_list(r.get("limits"));
    let requests = resource_list(r.get("requests"));
    let lim_path = path.child("limits");
    let req_path = path.child("requests");
    for (name, q) in &limits {
        let p = lim_path.key(name);
        errs.extend(validate_resource_name(name, &p));
        errs.extend(validate_quantity_value(name, q, &p));
    }
    for (name, q) in &requests {
        let p = req_path.key(name);
        errs.extend(validate_resource_name(name, &p));
        errs.extend(validate_quantity_value(name, q, &p));
        let overcommit = is_native(name) && !name.starts_with("hugepages-");
        match limits.iter().find(|(n, _)| n == name) {
            Some((_, limit)) if q != limit && !overcommit => errs.push(Error::invalid(
                &req_path,
                q.to_string(),
                &format!("must be equal to {name} limit of {limit}"),
            )),
            Some((_, limit)) if q > limit => errs.push(Error::invalid(
                &req_path,
                q.to_string(),
                &format!("must be less than or equal to {name} limit of {limit}"),
            )),
            Some(_) => {}
            None if !overcommit => errs.push(Error::required(
                &lim_path,
                "Limit must be set for non overcommitable resources",
            )),
            None => {}
        }
    }
    errs
}

/// The parsable entries of a `ResourceList` (normalisation rejected the
/// others already).
pub(super) fn resource_list(v: Option<&Value>) -> Vec<(String, Quantity)> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| quantity::from_json(v).ok().map(|q| (k.clone(), q)))
                .collect()
        })
        .unwrap_or_default()
}

fn validate_resource_name(name: &str, p: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    for m in is_qualified_name(name) {
        errs.push(Error::invalid(p, name, &m));
    }
    if errs.is_empty() && !name.contains('/') && !is_standard_container_resource(name) {
        errs.push(Error::invalid(
            p,
            name,
            "must be a standard resource type or fully qualified",
        ));
    }
    if !name.contains('/') {
        if !is_standard_container_resource(name) {
            errs.push(Error::invalid(
                p,
                name,
                "must be a standard resource for containers",
            ));
        }
    } else if !is_native(name) && (name.starts_with("requests.") || name.contains(' ')) {
        errs.push(Error::invalid(
            p,
            name,
            "doesn't follow extended resource name standard",
        ));
    }
    errs
}

fn validate_quantity_value(name: &str, q: &Quantity, p: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    if q.is_negative() {
        errs.push(Error::invalid(
            p,
            q.to_string(),
            "must be greater than or equal to 0",
        ));
    }
    if !is_native(name) && q.milli_value() % 1000 != 0 {
        errs.push(Error::invalid(p, q.to_string(), "must be an integer"));
    }
    errs
}
