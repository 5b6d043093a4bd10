//! The per-container probe loop (upstream `pkg/kubelet/prober/worker.go`).
//!
//! One worker serves one probe of one container instance: the pod worker
//! spawns it when the container starts and stops it when the container goes
//! away; a restarted container gets a new worker. The loop ticks every
//! `periodSeconds` from the moment it is spawned (the first tick at once),
//! skips ticks before `initialDelaySeconds` have passed, and holds
//! readiness/liveness until the container has started (its startup probe
//! succeeded), as upstream.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Probe;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::{ExecRunner, ProbeKind, ProbeOutcome, ProbeTarget, ProbeTiming, run_probe};

/// Upstream tries a probe that errored (as opposed to failed) this many times
/// before giving up on the tick.
const MAX_PROBE_RETRIES: usize = 3;

/// A thresholded probe result for one container, sent when it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeUpdate {
    /// The pod's UID.
    pub pod_uid: String,
    /// The container's name in the pod spec.
    pub container_name: String,
    /// Which probe this is.
    pub kind: ProbeKind,
    /// `true` for success: live, ready or started.
    pub result: bool,
}

/// Applies `successThreshold` / `failureThreshold` to a stream of attempt
/// results (the part of upstream's `doProbe` that counts runs). Pure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThresholdState {
    last: Option<bool>,
    run: u32,
    reported: Option<bool>,
}

impl ThresholdState {
    /// A state that has seen no attempt and reported nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one attempt. Returns the thresholded result when it must be
    /// reported: the first time a threshold is reached, and whenever the
    /// thresholded result changes after that.
    pub fn observe(
        &mut self,
        success: bool,
        success_threshold: u32,
        failure_threshold: u32,
    ) -> Option<bool> {
        if self.last == Some(success) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(success);
            self.run = 1;
        }
        let threshold = if success {
            success_threshold
        } else {
            failure_threshold
        };
        if self.run < threshold || self.reported == Some(success) {
            return None;
        }
        self.reported = Some(success);
        Some(success)
    }

    /// The last reported result, if any.
    pub fn reported(&self) -> Option<bool> {
        self.reported
    }
}

/// A running probe worker. Dropping it (or [`ProbeWorker::stop`]) stops the
/// loop at once.
#[derive(Debug)]
pub struct ProbeWorker {
    task: JoinHandle<()>,
    trigger: Arc<Notify>,
}

impl ProbeWorker {
    /// Stops probing.
    pub fn stop(self) {
        // Drop aborts the task.
    }

    /// Runs a probe now instead of waiting for the next period (upstream's
    /// manual trigger, used when a pod's status is refreshed and readiness is
    /// still unknown).
    pub fn trigger(&self) {
        self.trigger.notify_one();
    }

    /// Whether the loop has ended by itself: after reporting a liveness or
    /// startup failure (the container is due for a restart and upstream holds
    /// the worker until a new container appears), after a startup success, or
    /// when the update channel closed.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for ProbeWorker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Spawns a worker for a container that has no startup probe (or for the
/// startup probe itself): nothing gates it. Shorthand for [`WorkerSpec`].
pub fn spawn_worker(
    probe: Probe,
    kind: ProbeKind,
    target: ProbeTarget,
    exec: Arc<dyn ExecRunner>,
    updates: mpsc::Sender<ProbeUpdate>,
    pod_uid: String,
    container: String,
) -> ProbeWorker {
    WorkerSpec::new(probe, kind, target, exec, updates, pod_uid, container).spawn()
}

/// Spawns a worker gated on `started` (see [`WorkerSpec::started`]).
#[allow(clippy::too_many_arguments)]
pub fn spawn_gated_worker(
    probe: Probe,
    kind: ProbeKind,
    target: ProbeTarget,
    exec: Arc<dyn ExecRunner>,
    updates: mpsc::Sender<ProbeUpdate>,
    pod_uid: String,
    container: String,
    started: watch::Receiver<bool>,
) -> ProbeWorker {
    WorkerSpec::new(probe, kind, target, exec, updates, pod_uid, container)
        .started(started)
        .spawn()
}

/// An event the kubelet records on the pod for a probe attempt, as upstream's
/// prober does (event type Warning, on the container's field path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeEvent {
    /// The pod's UID.
    pub pod_uid: String,
    /// The container's name in the pod spec.
    pub container_name: String,
    /// Which probe this is.
    pub kind: ProbeKind,
    /// `Unhealthy` for failures and errors, `ProbeWarning` for warnings.
    pub reason: &'static str,
    /// Upstream's message, e.g. `Liveness probe failed: HTTP probe failed with statuscode: 500`.
    pub message: String,
}

