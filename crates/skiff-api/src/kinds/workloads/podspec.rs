//! Validation of pod specs and pod templates (`ValidatePodSpec`,
//! `ValidateVolumes`, `ValidateTolerations`, `ValidatePodTemplateSpec`).

use std::collections::BTreeSet;

use serde_json::Value;

use super::containers::{
    ContainerKind, dns_label, label_value_errors, nonnegative, validate_containers,
    validate_resources,
};
use super::defaults::volume_sources;
use super::json::{has, int_of, list_of, str_of, string_map};
use crate::field::{BadValue, Error, ErrorList, Path};
use crate::quantity;
use crate::validation::{
    is_dns1123_subdomain, validate_annotations, validate_label_name, validate_labels,
};

/// Upstream's `fileModeErrorMsg`.
const FILE_MODE_ERROR: &str = "must be a number between 0 and 0777 (octal), both inclusive";

/// Upstream's `ValidatePodSpec`.
pub(super) fn validate_pod_spec(spec: &Value, path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let (volumes, verrs) = validate_volumes(list_of(spec, "volumes"), &path.child("volumes"));
    errs.extend(verrs);
    let mut names = BTreeSet::new();
    for (key, kind) in [
        ("containers", ContainerKind::Regular),
        ("initContainers", ContainerKind::Init),
        ("ephemeralContainers", ContainerKind::Ephemeral),
    ] {
        errs.extend(validate_containers(
            list_of(spec, key),
            kind,
            &volumes,
            &mut names,
            &path.child(key),
        ));
    }
    match str_of(spec, "restartPolicy") {
        "Always" | "OnFailure" | "Never" => {}
        "" => errs.push(Error::required(&path.child("restartPolicy"), "")),
        other => errs.push(Error::not_supported(
            &path.child("restartPolicy"),
            other,
            &["Always", "OnFailure", "Never"],
        )),
    }
    match str_of(spec, "dnsPolicy") {
        "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None" => {}
        "" => errs.push(Error::required(&path.child("dnsPolicy"), "")),
        other => errs.push(Error::not_supported(
            &path.child("dnsPolicy"),
            other,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        )),
    }
    errs.extend(validate_labels(
        &string_map(spec.get("nodeSelector")),
        &path.child("nodeSelector"),
    ));
    for key in ["serviceAccountName", "nodeName", "priorityClassName"] {
        let v = str_of(spec, key);
        if !v.is_empty() {
            for m in is_dns1123_subdomain(v) {
                errs.push(Error::invalid(&path.child(key), v, &m));
            }
        }
    }
    if let Some(n) = int_of(spec, "activeDeadlineSeconds")
        && !(1..=i64::from(u32::MAX)).contains(&n)
    {
        errs.push(Error::invalid(
            &path.child("activeDeadlineSeconds"),
            n,
            "must be between 1 and 4294967295, inclusive",
        ));
    }
    nonnegative(spec, "terminationGracePeriodSeconds", path, &mut errs);
    for key in ["hostname", "subdomain"] {
        let v = str_of(spec, key);
        if !v.is_empty() {
            errs.extend(dns_label(v, &path.child(key)));
        }
    }
    errs.extend(validate_tolerations(
        list_of(spec, "tolerations"),
        &path.child("tolerations"),
    ));
    if let Some(overhead) = spec.get("overhead") {
        for (name, q) in overhead_list(overhead) {
            if q.is_negative() {
                errs.push(Error::invalid(
                    &path.child("overhead").key(&name),
                    q.to_string(),
                    "must be greater than or equal to 0",
                ));
            }
        }
    }
    if let Some(r) = spec.get("resources").filter(|v| !v.is_null()) {
        errs.extend(validate_resources(r, &path.child("resources")));
    }
    errs
}

fn overhead_list(v: &Value) -> Vec<(String, quantity::Quantity)> {
    super::containers::resource_list(Some(v))
}

/// Upstream's `ValidateVolumes`: the names of the volumes and the errors.
fn validate_volumes(volumes: &[Value], path: &Path) -> (BTreeSet<String>, ErrorList) {
    let mut errs = ErrorList::new();
    let mut names = BTreeSet::new();
    for (i, vol) in volumes.iter().enumerate() {
        let p = path.index(i);
        errs.extend(validate_volume_source(vol, &p));
        let name = str_of(vol, "name");
        if name.is_empty() {
            errs.push(Error::required(&p.child("name"), ""));
        } else {
            errs.extend(dns_label(name, &p.child("name")));
        }
        if names.contains(name) {
            errs.push(Error::duplicate(&p.child("name"), name));
        } else {
            names.insert(name.to_owned());
        }
    }
    (names, errs)
}

