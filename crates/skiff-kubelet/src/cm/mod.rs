//! The kubelet's cgroup hierarchy (upstream's `--cgroups-per-qos`, cgroupfs
//! driver): the node cgroup `kubepods` limited to node allocatable, the
//! `burstable` and `besteffort` QoS cgroups, and one `pod<uid>` cgroup per
//! pod, created before its sandbox (whose `cgroup_parent` it is) and
//! removed once the sandbox is gone. All host access goes through
//! [`Cgroups`].

pub mod pod_config;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use skiff_sys::cgroups::Cgroups;

use crate::status::pod_qos;
pub use pod_config::{CgroupLayout, resource_config_for_pod};

/// Attempts at emptying and removing a pod cgroup (upstream's pod container
/// manager tries as often).
const DESTROY_ATTEMPTS: u32 = 5;

/// The node's pod cgroups.
#[derive(Debug)]
pub struct PodCgroups {
    cgroups: Arc<dyn Cgroups>,
    layout: CgroupLayout,
    /// `--pod-max-pids`.
    pids_limit: Option<i64>,
    /// Active Burstable pods: uid → CPU request (millicores).
    burstable: Mutex<BTreeMap<String, i64>>,
}

impl PodCgroups {
    /// The hierarchy under `cgroup_root`, through `cgroups`.
    pub fn new(cgroups: Arc<dyn Cgroups>, cgroup_root: &str, pids_limit: Option<i64>) -> Self {
        Self {
            cgroups,
            layout: CgroupLayout::new(cgroup_root),
            pids_limit,
            burstable: Mutex::new(BTreeMap::new()),
        }
    }

    /// Where the cgroups are.
    pub fn layout(&self) -> &CgroupLayout {
        &self.layout
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, i64>> {
        self.burstable
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates the node cgroup with the node's allocatable CPU and memory and
    /// the QoS cgroups below it.
    pub fn setup_node(&self, cpus: u64, memory_bytes: u64) -> io::Result<()> {
        self.cgroups.ensure(
            self.layout.node(),
            &pod_config::node_config(cpus, memory_bytes),
        )?;
        let sum = self.lock().values().sum();
        self.cgroups.ensure(
            &self.layout.qos("Burstable"),
            &pod_config::burstable_config(sum),
        )?;
        self.cgroups.ensure(
            &self.layout.qos("BestEffort"),
            &pod_config::best_effort_config(),
        )
    }

    /// The pod's cgroup, its sandbox's `cgroup_parent` (`None` without a uid).
    pub fn pod_cgroup(&self, pod: &Pod) -> Option<String> {
        let uid = pod.metadata.uid.as_deref()?;
        Some(self.layout.pod(pod_qos(pod), uid))
    }

    /// Counts the pod as active: a Burstable pod's CPU request goes into the
    /// Burstable cgroup's shares (rewritten when the sum changes).
    pub fn track(&self, pod: &Pod) -> io::Result<()> {
        let Some(uid) = pod.metadata.uid.as_deref() else {
            return Ok(());
        };
        if pod_qos(pod) != "Burstable" {
            return Ok(());
        }
        let mut active = self.lock();
        if active.contains_key(uid) {
            return Ok(());
        }
        active.insert(uid.to_owned(), pod_config::pod_cpu_request_milli(pod));
        self.update_burstable(&active)
    }

    /// The pod is no longer active (finished or gone).
    pub fn untrack(&self, uid: &str) -> io::Result<()> {
        let mut active = self.lock();
        if active.remove(uid).is_none() {
            return Ok(());
        }
        self.update_burstable(&active)
    }

    fn update_burstable(&self, active: &BTreeMap<String, i64>) -> io::Result<()> {
        let sum = active.values().fold(0i64, |a, b| a.saturating_add(*b));
        self.cgroups.update(
            &self.layout.qos("Burstable"),
            &pod_config::burstable_config(sum),
        )
    }

    /// Tracks the pod and creates its cgroup with its limits; returns the
    /// cgroup.
    pub fn ensure_pod(&self, pod: &Pod) -> io::Result<String> {
        let path = self
            .pod_cgroup(pod)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the pod has no uid"))?;
        self.track(pod)?;
        self.cgroups
            .ensure(&path, &resource_config_for_pod(pod, self.pids_limit))?;
        Ok(path)
    }

    /// The uids of the pod cgroups on the host.
    pub fn pods_on_host(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for qos in self.layout.qos_cgroups() {
            for child in self.cgroups.children(&qos)? {
                if let Some(uid) = pod_config::pod_uid_of(&child) {
                    out.push(uid.to_owned());
                }
            }
        }
        Ok(out)
    }

    /// Removes the pod's cgroup (whatever its QoS class), killing processes
    /// left in it first; retries while the kernel still counts them.
    pub async fn destroy_pod(&self, uid: &str) -> io::Result<()> {
        self.untrack(uid)?;
        for qos in ["Guaranteed", "Burstable", "BestEffort"] {
            let path = self.layout.pod(qos, uid);
            if !self.cgroups.exists(&path) {
                continue;
            }
            let mut attempt = 0;
            loop {
                attempt += 1;
                let killed = self.cgroups.kill_all(&path)?;
                if killed > 0 {
                    tracing::info!(pod = %uid, processes = killed, "killed processes left in the pod cgroup");
                }
                match self.cgroups.remove(&path) {
                    Ok(()) => break,
                    Err(e) if attempt >= DESTROY_ATTEMPTS => {
                        return Err(io::Error::new(e.kind(), format!("remove {path}: {e}")));
                    }
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes the cgroups of pods not in `known` (upstream's orphaned pod
    /// cgroup clean-up); returns the uids removed.
    pub async fn remove_orphans(&self, known: &HashSet<String>) -> Vec<String> {
        let on_host = match self.pods_on_host() {
            Ok(uids) => uids,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list pod cgroups");
                return Vec::new();
            }
        };
        let mut removed = Vec::new();
        for uid in on_host.into_iter().filter(|u| !known.contains(u)) {
            match self.destroy_pod(&uid).await {
                Ok(()) => removed.push(uid),
                Err(e) => {
                    tracing::warn!(pod = %uid, error = %e, "cannot remove orphaned pod cgroup")
                }
            }
        }
        removed
    }
}