impl ProbeEvent {
    /// The event for an attempt's outcome; none for a plain success.
    pub fn for_outcome(
        pod_uid: &str,
        container_name: &str,
        kind: ProbeKind,
        outcome: &ProbeOutcome,
    ) -> Option<ProbeEvent> {
        let (reason, message) = match outcome {
            ProbeOutcome::Success => return None,
            ProbeOutcome::Failure(out) => ("Unhealthy", format!("{kind} probe failed: {out}")),
            ProbeOutcome::Warning(out) => ("ProbeWarning", format!("{kind} probe warning: {out}")),
            ProbeOutcome::Unknown(err) => (
                "Unhealthy",
                format!("{kind} probe errored and resulted in unknown state: {err}"),
            ),
        };
        Some(ProbeEvent {
            pod_uid: pod_uid.to_string(),
            container_name: container_name.to_string(),
            kind,
            reason,
            message,
        })
    }
}

/// Everything a worker needs; [`WorkerSpec::spawn`] starts it.
#[derive(Debug)]
pub struct WorkerSpec {
    probe: Probe,
    kind: ProbeKind,
    target: ProbeTarget,
    exec: Arc<dyn ExecRunner>,
    updates: mpsc::Sender<ProbeUpdate>,
    pod_uid: String,
    container: String,
    started: Option<watch::Receiver<bool>>,
    events: Option<mpsc::Sender<ProbeEvent>>,
    running_since: Option<Instant>,
}

impl WorkerSpec {
    /// A worker with no startup gate and no event sink.
    pub fn new(
        probe: Probe,
        kind: ProbeKind,
        target: ProbeTarget,
        exec: Arc<dyn ExecRunner>,
        updates: mpsc::Sender<ProbeUpdate>,
        pod_uid: String,
        container: String,
    ) -> Self {
        WorkerSpec {
            probe,
            kind,
            target,
            exec,
            updates,
            pod_uid,
            container,
            started: None,
            events: None,
            running_since: None,
        }
    }

    /// Gates the worker on the container's `started` flag: a readiness or
    /// liveness worker runs no probe while it is `false` (the startup probe has
    /// not succeeded yet) and probes at once when it turns `true`; a startup
    /// worker stops probing while it is `true`. Feed it from the startup
    /// worker's updates.
    pub fn started(mut self, started: watch::Receiver<bool>) -> Self {
        self.started = Some(started);
        self
    }

    /// Sends a [`ProbeEvent`] for every failed, warned or errored attempt.
    /// Events are dropped, never waited for, when the channel is full.
    pub fn events(mut self, events: mpsc::Sender<ProbeEvent>) -> Self {
        self.events = Some(events);
        self
    }

    /// When the container started running (its status's `startedAt`), from
    /// which `initialDelaySeconds` counts; by default, when the worker is
    /// spawned. Matters for containers already running when the kubelet
    /// starts.
    pub fn running_since(mut self, at: Instant) -> Self {
        self.running_since = Some(at);
        self
    }

    /// Starts the loop on the current tokio runtime.
    pub fn spawn(self) -> ProbeWorker {
        let trigger = Arc::new(Notify::new());
        let worker = Worker {
            timing: ProbeTiming::of(&self.probe),
            probe: self.probe,
            kind: self.kind,
            target: self.target,
            exec: self.exec,
            updates: self.updates,
            pod_uid: self.pod_uid,
            container: self.container,
            started: self.started,
            events: self.events,
            running_since: self.running_since,
            trigger: trigger.clone(),
            state: ThresholdState::new(),
        };
        ProbeWorker {
            task: tokio::spawn(worker.run()),
            trigger,
        }
    }
}

