//! One pod worker per pod: a task that drives its pod through sandbox →
//! init containers → containers → running → termination, one sync at a
//! time, woken by a new pod object, a new runtime snapshot, a back-off
//! expiring or a periodic resync (upstream's `podWorkers` + `SyncPod` /
//! `SyncTerminatingPod` / `SyncTerminatedPod`).

pub mod plan;
mod probes;
pub mod snapshot;
mod start;
mod terminate;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ObjectReference, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use skiff_client::events::{EventSink, PendingEvent};
use tokio::sync::watch;

use crate::kubelet::Shared;
use crate::status::{self, StatusInput, Waiting};
pub use probes::CriExec;
use snapshot::PodSnapshot;

/// How often a pod is synced without any trigger.
const RESYNC: Duration = Duration::from_secs(10);
/// Retry delay after a failed sandbox or volume setup.
const RETRY: Duration = Duration::from_secs(2);

/// A snapshot with the number of the relist that produced it.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Relist generation: relists started after a worker acted have a
    /// higher number than the one it waits for.
    pub generation: u64,
    /// The pod's runtime objects.
    pub pod: PodSnapshot,
}

/// The handles a worker is driven through.
#[derive(Debug)]
pub struct WorkerInputs {
    /// The pod as the API has it; `None` once it is gone from the API.
    pub pod: watch::Receiver<Option<Arc<Pod>>>,
    /// The pod's runtime objects after each relist.
    pub snapshot: watch::Receiver<Snapshot>,
    /// Kubelet shutdown: stop without touching containers.
    pub shutdown: watch::Receiver<bool>,
    /// The relist generation this worker waits for, read by whoever sends
    /// snapshots (0: none).
    pub wants: Arc<std::sync::atomic::AtomicU64>,
}

pub(crate) struct PodWorker {
    shared: Arc<Shared>,
    uid: String,
    inputs: WorkerInputs,
    /// Containers that could not be (re)started, and why.
    waiting: BTreeMap<String, Waiting>,
    /// Volume name → host path, once set up.
    volumes: Option<BTreeMap<String, PathBuf>>,
    /// The last FailedMount message (recorded once per change).
    last_mount_error: Option<String>,
    probes: probes::Probes,
    /// Relists must be at least this generation before the next plan.
    min_generation: u64,
    /// The earliest time something is due (a back-off ending).
    wake_at: Option<Instant>,
    /// The pod finished: its sandbox was stopped.
    finished: bool,
    /// The last pod object seen (for clean-up after it vanished).
    last_pod: Option<Arc<Pod>>,
    /// The pod as our last status write returned it: newer than the watch's
    /// copy until the watch delivers that write, and syncs must not judge
    /// (and rewrite) the status from the stale copy.
    written: std::sync::Mutex<Option<Arc<Pod>>>,
}

/// A resourceVersion as a number, to order two copies of one object.
fn revision(pod: &Pod) -> Option<u64> {
    pod.metadata.resource_version.as_deref()?.parse().ok()
}

fn now_time() -> Time {
    Time(Timestamp::now())
}

impl PodWorker {
    pub(crate) fn new(shared: Arc<Shared>, uid: String, inputs: WorkerInputs) -> Self {
        // Nothing is decided before the first relist: an empty view would
        // restart the containers a restarted kubelet must adopt. Any relist
        // will do (upstream's first sync waits for a pod cache newer than the
        // zero time): only this pod's worker makes its runtime objects, so a
        // new pod has nothing a newer relist could show. A worker made
        // before that relist ends asks to be woken by it.
        let min_generation = 1;
        if inputs.snapshot.borrow().generation < min_generation {
            inputs
                .wants
                .fetch_max(min_generation, std::sync::atomic::Ordering::SeqCst);
        }
        Self {
            min_generation,
            shared,
            uid,
            inputs,
            waiting: BTreeMap::new(),
            volumes: None,
            last_mount_error: None,
            probes: probes::Probes::new(),
            wake_at: None,
            finished: false,
            last_pod: None,
            written: std::sync::Mutex::new(None),
        }
    }

