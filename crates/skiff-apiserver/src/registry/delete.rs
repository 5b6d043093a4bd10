//! Deletion as upstream's `genericregistry.Store.Delete` and
//! `rest.BeforeDelete`: preconditions, graceful deletion of pods (the object
//! stays, marked with `deletionTimestamp`, until the kubelet confirms with a
//! zero grace period), finalizers (the object stays until they are gone), and
//! the propagation policy's finalizers (`orphan`, `foregroundDeletion`) for
//! the garbage collector.

use bytes::Bytes;
use futures::StreamExt;
use http::{Response, StatusCode};
use serde_json::{Value, json};
use skiff_api::field::{Error as FieldError, ErrorList, Path};
use skiff_api::resources::ResourceInfo;
use skiff_api::status::ApiError;
use skiff_store::{ListOptions, Store, StoreError};

use super::{
    Call, MAX_RETRIES, Registry, Retry, body, decode, dry_run, is_service, list_error, matches,
    meta, selectors, services, store_error, strip_rv,
};
use crate::negotiate::{self, Output};
use crate::response::{self, Body};

/// The finalizer that makes the garbage collector orphan the dependents.
pub const ORPHAN_FINALIZER: &str = "orphan";
/// The finalizer that makes the garbage collector delete the dependents
/// first.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// Deletions a deletecollection runs at once.
const DELETE_COLLECTION_WORKERS: usize = 16;

/// `metav1.DeleteOptions` of a delete request (body and query).
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct DeleteOptions {
    uid: Option<String>,
    resource_version: Option<String>,
    grace_period_seconds: Option<i64>,
    propagation: Option<Propagation>,
}

/// `metav1.DeletionPropagation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Propagation {
    Orphan,
    Background,
    Foreground,
}

impl Registry {
    pub(super) async fn delete(
        &self,
        call: &Call<'_>,
        name: &str,
    ) -> Result<Response<Body>, ApiError> {
        let info = call.info;
        let options = parse_delete_options(&call.body, call.query)?;
        let dry_run = dry_run(call.query)?;
        let key = info.key(call.req.namespace.as_deref(), name);
        for _ in 0..MAX_RETRIES {
            let current = self.current(info, &key, name).await?;
            let old = decode(&current)?;
            check_preconditions(info, name, &old, &options, current.mod_revision)?;
            check_namespace_redelete(info, name, &old)?;
            let grace = grace_period(info, &old, &options);
            let mut obj = old.clone();
            add_propagation_finalizer(&mut obj, options.propagation)?;
            let graceful = mark_graceful(&mut obj, grace)?;
            if !graceful && !has_finalizers(&obj) {
                // Deleted now.
                if dry_run {
                    return Ok(deleted_response(info, name, &old));
                }
                match self.store.delete(&key, current.mod_revision).await {
                    Ok(d) => {
                        self.note_write(info, d.revision);
                        if is_service(info) {
                            services::release_all(&self.store, &old).await;
                        }
                        return Ok(deleted_response(info, name, &old));
                    }
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => return Err(store_error(info, name, e)),
                }
            }
            // Marked for deletion: the kubelet or the finalizers' owners
            // finish the job.
            if info.plural == "namespaces" && info.group.is_empty() {
                obj["status"]["phase"] = Value::String("Terminating".into());
            }
            if obj == old || dry_run {
                return Ok(response::json(StatusCode::OK, &obj));
            }
            strip_rv(&mut obj);
            match self
                .write_update(info, &key, name, obj, current.mod_revision)
                .await
            {
                Ok(obj) => return Ok(response::json(StatusCode::OK, &obj)),
                Err(Retry::Conflict) => continue,
                Err(Retry::Fail(e)) => return Err(e),
            }
        }
        Err(ApiError::conflict_modified(info, name))
    }

