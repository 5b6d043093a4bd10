//! Overlay mounts of container root filesystems and tmpfs mounts of memory-backed volumes.

use std::io;
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, UnmountFlags};

/// Mounting and unmounting container root filesystems and volumes.
pub trait Mounter: Send + Sync + std::fmt::Debug {
    /// Mounts an overlay of `lowerdirs` (top first, as overlayfs wants them)
    /// with `upper` and `work` at `target`. An empty `lowerdirs` is an error.
    fn mount_overlay(
        &self,
        lowerdirs: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> io::Result<()>;

    /// Mounts a fresh tmpfs at `target` (an existing directory), limited to
    /// `size_bytes` when given (the kubelet's `emptyDir.medium: Memory`).
    fn mount_tmpfs(&self, target: &Path, size_bytes: Option<u64>) -> io::Result<()>;

    /// Detaches whatever is mounted at `target`; nothing mounted is not an error.
    fn unmount(&self, target: &Path) -> io::Result<()>;

    /// Whether `path` is a mount point. The default reads this process's
    /// `/proc/self/mountinfo`; fakes answer from what they recorded.
    fn is_mount_point(&self, path: &Path) -> io::Result<bool> {
        is_mount_point(path)
    }
}

/// The tmpfs mount options: `size=<bytes>` when limited, none otherwise.
pub fn tmpfs_options(size_bytes: Option<u64>) -> String {
    match size_bytes {
        Some(size) => format!("size={size}"),
        None => String::new(),
    }
}

/// The real [`Mounter`].
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxMounter;

/// The overlay mount options for these directories.
///
/// Paths with `,` or `:` would break the option string, so they are refused.
pub fn overlay_options(lowerdirs: &[PathBuf], upper: &Path, work: &Path) -> io::Result<String> {
    if lowerdirs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "overlay needs at least one lower directory",
        ));
    }
    let mut lower = Vec::with_capacity(lowerdirs.len());
    for dir in lowerdirs.iter().map(PathBuf::as_path).chain([upper, work]) {
        let text = dir.to_str().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "overlay path is not UTF-8")
        })?;
        if text.contains([',', ':']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("overlay path {text:?} contains ',' or ':'"),
            ));
        }
        lower.push(text);
    }
    let work_text = lower.pop().unwrap_or_default();
    let upper_text = lower.pop().unwrap_or_default();
    Ok(format!(
        "lowerdir={},upperdir={upper_text},workdir={work_text}",
        lower.join(":")
    ))
}

impl Mounter for LinuxMounter {
    fn mount_overlay(
        &self,
        lowerdirs: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> io::Result<()> {
        let options = overlay_options(lowerdirs, upper, work)?;
        let options = std::ffi::CString::new(options)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        rustix::mount::mount(
            "overlay",
            target,
            "overlay",
            MountFlags::empty(),
            Some(options.as_c_str()),
        )?;
        Ok(())
    }

    fn mount_tmpfs(&self, target: &Path, size_bytes: Option<u64>) -> io::Result<()> {
        let options = std::ffi::CString::new(tmpfs_options(size_bytes))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        rustix::mount::mount(
            "tmpfs",
            target,
            "tmpfs",
            MountFlags::empty(),
            Some(options.as_c_str()),
        )?;
        Ok(())
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        match rustix::mount::unmount(target, UnmountFlags::DETACH) {
            Ok(()) => Ok(()),
            // EINVAL: not a mount point; ENOENT: already gone.
            Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOENT => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Whether `path` is a mount point, from `/proc/self/mountinfo`.
pub fn is_mount_point(path: &Path) -> io::Result<bool> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(mounts_under(&info, path).iter().any(|m| m == path))
}

/// Mount points in `mountinfo` text at or below `dir`.
pub fn mounts_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let oct = &field[i + 1..i + 4];
            if let Ok(v) = u8::from_str_radix(oct, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn overlay_options_order_and_validation() {
        let cases: &[(&[&str], &str, &str, Option<&str>)] = &[
            (
                &["/l/top", "/l/base"],
                "/c/upper",
                "/c/work",
                Some("lowerdir=/l/top:/l/base,upperdir=/c/upper,workdir=/c/work"),
            ),
            (
                &["/l/a"],
                "/u",
                "/w",
                Some("lowerdir=/l/a,upperdir=/u,workdir=/w"),
            ),
            (&[], "/u", "/w", None),
            (&["/l/a,b"], "/u", "/w", None),
            (&["/l/a"], "/u:x", "/w", None),
        ];
        for (lower, upper, work, want) in cases {
            let lower: Vec<PathBuf> = lower.iter().map(PathBuf::from).collect();
            let got = overlay_options(&lower, Path::new(upper), Path::new(work)).ok();
            assert_eq!(got.as_deref(), *want, "{lower:?}");
        }
    }

    #[test]
    fn tmpfs_options_size() {
        assert_eq!(tmpfs_options(None), "");
        assert_eq!(tmpfs_options(Some(64 << 20)), "size=67108864");
    }

    #[test]
    fn tmpfs_mount_and_unmount() {
        if !rustix::process::geteuid().is_root() {
            println!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mounter = LinuxMounter;
        mounter.mount_tmpfs(dir.path(), Some(1 << 20)).unwrap();
        assert!(mounter.is_mount_point(dir.path()).unwrap());
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let line = info
            .lines()
            .find(|l| l.split(' ').nth(4) == dir.path().to_str())
            .unwrap();
        assert!(line.contains(" - tmpfs tmpfs "), "{line}");
        assert!(line.contains("size=1024k"), "{line}");
        mounter.unmount(dir.path()).unwrap();
        assert!(!mounter.is_mount_point(dir.path()).unwrap());
    }

    #[test]
    fn mountinfo_parsing() {
        let info = "22 1 0:21 / /proc rw - proc proc rw\n\
                    90 22 0:50 / /run/x/a\\040b rw - overlay overlay rw\n\
                    91 22 0:51 / /run/x/c rw - nsfs nsfs rw\n\
                    92 22 0:51 / /run/xy rw - nsfs nsfs rw\n";
        let got = mounts_under(info, Path::new("/run/x"));
        assert_eq!(
            got,
            vec![PathBuf::from("/run/x/a b"), PathBuf::from("/run/x/c")]
        );
    }
}
