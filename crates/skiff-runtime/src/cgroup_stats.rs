//! Reading a cgroup's CPU, memory and process counters for CRI stats, on
//! cgroup v1 (hybrid or legacy: the `cpuacct`, `memory` and `pids`
//! controllers) and v2 (`cpu.stat`, `memory.*`, `pids.current`). The parsers
//! are pure; [`read`] only gathers the files.

use std::path::{Path, PathBuf};

use skiff_sys::cgroups::{CgroupMode, cgroup_mode};

/// Memory limits above this count as unlimited: the kernel rounds "max"
/// to a page multiple just below `i64::MAX` (cAdvisor's cut-off).
const MAX_MEMORY: u64 = 1 << 62;

/// A cgroup's counters at one moment, normalised across v1 and v2.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupSample {
    /// Cumulative CPU time in nanoseconds.
    pub cpu_usage_nanos: Option<u64>,
    /// Memory counters, when the memory controller answered.
    pub memory: Option<MemorySample>,
    /// Processes (tasks) in the cgroup.
    pub pids: Option<u64>,
}

/// Memory counters of a cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemorySample {
    /// Current usage (v1 `memory.usage_in_bytes`, v2 `memory.current`).
    pub usage: u64,
    /// The limit, `None` when unlimited.
    pub limit: Option<u64>,
    /// Inactive file-backed pages (reclaimable page cache).
    pub inactive_file: u64,
    /// Anonymous memory (v1 `total_rss`, v2 `anon`).
    pub rss: u64,
    /// Page faults.
    pub page_faults: u64,
    /// Major page faults.
    pub major_page_faults: u64,
}

impl MemorySample {
    /// usage − inactive file pages, floored at 0 (cAdvisor's working set).
    pub fn working_set(&self) -> u64 {
        self.usage.saturating_sub(self.inactive_file)
    }

    /// limit − working set when limited (kubelet's `availableBytes`).
    pub fn available(&self) -> Option<u64> {
        self.limit.map(|l| l.saturating_sub(self.working_set()))
    }
}

