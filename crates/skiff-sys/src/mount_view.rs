//! A container supervisor's trimmed view of the host's mounts.
//!
//! Every pod adds host mounts (its pinned namespaces, each container's
//! rootfs), and a container's new mount namespace copies every mount of its
//! creator's (and an OCI runtime such as libcontainer reads
//! `/proc/self/mountinfo` several times per container). So the cost of
//! starting a container grew with the number of pods, and every copy held
//! the kernel's mount lock against the other pods' mounts and unshares.
//!
//! The runtime keeps its per-pod mounts under a few *mount roots*: its own
//! directories, bind-mounted onto themselves (private, so what is mounted
//! below does not propagate to peers). A supervisor then enters a new mount
//! namespace, drops each mount root with one lazy unmount (the directories
//! stay, on their underlying filesystem) and attaches again only the mounts
//! of its own container. The host's view is untouched: the new namespace is
//! a downstream copy, so nothing done in it propagates back.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::CWD;
use rustix::mount::{
    MountFlags, MountPropagationFlags, MoveMountFlags, OpenTreeFlags, UnmountFlags, mount_bind,
    mount_change, move_mount, open_tree, unmount,
};
use rustix::thread::{LinkNameSpaceType, UnshareFlags, move_into_link_name_space};

use crate::mount::mounts_under;

/// Makes `dir` (created if missing) a mount root: a private bind mount of
/// itself, unless it already is a mount point (an earlier agent's, kept
/// while its pods' mounts lived below it). Returns whether it mounted one.
///
/// Mounts already below a `dir` that is no mount point (pods of an agent
/// that ran without mount roots) make it an error: a bind mount over them
/// would hide them from the paths they are known by.
pub fn ensure_mount_root(dir: &Path) -> io::Result<bool> {
    std::fs::create_dir_all(dir)?;
    let below = mounts_below(dir)?;
    if below.iter().any(|m| m == dir) {
        return Ok(false);
    }
    busy_if_mounted_below(dir, &below)?;
    bind_private(dir)?;
    Ok(true)
}

/// [`ensure_mount_root`] over a fresh tmpfs (nosuid, nodev, mode 0755) on
/// `dir`: for short-lived state such as namespace pins (containerd keeps its
/// state under /run), where a new file costs far less CPU than on a disk
/// filesystem and nothing must outlive a reboot. The root is a bind mount of
/// `dir` onto itself on top of the tmpfs, so a supervisor that drops the
/// root still finds the files it reattaches its own mounts onto.
///
/// A `dir` that already is a mount point (this root from an earlier agent,
/// or a plain mount root of an older one) is left as it is.
pub fn ensure_tmpfs_mount_root(dir: &Path) -> io::Result<bool> {
    std::fs::create_dir_all(dir)?;
    let below = mounts_below(dir)?;
    if below.iter().any(|m| m == dir) {
        return Ok(false);
    }
    busy_if_mounted_below(dir, &below)?;
    rustix::mount::mount(
        "tmpfs",
        dir,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        Some(c"mode=0755"),
    )?;
    let private = mount_change(dir, MountPropagationFlags::PRIVATE)
        .map_err(io::Error::from)
        .and_then(|()| bind_private(dir));
    if let Err(e) = private {
        let _ = unmount(dir, UnmountFlags::DETACH);
        return Err(e);
    }
    Ok(true)
}

fn mounts_below(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(mounts_under(&info, dir))
}

fn busy_if_mounted_below(dir: &Path, below: &[PathBuf]) -> io::Result<()> {
    match below.first() {
        Some(m) => Err(io::Error::new(
            io::ErrorKind::ResourceBusy,
            format!(
                "{} has mounts below it ({}) but is no mount root",
                dir.display(),
                m.display()
            ),
        )),
        None => Ok(()),
    }
}

fn bind_private(dir: &Path) -> io::Result<()> {
    mount_bind(dir, dir)?;
    if let Err(e) = mount_change(dir, MountPropagationFlags::PRIVATE) {
        let _ = unmount(dir, UnmountFlags::DETACH);
        return Err(e.into());
    }
    Ok(())
}

