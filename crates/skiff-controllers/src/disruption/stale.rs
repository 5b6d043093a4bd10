//! Resets `DisruptionTarget=True` pod conditions that went stale: set by an
//! eviction or preemption whose deletion never came (upstream's
//! `syncStalePodDisruption`).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;

use super::DisruptionController;
use crate::cached_pod::CachedPod;
use crate::controller::{Action, Reconciler, SyncError};
use crate::podutil::phase;

/// How long a `DisruptionTarget=True` condition may stay on a pod that is
/// not terminating (upstream's `stalePodDisruptionTimeout`).
pub const STALE_POD_DISRUPTION_TIMEOUT: Duration = Duration::from_secs(120);

/// The kubelet's reason, never stale: the kubelet may take long to act.
const TERMINATION_BY_KUBELET: &str = "TerminationByKubelet";

/// `Some(wait)` when the pod carries a `DisruptionTarget=True` condition
/// that becomes stale after `wait` (zero: already stale).
pub fn stale_disruption_wait(pod: &CachedPod, now: Timestamp) -> Option<Duration> {
    if pod.metadata.deletion_timestamp.is_some() || matches!(phase(pod), "Succeeded" | "Failed") {
        return None;
    }
    let cond = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "DisruptionTarget")?;
    if cond.status != "True" || cond.reason.as_deref() == Some(TERMINATION_BY_KUBELET) {
        return None;
    }
    let since = cond
        .last_transition_time
        .as_ref()
        .map_or(Duration::MAX, |t| {
            now.duration_since(t.0).try_into().unwrap_or(Duration::ZERO)
        });
    Some(STALE_POD_DISRUPTION_TIMEOUT.saturating_sub(since))
}

/// The stale-condition worker's reconciler, keyed by pod.
pub(crate) struct StalePodDisruption(pub(crate) Arc<DisruptionController>);

impl Reconciler for StalePodDisruption {
    fn name(&self) -> &str {
        "disruption-stale-pod-condition"
    }

    async fn sync(&self, key: &str) -> Result<Action, SyncError> {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        let Some(pod) = self.0.pod_store.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(Action::Await);
        };
        let now = Timestamp::now();
        match stale_disruption_wait(&pod, now) {
            None => return Ok(Action::Await),
            Some(wait) if !wait.is_zero() => return Ok(Action::RequeueAfter(wait)),
            Some(_) => {}
        }
        // Upstream's UpdatePodCondition with only type and status: the
        // reason and message go, the transition time is now. A strategic
        // merge of that condition (keyed by type), as the cached pod lacks
        // most of the pod; the resourceVersion keeps the UpdateStatus
        // conflict check.
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": pod.metadata.resource_version},
            "status": {"conditions": [{
                "type": "DisruptionTarget",
                "status": "False",
                "reason": null,
                "message": null,
                "lastTransitionTime": Time(now),
            }]},
        });
        let api: Api<CachedPod> = Api::namespaced(self.0.client.clone(), ns);
        api.patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await?;
        tracing::debug!(pod = %key, "reset stale DisruptionTarget condition to False");
        Ok(Action::Await)
    }
}
