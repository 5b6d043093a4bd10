//! Validation of containers (`validateContainerCommon` and friends of
//! upstream's `pkg/apis/core/validation`): names, images, ports, env,
//! volume mounts, resources, probes and lifecycle hooks.

use std::collections::BTreeSet;

use serde_json::Value;

use super::env::{validate_env, validate_env_from};
use super::json::{has, int_of, list_of, semantic_eq, str_of};
use super::resources::validate_resources;
use super::volumes::local_descending_path;
use crate::field::{Error, ErrorList, Path};
use crate::validation::{is_dns1123_label, is_valid_label_value};

/// Which list a container belongs to; the rules differ slightly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ContainerKind {
    Regular,
    Init,
    Ephemeral,
}

/// Upstream's `ValidateNonnegativeField`.
pub(super) fn nonnegative(v: &Value, key: &str, path: &Path, errs: &mut ErrorList) {
    if let Some(n) = int_of(v, key)
        && n < 0
    {
        errs.push(Error::invalid(
            &path.child(key),
            n,
            "must be greater than or equal to 0",
        ));
    }
}

/// Upstream's `ValidateDNS1123Label` as field errors.
pub(super) fn dns_label(value: &str, path: &Path) -> ErrorList {
    is_dns1123_label(value)
        .iter()
        .map(|m| Error::invalid(path, value, m))
        .collect::<Vec<_>>()
        .into()
}

/// Upstream's `IsValidPortNum`.
pub(super) fn port_num_errors(port: i64) -> Vec<String> {
    if (1..=65535).contains(&port) {
        Vec::new()
    } else {
        vec!["must be between 1 and 65535, inclusive".to_owned()]
    }
}

/// Upstream's `IsValidPortName` (an IANA service name).
pub(super) fn port_name_errors(name: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if name.len() > 15 {
        errs.push("must be no more than 15 characters".to_owned());
    }
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".into());
    }
    if name.contains("--") {
        errs.push("must not contain consecutive hyphens".into());
    }
    if name.starts_with('-') || name.ends_with('-') {
        errs.push("must not begin or end with a hyphen".into());
    }
    errs
}

/// Upstream's `ValidatePortNumOrName` for an int-or-string port.
pub(super) fn port_num_or_name(v: Option<&Value>, path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    match v {
        Some(Value::Number(n)) => {
            let port = n.as_i64().unwrap_or(-1);
            for m in port_num_errors(port) {
                errs.push(Error::invalid(path, port, &m));
            }
        }
        Some(Value::String(s)) => {
            for m in port_name_errors(s) {
                errs.push(Error::invalid(path, s.as_str(), &m));
            }
        }
        _ => errs.push(Error::invalid(
            path,
            0i64,
            "must be between 1 and 65535, inclusive",
        )),
    }
    errs
}

