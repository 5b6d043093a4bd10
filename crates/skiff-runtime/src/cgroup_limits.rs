//! Updating a running container's limits in place (UpdateContainerResources):
//! v1 controller files where the host has them (hybrid or legacy), else v2.

use std::io;

use skiff_sys::cgroups::{Cgroups, LinuxCgroups, ResourceConfig};

use crate::cri::api::LinuxContainerResources;

/// `r` as a cgroup [`ResourceConfig`] (zero fields are unset).
fn resource_config(r: &LinuxContainerResources) -> ResourceConfig {
    ResourceConfig {
        cpu_shares: u64::try_from(r.cpu_shares).ok().filter(|s| *s > 0),
        cpu_quota: (r.cpu_quota != 0).then_some(r.cpu_quota),
        cpu_period: u64::try_from(r.cpu_period).ok().filter(|p| *p > 0),
        memory_limit: (r.memory_limit_in_bytes > 0).then_some(r.memory_limit_in_bytes),
        pids_limit: None,
    }
}

/// Writes `r` into the cgroup `path`.
pub fn apply(path: &str, r: &LinuxContainerResources) -> io::Result<()> {
    LinuxCgroups::new().update(path, &resource_config(r))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use skiff_sys::cgroups::CgroupMode;
    use skiff_sys::cgroups::resources::resource_writes;

    fn writes(
        mode: CgroupMode,
        r: &LinuxContainerResources,
    ) -> Vec<(&'static str, &'static str, String)> {
        resource_writes(mode, &resource_config(r))
            .into_iter()
            .map(|w| (w.controller, w.file, w.value))
            .collect()
    }

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
