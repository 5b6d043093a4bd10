//! Subresources beyond `status`: `pods/binding` (the scheduler's decision),
//! `pods/eviction` (deletion that honours PodDisruptionBudgets), `*/scale`
//! (autoscaling/v1 Scale of Deployments, ReplicaSets, StatefulSets and
//! ReplicationControllers) and `namespaces/finalize`.

use super::cache::object::Written;
use http::{Response, StatusCode};
use serde_json::{Value, json};
use skiff_api::field::{Error as FieldError, ErrorList, Path};
use skiff_api::patch::{self, PatchSchema, PatchType};
use skiff_api::resources::{self, ResourceInfo};
use skiff_api::selector::labels;
use skiff_api::status::ApiError;
use skiff_store::{ListOptions, Store};

use super::{
    Call, MAX_RETRIES, Registry, Retry, body, decode, dry_run, meta, patch_error, splice, strip_rv,
    to_bytes,
};
use crate::negotiate::Output;
use crate::response::{self, Body};

/// `metav1.Status` Success with code 201, the answer to binding and eviction.
fn created_status() -> Response<Body> {
    response::json(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}

/// The subresource body's name (`given`) must be the URL's.
fn check_body_name(given: &str, name: &str, what: &str) -> Result<(), ApiError> {
    if !given.is_empty() && given != name {
        return Err(ApiError::BadRequest(format!(
            "name in URL does not match name in {what} object"
        )));
    }
    Ok(())
}

/// Of a `Binding` body, what binding reads (the scheduler sends one per
/// pod, so no `Value` tree is built for it).
#[derive(serde::Deserialize)]
struct BindingBody {
    #[serde(default)]
    metadata: Option<BindingMeta>,
    #[serde(default)]
    target: Option<BindingTarget>,
}

#[derive(serde::Deserialize, Default)]
struct BindingMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    annotations: Option<serde_json::Map<String, Value>>,
}

#[derive(serde::Deserialize, Default)]
struct BindingTarget {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

impl BindingBody {
    fn decode(body: &[u8], format: body::BodyFormat) -> Result<BindingBody, ApiError> {
        match format {
            body::BodyFormat::Json => {
                if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
                    // What the generic decode says of valid JSON that is not
                    // an object, and of what is not JSON.
                    body::decode_object(body, format)?;
                }
                serde_json::from_slice(body).map_err(body::unrecognized)
            }
            body::BodyFormat::Yaml => {
                serde_json::from_value(body::decode_object(body, format)?.value)
                    .map_err(body::unrecognized)
            }
        }
    }
}

