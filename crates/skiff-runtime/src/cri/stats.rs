//! CRI container and pod sandbox stats, filled as containerd fills them:
//! attributes and the writable layer for every container, CPU and memory
//! from the cgroup of running ones, `usage_nano_cores` from the previous
//! sample of the same container (unset on the first), and for pods the pod
//! cgroup, the sandbox network and per-container stats.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tonic::Status;

use super::api;
use crate::cgroup_stats::{CgroupFiles, CgroupSample, parse_net_dev};
use crate::container::{ContainerRecord, Observed};
use crate::runtime::stats::{disk_usage, sandbox_cgroup};
use crate::runtime::{Runtime, now_nanos};
use crate::sandbox::{SandboxRecord, SandboxState};

/// The default pod interface (containerd's `defaultIfName`).
const DEFAULT_INTERFACE: &str = "eth0";

/// A cumulative CPU reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuSample {
    /// Cumulative CPU time, nanoseconds.
    pub usage_core_nanos: u64,
    /// When it was read, Unix nanoseconds.
    pub timestamp: i64,
}

/// CPU cores in use between two readings, in nanocores; `None` when the
/// interval is empty or the counter went backwards (a restarted cgroup).
pub fn usage_nano_cores(previous: CpuSample, current: CpuSample) -> Option<u64> {
    let interval = current.timestamp.checked_sub(previous.timestamp)?;
    if interval <= 0 || current.usage_core_nanos < previous.usage_core_nanos {
        return None;
    }
    let used = current.usage_core_nanos - previous.usage_core_nanos;
    // Float as upstream: the product would overflow u64 for long intervals.
    Some((used as f64 / interval as f64 * 1e9) as u64)
}

/// Records `current` as `key`'s latest reading; returns the rate since the
/// previous one (`None` for the first, as containerd). A reading taken at
/// the same instant as the stored one is not kept.
pub fn record_sample(
    last: &mut HashMap<String, CpuSample>,
    key: &str,
    current: CpuSample,
) -> Option<u64> {
    let previous = last.get(key).copied();
    let rate = previous.and_then(|p| usage_nano_cores(p, current));
    if previous.is_none_or(|p| current.timestamp > p.timestamp) {
        last.insert(key.to_owned(), current);
    }
    rate
}

/// Builds CRI stats over a [`Runtime`], remembering each container's and
/// sandbox's last CPU reading.
#[derive(Debug)]
pub struct StatsCollector {
    runtime: Arc<Runtime>,
    last_cpu: Mutex<HashMap<String, CpuSample>>,
}

fn u64v(value: u64) -> Option<api::UInt64Value> {
    Some(api::UInt64Value { value })
}

