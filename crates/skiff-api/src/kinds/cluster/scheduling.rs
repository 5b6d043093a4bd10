//! Leases, PodDisruptionBudgets, PriorityClasses and StorageClasses: the
//! small cluster-wide kinds.

use serde_json::{Value, json};

use crate::field::{BadValue, Error, ErrorList, Path};
use crate::kinds::core::util::{
    FIELD_IMMUTABLE, default_str, immutable, int_or_string_repr, invalid_each, label_selector,
    nonnegative, str_map, str_of, str_or_empty,
};
use crate::validation::{is_qualified_name, regex_error};

/// Upstream's `ValidateLeaseSpec`.
pub(super) fn validate_lease(lease: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    let null = Value::Null;
    let spec = lease.get("spec").unwrap_or(&null);
    let sp = Path::new("spec");
    if let Some(d) = spec.get("leaseDurationSeconds").and_then(Value::as_i64)
        && d <= 0
    {
        errs.push(Error::invalid(
            &sp.child("leaseDurationSeconds"),
            d,
            "must be greater than 0",
        ));
    }
    if let Some(t) = spec.get("leaseTransitions").and_then(Value::as_i64) {
        nonnegative(&mut errs, &sp.child("leaseTransitions"), t);
    }
    let strategy = str_or_empty(spec, "strategy");
    // Kubernetes-defined strategies are bare names; others carry a domain.
    if let Some(s) = str_of(spec, "strategy") {
        if s.contains('/') {
            invalid_each(&mut errs, &sp.child("strategy"), s, is_qualified_name(s));
        } else if s != "OldestEmulationVersion" {
            errs.push(Error::not_supported(
                &sp.child("strategy"),
                s,
                &["OldestEmulationVersion"],
            ));
        }
    }

    if !str_or_empty(spec, "preferredHolder").is_empty() && strategy.is_empty() {
        errs.push(Error::forbidden(
            &sp.child("preferredHolder"),
            "may only be specified if `strategy` is defined",
        ));
    }
    errs
}

