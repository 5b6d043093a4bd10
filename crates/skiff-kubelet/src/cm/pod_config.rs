//! The pure part of the kubelet's cgroup hierarchy (`--cgroups-per-qos`,
//! cgroupfs driver): where the node, QoS and pod cgroups are and what
//! limits they carry (upstream's `pkg/kubelet/cm`: `qos_container_manager`,
//! `ResourceConfigForPod`, node allocatable enforcement on `kubepods`).

use k8s_openapi::api::core::v1::{Container, Pod};
use skiff_api::quantity::Quantity;
use skiff_api::quota::{ResourceList, pod_resources};
use skiff_sys::cgroups::ResourceConfig;
use skiff_sys::cgroups::resources::{DEFAULT_CPU_PERIOD, MIN_SHARES};

use crate::config::{milli_cpu_to_quota, milli_cpu_to_shares};
use crate::status::pod_qos;

/// The node-level cgroup every pod goes under.
pub const KUBEPODS: &str = "kubepods";
/// Prefix of a pod cgroup's name (`pod<uid>`).
pub const POD_PREFIX: &str = "pod";

/// Where the cgroups are, below `--cgroup-root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupLayout {
    /// `<cgroup-root>/kubepods`.
    node: String,
}

impl CgroupLayout {
    /// The layout under `cgroup_root` (`/` by default).
    pub fn new(cgroup_root: &str) -> Self {
        let root = cgroup_root.trim_matches('/');
        let node = if root.is_empty() {
            format!("/{KUBEPODS}")
        } else {
            format!("/{root}/{KUBEPODS}")
        };
        Self { node }
    }

    /// The node-level cgroup (`/kubepods`).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The cgroup of QoS class `class`: Guaranteed pods sit directly under
    /// the node cgroup, the others under `burstable` / `besteffort`.
    pub fn qos(&self, class: &str) -> String {
        match class {
            "Burstable" => format!("{}/burstable", self.node),
            "BestEffort" => format!("{}/besteffort", self.node),
            _ => self.node.clone(),
        }
    }

    /// Every QoS cgroup, Guaranteed (the node cgroup) first.
    pub fn qos_cgroups(&self) -> [String; 3] {
        [
            self.qos("Guaranteed"),
            self.qos("Burstable"),
            self.qos("BestEffort"),
        ]
    }

    /// The cgroup of the pod with `uid` in QoS class `class`.
    pub fn pod(&self, class: &str, uid: &str) -> String {
        format!("{}/{POD_PREFIX}{uid}", self.qos(class))
    }
}

/// The uid in a pod cgroup's name (`pod<uid>`).
pub fn pod_uid_of(cgroup_name: &str) -> Option<&str> {
    cgroup_name
        .strip_prefix(POD_PREFIX)
        .filter(|uid| !uid.is_empty())
}

/// The pod's overhead (`spec.overhead`) as a list.
fn overhead(pod: &Pod) -> ResourceList {
    pod.spec
        .as_ref()
        .and_then(|s| s.overhead.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), Quantity::parse(&v.0).ok()?)))
        .collect()
}

/// Upstream's `PodRequests` and `PodLimits` (overhead added to requests,
/// and to the limits the pod has).
fn requests_and_limits(pod: &Pod) -> (ResourceList, ResourceList) {
    let json = serde_json::to_value(pod).unwrap_or_default();
    let requests = pod_resources(&json, "requests");
    let mut limits = pod_resources(&json, "limits");
    for (name, q) in overhead(pod) {
        if let Some(have) = limits.get_mut(&name)
            && let Some(sum) = have.checked_add(&q)
        {
            *have = sum;
        }
    }
    (requests, limits)
}

/// The pod's CPU request in millicores ([`requests_and_limits`]), what the
/// Burstable cgroup's shares are summed from.
pub fn pod_cpu_request_milli(pod: &Pod) -> i64 {
    requests_and_limits(pod)
        .0
        .get("cpu")
        .map_or(0, Quantity::milli_value)
}

fn has_limit(c: &Container, name: &str) -> bool {
    c.resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get(name))
        .and_then(|q| Quantity::parse(&q.0).ok())
        .is_some_and(|q| q > Quantity::from_int(0))
}

/// The pod cgroup's limits (upstream's `ResourceConfigForPod` with CFS
/// quota enforced): shares from the CPU requests; for Guaranteed pods the
/// quota and memory limit, for Burstable ones each only when every
/// container (init containers too) sets that limit; BestEffort pods get
/// the minimum shares. `pids_limit` is the kubelet's `--pod-max-pids`.
pub fn resource_config_for_pod(pod: &Pod, pids_limit: Option<i64>) -> ResourceConfig {
    let (requests, limits) = requests_and_limits(pod);
    let containers: Vec<&Container> = pod
        .spec
        .iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .collect();
    let cpu_limits_declared = containers.iter().all(|c| has_limit(c, "cpu"));
    let memory_limits_declared = containers.iter().all(|c| has_limit(c, "memory"));
    let cpu_request = requests.get("cpu").map_or(0, Quantity::milli_value);
    let cpu_limit = limits.get("cpu").map_or(0, Quantity::milli_value);
    let memory_limit = limits.get("memory").map_or(0, Quantity::value);
    let period = i64::try_from(DEFAULT_CPU_PERIOD).unwrap_or(100_000);
    let shares = u64::try_from(milli_cpu_to_shares(cpu_request)).unwrap_or(MIN_SHARES);
    let quota = milli_cpu_to_quota(cpu_limit, period);
    let mut config = ResourceConfig {
        pids_limit: pids_limit.filter(|p| *p > 0),
        ..ResourceConfig::default()
    };
    match pod_qos(pod) {
        "Guaranteed" => {
            config.cpu_shares = Some(shares);
            config.cpu_quota = Some(quota);
            config.cpu_period = Some(DEFAULT_CPU_PERIOD);
            config.memory_limit = Some(memory_limit);
        }
        "Burstable" => {
            config.cpu_shares = Some(shares);
            if cpu_limits_declared {
                config.cpu_quota = Some(quota);
                config.cpu_period = Some(DEFAULT_CPU_PERIOD);
            }
            if memory_limits_declared {
                config.memory_limit = Some(memory_limit);
            }
        }
        _ => config.cpu_shares = Some(MIN_SHARES),
    }
    config
}

/// The node cgroup's limits: node allocatable enforced on pods
/// (`--enforce-node-allocatable=pods`): capacity less reservations, of
/// which there are none; eviction thresholds are not taken off, so the
/// kubelet evicts before the kernel kills.
pub fn node_config(cpus: u64, memory_bytes: u64) -> ResourceConfig {
    let milli = i64::try_from(cpus.saturating_mul(1000)).unwrap_or(i64::MAX);
    ResourceConfig {
        cpu_shares: u64::try_from(milli_cpu_to_shares(milli)).ok(),
        memory_limit: i64::try_from(memory_bytes).ok().filter(|m| *m > 0),
        ..ResourceConfig::default()
    }
}

/// The Burstable cgroup's limits: shares for the sum of its pods' CPU
/// requests (millicores).
pub fn burstable_config(cpu_requests_milli: i64) -> ResourceConfig {
    ResourceConfig {
        cpu_shares: u64::try_from(milli_cpu_to_shares(cpu_requests_milli)).ok(),
        ..ResourceConfig::default()
    }
}

/// The BestEffort cgroup's limits: the minimum shares.
pub fn best_effort_config() -> ResourceConfig {
    ResourceConfig {
        cpu_shares: Some(MIN_SHARES),
        ..ResourceConfig::default()
    }
}