impl Registry {
    /// `POST pods/{name}/binding`: sets `spec.nodeName` once, with the
    /// binding's annotations and a PodScheduled=True condition.
    pub(super) async fn bind(
        &self,
        call: &Call<'_>,
        name: &str,
    ) -> Result<Response<Body>, ApiError> {
        let info = call.info;
        let binding = BindingBody::decode(&call.body, call.format)?;
        let meta = binding.metadata.unwrap_or_default();
        check_body_name(meta.name.as_deref().unwrap_or(""), name, "Binding")?;
        let target = binding.target.unwrap_or_default();
        let node = target.name.as_deref().unwrap_or("");
        let mut errors = ErrorList::new();
        if node.is_empty() {
            errors.push(FieldError::required(&Path::new("target.name"), ""));
        }
        match target.kind.as_deref() {
            None | Some("" | "Node") => {}
            Some(kind) => errors.push(FieldError::not_supported(
                &Path::new("target.kind"),
                kind.to_owned(),
                &["Node", "<empty>"],
            )),
        }
        if !errors.is_empty() {
            return Err(ApiError::Invalid {
                group: String::new(),
                kind: "Binding".into(),
                name: name.to_owned(),
                errors,
            });
        }
        let annotations = meta.annotations.unwrap_or_default();
        let key = info.key(call.req.namespace.as_deref(), name);
        let dry_run = dry_run(call.query)?;
        let pod_name = format!("{}/{name}", call.req.namespace.as_deref().unwrap_or(""));
        for _ in 0..MAX_RETRIES {
            let current = self.current(info, &key, name).await?;
            let now = meta::now_rfc3339();
            // The plain case edits the stored bytes; the rest decodes.
            let spliced = (annotations.is_empty() && !dry_run)
                .then(|| {
                    let conditions =
                        serde_json::to_vec(&[condition("PodScheduled", "True", &now)]).ok()?;
                    splice::bound_pod(&current.value, node, &conditions)
                })
                .flatten();
            let mut announced = None;
            let bytes = match spliced {
                Some(bytes) => {
                    let bytes = bytes::Bytes::from(bytes);
                    // The watch cache takes the bound pod from the one it
                    // holds (when that is the version bound) rather than
                    // decoding the stored bytes.
                    let cache = self.store.cache();
                    let held = cache.lock().get(&key);
                    if let Some(written) = held
                        .filter(|pod| pod.revision() == current.mod_revision)
                        .and_then(|pod| Written::bound(&pod, bytes.clone(), node))
                    {
                        cache.expect(&key, written);
                        announced = Some(bytes.clone());
                    }
                    bytes
                }
                None => {
                    let mut pod = decode(&current)?;
                    bind_decoded(&mut pod, node, &annotations, &now).map_err(|e| match e {
                        BindError::Conflict(reason) => ApiError::Conflict {
                            group: String::new(),
                            resource: "pods/binding".into(),
                            name: name.to_owned(),
                            reason: format!("pod {pod_name} {reason}"),
                        },
                        BindError::Api(e) => e,
                    })?;
                    if dry_run {
                        return Ok(created_status());
                    }
                    strip_rv(&mut pod);
                    to_bytes(&pod)?
                }
            };
            let written = self
                .write_bytes(info, &key, name, bytes, current.mod_revision)
                .await;
            if written.is_err()
                && let Some(bytes) = announced
            {
                self.store.cache().unexpect(&key, &bytes);
            }
            match written {
                Ok(_) => return Ok(created_status()),
                Err(Retry::Conflict) => continue,
                Err(Retry::Fail(e)) => return Err(e),
            }
        }
        Err(ApiError::conflict_modified(info, name))
    }

    /// `POST pods/{name}/eviction`: deletes the pod unless its
    /// PodDisruptionBudget allows no disruption (429), as upstream.
    pub(super) async fn evict(
        &self,
        call: &Call<'_>,
        name: &str,
    ) -> Result<Response<Body>, ApiError> {
        let info = call.info;
        let eviction = body::decode_object(&call.body, call.format)?.value;
        check_body_name(meta::meta_str(&eviction, "name"), name, "Eviction")?;
        let ns = call.req.namespace.as_deref().unwrap_or("");
        let pod = decode(&self.current(info, &info.key(Some(ns), name), name).await?)?;
        let exempt = !meta::meta_str(&pod, "deletionTimestamp").is_empty()
            || matches!(
                pod.pointer("/status/phase").and_then(Value::as_str),
                Some("Succeeded" | "Failed" | "Pending")
            );
        if !exempt {
            self.take_disruption(call, ns, &pod).await?;
        }
        let options = eviction.get("deleteOptions").cloned().unwrap_or(json!({}));
        let sub = Call {
            info,
            req: call.req,
            query: call.query,
            body: bytes::Bytes::from(options.to_string()),
            output: Output::Json,
            patch_type: None,
            format: body::BodyFormat::Json,
            user_agent: call.user_agent,
            user: call.user,
        };
        self.delete(&sub, name).await?;
        Ok(created_status())
    }

