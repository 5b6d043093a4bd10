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
//! of them. With a journal ext4 reuses freed inodes at once, and spreading
//! would only cost its own search of the groups (Orlov's, for every new
//! subtree); other filesystems have no such flag. The hint is skipped on
//! both.

use std::io;
use std::path::Path;

use rustix::fs::{IFlags, Mode, OFlags};
use rustix::io::Errno;

/// Creates `dir` (and its parents), which will hold one subtree per pod or
/// container, and spreads its subdirectories where that helps
/// ([`spread_subdirectories`]); a failure to do so is only logged.
pub fn create_parent_of_subtrees(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    if let Err(e) = spread_subdirectories(dir) {
        tracing::debug!(dir = %dir.display(), error = %e, "not spreading subdirectories");
    }
    Ok(())
}

/// Marks `dir` so that its subdirectories are spread over the filesystem,
/// on ext2/3/4 without a journal. Returns whether the flag is set now;
/// `false` on a journaled ext4 (unless marked before) and where the
/// filesystem has no such flag (tmpfs, xfs, overlayfs, ...).
pub fn spread_subdirectories(dir: &Path) -> io::Result<bool> {
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )?;
    if has_journal(&fd) == Some(true) {
        return Ok(rustix::fs::ioctl_getflags(&fd).is_ok_and(|f| f.contains(IFlags::TOPDIR)));
    }
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

/// Whether the ext4 filesystem holding `fd` has a journal, from its
/// `/sys/fs/ext4/<device>/journal_task` ("<none>" without one); `None`
/// when that cannot be told (not ext4, or no such file).
fn has_journal(fd: &impl rustix::fd::AsFd) -> Option<bool> {
    let st = rustix::fs::fstat(fd).ok()?;
    let (major, minor) = (rustix::fs::major(st.st_dev), rustix::fs::minor(st.st_dev));
    let device = std::fs::read_link(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    let name = device.file_name()?.to_str()?;
    let task = std::fs::read_to_string(format!("/sys/fs/ext4/{name}/journal_task")).ok()?;
    Some(journal_task_names_one(&task))
}

fn journal_task_names_one(journal_task: &str) -> bool {
    journal_task.trim() != "<none>"
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
        let fd = rustix::fs::open(dir.path(), OFlags::RDONLY, Mode::empty()).unwrap();
        let journal = has_journal(&fd);
        if ext4 {
            assert!(journal.is_some(), "an ext4 without journal_task");
        }
        assert_eq!(
            marked,
            ext4 && journal == Some(false),
            "on a filesystem of type {} (journal: {journal:?})",
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
        assert!(!journal_task_names_one("<none>\n"));
        assert!(journal_task_names_one("612\n"));
        assert!(journal_task_names_one("0\n"));
        let nested = dir.path().join("a/b");
        create_parent_of_subtrees(&nested).unwrap();
        assert!(nested.is_dir());
        let missing = dir.path().join("missing");
        assert_eq!(
            spread_subdirectories(&missing).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}
