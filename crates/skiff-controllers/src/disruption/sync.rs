//! One PodDisruptionBudget's sync (upstream's `sync` / `trySync`) and the
//! finders of the pods' controllers' scale.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DynamicObject, GroupVersionKind, PostParams};
use kube::runtime::reflector::ObjectRef;
use skiff_api::selector::labels::from_label_selector;
use skiff_client::events::PendingEvent;

use super::DisruptionController;
use super::status::{
    ControllerAndScale, build_disrupted_pod_map, count_healthy_pods, expected_pod_count,
    fail_safe_status, new_status,
};
use crate::cached_pod::CachedPod;
use crate::controller::{Action, Reconciler, SyncError};
use crate::podcontrol::record_event;
use crate::podutil::controller_of;

/// Why a sync failed: a conflict is retried as is, anything else also
/// writes the fail-safe status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TrySyncError {
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Api(#[from] kube::Error),
}

impl Reconciler for DisruptionController {
    fn name(&self) -> &str {
        super::NAME
    }

    async fn sync(&self, key: &str) -> Result<Action, SyncError> {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        let Some(pdb) = self.pdbs.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(Action::Await);
        };
        match self.try_sync(&pdb).await {
            Ok(action) => Ok(action),
            Err(TrySyncError::Api(kube::Error::Api(e))) if e.code == 409 => {
                Err(Box::new(kube::Error::Api(e)))
            }
            Err(err) => {
                tracing::info!(pdb = %key, error = %err, "failed to sync PDB");
                let status = fail_safe_status(&pdb, &err.to_string(), Timestamp::now());
                self.write_status(&pdb, status).await?;
                Err(Box::new(err))
            }
        }
    }
}

impl DisruptionController {
    async fn try_sync(&self, pdb: &PodDisruptionBudget) -> Result<Action, TrySyncError> {
        let pods = match self.pods_for_pdb(pdb) {
            Ok(pods) => pods,
            Err(e) => {
                self.event(pdb, false, "NoPods", format!("Failed to get pods: {e}"));
                return Err(TrySyncError::Failed(e));
            }
        };
        if pods.is_empty() {
            self.event(pdb, true, "NoPods", "No matching pods found".to_owned());
        }
        let spec = pdb.spec.clone().unwrap_or_default();
        let uses_scale = spec.max_unavailable.is_some()
            || matches!(spec.min_available, Some(IntOrString::String(_)));
        let scaled = if uses_scale {
            self.scale_controllers(&pods).await
        } else {
            Ok(HashMap::new())
        };
        let expected = scaled
            .and_then(|scaled| {
                expected_pod_count(&spec, &pods, |r, ns| {
                    Ok(self
                        .find_controller(r, ns)?
                        .or_else(|| scaled.get(&r.uid).cloned()))
                })
            })
            .map_err(|e| {
                self.event(
                    pdb,
                    false,
                    "CalculateExpectedPodCountFailed",
                    format!("Failed to calculate the number of expected pods: {e}"),
                );
                TrySyncError::Failed(e)
            })?;
        if !expected.unmanaged_pods.is_empty() {
            let selector = spec
                .selector
                .as_ref()
                .map(|s| serde_json::to_string(s).unwrap_or_default())
                .unwrap_or_else(|| "nil".to_owned());
            self.event(
                pdb,
                false,
                "UnmanagedPods",
                format!(
                    "Pods selected by this PodDisruptionBudget (selector: {selector}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value."
                ),
            );
        }
        let now = Timestamp::now();
        let disrupted = build_disrupted_pod_map(&pods, pdb, now);
        for name in &disrupted.not_deleted {
            self.pod_event(
                pdb,
                name,
                "NotDeleted",
                format!(
                    "Pod was expected by PDB {}/{} to be deleted but it wasn't",
                    pdb.metadata.namespace.as_deref().unwrap_or(""),
                    pdb.metadata.name.as_deref().unwrap_or("")
                ),
            );
        }
        let current_healthy = count_healthy_pods(&pods, &disrupted.pods, now);
        if let Some(status) = new_status(pdb, current_healthy, &expected, disrupted.pods, now) {
            self.write_status(pdb, status).await?;
        }
        Ok(match disrupted.recheck {
            Some(at) => {
                let wait = at.duration_since(now).unsigned_abs();
                Action::RequeueAfter(wait.max(Duration::from_millis(1)))
            }
            None => Action::Await,
        })
    }

    /// Pods in the budget's namespace its selector matches.
    fn pods_for_pdb(&self, pdb: &PodDisruptionBudget) -> Result<Vec<Arc<CachedPod>>, String> {
        let sel = from_label_selector(pdb.spec.as_ref().and_then(|s| s.selector.as_ref()))
            .map_err(|e| e.0)?;
        let empty = std::collections::BTreeMap::new();
        let ns = pdb.metadata.namespace.as_deref().unwrap_or("");
        Ok(self
            .pods
            .list(ns)
            .into_iter()
            .filter(|p| sel.matches(p.metadata.labels.as_ref().unwrap_or(&empty)))
            .collect())
    }

    async fn write_status(
        &self,
        pdb: &PodDisruptionBudget,
        status: k8s_openapi::api::policy::v1::PodDisruptionBudgetStatus,
    ) -> Result<(), kube::Error> {
        let ns = pdb.metadata.namespace.as_deref().unwrap_or("");
        let name = pdb.metadata.name.as_deref().unwrap_or("");
        let api: Api<PodDisruptionBudget> = Api::namespaced(self.client.clone(), ns);
        let mut new = pdb.clone();
        new.status = Some(status);
        api.replace_status(name, &PostParams::default(), &new)
            .await
            .map(|_| ())
    }

