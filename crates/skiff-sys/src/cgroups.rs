//! Cgroup filesystem helpers: where hierarchies are mounted, removing a
//! (now empty) cgroup from every hierarchy, resource limits on v1 and v2
//! ([`resources`]) and the [`Cgroups`] seam the kubelet's cgroup manager
//! works through.

use std::io;
use std::path::{Path, PathBuf};

#[cfg(feature = "fake")]
mod fake;
mod manager;
pub mod resources;

#[cfg(feature = "fake")]
pub use fake::FakeCgroups;
pub use manager::{Cgroups, LinuxCgroups};
pub use resources::{ResourceConfig, cpu_shares_to_weight};

/// The cgroup layout of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// Only cgroup v1 hierarchies.
    Legacy,
    /// v1 hierarchies carry the controllers; cgroup2 at `/sys/fs/cgroup/unified`.
    Hybrid,
    /// Only cgroup2 at `/sys/fs/cgroup`.
    Unified,
}

/// Detects the host's cgroup mode from the filesystem at `/sys/fs/cgroup`.
/// Looked at once: the layout does not change under a running process.
pub fn cgroup_mode() -> CgroupMode {
    static MODE: std::sync::OnceLock<CgroupMode> = std::sync::OnceLock::new();
    *MODE.get_or_init(detect_cgroup_mode)
}

fn detect_cgroup_mode() -> CgroupMode {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        CgroupMode::Unified
    } else if Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists() {
        CgroupMode::Hybrid
    } else {
        CgroupMode::Legacy
    }
}

/// The cgroup hierarchies mounted on the host, read once from
/// `/proc/self/mountinfo`: hierarchies do not come and go under a running
/// agent, and mountinfo grows with every pod (one read costs more the more
/// pods run).
#[derive(Debug, Default)]
struct Hierarchies {
    /// Every hierarchy root (each v1 controller mount and the unified one).
    roots: Vec<PathBuf>,
    /// The root of the v1 hierarchy that carries the cpuset controller.
    cpuset: Option<PathBuf>,
}

fn hierarchies() -> io::Result<&'static Hierarchies> {
    static FOUND: std::sync::OnceLock<Hierarchies> = std::sync::OnceLock::new();
    if let Some(found) = FOUND.get() {
        return Ok(found);
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(FOUND.get_or_init(|| parse_hierarchies(&info)))
}

/// Every hierarchy root under `/sys/fs/cgroup` (each v1 controller mount and
/// the unified one).
pub fn hierarchy_roots() -> io::Result<&'static [PathBuf]> {
    Ok(&hierarchies()?.roots)
}

/// The root of the v1 hierarchy with the cpuset controller, if the host
/// mounts one (a new cpuset cgroup there takes no processes until it is
/// given CPUs and memory nodes).
pub fn cpuset_root() -> io::Result<Option<&'static Path>> {
    Ok(hierarchies()?.cpuset.as_deref())
}

fn parse_hierarchies(mountinfo: &str) -> Hierarchies {
    let mut found = Hierarchies::default();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut fields = right.split(' ');
        let (Some(fstype), Some(mount_point)) = (fields.next(), left.split(' ').nth(4)) else {
            continue;
        };
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        let super_options = fields.nth(1).unwrap_or_default();
        if fstype == "cgroup" && super_options.split(',').any(|o| o == "cpuset") {
            found.cpuset = Some(PathBuf::from(mount_point));
        }
        found.roots.push(PathBuf::from(mount_point));
    }
    found
}

/// The directory of cgroup `path` (absolute, like an OCI `cgroupsPath`) in the
/// hierarchy mounted at `root`.
pub fn cgroup_dir(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// The devices a container may use in the v1 devices controller (runc's
/// defaults): creating any device node, and using null, zero, full, random,
/// urandom, tty, console, the terminal multiplexer and pseudo-terminals.
pub const CONTAINER_DEVICE_RULES: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
];