/// The strategy's `PrepareForCreate`: the status is the controller's.
pub(super) fn prepare_create_pdb(pdb: &mut Value) {
    if let Some(m) = pdb.as_object_mut() {
        m.insert(
            "status".into(),
            json!({"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}),
        );
    }
}

/// Upstream's `ValidatePositiveIntOrPercent` and `IsNotMoreThan100Percent`.
fn int_or_percent(errs: &mut ErrorList, path: &Path, v: &Value) {
    match v {
        Value::String(s) => {
            let digits = s.strip_suffix('%').unwrap_or_default();
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                errs.push(Error::invalid(
                    path,
                    int_or_string_repr(v),
                    &regex_error(
                        "a valid percent string must be a numeric string followed by an ending '%'",
                        "[0-9]+%",
                        &["1%", "93%"],
                    ),
                ));
            } else if digits.parse::<u64>().map_or(true, |n| n > 100) {
                errs.push(Error::invalid(
                    path,
                    int_or_string_repr(v),
                    "must not be greater than 100%",
                ));
            }
        }
        Value::Number(n) => nonnegative(errs, path, n.as_i64().unwrap_or(0)),
        _ => {}
    }
}

/// Go's `%#v` of the internal PDB spec upstream reports: pointer fields
/// print as addresses (these are stand-ins; Go's vary per process).
fn pdb_spec_repr(spec: &Value) -> BadValue {
    let ptr = |key: &str, ty: &str, addr: &str| {
        if spec.get(key).is_some_and(|v| !v.is_null()) {
            format!("(*{ty})({addr})")
        } else {
            format!("(*{ty})(nil)")
        }
    };
    BadValue::Raw(format!(
        "policy.PodDisruptionBudgetSpec{{MinAvailable:{}, Selector:{}, MaxUnavailable:{}, UnhealthyPodEvictionPolicy:{}}}",
        ptr("minAvailable", "intstr.IntOrString", "0xc000010000"),
        ptr("selector", "v1.LabelSelector", "0xc000010020"),
        ptr("maxUnavailable", "intstr.IntOrString", "0xc000010040"),
        ptr(
            "unhealthyPodEvictionPolicy",
            "policy.UnhealthyPodEvictionPolicyType",
            "0xc000010060"
        ),
    ))
}

/// Upstream's `ValidatePodDisruptionBudget` (policy/v1).
pub(super) fn validate_pdb(pdb: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    let null = Value::Null;
    let spec = pdb.get("spec").unwrap_or(&null);
    let sp = Path::new("spec");
    let min = spec.get("minAvailable").filter(|v| !v.is_null());
    let max = spec.get("maxUnavailable").filter(|v| !v.is_null());
    if min.is_some() && max.is_some() {
        errs.push(Error::invalid(
            &sp,
            pdb_spec_repr(spec),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    if let Some(v) = min {
        int_or_percent(&mut errs, &sp.child("minAvailable"), v);
    }
    if let Some(v) = max {
        int_or_percent(&mut errs, &sp.child("maxUnavailable"), v);
    }
    label_selector(
        &mut errs,
        &sp.child("selector"),
        spec.get("selector").unwrap_or(&null),
    );
    if let Some(policy) = str_of(spec, "unhealthyPodEvictionPolicy")
        && !matches!(policy, "AlwaysAllow" | "IfHealthyBudget")
    {
        errs.push(Error::not_supported(
            &sp.child("unhealthyPodEvictionPolicy"),
            policy,
            &["AlwaysAllow", "IfHealthyBudget"],
        ));
    }
    errs
}

/// Upstream's `ValidatePodDisruptionBudgetStatusUpdate`: counts are not
/// negative.
pub(super) fn validate_pdb_status(pdb: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    let sp = Path::new("status");
    for key in [
        "disruptionsAllowed",
        "currentHealthy",
        "desiredHealthy",
        "expectedPods",
    ] {
        if let Some(n) = pdb
            .pointer(&format!("/status/{key}"))
            .and_then(Value::as_i64)
        {
            nonnegative(&mut errs, &sp.child(key), n);
        }
    }
    errs
}

/// `SetDefaults_PriorityClass`: preemption policy `PreemptLowerPriority`.
pub(super) fn default_priority_class(pc: &mut Value) {
    default_str(pc, "preemptionPolicy", "PreemptLowerPriority");
}

const HIGHEST_USER_PRIORITY: i64 = 1_000_000_000;
const SYSTEM_CLASSES: &[(&str, i64)] = &[
    ("system-node-critical", 2_000_001_000),
    ("system-cluster-critical", 2_000_000_000),
];

/// Upstream's `ValidatePriorityClass`.
pub(super) fn validate_priority_class(pc: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    let name = pc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let value = pc.get("value").and_then(Value::as_i64).unwrap_or(0);
    let global = pc
        .get("globalDefault")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if name.starts_with("system-") {
        let problem = match SYSTEM_CLASSES.iter().find(|(n, _)| *n == name) {
            None => Some(format!("{name} is not a known system priority class")),
            Some((_, v)) if *v != value => {
                Some(format!("value of {name} PriorityClass must be {v}"))
            }
            Some(_) if global => Some(format!(
                "globalDefault of {name} PriorityClass must be false"
            )),
            Some(_) => None,
        };
        if let Some(problem) = problem {
            errs.push(Error::forbidden(
                &Path::new("metadata").child("name"),
                &format!("priority class names with 'system-' prefix are reserved for system use only. error: {problem}"),
            ));
        }
    } else if value > HIGHEST_USER_PRIORITY {
        errs.push(Error::forbidden(
            &Path::new("value"),
            &format!("maximum allowed value of a user defined priority is {HIGHEST_USER_PRIORITY}"),
        ));
    }
    if let Some(policy) = pc.get("preemptionPolicy").filter(|p| !p.is_null()) {
        let s = policy.as_str().unwrap_or_default();
        if !matches!(s, "Never" | "PreemptLowerPriority") {
            errs.push(Error::not_supported(
                &Path::new("preemptionPolicy"),
                s,
                &["Never", "PreemptLowerPriority"],
            ));
        }
    }
    errs
}

/// Upstream's `ValidatePriorityClassUpdate`: value and preemption policy
/// are fixed.
pub(super) fn validate_priority_class_update(new: &Value, old: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    let value = |v: &Value| v.get("value").and_then(Value::as_i64).unwrap_or(0);
    if value(new) != value(old) {
        errs.push(Error::forbidden(
            &Path::new("value"),
            "may not be changed in an update.",
        ));
    }
    immutable(
        new.get("preemptionPolicy"),
        old.get("preemptionPolicy"),
        &Path::new("preemptionPolicy"),
        &mut errs,
    );
    errs
}

/// `SetDefaults_StorageClass`: reclaim policy `Delete`, binding mode
/// `Immediate`.
pub(super) fn default_storage_class(sc: &mut Value) {
    default_str(sc, "reclaimPolicy", "Delete");
    default_str(sc, "volumeBindingMode", "Immediate");
}

const MAX_PARAMETERS: usize = 512;
const MAX_PARAMETERS_SIZE: usize = 256 * 1024;

/// Upstream's `ValidateStorageClass`.
pub(super) fn validate_storage_class(sc: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    let pp = Path::new("provisioner");
    let provisioner = str_or_empty(sc, "provisioner");
    if provisioner.is_empty() {
        errs.push(Error::required(&pp, ""));
    } else {
        // Checked in lower case, reported as written.
        invalid_each(
            &mut errs,
            &pp,
            provisioner,
            is_qualified_name(&provisioner.to_lowercase()),
        );
    }
    let params = str_map(sc, "parameters");
    let parp = Path::new("parameters");
    if params.len() > MAX_PARAMETERS {
        errs.push(Error::too_long(&parp, Some(MAX_PARAMETERS)));
    } else {
        let mut size = 0;
        for (k, v) in &params {
            if k.is_empty() {
                errs.push(Error::invalid(&parp, k.as_str(), "field can not be empty."));
            }
            size += k.len() + v.len();
        }
        if size > MAX_PARAMETERS_SIZE {
            errs.push(Error::too_long(&parp, Some(MAX_PARAMETERS_SIZE)));
        }
    }
    let policy = str_or_empty(sc, "reclaimPolicy");
    if !policy.is_empty() && !matches!(policy, "Delete" | "Retain") {
        errs.push(Error::not_supported(
            &Path::new("reclaimPolicy"),
            policy,
            &["Delete", "Retain"],
        ));
    }
    match str_of(sc, "volumeBindingMode") {
        None => errs.push(Error::required(&Path::new("volumeBindingMode"), "")),
        Some("Immediate" | "WaitForFirstConsumer") => {}
        Some(other) => errs.push(Error::not_supported(
            &Path::new("volumeBindingMode"),
            other,
            &["Immediate", "WaitForFirstConsumer"],
        )),
    }
    errs
}

/// Upstream's `ValidateStorageClassUpdate`: provisioner, parameters,
/// reclaim policy and binding mode are fixed.
pub(super) fn validate_storage_class_update(new: &Value, old: &Value) -> ErrorList {
    let mut errs = validate_storage_class(new);
    if str_map(new, "parameters") != str_map(old, "parameters") {
        errs.push(Error::forbidden(
            &Path::new("parameters"),
            "updates to parameters are forbidden.",
        ));
    }
    if str_or_empty(new, "provisioner") != str_or_empty(old, "provisioner") {
        errs.push(Error::forbidden(
            &Path::new("provisioner"),
            "updates to provisioner are forbidden.",
        ));
    }
    if str_or_empty(new, "reclaimPolicy") != str_or_empty(old, "reclaimPolicy") {
        errs.push(Error::forbidden(
            &Path::new("reclaimPolicy"),
            "updates to reclaimPolicy are forbidden.",
        ));
    }
    let (n, o) = (
        str_of(new, "volumeBindingMode"),
        str_of(old, "volumeBindingMode"),
    );
    if n != o {
        errs.push(Error::invalid(
            &Path::new("volumeBindingMode"),
            n.map_or(BadValue::Null, BadValue::from),
            FIELD_IMMUTABLE,
        ));
    }
    errs
}

#[cfg(test)]
#[path = "scheduling_tests.rs"]
mod tests;
