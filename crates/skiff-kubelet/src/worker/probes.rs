//! The probes of a pod's running containers: one prober worker per probe
//! of each running instance (restarted instances get new workers), and the
//! results the plan and the status need.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Container, Pod};
use tokio::sync::{mpsc, watch};

use super::plan::{InstanceState, ProbeState, is_sidecar};
use super::snapshot::PodSnapshot;
use crate::cri::Cri;
use crate::prober::{
    ExecRunner, ProbeEvent, ProbeKind, ProbeTarget, ProbeUpdate, ProbeWorker, WorkerSpec,
};

/// Exec probes over CRI `ExecSync`.
#[derive(Debug, Clone)]
pub struct CriExec(pub Cri);

impl ExecRunner for CriExec {
    fn exec(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<(i32, Vec<u8>), String>> {
        let mut cri = self.0.clone();
        let container_id = container_id.to_owned();
        Box::pin(async move {
            // One second more than the prober's own timer, so the prober
            // reports the timeout in upstream's words.
            let secs = i64::try_from(timeout.as_secs())
                .unwrap_or(i64::MAX)
                .saturating_add(1);
            let r = cri
                .runtime
                .exec_sync(k8s_cri::v1::ExecSyncRequest {
                    container_id,
                    cmd,
                    timeout: secs,
                })
                .await
                .map_err(|e| e.message().to_owned())?
                .into_inner();
            let mut out = r.stdout;
            out.extend(r.stderr);
            Ok((r.exit_code, out))
        })
    }
}

struct Active {
    id: String,
    _workers: Vec<ProbeWorker>,
    started: watch::Sender<bool>,
    has_startup: bool,
    readiness: Option<bool>,
    startup: Option<bool>,
    /// Set when liveness or startup failed past its threshold.
    restart: Option<String>,
}

/// Probe workers and results of one pod.
pub(super) struct Probes {
    active: BTreeMap<String, Active>,
    updates_tx: mpsc::Sender<ProbeUpdate>,
    pub(super) updates: mpsc::Receiver<ProbeUpdate>,
    events_tx: mpsc::Sender<ProbeEvent>,
    pub(super) events: mpsc::Receiver<ProbeEvent>,
}

fn probed(c: &Container) -> bool {
    c.liveness_probe.is_some() || c.readiness_probe.is_some() || c.startup_probe.is_some()
}

impl Probes {
    pub(super) fn new() -> Self {
        let (updates_tx, updates) = mpsc::channel(64);
        let (events_tx, events) = mpsc::channel(64);
        Self {
            active: BTreeMap::new(),
            updates_tx,
            updates,
            events_tx,
            events,
        }
    }

    /// Starts workers for newly running instances and stops those of
    /// instances that are gone or no longer run.
    pub(super) fn sync(&mut self, pod: &Pod, snapshot: &PodSnapshot, exec: &Arc<dyn ExecRunner>) {
        let Some(spec) = pod.spec.as_ref() else {
            return;
        };
        let Some(sandbox) = snapshot.current_sandbox() else {
            self.active.clear();
            return;
        };
        let instances = snapshot.instances(&sandbox.id);
        let pod_ip: Option<IpAddr> = sandbox.ip.as_deref().and_then(|ip| ip.parse().ok());
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let containers = spec
            .containers
            .iter()
            .chain(
                spec.init_containers
                    .iter()
                    .flatten()
                    .filter(|c| is_sidecar(c)),
            )
            .filter(|c| probed(c));
        let mut keep = Vec::new();
        for c in containers {
            let Some(i) = instances
                .get(&c.name)
                .filter(|i| i.state == InstanceState::Running)
            else {
                continue;
            };
            keep.push(c.name.clone());
            if self.active.get(&c.name).is_some_and(|a| a.id == i.id) {
                continue;
            }
            let target = ProbeTarget {
                pod_ip,
                container_id: i.id.clone(),
                container_ports: c.ports.clone().unwrap_or_default(),
                env: c
                    .env
                    .iter()
                    .flatten()
                    .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
                    .collect(),
            };
            let has_startup = c.startup_probe.is_some();
            let (started, started_rx) = watch::channel(!has_startup);
            let spawn = |probe: &Option<k8s_openapi::api::core::v1::Probe>, kind| {
                probe.clone().map(|p| {
                    let spec = WorkerSpec::new(
                        p,
                        kind,
                        target.clone(),
                        exec.clone(),
                        self.updates_tx.clone(),
                        uid.clone(),
                        c.name.clone(),
                    )
                    .events(self.events_tx.clone());
                    let spec = if kind == ProbeKind::Startup {
                        spec
                    } else {
                        spec.started(started_rx.clone())
                    };
                    spec.spawn()
                })
            };
            let workers = [
                spawn(&c.startup_probe, ProbeKind::Startup),
                spawn(&c.readiness_probe, ProbeKind::Readiness),
                spawn(&c.liveness_probe, ProbeKind::Liveness),
            ]
            .into_iter()
            .flatten()
            .collect();
            self.active.insert(
                c.name.clone(),
                Active {
                    id: i.id.clone(),
                    _workers: workers,
                    started,
                    has_startup,
                    readiness: c.readiness_probe.as_ref().map(|_| false),
                    startup: has_startup.then_some(false),
                    restart: None,
                },
            );
        }
        self.active.retain(|name, _| keep.contains(name));
    }

    /// Takes a worker's update; true when a result changed.
    pub(super) fn update(&mut self, u: ProbeUpdate) -> bool {
        let Some(a) = self.active.get_mut(&u.container_name) else {
            return false;
        };
        match u.kind {
            ProbeKind::Readiness => a.readiness.replace(u.result) != Some(u.result),
            ProbeKind::Startup => {
                let changed = a.startup.replace(u.result) != Some(u.result);
                if u.result {
                    a.started.send_replace(true);
                } else {
                    a.restart = Some(format!(
                        "Container {} failed startup probe, will be restarted",
                        u.container_name
                    ));
                }
                changed
            }
            ProbeKind::Liveness => {
                let before = a.restart.is_some();
                a.restart = (!u.result).then(|| {
                    format!(
                        "Container {} failed liveness probe, will be restarted",
                        u.container_name
                    )
                });
                before != a.restart.is_some()
            }
        }
    }

    /// What the plan needs: probes that ask for a restart, and containers
    /// not started yet.
    pub(super) fn state(&self) -> ProbeState {
        let mut out = ProbeState::default();
        for (name, a) in &self.active {
            if let Some(message) = &a.restart {
                out.failed.insert(name.clone(), message.clone());
            }
            if a.has_startup && a.startup == Some(false) {
                out.not_started.insert(name.clone());
            }
        }
        out
    }

    /// (startup, readiness) results of `name`'s running instance.
    pub(super) fn results(&self, name: &str) -> Option<(Option<bool>, Option<bool>)> {
        self.active.get(name).map(|a| {
            (
                a.has_startup.then_some(a.startup == Some(true)),
                a.readiness,
            )
        })
    }
}