fn hash(m: &BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn id_matches(filter: &str, id: &str) -> bool {
    filter.is_empty() || id.starts_with(filter)
}

fn labels_match(selector: &HashMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Whether container `r` passes a `ListContainerStats` filter.
pub fn container_matches(filter: &api::ContainerStatsFilter, r: &ContainerRecord) -> bool {
    id_matches(&filter.id, &r.id)
        && id_matches(&filter.pod_sandbox_id, &r.sandbox_id)
        && labels_match(&filter.label_selector, &r.labels)
}

impl StatsCollector {
    /// A collector over `runtime`.
    pub fn new(runtime: Arc<Runtime>) -> Self {
        Self {
            runtime,
            last_cpu: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CpuSample>> {
        self.last_cpu.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn nano_cores(&self, key: &str, current: CpuSample) -> Option<u64> {
        record_sample(&mut self.lock(), key, current)
    }

    fn cpu_usage(&self, key: &str, sample: &CgroupSample, ts: i64) -> Option<api::CpuUsage> {
        let usage = sample.cpu_usage_nanos?;
        let current = CpuSample {
            usage_core_nanos: usage,
            timestamp: ts,
        };
        Some(api::CpuUsage {
            timestamp: ts,
            usage_core_nano_seconds: u64v(usage),
            usage_nano_cores: self.nano_cores(key, current).and_then(u64v),
        })
    }

    fn memory_usage(sample: &CgroupSample, ts: i64) -> Option<api::MemoryUsage> {
        let m = sample.memory.as_ref()?;
        Some(api::MemoryUsage {
            timestamp: ts,
            working_set_bytes: u64v(m.working_set()),
            // containerd sends 0 for an unlimited cgroup.
            available_bytes: u64v(m.available().unwrap_or(0)),
            usage_bytes: u64v(m.usage),
            rss_bytes: u64v(m.rss),
            page_faults: u64v(m.page_faults),
            major_page_faults: u64v(m.major_page_faults),
        })
    }

    /// Stats of one container; `pids` gets its process count when running.
    fn build(&self, r: &ContainerRecord, observed: &Observed) -> (api::ContainerStats, u64) {
        let ts = now_nanos();
        let layer = disk_usage(&self.runtime.container_upper_dir(&r.id));
        let mut stats = api::ContainerStats {
            attributes: Some(api::ContainerAttributes {
                id: r.id.clone(),
                metadata: Some(api::ContainerMetadata {
                    name: r.name.clone(),
                    attempt: r.attempt,
                }),
                labels: hash(&r.labels),
                annotations: hash(&r.annotations),
            }),
            writable_layer: Some(api::FilesystemUsage {
                timestamp: ts,
                fs_id: Some(api::FilesystemIdentifier {
                    mountpoint: self.runtime.image_fs_mountpoint().display().to_string(),
                }),
                used_bytes: u64v(layer.bytes),
                inodes_used: u64v(layer.inodes),
            }),
            ..Default::default()
        };
        let mut pids = 0;
        if *observed == Observed::Running {
            let sample = CgroupFiles::host(&r.cgroups_path).read_sample();
            stats.cpu = self.cpu_usage(&r.id, &sample, ts);
            stats.memory = Self::memory_usage(&sample, ts);
            pids = sample.pids.unwrap_or(0);
        }
        (stats, pids)
    }

    /// CRI `ContainerStats`: NotFound for an unknown ID.
    pub fn container_stats(&self, id: &str) -> Result<api::ContainerStats, Status> {
        let (r, o) = self.runtime.container(id)?;
        Ok(self.build(&r, &o).0)
    }

    /// CRI `ListContainerStats`: every container passing `filter`.
    pub fn list_container_stats(
        &self,
        filter: &api::ContainerStatsFilter,
    ) -> Vec<api::ContainerStats> {
        let all = self.runtime.list_containers();
        self.forget_missing(&all);
        all.iter()
            .filter(|(r, _)| container_matches(filter, r))
            .map(|(r, o)| self.build(r, o).0)
            .collect()
    }

    /// Drops CPU readings of containers and sandboxes that no longer exist.
    fn forget_missing(&self, containers: &[(ContainerRecord, Observed)]) {
        let sandboxes = self.runtime.list_sandboxes();
        let mut last = self.lock();
        last.retain(|key, _| match key.strip_prefix("sandbox/") {
            Some(id) => sandboxes.iter().any(|s| s.id == id),
            None => containers.iter().any(|(r, _)| &r.id == key),
        });
    }

    /// The sandbox network's counters, read through a process in its netns.
    fn network(containers: &[(ContainerRecord, Observed)], ts: i64) -> Option<api::NetworkUsage> {
        let pid = containers
            .iter()
            .filter(|(_, o)| *o == Observed::Running)
            .find_map(|(r, _)| r.pid)?;
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).ok()?;
        let interfaces: Vec<api::NetworkInterfaceUsage> = parse_net_dev(&text)
            .into_iter()
            .map(|i| api::NetworkInterfaceUsage {
                name: i.name,
                rx_bytes: u64v(i.rx_bytes),
                rx_errors: u64v(i.rx_errors),
                tx_bytes: u64v(i.tx_bytes),
                tx_errors: u64v(i.tx_errors),
            })
            .collect();
        let default_interface = interfaces
            .iter()
            .find(|i| i.name == DEFAULT_INTERFACE)
            .cloned();
        if default_interface.is_none() && interfaces.is_empty() {
            return None;
        }
        Some(api::NetworkUsage {
            timestamp: ts,
            default_interface,
            interfaces,
        })
    }

    fn sandbox_stats(&self, s: &SandboxRecord) -> Result<api::PodSandboxStats, Status> {
        if s.state != SandboxState::Ready {
            return Err(Status::unavailable(format!(
                "failed to get pod sandbox stats since sandbox container {:?} is not in ready state",
                s.id
            )));
        }
        let ts = now_nanos();
        let containers: Vec<_> = self.runtime.list_containers_where(|r| r.sandbox_id == s.id);
        let mut process_count = 0;
        let per_container = containers
            .iter()
            .map(|(r, o)| {
                let (stats, pids) = self.build(r, o);
                process_count += pids;
                stats
            })
            .collect();
        let pod_cgroup = CgroupFiles::host(&sandbox_cgroup(s));
        let sample = if pod_cgroup.exists() {
            pod_cgroup.read_sample()
        } else {
            CgroupSample::default()
        };
        Ok(api::PodSandboxStats {
            attributes: Some(api::PodSandboxAttributes {
                id: s.id.clone(),
                metadata: Some(api::PodSandboxMetadata {
                    name: s.name.clone(),
                    uid: s.uid.clone(),
                    namespace: s.namespace.clone(),
                    attempt: s.attempt,
                }),
                labels: hash(&s.labels),
                annotations: hash(&s.annotations),
            }),
            linux: Some(api::LinuxPodSandboxStats {
                cpu: self.cpu_usage(&format!("sandbox/{}", s.id), &sample, ts),
                memory: Self::memory_usage(&sample, ts),
                network: Self::network(&containers, ts),
                process: Some(api::ProcessUsage {
                    timestamp: ts,
                    process_count: u64v(process_count),
                }),
                containers: per_container,
            }),
            windows: None,
        })
    }

    /// CRI `PodSandboxStats`: NotFound for an unknown ID, Unavailable for a
    /// sandbox that is not ready (as containerd).
    pub fn pod_sandbox_stats(&self, id: &str) -> Result<api::PodSandboxStats, Status> {
        let s = self.runtime.sandbox(id)?;
        self.sandbox_stats(&s)
    }

    /// CRI `ListPodSandboxStats`: ready sandboxes passing `filter`.
    pub fn list_pod_sandbox_stats(
        &self,
        filter: &api::PodSandboxStatsFilter,
    ) -> Vec<api::PodSandboxStats> {
        self.forget_missing(&self.runtime.list_containers());
        self.runtime
            .list_sandboxes()
            .into_iter()
            .filter(|s| id_matches(&filter.id, &s.id) && s.matches_labels(&filter.label_selector))
            .filter_map(|s| match self.sandbox_stats(&s) {
                Ok(stats) => Some(stats),
                Err(e) => {
                    tracing::debug!(sandbox = %s.id, error = %e.message(), "skipping sandbox stats");
                    None
                }
            })
            .collect()
    }
}

/// Runs a stats query off the async threads (it walks writable layers).
pub(crate) async fn blocking<T: Send + 'static>(
    stats: &Arc<StatsCollector>,
    f: impl FnOnce(&StatsCollector) -> T + Send + 'static,
) -> Result<T, Status> {
    let stats = stats.clone();
    tokio::task::spawn_blocking(move || f(&stats))
        .await
        .map_err(|e| Status::internal(e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn s(usage: u64, ts: i64) -> CpuSample {
        CpuSample {
            usage_core_nanos: usage,
            timestamp: ts,
        }
    }

    #[test]
    fn nano_cores_from_two_samples() {
        let sec = 1_000_000_000;
        let cases = [
            (
                "one core for a second",
                s(0, 0),
                s(sec as u64, sec),
                Some(1_000_000_000),
            ),
            (
                "half a core over two seconds",
                s(5, sec),
                s(5 + sec as u64, 3 * sec),
                Some(500_000_000),
            ),
            ("no time passed", s(0, sec), s(10, sec), None),
            ("clock went back", s(0, 2 * sec), s(10, sec), None),
            ("counter reset", s(100, 0), s(10, sec), None),
            ("idle", s(100, 0), s(100, sec), Some(0)),
        ];
        for (name, prev, cur, want) in cases {
            assert_eq!(usage_nano_cores(prev, cur), want, "{name}");
        }
    }

    #[test]
    fn samples_are_kept_per_key() {
        let mut last = HashMap::new();
        assert_eq!(
            record_sample(&mut last, "a", s(0, 0)),
            None,
            "first reading"
        );
        assert_eq!(record_sample(&mut last, "b", s(7, 5)), None, "other key");
        assert_eq!(
            record_sample(&mut last, "a", s(500, 1000)),
            Some(500_000_000)
        );
        // Same instant: no rate, and the stored reading stays.
        assert_eq!(record_sample(&mut last, "a", s(900, 1000)), None);
        assert_eq!(
            record_sample(&mut last, "a", s(1500, 2000)),
            Some(1_000_000_000)
        );
        // After a counter reset the new reading becomes the base.
        assert_eq!(record_sample(&mut last, "a", s(10, 3000)), None);
        assert_eq!(record_sample(&mut last, "a", s(20, 4000)), Some(10_000_000));
    }

    #[test]
    fn container_filter_as_containerd() {
        let r: ContainerRecord = serde_json::from_value(serde_json::json!({
            "id": "abcdef", "sandbox_id": "123456", "name": "c", "attempt": 0,
            "image": "i", "image_ref": "sha256:x", "labels": {"app": "web", "tier": "fe"},
            "annotations": {}, "log_path": "", "mounts": [], "resources": {
                "cpu_period": 0, "cpu_quota": 0, "cpu_shares": 0,
                "memory_limit_in_bytes": 0, "oom_score_adj": 0},
            "cgroups_path": "/skiff/123456/abcdef", "created_at": 0, "started_at": 0,
            "pid": null, "start_ticks": 0, "start_error": null
        }))
        .unwrap();
        let f = |id: &str, sb: &str, labels: &[(&str, &str)]| api::ContainerStatsFilter {
            id: id.into(),
            pod_sandbox_id: sb.into(),
            label_selector: labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        };
        let cases = [
            (f("", "", &[]), true),
            (f("abcdef", "", &[]), true),
            (f("abc", "", &[]), true),
            (f("abd", "", &[]), false),
            (f("", "1234", &[]), true),
            (f("", "999", &[]), false),
            (f("", "", &[("app", "web")]), true),
            (f("", "", &[("app", "web"), ("tier", "be")]), false),
            (f("", "", &[("missing", "")]), false),
        ];
        for (filter, want) in cases {
            assert_eq!(container_matches(&filter, &r), want, "{filter:?}");
        }
    }
}
