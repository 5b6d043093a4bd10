//! Pods: create validation, the update rules of `ValidatePodUpdate`, status
//! updates, and the QoS class of `GetPodQOS`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::json::{int_of, list_of, pruned, semantic_eq, str_of};
use super::podspec::{validate_pod_spec, validate_tolerations};
use super::resources::resource_list;
use crate::field::{BadValue, Error, ErrorList, Path};
use crate::quantity::Quantity;
use crate::validation::{is_dns1123_subdomain, is_qualified_name};

/// The fields a pod update may change, as upstream's message lists them.
const UPDATABLE_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// The pod's spec (null when missing), borrowed: the spec is most of a pod.
fn spec_of(pod: &Value) -> &Value {
    static NULL: Value = Value::Null;
    pod.get("spec").unwrap_or(&NULL)
}

/// Upstream's `ValidatePodCreate` (without the object metadata).
pub(super) fn validate_create(pod: &Value) -> ErrorList {
    let spec = spec_of(pod);
    let path = Path::new("spec");
    let mut errs = validate_pod_spec(spec, &path, true);
    if !list_of(spec, "ephemeralContainers").is_empty() {
        errs.push(Error::forbidden(
            &path.child("ephemeralContainers"),
            "cannot be set on create",
        ));
    }
    if !str_of(spec, "nodeName").is_empty() && !list_of(spec, "schedulingGates").is_empty() {
        errs.push(Error::forbidden(
            &path.child("nodeName"),
            "cannot be set until all schedulingGates have been cleared",
        ));
    }
    errs
}

/// Upstream's `ValidatePodUpdate` (without the object metadata).
pub(super) fn validate_update(new: &Value, old: &Value) -> ErrorList {
    let (ns, os) = (spec_of(new), spec_of(old));
    let path = Path::new("spec");
    let mut errs = validate_pod_spec(ns, &path, true);
    for key in ["containers", "initContainers"] {
        let (nl, ol) = (list_of(ns, key), list_of(os, key));
        if nl.len() != ol.len() {
            errs.push(Error::forbidden(
                &path.child(key),
                "pod updates may not add or remove containers",
            ));
            return errs;
        }
    }
    let ads = path.child("activeDeadlineSeconds");
    match (
        int_of(ns, "activeDeadlineSeconds"),
        int_of(os, "activeDeadlineSeconds"),
    ) {
        (Some(n), _) if !(0..=i64::from(i32::MAX)).contains(&n) => {
            errs.push(Error::invalid(
                &ads,
                n,
                "must be between 0 and 2147483647, inclusive",
            ));
            return errs;
        }
        (Some(n), Some(o)) if o < n => {
            errs.push(Error::invalid(
                &ads,
                n,
                "must be less than or equal to previous value",
            ));
            return errs;
        }
        (None, Some(_)) => errs.push(Error::invalid(
            &ads,
            BadValue::Null,
            "must not update from a positive integer to nil value",
        )),
        _ => {}
    }
    errs.extend(only_added_tolerations(ns, os, &path.child("tolerations")));
    errs.extend(only_deleted_gates(ns, os, &path.child("schedulingGates")));
    let munged = munge(ns, os);
    if !semantic_eq(Some(&munged), Some(os)) {
        errs.push(Error::forbidden(
            &path,
            &format!(
                "pod updates may not change fields other than {UPDATABLE_FIELDS}\n{}",
                spec_diff(os, &munged)
            ),
        ));
    }
    errs
}

/// The new spec with every field an update may change taken from the old.
fn munge(ns: &Value, os: &Value) -> Value {
    let mut m = ns.clone();
    let Some(map) = m.as_object_mut() else {
        return m;
    };
    for key in ["containers", "initContainers"] {
        if let Some(Value::Array(items)) = map.get_mut(key) {
            for (i, c) in items.iter_mut().enumerate() {
                let old_image = os
                    .get(key)
                    .and_then(|l| l.get(i))
                    .and_then(|c| c.get("image"));
                if let (Some(obj), Some(img)) = (c.as_object_mut(), old_image) {
                    obj.insert("image".into(), img.clone());
                }
            }
        }
    }
    for key in ["activeDeadlineSeconds", "tolerations", "schedulingGates"] {
        copy_field(map, os, key);
    }
    let old_grace = int_of(os, "terminationGracePeriodSeconds");
    if old_grace.is_some_and(|g| g < 0) && int_of(ns, "terminationGracePeriodSeconds") == Some(1) {
        copy_field(map, os, "terminationGracePeriodSeconds");
    }
    m
}

