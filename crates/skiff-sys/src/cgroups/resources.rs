//! Resource limits of a cgroup and the controller files that carry them on
//! cgroup v1 and v2 (the pure part: which file gets which value).

use super::CgroupMode;

/// The kernel's smallest `cpu.shares`.
pub const MIN_SHARES: u64 = 2;
/// The kernel's largest `cpu.shares`.
pub const MAX_SHARES: u64 = 262_144;
/// The default CFS period in microseconds (100 ms).
pub const DEFAULT_CPU_PERIOD: u64 = 100_000;

/// Limits for one cgroup, as upstream's `ResourceConfig`; `None` leaves a
/// setting as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceConfig {
    /// Relative CPU weight in v1 `cpu.shares` units (converted for v2).
    pub cpu_shares: Option<u64>,
    /// CFS quota in microseconds per period; -1 for none.
    pub cpu_quota: Option<i64>,
    /// CFS period in microseconds.
    pub cpu_period: Option<u64>,
    /// Memory limit in bytes; -1 for none.
    pub memory_limit: Option<i64>,
    /// Process limit; -1 for none.
    pub pids_limit: Option<i64>,
}

/// v1 `cpu.shares` as a v2 `cpu.weight`: the linear map of [2, 262144]
/// onto [1, 10000] that runc and the kubelet use.
pub fn cpu_shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + ((shares.clamp(MIN_SHARES, MAX_SHARES) - MIN_SHARES) * 9999) / (MAX_SHARES - MIN_SHARES)
}

/// One write: the v1 controller hierarchy (empty on v2), the file and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerWrite {
    /// v1 hierarchy directory under `/sys/fs/cgroup` (`cpu`, `memory`,
    /// `pids`); empty for the unified hierarchy.
    pub controller: &'static str,
    /// The controller file.
    pub file: &'static str,
    /// What to write.
    pub value: String,
}

fn write(controller: &'static str, file: &'static str, value: String) -> ControllerWrite {
    ControllerWrite {
        controller,
        file,
        value,
    }
}

/// The files and values that carry `r` in layout `mode` (hybrid hosts keep
/// their limits in the v1 hierarchies).
pub fn resource_writes(mode: CgroupMode, r: &ResourceConfig) -> Vec<ControllerWrite> {
    let mut out = Vec::new();
    match mode {
        CgroupMode::Legacy | CgroupMode::Hybrid => {
            if let Some(shares) = r.cpu_shares.filter(|s| *s > 0) {
                out.push(write("cpu", "cpu.shares", shares.to_string()));
            }
            if let Some(period) = r.cpu_period.filter(|p| *p > 0) {
                out.push(write("cpu", "cpu.cfs_period_us", period.to_string()));
            }
            if let Some(quota) = r.cpu_quota.filter(|q| *q != 0) {
                let quota = if quota < 0 { -1 } else { quota };
                out.push(write("cpu", "cpu.cfs_quota_us", quota.to_string()));
            }
            if let Some(memory) = r.memory_limit.filter(|m| *m != 0) {
                let memory = if memory < 0 { -1 } else { memory };
                out.push(write("memory", "memory.limit_in_bytes", memory.to_string()));
            }
            if let Some(pids) = r.pids_limit.filter(|p| *p != 0) {
                out.push(write("pids", "pids.max", limit_or_max(pids)));
            }
        }
        CgroupMode::Unified => {
            if let Some(shares) = r.cpu_shares.filter(|s| *s > 0) {
                out.push(write(
                    "",
                    "cpu.weight",
                    cpu_shares_to_weight(shares).to_string(),
                ));
            }
            if r.cpu_quota.is_some_and(|q| q != 0) || r.cpu_period.is_some_and(|p| p > 0) {
                let period = r
                    .cpu_period
                    .filter(|p| *p > 0)
                    .unwrap_or(DEFAULT_CPU_PERIOD);
                let quota = r.cpu_quota.map_or("max".to_owned(), limit_or_max);
                out.push(write("", "cpu.max", format!("{quota} {period}")));
            }
            if let Some(memory) = r.memory_limit.filter(|m| *m != 0) {
                out.push(write("", "memory.max", limit_or_max(memory)));
            }
            if let Some(pids) = r.pids_limit.filter(|p| *p != 0) {
                out.push(write("", "pids.max", limit_or_max(pids)));
            }
        }
    }
    out
}

fn limit_or_max(v: i64) -> String {
    if v <= 0 {
        "max".to_owned()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn show(mode: CgroupMode, r: &ResourceConfig) -> Vec<String> {
        resource_writes(mode, r)
            .into_iter()
            .map(|w| format!("{}/{}={}", w.controller, w.file, w.value))
            .collect()
    }

    #[test]
    fn shares_to_weight_as_upstream() {
        assert_eq!(cpu_shares_to_weight(2), 1);
        assert_eq!(cpu_shares_to_weight(1024), 39);
        assert_eq!(cpu_shares_to_weight(102), 4);
        assert_eq!(cpu_shares_to_weight(262_144), 10_000);
        assert_eq!(cpu_shares_to_weight(1 << 30), 10_000);
        assert_eq!(cpu_shares_to_weight(0), 0);
    }

    #[test]
    fn writes_per_layout() {
        let r = ResourceConfig {
            cpu_shares: Some(512),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            memory_limit: Some(64 << 20),
            pids_limit: Some(100),
        };
        assert_eq!(
            show(CgroupMode::Hybrid, &r),
            [
                "cpu/cpu.shares=512",
                "cpu/cpu.cfs_period_us=100000",
                "cpu/cpu.cfs_quota_us=50000",
                "memory/memory.limit_in_bytes=67108864",
                "pids/pids.max=100",
            ]
        );
        assert_eq!(
            show(CgroupMode::Unified, &r),
            [
                "/cpu.weight=20",
                "/cpu.max=50000 100000",
                "/memory.max=67108864",
                "/pids.max=100",
            ]
        );
        // Unlimited values and unset fields.
        let none = ResourceConfig {
            cpu_quota: Some(-1),
            memory_limit: Some(-1),
            pids_limit: Some(-1),
            ..Default::default()
        };
        assert_eq!(
            show(CgroupMode::Legacy, &none),
            [
                "cpu/cpu.cfs_quota_us=-1",
                "memory/memory.limit_in_bytes=-1",
                "pids/pids.max=max"
            ]
        );
        assert_eq!(
            show(CgroupMode::Unified, &none),
            ["/cpu.max=max 100000", "/memory.max=max", "/pids.max=max"]
        );
        assert!(resource_writes(CgroupMode::Unified, &ResourceConfig::default()).is_empty());
    }
}