/// Validates one list of containers; `names` carries the names already
/// used by earlier lists (regular before init before ephemeral).
pub(super) fn validate_containers(
    list: &[Value],
    kind: ContainerKind,
    volumes: &BTreeSet<String>,
    names: &mut BTreeSet<String>,
    path: &Path,
) -> ErrorList {
    let mut errs = ErrorList::new();
    if list.is_empty() && kind == ContainerKind::Regular {
        errs.push(Error::required(path, ""));
        return errs;
    }
    // Ephemeral containers may only target regular and init containers.
    let targets = names.clone();
    for (i, c) in list.iter().enumerate() {
        let p = path.index(i);
        errs.extend(validate_common(c, volumes, &p));
        let name = str_of(c, "name");
        let restart = c.get("restartPolicy").filter(|v| !v.is_null());
        if kind == ContainerKind::Init
            && let Some(r) = restart
        {
            let r = r.as_str().unwrap_or("");
            if r != "Always" {
                errs.push(Error::not_supported(
                    &p.child("restartPolicy"),
                    r,
                    &["Always"],
                ));
            }
        }
        if names.contains(name) {
            errs.push(Error::duplicate(&p.child("name"), name));
        } else if !name.is_empty() || kind == ContainerKind::Regular {
            names.insert(name.to_owned());
        }
        match kind {
            ContainerKind::Regular => {
                errs.extend(validate_probes_and_hooks(c, &p));
                if restart.is_some() {
                    errs.push(Error::forbidden(
                        &p.child("restartPolicy"),
                        "may not be set for non-init containers",
                    ));
                }
            }
            ContainerKind::Init => {
                // Init containers run one by one: conflicts are per container
                // (and reported at index 0, as upstream does).
                errs.extend(host_port_conflicts(std::slice::from_ref(c), path));
                if restart.and_then(Value::as_str) == Some("Always") {
                    errs.extend(validate_probes_and_hooks(c, &p));
                } else {
                    for key in [
                        "lifecycle",
                        "livenessProbe",
                        "readinessProbe",
                        "startupProbe",
                    ] {
                        if has(c, key) {
                            errs.push(Error::forbidden(
                                &p.child(key),
                                "may not be set for init containers without restartPolicy=Always",
                            ));
                        }
                    }
                }
            }
            ContainerKind::Ephemeral => errs.extend(ephemeral_rules(c, &targets, &p)),
        }
    }
    if kind == ContainerKind::Regular {
        errs.extend(host_port_conflicts(list, path));
    }
    errs
}

/// Fields an ephemeral container may not set, in upstream's field order.
const EPHEMERAL_FORBIDDEN: &[&str] = &[
    "ports",
    "resources",
    "resizePolicy",
    "restartPolicy",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
];

