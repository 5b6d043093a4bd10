//! Server-side apply (PATCH with `application/apply-patch+yaml`) and the
//! `metadata.managedFields` bookkeeping of every other write, on top of the
//! pure [`skiff_api::apply`] module.

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::Value;
use skiff_api::apply::{self, Applied, ApplyError, Conflicts, Scope};
use skiff_api::field::{Error as FieldError, ErrorList, Path};
use skiff_api::patch::{PatchSchema, PatchType};
use skiff_api::status::ApiError;

use skiff_store::Store;

use super::{Call, Registry, field_validation, meta, with_warnings};
use crate::request_info::query_value;
use crate::response::{self, Body};

/// Upstream's limit on `fieldManager`.
const MAX_FIELD_MANAGER: usize = 128;

fn is_apply(call: &Call<'_>) -> bool {
    call.req.verb == "patch" && call.patch_type == Some(PatchType::Apply)
}

/// `<Verb>Options.meta.k8s.io "" is invalid: ...`, as upstream validates
/// request options.
fn options_invalid(call: &Call<'_>, errors: ErrorList) -> ApiError {
    let kind = match call.req.verb {
        "create" => "CreateOptions",
        "update" => "UpdateOptions",
        _ => "PatchOptions",
    };
    ApiError::Invalid {
        group: "meta.k8s.io".into(),
        kind: kind.into(),
        name: String::new(),
        errors,
    }
}

