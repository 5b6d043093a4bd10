//! Updating a running container's limits in place (UpdateContainerResources):
//! v1 controller files where the host has them (hybrid or legacy), else v2.

use std::io;
use std::path::Path;

use skiff_sys::cgroups::{CgroupMode, cgroup_mode};

use crate::cri::api::LinuxContainerResources;

/// The files and values to write for `r` under the given layout.
pub fn writes(
    mode: CgroupMode,
    r: &LinuxContainerResources,
) -> Vec<(&'static str, &'static str, String)> {
    let mut out = Vec::new();
    match mode {
        CgroupMode::Legacy | CgroupMode::Hybrid => {
            if r.cpu_shares > 0 {
                out.push(("cpu", "cpu.shares", r.cpu_shares.to_string()));
            }
            if r.cpu_period > 0 {
                out.push(("cpu", "cpu.cfs_period_us", r.cpu_period.to_string()));
            }
            if r.cpu_quota != 0 {
                out.push(("cpu", "cpu.cfs_quota_us", r.cpu_quota.to_string()));
            }
            if r.memory_limit_in_bytes > 0 {
                out.push((
                    "memory",
                    "memory.limit_in_bytes",
                    r.memory_limit_in_bytes.to_string(),
                ));
            }
        }
        CgroupMode::Unified => {
            if r.cpu_shares > 0 {
                // The conversion runc and the kubelet use for cgroup v2.
                let weight = 1 + ((r.cpu_shares.clamp(2, 262_144) - 2) * 9999) / 262_142;
                out.push(("", "cpu.weight", weight.to_string()));
            }
            if r.cpu_quota != 0 || r.cpu_period > 0 {
                let period = if r.cpu_period > 0 {
                    r.cpu_period
                } else {
                    100_000
                };
                let quota = if r.cpu_quota > 0 {
                    r.cpu_quota.to_string()
                } else {
                    "max".into()
                };
                out.push(("", "cpu.max", format!("{quota} {period}")));
            }
            if r.memory_limit_in_bytes > 0 {
                out.push(("", "memory.max", r.memory_limit_in_bytes.to_string()));
            }
        }
    }
    out
}

/// Writes `r` into the cgroup `path`.
pub fn apply(path: &str, r: &LinuxContainerResources) -> io::Result<()> {
    let rel = path.trim_start_matches('/');
    for (controller, file, value) in writes(cgroup_mode(), r) {
        let target = Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(rel)
            .join(file);
        std::fs::write(&target, value)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", target.display())))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn writes_per_layout() {
        let r = LinuxContainerResources {
            cpu_shares: 1024,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            memory_limit_in_bytes: 1 << 20,
            ..Default::default()
        };
        let v1: Vec<String> = writes(CgroupMode::Hybrid, &r)
            .into_iter()
            .map(|(c, f, v)| format!("{c}/{f}={v}"))
            .collect();
        assert_eq!(
            v1,
            [
                "cpu/cpu.shares=1024",
                "cpu/cpu.cfs_period_us=100000",
                "cpu/cpu.cfs_quota_us=50000",
                "memory/memory.limit_in_bytes=1048576"
            ]
        );
        let v2: Vec<String> = writes(CgroupMode::Unified, &r)
            .into_iter()
            .map(|(_, f, v)| format!("{f}={v}"))
            .collect();
        assert_eq!(
            v2,
            [
                "cpu.weight=39",
                "cpu.max=50000 100000",
                "memory.max=1048576"
            ]
        );
        assert!(writes(CgroupMode::Unified, &LinuxContainerResources::default()).is_empty());
    }
}
