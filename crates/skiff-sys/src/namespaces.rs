//! Persistent pod namespaces: a network, IPC and UTS namespace per pod sandbox,
//! kept alive by bind mounts (`<run>/netns/<id>`, ...) so containers can join them.

use std::io;
use std::path::{Path, PathBuf};

use rustix::thread::UnshareFlags;

/// A namespace kind that pods share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceKind {
    /// Network.
    Net,
    /// System V IPC and POSIX message queues.
    Ipc,
    /// Hostname.
    Uts,
}

impl NamespaceKind {
    /// Every shared kind.
    pub const ALL: [NamespaceKind; 3] =
        [NamespaceKind::Net, NamespaceKind::Ipc, NamespaceKind::Uts];

    /// The name under `/proc/<pid>/ns/`.
    pub fn proc_name(self) -> &'static str {
        match self {
            NamespaceKind::Net => "net",
            NamespaceKind::Ipc => "ipc",
            NamespaceKind::Uts => "uts",
        }
    }

    fn dir_name(self) -> &'static str {
        match self {
            NamespaceKind::Net => "netns",
            NamespaceKind::Ipc => "ipcns",
            NamespaceKind::Uts => "utsns",
        }
    }
}

/// Where a sandbox's namespaces are pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNamespacePaths {
    /// The network namespace file.
    pub net: PathBuf,
    /// The IPC namespace file.
    pub ipc: PathBuf,
    /// The UTS namespace file.
    pub uts: PathBuf,
}

impl PodNamespacePaths {
    /// The paths for sandbox `id` under `run_dir`.
    pub fn new(run_dir: &Path, id: &str) -> Self {
        let path = |k: NamespaceKind| run_dir.join(k.dir_name()).join(id);
        Self {
            net: path(NamespaceKind::Net),
            ipc: path(NamespaceKind::Ipc),
            uts: path(NamespaceKind::Uts),
        }
    }

    /// The path of one kind.
    pub fn get(&self, kind: NamespaceKind) -> &Path {
        match kind {
            NamespaceKind::Net => &self.net,
            NamespaceKind::Ipc => &self.ipc,
            NamespaceKind::Uts => &self.uts,
        }
    }
}

/// Creating and removing pod namespaces.
pub trait PodNamespaces: Send + Sync + std::fmt::Debug {
    /// Creates new net, IPC and UTS namespaces pinned at `paths`, with
    /// `hostname` set and loopback up.
    fn create(&self, paths: &PodNamespacePaths, hostname: &str) -> io::Result<()>;

    /// Unpins and removes the namespace files; missing ones are not an error.
    fn remove(&self, paths: &PodNamespacePaths) -> io::Result<()>;

    /// Whether `path` still pins a namespace: after a restart of the host
    /// (or an unmount) it is missing or a plain file.
    fn is_pinned(&self, path: &Path) -> bool;
}

/// The real [`PodNamespaces`].
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxPodNamespaces;

impl PodNamespaces for LinuxPodNamespaces {
    fn create(&self, paths: &PodNamespacePaths, hostname: &str) -> io::Result<()> {
        for kind in NamespaceKind::ALL {
            let path = paths.get(kind);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::File::create(path)?;
        }
        let paths_for_thread = paths.clone();
        let hostname = hostname.to_owned();
        // unshare affects only the calling thread: a throwaway thread enters the
        // new namespaces, pins them, and exits; the rest of the process is untouched.
        let result = std::thread::spawn(move || enter_and_pin(&paths_for_thread, &hostname))
            .join()
            .map_err(|_| io::Error::other("namespace thread panicked"))?;
        if result.is_err() {
            let _ = self.remove(paths);
        }
        result
    }