/// The manager of a write: the `fieldManager` query parameter, else the
/// User-Agent up to its first `/` (as upstream). Required for apply.
pub(super) fn manager(call: &Call<'_>) -> Result<String, ApiError> {
    let path = Path::new("fieldManager");
    let given = query_value(call.query, "fieldManager").unwrap_or_default();
    let mut errors = ErrorList::new();
    if !is_apply(call) && query_value(call.query, "force").is_some() && call.req.verb == "patch" {
        errors.push(FieldError::forbidden(
            &Path::new("force"),
            "may not be specified for non-apply patch",
        ));
    }
    if given.is_empty() && is_apply(call) {
        errors.push(FieldError::required(&path, "is required for apply patch"));
    }
    if given.len() > MAX_FIELD_MANAGER {
        errors.push(FieldError::too_long(&path, Some(MAX_FIELD_MANAGER)));
    }
    for (i, c) in given.char_indices() {
        if c.is_control() {
            errors.push(FieldError::invalid(
                &path,
                given.clone(),
                &format!("invalid character U+{:04X} (at position {i})", u32::from(c)),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(options_invalid(call, errors));
    }
    Ok(manager_or_user_agent(given, call.user_agent))
}

/// The given manager, else the User-Agent's product name (`kubectl` of
/// `kubectl/v1.33.0 (linux/amd64) kubernetes/abc`).
fn manager_or_user_agent(given: String, user_agent: Option<&str>) -> String {
    if !given.is_empty() {
        return given;
    }
    let agent = user_agent.unwrap_or_default();
    let prefix = agent.split('/').next().unwrap_or_default();
    prefix.chars().take(MAX_FIELD_MANAGER).collect()
}

fn scope<'a>(call: &Call<'_>, api_version: &'a str, now: &'a str) -> Scope<'a> {
    let info = call.info;
    Scope {
        schema: PatchSchema::for_kind(info.group, info.version, info.kind)
            .unwrap_or_else(PatchSchema::opaque),
        api_version,
        subresource: match call.req.subresource.as_deref() {
            Some("status") => Some("status"),
            _ => None,
        },
        has_status: info.subresource("status").is_some(),
        now,
    }
}

fn apply_error(call: &Call<'_>, e: ApplyError) -> ApiError {
    match e {
        ApplyError::BadRequest(m) => ApiError::BadRequest(m),
        ApplyError::Invalid(m) => ApiError::Unprocessable(format!(
            "failed to create typed patch object ({}, Kind={}): {m}",
            if call.info.group.is_empty() {
                format!("/{}", call.info.version)
            } else {
                call.info.api_version()
            },
            call.info.kind
        )),
        ApplyError::BadManagedFields(m) => {
            ApiError::BadRequest(format!("invalid managedFields: {m}"))
        }
        ApplyError::Conflicts(c) => ApiError::Conflict {
            group: call.info.group.to_owned(),
            resource: call.info.plural.to_owned(),
            name: String::new(),
            reason: c.message(),
        },
    }
}

/// Records the creating manager's fields in a new object (apply computes
/// its own). Mostly they come back as the JSON text of the managedFields
/// list, for [`with_managed_fields`] to put into the encoded object, and
/// `obj` is left without any; otherwise they are in `obj`.
pub(super) fn track_create(call: &Call<'_>, obj: &mut Value) -> Result<Option<Vec<u8>>, ApiError> {
    if is_apply(call) {
        return Ok(None);
    }
    let manager = manager(call)?;
    let api_version = call.info.api_version();
    let now = meta::now_rfc3339();
    let scope = scope(call, &api_version, &now);
    if let Some(list) = apply::created_managed_fields(obj, &manager, &scope) {
        return Ok(list);
    }
    apply::update_by_comparison(None, obj, &manager, &scope).map_err(|e| apply_error(call, e))?;
    Ok(None)
}

/// `obj` encoded for storage with the managedFields list `managed` (JSON
/// text, from [`track_create`]) in its metadata where a sorted map puts it:
/// spliced into the encoding, or put into `obj` and encoded again should
/// the splice not apply.
pub(super) fn with_managed_fields(
    obj: &mut Value,
    managed: Option<Vec<u8>>,
) -> Result<Bytes, ApiError> {
    let bytes = super::to_bytes(obj)?;
    let Some(list) = managed else {
        return Ok(bytes);
    };
    if let Some(spliced) = super::splice::set_member(&bytes, &["metadata"], "managedFields", &list)
    {
        return Ok(Bytes::from(spliced));
    }
    put_managed_fields(obj, &list)?;
    super::to_bytes(obj)
}

/// Puts the managedFields list `list` (JSON text, from [`track_create`])
/// into `obj`.
pub(super) fn put_managed_fields(obj: &mut Value, list: &[u8]) -> Result<(), ApiError> {
    apply::put_managed_fields(obj, list).map_err(|e| ApiError::InternalError(e.to_string()))
}

/// The managedFields a replacement object carries, before the update rules
/// (which may rebuild the object from the old one) run.
pub(super) fn sent_managed_fields(obj: &Value) -> Option<Value> {
    obj.pointer("/metadata/managedFields").cloned()
}

/// Records an update's ownership in `new`: for apply, the entries it
/// computed; otherwise the writer gains what it changed over `old`.
pub(super) fn track_update(
    call: &Call<'_>,
    old: &Value,
    sent: Option<Value>,
    mut new: Value,
) -> Result<Value, ApiError> {
    if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        match sent {
            Some(mf) => m.insert("managedFields".into(), mf),
            None => m.remove("managedFields"),
        };
    }
    if is_apply(call) {
        return Ok(new);
    }
    let manager = manager(call)?;
    let api_version = call.info.api_version();
    let now = meta::now_rfc3339();
    apply::update(
        Some(old),
        &mut new,
        &manager,
        &scope(call, &api_version, &now),
    )
    .map_err(|e| apply_error(call, e))?;
    Ok(new)
}

/// An apply body: YAML or JSON, an object.
/// The applied configuration (JSON, or YAML) and its duplicate fields.
fn parse_config(body: &Bytes) -> Result<(Value, Vec<String>), ApiError> {
    let decoded = match super::body::decode_json(body) {
        Ok(d) => d,
        Err(_) => super::body::decode_yaml(body)?,
    };
    let value = decoded.value;
    if !value.is_object() {
        return Err(ApiError::BadRequest(
            "the apply patch must be a YAML or JSON object".into(),
        ));
    }
    for field in ["apiVersion", "kind"] {
        if value
            .get(field)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            let field = if field == "kind" { "Kind" } else { field };
            return Err(ApiError::BadRequest(format!(
                "Object '{field}' is missing in '{}'",
                value
            )));
        }
    }
    Ok((value, decoded.duplicates))
}