    /// Runs until the pod is gone (cleaned up) or the kubelet stops.
    pub(crate) async fn run(mut self) {
        loop {
            if *self.inputs.shutdown.borrow() {
                return;
            }
            let pod = self.inputs.pod.borrow().clone();
            let pod = pod.map(|p| self.newest(p));
            if pod.is_some() {
                self.last_pod.clone_from(&pod);
            }
            match pod {
                None => {
                    // Gone from the API (force-deleted): stop everything.
                    self.terminate(None).await;
                    self.cleanup().await;
                    return;
                }
                Some(pod) if pod.metadata.deletion_timestamp.is_some() => {
                    self.terminate(Some(&pod)).await;
                    self.cleanup().await;
                    self.finish_deletion(&pod).await;
                    return;
                }
                Some(pod) => self.sync(&pod).await,
            }
            self.wait().await;
        }
    }

    async fn wait(&mut self) {
        let deadline = self
            .wake_at
            .take()
            .unwrap_or_else(|| Instant::now() + RESYNC)
            .min(Instant::now() + RESYNC);
        let inputs = &mut self.inputs;
        tokio::select! {
            _ = inputs.pod.changed() => {}
            _ = inputs.snapshot.changed() => {}
            _ = inputs.shutdown.changed() => {}
            _ = tokio::time::sleep_until(deadline.into()) => {}
            Some(update) = self.probes.updates.recv() => {
                self.probes.update(update);
            }
            Some(event) = self.probes.events.recv() => {
                if let Some(pod) = self.last_pod.clone() {
                    self.event(&pod, Some(&event.container_name), false, event.reason, event.message);
                }
            }
        }
    }

    /// The newer of the watch's copy and the one our last write returned.
    fn newest(&self, watched: Arc<Pod>) -> Arc<Pod> {
        let mut written = self
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match written.as_ref() {
            Some(w) if w.metadata.uid == watched.metadata.uid => {
                match (revision(w), revision(&watched)) {
                    (Some(ours), Some(theirs)) if ours > theirs => return w.clone(),
                    _ => *written = None,
                }
            }
            _ => {}
        }
        watched
    }

    fn wake_in(&mut self, d: Duration) {
        let at = Instant::now() + d;
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }

    /// Wants a relist that starts after now before planning again.
    fn expect_relist(&mut self) {
        self.min_generation = self.shared.request_relist(&self.inputs.wants);
    }