/// `key value` lines (`memory.stat`, `cpu.stat`) as a lookup.
fn flat_keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn single_value(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// A limit file: a number, or `max` (v2) / a huge value (v1) for none.
fn parse_limit(text: &str) -> Option<u64> {
    let text = text.trim();
    if text == "max" {
        return None;
    }
    text.parse::<u64>().ok().filter(|v| *v <= MAX_MEMORY)
}

/// v1 `cpuacct.usage`: nanoseconds.
pub fn parse_v1_cpu(cpuacct_usage: &str) -> Option<u64> {
    single_value(cpuacct_usage)
}

/// v2 `cpu.stat`: `usage_usec`, in nanoseconds.
pub fn parse_v2_cpu(cpu_stat: &str) -> Option<u64> {
    flat_keyed(cpu_stat, "usage_usec").map(|us| us.saturating_mul(1000))
}

/// v1 memory: `memory.usage_in_bytes`, `memory.limit_in_bytes`, `memory.stat`
/// (the hierarchical `total_*` counters, as containerd reads them).
pub fn parse_v1_memory(usage: &str, limit: &str, stat: &str) -> Option<MemorySample> {
    Some(MemorySample {
        usage: single_value(usage)?,
        limit: parse_limit(limit),
        inactive_file: flat_keyed(stat, "total_inactive_file").unwrap_or(0),
        rss: flat_keyed(stat, "total_rss").unwrap_or(0),
        page_faults: flat_keyed(stat, "total_pgfault").unwrap_or(0),
        major_page_faults: flat_keyed(stat, "total_pgmajfault").unwrap_or(0),
    })
}

/// v2 memory: `memory.current`, `memory.max`, `memory.stat`.
pub fn parse_v2_memory(current: &str, max: &str, stat: &str) -> Option<MemorySample> {
    Some(MemorySample {
        usage: single_value(current)?,
        limit: parse_limit(max),
        inactive_file: flat_keyed(stat, "inactive_file").unwrap_or(0),
        rss: flat_keyed(stat, "anon").unwrap_or(0),
        page_faults: flat_keyed(stat, "pgfault").unwrap_or(0),
        major_page_faults: flat_keyed(stat, "pgmajfault").unwrap_or(0),
    })
}

/// The files of one cgroup in the host's layout.
#[derive(Debug, Clone)]
pub struct CgroupFiles {
    mode: CgroupMode,
    /// `/sys/fs/cgroup` (tests point it elsewhere).
    root: PathBuf,
    rel: String,
}

impl CgroupFiles {
    /// Cgroup `path` (absolute, as an OCI `cgroupsPath`) under `/sys/fs/cgroup`.
    pub fn host(path: &str) -> Self {
        Self::new(cgroup_mode(), Path::new("/sys/fs/cgroup"), path)
    }

    /// Cgroup `path` in layout `mode` under `root`.
    pub fn new(mode: CgroupMode, root: &Path, path: &str) -> Self {
        Self {
            mode,
            root: root.to_path_buf(),
            rel: path.trim_start_matches('/').to_owned(),
        }
    }

    fn read(&self, controller: &str, file: &str) -> Option<String> {
        let path = self.root.join(controller).join(&self.rel).join(file);
        std::fs::read_to_string(path).ok()
    }

    /// Whether the cgroup exists (in the hierarchy holding its memory counters).
    pub fn exists(&self) -> bool {
        let controller = match self.mode {
            CgroupMode::Unified => "",
            CgroupMode::Legacy | CgroupMode::Hybrid => "memory",
        };
        self.root.join(controller).join(&self.rel).is_dir()
    }

    /// The current counters; missing files leave their part unset.
    pub fn read_sample(&self) -> CgroupSample {
        match self.mode {
            CgroupMode::Legacy | CgroupMode::Hybrid => {
                let memory = (|| {
                    parse_v1_memory(
                        &self.read("memory", "memory.usage_in_bytes")?,
                        &self.read("memory", "memory.limit_in_bytes")?,
                        &self.read("memory", "memory.stat").unwrap_or_default(),
                    )
                })();
                CgroupSample {
                    cpu_usage_nanos: self
                        .read("cpuacct", "cpuacct.usage")
                        .as_deref()
                        .and_then(parse_v1_cpu),
                    memory,
                    pids: self
                        .read("pids", "pids.current")
                        .as_deref()
                        .and_then(single_value),
                }
            }
            CgroupMode::Unified => {
                let memory = (|| {
                    parse_v2_memory(
                        &self.read("", "memory.current")?,
                        &self.read("", "memory.max").unwrap_or_else(|| "max".into()),
                        &self.read("", "memory.stat").unwrap_or_default(),
                    )
                })();
                CgroupSample {
                    cpu_usage_nanos: self.read("", "cpu.stat").as_deref().and_then(parse_v2_cpu),
                    memory,
                    pids: self
                        .read("", "pids.current")
                        .as_deref()
                        .and_then(single_value),
                }
            }
        }
    }
}

/// One interface's counters from `/proc/<pid>/net/dev`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceSample {
    /// Interface name.
    pub name: String,
    /// Received bytes.
    pub rx_bytes: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Transmitted bytes.
    pub tx_bytes: u64,
    /// Transmit errors.
    pub tx_errors: u64,
}

/// Parses `/proc/<pid>/net/dev`, leaving out the loopback (as the kubelet
/// and containerd report pod networks).
pub fn parse_net_dev(text: &str) -> Vec<InterfaceSample> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let name = name.trim();
            if name == "lo" {
                return None;
            }
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|v| v.parse().unwrap_or(0))
                .collect();
            // rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes packets errs ...
            Some(InterfaceSample {
                name: name.to_owned(),
                rx_bytes: *f.first()?,
                rx_errors: *f.get(2)?,
                tx_bytes: *f.get(8)?,
                tx_errors: *f.get(10)?,
            })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "cgroup_stats_tests.rs"]
mod tests;
