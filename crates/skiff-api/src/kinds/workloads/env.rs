//! Validation of a container's environment (`ValidateEnv` and
//! `validateEnvVarValueFrom`).

use serde_json::Value;

use super::json::{has, str_of};
use crate::field::{Error, ErrorList, Path};
use crate::validation::{
    DNS1123_SUBDOMAIN_MAX_LENGTH, is_dns1123_subdomain, is_qualified_name, max_len_error,
    name_is_dns_subdomain, regex_error,
};

/// Field paths a container's environment may read from the pod.
const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

/// Upstream's `IsRelaxedEnvVarName` (RelaxedEnvironmentVariableValidation
/// is on by default in v1.33) for a non-empty name.
fn env_name_errors(name: &str, p: &Path, errs: &mut ErrorList) {
    if name.chars().any(|c| !(' '..='~').contains(&c) || c == '=') {
        errs.push(Error::invalid(
            p,
            name,
            "a valid environment variable name must consist only of printable ASCII characters other than '='",
        ));
    }
}

/// Upstream's `ValidateEnv`.
pub(super) fn validate_env(env: &[Value], path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    for (i, ev) in env.iter().enumerate() {
        let p = path.index(i);
        let name = str_of(ev, "name");
        if name.is_empty() {
            errs.push(Error::required(&p.child("name"), ""));
        } else {
            env_name_errors(name, &p.child("name"), &mut errs);
        }
        if let Some(from) = ev.get("valueFrom").filter(|v| !v.is_null()) {
            errs.extend(validate_value_from(ev, from, &p.child("valueFrom")));
        }
    }
    errs
}

fn validate_value_from(ev: &Value, from: &Value, p: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let mut sources = 0;
    if let Some(f) = from.get("fieldRef").filter(|v| !v.is_null()) {
        sources += 1;
        errs.extend(validate_field_ref(f, ENV_FIELD_PATHS, &p.child("fieldRef")));
    }
    if has(from, "resourceFieldRef") {
        sources += 1;
    }
    for key in ["configMapKeyRef", "secretKeyRef"] {
        if let Some(sel) = from.get(key).filter(|v| !v.is_null()) {
            sources += 1;
            errs.extend(key_selector(sel, &p.child(key)));
        }
    }
    if sources == 0 {
        errs.push(Error::invalid(
            p,
            "",
            "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
        ));
    } else if !str_of(ev, "value").is_empty() {
        errs.push(Error::invalid(
            p,
            "",
            "may not be specified when `value` is not empty",
        ));
    } else if sources > 1 {
        errs.push(Error::invalid(
            p,
            "",
            "may not have more than one field specified at a time",
        ));
    }
    errs
}

/// Upstream's `validateConfigMapKeySelector` / `validateSecretKeySelector`.
fn key_selector(sel: &Value, p: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let name = str_of(sel, "name");
    for m in is_dns1123_subdomain(name) {
        errs.push(Error::invalid(&p.child("name"), name, &m));
    }
    let key = str_of(sel, "key");
    if key.is_empty() {
        errs.push(Error::required(&p.child("key"), ""));
    } else {
        for m in config_map_key_errors(key) {
            errs.push(Error::invalid(&p.child("key"), key, &m));
        }
    }
    errs
}

/// Upstream's `IsConfigMapKey`.
fn config_map_key_errors(key: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if key.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        errs.push(regex_error(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            "[-._a-zA-Z0-9]+",
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    if key == "." {
        errs.push("must not be '.'".into());
    } else if key == ".." {
        errs.push("must not be '..'".into());
    } else if key.starts_with("..") {
        errs.push("must not start with '..'".into());
    }
    errs
}

/// Upstream's `ValidateEnvFrom`.
pub(super) fn validate_env_from(list: &[Value], path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    for (i, ev) in list.iter().enumerate() {
        let p = path.index(i);
        let prefix = str_of(ev, "prefix");
        if !prefix.is_empty() {
            env_name_errors(prefix, &p.child("prefix"), &mut errs);
        }
        let mut sources = 0;
        for key in ["configMapRef", "secretRef"] {
            if let Some(r) = ev.get(key).filter(|v| !v.is_null()) {
                sources += 1;
                let name = str_of(r, "name");
                let np = p.child(key).child("name");
                if name.is_empty() {
                    errs.push(Error::required(&np, ""));
                } else {
                    // Upstream checks these names as prefixes.
                    for m in name_is_dns_subdomain(name, true) {
                        errs.push(Error::invalid(&np, name, &m));
                    }
                }
            }
        }
        if sources == 0 {
            errs.push(Error::invalid(
                path,
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            ));
        } else if sources > 1 {
            errs.push(Error::invalid(
                path,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
    errs
}

/// Upstream's `validateObjectFieldSelector` with the allowed `paths`.
pub(super) fn validate_field_ref(f: &Value, paths: &[&str], p: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let version = str_of(f, "apiVersion");
    let field_path = str_of(f, "fieldPath");
    if version.is_empty() {
        errs.push(Error::required(&p.child("apiVersion"), ""));
        return errs;
    }
    if field_path.is_empty() {
        errs.push(Error::required(&p.child("fieldPath"), ""));
        return errs;
    }
    if version != "v1" {
        errs.push(Error::invalid(
            &p.child("fieldPath"),
            field_path,
            &format!("error converting fieldPath: unsupported pod version: {version}"),
        ));
        return errs;
    }
    if let Some((base, rest)) = field_path.split_once('[') {
        let subscript = rest
            .strip_suffix(']')
            .map(|s| s.trim_matches('\''))
            .unwrap_or(rest);
        match base {
            "metadata.annotations" | "metadata.labels" => {
                let key = if base == "metadata.annotations" {
                    subscript.to_lowercase()
                } else {
                    subscript.to_owned()
                };
                for m in is_qualified_name(&key) {
                    errs.push(Error::invalid(p, key.as_str(), &m));
                }
            }
            _ => errs.push(Error::invalid(p, base, "does not support subscript")),
        }
    } else if !paths.contains(&field_path) {
        errs.push(Error::not_supported(
            &p.child("fieldPath"),
            field_path,
            paths,
        ));
    }
    errs
}