/// Unmounts the mount root `dir` if nothing is mounted below it any more.
/// Returns whether it did (`false`: busy, or not a mount point).
pub fn release_mount_root(dir: &Path) -> io::Result<bool> {
    // Not lazy: with mounts still below it the kernel answers EBUSY and the
    // root stays for the next agent to reuse.
    match unmount(dir, UnmountFlags::empty()) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::BUSY | rustix::io::Errno::INVAL | rustix::io::Errno::NOENT) => {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Unmounts a root made by [`ensure_tmpfs_mount_root`] (and its tmpfs,
/// with what is in it) if nothing is mounted below it any more. Returns
/// whether it did.
pub fn release_tmpfs_mount_root(dir: &Path) -> io::Result<bool> {
    if !release_mount_root(dir)? {
        return Ok(false);
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    if mounts_under(&info, dir).iter().any(|m| m == dir) {
        release_mount_root(dir)?;
    }
    Ok(true)
}

/// What a supervisor's mount namespace leaves out and keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrimmedView {
    /// Mount roots to drop, each with everything mounted below it.
    pub detach: Vec<PathBuf>,
    /// Paths whose mounts (at or below them) must stay visible: the
    /// container's rootfs, its sandbox's namespace files, bind sources.
    /// Those below one of `detach` always; with a `template` that does not
    /// follow the host, the others too.
    pub keep: Vec<PathBuf>,
    /// A [`MountTemplate`]'s namespace (its [`MountTemplate::path`]) with
    /// `detach` already dropped: the view starts as a copy of it instead of
    /// a copy of the host's every mount. Unusable (its owner gone), the
    /// host's view is trimmed as without it.
    pub template: Option<PathBuf>,
}

/// The host's mounts without the mount roots, made once by the runtime: a
/// supervisor's new mount namespace copies it (a few dozen mounts) instead
/// of the host's (which holds every pod's mounts, hundreds on a busy node).
///
/// It is a downstream copy of the host. Where the host's `/` is a shared
/// mount, host mounts made later outside the roots reach it by propagation;
/// where it is private, they do not, and a supervisor must attach from the
/// host's view every mount its container takes from the host
/// ([`MountTemplate::follows_host`]). Mounts below the roots never
/// propagate (the roots are private); a supervisor attaches its own.
/// The namespace lives as long as this descriptor: nothing runs in it.
#[derive(Debug)]
pub struct MountTemplate {
    ns: OwnedFd,
    follows_host: bool,
}

impl MountTemplate {
    /// Makes the template that drops `detach`; `None` when there is nothing
    /// to drop.
    pub fn new(detach: &[PathBuf]) -> io::Result<Option<Self>> {
        if detach.is_empty() {
            return Ok(None);
        }
        let follows_host = host_root_is_shared()?;
        let view = TrimmedView {
            detach: detach.to_vec(),
            keep: Vec::new(),
            template: None,
        };
        // A thread of its own enters the namespace and ends: the descriptor
        // is then the only thing that holds the namespace.
        let ns = std::thread::Builder::new()
            .name("skiff-mnt-tmpl".into())
            .spawn(move || -> io::Result<OwnedFd> {
                enter_trimmed_mount_namespace(&view)?;
                Ok(std::fs::File::open("/proc/thread-self/ns/mnt")?.into())
            })?
            .join()
            .map_err(|_| io::Error::other("mount template thread panicked"))??;
        Ok(Some(Self { ns, follows_host }))
    }

    /// Whether host mounts made after the template reach it (the host's
    /// `/` is shared).
    pub fn follows_host(&self) -> bool {
        self.follows_host
    }

    /// A path by which another process of this host opens the namespace
    /// (while this process holds it).
    pub fn path(&self) -> PathBuf {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            self.ns.as_raw_fd()
        ))
    }
}

/// Whether this process's `/` is a shared mount, so that mounts made on
/// the host later reach a namespace copied from it (systemd hosts), or a
/// private one (many containers and minimal hosts), so that they do not.
pub fn host_root_is_shared() -> io::Result<bool> {
    Ok(root_is_shared(&std::fs::read_to_string(
        "/proc/self/mountinfo",
    )?))
}

/// Whether mountinfo's entry for `/` (the last one, the one on top) names
/// a peer group.
fn root_is_shared(mountinfo: &str) -> bool {
    mountinfo
        .lines()
        .rev()
        .find_map(|line| {
            let (left, _) = line.split_once(" - ")?;
            let mut fields = left.split(' ');
            (fields.nth(4)? == "/").then(|| fields.skip(1).any(|f| f.starts_with("shared:")))
        })
        .unwrap_or(false)
}

