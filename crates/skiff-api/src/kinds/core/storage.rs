//! PersistentVolumes and PersistentVolumeClaims.

use serde_json::{Map, Value, json};

use super::util::{
    FIELD_IMMUTABLE, arr, bad, default_str, dns1123_subdomain, obj, quantity, str_or_empty, strs,
};
use crate::field::{BadValue, Error, ErrorList, Path};
use crate::kinds::HOST_PATH_TYPES;
use crate::validation::{is_dns1123_subdomain, is_valid_label_value, validate_label_name};

pub(super) const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];
const RECLAIM_POLICIES: &[&str] = &["Delete", "Recycle", "Retain"];
const VOLUME_MODES: &[&str] = &["Block", "Filesystem"];

/// The volume sources of a PersistentVolume, in upstream's checking order.
const PV_SOURCES: &[&str] = &[
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "glusterfs",
    "flocker",
    "nfs",
    "rbd",
    "quobyte",
    "cinder",
    "cephfs",
    "iscsi",
    "fc",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "scaleIO",
    "local",
    "storageos",
    "csi",
];

/// `SetDefaults_PersistentVolume`: reclaim policy `Retain`, volume mode
/// `Filesystem`, phase `Pending`, and an explicit empty hostPath type.
pub(super) fn default_pv(pv: &mut Value) {
    if let Some(spec) = pv.get_mut("spec").filter(|s| s.is_object()) {
        default_str(spec, "persistentVolumeReclaimPolicy", "Retain");
        default_str(spec, "volumeMode", "Filesystem");
        if let Some(hp) = spec.get_mut("hostPath").filter(|h| h.is_object())
            && hp.get("type").is_none_or(Value::is_null)
        {
            hp["type"] = json!("");
        }
        // The volume sources' own defaults.
        let source_defaults: &[(&str, &[(&str, Value)])] = &[
            ("iscsi", &[("iscsiInterface", json!("default"))]),
            (
                "rbd",
                &[
                    ("pool", json!("rbd")),
                    ("user", json!("admin")),
                    ("keyring", json!("/etc/ceph/keyring")),
                ],
            ),
            (
                "azureDisk",
                &[
                    ("cachingMode", json!("ReadWrite")),
                    ("kind", json!("Shared")),
                    ("fsType", json!("ext4")),
                    ("readOnly", json!(false)),
                ],
            ),
            (
                "scaleIO",
                &[
                    ("storageMode", json!("ThinProvisioned")),
                    ("fsType", json!("xfs")),
                ],
            ),
        ];
        for (source, fields) in source_defaults {
            if let Some(src) = spec.get_mut(*source).filter(|s| s.is_object()) {
                for (key, value) in *fields {
                    let unset = src
                        .get(*key)
                        .is_none_or(|v| v.is_null() || v.as_str() == Some(""));
                    if unset {
                        src[*key] = value.clone();
                    }
                }
            }
        }
    }
    set_phase_default(pv);
}

pub(super) fn set_phase_default(obj: &mut Value) {
    let Some(m) = obj.as_object_mut() else {
        return;
    };
    let status = m.entry("status").or_insert_with(|| json!({}));
    if !status.is_object() {
        *status = json!({});
    }
    default_str(status, "phase", "Pending");
}

/// The strategy's `PrepareForCreate`: a new volume's status is `Pending`.
/// (Upstream also stamps `lastPhaseTransitionTime`; that needs the
/// server's clock.)
pub(super) fn prepare_create_pv(pv: &mut Value) {
    if let Some(m) = pv.as_object_mut() {
        m.insert("status".into(), json!({"phase": "Pending"}));
    }
}