fn copy_field(map: &mut Map<String, Value>, from: &Value, key: &str) {
    match from.get(key) {
        Some(v) => {
            map.insert(key.to_owned(), v.clone());
        }
        None => {
            map.remove(key);
        }
    }
}

/// A short description of what differs, in place of upstream's `cmp.Diff`
/// of the Go structs.
fn spec_diff(old: &Value, new: &Value) -> String {
    let mut lines = Vec::new();
    diff_into(&pruned(old), &pruned(new), "spec", &mut lines);
    lines.join("\n")
}

fn diff_into(old: &Value, new: &Value, at: &str, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let null = Value::Null;
                let (x, y) = (a.get(k).unwrap_or(&null), b.get(k).unwrap_or(&null));
                diff_into(x, y, &format!("{at}.{k}"), out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff_into(x, y, &format!("{at}[{i}]"), out);
            }
        }
        (a, b) if a != b => {
            out.push(format!("- \t{at}: {a}"));
            out.push(format!("+ \t{at}: {b}"));
        }
        _ => {}
    }
}

/// Upstream's `validateOnlyAddedTolerations`.
fn only_added_tolerations(ns: &Value, os: &Value, path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let new = list_of(ns, "tolerations");
    for old in list_of(os, "tolerations") {
        let found = new.iter().any(|n| {
            let mut clone = old.clone();
            if let Some(m) = clone.as_object_mut() {
                copy_field(m, n, "tolerationSeconds");
            }
            semantic_eq(Some(&clone), Some(n))
        });
        if !found {
            errs.push(Error::forbidden(
                path,
                "existing toleration can not be modified except its tolerationSeconds",
            ));
            return errs;
        }
    }
    errs.extend(validate_tolerations(new, path));
    errs
}

/// Upstream's `validateOnlyDeletedSchedulingGates`.
fn only_deleted_gates(ns: &Value, os: &Value, path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let old: Vec<&str> = list_of(os, "schedulingGates")
        .iter()
        .map(|g| str_of(g, "name"))
        .collect();
    for (i, g) in list_of(ns, "schedulingGates").iter().enumerate() {
        let name = str_of(g, "name");
        if !old.contains(&name) {
            errs.push(Error::forbidden(
                &path.index(i).child("name"),
                &format!("only deletion is allowed, but found new scheduling gate '{name}'"),
            ));
        }
    }
    errs
}

/// Upstream's `ValidatePodStatusUpdate` (without metadata): custom
/// condition types, the node name and QoS class, container state
/// transitions, and the pod and host IPs.
pub(super) fn validate_status(new: &Value, old: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    let null = Value::Null;
    let status = new.get("status").unwrap_or(&null);
    let old_status = old.get("status").unwrap_or(&null);
    for (i, c) in list_of(status, "conditions").iter().enumerate() {
        let t = str_of(c, "type");
        if !matches!(t, "PodScheduled" | "Ready" | "Initialized") {
            // Upstream reports these under `metadata`, with a capital `Type`.
            let p = Path::new("metadata")
                .child("conditions")
                .index(i)
                .child("Type");
            for m in is_qualified_name(t) {
                errs.push(Error::invalid(&p, t, &m));
            }
        }
    }
    let path = Path::new("status");
    let spec_node = |o: &Value| {
        o.get("spec")
            .map_or("", |s| str_of(s, "nodeName"))
            .to_owned()
    };
    if spec_node(new) != spec_node(old) {
        errs.push(Error::forbidden(
            &path.child("nodeName"),
            "may not be changed directly",
        ));
    }
    let nominated = str_of(status, "nominatedNodeName");
    if !nominated.is_empty() && nominated != str_of(old_status, "nominatedNodeName") {
        for m in is_dns1123_subdomain(nominated) {
            errs.push(Error::invalid(
                &path.child("nominatedNodeName"),
                nominated,
                &m,
            ));
        }
    }
    let qos = str_of(status, "qosClass");
    if qos != str_of(old_status, "qosClass") {
        errs.push(Error::invalid(
            &path.child("qosClass"),
            qos,
            "field is immutable",
        ));
    }
    let restart = old.get("spec").map_or("", |s| str_of(s, "restartPolicy"));
    for (key, policy) in [
        ("containerStatuses", restart),
        ("initContainerStatuses", restart),
        ("ephemeralContainerStatuses", "Never"),
    ] {
        errs.extend(state_transitions(
            list_of(status, key),
            list_of(old_status, key),
            policy,
            &path.child(key),
        ));
    }
    for (i, entry) in list_of(status, "podIPs").iter().enumerate() {
        errs.extend(ip_errors(
            str_of(entry, "ip"),
            &path.child("podIPs").index(i),
        ));
    }
    let host_ips = list_of(status, "hostIPs");
    if let Some(first) = host_ips.first() {
        let ip = str_of(first, "ip");
        if ip != str_of(status, "hostIP") {
            let p = path.child("hostIPs").index(0).child("ip");
            errs.push(Error::invalid(&p, ip, "must be equal to `hostIP`"));
        }
        for (i, entry) in host_ips.iter().enumerate() {
            errs.extend(ip_errors(
                str_of(entry, "ip"),
                &path.child("hostIPs").index(i),
            ));
        }
    }
    errs
}