    /// The controllers, by the pods' controllerRef UID, that no built-in
    /// finder knows, found through their scale subresource (upstream's
    /// `getScaleController`).
    async fn scale_controllers(
        &self,
        pods: &[Arc<CachedPod>],
    ) -> Result<HashMap<String, ControllerAndScale>, String> {
        let mut out = HashMap::new();
        let mut seen = std::collections::HashSet::new();
        for pod in pods {
            let Some(r) = controller_of(&pod.metadata) else {
                continue;
            };
            let ns = pod.metadata.namespace.as_deref().unwrap_or("");
            if !seen.insert(r.uid.clone()) || self.find_controller(r, ns)?.is_some() {
                continue;
            }
            if let Some(c) = self.find_scale_controller(r, ns).await? {
                out.insert(r.uid.clone(), c);
            }
        }
        Ok(out)
    }

    async fn find_scale_controller(
        &self,
        r: &OwnerReference,
        ns: &str,
    ) -> Result<Option<ControllerAndScale>, String> {
        let group = api_group(&r.api_version)?;
        let version = r.api_version.rsplit('/').next().unwrap_or("");
        let gvk = GroupVersionKind::gvk(group, version, &r.kind);
        let Ok((resource, caps)) = kube::discovery::pinned_kind(&self.client, &gvk).await else {
            return Err(format!(
                "no matches for kind {:?} in version {:?}",
                r.kind, r.api_version
            ));
        };
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &resource);
        let scale = match api.get_scale(&r.name).await {
            Ok(scale) => scale,
            Err(kube::Error::Api(e)) if e.code == 404 => {
                if !caps.subresources.iter().any(|(s, _)| s.plural == "scale") {
                    return Err(format!(
                        "{} does not implement the scale subresource",
                        if group.is_empty() {
                            resource.plural.clone()
                        } else {
                            format!("{}.{group}", resource.plural)
                        }
                    ));
                }
                return Ok(None);
            }
            Err(e) => return Err(e.to_string()),
        };
        if scale.metadata.uid.as_deref() != Some(r.uid.as_str()) {
            return Ok(None);
        }
        Ok(Some(ControllerAndScale {
            uid: r.uid.clone(),
            scale: scale.spec.and_then(|s| s.replicas).unwrap_or(0),
        }))
    }

    /// The controller owning pods through `r`, tried as upstream's finders
    /// in turn: a ReplicaSet not owned by a Deployment, a Deployment through
    /// its ReplicaSet, a ReplicationController, a StatefulSet.
    pub(crate) fn find_controller(
        &self,
        r: &OwnerReference,
        ns: &str,
    ) -> Result<Option<ControllerAndScale>, String> {
        let group = api_group(&r.api_version)?;
        let apps = group == "apps" || group == "extensions";
        match r.kind.as_str() {
            "ReplicaSet" if apps => {
                let Some(rs) = self.replica_sets.get(&ObjectRef::new(&r.name).within(ns)) else {
                    return Ok(None);
                };
                if rs.metadata.uid.as_deref() != Some(r.uid.as_str()) {
                    return Ok(None);
                }
                match controller_of(&rs.metadata) {
                    Some(d) if d.kind == "Deployment" => {
                        let dkey = ObjectRef::new(&d.name).within(ns);
                        let Some(dep) = self.deployments.get(&dkey) else {
                            return Ok(None);
                        };
                        if dep.metadata.uid.as_deref() != Some(d.uid.as_str()) {
                            return Ok(None);
                        }
                        let scale = dep.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                        Ok(Some(ControllerAndScale {
                            uid: d.uid.clone(),
                            scale,
                        }))
                    }
                    _ => Ok(Some(ControllerAndScale {
                        uid: r.uid.clone(),
                        scale: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                    })),
                }
            }
            "ReplicationController" if group.is_empty() => Ok(self
                .replication_controllers
                .get(&ObjectRef::new(&r.name).within(ns))
                .and_then(|rc| {
                    (rc.metadata.uid.as_deref() == Some(r.uid.as_str())).then(|| {
                        ControllerAndScale {
                            uid: r.uid.clone(),
                            scale: rc.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                        }
                    })
                })),
            "StatefulSet" if apps => Ok(self
                .stateful_sets
                .get(&ObjectRef::new(&r.name).within(ns))
                .and_then(|ss| {
                    (ss.metadata.uid.as_deref() == Some(r.uid.as_str())).then(|| {
                        ControllerAndScale {
                            uid: r.uid.clone(),
                            scale: ss.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                        }
                    })
                })),
            _ => Ok(None),
        }
    }

    pub(crate) fn event(
        &self,
        pdb: &PodDisruptionBudget,
        normal: bool,
        reason: &str,
        note: String,
    ) {
        record_event(self.events.as_ref(), pdb, normal, reason, "Sync", note);
    }

    fn pod_event(&self, pdb: &PodDisruptionBudget, pod: &str, reason: &str, note: String) {
        self.events.record(PendingEvent {
            regarding: ObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Pod".to_owned()),
                name: Some(pod.to_owned()),
                namespace: pdb.metadata.namespace.clone(),
                ..ObjectReference::default()
            },
            normal: false,
            reason: reason.to_owned(),
            action: "Sync".to_owned(),
            note,
        });
    }
}

/// The group of an `apiVersion` (`""` for the core group), as upstream's
/// `schema.ParseGroupVersion`.
fn api_group(api_version: &str) -> Result<&str, String> {
    match api_version.split('/').collect::<Vec<_>>().as_slice() {
        [_] => Ok(""),
        [g, _] => Ok(g),
        _ => Err(format!("unexpected GroupVersion string: {api_version}")),
    }
}
