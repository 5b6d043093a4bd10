//! PersistentVolumeClaims.

use serde_json::{Map, Value, json};

use super::storage::{access_modes, set_phase_default, volume_mode};
use super::util::{
    FIELD_IMMUTABLE, bad, default_str, dns1123_subdomain, label_selector, obj, quantity,
    quantity_value, str_of, str_or_empty,
};
use crate::field::{BadValue, Error, ErrorList, Path};
use crate::validation::is_dns1123_label;

/// `SetDefaults_PersistentVolumeClaim`: volume mode `Filesystem`, phase
/// `Pending`.
pub(super) fn default_pvc(pvc: &mut Value) {
    if let Some(spec) = pvc.get_mut("spec").filter(|s| s.is_object()) {
        default_str(spec, "volumeMode", "Filesystem");
    }
    set_phase_default(pvc);
}

/// The strategy's `PrepareForCreate`: a new claim's status is `Pending`.
pub(super) fn prepare_create_pvc(pvc: &mut Value) {
    sync_data_sources(pvc);
    if let Some(m) = pvc.as_object_mut() {
        m.insert("status".into(), json!({"phase": "Pending"}));
    }
}

/// Upstream's `validateDataSource` / `validateDataSourceRef`.
fn data_source(src: &Value, path: &Path, errs: &mut ErrorList) {
    for key in ["name", "kind"] {
        if str_or_empty(src, key).is_empty() {
            errs.push(Error::required(&path.child(key), ""));
        }
    }
    let group = str_or_empty(src, "apiGroup");
    let kind = str_or_empty(src, "kind");
    if group.is_empty() && kind != "PersistentVolumeClaim" {
        errs.push(Error::invalid(
            path,
            kind,
            "must be 'PersistentVolumeClaim' when referencing the default apiGroup",
        ));
    }
    if !group.is_empty() {
        dns1123_subdomain(errs, &path.child("apiGroup"), group);
    }
    if let Some(ns) = str_of(src, "namespace").filter(|n| !n.is_empty()) {
        for msg in is_dns1123_label(ns) {
            errs.push(Error::invalid(&path.child("namespace"), ns, &msg));
        }
    }
}

fn validate_data_sources(spec: &Value, sp: &Path, errs: &mut ErrorList) {
    let ds = spec.get("dataSource").filter(|d| !d.is_null());
    let dsr = spec.get("dataSourceRef").filter(|d| !d.is_null());
    if let Some(ds) = ds {
        data_source(ds, &sp.child("dataSource"), errs);
    }
    if let Some(dsr) = dsr {
        data_source(dsr, &sp.child("dataSourceRef"), errs);
    }
    // The bad value is a field path, which upstream prints as text.
    let shown = BadValue::Raw(sp.child("dataSource").to_string());
    let ref_namespace = dsr.is_some_and(|r| !str_or_empty(r, "namespace").is_empty());
    if ref_namespace {
        if ds.is_some() {
            errs.push(Error::invalid(
                sp,
                shown,
                "may not be specified when dataSourceRef.namespace is specified",
            ));
        }
    } else if let (Some(ds), Some(dsr)) = (ds, dsr) {
        let same = ["apiGroup", "kind", "name"]
            .iter()
            .all(|k| ds.get(*k).filter(|v| !v.is_null()) == dsr.get(*k).filter(|v| !v.is_null()));
        if !same {
            errs.push(Error::invalid(sp, shown, "must match dataSourceRef"));
        }
    }
}

/// The strategy's data-source syncing on create (upstream's
/// `EnforceDataSourceBackwardsCompatibility` and `DropDisabledFields`): a
/// lone `dataSource` is copied to `dataSourceRef` and back.
fn sync_data_sources(pvc: &mut Value) {
    let Some(spec) = pvc.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let ds = spec.get("dataSource").filter(|d| d.is_object()).cloned();
    let dsr = spec.get("dataSourceRef").filter(|d| d.is_object()).cloned();
    match (ds, dsr) {
        (Some(ds), None) => {
            spec.insert("dataSourceRef".into(), ds);
        }
        (None, Some(dsr)) if str_or_empty(&dsr, "namespace").is_empty() => {
            let mut copy = dsr;
            if let Some(m) = copy.as_object_mut() {
                m.remove("namespace");
            }
            spec.insert("dataSource".into(), copy);
        }
        _ => {}
    }
}

/// Upstream's `ValidatePersistentVolumeClaimSpec`.
pub(super) fn validate_pvc(pvc: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    let null = Value::Null;
    let spec = pvc.get("spec").unwrap_or(&null);
    let sp = Path::new("spec");
    access_modes(spec, &sp, "at least 1 access mode is required", &mut errs);
    if let Some(sel) = spec.get("selector").filter(|s| !s.is_null()) {
        label_selector(&mut errs, &sp.child("selector"), sel);
    }
    let storage_path = sp.child("resources").key("storage");
    match spec.pointer("/resources/requests/storage") {
        None | Some(Value::Null) => errs.push(Error::required(&storage_path, "")),
        Some(q) => {
            if quantity(&mut errs, &storage_path, q).is_some_and(|v| v <= 0.0) {
                errs.push(Error::invalid(
                    &storage_path,
                    BadValue::Raw(super::util::quantity_text(q)),
                    "must be greater than zero",
                ));
            }
        }
    }
    if let Some(class) = spec.get("storageClassName").and_then(Value::as_str)
        && !class.is_empty()
    {
        dns1123_subdomain(&mut errs, &sp.child("storageClassName"), class);
    }
    volume_mode(spec, &sp, &mut errs);
    validate_data_sources(spec, &sp, &mut errs);
    errs
}

