//! Stopping containers (preStop hook, then SIGTERM and SIGKILL after the
//! grace period, through CRI StopContainer), stopping a whole pod, and
//! removing what it left behind.

use std::time::{Duration, Instant};

use k8s_cri::v1 as api;
use k8s_openapi::api::core::v1::{LifecycleHandler, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::snapshot::PodSnapshot;
use super::{PodWorker, grace_seconds};
use crate::worker::plan::is_sidecar;

/// Upstream gives a container at least this long after its preStop hook.
const MIN_GRACE_AFTER_HOOK: i64 = 2;

impl PodWorker {
    /// Runs a lifecycle hook (exec in the container, or an HTTP GET to the
    /// pod) within `timeout_secs`.
    pub(super) async fn run_hook(
        &self,
        hook: &LifecycleHandler,
        container_id: &str,
        pod_ip: Option<&str>,
        timeout_secs: i64,
    ) -> Result<(), String> {
        let timeout = Duration::from_secs(u64::try_from(timeout_secs.max(1)).unwrap_or(1));
        if let Some(exec) = &hook.exec {
            let mut cri = self.shared.cri.clone();
            let r = cri
                .runtime
                .exec_sync(api::ExecSyncRequest {
                    container_id: container_id.to_owned(),
                    cmd: exec.command.clone().unwrap_or_default(),
                    timeout: timeout_secs.max(1),
                })
                .await
                .map_err(|e| e.message().to_owned())?
                .into_inner();
            if r.exit_code != 0 {
                let out = String::from_utf8_lossy(&r.stdout).into_owned()
                    + &String::from_utf8_lossy(&r.stderr);
                return Err(format!(
                    "command {:?} exited with {}: {out}",
                    exec.command.clone().unwrap_or_default().join(" "),
                    r.exit_code
                ));
            }
            return Ok(());
        }
        if let Some(http) = &hook.http_get {
            let host = http
                .host
                .clone()
                .or_else(|| pod_ip.map(str::to_owned))
                .unwrap_or_else(|| "127.0.0.1".to_owned());
            let port = match &http.port {
                IntOrString::Int(p) => *p,
                IntOrString::String(s) => s.parse().unwrap_or(80),
            };
            let path = http.path.clone().unwrap_or_else(|| "/".to_owned());
            return crate::hooks::http_get(&host, port, &path, timeout).await;
        }
        if let Some(sleep) = &hook.sleep {
            tokio::time::sleep(Duration::from_secs(
                u64::try_from(sleep.seconds).unwrap_or(0),
            ))
            .await;
            return Ok(());
        }
        Ok(())
    }

    /// Stops one container: preStop hook (if the spec has one), then CRI
    /// StopContainer with what is left of `grace_secs`.
    pub(super) async fn stop_container(
        &self,
        pod: &Pod,
        id: &str,
        name: &str,
        grace_secs: i64,
        message: Option<&str>,
    ) {
        let spec = pod.spec.as_ref();
        let container = spec.and_then(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
                .find(|c| c.name == name)
        });
        let note = match message {
            Some(m) if m.starts_with("Container ") || m.starts_with("Stopping") => m.to_owned(),
            _ => format!("Stopping container {name}"),
        };
        self.event(pod, Some(name), true, "Killing", note);
        let started = Instant::now();
        let mut grace = grace_secs;
        if let Some(hook) = container
            .and_then(|c| c.lifecycle.as_ref())
            .and_then(|l| l.pre_stop.as_ref())
            && grace > 0
        {
            let ip = self
                .inputs
                .snapshot
                .borrow()
                .pod
                .current_sandbox()
                .and_then(|s| s.ip.clone());
            let hook_run = tokio::time::timeout(
                Duration::from_secs(u64::try_from(grace).unwrap_or(0)),
                self.run_hook(hook, id, ip.as_deref(), grace),
            )
            .await;
            let failure = match hook_run {
                Ok(Ok(())) => None,
                Ok(Err(msg)) => Some(msg),
                Err(_) => Some(format!("timed out after {grace}s")),
            };
            if let Some(msg) = failure {
                self.event(
                    pod,
                    Some(name),
                    false,
                    "FailedPreStopHook",
                    format!("PreStopHook failed: {msg}"),
                );
            }
            let used = i64::try_from(started.elapsed().as_secs()).unwrap_or(i64::MAX);
            grace = (grace - used).max(MIN_GRACE_AFTER_HOOK);
        }
        let mut cri = self.shared.cri.clone();
        if let Err(e) = cri
            .runtime
            .stop_container(api::StopContainerRequest {
                container_id: id.to_owned(),
                timeout: grace,
            })
            .await
            && e.code() != tonic::Code::NotFound
        {
            tracing::warn!(container = %id, error = %e.message(), "stop container");
        }
    }

    /// Stops every running container of the pod (regular containers in
    /// parallel, then sidecars in reverse order) and its sandboxes.
    pub(super) async fn stop_all(&self, pod: &Pod, snapshot: &PodSnapshot) {
        let grace = grace_seconds(pod);
        let sidecar = |name: &str| {
            pod.spec
                .as_ref()
                .and_then(|s| s.init_containers.as_ref())
                .is_some_and(|i| i.iter().any(|c| c.name == name && is_sidecar(c)))
        };
        let regular: Vec<_> = snapshot.running().filter(|c| !sidecar(&c.name)).collect();
        futures::future::join_all(
            regular
                .iter()
                .map(|c| self.stop_container(pod, &c.id, &c.name, grace, None)),
        )
        .await;
        let order: Vec<String> = pod
            .spec
            .iter()
            .flat_map(|s| s.init_containers.iter().flatten())
            .rev()
            .map(|c| c.name.clone())
            .collect();
        for name in order {
            for c in snapshot.running().filter(|c| c.name == name) {
                self.stop_container(pod, &c.id, &c.name, grace, None).await;
            }
        }
        // A failed stop is retried by the clean-up's RemovePodSandbox.
        let _ = self.stop_sandboxes(snapshot).await;
    }

    /// Stops every sandbox of the pod; returns the first failure's message.
    pub(super) async fn stop_sandboxes(&self, snapshot: &PodSnapshot) -> Result<(), String> {
        let mut cri = self.shared.cri.clone();
        let mut result = Ok(());
        for s in &snapshot.sandboxes {
            if let Err(e) = cri
                .runtime
                .stop_pod_sandbox(api::StopPodSandboxRequest {
                    pod_sandbox_id: s.id.clone(),
                })
                .await
                && e.code() != tonic::Code::NotFound
            {
                tracing::warn!(sandbox = %s.id, error = %e.message(), "stop sandbox");
                if result.is_ok() {
                    result = Err(e.message().to_owned());
                }
            }
        }
        result
    }

    /// Terminates the pod: `pod` is the deleted object (its grace period
    /// applies), or `None` when it vanished from the API.
    pub(super) async fn terminate(&mut self, pod: Option<&Pod>) {
        let snapshot = self.inputs.snapshot.borrow().pod.clone();
        match pod {
            Some(pod) => self.stop_all(pod, &snapshot).await,
            None => {
                // Nothing to read hooks or grace from: stop with the default grace.
                let mut cri = self.shared.cri.clone();
                for c in snapshot.running() {
                    let _ = cri
                        .runtime
                        .stop_container(api::StopContainerRequest {
                            container_id: c.id.clone(),
                            timeout: 30,
                        })
                        .await;
                }
                let _ = self.stop_sandboxes(&snapshot).await;
            }
        }
        self.expect_relist();
    }

    /// Removes the pod's containers, sandboxes, cgroup and volumes and
    /// forgets its back-off state.
    pub(super) async fn cleanup(&mut self) {
        let snapshot = self.inputs.snapshot.borrow().pod.clone();
        let mut cri = self.shared.cri.clone();
        let mut sandboxes_gone = true;
        for s in &snapshot.sandboxes {
            // Removing a sandbox removes its containers.
            if let Err(e) = cri
                .runtime
                .remove_pod_sandbox(api::RemovePodSandboxRequest {
                    pod_sandbox_id: s.id.clone(),
                })
                .await
                && e.code() != tonic::Code::NotFound
            {
                tracing::warn!(sandbox = %s.id, error = %e.message(), "remove sandbox");
                sandboxes_gone = false;
            }
        }
        // With a sandbox left, the next worker for this runtime pod (or the
        // clean-up at the next start) removes the cgroup.
        if let Some(pcs) = &self.shared.pod_cgroups
            && sandboxes_gone
            && let Err(e) = pcs.destroy_pod(&self.uid).await
        {
            tracing::warn!(pod = %self.uid, error = %e, "remove pod cgroup");
        }
        if let Err(e) = self.shared.volumes.teardown(&self.uid).await {
            tracing::warn!(pod = %self.uid, error = %e, "volume teardown");
        }
        let _ = std::fs::remove_dir_all(self.shared.pod_dir(&self.uid));
        if let Some(pod) = &self.last_pod {
            let _ = std::fs::remove_dir_all(self.shared.pod_log_dir(pod));
        }
        let prefix = format!("{}/", self.uid);
        self.shared.lock_restart_backoff().reset_prefix(&prefix);
        self.shared.lock_image_backoff().reset_prefix(&prefix);
        self.expect_relist();
    }
}