    pub(super) async fn delete_collection(
        &self,
        call: &Call<'_>,
    ) -> Result<Response<Body>, ApiError> {
        let info = call.info;
        let (labels, fields) = selectors(info, call.query)?;
        // Options are checked once, before anything is deleted.
        parse_delete_options(&call.body, call.query)?;
        let prefix = info.prefix(call.req.namespace.as_deref());
        let page = self
            .store
            .list(&prefix, ListOptions::default())
            .await
            .map_err(|e| list_error(e, call.query))?;
        let mut matching = Vec::new();
        for kv in &page.kvs {
            let obj = decode(kv)?;
            if matches(info, &labels, &fields, &obj) {
                matching.push(obj);
            }
        }
        // Several deletions at once (upstream's DeleteCollectionWorkers):
        // the store commits concurrent writes together.
        let results: Vec<Result<Option<Value>, ApiError>> =
            futures::stream::iter(matching.into_iter().map(|obj| async move {
                let name = meta::meta_str(&obj, "name").to_owned();
                let sub = Call {
                    info,
                    req: call.req,
                    query: call.query,
                    body: call.body.clone(),
                    output: Output::Json,
                    patch_type: None,
                    format: body::BodyFormat::Json,
                    user_agent: call.user_agent,
                    user: call.user,
                };
                match self.delete(&sub, &name).await {
                    Ok(_) => Ok(Some(obj)),
                    // Gone meanwhile: nothing left to delete.
                    Err(ApiError::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            }))
            .buffered(DELETE_COLLECTION_WORKERS)
            .collect()
            .await;
        let mut deleted = Vec::new();
        for r in results {
            if let Some(obj) = r? {
                deleted.push(obj);
            }
        }
        let list = json!({
            "kind": info.list_kind,
            "apiVersion": info.api_version(),
            "metadata": {"resourceVersion": page.revision.to_string()},
            "items": deleted,
        });
        // The answer honours the Accept header as a list does (a
        // metadata-only client gets PartialObjectMetadataList, not every
        // deleted object whole).
        Ok(response::json(
            StatusCode::OK,
            &negotiate::list(info, call.output, list),
        ))
    }
}

/// True when the object has finalizers left (`metadata.finalizers`, or a
/// Namespace's `spec.finalizers`).
pub(super) fn has_finalizers(obj: &Value) -> bool {
    let meta_finalizers = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    let ns_finalizers = obj.get("kind").and_then(Value::as_str) == Some("Namespace")
        && obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
    meta_finalizers || ns_finalizers
}

/// The grace period of this deletion, for kinds that delete gracefully
/// (pods), else `None`. Upstream's pod strategy: the request's
/// `gracePeriodSeconds`, else the pod's `terminationGracePeriodSeconds`
/// (30 when unset); 0 for pods no kubelet runs (unscheduled) or that have
/// finished.
fn grace_period(info: &ResourceInfo, obj: &Value, options: &DeleteOptions) -> Option<i64> {
    if !(info.group.is_empty() && info.plural == "pods") {
        return None;
    }
    let scheduled = obj
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let finished = matches!(
        obj.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    if !scheduled || finished {
        return Some(0);
    }
    let grace = options.grace_period_seconds.unwrap_or_else(|| {
        obj.pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(30)
    });
    Some(grace.max(0))
}

/// Marks `obj` as being deleted. With a grace period (`Some(n)`, n > 0) the
/// deletion waits that long for the owner (kubelet) to confirm: returns true.
/// A later, shorter grace period shortens the wait; a zero one on an object
/// already being deleted gracefully deletes it now. Objects of kinds without
/// graceful deletion only get a deletion timestamp (for their finalizers).
fn mark_graceful(obj: &mut Value, grace: Option<i64>) -> Result<bool, ApiError> {
    let now = time::OffsetDateTime::now_utc();
    let existing = meta::meta_str(obj, "deletionTimestamp").to_owned();
    let existing_grace = obj
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64);
    let m = meta::meta_mut(obj)?;
    match grace {
        Some(g) if g > 0 => {
            let deadline = meta::rfc3339(now + time::Duration::seconds(g));
            // Only ever shorten a deletion already under way.
            if existing.is_empty() || deadline < existing {
                m.insert("deletionTimestamp".into(), Value::String(deadline));
                m.insert("deletionGracePeriodSeconds".into(), json!(g));
                if let Some(generation) = m.get("generation").and_then(Value::as_i64) {
                    m.insert("generation".into(), json!(generation + 1));
                }
            }
            Ok(true)
        }
        _ => {
            if existing.is_empty() {
                m.insert(
                    "deletionTimestamp".into(),
                    Value::String(meta::rfc3339(now)),
                );
                m.insert("deletionGracePeriodSeconds".into(), json!(0));
            } else if grace == Some(0) && existing_grace.is_some_and(|g| g > 0) {
                m.insert("deletionGracePeriodSeconds".into(), json!(0));
            }
            Ok(false)
        }
    }
}

/// Adds the finalizer that tells the garbage collector how to treat the
/// dependents (none for background deletion, upstream's default for every
/// kind we serve).
fn add_propagation_finalizer(
    obj: &mut Value,
    propagation: Option<Propagation>,
) -> Result<(), ApiError> {
    let wanted = match propagation {
        Some(Propagation::Orphan) => ORPHAN_FINALIZER,
        Some(Propagation::Foreground) => FOREGROUND_FINALIZER,
        Some(Propagation::Background) | None => return Ok(()),
    };
    let m = meta::meta_mut(obj)?;
    let list = m.entry("finalizers").or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    if let Some(list) = list.as_array_mut() {
        // One propagation at a time: switching policy replaces the other.
        list.retain(|f| {
            f.as_str() != Some(ORPHAN_FINALIZER) && f.as_str() != Some(FOREGROUND_FINALIZER)
        });
        list.push(Value::String(wanted.into()));
    }
    Ok(())
}

/// The response to a completed deletion: the object for kinds that return
/// it (pods and services, as upstream), else a Success Status.
fn deleted_response(info: &ResourceInfo, name: &str, obj: &Value) -> Response<Body> {
    if info.group.is_empty() && matches!(info.plural, "pods" | "services") {
        return response::json(StatusCode::OK, obj);
    }
    response::json(
        StatusCode::OK,
        &json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {
                "name": name,
                "group": info.group,
                "kind": info.plural,
                "uid": meta::meta_str(obj, "uid"),
            },
        }),
    )
}