/// Upstream's `IsValidIP`.
fn ip_errors(ip: &str, path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    match ip.parse::<std::net::IpAddr>() {
        Err(_) => errs.push(Error::invalid(
            path,
            ip,
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        )),
        Ok(parsed) if parsed.to_string() != ip => errs.push(Error::invalid(
            path,
            ip,
            &format!(
                "must be in canonical form ({})",
                crate::go_quote(&parsed.to_string())
            ),
        )),
        Ok(_) => {}
    }
    errs
}

/// Terminated containers of a pod that does not restart them stay
/// terminated.
fn state_transitions(new: &[Value], old: &[Value], policy: &str, path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    if policy == "Always" {
        return errs;
    }
    for (i, o) in old.iter().enumerate() {
        let Some(terminated) = o.get("state").and_then(|s| s.get("terminated")) else {
            continue;
        };
        if terminated.is_null() {
            continue;
        }
        let exit = int_of(terminated, "exitCode").unwrap_or(0);
        if exit != 0 && policy == "OnFailure" {
            continue;
        }
        let name = str_of(o, "name");
        let revived = new.iter().any(|n| {
            str_of(n, "name") == name
                && n.get("state")
                    .and_then(|s| s.get("terminated"))
                    .is_none_or(Value::is_null)
        });
        if revived {
            errs.push(Error::forbidden(
                &path.index(i).child("state"),
                "may not be transitioned to non-terminated state",
            ));
        }
    }
    errs
}

/// Upstream's `ComputePodQOS`: `Guaranteed`, `Burstable` or `BestEffort`.
pub(super) fn qos_class(pod: &Value) -> &'static str {
    let spec = spec_of(pod);
    let mut requests: BTreeMap<String, Quantity> = BTreeMap::new();
    let mut limits: BTreeMap<String, Quantity> = BTreeMap::new();
    let mut guaranteed = true;
    let containers = list_of(spec, "containers")
        .iter()
        .chain(list_of(spec, "initContainers"));
    let zero = Quantity::from_int(0);
    let add = |into: &mut BTreeMap<String, Quantity>, name: String, q: Quantity| {
        let sum = match into.get(&name) {
            Some(prev) => q.checked_add(prev).unwrap_or(q),
            None => q,
        };
        into.insert(name, sum);
    };
    for c in containers {
        let resources = c.get("resources");
        for (name, q) in resource_list(resources.and_then(|r| r.get("requests"))) {
            if (name == "cpu" || name == "memory") && q > zero {
                add(&mut requests, name, q);
            }
        }
        let mut found = Vec::new();
        for (name, q) in resource_list(resources.and_then(|r| r.get("limits"))) {
            if (name == "cpu" || name == "memory") && q > zero {
                found.push(name.clone());
                add(&mut limits, name, q);
            }
        }
        if !(found.iter().any(|n| n == "cpu") && found.iter().any(|n| n == "memory")) {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed
        && requests.iter().all(|(n, r)| limits.get(n) == Some(r))
        && requests.len() == limits.len()
    {
        return "Guaranteed";
    }
    "Burstable"
}
