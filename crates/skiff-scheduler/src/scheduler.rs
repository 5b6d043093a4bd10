//! The scheduling loop (upstream's `scheduleOne`): pop a pod, update the
//! snapshot, run the scheduling cycle synchronously, assume the pod, and
//! run its binding cycle as a task of its own so many bindings are in
//! flight at once. Failures set PodScheduled=False, emit FailedScheduling
//! and requeue the pod.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::Api;
use kube::api::{Patch, PatchParams};
use skiff_client::EventSink;
use skiff_client::events::PendingEvent;

use crate::cache::{Cache, CacheSnapshot};
use crate::framework::{
    ClusterEvent, Code, CycleState, EventObjects, EventResource, PodInfo, QueuedPodInfo, Status,
    action,
};
use crate::metrics::{AttemptResult, SchedulerMetrics};
use crate::queue::{SchedulingQueue, now};
use crate::runtime::{CycleHandle, Framework, ScheduleError};

/// Writes pod status changes (a seam: the API server, or a recorder in tests).
pub trait PodStatusWriter: Send + Sync {
    /// Sets PodScheduled=False with `reason` and `message` (and the
    /// nominated node when preemption chose one; `Some("")` clears it).
    fn set_unschedulable(&self, pod: &Pod, reason: &str, message: &str, nominated: Option<&str>);
}

/// [`PodStatusWriter`] through the API server's `pods/status`.
#[derive(Clone)]
pub struct ApiStatusWriter {
    /// The client.
    pub client: kube::Client,
}

impl std::fmt::Debug for ApiStatusWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiStatusWriter").finish_non_exhaustive()
    }
}

impl PodStatusWriter for ApiStatusWriter {
    fn set_unschedulable(&self, pod: &Pod, reason: &str, message: &str, nominated: Option<&str>) {
        let api: Api<Pod> = Api::namespaced(
            self.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or(""),
        );
        let name = pod.metadata.name.clone().unwrap_or_default();
        let mut status = serde_json::json!({
            "conditions": [{
                "type": "PodScheduled",
                "status": "False",
                "reason": reason,
                "message": message,
                "lastProbeTime": null,
                "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().to_string(),
            }]
        });
        match nominated {
            // Strategic merge: null deletes the field.
            Some("") => status["nominatedNodeName"] = serde_json::Value::Null,
            Some(n) => status["nominatedNodeName"] = serde_json::Value::from(n),
            None => {}
        }
        let patch = serde_json::json!({ "status": status });
        tokio::spawn(async move {
            if let Err(err) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
                .await
            {
                tracing::warn!(pod = %name, error = %err, "cannot update pod status");
            }
        });
    }
}

/// Upstream's `updatePod` check: write only when the condition (or the
/// nominated node) would change.
pub fn condition_changed(pod: &Pod, reason: &str, message: &str, nominated: Option<&str>) -> bool {
    let status = pod.status.as_ref();
    let cond = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
    let same = cond.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some(reason)
            && c.message.as_deref() == Some(message)
    });
    let current = status
        .and_then(|s| s.nominated_node_name.as_deref())
        .unwrap_or("");
    let nominated_same = nominated.is_none_or(|n| n == current);
    !(same && nominated_same)
}

/// Everything the loop needs.
pub struct Scheduler {
    /// Frameworks by profile (scheduler) name.
    pub frameworks: HashMap<String, Arc<Framework>>,
    /// The queue.
    pub queue: Arc<SchedulingQueue>,
    /// The cache.
    pub cache: Arc<Cache>,
    /// Where events go.
    pub events: Arc<dyn EventSink>,
    /// Where status changes go.
    pub status: Arc<dyn PodStatusWriter>,
    /// Attempt counts and latencies.
    pub metrics: SchedulerMetrics,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").finish_non_exhaustive()
    }
}

fn reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

impl Scheduler {
    /// Schedules pods until the queue is closed.
    pub async fn run(self: Arc<Self>) {
        let mut snap = CacheSnapshot::default();
        while let Some(p) = self.queue.pop().await {
            self.schedule_one(p, &mut snap).await;
        }
    }