    /// Checks the pod's PodDisruptionBudget and records the disruption in
    /// its status (compare-and-swap).
    async fn take_disruption(
        &self,
        call: &Call<'_>,
        ns: &str,
        pod: &Value,
    ) -> Result<(), ApiError> {
        let Some(pdbs) = resources::by_gvr("policy", "v1", "poddisruptionbudgets") else {
            return Ok(());
        };
        let pod_name = meta::meta_str(pod, "name").to_owned();
        let pod_labels = meta::string_map(pod, "labels");
        for _ in 0..MAX_RETRIES {
            let page = self
                .store
                .list(&pdbs.prefix(Some(ns)), ListOptions::default())
                .await
                .map_err(|e| ApiError::InternalError(e.to_string()))?;
            let mut matching = Vec::new();
            for kv in &page.kvs {
                let pdb = decode(kv)?;
                let selector = pdb
                    .pointer("/spec/selector")
                    .cloned()
                    .and_then(|s| serde_json::from_value(s).ok());
                // A missing or empty selector selects no pods (policy/v1).
                let Some(selector) = selector else { continue };
                let Ok(sel) = labels::from_label_selector(Some(&selector)) else {
                    continue;
                };
                if !sel.is_empty() && sel.matches(&pod_labels) {
                    matching.push((kv.mod_revision, pdb));
                }
            }
            let (rev, mut pdb) = match matching.len() {
                0 => return Ok(()),
                1 => matching.remove(0),
                _ => {
                    return Err(ApiError::InternalError(
                        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.".into(),
                    ));
                }
            };
            let pdb_name = meta::meta_str(&pdb, "name").to_owned();
            if unhealthy_pod_may_go(&pdb, pod) {
                // An unready pod does not count as healthy: evicting it
                // takes nothing from the budget.
                return Ok(());
            }
            let observed = pdb
                .pointer("/status/observedGeneration")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let generation = pdb
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if observed < generation {
                return Err(ApiError::TooManyRequests {
                    message: format!(
                        "Cannot evict pod as it would violate the pod's disruption budget. The disruption budget {pdb_name} is still being processed by the server."
                    ),
                    retry_after_seconds: 10,
                });
            }
            let allowed = pdb
                .pointer("/status/disruptionsAllowed")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if allowed < 0 {
                return Err(ApiError::Forbidden {
                    group: String::new(),
                    resource: "pods/eviction".into(),
                    name: pod_name,
                    reason: "pdb disruptions allowed is negative".into(),
                });
            }
            if allowed == 0 {
                let desired = pdb
                    .pointer("/status/desiredHealthy")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                let healthy = pdb
                    .pointer("/status/currentHealthy")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                return Err(ApiError::TooManyRequests {
                    message: format!(
                        "Cannot evict pod as it would violate the pod's disruption budget. The disruption budget {pdb_name} needs {desired} healthy pods and has {healthy} currently"
                    ),
                    retry_after_seconds: 10,
                });
            }
            if dry_run(call.query)? {
                return Ok(());
            }
            pdb["status"]["disruptionsAllowed"] = json!(allowed - 1);
            let disrupted = pdb["status"]
                .as_object_mut()
                .map(|s| s.entry("disruptedPods").or_insert_with(|| json!({})));
            if let Some(d) = disrupted {
                if !d.is_object() {
                    *d = json!({});
                }
                d[&pod_name] = Value::String(meta::now_rfc3339());
            }
            strip_rv(&mut pdb);
            let key = pdbs.key(Some(ns), &pdb_name);
            match self.write_update(pdbs, &key, &pdb_name, pdb, rev).await {
                Ok(_) => return Ok(()),
                Err(Retry::Conflict) => continue,
                Err(Retry::Fail(e)) => return Err(e),
            }
        }
        Err(ApiError::conflict_modified(pdbs, "poddisruptionbudget"))
    }