fn ephemeral_rules(c: &Value, targets: &BTreeSet<String>, p: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let image = str_of(c, "image");
    if image.trim() != image {
        errs.push(Error::invalid(
            &p.child("image"),
            image,
            "must not have leading or trailing whitespace",
        ));
    }
    let target = str_of(c, "targetContainerName");
    if !target.is_empty() && !targets.contains(target) {
        errs.push(Error::not_found(&p.child("targetContainerName"), target));
    }
    for key in EPHEMERAL_FORBIDDEN {
        if c.get(*key).is_some_and(|v| !semantic_eq(Some(v), None)) {
            errs.push(Error::forbidden(
                &p.child(key),
                "cannot be set for an Ephemeral Container",
            ));
        }
    }
    for (i, m) in list_of(c, "volumeMounts").iter().enumerate() {
        for key in ["subPath", "subPathExpr"] {
            if !str_of(m, key).is_empty() {
                errs.push(Error::forbidden(
                    &p.child("volumeMounts").index(i).child(key),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
    }
    errs
}

/// Upstream's `AccumulateUniqueHostPorts` over `containers`.
fn host_port_conflicts(containers: &[Value], path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let mut seen = BTreeSet::new();
    for (ci, c) in containers.iter().enumerate() {
        for (pi, port) in list_of(c, "ports").iter().enumerate() {
            let host = int_of(port, "hostPort").unwrap_or(0);
            if host == 0 {
                continue;
            }
            let key = format!(
                "{}/{}/{host}",
                str_of(port, "protocol"),
                str_of(port, "hostIP")
            );
            if seen.contains(&key) {
                let hp = path.index(ci).child("ports").index(pi).child("hostPort");
                errs.push(Error::duplicate(&hp, key.as_str()));
            } else {
                seen.insert(key);
            }
        }
    }
    errs
}

/// Probes and lifecycle hooks of regular containers and sidecars.
fn validate_probes_and_hooks(c: &Value, p: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    if let Some(lc) = c.get("lifecycle").filter(|v| !v.is_null()) {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = lc.get(hook).filter(|v| !v.is_null()) {
                errs.extend(validate_handler(h, &p.child("lifecycle").child(hook)));
            }
        }
    }
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(probe) = c.get(key).filter(|v| !v.is_null()) else {
            continue;
        };
        let pp = p.child(key);
        errs.extend(validate_probe(probe, &pp));
        if key == "readinessProbe" {
            if let Some(n) = int_of(probe, "terminationGracePeriodSeconds") {
                errs.push(Error::invalid(
                    &pp.child("terminationGracePeriodSeconds"),
                    n,
                    "must not be set for readinessProbes",
                ));
            }
        } else if let Some(n) = int_of(probe, "successThreshold").filter(|n| *n != 1) {
            errs.push(Error::invalid(
                &pp.child("successThreshold"),
                n,
                "must be 1",
            ));
        }
    }
    errs
}

fn validate_common(c: &Value, volumes: &BTreeSet<String>, p: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let name = str_of(c, "name");
    if name.is_empty() {
        errs.push(Error::required(&p.child("name"), ""));
    } else {
        errs.extend(dns_label(name, &p.child("name")));
    }
    if str_of(c, "image").is_empty() {
        errs.push(Error::required(&p.child("image"), ""));
    }
    match str_of(c, "terminationMessagePolicy") {
        "File" | "FallbackToLogsOnError" => {}
        "" => errs.push(Error::required(&p.child("terminationMessagePolicy"), "")),
        other => errs.push(Error::not_supported(
            &p.child("terminationMessagePolicy"),
            other,
            &["File", "FallbackToLogsOnError"],
        )),
    }
    errs.extend(validate_ports(list_of(c, "ports"), &p.child("ports")));
    errs.extend(validate_env(list_of(c, "env"), &p.child("env")));
    errs.extend(validate_env_from(
        list_of(c, "envFrom"),
        &p.child("envFrom"),
    ));
    errs.extend(validate_mounts(c, volumes, &p.child("volumeMounts")));
    match str_of(c, "imagePullPolicy") {
        "Always" | "IfNotPresent" | "Never" => {}
        "" => errs.push(Error::required(&p.child("imagePullPolicy"), "")),
        other => errs.push(Error::not_supported(
            &p.child("imagePullPolicy"),
            other,
            &["Always", "IfNotPresent", "Never"],
        )),
    }
    if let Some(r) = c.get("resources") {
        errs.extend(validate_resources(r, &p.child("resources")));
    }
    errs
}

fn validate_ports(ports: &[Value], path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = path.index(i);
        let name = str_of(port, "name");
        if !name.is_empty() {
            let msgs = port_name_errors(name);
            if !msgs.is_empty() {
                for m in msgs {
                    errs.push(Error::invalid(&p.child("name"), name, &m));
                }
            } else if !names.insert(name) {
                errs.push(Error::duplicate(&p.child("name"), name));
            }
        }
        match int_of(port, "containerPort").unwrap_or(0) {
            0 => errs.push(Error::required(&p.child("containerPort"), "")),
            n => {
                for m in port_num_errors(n) {
                    errs.push(Error::invalid(&p.child("containerPort"), n, &m));
                }
            }
        }
        let host = int_of(port, "hostPort").unwrap_or(0);
        if host != 0 {
            for m in port_num_errors(host) {
                errs.push(Error::invalid(&p.child("hostPort"), host, &m));
            }
        }
        match str_of(port, "protocol") {
            "TCP" | "UDP" | "SCTP" => {}
            "" => errs.push(Error::required(&p.child("protocol"), "")),
            other => errs.push(Error::not_supported(
                &p.child("protocol"),
                other,
                &["SCTP", "TCP", "UDP"],
            )),
        }
    }
    errs
}

fn validate_mounts(c: &Value, volumes: &BTreeSet<String>, path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let mounts = list_of(c, "volumeMounts");
    let privileged = c
        .get("securityContext")
        .and_then(|s| s.get("privileged"))
        .and_then(Value::as_bool)
        == Some(true);
    let mut points = BTreeSet::new();
    for (i, m) in mounts.iter().enumerate() {
        let p = path.index(i);
        let name = str_of(m, "name");
        if name.is_empty() {
            errs.push(Error::required(&p.child("name"), ""));
        }
        if !volumes.contains(name) {
            errs.push(Error::not_found(&p.child("name"), name));
        }
        let mount_path = str_of(m, "mountPath");
        if mount_path.is_empty() {
            errs.push(Error::required(&p.child("mountPath"), ""));
        }
        if !points.insert(mount_path) {
            errs.push(Error::invalid(
                &p.child("mountPath"),
                mount_path,
                "must be unique",
            ));
        }
        let sub = str_of(m, "subPath");
        if !sub.is_empty() {
            errs.extend(local_descending_path(sub, &path.child("subPath")));
        }
        let expr = str_of(m, "subPathExpr");
        if !expr.is_empty() {
            if !sub.is_empty() {
                errs.push(Error::invalid(
                    &p.child("subPathExpr"),
                    expr,
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            errs.extend(local_descending_path(expr, &path.child("subPathExpr")));
        }
        if let Some(mode) = m.get("mountPropagation").and_then(Value::as_str) {
            let mp = path.child("mountPropagation");
            const MODES: &[&str] = &["Bidirectional", "HostToContainer", "None"];
            if !MODES.contains(&mode) {
                errs.push(Error::not_supported(&mp, mode, MODES));
            }
            if mode == "Bidirectional" && !privileged {
                errs.push(Error::forbidden(
                    &mp,
                    "Bidirectional mount propagation is available only to privileged containers",
                ));
            }
        }
    }
    errs
}

fn validate_probe(probe: &Value, p: &Path) -> ErrorList {
    let mut errs = validate_handler(probe, p);
    for key in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        nonnegative(probe, key, p, &mut errs);
    }
    if let Some(n) = int_of(probe, "terminationGracePeriodSeconds")
        && n <= 0
    {
        errs.push(Error::invalid(
            &p.child("terminationGracePeriodSeconds"),
            n,
            "must be greater than 0",
        ));
    }
    errs
}

/// Upstream's `validateHandler`: exactly one handler type.
fn validate_handler(h: &Value, p: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let mut count = 0;
    for key in ["exec", "httpGet", "tcpSocket", "grpc", "sleep"] {
        let Some(action) = h.get(key).filter(|v| !v.is_null()) else {
            continue;
        };
        let kp = p.child(key);
        if count > 0 {
            errs.push(Error::forbidden(
                &kp,
                "may not specify more than 1 handler type",
            ));
            continue;
        }
        count += 1;
        match key {
            "exec" if list_of(action, "command").is_empty() => {
                errs.push(Error::required(&kp.child("command"), ""));
            }
            "httpGet" => {
                if str_of(action, "path").is_empty() {
                    errs.push(Error::required(&kp.child("path"), ""));
                }
                errs.extend(port_num_or_name(action.get("port"), &kp.child("port")));
                let scheme = str_of(action, "scheme");
                if scheme != "HTTP" && scheme != "HTTPS" {
                    errs.push(Error::not_supported(
                        &kp.child("scheme"),
                        scheme,
                        &["HTTP", "HTTPS"],
                    ));
                }
            }
            "tcpSocket" => errs.extend(port_num_or_name(action.get("port"), &kp.child("port"))),
            "grpc" => {
                let port = int_of(action, "port").unwrap_or(0);
                for m in port_num_errors(port) {
                    errs.push(Error::invalid(&kp.child("port"), port, &m));
                }
            }
            _ => {}
        }
    }
    if count == 0 {
        errs.push(Error::required(p, "must specify a handler type"));
    }
    errs
}

/// Label values of a toleration or selector, joined like upstream does.
pub(super) fn label_value_errors(value: &str) -> Option<String> {
    let errs = is_valid_label_value(value);
    (!errs.is_empty()).then(|| errs.join(";"))
}
