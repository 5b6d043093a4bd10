//! Carrying out a preemption decision through the API server: evicting the
//! victims gracefully and clearing stale nominations (upstream's
//! `prepareCandidate` and `PreemptPod`).

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};

/// What evicting a victim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evicted {
    /// Its deletion was asked for: the watch will show it.
    Deleted,
    /// It was gone already (another preemption's victim too, say): no
    /// deletion of it is still to be seen.
    Gone,
}

/// The API writes preemption makes; a seam so unit tests record them.
pub trait PodPreemptor: Send + Sync {
    /// Marks `victim` with the DisruptionTarget condition (reason
    /// PreemptionByScheduler) and deletes it with its grace period. A pod
    /// already gone is not an error.
    fn preempt<'a>(
        &'a self,
        victim: &'a Pod,
        scheduler_name: &'a str,
    ) -> BoxFuture<'a, Result<Evicted, String>>;
    /// Removes `status.nominatedNodeName` from `pod`.
    fn clear_nominated_node_name<'a>(&'a self, pod: &'a Pod) -> BoxFuture<'a, Result<(), String>>;
}

/// [`PodPreemptor`] through the API server.
#[derive(Clone)]
pub struct ApiPreemptor {
    /// The scheduler's client.
    pub client: kube::Client,
}

impl std::fmt::Debug for ApiPreemptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiPreemptor").finish_non_exhaustive()
    }
}

fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 404)
}

fn api_for(client: &kube::Client, pod: &Pod) -> (Api<Pod>, String) {
    let api = Api::namespaced(
        client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or(""),
    );
    (api, pod.metadata.name.clone().unwrap_or_default())
}

impl PodPreemptor for ApiPreemptor {
    fn preempt<'a>(
        &'a self,
        victim: &'a Pod,
        scheduler_name: &'a str,
    ) -> BoxFuture<'a, Result<Evicted, String>> {
        Box::pin(async move {
            let (api, name) = api_for(&self.client, victim);
            let already = victim
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| {
                    c.iter().any(|c| {
                        c.type_ == "DisruptionTarget"
                            && c.status == "True"
                            && c.reason.as_deref() == Some("PreemptionByScheduler")
                    })
                });
            if !already {
                let patch = serde_json::json!({"status": {"conditions": [{
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "PreemptionByScheduler",
                    "message": format!(
                        "{scheduler_name}: preempting to accommodate a higher priority pod"
                    ),
                    "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().to_string(),
                }]}});
                match api
                    .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
                    .await
                {
                    Ok(_) => {}
                    Err(e) if is_not_found(&e) => return Ok(Evicted::Gone),
                    Err(e) => return Err(e.to_string()),
                }
            }
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => Ok(Evicted::Deleted),
                Err(e) if is_not_found(&e) => Ok(Evicted::Gone),
                Err(e) => Err(e.to_string()),
            }
        })
    }

    fn clear_nominated_node_name<'a>(&'a self, pod: &'a Pod) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let (api, name) = api_for(&self.client, pod);
            let patch = serde_json::json!({"status": {"nominatedNodeName": null}});
            match api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}
