//! PostFilter: the per-cycle [`FrameworkHandle`] preemption works through,
//! and running the PostFilter plugins.

use std::sync::Arc;

use skiff_client::EventSink;
use skiff_client::events::PendingEvent;

use super::{Diagnosis, Framework, PodNominator};
use crate::framework::{
    Code, CycleState, DetachedHandle, FrameworkHandle, NodeInfo, NominatedPods, PodActivator,
    PodInfo, PostFilterResult, Snapshot, Status,
};
use crate::metrics::SchedulerMetrics;

/// The framework, the cycle's snapshot, the nominator, the event sink and
/// the queue, handed to PostFilter plugins.
pub struct CycleHandle<'a> {
    /// The profile's framework.
    pub framework: &'a Framework,
    /// The snapshot the cycle ran on.
    pub snapshot: &'a Snapshot,
    /// Nominated pods (the scheduling queue); None: nobody is nominated.
    pub nominator: Option<&'a dyn PodNominator>,
    /// Where events go; None drops them.
    pub events: Option<Arc<dyn EventSink>>,
    /// Where preemption metrics go; None drops them.
    pub metrics: Option<SchedulerMetrics>,
    /// Re-activates pods whose asynchronous preemption ended (the queue);
    /// None: nothing is re-activated.
    pub activator: Option<Arc<dyn PodActivator>>,
}

impl std::fmt::Debug for CycleHandle<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CycleHandle").finish_non_exhaustive()
    }
}

impl FrameworkHandle for CycleHandle<'_> {
    fn snapshot(&self) -> &Snapshot {
        self.snapshot
    }

    fn nominated_pods_for_node(&self, node: &str) -> Option<NominatedPods> {
        self.nominator
            .filter(|n| n.has_nominated_pods())
            .and_then(|n| n.nominated_pods_for_node(node))
    }

    fn nominated_node_of(&self, key: &str) -> Option<String> {
        self.nominator?.nominated_node_of(key)
    }

    fn run_filter_plugins_with_nominated_pods(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        let nominated = self.nominated_pods_for_node(node.name());
        let nominated = nominated.as_deref().unwrap_or_default();
        self.framework
            .run_filter_plugins_with_nominated_pods(state, pod, node, nominated)
    }

    fn run_pre_filter_extension_add_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        pod_to_add: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        self.framework
            .run_pre_filter_extension(state, pod, pod_to_add, node, true)
    }

    fn run_pre_filter_extension_remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        pod_to_remove: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        self.framework
            .run_pre_filter_extension(state, pod, pod_to_remove, node, false)
    }

    fn reject_waiting_pod(&self, key: &str, plugin: &'static str, msg: &str) -> bool {
        let waiting = self.framework.waiting_pods();
        if !waiting.keys().iter().any(|k| k == key) {
            return false;
        }
        waiting.reject(key, plugin, msg);
        true
    }

    fn record_event(&self, event: PendingEvent) {
        if let Some(e) = &self.events {
            e.record(event);
        }
    }

    fn metrics(&self) -> Option<&SchedulerMetrics> {
        self.metrics.as_ref()
    }

    fn detached(&self) -> DetachedHandle {
        DetachedHandle {
            events: self.events.clone(),
            activator: self.activator.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

impl Framework {
    /// Every PreFilter extension's AddPod (`add`) or RemovePod, skipping
    /// plugins whose PreFilter returned Skip this cycle.
    pub fn run_pre_filter_extension(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        other: &PodInfo,
        node: &NodeInfo,
        add: bool,
    ) -> Status {
        for p in &self.pre_filter {
            if state.skip_filter_plugins.contains(p.name()) {
                continue;
            }
            let Some(ext) = p.as_pre_filter().and_then(|pf| pf.extensions()) else {
                continue;
            };
            let s = if add {
                ext.add_pod(state, pod, other, node)
            } else {
                ext.remove_pod(state, pod, other, node)
            };
            if !s.is_success() {
                let what = if add { "AddPod" } else { "RemovePod" };
                return Status::error(format!(
                    "running {what} on PreFilter plugin {:?}: {s}",
                    p.name()
                ))
                .with_plugin(p.name());
            }
        }
        Status::success()
    }

    /// PostFilter (preemption) until one succeeds; the statuses' messages
    /// are joined for the FailedScheduling message. The last result a
    /// plugin returned is kept (it may clear the pod's nomination).
    pub async fn run_post_filter_plugins(
        &self,
        handle: &CycleHandle<'_>,
        state: &CycleState,
        pod: &PodInfo,
        diagnosis: &Diagnosis,
    ) -> (Option<PostFilterResult>, Status) {
        let mut reasons = Vec::new();
        let mut result = None;
        for p in &self.post_filter {
            let Some(pf) = p.as_post_filter() else {
                continue;
            };
            let (r, s) = pf
                .post_filter(
                    handle,
                    state,
                    pod,
                    &diagnosis.node_to_status,
                    diagnosis.absent_nodes_status.as_ref(),
                )
                .await;
            if s.is_success() {
                return (r, s);
            }
            if !s.is_rejected() {
                return (r, s.with_plugin(p.name()));
            }
            if r.is_some() {
                result = r;
            }
            reasons.extend(s.reasons().iter().cloned());
        }
        (result, Status::with_reasons(Code::Unschedulable, reasons))
    }
}
