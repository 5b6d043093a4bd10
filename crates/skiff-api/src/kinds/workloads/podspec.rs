//! Validation of pod specs and pod templates (`ValidatePodSpec`,
//! `ValidateVolumes`, `ValidateTolerations`, `ValidatePodTemplateSpec`).

use std::collections::BTreeSet;

use serde_json::Value;

use super::containers::{ContainerKind, dns_label, label_value_errors, validate_containers};
use super::json::{has, int_of, list_of, str_of, string_map};
use super::resources::validate_resources;
use crate::field::{Error, ErrorList, Path};
use crate::validation::{
    is_dns1123_subdomain, is_qualified_name, validate_annotations, validate_label_name,
    validate_labels,
};

/// Upstream's `ValidatePodSpec`; `is_pod` for a pod's own spec (not a
/// template's).
pub(super) fn validate_pod_spec(spec: &Value, path: &Path, is_pod: bool) -> ErrorList {
    let mut errs = ErrorList::new();
    if !has(spec, "terminationGracePeriodSeconds") {
        errs.push(Error::required(
            &path.child("terminationGracePeriodSeconds"),
            "",
        ));
    }
    let (volumes, verrs) =
        super::volumes::validate_volumes(list_of(spec, "volumes"), &path.child("volumes"));
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
    errs.extend(host_network_ports(spec, path, is_pod));
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
    errs.extend(validate_dns_config(spec, &path.child("dnsConfig")));
    errs.extend(validate_scheduling_gates(
        list_of(spec, "schedulingGates"),
        &path.child("schedulingGates"),
    ));
    for key in ["serviceAccountName", "nodeName"] {
        subdomain(spec, key, path, &mut errs);
    }
    if let Some(n) = int_of(spec, "activeDeadlineSeconds")
        && !(1..=i64::from(i32::MAX)).contains(&n)
    {
        errs.push(Error::invalid(
            &path.child("activeDeadlineSeconds"),
            n,
            "must be between 1 and 2147483647, inclusive",
        ));
    }
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
    subdomain(spec, "priorityClassName", path, &mut errs);
    if let Some(overhead) = spec.get("overhead").filter(|v| !v.is_null()) {
        // Upstream reuses the container rules with the overhead as limits.
        let as_limits = serde_json::json!({ "limits": overhead });
        errs.extend(validate_resources(&as_limits, &path.child("overhead")));
    }
    if is_pod {
        for key in ["containers", "initContainers"] {
            for (i, c) in list_of(spec, key).iter().enumerate() {
                let image = str_of(c, "image");
                if image.trim() != image {
                    errs.push(Error::invalid(
                        &path.child(key).index(i).child("image"),
                        image,
                        "must not have leading or trailing whitespace",
                    ));
                }
            }
        }
    }
    errs
}

fn subdomain(spec: &Value, key: &str, path: &Path, errs: &mut ErrorList) {
    let v = str_of(spec, key);
    if !v.is_empty() {
        for m in is_dns1123_subdomain(v) {
            errs.push(Error::invalid(&path.child(key), v, &m));
        }
    }
}

/// With `hostNetwork`, a host port must equal its container port (in
/// templates 0 is allowed too: it is defaulted when the pod is created).
fn host_network_ports(spec: &Value, path: &Path, is_pod: bool) -> ErrorList {
    let mut errs = ErrorList::new();
    if spec.get("hostNetwork").and_then(Value::as_bool) != Some(true) {
        return errs;
    }
    for (i, c) in list_of(spec, "containers").iter().enumerate() {
        for (j, port) in list_of(c, "ports").iter().enumerate() {
            let hp = int_of(port, "hostPort").unwrap_or(0);
            let cp = int_of(port, "containerPort").unwrap_or(0);
            if (is_pod || hp != 0) && hp != cp {
                let p = path.child("containers").index(i).child("ports").index(j);
                errs.push(Error::invalid(
                    &p.child("hostPort"),
                    hp,
                    "must match `containerPort` when `hostNetwork` is true",
                ));
            }
        }
    }
    errs
}

