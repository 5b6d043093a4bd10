//! Nodes and Namespaces.

use serde_json::{Value, json};

use super::util::{arr, obj, quantity, str_or_empty, strs, valid_cidr};
use crate::field::{BadValue, Error, ErrorList, Path};
use crate::validation::{is_qualified_name, is_valid_label_value, validate_label_name};

/// Decoding of a Node: `podCIDR` and `podCIDRs` are one field internally
/// (`podCIDRs`), so the two are synced as a round trip through the
/// internal type would.
pub(super) fn normalize_node(node: &mut Value) {
    let Some(spec) = node.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let first = spec
        .get("podCIDRs")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .map(str::to_owned);
    match first {
        Some(first) => {
            spec.insert("podCIDR".into(), json!(first));
        }
        None => {
            if let Some(cidr) = spec
                .get("podCIDR")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
            {
                spec.insert("podCIDRs".into(), json!([cidr]));
            }
        }
    }
}

/// `SetDefaults_NodeStatus`: allocatable defaults to capacity.
pub(super) fn default_node(node: &mut Value) {
    let Some(status) = node.get_mut("status").and_then(Value::as_object_mut) else {
        return;
    };
    let allocatable_unset = status.get("allocatable").is_none_or(Value::is_null);
    if allocatable_unset
        && let Some(cap) = status.get("capacity").filter(|c| c.is_object()).cloned()
    {
        status.insert("allocatable".into(), cap);
    }
}

const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

fn validate_taints(taints: &[Value], path: &Path, errs: &mut ErrorList) {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for (i, taint) in taints.iter().enumerate() {
        let p = path.index(i);
        let key = str_or_empty(taint, "key");
        let value = str_or_empty(taint, "value");
        let effect = str_or_empty(taint, "effect");
        errs.extend(validate_label_name(key, &p.child("key")));
        let msgs = is_valid_label_value(value);
        if !msgs.is_empty() {
            errs.push(Error::invalid(&p.child("value"), value, &msgs.join(";")));
        }
        if effect.is_empty() {
            errs.push(Error::required(&p.child("effect"), ""));
        } else if !TAINT_EFFECTS.contains(&effect) {
            errs.push(Error::not_supported(
                &p.child("effect"),
                effect,
                TAINT_EFFECTS,
            ));
        }
        if seen.contains(&(effect, key)) {
            let mut dup = Error::duplicate(
                &p,
                BadValue::Raw(format!(
                    "core.Taint{{Key:{}, Value:{}, Effect:{}, TimeAdded:(*v1.Time)(nil)}}",
                    crate::go_quote(key),
                    crate::go_quote(value),
                    crate::go_quote(effect)
                )),
            );
            dup.detail = "taints must be unique by key and effect pair".to_owned();
            errs.push(dup);
            continue;
        }
        seen.push((effect, key));
    }
}

/// Upstream's `ValidateNodeResources`: values only (names are free), at
/// `status.capacity.<name>` (a child path, as upstream writes it).
fn validate_resources(status: &Value, key: &str, errs: &mut ErrorList) {
    let base = Path::new("status").child(key);
    for (name, q) in obj(status, key).into_iter().flatten() {
        quantity(errs, &base.child(name), q);
    }
}

/// Upstream's `ValidateNode` (spec; status values when present).
pub(super) fn validate_node(node: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    let null = Value::Null;
    let spec = node.get("spec").unwrap_or(&null);
    // Upstream validates the spec's taints under `metadata.taints`.
    validate_taints(
        arr(spec, "taints"),
        &Path::new("metadata").child("taints"),
        &mut errs,
    );
    let status = node.get("status").unwrap_or(&null);
    validate_resources(status, "capacity", &mut errs);
    validate_resources(status, "allocatable", &mut errs);
    let cidrs = strs(spec, "podCIDRs");
    let path = Path::new("spec").child("podCIDRs");
    let parsed: Vec<_> = cidrs
        .iter()
        .enumerate()
        .map(|(i, c)| valid_cidr(&mut errs, &path.index(i), c))
        .collect();
    if cidrs.len() > 1 {
        let dual = cidrs.len() == 2
            && match (parsed[0], parsed[1]) {
                (Some(a), Some(b)) => a.ip.is_ipv4() != b.ip.is_ipv4(),
                _ => false,
            };
        if !dual {
            errs.push(Error::invalid(
                &path,
                BadValue::StrList(cidrs.iter().map(|s| (*s).to_owned()).collect()),
                "may specify no more than one CIDR for each IP family",
            ));
        }
        for (i, c) in cidrs.iter().enumerate() {
            if cidrs[..i].contains(c) {
                errs.push(Error::duplicate(&path.index(i), *c));
            }
        }
    }
    errs
}