pub(super) fn access_modes(spec: &Value, path: &Path, required_detail: &str, errs: &mut ErrorList) {
    let modes = strs(spec, "accessModes");
    if modes.is_empty() {
        errs.push(Error::required(&path.child("accessModes"), required_detail));
    }
    let (mut rwop, mut other) = (false, false);
    for mode in &modes {
        if !ACCESS_MODES.contains(mode) {
            errs.push(Error::not_supported(
                &path.child("accessModes"),
                *mode,
                ACCESS_MODES,
            ));
        }
        if *mode == "ReadWriteOncePod" {
            rwop = true;
        } else if ACCESS_MODES.contains(mode) {
            other = true;
        }
    }
    if rwop && other {
        errs.push(Error::forbidden(
            &path.child("accessModes"),
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
}

pub(super) fn volume_mode(spec: &Value, path: &Path, errs: &mut ErrorList) {
    if let Some(mode) = spec.get("volumeMode").and_then(Value::as_str)
        && !VOLUME_MODES.contains(&mode)
    {
        errs.push(Error::not_supported(
            &path.child("volumeMode"),
            mode,
            VOLUME_MODES,
        ));
    }
}

/// Upstream's `validatePathNoBacksteps`.
fn no_backsteps(src: &Value, path: &Path, errs: &mut ErrorList) {
    let p = str_or_empty(src, "path");
    if p.split('/').any(|part| part == "..") {
        errs.push(Error::invalid(
            &path.child("path"),
            p,
            "must not contain '..'",
        ));
    }
}

fn validate_source(key: &str, src: &Value, path: &Path, errs: &mut ErrorList) {
    let required = |errs: &mut ErrorList, field: &str| {
        if str_or_empty(src, field).is_empty() {
            errs.push(Error::required(&path.child(field), ""));
        }
    };
    match key {
        "hostPath" => {
            required(errs, "path");
            no_backsteps(src, path, errs);
            let ty = str_or_empty(src, "type");
            if !HOST_PATH_TYPES.contains(&ty) {
                errs.push(Error::not_supported(
                    &path.child("type"),
                    ty,
                    HOST_PATH_TYPES,
                ));
            }
        }
        "local" => {
            required(errs, "path");
            no_backsteps(src, path, errs);
        }
        "nfs" => {
            required(errs, "server");
            let p = str_or_empty(src, "path");
            if p.is_empty() {
                errs.push(Error::required(&path.child("path"), ""));
            } else if !p.starts_with('/') {
                errs.push(Error::invalid(
                    &path.child("path"),
                    p,
                    "must be an absolute path",
                ));
            }
        }
        "csi" => {
            required(errs, "driver");
            required(errs, "volumeHandle");
        }
        _ => {}
    }
}

/// Upstream's `ValidatePersistentVolumeSpec` for a stored volume.
pub(super) fn validate_pv(pv: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    let null = Value::Null;
    let spec = pv.get("spec").unwrap_or(&null);
    let sp = Path::new("spec");
    access_modes(spec, &sp, "", &mut errs);
    let capacity = obj(spec, "capacity");
    if capacity.is_none_or(Map::is_empty) {
        errs.push(Error::required(&sp.child("capacity"), ""));
    }
    if capacity.is_none_or(|c| !c.contains_key("storage") || c.len() > 1) {
        // Go's `%#v` of the map; quantities are abbreviated to `{...}`.
        let rendered = match capacity {
            None => "core.ResourceList(nil)".to_owned(),
            Some(c) => {
                let items: Vec<String> = c
                    .keys()
                    .map(|k| format!("{}:resource.Quantity{{...}}", crate::go_quote(k)))
                    .collect();
                format!("core.ResourceList{{{}}}", items.join(", "))
            }
        };
        errs.push(Error::not_supported(
            &sp.child("capacity"),
            BadValue::Raw(rendered),
            &["storage"],
        ));
    }
    for (name, q) in capacity.into_iter().flatten() {
        let p = sp.child("capacity").key(name);
        if quantity(&mut errs, &p, q).is_some_and(|v| v <= 0.0) {
            errs.push(Error::invalid(
                &p,
                BadValue::Raw(super::util::quantity_text(q)),
                "must be greater than zero",
            ));
        }
    }
    let class = str_or_empty(spec, "storageClassName");
    if !class.is_empty() {
        dns1123_subdomain(&mut errs, &sp.child("storageClassName"), class);
    }
    volume_mode(spec, &sp, &mut errs);
    let policy = str_or_empty(spec, "persistentVolumeReclaimPolicy");
    if !policy.is_empty() && !RECLAIM_POLICIES.contains(&policy) {
        errs.push(Error::not_supported(
            &sp.child("persistentVolumeReclaimPolicy"),
            policy,
            RECLAIM_POLICIES,
        ));
    }
    let mut sources = 0;
    for key in PV_SOURCES {
        let Some(src) = spec.get(*key).filter(|s| !s.is_null()) else {
            continue;
        };
        if sources > 0 {
            errs.push(Error::forbidden(
                &sp.child(key),
                "may not specify more than 1 volume type",
            ));
        } else {
            sources += 1;
            validate_source(key, src, &sp.child(key), &mut errs);
        }
    }
    if sources == 0 {
        errs.push(Error::required(&sp, "must specify a volume type"));
    }
    if let Some(affinity) = spec.get("nodeAffinity").filter(|a| !a.is_null()) {
        let ap = sp.child("nodeAffinity");
        match affinity.get("required").filter(|r| !r.is_null()) {
            Some(required) => node_selector(required, &ap.child("required"), &mut errs),
            None => errs.push(Error::required(
                &ap.child("required"),
                "must specify required node constraints",
            )),
        }
    }
    if spec.get("local").is_some_and(|l| !l.is_null())
        && spec.get("nodeAffinity").is_none_or(Value::is_null)
    {
        errs.push(Error::required(
            &sp.child("nodeAffinity"),
            "Local volume requires node affinity",
        ));
    }
    let host_root = spec
        .pointer("/hostPath/path")
        .and_then(Value::as_str)
        .is_some_and(|p| !p.is_empty() && p.trim_end_matches('/').is_empty());
    if host_root && policy == "Recycle" {
        errs.push(Error::forbidden(
            &sp.child("persistentVolumeReclaimPolicy"),
            "may not be 'recycle' for a hostPath mount of '/'",
        ));
    }
    errs
}

/// Upstream's `ValidateNodeSelector` (required node affinity of a volume).
fn node_selector(selector: &Value, path: &Path, errs: &mut ErrorList) {
    let tp = path.child("nodeSelectorTerms");
    let terms = arr(selector, "nodeSelectorTerms");
    if terms.is_empty() {
        errs.push(Error::required(
            &tp,
            "must have at least one node selector term",
        ));
        return;
    }
    for (i, term) in terms.iter().enumerate() {
        let p = tp.index(i);
        for (j, req) in arr(term, "matchExpressions").iter().enumerate() {
            node_selector_requirement(req, &p.child("matchExpressions").index(j), errs);
        }
        for (j, req) in arr(term, "matchFields").iter().enumerate() {
            node_field_requirement(req, &p.child("matchFields").index(j), errs);
        }
    }
}

fn node_selector_requirement(req: &Value, path: &Path, errs: &mut ErrorList) {
    let values = strs(req, "values");
    let op = str_or_empty(req, "operator");
    let vp = path.child("values");
    match op {
        "In" | "NotIn" if values.is_empty() => {
            errs.push(Error::required(
                &vp,
                "must be specified when `operator` is 'In' or 'NotIn'",
            ));
        }
        "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(Error::forbidden(
            &vp,
            "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        )),
        "Gt" | "Lt" if values.len() != 1 => errs.push(Error::required(
            &vp,
            "must be specified single value when `operator` is 'Lt' or 'Gt'",
        )),
        "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
        other => errs.push(Error::invalid(
            &path.child("operator"),
            other,
            "not a valid selector operator",
        )),
    }
    errs.extend(validate_label_name(
        str_or_empty(req, "key"),
        &path.child("key"),
    ));
    for (i, v) in values.iter().enumerate() {
        for msg in is_valid_label_value(v) {
            errs.push(Error::invalid(&vp.index(i), *v, &msg));
        }
    }
}

fn node_field_requirement(req: &Value, path: &Path, errs: &mut ErrorList) {
    let values = strs(req, "values");
    match str_or_empty(req, "operator") {
        "In" | "NotIn" => {
            if values.len() != 1 {
                errs.push(Error::required(
                    &path.child("values"),
                    "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
                ));
            }
        }
        other => errs.push(Error::invalid(
            &path.child("operator"),
            other,
            "not a valid selector operator",
        )),
    }
    let key = str_or_empty(req, "key");
    if key == "metadata.name" {
        for (i, v) in values.iter().enumerate() {
            for msg in is_dns1123_subdomain(v) {
                errs.push(Error::invalid(&path.child("values").index(i), *v, &msg));
            }
        }
    } else {
        errs.push(Error::invalid(
            &path.child("key"),
            key,
            "not a valid field selector key",
        ));
    }
}

fn sources_of(spec: Option<&Value>) -> Vec<(&'static str, Option<&Value>)> {
    PV_SOURCES
        .iter()
        .map(|k| (*k, spec.and_then(|s| s.get(*k)).filter(|v| !v.is_null())))
        .collect()
}

/// Upstream's `ValidatePersistentVolumeUpdate`: the volume source and mode
/// are fixed after creation; node affinity can only be added.
pub(super) fn validate_pv_update(new: &Value, old: &Value) -> ErrorList {
    let mut errs = validate_pv(new);
    let (ns, os) = (new.get("spec"), old.get("spec"));
    if sources_of(ns) != sources_of(os) {
        errs.push(Error::forbidden(
            &Path::new("spec").child("persistentvolumesource"),
            "spec.persistentvolumesource is immutable after creation",
        ));
    }
    let mode = |s: Option<&Value>| {
        s.and_then(|s| s.get("volumeMode"))
            .filter(|v| !v.is_null())
            .cloned()
    };
    if mode(ns) != mode(os) {
        errs.push(Error::invalid(
            &Path::new("volumeMode"),
            mode(ns).as_ref().map_or(BadValue::Null, bad),
            FIELD_IMMUTABLE,
        ));
    }
    let affinity = |s: Option<&Value>| {
        s.and_then(|s| s.get("nodeAffinity"))
            .filter(|v| !v.is_null())
            .cloned()
    };
    if affinity(os).is_some() && affinity(ns) != affinity(os) {
        errs.push(Error::invalid(
            &Path::new("nodeAffinity"),
            affinity(ns).as_ref().map_or(BadValue::Null, bad),
            FIELD_IMMUTABLE,
        ));
    }
    errs
}

/// Upstream's `ValidatePersistentVolumeStatusUpdate` checks only the
/// metadata, which the server does.
pub(super) fn validate_pv_status(_pv: &Value) -> ErrorList {
    ErrorList::new()
}

#[cfg(test)]
#[path = "storage_tests.rs"]
mod tests;