    /// `GET|PUT|PATCH {resource}/{name}/scale`.
    pub(super) async fn scale(
        &self,
        call: &Call<'_>,
        name: &str,
    ) -> Result<Response<Body>, ApiError> {
        let info = call.info;
        if call.req.verb == "get" {
            let key = info.key(call.req.namespace.as_deref(), name);
            let obj = decode(&self.current(info, &key, name).await?)?;
            return Ok(response::json(StatusCode::OK, &to_scale(info, &obj)));
        }
        let patch_type = call.patch_type;
        let request = match call.req.verb {
            "update" => Some(body::decode_object(&call.body, call.format)?.value),
            _ => None,
        };
        let (obj, _) = self
            .guaranteed_update_value(call, name, |old| {
                let scale = to_scale(info, old);
                let wanted = match (&request, patch_type) {
                    (Some(body), _) => body.clone(),
                    (None, Some(PatchType::Apply)) | (None, None) => {
                        return Err(ApiError::UnsupportedMediaType {
                            accepted: [
                                PatchType::Json,
                                PatchType::Merge,
                                PatchType::StrategicMerge,
                            ]
                            .iter()
                            .map(|t| t.content_type().to_owned())
                            .collect(),
                        });
                    }
                    (None, Some(t)) => {
                        let schema = PatchSchema::for_kind("autoscaling", "v1", "Scale")
                            .unwrap_or_else(PatchSchema::opaque);
                        patch::apply_any(t, &scale, &call.body, Some(&schema))
                            .map_err(patch_error)?
                    }
                };
                check_body_name(meta::meta_str(&wanted, "name"), name, "Scale")?;
                let replicas = wanted.pointer("/spec/replicas");
                let replicas = match replicas {
                    None | Some(Value::Null) => 0,
                    Some(v) => v.as_i64().ok_or_else(|| {
                        ApiError::BadRequest(format!("spec.replicas must be an integer, got {v}"))
                    })?,
                };
                if replicas < 0 {
                    let mut errors = ErrorList::new();
                    errors.push(FieldError::invalid(
                        &Path::new("spec.replicas"),
                        replicas,
                        "must be greater than or equal to 0",
                    ));
                    return Err(ApiError::Invalid {
                        group: "autoscaling".into(),
                        kind: "Scale".into(),
                        name: name.to_owned(),
                        errors,
                    });
                }
                let mut new = old.clone();
                new["spec"]["replicas"] = json!(replicas);
                // The Scale's resourceVersion is the parent's precondition.
                let rv = meta::meta_str(&wanted, "resourceVersion").to_owned();
                if rv.is_empty() {
                    strip_rv(&mut new);
                } else {
                    super::set_rv(&mut new, super::parse_rv(&rv)?);
                }
                Ok((new, Vec::new()))
            })
            .await?;
        Ok(response::json(StatusCode::OK, &to_scale(info, &obj)))
    }

    /// `PUT namespaces/{name}/finalize`: the only way to change a
    /// Namespace's `spec.finalizers`.
    pub(super) async fn finalize(
        &self,
        call: &Call<'_>,
        name: &str,
    ) -> Result<Response<Body>, ApiError> {
        let info = call.info;
        let wanted = body::decode_object(&call.body, call.format)?.value;
        check_body_name(meta::meta_str(&wanted, "name"), name, "Namespace")?;
        let finalizers = wanted
            .pointer("/spec/finalizers")
            .cloned()
            .unwrap_or(json!([]));
        let key = info.key(None, name);
        let dry_run = dry_run(call.query)?;
        for _ in 0..MAX_RETRIES {
            let current = self.current(info, &key, name).await?;
            let mut ns = decode(&current)?;
            let rv = meta::meta_str(&wanted, "resourceVersion");
            if !rv.is_empty() && rv != current.mod_revision.to_string() {
                return Err(ApiError::conflict_modified(info, name));
            }
            ns["spec"]["finalizers"] = finalizers.clone();
            if dry_run {
                return Ok(response::json(StatusCode::OK, &ns));
            }
            strip_rv(&mut ns);
            match self
                .write_update(info, &key, name, ns, current.mod_revision)
                .await
            {
                Ok(obj) => return Ok(response::json(StatusCode::OK, &obj)),
                Err(Retry::Conflict) => continue,
                Err(Retry::Fail(e)) => return Err(e),
            }
        }
        Err(ApiError::conflict_modified(info, name))
    }
}

/// Why a decoded pod was not bound.
enum BindError {
    /// It may not be: the end of the conflict message.
    Conflict(String),
    /// Its metadata is not an object.
    Api(ApiError),
}

