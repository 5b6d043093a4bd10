//! What PostFilter plugins (preemption) may use from the running framework
//! during one cycle (the parts of upstream's `framework.Handle` preemption
//! needs): the cycle's snapshot, the nominated pods, Filter and the
//! PreFilter extensions, waiting pods and events. The runtime implements it
//! per cycle; unit tests implement it over a fixed snapshot.

use std::sync::Arc;

use skiff_client::EventSink;
use skiff_client::events::PendingEvent;

use super::cycle_state::CycleState;
use super::interface::Snapshot;
use super::node_info::{NodeInfo, NominatedPods, PodInfo};
use super::status::Status;
use crate::metrics::SchedulerMetrics;

/// The framework as seen from a PostFilter plugin during one cycle.
pub trait FrameworkHandle: Send + Sync {
    /// The snapshot the cycle ran on.
    fn snapshot(&self) -> &Snapshot;
    /// Pods nominated to `node` (upstream's `PodNominator`); None: none.
    fn nominated_pods_for_node(&self, node: &str) -> Option<NominatedPods>;
    /// The node pod `key` is nominated to in memory, if any: set when
    /// preemption nominates it, before its status shows the nomination.
    fn nominated_node_of(&self, key: &str) -> Option<String>;
    /// Filter on `node` with the nominated pods of equal or higher priority
    /// counted first.
    fn run_filter_plugins_with_nominated_pods(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
    ) -> Status;
    /// Every PreFilter extension's AddPod (plugins whose PreFilter skipped
    /// are left out).
    fn run_pre_filter_extension_add_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        pod_to_add: &PodInfo,
        node: &NodeInfo,
    ) -> Status;
    /// Every PreFilter extension's RemovePod.
    fn run_pre_filter_extension_remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        pod_to_remove: &PodInfo,
        node: &NodeInfo,
    ) -> Status;
    /// Rejects pod `key` if it waits at Permit; false when it does not wait.
    fn reject_waiting_pod(&self, key: &str, plugin: &'static str, msg: &str) -> bool;
    /// Records an event (e.g. `Preempted` on a victim).
    fn record_event(&self, event: PendingEvent);
    /// Where preemption metrics go, if anywhere.
    fn metrics(&self) -> Option<&SchedulerMetrics> {
        None
    }
    /// Owned handles for work that outlives the cycle (asynchronous
    /// preemption); the default has none.
    fn detached(&self) -> DetachedHandle {
        DetachedHandle::default()
    }
}

/// Moves a waiting pod to activeQ (upstream's `Handle.Activate`).
pub trait PodActivator: Send + Sync {
    /// Activates pod `key` (`namespace/name`) if it waits in backoffQ or
    /// among the unschedulable pods (PreEnqueue still gates it); a pod in
    /// flight is requeued without waiting for an event once its attempt
    /// fails. A pod already in activeQ, or unknown, is left alone.
    fn activate(&self, key: &str);
}

/// The parts of the framework a task that outlives one scheduling cycle
/// keeps (upstream's preemption goroutine holds the framework handle).
#[derive(Clone, Default)]
pub struct DetachedHandle {
    /// Where events go; None drops them.
    pub events: Option<Arc<dyn EventSink>>,
    /// The scheduling queue; None: nothing is re-activated.
    pub activator: Option<Arc<dyn PodActivator>>,
    /// Where metrics go; None drops them.
    pub metrics: Option<SchedulerMetrics>,
}

impl std::fmt::Debug for DetachedHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DetachedHandle").finish_non_exhaustive()
    }
}