/// Moves the calling thread into a new mount namespace with `view` applied.
///
/// On error the thread is back in the mount namespace it started in (the
/// error says what failed). Call it before any thread that must share the
/// new view is spawned: each thread has its own filesystem context after
/// this (other threads keep theirs).
pub fn enter_trimmed_mount_namespace(view: &TrimmedView) -> io::Result<()> {
    let original = std::fs::File::open("/proc/thread-self/ns/mnt")?;
    if let Some(template) = view.template.as_deref()
        && let Ok(template) = std::fs::File::open(template)
    {
        return enter_from_template(view, template.as_fd(), original.as_fd());
    }
    // Detached copies of the mounts to keep, taken in the host's view: they
    // survive the unmount of their roots below and are attached again after.
    let kept = clone_trees(&view.keep)?;
    // SAFETY: NEWNS changes only the calling thread's mount namespace (and
    // gives it its own filesystem context); the descriptor table stays
    // shared, the hazard `unshare_unsafe` guards against.
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS) }
        .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("unshare mounts: {e}")))?;
    let trimmed = trim(view, &kept);
    if let Err(e) = trimmed {
        move_into_link_name_space(original.as_fd(), Some(LinkNameSpaceType::Mount)).map_err(
            |back| io::Error::other(format!("{e}; and returning to the host's mounts: {back}")),
        )?;
        return Err(e);
    }
    Ok(())
}

/// Mount trees cloned (detached) from the current view, one per path.
fn clone_trees(paths: &[PathBuf]) -> io::Result<Vec<(OwnedFd, &Path)>> {
    paths
        .iter()
        .map(|path| {
            let tree = open_tree(
                CWD,
                path.as_path(),
                OpenTreeFlags::OPEN_TREE_CLONE
                    | OpenTreeFlags::OPEN_TREE_CLOEXEC
                    | OpenTreeFlags::AT_RECURSIVE,
            )
            .map_err(|e| with_path("clone mount", path, e.into()))?;
            Ok((tree, path.as_path()))
        })
        .collect()
}

fn enter_from_template(
    view: &TrimmedView,
    template: BorrowedFd<'_>,
    original: BorrowedFd<'_>,
) -> io::Result<()> {
    let kept = clone_trees(&view.keep)?;
    let cwd = std::env::current_dir().ok();
    // SAFETY: FS gives the calling thread its own filesystem context (root,
    // cwd, umask), which joining a mount namespace requires; the descriptor
    // table stays shared.
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::FS) }
        .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("unshare fs: {e}")))?;
    let entered = move_into_link_name_space(template, Some(LinkNameSpaceType::Mount))
        .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("join template: {e}")))
        .and_then(|()| {
            // SAFETY: as in `enter_trimmed_mount_namespace`.
            unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS) }.map_err(|e| {
                io::Error::new(io::Error::from(e).kind(), format!("unshare mounts: {e}"))
            })
        })
        .and_then(|()| attach(&kept));
    if let Err(e) = entered {
        move_into_link_name_space(original, Some(LinkNameSpaceType::Mount)).map_err(|back| {
            io::Error::other(format!("{e}; and returning to the host's mounts: {back}"))
        })?;
        return Err(e);
    }
    // Joining a mount namespace moved us to its root.
    if let Some(cwd) = cwd {
        let _ = std::env::set_current_dir(cwd);
    }
    Ok(())
}

fn trim(view: &TrimmedView, kept: &[(OwnedFd, &Path)]) -> io::Result<()> {
    // Downstream of the host: unmounting here must not reach it.
    mount_change(
        "/",
        MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC,
    )
    .map_err(|e| with_path("make downstream", Path::new("/"), e.into()))?;
    for root in &view.detach {
        unmount(root.as_path(), UnmountFlags::DETACH)
            .map_err(|e| with_path("detach", root, e.into()))?;
    }
    attach(kept)
}

/// Attaches each cloned tree at its path (in the current view).
fn attach(kept: &[(OwnedFd, &Path)]) -> io::Result<()> {
    for (tree, path) in kept {
        move_mount(
            tree.as_fd(),
            "",
            CWD,
            *path,
            // A bind source behind a link is mounted where the link leads,
            // as the container's bind mount resolves it.
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_SYMLINKS,
        )
        .map_err(|e| with_path("attach", path, e.into()))?;
    }
    Ok(())
}