/// Upstream's `validatePodDNSConfig`.
fn validate_dns_config(spec: &Value, path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let config = spec.get("dnsConfig").filter(|v| !v.is_null());
    let nameservers = config.map_or(&[][..], |c| list_of(c, "nameservers"));
    if str_of(spec, "dnsPolicy") == "None" {
        if config.is_none() {
            errs.push(Error::required(
                path,
                "must provide `dnsConfig` when `dnsPolicy` is None",
            ));
            return errs;
        }
        if nameservers.is_empty() {
            errs.push(Error::required(
                &path.child("nameservers"),
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            ));
            return errs;
        }
    }
    let Some(config) = config else {
        return errs;
    };
    let strings = |v: &[Value]| -> Vec<String> {
        v.iter()
            .map(|s| s.as_str().unwrap_or("").to_owned())
            .collect()
    };
    if nameservers.len() > 3 {
        errs.push(Error::invalid(
            &path.child("nameservers"),
            strings(nameservers),
            "must not have more than 3 nameservers",
        ));
    }
    for (i, ns) in nameservers.iter().enumerate() {
        let ip = ns.as_str().unwrap_or("");
        if ip.parse::<std::net::IpAddr>().is_err() {
            errs.push(Error::invalid(
                &path.child("nameservers").index(i),
                ip,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
    }
    let searches = list_of(config, "searches");
    if searches.len() > 32 {
        errs.push(Error::invalid(
            &path.child("searches"),
            strings(searches),
            "must not have more than 32 search paths",
        ));
    }
    if strings(searches).join(" ").len() > 2048 {
        errs.push(Error::invalid(
            &path.child("searches"),
            strings(searches),
            "must not have more than 2048 characters (including spaces) in the search list",
        ));
    }
    for (i, search) in searches.iter().enumerate() {
        let search = search.as_str().unwrap_or("");
        // RelaxedDNSSearchValidation (beta in v1.33): `.` and underscores
        // are allowed.
        if search == "." {
            continue;
        }
        let trimmed = search.strip_suffix('.').unwrap_or(search);
        let p = path.child("searches").index(i);
        if trimmed.len() > 253 {
            errs.push(Error::invalid(
                &p,
                trimmed,
                "must be no more than 253 characters",
            ));
        }
        if !subdomain_with_underscore(trimmed) {
            errs.push(Error::invalid(
                &p,
                trimmed,
                &crate::validation::regex_error(
                    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '_', '-' or '.', and must start and end with an alphanumeric character",
                    "_?[a-z0-9]([-_a-z0-9]*[a-z0-9])?(\\._?[a-z0-9]([-_a-z0-9]*[a-z0-9])?)*",
                    &["example.com"],
                ),
            ));
        }
    }
    for (i, option) in list_of(config, "options").iter().enumerate() {
        if str_of(option, "name").is_empty() {
            errs.push(Error::required(
                &path.child("options").index(i),
                "must not be empty",
            ));
        }
    }
    errs
}

/// `_?[a-z0-9]([-_a-z0-9]*[a-z0-9])?` joined by dots.
fn subdomain_with_underscore(s: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    s.split('.').all(|label| {
        let l = label.strip_prefix('_').unwrap_or(label).as_bytes();
        match (l.first(), l.last()) {
            (Some(&f), Some(&e)) => {
                alnum(f) && alnum(e) && l.iter().all(|&b| alnum(b) || b == b'-' || b == b'_')
            }
            _ => false,
        }
    })
}

/// Upstream's `validateSchedulingGates`: qualified names, no duplicates.
fn validate_scheduling_gates(gates: &[Value], path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let mut seen = BTreeSet::new();
    for (i, g) in gates.iter().enumerate() {
        let name = str_of(g, "name");
        for m in is_qualified_name(name) {
            errs.push(Error::invalid(&path.index(i), name, &m));
        }
        if !seen.insert(name) {
            errs.push(Error::duplicate(&path.index(i), name));
        }
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
                        value,
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
    errs.extend(validate_pod_spec(&spec, &path.child("spec"), false));
    if !list_of(&spec, "ephemeralContainers").is_empty() {
        errs.push(Error::forbidden(
            &path.child("spec").child("ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
    errs
}
