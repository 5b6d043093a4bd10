//! Placement hints for directories the agent fills with one subtree per pod
//! or container.
//!
//! On ext2/3/4 such a directory is marked "top of hierarchy"
//! (`FS_TOPDIR_FL`, `chattr +T`): the allocator then spreads its
//! subdirectories over the block groups, as it does for the directories in
//! `/`, instead of packing every one into the parent's group. Without a
//! journal, ext4 will not reuse an inode freed in the last minutes and scans
//! past each such inode on every allocation in its group; the files a pod
//! start creates and frees (records replaced by rename, overlayfs's checks
//! in a new work directory) made each allocation in a 100-pod burst scan all
//! of the burst's earlier ones. Spread out, each pod's allocations meet few
//! of them. Other filesystems have no such flag; the hint is then skipped.

use std::io;
use std::path::Path;

use rustix::fs::{IFlags, Mode, OFlags};
use rustix::io::Errno;

/// Marks `dir` so that its subdirectories are spread over the filesystem.
/// Returns whether the flag is set now; `false` where the filesystem has no
/// such flag (tmpfs, xfs, overlayfs, ...).
pub fn spread_subdirectories(dir: &Path) -> io::Result<bool> {
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )?;
    let flags = match rustix::fs::ioctl_getflags(&fd) {
        Ok(flags) => flags,
        Err(Errno::NOTTY | Errno::OPNOTSUPP | Errno::INVAL | Errno::NOSYS) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    if flags.contains(IFlags::TOPDIR) {
        return Ok(true);
    }
    match rustix::fs::ioctl_setflags(&fd, flags | IFlags::TOPDIR) {
        Ok(()) => {}
        Err(Errno::NOTTY | Errno::OPNOTSUPP | Errno::INVAL | Errno::NOSYS) => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    // A filesystem may accept the call and drop a flag it does not keep.
    Ok(rustix::fs::ioctl_getflags(&fd)?.contains(IFlags::TOPDIR))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn fs_type(dir: &Path) -> String {
        let st = rustix::fs::statfs(dir).unwrap();
        format!("{:#x}", st.f_type)
    }

    #[test]
    fn a_directory_is_marked_where_the_filesystem_keeps_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let marked = spread_subdirectories(dir.path()).unwrap();
        // ext2/3/4 share one magic number.
        let ext4 = fs_type(dir.path()) == "0xef53";
        assert_eq!(
            marked,
            ext4,
            "on a filesystem of type {}",
            fs_type(dir.path())
        );
        if marked {
            let out = std::process::Command::new("lsattr")
                .arg("-d")
                .arg(dir.path())
                .output()
                .unwrap();
            let attrs = String::from_utf8_lossy(&out.stdout);
            assert!(
                attrs.split_whitespace().next().unwrap().contains('T'),
                "{attrs}"
            );
            // Again: already marked.
            assert!(spread_subdirectories(dir.path()).unwrap());
        }
        // tmpfs has no flags at all.
        if Path::new("/dev/shm").is_dir() {
            let shm = tempfile::tempdir_in("/dev/shm").unwrap();
            assert!(!spread_subdirectories(shm.path()).unwrap());
        }
        let missing = dir.path().join("missing");
        assert_eq!(
            spread_subdirectories(&missing).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}