    fn reference(pod: &Pod, container: Option<&str>) -> ObjectReference {
        let field_path = container.map(|c| {
            let init = pod
                .spec
                .as_ref()
                .and_then(|s| s.init_containers.as_ref())
                .is_some_and(|i| i.iter().any(|x| x.name == c));
            if init {
                format!("spec.initContainers{{{c}}}")
            } else {
                format!("spec.containers{{{c}}}")
            }
        });
        ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Pod".to_owned()),
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            resource_version: pod.metadata.resource_version.clone(),
            field_path,
        }
    }

    fn event(&self, pod: &Pod, container: Option<&str>, normal: bool, reason: &str, note: String) {
        self.shared.events.record(PendingEvent {
            regarding: Self::reference(pod, container),
            normal,
            reason: reason.to_owned(),
            action: reason.to_owned(),
            note,
        });
    }

    async fn sync(&mut self, pod: &Pod) {
        let snapshot = self.inputs.snapshot.borrow().clone();
        let fresh = snapshot.generation >= self.min_generation;
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            // Terminal in the API: nothing restarts; make sure it is stopped.
            if !self.finished {
                self.finished = true;
                self.untrack_cgroup();
                self.stop_all(pod, &snapshot.pod).await;
            }
            return;
        }
        if !fresh {
            return;
        }
        if !self.finished
            && let Some(pcs) = &self.shared.pod_cgroups
            && let Err(e) = pcs.track(pod)
        {
            tracing::warn!(pod = %self.uid, error = %e, "cannot update the QoS cgroups");
        }
        let began = Instant::now();

        if self.volumes.is_none() {
            match self
                .shared
                .volumes
                .setup(pod, self.shared.objects.as_ref())
                .await
            {
                Ok(v) => {
                    self.volumes = Some(v);
                    self.last_mount_error = None;
                }
                Err(e) => {
                    let msg = e.to_string();
                    if self.last_mount_error.as_deref() != Some(msg.as_str()) {
                        self.event(pod, None, false, "FailedMount", msg.clone());
                        self.last_mount_error = Some(msg);
                    }
                    self.wake_in(RETRY);
                    self.report_status(pod, &snapshot.pod, false).await;
                    return;
                }
            }
        } else if let Err(e) = self
            .shared
            .volumes
            .refresh(pod, self.shared.objects.as_ref())
            .await
        {
            tracing::debug!(pod = %self.uid, error = %e, "volume refresh");
        }

        let volumes_done = began.elapsed();
        let sandbox = snapshot.pod.current_sandbox().cloned();
        let sandbox = match sandbox {
            Some(s) if s.ready => s,
            other => {
                if self.finished {
                    self.report_status(pod, &snapshot.pod, true).await;
                    return;
                }
                // No sandbox, or it died: every container starts over in a new one.
                for c in snapshot.pod.running() {
                    self.stop_container(pod, &c.id, &c.name, 0, None).await;
                }
                // The dead sandbox gives its address (and whatever else it
                // holds) back first, as upstream kills the pod before it
                // makes a new sandbox; a stop that fails is retried.
                if let Err(msg) = self.stop_sandboxes(&snapshot.pod).await {
                    self.event(
                        pod,
                        None,
                        false,
                        "FailedKillPod",
                        format!(
                            "error killing pod: failed to \"KillPodSandbox\" for \"{}\": {msg}",
                            self.uid
                        ),
                    );
                    self.wake_in(RETRY);
                    self.report_status(pod, &snapshot.pod, false).await;
                    return;
                }
                let attempt = other.map_or(0, |s| s.attempt + 1);
                let created = self.run_sandbox(pod, attempt).await;
                // Later syncs wait for a relist that sees the new sandbox;
                // this one goes on to the containers at once.
                self.expect_relist();
                match created {
                    Ok(sandbox) => sandbox,
                    Err(msg) => {
                        self.event(
                            pod,
                            None,
                            false,
                            "FailedCreatePodSandBox",
                            format!("Failed to create pod sandbox: {msg}"),
                        );
                        self.wake_in(RETRY);
                        self.report_status(pod, &snapshot.pod, false).await;
                        return;
                    }
                }
            }
        };

        let sandbox_done = began.elapsed();
        let spec = pod.spec.clone().unwrap_or_default();
        let instances = snapshot.pod.instances(&sandbox.id);
        self.probes.sync(pod, &snapshot.pod, &self.shared.exec);
        let plan = plan::plan(&spec, &instances, &self.probes.state());
        let mut acted = false;
        let mut started = Vec::new();
        for action in &plan.actions {
            match action {
                plan::Action::Kill { id, name, message } => {
                    self.stop_container(pod, id, name, grace_seconds(pod), Some(message))
                        .await;
                    acted = true;
                }
                plan::Action::Start {
                    name,
                    init,
                    attempt,
                    restart,
                } => {
                    let container = if *init {
                        spec.init_containers
                            .iter()
                            .flatten()
                            .find(|c| &c.name == name)
                    } else {
                        spec.containers.iter().find(|c| &c.name == name)
                    };
                    let Some(container) = container else { continue };
                    // A restart's attempt follows the highest one ever used.
                    let attempt = snapshot
                        .pod
                        .max_attempt(name)
                        .map_or(*attempt, |m| (m + 1).max(*attempt));
                    match self
                        .start_container(pod, container, attempt, *restart, &sandbox, &snapshot.pod)
                        .await
                    {
                        Ok(id) => {
                            self.waiting.remove(name);
                            acted = true;
                            started.push(id);
                        }
                        Err(w) => {
                            self.waiting.insert(name.clone(), w);
                        }
                    }
                }
            }
        }
        let actions_done = began.elapsed();
        if acted {
            self.expect_relist();
        }
        if plan.terminal && !self.finished {
            self.finished = true;
            self.untrack_cgroup();
            let _ = self.stop_sandboxes(&snapshot.pod).await;
            self.expect_relist();
        }
        // Report what was just started without waiting for the relist (it
        // confirms later): the pod shows Running one relist sooner, with one
        // status write instead of two.
        let mut own = Vec::with_capacity(started.len());
        let mut cri = self.shared.cri.clone();
        for id in &started {
            if let Ok(Some(view)) = snapshot::container_view(&mut cri, id, &sandbox.id).await {
                own.push(view);
            }
        }
        let view = snapshot.pod.with_own(&sandbox, own);
        self.report_status(pod, &view, plan.terminal).await;
        tracing::debug!(
            pod = %self.uid,
            relist = snapshot.generation,
            volumes = ?volumes_done,
            sandbox = ?sandbox_done,
            actions = ?actions_done,
            total = ?began.elapsed(),
            "pod synced"
        );
    }

    /// The pod no longer counts towards its QoS cgroup's shares.
    fn untrack_cgroup(&self) {
        if let Some(pcs) = &self.shared.pod_cgroups
            && let Err(e) = pcs.untrack(&self.uid)
        {
            tracing::warn!(pod = %self.uid, error = %e, "cannot update the QoS cgroups");
        }
    }

    /// Creates the pod's `attempt`-th sandbox (in the pod's cgroup, made
    /// first) and returns it as a relist would show it.
    async fn run_sandbox(&self, pod: &Pod, attempt: u32) -> Result<snapshot::SandboxView, String> {
        if let Some(pcs) = &self.shared.pod_cgroups {
            pcs.ensure_pod(pod).map_err(|e| {
                format!(
                    "failed to ensure that the pod's cgroups exist and are correctly applied: {e}"
                )
            })?;
        }
        let config = self
            .shared
            .sandbox_config(pod, attempt)
            .map_err(|e| e.to_string())?;
        std::fs::create_dir_all(self.shared.pod_log_dir(pod)).map_err(|e| e.to_string())?;
        let mut cri = self.shared.cri.clone();
        let id = cri
            .runtime
            .run_pod_sandbox(k8s_cri::v1::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await
            .map_err(|e| e.message().to_owned())?
            .into_inner()
            .pod_sandbox_id;
        let status = cri
            .runtime
            .pod_sandbox_status(k8s_cri::v1::PodSandboxStatusRequest {
                pod_sandbox_id: id.clone(),
                verbose: false,
            })
            .await
            .map_err(|e| e.message().to_owned())?
            .into_inner()
            .status
            .unwrap_or_default();
        Ok(snapshot::SandboxView {
            id,
            attempt,
            ready: true,
            ip: status.network.map(|n| n.ip).filter(|ip| !ip.is_empty()),
            created_at: status.created_at,
        })
    }

    /// Computes the status from the runtime's view and writes it when it
    /// differs from what the API has.
    async fn report_status(&self, pod: &Pod, snapshot: &PodSnapshot, terminal: bool) {
        let status = self.compute_status(pod, snapshot, terminal);
        if pod.status.as_ref() == Some(&status) {
            return;
        }
        self.patch_status(pod, &status).await;
    }

    fn compute_status(&self, pod: &Pod, snapshot: &PodSnapshot, terminal: bool) -> PodStatus {
        let mut runtime = snapshot.runtime_pod(&self.shared.runtime_name);
        runtime.waiting = self.waiting.clone();
        for c in &mut runtime.containers {
            if let Some((startup, readiness)) = self.probes.results(&c.name) {
                c.startup_probe = startup;
                c.readiness_probe = readiness;
            }
        }
        let now = now_time();
        status::generate_pod_status(StatusInput {
            pod,
            runtime: &runtime,
            host_ips: &self.shared.host_ips,
            pod_is_terminal: terminal,
            now: &now,
        })
    }

    async fn patch_status(&self, pod: &Pod, status: &PodStatus) {
        let (Some(name), Some(ns)) = (
            pod.metadata.name.as_deref(),
            pod.metadata.namespace.as_deref(),
        ) else {
            return;
        };
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), ns);
        let patch = serde_json::json!({ "status": status });
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(updated) if updated.metadata.uid == pod.metadata.uid => {
                *self
                    .written
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(updated));
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "cannot update pod status")
            }
        }
    }

    /// The pod was deleted gracefully and everything is stopped: write the
    /// final status and remove the object (upstream's status manager does
    /// this once the pod's resources are reclaimed).
    async fn finish_deletion(&self, pod: &Pod) {
        let (Some(name), Some(ns)) = (
            pod.metadata.name.as_deref(),
            pod.metadata.namespace.as_deref(),
        ) else {
            return;
        };
        let snapshot = self.inputs.snapshot.borrow().pod.clone();
        let status = self.compute_status(pod, &snapshot, true);
        if pod.status.as_ref() != Some(&status) {
            self.patch_status(pod, &status).await;
        }
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), ns);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => {
                tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "cannot delete pod")
            }
        }
    }
}

/// The grace period for stopping this pod's containers: the deletion's, else
/// the spec's (default 30 s).
pub fn grace_seconds(pod: &Pod) -> i64 {
    pod.metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30)
        .max(0)
}
