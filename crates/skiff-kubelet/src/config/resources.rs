//! Container resources for the CRI (`generateLinuxContainerResources`,
//! `pkg/kubelet/cm/helpers_linux.go`, `pkg/kubelet/qos/policy.go`).

use k8s_cri::v1::LinuxContainerResources;
use k8s_openapi::api::core::v1::{Container, Pod};

use super::ConfigError;
use super::env::parse;
use crate::status::pod_qos;

/// The kernel's smallest `cpu.shares`.
const MIN_SHARES: i64 = 2;
/// The kernel's largest `cpu.shares`.
const MAX_SHARES: i64 = 262_144;
const SHARES_PER_CPU: i64 = 1024;
const MILLI_CPU_TO_CPU: i64 = 1000;
/// The CFS period in microseconds (100 ms).
pub const QUOTA_PERIOD: i64 = 100_000;
/// The smallest CFS quota the kernel takes (1 ms).
const MIN_QUOTA_PERIOD: i64 = 1000;

const GUARANTEED_OOM_SCORE_ADJ: i64 = -997;
const BEST_EFFORT_OOM_SCORE_ADJ: i64 = 1000;
/// Upstream's `SystemCriticalPriority`.
const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// `cpu.shares` for a CPU request in millicores (`MilliCPUToShares`).
pub fn milli_cpu_to_shares(milli_cpu: i64) -> i64 {
    if milli_cpu == 0 {
        // Zero means "unset" to runtimes, which the kernel reads as 1024;
        // the minimum matches what the pod asked for.
        return MIN_SHARES;
    }
    (milli_cpu.saturating_mul(SHARES_PER_CPU) / MILLI_CPU_TO_CPU).clamp(MIN_SHARES, MAX_SHARES)
}

/// The CFS quota for a CPU limit in millicores over `period` microseconds
/// (`MilliCPUToQuota`); 0 (no quota) without a limit.
pub fn milli_cpu_to_quota(milli_cpu: i64, period: i64) -> i64 {
    if milli_cpu == 0 {
        return 0;
    }
    (milli_cpu.saturating_mul(period) / MILLI_CPU_TO_CPU).max(MIN_QUOTA_PERIOD)
}

/// A resource of a container's requests or limits, if set.
fn quantity(
    container: &Container,
    limits: bool,
    name: &str,
) -> Result<Option<skiff_api::quantity::Quantity>, ConfigError> {
    let resources = container.resources.as_ref();
    let list = if limits {
        resources.and_then(|r| r.limits.as_ref())
    } else {
        resources.and_then(|r| r.requests.as_ref())
    };
    list.and_then(|l| l.get(name))
        .map(|q| parse(&q.0))
        .transpose()
}

fn memory_request(container: &Container) -> Result<i64, ConfigError> {
    Ok(quantity(container, false, "memory")?.map_or(0, |q| q.value()))
}

/// The container's `LinuxContainerResources`: shares from the CPU request
/// (from the limit when only that is set), quota from the CPU limit, the
/// memory limit and the OOM score adjustment.
pub fn linux_container_resources(
    pod: &Pod,
    container: &Container,
    memory_capacity: i64,
) -> Result<LinuxContainerResources, ConfigError> {
    let cpu_request = quantity(container, false, "cpu")?;
    let cpu_limit = quantity(container, true, "cpu")?.map_or(0, |q| q.milli_value());
    let memory_limit = quantity(container, true, "memory")?.map_or(0, |q| q.value());
    // The API server defaults a missing request to the limit; repeat that
    // for pods that predate it.
    let cpu_shares = match cpu_request {
        None if cpu_limit != 0 => milli_cpu_to_shares(cpu_limit),
        request => milli_cpu_to_shares(request.map_or(0, |q| q.milli_value())),
    };
    Ok(LinuxContainerResources {
        cpu_period: QUOTA_PERIOD,
        cpu_quota: milli_cpu_to_quota(cpu_limit, QUOTA_PERIOD),
        cpu_shares,
        memory_limit_in_bytes: memory_limit,
        // This host's bounding set lacks CAP_SYS_RESOURCE, so a negative
        // oom_score_adj cannot be written (HOST-NOTES): clamp at 0, which
        // keeps Guaranteed (0) below every Burstable score (>= 3).
        oom_score_adj: oom_score_adjust(pod, container, memory_capacity)?.max(0),
        ..Default::default()
    })
}

/// True for static, mirror and system-priority pods of class
/// `system-node-critical` (`IsNodeCriticalPod`).
fn is_node_critical(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let mirror = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    let critical = mirror || spec.priority.is_some_and(|p| p >= SYSTEM_CRITICAL_PRIORITY);
    critical && spec.priority_class_name.as_deref() == Some("system-node-critical")
}

/// Upstream's `GetContainerOOMScoreAdjust`, unclamped: -997 for Guaranteed
/// and node-critical pods, 1000 for BestEffort, and for Burstable
/// `1000 - 1000 * memoryRequest / capacity` kept within [3, 999] (a sidecar
/// takes the score of the regular container requesting least, if lower).
pub fn oom_score_adjust(
    pod: &Pod,
    container: &Container,
    memory_capacity: i64,
) -> Result<i64, ConfigError> {
    if is_node_critical(pod) {
        return Ok(GUARANTEED_OOM_SCORE_ADJ);
    }
    match pod_qos(pod) {
        "Guaranteed" => return Ok(GUARANTEED_OOM_SCORE_ADJ),
        "BestEffort" => return Ok(BEST_EFFORT_OOM_SCORE_ADJ),
        _ => {}
    }
    let score = |request: i64| -> i64 {
        if memory_capacity <= 0 {
            return 1000;
        }
        1000 - (1000i128 * i128::from(request) / i128::from(memory_capacity))
            .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    };
    let mut adjust = score(memory_request(container)?);
    let spec = pod.spec.as_ref();
    let is_sidecar = spec
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|inits| {
            inits
                .iter()
                .any(|c| c.name == container.name && c.restart_policy.as_deref() == Some("Always"))
        });
    if is_sidecar {
        let mut min_request: Option<i64> = None;
        for c in spec.map(|s| s.containers.as_slice()).unwrap_or_default() {
            let r = memory_request(c)?;
            min_request = Some(min_request.map_or(r, |m| m.min(r)));
        }
        if let Some(min) = min_request {
            adjust = adjust.min(score(min));
        }
    }
    if adjust < 1000 + GUARANTEED_OOM_SCORE_ADJ {
        return Ok(1000 + GUARANTEED_OOM_SCORE_ADJ);
    }
    if adjust == BEST_EFFORT_OOM_SCORE_ADJ {
        return Ok(adjust - 1);
    }
    Ok(adjust)
}

#[cfg(test)]
#[path = "resources_tests.rs"]
mod tests;
