//! Creating, limiting, listing, emptying and removing cgroups on the host
//! (the kubelet's node, QoS and pod cgroups, cgroupfs driver).

use std::io;
use std::path::{Path, PathBuf};

use super::resources::{ResourceConfig, resource_writes};
use super::{CgroupMode, cgroup_dir, cgroup_mode, hierarchy_roots, remove_cgroup};

/// The v2 controllers a limited cgroup needs enabled in its parents.
const V2_CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];

/// Cgroup operations on absolute cgroup paths (`/kubepods/burstable/pod<uid>`).
pub trait Cgroups: Send + Sync + std::fmt::Debug {
    /// Creates `path` in every hierarchy (parents too) and applies `config`.
    fn ensure(&self, path: &str, config: &ResourceConfig) -> io::Result<()>;
    /// Applies `config` to the existing cgroup `path`.
    fn update(&self, path: &str, config: &ResourceConfig) -> io::Result<()>;
    /// Whether `path` exists.
    fn exists(&self, path: &str) -> bool;
    /// The names of `path`'s child cgroups (none when it does not exist).
    fn children(&self, path: &str) -> io::Result<Vec<String>>;
    /// Sends SIGKILL to every process in `path` and its descendants; returns
    /// how many were signalled.
    fn kill_all(&self, path: &str) -> io::Result<usize>;
    /// Removes `path` and its (empty) descendants from every hierarchy.
    fn remove(&self, path: &str) -> io::Result<()>;
}

/// The real [`Cgroups`] on `/sys/fs/cgroup`, in the host's layout.
#[derive(Debug, Clone, Copy)]
pub struct LinuxCgroups {
    mode: CgroupMode,
}

impl LinuxCgroups {
    /// The host's cgroups, in the layout found at `/sys/fs/cgroup`.
    pub fn new() -> Self {
        Self {
            mode: cgroup_mode(),
        }
    }

    /// The host's layout.
    pub fn mode(&self) -> CgroupMode {
        self.mode
    }

    /// Where process membership is tracked for `path`: the unified hierarchy
    /// on v2, the memory hierarchy on v1 and hybrid.
    fn tracking_dir(&self, path: &str) -> PathBuf {
        let root = match self.mode {
            CgroupMode::Unified => PathBuf::from("/sys/fs/cgroup"),
            CgroupMode::Hybrid | CgroupMode::Legacy => PathBuf::from("/sys/fs/cgroup/memory"),
        };
        cgroup_dir(&root, path)
    }
}

impl Default for LinuxCgroups {
    fn default() -> Self {
        Self::new()
    }
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Creates `dir` and its missing parents below `root`, one level at a time so
/// each new v1 cpuset cgroup gets its parent's CPUs and memory nodes (an
/// empty cpuset takes no processes) and each v2 parent delegates the
/// controllers its children are limited by.
fn create_under(root: &Path, rel: &str, unified: bool) -> io::Result<()> {
    // Asked once per hierarchy, not of every new directory in each of them:
    // a path walk through cgroupfs costs more than one would think.
    let cpuset = !unified && root.join("cpuset.cpus").exists();
    let mut dir = root.to_path_buf();
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        let parent = dir.clone();
        dir.push(part);
        if unified {
            enable_controllers(&parent)?;
        }
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(with_path(e, &dir)),
        }
        if !cpuset {
            continue;
        }
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let own = dir.join(file);
            if std::fs::read_to_string(&own).is_ok_and(|v| v.trim().is_empty()) {
                let value = std::fs::read_to_string(parent.join(file))
                    .map_err(|e| with_path(e, &parent.join(file)))?;
                std::fs::write(&own, value.trim()).map_err(|e| with_path(e, &own))?;
            }
        }
    }
    Ok(())
}

/// Enables in `dir`'s `cgroup.subtree_control` those of [`V2_CONTROLLERS`]
/// it has and has not enabled yet.
fn enable_controllers(dir: &Path) -> io::Result<()> {
    let available = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    let enabled = std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    let has = |list: &str, c: &str| list.split_whitespace().any(|x| x == c);
    let missing: Vec<String> = V2_CONTROLLERS
        .iter()
        .filter(|c| has(&available, c) && !has(&enabled, c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let file = dir.join("cgroup.subtree_control");
    std::fs::write(&file, missing.join(" ")).map_err(|e| with_path(e, &file))
}

/// Pids in `dir`'s `cgroup.procs` and its descendants'.
fn procs_under(dir: &Path, out: &mut Vec<i32>) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                procs_under(&entry.path(), out);
            }
        }
    }
}

impl Cgroups for LinuxCgroups {
    fn ensure(&self, path: &str, config: &ResourceConfig) -> io::Result<()> {
        let rel = path.trim_start_matches('/');
        for root in hierarchy_roots()? {
            let unified = self.mode == CgroupMode::Unified && root == Path::new("/sys/fs/cgroup");
            create_under(&root, rel, unified)?;
        }
        self.update(path, config)
    }

    fn update(&self, path: &str, config: &ResourceConfig) -> io::Result<()> {
        let base = Path::new("/sys/fs/cgroup");
        for w in resource_writes(self.mode, config) {
            let file = cgroup_dir(&base.join(w.controller), path).join(w.file);
            std::fs::write(&file, &w.value).map_err(|e| with_path(e, &file))?;
        }
        Ok(())
    }

    fn exists(&self, path: &str) -> bool {
        self.tracking_dir(path).is_dir()
    }

    fn children(&self, path: &str) -> io::Result<Vec<String>> {
        let entries = match std::fs::read_dir(self.tracking_dir(path)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .collect())
    }

    fn kill_all(&self, path: &str) -> io::Result<usize> {
        let mut pids = Vec::new();
        for root in hierarchy_roots()? {
            procs_under(&cgroup_dir(&root, path), &mut pids);
        }
        pids.sort_unstable();
        pids.dedup();
        let mut killed = 0;
        for pid in pids {
            match crate::process::kill(pid, libc::SIGKILL) {
                Ok(()) => killed += 1,
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(killed)
    }

    fn remove(&self, path: &str) -> io::Result<()> {
        remove_cgroup(path)
    }
}