/// `metav1.DeleteOptions` from the body (may be empty) and the query
/// (`gracePeriodSeconds`, `propagationPolicy`, `orphanDependents`), checked
/// as upstream's `ValidateDeleteOptions` (422 on `DeleteOptions`).
pub(super) fn parse_delete_options(
    body: &Bytes,
    query: Option<&str>,
) -> Result<DeleteOptions, ApiError> {
    let v = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        body::decode_json(body)?.value
    };
    if !v.is_object() {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON object".into(),
        ));
    }
    let pre = v.get("preconditions");
    let get = |k: &str| {
        pre.and_then(|p| p.get(k))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let from_query = |k: &str| crate::request_info::query_value(query, k).filter(|s| !s.is_empty());
    let grace_period_seconds =
        match v.get("gracePeriodSeconds") {
            Some(Value::Null) | None => match from_query("gracePeriodSeconds") {
                Some(g) => Some(g.parse::<i64>().map_err(|_| {
                    ApiError::BadRequest(format!("invalid gracePeriodSeconds: {g:?}"))
                })?),
                None => None,
            },
            Some(g) => Some(g.as_i64().ok_or_else(|| {
                ApiError::BadRequest(format!("gracePeriodSeconds must be an integer, got {g}"))
            })?),
        };
    let policy = match v.get("propagationPolicy").and_then(Value::as_str) {
        Some(p) => Some(p.to_owned()),
        None => from_query("propagationPolicy"),
    };
    let orphan = match v.get("orphanDependents") {
        Some(Value::Bool(b)) => Some(*b),
        _ => from_query("orphanDependents").map(|s| s == "true"),
    };
    let mut errors = ErrorList::new();
    let propagation = match policy.as_deref() {
        None => None,
        Some("Orphan") => Some(Propagation::Orphan),
        Some("Background") => Some(Propagation::Background),
        Some("Foreground") => Some(Propagation::Foreground),
        Some(other) => {
            errors.push(FieldError::not_supported(
                &Path::new("propagationPolicy"),
                other.to_owned(),
                &["Foreground", "Background", "Orphan"],
            ));
            None
        }
    };
    if let (Some(o), Some(_)) = (orphan, policy.as_deref()) {
        errors.push(FieldError::invalid(
            &Path::new("orphanDependents"),
            o,
            "orphanDependents and deletionPropagation cannot be both set",
        ));
    }
    if let Some(g) = grace_period_seconds
        && g < 0
    {
        errors.push(FieldError::invalid(
            &Path::new("gracePeriodSeconds"),
            g,
            "must be greater than or equal to 0",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid {
            group: "meta.k8s.io".into(),
            kind: "DeleteOptions".into(),
            name: String::new(),
            errors,
        });
    }
    let propagation = propagation.or(match orphan {
        Some(true) => Some(Propagation::Orphan),
        Some(false) => Some(Propagation::Background),
        None => None,
    });
    Ok(DeleteOptions {
        uid: get("uid"),
        resource_version: get("resourceVersion"),
        grace_period_seconds,
        propagation,
    })
}

/// A namespace already terminating stays until the namespace controller
/// (or whoever owns its `spec.finalizers`) finalizes it: deleting it again
/// is a conflict, as upstream's namespace storage answers.
fn check_namespace_redelete(info: &ResourceInfo, name: &str, obj: &Value) -> Result<(), ApiError> {
    let terminating = info.group.is_empty()
        && info.plural == "namespaces"
        && !meta::meta_str(obj, "deletionTimestamp").is_empty();
    let spec_finalizers = obj
        .pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    if terminating && spec_finalizers {
        return Err(ApiError::Conflict {
            group: String::new(),
            resource: "namespaces".into(),
            name: name.to_owned(),
            reason: "The system is ensuring all content is removed from this namespace.  Upon completion, this namespace will automatically be purged by the system.".into(),
        });
    }
    Ok(())
}

fn check_preconditions(
    info: &ResourceInfo,
    name: &str,
    obj: &Value,
    options: &DeleteOptions,
    rev: i64,
) -> Result<(), ApiError> {
    let conflict = |reason: String| ApiError::Conflict {
        group: info.group.to_owned(),
        resource: info.plural.to_owned(),
        name: name.to_owned(),
        reason,
    };
    if let Some(uid) = &options.uid {
        let actual = meta::meta_str(obj, "uid");
        if uid != actual {
            return Err(conflict(format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
            )));
        }
    }
    if let Some(rv) = &options.resource_version
        && *rv != rev.to_string()
    {
        return Err(conflict(format!(
            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {rev}"
        )));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pods() -> &'static ResourceInfo {
        skiff_api::resources::by_gvr("", "v1", "pods").unwrap()
    }

    #[test]
    fn pods_on_nodes_get_their_grace_period() {
        let running = json!({"spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 45}, "status": {"phase": "Running"}});
        let none = DeleteOptions::default();
        assert_eq!(grace_period(pods(), &running, &none), Some(45));
        let asked = DeleteOptions {
            grace_period_seconds: Some(5),
            ..DeleteOptions::default()
        };
        assert_eq!(grace_period(pods(), &running, &asked), Some(5));
        let unscheduled = json!({"spec": {}});
        assert_eq!(grace_period(pods(), &unscheduled, &none), Some(0));
        let done = json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Succeeded"}});
        assert_eq!(grace_period(pods(), &done, &none), Some(0));
        let cms = skiff_api::resources::by_gvr("", "v1", "configmaps").unwrap();
        assert_eq!(grace_period(cms, &running, &none), None);
    }

    #[test]
    fn a_terminating_namespace_cannot_be_deleted_again() {
        let nss = skiff_api::resources::by_gvr("", "v1", "namespaces").unwrap();
        let active = json!({"metadata": {"name": "x"}, "spec": {"finalizers": ["kubernetes"]}});
        assert!(check_namespace_redelete(nss, "x", &active).is_ok());
        let terminating = json!({"metadata": {"name": "x", "deletionTimestamp": "2026-01-01T00:00:00Z"}, "spec": {"finalizers": ["kubernetes"]}});
        let err = check_namespace_redelete(nss, "x", &terminating).unwrap_err();
        assert_eq!(err.code(), 409);
        assert_eq!(
            err.to_string(),
            "Operation cannot be fulfilled on namespaces \"x\": The system is ensuring all content is removed from this namespace.  Upon completion, this namespace will automatically be purged by the system."
        );
        let finalized = json!({"metadata": {"name": "x", "deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["orphan"]}, "spec": {"finalizers": []}});
        assert!(check_namespace_redelete(nss, "x", &finalized).is_ok());
        let cms = skiff_api::resources::by_gvr("", "v1", "configmaps").unwrap();
        assert!(check_namespace_redelete(cms, "x", &terminating).is_ok());
    }

    #[test]
    fn graceful_marks_only_shorten() {
        let mut pod = json!({"metadata": {"name": "p"}});
        assert!(mark_graceful(&mut pod, Some(30)).unwrap());
        let first = pod["metadata"]["deletionTimestamp"].clone();
        assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 30);
        assert!(mark_graceful(&mut pod, Some(60)).unwrap());
        assert_eq!(
            pod["metadata"]["deletionTimestamp"], first,
            "never extended"
        );
        assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 30);
        assert!(mark_graceful(&mut pod, Some(1)).unwrap());
        assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 1);
        assert!(
            !mark_graceful(&mut pod, Some(0)).unwrap(),
            "zero deletes now"
        );
    }

    #[test]
    fn delete_options_are_validated() {
        let body = |s: &str| Bytes::from(s.to_owned());
        let o = parse_delete_options(
            &body(r#"{"propagationPolicy": "Foreground", "gracePeriodSeconds": 3}"#),
            None,
        )
        .unwrap();
        assert_eq!(o.propagation, Some(Propagation::Foreground));
        assert_eq!(o.grace_period_seconds, Some(3));
        let o = parse_delete_options(
            &body(""),
            Some("propagationPolicy=Orphan&gracePeriodSeconds=0"),
        )
        .unwrap();
        assert_eq!(o.propagation, Some(Propagation::Orphan));
        assert_eq!(o.grace_period_seconds, Some(0));
        let o = parse_delete_options(&body(r#"{"orphanDependents": true}"#), None).unwrap();
        assert_eq!(o.propagation, Some(Propagation::Orphan));
        let err =
            parse_delete_options(&body(r#"{"propagationPolicy": "Sideways"}"#), None).unwrap_err();
        assert_eq!(err.code(), 422);
        assert!(
            err.to_string()
                .contains("propagationPolicy: Unsupported value: \"Sideways\""),
            "{err}"
        );
        let err = parse_delete_options(
            &body(r#"{"propagationPolicy": "Orphan", "orphanDependents": false}"#),
            None,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("orphanDependents and deletionPropagation cannot be both set"),
            "{err}"
        );
        assert_eq!(
            parse_delete_options(&body("[]"), None).unwrap_err().code(),
            400
        );
        assert_eq!(
            parse_delete_options(&body(""), Some("gracePeriodSeconds=x"))
                .unwrap_err()
                .code(),
            400
        );
    }

    #[test]
    fn propagation_finalizers_replace_each_other() {
        let mut obj = json!({"metadata": {"finalizers": ["example.com/keep"]}});
        add_propagation_finalizer(&mut obj, Some(Propagation::Orphan)).unwrap();
        assert_eq!(
            obj["metadata"]["finalizers"],
            json!(["example.com/keep", "orphan"])
        );
        add_propagation_finalizer(&mut obj, Some(Propagation::Foreground)).unwrap();
        assert_eq!(
            obj["metadata"]["finalizers"],
            json!(["example.com/keep", "foregroundDeletion"])
        );
        add_propagation_finalizer(&mut obj, Some(Propagation::Background)).unwrap();
        assert_eq!(
            obj["metadata"]["finalizers"],
            json!(["example.com/keep", "foregroundDeletion"])
        );
    }
}
