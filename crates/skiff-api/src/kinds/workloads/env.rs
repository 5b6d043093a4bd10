//! Validation of a container's environment (`ValidateEnv` and
//! `validateEnvVarValueFrom`).

use serde_json::Value;

use super::json::{has, str_of};
use crate::field::{Error, ErrorList, Path};
use crate::validation::is_qualified_name;

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

pub(super) fn validate_env(env: &[Value], path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    for (i, ev) in env.iter().enumerate() {
        let p = path.index(i);
        let name = str_of(ev, "name");
        if name.is_empty() {
            errs.push(Error::required(&p.child("name"), ""));
        } else if name.chars().any(|c| !(' '..='~').contains(&c) || c == '=') {
            // RelaxedEnvironmentVariableValidation is on by default in v1.33.
            errs.push(Error::invalid(
                &p.child("name"),
                name,
                "a valid environment variable name must consist only of printable ASCII characters other than '='",
            ));
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
            let kp = p.child(key);
            if str_of(sel, "key").is_empty() {
                errs.push(Error::required(&kp.child("key"), ""));
            }
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