/// Limits cgroup `path`'s device access to [`CONTAINER_DEVICE_RULES`] where
/// the host has the v1 devices controller (pure v2 hosts need an eBPF
/// program instead, which this does not attach).
pub fn restrict_devices(path: &str) -> io::Result<()> {
    let dir = cgroup_dir(Path::new("/sys/fs/cgroup/devices"), path);
    if !dir.is_dir() {
        return Ok(());
    }
    std::fs::write(dir.join("devices.deny"), "a")?;
    // One rule per write, through one open file.
    let mut allow = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("devices.allow"))?;
    for rule in CONTAINER_DEVICE_RULES {
        io::Write::write_all(&mut allow, rule.as_bytes())?;
    }
    Ok(())
}

/// The `cgroup.procs` file of cgroup `path` in every hierarchy.
pub fn procs_files(path: &str) -> io::Result<Vec<PathBuf>> {
    Ok(hierarchy_roots()?
        .iter()
        .map(|root| cgroup_dir(root, path).join("cgroup.procs"))
        .collect())
}

/// Moves process `pid` into cgroup `path` of every hierarchy.
pub fn add_process(path: &str, pid: i32) -> io::Result<()> {
    let pid = pid.to_string();
    for procs in procs_files(path)? {
        std::fs::write(&procs, &pid)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", procs.display())))?;
    }
    Ok(())
}

/// Removes cgroup `path` and its (empty) descendants from every hierarchy.
/// Missing directories are fine; a cgroup that still has processes fails with EBUSY.
pub fn remove_cgroup(path: &str) -> io::Result<()> {
    if path.trim_matches('/').is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to remove the root cgroup",
        ));
    }
    let mut first_err = None;
    for root in hierarchy_roots()? {
        if let Err(e) = remove_tree(&cgroup_dir(root, path)) {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// cgroup directories can only be rmdir'ed (their files are virtual), children first.
fn remove_tree(dir: &Path) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_tree(&entry.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn roots_from_mountinfo() {
        let info = "30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro\n\
                    31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
                    35 30 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                    36 30 0:32 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                    37 30 0:33 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset\n\
                    38 30 0:34 / /sys/fs/cgroup/cpusetx rw - cgroup cgroup rw,name=cpuset\n";
        let found = parse_hierarchies(info);
        assert_eq!(
            found.roots,
            vec![
                PathBuf::from("/sys/fs/cgroup/unified"),
                PathBuf::from("/sys/fs/cgroup/memory"),
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"),
                PathBuf::from("/sys/fs/cgroup/cpuset"),
                PathBuf::from("/sys/fs/cgroup/cpusetx"),
            ]
        );
        // The controller is named in the super options, not the mount point.
        assert_eq!(found.cpuset, Some(PathBuf::from("/sys/fs/cgroup/cpuset")));
        assert_eq!(
            parse_hierarchies(&info[..info.find("37 30").unwrap()]).cpuset,
            None
        );
        assert_eq!(
            cgroup_dir(Path::new("/sys/fs/cgroup/memory"), "/skiff/a"),
            PathBuf::from("/sys/fs/cgroup/memory/skiff/a")
        );
        assert!(remove_cgroup("/").is_err());
    }

    #[test]
    fn a_container_cgroup_allows_only_the_default_devices() {
        let devices = Path::new("/sys/fs/cgroup/devices");
        if !rustix::process::geteuid().is_root() || !devices.join("devices.list").exists() {
            println!("skipped: needs root and the v1 devices controller");
            return;
        }
        let path = format!("/skiff-test-devices-{}", std::process::id());
        let dir = cgroup_dir(devices, &path);
        std::fs::create_dir(&dir).unwrap();
        let restricted = restrict_devices(&path);
        let list = std::fs::read_to_string(dir.join("devices.list"));
        std::fs::remove_dir(&dir).unwrap();
        restricted.unwrap();
        let mut list: Vec<String> = list.unwrap().lines().map(str::to_owned).collect();
        let mut expected: Vec<String> = CONTAINER_DEVICE_RULES
            .iter()
            .map(|r| (*r).to_owned())
            .collect();
        list.sort();
        expected.sort();
        assert_eq!(list, expected);
    }
}
