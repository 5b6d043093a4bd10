//! Facts about the host the kubelet reports on its Node: capacity, system
//! info and addresses. Reading /proc and /sys is best effort: a missing file
//! gives an empty field, never an error.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Memory the default hard eviction threshold (`memory.available<100Mi`)
/// keeps out of allocatable.
pub const EVICTION_MEMORY_BYTES: u64 = 100 * 1024 * 1024;
/// Share of the node filesystem the default `nodefs.available<10%`
/// threshold keeps out of allocatable ephemeral storage.
pub const EVICTION_NODEFS_PERCENT: u64 = 10;

/// What the host has, in the units the Node reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCapacity {
    /// Logical CPUs.
    pub cpus: u64,
    /// Physical memory in bytes.
    pub memory_bytes: u64,
    /// Size of the filesystem holding the kubelet's root dir, in bytes.
    pub ephemeral_storage_bytes: u64,
    /// Available PIDs (pid_max).
    pub pids: u64,
}

impl HostCapacity {
    /// Reads the host; `root_dir` picks the filesystem for ephemeral storage.
    pub fn read(root_dir: &Path) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| meminfo_total_bytes(&m))
            .unwrap_or(0);
        let ephemeral_storage_bytes = rustix::fs::statvfs(root_dir)
            .map(|s| s.f_blocks.saturating_mul(s.f_frsize))
            .unwrap_or(0);
        let pids = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(32768);
        Self {
            cpus,
            memory_bytes,
            ephemeral_storage_bytes,
            pids,
        }
    }

    /// `status.capacity` with `max_pods`.
    pub fn capacity(&self, max_pods: u32) -> BTreeMap<String, Quantity> {
        resources(
            self.cpus,
            self.memory_bytes,
            self.ephemeral_storage_bytes,
            max_pods,
        )
    }

    /// `status.allocatable`: capacity less the default hard eviction
    /// thresholds (no kube/system reservations are configured).
    pub fn allocatable(&self, max_pods: u32) -> BTreeMap<String, Quantity> {
        let storage = self.ephemeral_storage_bytes
            - self.ephemeral_storage_bytes * EVICTION_NODEFS_PERCENT / 100;
        resources(
            self.cpus,
            self.memory_bytes.saturating_sub(EVICTION_MEMORY_BYTES),
            storage,
            max_pods,
        )
    }
}

fn resources(cpus: u64, memory: u64, storage: u64, pods: u32) -> BTreeMap<String, Quantity> {
    [
        ("cpu", cpus.to_string()),
        ("memory", kibibytes(memory)),
        ("ephemeral-storage", kibibytes(storage)),
        ("hugepages-1Gi", "0".to_owned()),
        ("hugepages-2Mi", "0".to_owned()),
        ("pods", pods.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), Quantity(v)))
    .collect()
}

/// Bytes as the kubelet writes them: whole `Ki` when divisible, else bytes.
fn kibibytes(bytes: u64) -> String {
    if bytes.is_multiple_of(1024) {
        format!("{}Ki", bytes / 1024)
    } else {
        bytes.to_string()
    }
}

/// `MemTotal` of /proc/meminfo in bytes.
pub fn meminfo_total_bytes(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix("MemTotal:")?;
        let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    })
}

/// `PRETTY_NAME` of an os-release file.
pub fn os_image(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|l| {
        let v = l.strip_prefix("PRETTY_NAME=")?;
        Some(v.trim().trim_matches('"').to_owned())
    })
}

/// The kernel release (`uname -r`).
pub fn kernel_version() -> String {
    rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned()
}

/// Reads a one-line file, trimmed; empty when missing.
pub fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// The node's address when none is configured: the source address of the
/// default route's interface is what upstream picks; without a route table
/// reader we take the first non-loopback, non-link-local address of the
/// host name, else 127.0.0.1.
pub fn default_node_ip() -> IpAddr {
    // Looking the host name up needs no traffic: /etc/hosts or nss only.
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let candidates = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), 0))
        .map(|a| a.map(|s| s.ip()).collect::<Vec<_>>())
        .unwrap_or_default();
    candidates
        .into_iter()
        .find(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local() && !v4.is_unspecified(),
            IpAddr::V6(_) => false,
        })
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
}

/// The host name, lower-cased as a node name must be.
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .to_lowercase()
}

/// `amd64`, `arm64`, ... as Go names the architecture.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_and_os_release_parse() {
        let m = "MemTotal:       24546432 kB\nMemFree:  100 kB\n";
        assert_eq!(meminfo_total_bytes(m), Some(24546432 * 1024));
        assert_eq!(meminfo_total_bytes("nothing"), None);
        let os = "NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\n";
        assert_eq!(
            os_image(os).as_deref(),
            Some("Debian GNU/Linux 13 (trixie)")
        );
    }

    #[test]
    fn allocatable_subtracts_the_eviction_thresholds() {
        let h = HostCapacity {
            cpus: 2,
            memory_bytes: 1024 * 1024 * 1024,
            ephemeral_storage_bytes: 100 * 1024 * 1024,
            pids: 4096,
        };
        let cap = h.capacity(110);
        let alloc = h.allocatable(110);
        assert_eq!(cap["cpu"].0, "2");
        assert_eq!(cap["memory"].0, "1048576Ki");
        assert_eq!(alloc["memory"].0, format!("{}Ki", 1048576 - 102400));
        assert_eq!(alloc["ephemeral-storage"].0, format!("{}Ki", 92160));
        assert_eq!(alloc["pods"].0, "110");
        assert_eq!(kibibytes(1023), "1023");
    }
}
