//! Which field labels each resource accepts in a field selector, and the values
//! of those fields for an object.
//!
//! Upstream has two layers, reproduced here: the per-kind field label conversion
//! (`pkg/apis/<group>/<version>/conversion.go`), which decides what a selector
//! may name and rewrites aliases, and the registry strategy's
//! `ToSelectableFields`, which computes the values matched against. A kind
//! without a conversion accepts only `metadata.name` and `metadata.namespace`,
//! with a different error message; that includes every apps/v1 kind.

use super::fields::Fields;

use serde_json::Value;

use crate::go_quote;
use crate::resources::ResourceInfo;

/// How a kind words the rejection of an unknown field label.
#[derive(Clone, Copy)]
enum Rejection {
    /// `field label not supported: <label>`.
    NotSupported,
    /// batch/v1 Job: `field label "<label>" not supported for batchv1.Job`.
    BatchJob,
    /// No conversion registered: `"<label>" is not a known field selector: only
    /// "metadata.name", "metadata.namespace"`.
    Default,
}

struct FieldLabels {
    /// `(label a client may send, canonical label)`.
    accepted: &'static [(&'static str, &'static str)],
    rejection: Rejection,
}

const fn same(label: &'static str) -> (&'static str, &'static str) {
    (label, label)
}

const DEFAULT: FieldLabels = FieldLabels {
    accepted: &[same("metadata.name"), same("metadata.namespace")],
    rejection: Rejection::Default,
};

const PODS: &[(&str, &str)] = &[
    same("metadata.name"),
    same("metadata.namespace"),
    same("spec.nodeName"),
    same("spec.restartPolicy"),
    same("spec.schedulerName"),
    same("spec.serviceAccountName"),
    same("spec.hostNetwork"),
    same("status.phase"),
    same("status.podIP"),
    same("status.nominatedNodeName"),
    // Old v1 clients send spec.host.
    ("spec.host", "spec.nodeName"),
];

const CORE_EVENTS: &[(&str, &str)] = &[
    same("involvedObject.kind"),
    same("involvedObject.namespace"),
    same("involvedObject.name"),
    same("involvedObject.uid"),
    same("involvedObject.apiVersion"),
    same("involvedObject.resourceVersion"),
    same("involvedObject.fieldPath"),
    same("reason"),
    same("reportingComponent"),
    same("source"),
    same("type"),
    same("metadata.namespace"),
    same("metadata.name"),
];

/// events.k8s.io/v1 names the fields as its own schema does and maps them onto
/// the core Event's labels.
const EVENTS_V1: &[(&str, &str)] = &[
    same("reason"),
    ("regarding.kind", "involvedObject.kind"),
    ("regarding.namespace", "involvedObject.namespace"),
    ("regarding.name", "involvedObject.name"),
    ("regarding.uid", "involvedObject.uid"),
    ("regarding.apiVersion", "involvedObject.apiVersion"),
    (
        "regarding.resourceVersion",
        "involvedObject.resourceVersion",
    ),
    ("regarding.fieldPath", "involvedObject.fieldPath"),
    ("reportingController", "reportingComponent"),
    same("type"),
    same("metadata.namespace"),
    same("metadata.name"),
];

const NODES: &[(&str, &str)] = &[same("metadata.name"), same("spec.unschedulable")];
const REPLICATION_CONTROLLERS: &[(&str, &str)] = &[
    same("metadata.name"),
    same("metadata.namespace"),
    same("status.replicas"),
];
const NAMESPACES: &[(&str, &str)] = &[same("status.phase"), same("metadata.name")];
const SECRETS: &[(&str, &str)] = &[
    same("type"),
    same("metadata.namespace"),
    same("metadata.name"),
];
const SERVICES: &[(&str, &str)] = &[
    same("metadata.namespace"),
    same("metadata.name"),
    same("spec.clusterIP"),
    same("spec.type"),
];
const JOBS: &[(&str, &str)] = &[
    same("metadata.name"),
    same("metadata.namespace"),
    same("status.successful"),
];
const CSRS: &[(&str, &str)] = &[same("metadata.name"), same("spec.signerName")];

fn field_labels(r: &ResourceInfo) -> FieldLabels {
    let (accepted, rejection) = match (r.group, r.plural) {
        ("", "pods") => (PODS, Rejection::NotSupported),
        ("", "nodes") => (NODES, Rejection::NotSupported),
        ("", "replicationcontrollers") => (REPLICATION_CONTROLLERS, Rejection::NotSupported),
        ("", "events") => (CORE_EVENTS, Rejection::NotSupported),
        ("", "namespaces") => (NAMESPACES, Rejection::NotSupported),
        ("", "secrets") => (SECRETS, Rejection::NotSupported),
        ("", "services") => (SERVICES, Rejection::NotSupported),
        ("events.k8s.io", "events") => (EVENTS_V1, Rejection::NotSupported),
        ("batch", "jobs") => (JOBS, Rejection::BatchJob),
        ("certificates.k8s.io", "certificatesigningrequests") => (CSRS, Rejection::NotSupported),
        _ => return DEFAULT,
    };
    FieldLabels {
        accepted,
        rejection,
    }
}

/// The field labels a client may use in a field selector for `r`, in upstream's
/// order (aliases included).
pub fn supported_field_labels(r: &ResourceInfo) -> Vec<&'static str> {
    field_labels(r)
        .accepted
        .iter()
        .map(|(label, _)| *label)
        .collect()
}