fn validate_volume_source(vol: &Value, p: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let Some(map) = vol.as_object() else {
        errs.push(Error::required(p, "must specify a volume type"));
        return errs;
    };
    let sources = volume_sources(map);
    let Some(first) = sources.first() else {
        errs.push(Error::required(p, "must specify a volume type"));
        return errs;
    };
    for extra in &sources[1..] {
        errs.push(Error::forbidden(
            &p.child(extra),
            "may not specify more than 1 volume type",
        ));
    }
    let src = &map[*first];
    let sp = p.child(first);
    let required = |key: &str, errs: &mut ErrorList| {
        if str_of(src, key).is_empty() {
            errs.push(Error::required(&sp.child(key), ""));
        }
    };
    match *first {
        "hostPath" => {
            required("path", &mut errs);
            let t = str_of(src, "type");
            const TYPES: &[&str] = &[
                "",
                "BlockDevice",
                "CharDevice",
                "Directory",
                "DirectoryOrCreate",
                "File",
                "FileOrCreate",
                "Socket",
            ];
            if !TYPES.contains(&t) {
                errs.push(Error::not_supported(&sp.child("type"), t, TYPES));
            }
        }
        "secret" => required("secretName", &mut errs),
        "configMap" => required("name", &mut errs),
        "persistentVolumeClaim" => required("claimName", &mut errs),
        "nfs" => {
            required("server", &mut errs);
            required("path", &mut errs);
        }
        "csi" => required("driver", &mut errs),
        "emptyDir" => {
            if let Some(q) = src
                .get("sizeLimit")
                .and_then(|v| quantity::from_json(v).ok())
                && q.is_negative()
            {
                errs.push(Error::invalid(
                    &sp.child("sizeLimit"),
                    q.to_string(),
                    "must be greater than or equal to 0",
                ));
            }
        }
        _ => {}
    }
    if matches!(*first, "secret" | "configMap" | "downwardAPI" | "projected")
        && let Some(mode) = int_of(src, "defaultMode")
        && !(0..=0o777).contains(&mode)
    {
        errs.push(Error::invalid(
            &sp.child("defaultMode"),
            mode,
            FILE_MODE_ERROR,
        ));
    }
    errs
}

/// Upstream's `ValidateTolerations`.
pub(super) fn validate_tolerations(tolerations: &[Value], path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    for (i, t) in tolerations.iter().enumerate() {
        let p = path.index(i);
        let key = str_of(t, "key");
        let operator = str_of(t, "operator");
        let effect = str_of(t, "effect");
        let value = str_of(t, "value");
        if !key.is_empty() {
            errs.extend(validate_label_name(key, &p.child("key")));
        }
        if key.is_empty() && operator != "Exists" {
            errs.push(Error::invalid(
                &p.child("operator"),
                operator,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if has(t, "tolerationSeconds") && effect != "NoExecute" {
            errs.push(Error::invalid(
                &p.child("effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match operator {
            "Equal" | "" => {
                if let Some(msg) = label_value_errors(value) {
                    errs.push(Error::invalid(&p.child("operator"), value, &msg));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.push(Error::invalid(
                        &p.child("operator"),
                        BadValue::Raw(super::render::toleration(t)),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(Error::not_supported(
                &p.child("operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute")
        {
            errs.push(Error::not_supported(
                &p.child("effect"),
                effect,
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            ));
        }
    }
    errs
}

/// Upstream's `ValidatePodTemplateSpec` on `template` at `path`.
pub(super) fn validate_template(template: Option<&Value>, path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let Some(t) = template.filter(|t| !t.is_null()) else {
        errs.push(Error::required(path, ""));
        return errs;
    };
    let meta = t.get("metadata");
    errs.extend(validate_labels(
        &string_map(meta.and_then(|m| m.get("labels"))),
        &path.child("labels"),
    ));
    errs.extend(validate_annotations(
        &string_map(meta.and_then(|m| m.get("annotations"))),
        &path.child("annotations"),
    ));
    let spec = t.get("spec").cloned().unwrap_or(Value::Null);
    errs.extend(validate_pod_spec(&spec, &path.child("spec")));
    if !list_of(&spec, "ephemeralContainers").is_empty() {
        errs.push(Error::forbidden(
            &path.child("spec").child("ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
    errs
}