fn with_path(what: &str, path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::mount::{LinuxMounter, Mounter, is_mount_point};

    fn mounts_in_thread_view(dir: &Path) -> Vec<PathBuf> {
        let info = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
        mounts_under(&info, dir)
    }

    /// A scratch directory for a test that mounts; `None` (the test is
    /// skipped) when not root.
    fn scratch_as_root() -> Option<tempfile::TempDir> {
        if !rustix::process::geteuid().is_root() {
            println!("skipped: needs root");
            return None;
        }
        Some(tempfile::tempdir().unwrap())
    }

    #[test]
    fn trimmed_view_keeps_only_the_listed_mounts() {
        let Some(dir) = scratch_as_root() else { return };
        let root = dir.path().join("root");
        assert!(ensure_mount_root(&root).unwrap());
        // A second call finds it mounted and leaves it alone.
        assert!(!ensure_mount_root(&root).unwrap());
        let (mine, other) = (root.join("mine"), root.join("other"));
        let mounter = LinuxMounter;
        for d in [&mine, &other] {
            std::fs::create_dir_all(d).unwrap();
            mounter.mount_tmpfs(d, Some(1 << 20)).unwrap();
        }
        std::fs::write(mine.join("file"), "mine").unwrap();
        // Busy while pods' mounts are below it.
        assert!(!release_mount_root(&root).unwrap());

        let view = TrimmedView {
            detach: vec![root.clone()],
            keep: vec![mine.clone()],
            template: None,
        };
        let (root_t, mine_t) = (root.clone(), mine.clone());
        let seen = std::thread::spawn(move || {
            enter_trimmed_mount_namespace(&view).unwrap();
            let content = std::fs::read_to_string(mine_t.join("file")).unwrap();
            (mounts_in_thread_view(&root_t), content)
        })
        .join()
        .unwrap();
        assert_eq!(seen, (vec![mine.clone()], "mine".to_owned()));
        // The host's view is as it was.
        let host = mounts_in_thread_view(&root);
        assert_eq!(host, vec![root.clone(), mine.clone(), other.clone()]);

        // A path to keep that cannot be cloned: an error, and the thread is
        // back in the host's view.
        let bad = TrimmedView {
            detach: vec![root.clone()],
            keep: vec![root.join("missing")],
            template: None,
        };
        let (root_t, bad_t) = (root.clone(), bad.clone());
        let (err, after) = std::thread::spawn(move || {
            let err = enter_trimmed_mount_namespace(&bad_t).unwrap_err();
            (err.to_string(), mounts_in_thread_view(&root_t))
        })
        .join()
        .unwrap();
        assert!(err.contains("missing"), "{err}");
        assert_eq!(after.len(), 3, "{after:?} ({bad:?})");

        for d in [&mine, &other] {
            mounter.unmount(d).unwrap();
        }
        assert!(release_mount_root(&root).unwrap());
        assert!(!is_mount_point(&root).unwrap());

        // Mounts below a directory that is no root: it does not become one.
        mounter.mount_tmpfs(&mine, None).unwrap();
        let err = ensure_mount_root(&root).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ResourceBusy, "{err}");
        let err = ensure_tmpfs_mount_root(&root).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ResourceBusy, "{err}");
        assert!(!is_mount_point(&root).unwrap());
        mounter.unmount(&mine).unwrap();
    }

    fn fs_type(dir: &Path) -> Option<String> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let dir = dir.to_string_lossy().into_owned();
        info.lines().find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            (left.split(' ').nth(4)? == dir).then(|| right.split(' ').next().unwrap().to_owned())
        })
    }

    #[test]
    fn a_template_view_starts_without_the_roots() {
        let Some(dir) = scratch_as_root() else { return };
        let root = dir.path().join("root");
        assert!(ensure_mount_root(&root).unwrap());
        let mounter = LinuxMounter;
        let tmpfs_with_file = |d: &Path| {
            std::fs::create_dir_all(d).unwrap();
            mounter.mount_tmpfs(d, Some(1 << 20)).unwrap();
            std::fs::write(d.join("file"), d.display().to_string()).unwrap();
        };
        let (mine, other) = (root.join("mine"), root.join("other"));
        tmpfs_with_file(&mine);
        tmpfs_with_file(&other);
        let template = MountTemplate::new(std::slice::from_ref(&root))
            .unwrap()
            .unwrap();
        assert!(MountTemplate::new(&[]).unwrap().is_none());
        // Made after the template: one below the root, one outside it.
        let late = root.join("late");
        tmpfs_with_file(&late);
        let outside = dir.path().join("outside");
        tmpfs_with_file(&outside);

        let enter = |keep: Vec<PathBuf>, template: Option<PathBuf>| {
            let view = TrimmedView {
                detach: vec![root.clone()],
                keep,
                template,
            };
            let (root, outside) = (root.clone(), outside.clone());
            std::thread::spawn(move || {
                let cwd = std::env::current_dir().unwrap();
                enter_trimmed_mount_namespace(&view).unwrap();
                assert_eq!(std::env::current_dir().unwrap(), cwd);
                let files: Vec<String> = view
                    .keep
                    .iter()
                    .map(|k| std::fs::read_to_string(k.join("file")).unwrap())
                    .collect();
                (
                    mounts_in_thread_view(&root),
                    mounts_in_thread_view(&outside) == [outside],
                    files,
                )
            })
            .join()
            .unwrap()
        };
        let texts = |paths: &[&PathBuf]| -> Vec<String> {
            paths.iter().map(|p| p.display().to_string()).collect()
        };
        // From the template: the kept mounts, and the one outside only if
        // the host's mounts propagate to it.
        let (below, sees_outside, files) =
            enter(vec![mine.clone(), late.clone()], Some(template.path()));
        assert_eq!(below, vec![mine.clone(), late.clone()]);
        assert_eq!(sees_outside, template.follows_host());
        assert_eq!(files, texts(&[&mine, &late]));
        // Kept, it is there either way.
        let (below, sees_outside, files) =
            enter(vec![late.clone(), outside.clone()], Some(template.path()));
        assert_eq!(below, vec![late.clone()]);
        assert!(sees_outside);
        assert_eq!(files, texts(&[&late, &outside]));
        // A template that is gone: the host's view, trimmed.
        let (below, sees_outside, _) = enter(
            vec![mine.clone()],
            Some(dir.path().join("no-such-namespace")),
        );
        assert_eq!(below, vec![mine.clone()]);
        assert!(sees_outside);
        // The host's view is as it was.
        assert_eq!(
            mounts_in_thread_view(&root),
            vec![root.clone(), mine.clone(), other.clone(), late.clone()]
        );
        drop(template);

        for d in [&mine, &other, &late, &outside] {
            mounter.unmount(d).unwrap();
        }
        assert!(release_mount_root(&root).unwrap());
    }

    #[test]
    fn root_sharing_is_read_from_the_top_root_mount() {
        let private = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n";
        assert!(!root_is_shared(private));
        let shared = "24 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                      30 24 0:5 / /dev rw shared:2 - devtmpfs udev rw\n";
        assert!(root_is_shared(shared));
        // A root mounted over the first: the top one counts.
        let over = format!("{shared}40 24 0:40 / / rw master:1 - overlay overlay rw\n");
        assert!(!root_is_shared(&over));
        assert!(!root_is_shared(""));
    }

    #[test]
    fn a_tmpfs_mount_root_holds_files_until_released() {
        let Some(dir) = scratch_as_root() else { return };
        let root = dir.path().join("run");
        // A file already there (on the disk below) is hidden, not lost.
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("old"), "disk").unwrap();
        assert!(ensure_tmpfs_mount_root(&root).unwrap());
        assert_eq!(fs_type(&root).as_deref(), Some("tmpfs"));
        assert!(!root.join("old").exists());
        // An agent started again keeps the root and what is in it.
        std::fs::write(root.join("pin"), "x").unwrap();
        assert!(!ensure_tmpfs_mount_root(&root).unwrap());
        assert_eq!(std::fs::read_to_string(root.join("pin")).unwrap(), "x");

        // A supervisor that drops the root still has the tmpfs's files to
        // attach its own mounts onto.
        let mine = root.join("mine");
        std::fs::create_dir_all(&mine).unwrap();
        LinuxMounter.mount_tmpfs(&mine, Some(1 << 20)).unwrap();
        std::fs::write(mine.join("file"), "mine").unwrap();
        let view = TrimmedView {
            detach: vec![root.clone()],
            keep: vec![mine.clone()],
            template: None,
        };
        let (root_t, mine_t) = (root.clone(), mine.clone());
        let (mut seen, content, pin) = std::thread::spawn(move || {
            enter_trimmed_mount_namespace(&view).unwrap();
            (
                mounts_in_thread_view(&root_t),
                std::fs::read_to_string(mine_t.join("file")).unwrap(),
                std::fs::read_to_string(root_t.join("pin")).unwrap(),
            )
        })
        .join()
        .unwrap();
        seen.sort();
        assert_eq!(seen, vec![root.clone(), mine.clone()], "the tmpfs and mine");
        assert_eq!((content.as_str(), pin.as_str()), ("mine", "x"));

        // Busy while something is mounted below it.
        assert!(!release_tmpfs_mount_root(&root).unwrap());
        LinuxMounter.unmount(&mine).unwrap();
        assert!(release_tmpfs_mount_root(&root).unwrap());
        assert_eq!(fs_type(&root), None);
        assert_eq!(std::fs::read_to_string(root.join("old")).unwrap(), "disk");
    }
}