    /// One pod's scheduling cycle; its binding cycle is spawned.
    pub async fn schedule_one(self: &Arc<Self>, mut qpi: QueuedPodInfo, snap: &mut CacheSnapshot) {
        let pod = qpi.pod_info.clone();
        let sched_name = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or(crate::config::DEFAULT_SCHEDULER_NAME);
        let Some(fwk) = self.frameworks.get(sched_name).cloned() else {
            self.queue.done(&pod.key);
            return;
        };
        if pod.pod.metadata.deletion_timestamp.is_some() || self.cache.pod_node(&pod.key).is_some()
        {
            self.queue.done(&pod.key);
            return;
        }
        // Upstream times an attempt from here, after the skip checks.
        let start = now();
        self.cache.update_snapshot(snap);
        let mut state = CycleState::new();
        let result = fwk.schedule_pod(&mut state, &pod, &snap.snapshot, Some(&*self.queue));
        let result = match result {
            Ok(r) => r,
            Err(ScheduleError::Fit(mut fit)) => {
                let mut nominated = None;
                if fwk.has_post_filter_plugins() {
                    let handle = CycleHandle {
                        framework: &fwk,
                        snapshot: &snap.snapshot,
                        nominator: Some(&*self.queue),
                        events: Some(self.events.clone()),
                        metrics: Some(self.metrics.clone()),
                        activator: Some(self.queue.clone()),
                    };
                    let (r, s) = fwk
                        .run_post_filter_plugins(&handle, &state, &pod, &fit.diagnosis)
                        .await;
                    if !s.is_success() && !s.to_string().is_empty() {
                        fit.diagnosis.post_filter_msg = s.to_string();
                    }
                    // A result overrides the nomination; "" clears it.
                    if let Some(r) = r {
                        let node = r.nominated_node_name.unwrap_or_default();
                        self.queue.set_nominated_node(&pod, &node);
                        nominated = Some(node);
                    }
                }
                qpi.unschedulable_plugins = fit.diagnosis.unschedulable_plugins.clone();
                qpi.pending_plugins = fit.diagnosis.pending_plugins.clone();
                let msg = fit.to_string();
                self.fail(
                    qpi,
                    Code::Unschedulable,
                    &msg,
                    nominated.as_deref(),
                    fwk.profile_name(),
                    start,
                );
                return;
            }
            Err(ScheduleError::NoNodes) => {
                self.fail(
                    qpi,
                    Code::UnschedulableAndUnresolvable,
                    crate::runtime::NO_NODES_AVAILABLE,
                    None,
                    fwk.profile_name(),
                    start,
                );
                return;
            }
            Err(ScheduleError::Error(s)) => {
                self.fail(
                    qpi,
                    Code::Error,
                    &s.to_string(),
                    None,
                    fwk.profile_name(),
                    start,
                );
                return;
            }
        };
        let host = result.suggested_host;
        // The queued PodInfo is what the cache counts on `host` until the
        // binding lands. Upstream assumes a deep copy with the node set;
        // nothing reads the node off a pod the cache holds (it files pods by
        // node), and the copy would cost a clone of every pod.
        let assumed = pod.clone();
        if let Err(err) = self.cache.assume_pod(assumed.clone(), &host) {
            self.fail(
                qpi,
                Code::Error,
                &err.to_string(),
                None,
                fwk.profile_name(),
                start,
            );
            return;
        }
        // The assumed pod now counts on its node; as a nominated pod it
        // would count twice.
        self.queue.set_nominated_node(&pod, "");
        let s = fwk.run_reserve_plugins_reserve(&mut state, &assumed, &host);
        if !s.is_success() {
            fwk.run_reserve_plugins_unreserve(&mut state, &assumed, &host);
            let _ = self.cache.forget_pod(&pod.key);
            self.fail_with_status(qpi, &s, fwk.profile_name(), start);
            return;
        }
        let permit = fwk.run_permit_plugins(&mut state, &assumed, &host);
        if !permit.is_success() && permit.code() != Code::Wait {
            fwk.run_reserve_plugins_unreserve(&mut state, &assumed, &host);
            let _ = self.cache.forget_pod(&pod.key);
            self.fail_with_status(qpi, &permit, fwk.profile_name(), start);
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            this.binding_cycle(fwk, state, qpi, assumed, host, start)
                .await;
        });
    }

    async fn binding_cycle(
        self: Arc<Self>,
        fwk: Arc<Framework>,
        mut state: CycleState,
        qpi: QueuedPodInfo,
        assumed: Arc<PodInfo>,
        host: String,
        start: Instant,
    ) {
        let mut s = fwk.wait_on_permit(&assumed).await;
        if s.is_success() {
            s = fwk.run_pre_bind_plugins(&state, &assumed, &host).await;
        }
        if s.is_success() {
            s = fwk.run_bind_plugins(&state, &assumed, &host).await;
        }
        if !s.is_success() {
            fwk.run_reserve_plugins_unreserve(&mut state, &assumed, &host);
            let _ = self.cache.forget_pod(&assumed.key);
            // The forgotten pod freed room: others may fit now.
            self.queue.move_on_event(
                ClusterEvent {
                    resource: EventResource::Pod,
                    action: action::DELETE,
                },
                &EventObjects::Pod {
                    old: Some(Arc::new(assumed.bound_to(&host))),
                    new: None,
                },
            );
            self.fail_with_status(qpi, &s, fwk.profile_name(), start);
            return;
        }
        self.queue.done(&assumed.key);
        let bound = now();
        self.metrics.observe_attempt(
            AttemptResult::Scheduled,
            fwk.profile_name(),
            bound.saturating_duration_since(start),
        );
        self.metrics.observe_scheduled_pod(
            qpi.attempts,
            bound.saturating_duration_since(qpi.initial_attempt_timestamp),
        );
        fwk.run_post_bind_plugins(&state, &assumed, &host);
        self.events.record(PendingEvent {
            regarding: reference(&qpi.pod_info.pod),
            normal: true,
            reason: "Scheduled".into(),
            action: "Binding".into(),
            note: format!("Successfully assigned {} to {host}", assumed.key),
        });
    }

    fn fail_with_status(&self, mut qpi: QueuedPodInfo, s: &Status, profile: &str, start: Instant) {
        if s.is_rejected()
            && let Some(p) = s.plugin()
        {
            qpi.unschedulable_plugins.insert(p);
        }
        self.fail(qpi, s.code(), &s.to_string(), None, profile, start);
    }

    /// Upstream's `handleSchedulingFailure`: requeue, FailedScheduling
    /// event, PodScheduled=False (only when it changes); counts the attempt
    /// of `profile` begun at `start`.
    fn fail(
        &self,
        qpi: QueuedPodInfo,
        code: Code,
        message: &str,
        nominated: Option<&str>,
        profile: &str,
        start: Instant,
    ) {
        let pod = qpi.pod_info.pod.clone();
        let (reason, result) = match code {
            Code::Unschedulable | Code::UnschedulableAndUnresolvable | Code::Pending => {
                ("Unschedulable", AttemptResult::Unschedulable)
            }
            _ => ("SchedulerError", AttemptResult::Error),
        };
        self.metrics
            .observe_attempt(result, profile, now().saturating_duration_since(start));
        tracing::debug!(pod = %qpi.pod_info.key, %message, "unable to schedule pod");
        self.queue.add_unschedulable_if_not_present(qpi);
        self.events.record(PendingEvent {
            regarding: reference(&pod),
            normal: false,
            reason: "FailedScheduling".into(),
            action: "Scheduling".into(),
            note: message.to_owned(),
        });
        if condition_changed(&pod, reason, message, nominated) {
            self.status
                .set_unschedulable(&pod, reason, message, nominated);
        }
    }
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