fn storage_request(pvc: &Value) -> Option<f64> {
    pvc.pointer("/spec/resources/requests/storage")
        .and_then(quantity_value)
}

/// Upstream's `ValidatePersistentVolumeClaimUpdate`: the spec is fixed
/// except for binding (`volumeName` once), and for bound claims the
/// storage request (growth) and `volumeAttributesClassName`.
pub(super) fn validate_pvc_update(new: &Value, old: &Value) -> ErrorList {
    let mut errs = validate_pvc(new);
    let mut ns = new.get("spec").cloned().unwrap_or_else(|| json!({}));
    let mut os = old.get("spec").cloned().unwrap_or_else(|| json!({}));
    let clear = |v: &mut Value, key: &str| {
        if let Some(m) = v.as_object_mut() {
            m.remove(key);
        }
    };
    if str_or_empty(&os, "volumeName").is_empty() {
        clear(&mut ns, "volumeName");
        clear(&mut os, "volumeName");
    }
    // A class set from nothing (the default class being assigned) is allowed.
    if os.get("storageClassName").is_none_or(Value::is_null) {
        clear(&mut ns, "storageClassName");
    }
    let bound = new.pointer("/status/phase").and_then(Value::as_str) == Some("Bound");
    if bound {
        if let Some(req) = ns
            .pointer_mut("/resources/requests")
            .and_then(Value::as_object_mut)
        {
            match os.pointer("/resources/requests/storage") {
                Some(s) => {
                    req.insert("storage".into(), s.clone());
                }
                None => {
                    req.remove("storage");
                }
            }
        }
        let vac = os.get("volumeAttributesClassName").cloned();
        if ns
            .get("volumeAttributesClassName")
            .is_some_and(|v| !v.is_null())
        {
            match vac {
                Some(v) => ns["volumeAttributesClassName"] = v,
                None => clear(&mut ns, "volumeAttributesClassName"),
            }
        }
    }
    if ns != os {
        errs.push(Error::forbidden(
            &Path::new("spec"),
            &format!(
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n{}",
                spec_diff(&os, &ns)
            ),
        ));
    }
    if let (Some(n), Some(o)) = (storage_request(new), storage_request(old))
        && n < o
    {
        let status = old
            .pointer("/status/capacity/storage")
            .and_then(quantity_value)
            .unwrap_or(0.0);
        if n <= status {
            errs.push(Error::forbidden(
                &Path::new("spec")
                    .child("resources")
                    .child("requests")
                    .child("storage"),
                "field can not be less than status.capacity",
            ));
        }
    }
    let mode = |v: &Value| {
        v.pointer("/spec/volumeMode")
            .filter(|m| !m.is_null())
            .cloned()
    };
    if mode(new) != mode(old) {
        errs.push(Error::invalid(
            &Path::new("volumeMode"),
            mode(new).as_ref().map_or(BadValue::Null, bad),
            FIELD_IMMUTABLE,
        ));
    }
    errs
}

/// A short diff of two claim specs in the spirit of upstream's `cmp.Diff`
/// (which the message carries): one `-`/`+` pair per changed field.
fn spec_diff(old: &Value, new: &Value) -> String {
    let empty = Map::new();
    let (o, n) = (
        old.as_object().unwrap_or(&empty),
        new.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<&String> = o.keys().chain(n.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = String::from("  core.PersistentVolumeClaimSpec{\n");
    for key in keys {
        let (a, b) = (o.get(key), n.get(key));
        if a == b {
            continue;
        }
        let mut name = key.clone();
        if let Some(first) = name.get(..1).map(str::to_uppercase) {
            name.replace_range(..1, &first);
        }
        for (sign, v) in [('-', a), ('+', b)] {
            if let Some(v) = v {
                out.push_str(&format!("{sign} \t{name}: {v},\n"));
            }
        }
    }
    out.push_str("  }\n");
    out
}

/// Upstream's `ValidatePersistentVolumeClaimStatusUpdate`: access modes
/// still set (under upstream's capitalised `Spec` path) and capacities not
/// negative.
pub(super) fn validate_pvc_status(pvc: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    let modes = pvc.pointer("/spec/accessModes").and_then(Value::as_array);
    if modes.is_none_or(Vec::is_empty) {
        errs.push(Error::required(&Path::new("Spec").child("accessModes"), ""));
    }
    let null = Value::Null;
    let status = pvc.get("status").unwrap_or(&null);
    let cap = Path::new("status").child("capacity");
    for (name, q) in obj(status, "capacity").into_iter().flatten() {
        if let Some(v) = quantity_value(q)
            && v < 0.0
        {
            errs.push(Error::invalid(
                &cap.key(name),
                v.trunc() as i64,
                "must be a valid resource quantity",
            ));
        }
    }
    errs
}