/// `pod` (decoded) bound to `node` with the binding's `annotations` and a
/// PodScheduled=True condition stamped `now`.
fn bind_decoded(
    pod: &mut Value,
    node: &str,
    annotations: &serde_json::Map<String, Value>,
    now: &str,
) -> Result<(), BindError> {
    if !meta::meta_str(pod, "deletionTimestamp").is_empty() {
        return Err(BindError::Conflict(
            "is being deleted, cannot be assigned to a host".into(),
        ));
    }
    let assigned = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !assigned.is_empty() {
        return Err(BindError::Conflict(format!(
            "is already assigned to node {assigned:?}"
        )));
    }
    pod["spec"]["nodeName"] = Value::String(node.to_owned());
    if !annotations.is_empty() {
        let m = meta::meta_mut(pod).map_err(BindError::Api)?;
        let target = m.entry("annotations").or_insert_with(|| json!({}));
        if !target.is_object() {
            *target = json!({});
        }
        for (k, v) in annotations {
            target[k] = v.clone();
        }
    }
    set_condition(pod, "PodScheduled", "True", now);
    Ok(())
}

/// A new pod condition `kind` at `status`, its transition at `now`.
fn condition(kind: &str, status: &str, now: &str) -> Value {
    json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": now})
}

/// Sets (or adds) a pod condition to `status`, with a new transition time
/// `now` when the status changes.
fn set_condition(pod: &mut Value, kind: &str, status: &str, now: &str) {
    if !pod.get("status").is_some_and(Value::is_object) {
        pod["status"] = json!({});
    }
    let conditions = &mut pod["status"]["conditions"];
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let Some(list) = conditions.as_array_mut() else {
        return;
    };
    match list
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
    {
        Some(c) => {
            if c.get("status").and_then(Value::as_str) != Some(status) {
                c["status"] = Value::String(status.to_owned());
                c["lastTransitionTime"] = Value::String(now.to_owned());
            }
        }
        None => list.push(condition(kind, status, now)),
    }
}

/// The autoscaling/v1 Scale of a Deployment, ReplicaSet, StatefulSet or
/// ReplicationController.
fn to_scale(info: &ResourceInfo, obj: &Value) -> Value {
    let selector = match obj.pointer("/spec/selector") {
        // ReplicationControllers select with a plain map.
        Some(Value::Object(m)) if info.group.is_empty() => {
            let map = m
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect();
            labels::from_map(&map).to_string()
        }
        Some(sel) => serde_json::from_value(sel.clone())
            .ok()
            .and_then(|s| labels::from_label_selector(Some(&s)).ok())
            .map(|s| s.to_string())
            .unwrap_or_default(),
        None => String::new(),
    };
    let mut metadata = serde_json::Map::new();
    for field in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = obj.pointer(&format!("/metadata/{field}")) {
            metadata.insert(field.into(), v.clone());
        }
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}