fn parse_force(call: &Call<'_>) -> Result<bool, ApiError> {
    match query_value(call.query, "force").as_deref() {
        None | Some("") | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::BadRequest(format!(
            "invalid force value {other:?}: must be true or false"
        ))),
    }
}

/// Serves an apply patch: creates the object when it does not exist,
/// otherwise merges the configuration in through the store's update loop.
pub(super) async fn serve(
    reg: &Registry,
    call: &Call<'_>,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let info = call.info;
    let manager = manager(call)?;
    let force = parse_force(call)?;
    let mode = field_validation::FieldValidation::from_query(call.query)?;
    let (mut config, duplicates) = parse_config(&call.body)?;
    super::check_replacement(info, call, name, &mut config)?;
    let warnings = field_validation::check(info, &config, &duplicates, mode)?;
    let api_version = info.api_version();
    let key = info.key(call.req.namespace.as_deref(), name);
    let status_only = call.req.subresource.as_deref() == Some("status");
    for _ in 0..2 {
        let exists = reg
            .store
            .get(&key)
            .await
            .map_err(|e| super::store_error(info, name, e))?
            .is_some();
        if exists {
            break;
        }
        if status_only {
            return Err(ApiError::not_found(info, name));
        }
        let now = meta::now_rfc3339();
        let scope = scope(call, &api_version, &now);
        let obj = match apply::apply(None, &config, &manager, force, &scope) {
            Ok(Applied::Changed(obj)) => obj,
            Ok(Applied::Unchanged) => config.clone(),
            Err(e) => return Err(apply_error(call, e)),
        };
        match reg.create_object(call, obj, Vec::new()).await {
            // Created meanwhile: apply to it.
            Err(ApiError::AlreadyExists { .. }) => continue,
            other => return with_warnings(other, &warnings),
        }
    }
    let mut conflicts: Option<Conflicts> = None;
    let result = reg
        .guaranteed_update(call, name, |old| {
            let now = meta::now_rfc3339();
            let scope = scope(call, &api_version, &now);
            match apply::apply(Some(old), &config, &manager, force, &scope) {
                Ok(Applied::Changed(obj)) => Ok((obj, warnings.clone())),
                Ok(Applied::Unchanged) => Ok((old.clone(), warnings.clone())),
                Err(ApplyError::Conflicts(c)) => {
                    let err = apply_error(call, ApplyError::Conflicts(c.clone()));
                    conflicts = Some(c);
                    Err(err)
                }
                Err(e) => Err(apply_error(call, e)),
            }
        })
        .await;
    match (result, conflicts) {
        (Err(_), Some(c)) => Ok(response::json(StatusCode::CONFLICT, &c.status())),
        (result, _) => result,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn managers_default_to_the_user_agent_product() {
        let ua = Some("kubectl/v1.33.0 (linux/amd64) kubernetes/abc");
        assert_eq!(manager_or_user_agent(String::new(), ua), "kubectl");
        assert_eq!(manager_or_user_agent("mine".into(), ua), "mine");
        assert_eq!(manager_or_user_agent(String::new(), None), "");
        let long = "x".repeat(300);
        assert_eq!(manager_or_user_agent(String::new(), Some(&long)).len(), 128);
    }

    #[test]
    fn apply_bodies_are_yaml_or_json_objects_with_a_type() {
        let yaml = Bytes::from_static(
            b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  a: '1'\n  n: 2\n",
        );
        assert_eq!(
            parse_config(&yaml).unwrap().0,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "n": 2}})
        );
        let json_body = Bytes::from_static(br#"{"apiVersion":"v1","kind":"ConfigMap"}"#);
        assert!(parse_config(&json_body).is_ok());
        for bad in [
            &b"- 1\n- 2\n"[..],
            b"a: [",
            b"\xff",
            b"apiVersion: v1\n",
            b"kind: X\n",
        ] {
            assert!(
                matches!(
                    parse_config(&Bytes::copy_from_slice(bad)),
                    Err(ApiError::BadRequest(_))
                ),
                "{bad:?}"
            );
        }
        let missing = parse_config(&Bytes::from_static(b"apiVersion: v1\n")).unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("Object 'Kind' is missing in"),
            "{missing}"
        );
    }
}