/// Upstream's `ConvertFieldLabel`: the canonical label for `label`, or the
/// kind's error message when `r` does not support it.
pub fn convert_field_label(r: &ResourceInfo, label: &str) -> Result<&'static str, String> {
    let table = field_labels(r);
    if let Some((_, canonical)) = table.accepted.iter().find(|(l, _)| *l == label) {
        return Ok(canonical);
    }
    Err(match table.rejection {
        Rejection::NotSupported => format!("field label not supported: {label}"),
        Rejection::BatchJob => {
            format!(
                "field label {} not supported for batchv1.Job",
                go_quote(label)
            )
        }
        Rejection::Default => format!(
            "{} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
            go_quote(label)
        ),
    })
}

/// The value at `path` rendered as a field value: strings as-is, numbers and
/// booleans in their JSON form, anything else (or nothing) as `""`.
fn text_at(obj: &Value, path: &[&str]) -> String {
    let mut v = obj;
    for p in path {
        match v.get(p) {
            Some(next) => v = next,
            None => return String::new(),
        }
    }
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// A boolean field that upstream always sets, defaulting to `false`.
fn bool_at(obj: &Value, path: &[&str]) -> String {
    let mut v = obj;
    for p in path {
        v = v.get(p).unwrap_or(&Value::Null);
    }
    v.as_bool().unwrap_or(false).to_string()
}

/// An integer field that upstream always sets, defaulting to `0`.
fn int_at(obj: &Value, path: &[&str]) -> String {
    let mut v = obj;
    for p in path {
        v = v.get(p).unwrap_or(&Value::Null);
    }
    v.as_i64().unwrap_or(0).to_string()
}

/// Upstream's `ToSelectableFields`: the canonical field labels of an object of
/// `r` (as JSON, in its served or stored form) with their values. Events in
/// the events.k8s.io/v1 shape (`regarding`, `reportingController`) are read as
/// well as the core v1 shape; the labels are always the core ones.
pub fn selectable_fields(r: &ResourceInfo, obj: &Value) -> Fields {
    let mut f = Fields::new();
    let mut put = |k: &'static str, v: String| {
        f.insert(k, v);
    };
    put("metadata.name", text_at(obj, &["metadata", "name"]));
    if r.namespaced() {
        put(
            "metadata.namespace",
            text_at(obj, &["metadata", "namespace"]),
        );
    }
    match (r.group, r.plural) {
        ("", "pods") => {
            for (label, path) in [
                ("spec.nodeName", ["spec", "nodeName"]),
                ("spec.restartPolicy", ["spec", "restartPolicy"]),
                ("spec.schedulerName", ["spec", "schedulerName"]),
                ("spec.serviceAccountName", ["spec", "serviceAccountName"]),
                ("status.phase", ["status", "phase"]),
                ("status.nominatedNodeName", ["status", "nominatedNodeName"]),
            ] {
                put(label, text_at(obj, &path));
            }
            put("spec.hostNetwork", bool_at(obj, &["spec", "hostNetwork"]));
            // Upstream reads the first of status.podIPs; status.podIP mirrors it.
            let first_ip = obj
                .get("status")
                .and_then(|s| s.get("podIPs"))
                .and_then(|ips| ips.get(0))
                .and_then(|ip| ip.get("ip"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            put(
                "status.podIP",
                first_ip.unwrap_or_else(|| text_at(obj, &["status", "podIP"])),
            );
        }
        ("", "nodes") => put(
            "spec.unschedulable",
            bool_at(obj, &["spec", "unschedulable"]),
        ),
        ("", "replicationcontrollers") | ("apps", "replicasets") => {
            put("status.replicas", int_at(obj, &["status", "replicas"]));
        }
        ("", "namespaces") => put("status.phase", text_at(obj, &["status", "phase"])),
        ("", "secrets") => put("type", text_at(obj, &["type"])),
        ("", "services") => {
            put("spec.clusterIP", text_at(obj, &["spec", "clusterIP"]));
            put("spec.type", text_at(obj, &["spec", "type"]));
        }
        ("", "events") | ("events.k8s.io", "events") => event_fields(obj, &mut put),
        ("batch", "jobs") => put("status.successful", int_at(obj, &["status", "succeeded"])),
        ("certificates.k8s.io", "certificatesigningrequests") => {
            put("spec.signerName", text_at(obj, &["spec", "signerName"]));
        }
        _ => {}
    }
    f
}

fn event_fields(obj: &Value, put: &mut impl FnMut(&'static str, String)) {
    let v1 = obj.get("apiVersion").and_then(Value::as_str) == Some("events.k8s.io/v1");
    let (object_ref, reporting, source) = if v1 {
        ("regarding", "reportingController", "deprecatedSource")
    } else {
        ("involvedObject", "reportingComponent", "source")
    };
    for (label, field) in [
        ("involvedObject.kind", "kind"),
        ("involvedObject.namespace", "namespace"),
        ("involvedObject.name", "name"),
        ("involvedObject.uid", "uid"),
        ("involvedObject.apiVersion", "apiVersion"),
        ("involvedObject.resourceVersion", "resourceVersion"),
        ("involvedObject.fieldPath", "fieldPath"),
    ] {
        put(label, text_at(obj, &[object_ref, field]));
    }
    put("reason", text_at(obj, &["reason"]));
    put("type", text_at(obj, &["type"]));
    let reporting_component = text_at(obj, &[reporting]);
    let mut src = text_at(obj, &[source, "component"]);
    if src.is_empty() {
        src = reporting_component.clone();
    }
    put("source", src);
    put("reportingComponent", reporting_component);
}