    fn remove(&self, paths: &PodNamespacePaths) -> io::Result<()> {
        let mut first_err = None;
        for kind in NamespaceKind::ALL {
            let path = paths.get(kind);
            match rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH) {
                Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => {}
                Err(e) => {
                    first_err.get_or_insert(io::Error::from(e));
                }
            }
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn is_pinned(&self, path: &Path) -> bool {
        is_namespace_file(path)
    }
}

/// The magic number of the nsfs file system (`NSFS_MAGIC` in linux/magic.h):
/// what a bind mount of `/proc/<pid>/ns/<kind>` is.
const NSFS_MAGIC: u64 = 0x6e73_6673;

/// Whether `path` is a namespace file (a pin's bind mount, or one under
/// `/proc/<pid>/ns/`): one statfs, no mount table read.
pub fn is_namespace_file(path: &Path) -> bool {
    rustix::fs::statfs(path).is_ok_and(|fs| fs.f_type as u64 == NSFS_MAGIC)
}

fn enter_and_pin(paths: &PodNamespacePaths, hostname: &str) -> io::Result<()> {
    // SAFETY: without UnshareFlags::FILES the descriptor table stays shared,
    // which is the hazard `unshare_unsafe` guards against; NEWNET/NEWIPC/NEWUTS
    // only change this thread's namespace membership.
    unsafe {
        rustix::thread::unshare_unsafe(
            UnshareFlags::NEWNET | UnshareFlags::NEWIPC | UnshareFlags::NEWUTS,
        )?;
    }
    rustix::system::sethostname(hostname.as_bytes())?;
    loopback_up()?;
    for kind in NamespaceKind::ALL {
        let source = format!("/proc/thread-self/ns/{}", kind.proc_name());
        rustix::mount::mount_bind(source.as_str(), paths.get(kind))?;
    }
    Ok(())
}

/// Brings `lo` up in the calling thread's network namespace.
fn loopback_up() -> io::Result<()> {
    // SAFETY: plain socket(2); the result is checked and owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes ifru_flags of `req`, which we own.
    if unsafe { libc::ioctl(raw, libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just filled ifru_flags, the union member we read and write.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS reads `req`, which is initialised.
    if unsafe { libc::ioctl(raw, libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn paths_layout() {
        let p = PodNamespacePaths::new(Path::new("/run/skiff"), "abc");
        assert_eq!(p.net, Path::new("/run/skiff/netns/abc"));
        assert_eq!(p.ipc, Path::new("/run/skiff/ipcns/abc"));
        assert_eq!(p.uts, Path::new("/run/skiff/utsns/abc"));
        assert_eq!(p.get(NamespaceKind::Uts), p.uts);
    }

    /// Needs root (CI runs as root); skipped otherwise.
    #[test]
    fn create_and_remove_namespaces() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let paths = PodNamespacePaths::new(dir.path(), "pod1");
        LinuxPodNamespaces.create(&paths, "pod-host").unwrap();
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mounts = crate::mount::mounts_under(&info, dir.path());
        assert_eq!(mounts.len(), 3, "{mounts:?}");
        // The pinned namespace differs from ours.
        let ours = std::fs::metadata("/proc/self/ns/net").unwrap();
        let pinned = std::fs::metadata(&paths.net).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_ne!(ours.ino(), pinned.ino());
        for kind in NamespaceKind::ALL {
            assert!(LinuxPodNamespaces.is_pinned(paths.get(kind)), "{kind:?}");
        }
        // Our own hostname is untouched.
        let uname = rustix::system::uname();
        assert_ne!(uname.nodename().to_bytes(), b"pod-host");
        LinuxPodNamespaces.remove(&paths).unwrap();
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(crate::mount::mounts_under(&info, dir.path()).is_empty());
        assert!(!paths.net.exists() && !paths.ipc.exists() && !paths.uts.exists());
        assert!(!LinuxPodNamespaces.is_pinned(&paths.net));
        // A pin's file without its mount (what a run dir on a disk keeps
        // after a restart of the host) pins nothing.
        std::fs::create_dir_all(paths.net.parent().unwrap()).unwrap();
        std::fs::File::create(&paths.net).unwrap();
        assert!(!LinuxPodNamespaces.is_pinned(&paths.net));
        assert!(is_namespace_file(Path::new("/proc/self/ns/net")));
        LinuxPodNamespaces.remove(&paths).unwrap();
    }
}