/// Whether an unready pod may be evicted without using the budget
/// (upstream's `unhealthyPodEvictionPolicy`): always with `AlwaysAllow`;
/// otherwise (`IfHealthyBudget`, the default) only while the budget's
/// healthy pods meet its desired number.
fn unhealthy_pod_may_go(pdb: &Value, pod: &Value) -> bool {
    let ready = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    if ready {
        return false;
    }
    if pdb
        .pointer("/spec/unhealthyPodEvictionPolicy")
        .and_then(Value::as_str)
        == Some("AlwaysAllow")
    {
        return true;
    }
    let status = |f: &str| {
        pdb.pointer(&format!("/status/{f}"))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    let desired = status("desiredHealthy");
    status("currentHealthy") >= desired && desired > 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_binding_body_decodes_as_json_or_yaml_and_only_as_an_object() {
        let json = br#" {"metadata":{"name":"p","annotations":{"a":"b"}},"target":{"kind":"Node","name":"n1"}}"#;
        let b = BindingBody::decode(json, body::BodyFormat::Json).unwrap();
        let meta = b.metadata.unwrap();
        assert_eq!(meta.name.as_deref(), Some("p"));
        assert_eq!(meta.annotations.unwrap()["a"], "b");
        let target = b.target.unwrap();
        assert_eq!(
            (target.kind.as_deref(), target.name.as_deref()),
            (Some("Node"), Some("n1"))
        );
        let yaml = b"metadata:\n  name: p\ntarget:\n  name: n2\n";
        let b = BindingBody::decode(yaml, body::BodyFormat::Yaml).unwrap();
        assert_eq!(b.target.unwrap().name.as_deref(), Some("n2"));
        // Nulls read as absent.
        let b = BindingBody::decode(
            br#"{"metadata":null,"target":{"name":null}}"#,
            body::BodyFormat::Json,
        )
        .unwrap();
        assert!(b.metadata.is_none() && b.target.unwrap().name.is_none());
        for (bad, says) in [
            (&b"[1]"[..], "must be a JSON object"),
            (b"nope", "must be of type JSON"),
            (br#"{"target":{"name":5}}"#, "must be of type JSON"),
            (br#"{"target":{}} x"#, "must be of type JSON"),
        ] {
            let err = BindingBody::decode(bad, body::BodyFormat::Json)
                .err()
                .unwrap();
            assert!(
                matches!(&err, ApiError::BadRequest(m) if m.contains(says)),
                "{}: {err:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn scale_of_deployments_and_replication_controllers() {
        let deploy = resources::by_gvr("apps", "v1", "deployments").unwrap();
        let d = json!({"metadata": {"name": "web", "namespace": "ns", "uid": "u", "resourceVersion": "7"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "tier": "fe"}}},
            "status": {"replicas": 2}});
        let s = to_scale(deploy, &d);
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"]["replicas"], 2);
        assert_eq!(s["status"]["selector"], "app=web,tier=fe");
        assert_eq!(s["metadata"]["resourceVersion"], "7");
        let rc = resources::by_gvr("", "v1", "replicationcontrollers").unwrap();
        let r = json!({"metadata": {"name": "r"}, "spec": {"selector": {"b": "2", "a": "1"}}});
        assert_eq!(to_scale(rc, &r)["status"]["selector"], "a=1,b=2");
        assert_eq!(to_scale(rc, &r)["spec"]["replicas"], 0);
    }

    #[test]
    fn conditions_are_set_once() {
        let mut pod = json!({"status": {"phase": "Pending"}});
        set_condition(&mut pod, "PodScheduled", "True", "2026-01-01T00:00:00Z");
        set_condition(&mut pod, "PodScheduled", "True", "2026-01-02T00:00:00Z");
        let c = pod["status"]["conditions"].as_array().unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0]["status"], "True");
    }

    /// The conditions a binding at `now` splices in.
    fn scheduled(now: &str) -> Vec<u8> {
        serde_json::to_vec(&[condition("PodScheduled", "True", now)]).unwrap()
    }

    /// What the decode path stores for a binding of `pod` to `node`.
    fn bound_by_decoding(pod: &Value, node: &str, now: &str) -> Result<Vec<u8>, String> {
        let mut pod = pod.clone();
        match bind_decoded(&mut pod, node, &serde_json::Map::new(), now) {
            Ok(()) => Ok(serde_json::to_vec(&pod).unwrap()),
            Err(BindError::Conflict(reason)) => Err(reason),
            Err(BindError::Api(e)) => Err(e.to_string()),
        }
    }

    #[test]
    fn a_spliced_binding_stores_what_decoding_would() {
        let managed = json!([{"manager": "kubectl", "operation": "Update",
            "fieldsV1": {"f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}}}}}}]);
        let pods = [
            json!({"metadata": {"name": "a"}, "spec": {}}),
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "a", "namespace": "n", "managedFields": managed, "uid": "u"},
                "spec": {"containers": [{"name": "c", "image": "i"}], "schedulerName": "default-scheduler"},
                "status": {"phase": "Pending", "qosClass": "BestEffort"}}),
            json!({"metadata": {"name": "a"}, "spec": {"nodeName": "", "priority": 0}, "status": {}}),
            json!({"metadata": {"name": "a"}, "spec": {"affinity": {"x": "}]"}, "nodeSelector": {"k": "v"}},
                "status": {"phase": "Pending"}}),
            json!({"metadata": {"name": "a"}, "spec": {"zzz": true}, "zzz": null}),
            json!({"metadata": {"name": "a"}, "spec": {"a": 1}, "status": {"podIP": "1.2.3.4"}}),
        ];
        for pod in &pods {
            let stored = serde_json::to_vec(pod).unwrap();
            for node in ["n1", "node-\u{e9}\"\\"] {
                let want = bound_by_decoding(pod, node, "2026-12-04T05:00:00Z").unwrap();
                let got = splice::bound_pod(&stored, node, &scheduled("2026-12-04T05:00:00Z"))
                    .unwrap_or_else(|| panic!("not spliced: {pod}"));
                assert_eq!(
                    String::from_utf8(got).unwrap(),
                    String::from_utf8(want).unwrap(),
                    "{pod}"
                );
            }
        }
    }

    #[test]
    fn a_binding_decodes_what_it_cannot_splice() {
        let now = "2026-12-04T05:00:00Z";
        // (pod, the decode path's conflict if any)
        let cases = [
            (
                json!({"metadata": {"name": "a", "deletionTimestamp": "2026-12-04T04:00:00Z"}, "spec": {}}),
                Some("is being deleted, cannot be assigned to a host"),
            ),
            (
                json!({"metadata": {"name": "a"}, "spec": {"nodeName": "n0"}}),
                Some("is already assigned to node \"n0\""),
            ),
            (
                json!({"metadata": {"name": "a"}, "spec": {},
                    "status": {"conditions": [{"type": "PodScheduled", "status": "False"}]}}),
                None,
            ),
            (
                json!({"metadata": {"name": "a"}, "spec": {}, "status": null}),
                None,
            ),
            (
                json!({"metadata": {"name": "a"}, "spec": {"nodeName": null}}),
                None,
            ),
            (json!({"metadata": {"name": "a"}}), None),
        ];
        for (pod, conflict) in cases {
            let stored = serde_json::to_vec(&pod).unwrap();
            assert_eq!(
                splice::bound_pod(&stored, "n1", &scheduled(now)),
                None,
                "{pod}"
            );
            let decoded = bound_by_decoding(&pod, "n1", now);
            match conflict {
                Some(reason) => assert_eq!(decoded, Err(reason.to_owned())),
                None => {
                    let v: Value = serde_json::from_slice(&decoded.unwrap()).unwrap();
                    assert_eq!(v["spec"]["nodeName"], "n1");
                    let c = v["status"]["conditions"].as_array().unwrap();
                    assert_eq!(c.iter().filter(|c| c["type"] == "PodScheduled").count(), 1);
                    assert!(
                        c.iter()
                            .all(|c| c["type"] != "PodScheduled" || c["status"] == "True")
                    );
                }
            }
        }
        // Not stored by serde_json: unsorted or escaped keys on the path.
        for odd in [
            &br#"{"spec":{},"metadata":{"name":"a"}}"#[..],
            br#"{"metadata":{"name":"a"},"spec":{"containers":[],"affinity":{}}}"#,
            br#"{"metadata":{"n\u0061me":"a"},"spec":{}}"#,
            br#"{"metadata":{"name":"a"},"spec":{},"status":{"conditions":[]}}"#,
        ] {
            assert_eq!(
                splice::bound_pod(odd, "n1", &scheduled(now)),
                None,
                "{}",
                String::from_utf8_lossy(odd)
            );
        }
    }

    #[test]
    fn unhealthy_pod_eviction_policy() {
        let pod =
            |ready: &str| json!({"status": {"conditions": [{"type": "Ready", "status": ready}]}});
        let pdb = |policy: Option<&str>, current: i64, desired: i64| {
            let mut p = json!({"spec": {}, "status": {"currentHealthy": current, "desiredHealthy": desired}});
            if let Some(policy) = policy {
                p["spec"]["unhealthyPodEvictionPolicy"] = json!(policy);
            }
            p
        };
        // (policy, currentHealthy, desiredHealthy, pod ready, bypasses the budget)
        let cases = [
            (None, 2, 2, "False", true),
            (Some("IfHealthyBudget"), 2, 2, "False", true),
            (None, 1, 2, "False", false),
            (None, 0, 0, "False", false),
            (Some("AlwaysAllow"), 0, 2, "False", true),
            (Some("AlwaysAllow"), 3, 2, "True", false),
            (None, 3, 2, "True", false),
        ];
        for (policy, current, desired, ready, want) in cases {
            assert_eq!(
                unhealthy_pod_may_go(&pdb(policy, current, desired), &pod(ready)),
                want,
                "{policy:?} {current}/{desired} ready={ready}"
            );
        }
    }
}