/// Upstream's `ValidateNodeUpdate`: podCIDRs and providerID can only go
/// from unset to set; status addresses are unique.
pub(super) fn validate_node_update(new: &Value, old: &Value) -> ErrorList {
    let mut errs = validate_node(new);
    fn cidrs(n: &Value) -> Vec<&str> {
        n.get("spec")
            .map(|s| strs(s, "podCIDRs"))
            .unwrap_or_default()
    }
    let (o, n) = (cidrs(old), cidrs(new));
    if !o.is_empty() && o != n {
        errs.push(Error::forbidden(
            &Path::new("spec").child("podCIDRs"),
            "node updates may not change podCIDR except from \"\" to valid",
        ));
    }
    fn provider(n: &Value) -> &str {
        n.get("spec")
            .map(|s| str_or_empty(s, "providerID"))
            .unwrap_or_default()
    }
    if !provider(old).is_empty() && provider(old) != provider(new) {
        errs.push(Error::forbidden(
            &Path::new("spec").child("providerID"),
            "node updates may not change providerID except from \"\" to valid",
        ));
    }
    let external_id = |n: &Value| n.pointer("/spec/externalID").cloned();
    if external_id(new) != external_id(old) {
        errs.push(Error::forbidden(
            &Path::new("spec").child("externalID"),
            "may not be updated",
        ));
    }
    let null = Value::Null;
    let addrs = arr(new.get("status").unwrap_or(&null), "addresses");
    for (i, a) in addrs.iter().enumerate() {
        if addrs[..i].contains(a) {
            errs.push(Error::duplicate(
                &Path::new("status").child("addresses").index(i),
                BadValue::Raw(format!(
                    "core.NodeAddress{{Type:{}, Address:{}}}",
                    crate::go_quote(str_or_empty(a, "type")),
                    crate::go_quote(str_or_empty(a, "address"))
                )),
            ));
        }
    }
    errs
}

/// Upstream's `validateFinalizerName` for namespace finalizers: a
/// qualified name, and a standard one unless it has a domain. Upstream
/// reports these at `spec.finalizers`, without an index.
fn finalizer_name(errs: &mut ErrorList, path: &Path, name: &str) {
    for msg in is_qualified_name(name) {
        errs.push(Error::invalid(path, name, &msg));
    }
    if !name.contains('/') && name != "kubernetes" {
        errs.push(Error::invalid(
            path,
            name,
            "name is neither a standard finalizer name nor is it fully qualified",
        ));
    }
}

/// Upstream's `ValidateNamespace` (the spec's finalizers).
pub(super) fn validate_namespace(ns: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    let null = Value::Null;
    let spec = ns.get("spec").unwrap_or(&null);
    let path = Path::new("spec").child("finalizers");
    for f in arr(spec, "finalizers") {
        finalizer_name(&mut errs, &path, f.as_str().unwrap_or_default());
    }
    errs
}

/// Upstream's `ValidateNamespaceStatusUpdate`: the phase follows the
/// deletion timestamp (the path's capital `Phase` is upstream's).
pub(super) fn validate_namespace_status(ns: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    let phase = ns
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let deleting = ns
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null());
    let path = Path::new("status").child("Phase");
    if !deleting && phase != "Active" {
        errs.push(Error::invalid(
            &path,
            phase,
            "may only be 'Active' if `deletionTimestamp` is empty",
        ));
    } else if deleting && phase != "Terminating" {
        errs.push(Error::invalid(
            &path,
            phase,
            "may only be 'Terminating' if `deletionTimestamp` is not empty",
        ));
    }
    errs
}

#[cfg(test)]
#[path = "node_tests.rs"]
mod tests;
