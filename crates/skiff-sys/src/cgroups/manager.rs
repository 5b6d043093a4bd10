//! Creating, limiting, listing, emptying and removing cgroups on the host
//! (the kubelet's node, QoS and pod cgroups, cgroupfs driver).

use std::io;
use std::path::{Path, PathBuf};

use super::resources::{ResourceConfig, resource_writes};
use super::{CgroupMode, cgroup_dir, cgroup_mode, cpuset_root, hierarchy_roots, remove_cgroup};

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

/// Creates cgroup `dir` in the hierarchy mounted at `root`, and its missing
/// parents. The cgroup itself is tried first: its parents exist in all but
/// the first call (the QoS cgroups before any pod, a pod's before its
/// containers), and a path walk through cgroupfs costs more than one would
/// think. A parent is created only when the kernel says it is missing.
///
/// Each new v1 cpuset cgroup gets its parent's CPUs and memory nodes (an
/// empty cpuset takes no processes), and on v2 the parent delegates the
/// controllers its children are limited by.
fn create_under(root: &Path, dir: &Path, unified: bool, cpuset: bool) -> io::Result<()> {
    let Some(parent) = dir.parent().filter(|_| dir != root) else {
        return Ok(());
    };
    if unified {
        enable_controllers(parent)?;
    }
    let made = match std::fs::create_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound && parent != root => {
            create_under(root, parent, unified, cpuset)?;
            if unified {
                enable_controllers(parent)?;
            }
            std::fs::create_dir(dir)
        }
        made => made,
    };
    match made {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(with_path(e, dir)),
    }
    if cpuset {
        // A new cpuset cgroup starts empty unless its parent has
        // cgroup.clone_children set; either way it gets the parent's.
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let value = std::fs::read_to_string(parent.join(file))
                .map_err(|e| with_path(e, &parent.join(file)))?;
            let own = dir.join(file);
            std::fs::write(&own, value.trim()).map_err(|e| with_path(e, &own))?;
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
        let cpuset = cpuset_root()?;
        for root in hierarchy_roots()? {
            let unified = self.mode == CgroupMode::Unified && root == Path::new("/sys/fs/cgroup");
            let is_cpuset = cpuset == Some(root.as_path());
            create_under(root, &cgroup_dir(root, path), unified, is_cpuset)?;
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
            procs_under(&cgroup_dir(root, path), &mut pids);
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    // `create_under` only makes directories and copies two files, so a plain
    // directory stands in for a hierarchy (as the v1 cpuset one here).
    fn hierarchy() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cpuset");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("cpuset.cpus"), "0-3\n").unwrap();
        std::fs::write(root.join("cpuset.mems"), "0\n").unwrap();
        (dir, root)
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn missing_parents_are_made_and_each_new_cpuset_gets_its_parents_cpus() {
        let (_dir, root) = hierarchy();
        let leaf = cgroup_dir(&root, "/kubepods/besteffort/pod1");
        create_under(&root, &leaf, false, true).unwrap();
        for level in [
            "kubepods",
            "kubepods/besteffort",
            "kubepods/besteffort/pod1",
        ] {
            let dir = root.join(level);
            assert_eq!(read(&dir.join("cpuset.cpus")), "0-3", "{level}");
            assert_eq!(read(&dir.join("cpuset.mems")), "0", "{level}");
        }
    }

    #[test]
    fn an_existing_cgroup_is_left_as_it_is() {
        let (_dir, root) = hierarchy();
        let pod = cgroup_dir(&root, "/kubepods/pod1");
        create_under(&root, &pod, false, true).unwrap();
        // Narrowed by someone after it was made: a second ensure keeps that.
        std::fs::write(pod.join("cpuset.cpus"), "1").unwrap();
        create_under(&root, &pod, false, true).unwrap();
        assert_eq!(read(&pod.join("cpuset.cpus")), "1");
        // A new child of it inherits the narrowed set, not the root's.
        let container = pod.join("c1");
        create_under(&root, &container, false, true).unwrap();
        assert_eq!(read(&container.join("cpuset.cpus")), "1");
    }

    #[test]
    fn other_hierarchies_get_directories_only() {
        let (_dir, root) = hierarchy();
        let leaf = cgroup_dir(&root, "/a/b");
        create_under(&root, &leaf, false, false).unwrap();
        assert!(leaf.is_dir());
        assert!(!leaf.join("cpuset.cpus").exists());
        // The root itself is never made or written.
        create_under(&root, &cgroup_dir(&root, "/"), false, true).unwrap();
        assert_eq!(read(&root.join("cpuset.cpus")), "0-3\n");
    }

    #[test]
    fn a_parent_that_is_a_file_fails_with_its_path() {
        let (_dir, root) = hierarchy();
        std::fs::write(root.join("kubepods"), "").unwrap();
        let leaf = cgroup_dir(&root, "/kubepods/pod1");
        let err = create_under(&root, &leaf, false, false).unwrap_err();
        assert!(err.to_string().contains("kubepods"), "{err}");
    }
}
