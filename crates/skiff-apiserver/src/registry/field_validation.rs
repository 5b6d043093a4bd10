//! Server-side field validation (`fieldValidation=Ignore|Warn|Strict`, on
//! create, update and patch): fields of a request's object that its schema
//! does not have are errors (Strict), `Warning` headers (Warn, upstream's
//! default) or dropped silently (Ignore). The schemas are those of our OpenAPI
//! documents (`skiff_api::openapi`). kubectl's default `--validate=strict`
//! sends `Strict` once it sees the parameter in OpenAPI.

use http::{HeaderValue, Response};
use serde_json::Value;
use skiff_api::resources::ResourceInfo;
use skiff_api::status::ApiError;

use crate::request_info::query_value;
use crate::response::Body;

/// The `fieldValidation` directive of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    /// Drop unknown fields silently.
    Ignore,
    /// Drop unknown fields and say so in `Warning` headers (the default).
    Warn,
    /// Refuse the request with 400 BadRequest.
    Strict,
}

impl FieldValidation {
    /// The directive in `query`; `Warn` when absent, as upstream.
    pub fn from_query(query: Option<&str>) -> Result<FieldValidation, ApiError> {
        match query_value(query, "fieldValidation").as_deref() {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(ApiError::BadRequest(format!(
                "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {other:?}"
            ))),
        }
    }
}

/// Fields of `obj` (an object of `info`'s kind, as the client sent it or as a
/// patch produced it) that the kind's schema does not have, named as
/// upstream's strict decoder names them: `spec.replicass`,
/// `spec.template.spec.containers[0].imagee`.
pub fn unknown_fields(info: &ResourceInfo, obj: &Value) -> Vec<String> {
    skiff_api::openapi::unknown_fields(info.group, info.version, info.kind, obj)
}

/// Applies `mode` to `obj`: `Err` (400, upstream's strict decoding message)
/// under Strict when there are unknown fields, else the warnings to send
/// (empty under Ignore).
pub fn check(
    info: &ResourceInfo,
    obj: &Value,
    duplicates: &[String],
    mode: FieldValidation,
) -> Result<Vec<String>, ApiError> {
    if mode == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    // Duplicates first, then unknown fields, as upstream lists them.
    let problems: Vec<String> = duplicates
        .iter()
        .cloned()
        .chain(
            unknown_fields(info, obj)
                .iter()
                .map(|path| format!("unknown field {path:?}")),
        )
        .collect();
    if mode == FieldValidation::Strict && !problems.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: strict decoding error: {}",
            problems.join(", "),
            kind = info.kind,
            version = info.version,
        )));
    }
    Ok(problems)
}

/// Adds one `Warning: 299 - "<text>"` header per warning.
pub fn add_warnings(resp: &mut Response<Body>, warnings: &[String]) {
    for warning in warnings {
        let escaped = warning.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(value) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            resp.headers_mut().append(http::header::WARNING, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_warn_ignore() {
        let info = skiff_api::resources::by_gvk("apps", "v1", "Deployment").unwrap();
        let obj = serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "web" }, "spec": { "replicass": 3 },
        });
        assert_eq!(unknown_fields(info, &obj), ["spec.replicass"]);
        let err = check(info, &obj, &[], FieldValidation::Strict).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Deployment in version \"v1\" cannot be handled as a Deployment: \
             strict decoding error: unknown field \"spec.replicass\""
        );
        assert_eq!(
            check(info, &obj, &[], FieldValidation::Warn).unwrap(),
            ["unknown field \"spec.replicass\""]
        );
        assert!(
            check(info, &obj, &[], FieldValidation::Ignore)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            FieldValidation::from_query(Some("fieldValidation=Strict")).unwrap(),
            FieldValidation::Strict
        );
        assert_eq!(
            FieldValidation::from_query(None).unwrap(),
            FieldValidation::Warn
        );
        assert!(FieldValidation::from_query(Some("fieldValidation=strict")).is_err());
    }
}