/// What the loop does after a tick.
enum Next {
    Continue,
    Finish,
}

struct Worker {
    probe: Probe,
    kind: ProbeKind,
    timing: ProbeTiming,
    target: ProbeTarget,
    exec: Arc<dyn ExecRunner>,
    updates: mpsc::Sender<ProbeUpdate>,
    pod_uid: String,
    container: String,
    started: Option<watch::Receiver<bool>>,
    events: Option<mpsc::Sender<ProbeEvent>>,
    running_since: Option<Instant>,
    trigger: Arc<Notify>,
    state: ThresholdState,
}

impl Worker {
    #[tracing::instrument(skip_all, fields(pod_uid = %self.pod_uid, container = %self.container, kind = %self.kind))]
    async fn run(mut self) {
        let start = self.running_since.unwrap_or_else(Instant::now);
        let mut ticker = tokio::time::interval(self.timing.period);
        // Go's ticker drops ticks for a slow receiver rather than bursting.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = self.trigger.notified() => {}
                () = started_changed(&mut self.started) => {}
            }
            if let Next::Finish = self.tick(start).await {
                return;
            }
        }
    }

    async fn tick(&mut self, start: Instant) -> Next {
        // Upstream compares whole seconds since the container started.
        if start.elapsed().as_secs() < self.timing.initial_delay.as_secs() {
            return Next::Continue;
        }
        let started = self.started.as_ref().is_none_or(|rx| *rx.borrow());
        match self.kind {
            ProbeKind::Startup if started && self.started.is_some() => return Next::Continue,
            ProbeKind::Liveness | ProbeKind::Readiness if !started => return Next::Continue,
            _ => {}
        }
        let outcome = self.attempt().await;
        if let Some(event) =
            ProbeEvent::for_outcome(&self.pod_uid, &self.container, self.kind, &outcome)
        {
            tracing::info!(reason = event.reason, "{}", event.message);
            if let Some(events) = &self.events {
                // A full sink loses an event rather than delaying probes.
                let _ = events.try_send(event);
            }
        }
        let success = match &outcome {
            // Upstream throws an errored result away.
            ProbeOutcome::Unknown(_) => return Next::Continue,
            other => other.is_success(),
        };
        let Some(result) = self.state.observe(
            success,
            self.timing.success_threshold,
            self.timing.failure_threshold,
        ) else {
            return Next::Continue;
        };
        let update = ProbeUpdate {
            pod_uid: self.pod_uid.clone(),
            container_name: self.container.clone(),
            kind: self.kind,
            result,
        };
        if self.updates.send(update).await.is_err() {
            return Next::Finish;
        }
        match (self.kind, result) {
            // The container will be restarted; upstream holds the worker until a
            // new container id, which here is a new worker.
            (ProbeKind::Liveness | ProbeKind::Startup, false) => Next::Finish,
            // Started: the startup probe has done its job.
            (ProbeKind::Startup, true) => Next::Finish,
            _ => Next::Continue,
        }
    }

    /// One tick's probe, retried while it errors.
    async fn attempt(&self) -> ProbeOutcome {
        let mut outcome = ProbeOutcome::Unknown(String::new());
        for _ in 0..MAX_PROBE_RETRIES {
            outcome = run_probe(&self.probe, self.kind, &self.target, self.exec.as_ref()).await;
            if !matches!(outcome, ProbeOutcome::Unknown(_)) {
                break;
            }
        }
        outcome
    }
}

/// Resolves when the gate changes; never when there is no gate or its sender
/// is gone.
async fn started_changed(started: &mut Option<watch::Receiver<bool>>) {
    if let Some(rx) = started
        && rx.changed().await.is_ok()
    {
        return;
    }
    std::future::pending::<()>().await;
}
