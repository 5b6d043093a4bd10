//! What the container's process does between the clone and the exec: the
//! root filesystem (`init`) and the process's stdio and identity
//! (`exec_process`). Runs in a single-threaded child; errors are messages
//! for the supervisor's report.

use std::convert::Infallible;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use rustix::fs::{CWD, Mode, OFlags, ResolveFlags};
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};
use rustix::thread::{CapabilitySet, CapabilitySets, LinkNameSpaceType};

use super::{ContainerSpec, MountSpec, ProcessSpec, Stdio};
use crate::cgroups::{CgroupMode, cgroup_dir, cgroup_mode, hierarchy_roots};
use crate::namespaces::NamespaceKind;

/// Character devices every container gets: name, major, minor (as runc's
/// default device list; the devices cgroup allows exactly these).
pub const DEFAULT_DEVICES: &[(&str, u32, u32)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

const DEV_LINKS: &[(&str, &str)] = &[
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
    ("core", "/proc/kcore"),
];

fn err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// The init's set-up: pod namespaces, filesystems, `pivot_root`, then
/// [`exec_process`].
pub(super) fn init(
    spec: &ContainerSpec,
    join: &[(NamespaceKind, OwnedFd)],
    stdio: Stdio,
) -> Result<Infallible, String> {
    for (kind, fd) in join {
        let ty = match kind {
            NamespaceKind::Net => LinkNameSpaceType::Network,
            NamespaceKind::Ipc => LinkNameSpaceType::InterProcessCommunication,
            NamespaceKind::Uts => LinkNameSpaceType::HostNameAndNISDomainName,
        };
        rustix::thread::move_into_link_name_space(fd.as_fd(), Some(ty)).map_err(|e| {
            err(
                format_args!("join the pod's {} namespace", kind.proc_name()),
                e,
            )
        })?;
    }
    // Nothing mounted from here on reaches the host.
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC,
    )
    .map_err(|e| err("make / a downstream mount", e))?;
    // Exact modes for what we create; the process gets 022 back before exec.
    rustix::process::umask(Mode::empty());
    let root = rustix::fs::open(
        &spec.rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err(format_args!("open rootfs {}", spec.rootfs.display()), e))?;
    for m in &spec.mounts {
        mount_one(&root, m, &spec.cgroups_path)
            .map_err(|e| format!("mount {} on {}: {e}", m.source, m.destination))?;
    }
    make_devices(&root)?;
    if !spec.process.cwd.is_empty() {
        resolve(&root, &spec.process.cwd, Create::Dir).map_err(|e| {
            err(
                format_args!("create working directory {:?}", spec.process.cwd),
                e,
            )
        })?;
    }
    drop(root);
    pivot_root(&spec.rootfs)?;
    for path in &spec.masked_paths {
        mask(path).map_err(|e| err(format_args!("mask {path}"), e))?;
    }
    for path in &spec.readonly_paths {
        make_readonly(path).map_err(|e| err(format_args!("make {path} read-only"), e))?;
    }
    if spec.readonly_root {
        rustix::mount::mount_remount("/", MountFlags::BIND | MountFlags::RDONLY, "")
            .map_err(|e| err("make the root read-only", e))?;
    }
    exec_process(&spec.process, stdio, false)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Create {
    No,
    Dir,
    File,
}

/// Opens `path` (an O_PATH descriptor) resolved inside `root`: symlinks
/// and `..` cannot leave it. With `create`, missing components are made
/// (directories, and the last one as `create` says); a dangling symlink
/// gets what it points at made, inside `root` (as runc does for an image's
/// `/etc/resolv.conf -> ../run/...`).
fn resolve(root: &OwnedFd, path: &str, create: Create) -> io::Result<OwnedFd> {
    resolve_within(root, path, create, 0)
}

/// Symlinks followed while creating, at most (the kernel's own limit).
const MAX_LINKS: u32 = 40;

fn resolve_within(root: &OwnedFd, path: &str, create: Create, links: u32) -> io::Result<OwnedFd> {
    if links > MAX_LINKS {
        return Err(rustix::io::Errno::LOOP.into());
    }
    let rel = path.trim_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    let open = || {
        rustix::fs::openat2(
            root,
            rel,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
    };
    match open() {
        Ok(fd) => return Ok(fd),
        Err(rustix::io::Errno::NOENT) if create != Create::No => {}
        Err(e) => return Err(e.into()),
    }
    let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let dir = resolve_within(root, parent, Create::Dir, links + 1)?;
    if let Ok(target) = rustix::fs::readlinkat(&dir, name, Vec::new()) {
        let target = target.to_string_lossy();
        let next = if target.starts_with('/') {
            target.into_owned()
        } else {
            format!("{parent}/{target}")
        };
        return resolve_within(root, &next, create, links + 1);
    }
    // O_PATH descriptors serve as the `dirfd` of *at calls.
    let made = match create {
        Create::File => rustix::fs::openat(
            &dir,
            name,
            OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_bits_truncate(0o644),
        )
        .map(drop),
        _ => rustix::fs::mkdirat(&dir, name, Mode::from_bits_truncate(0o755)),
    };
    match made {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(open()?)
}

/// The path that reaches what `fd` refers to (for mount calls).
fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

fn mount_one(root: &OwnedFd, m: &MountSpec, cgroups_path: &str) -> io::Result<()> {
    let o = &m.options;
    if m.fs_type == "cgroup" || m.fs_type == "cgroup2" {
        return cgroup_view(root, m, cgroups_path);
    }
    if o.bind || m.fs_type == "bind" || m.fs_type.is_empty() {
        let is_dir = std::fs::metadata(&m.source)?.is_dir();
        let target = resolve(
            root,
            &m.destination,
            if is_dir { Create::Dir } else { Create::File },
        )?;
        let mut flags = MountFlags::BIND;
        if o.recursive {
            flags |= MountFlags::REC;
        }
        rustix::mount::mount(m.source.as_str(), fd_path(&target), "", flags, None)?;
        drop(target);
        // The new mount, not the directory under it.
        let target = resolve(root, &m.destination, Create::No)?;
        if o.readonly || !o.flags.is_empty() {
            let mut flags = MountFlags::BIND | o.flags;
            if o.readonly {
                flags |= MountFlags::RDONLY;
            }
            rustix::mount::mount_remount(fd_path(&target), flags, "")?;
        }
        if let Some(p) = o.propagation {
            rustix::mount::mount_change(fd_path(&target), p)?;
        }
        return Ok(());
    }
    let target = resolve(root, &m.destination, Create::Dir)?;
    let mut flags = o.flags;
    if o.readonly {
        flags |= MountFlags::RDONLY;
    }
    let data = CString::new(o.data.as_str()).map_err(|_| io::ErrorKind::InvalidInput)?;
    rustix::mount::mount(
        m.source.as_str(),
        fd_path(&target),
        m.fs_type.as_str(),
        flags,
        Some(data.as_c_str()),
    )?;
    if let Some(p) = o.propagation {
        let target = resolve(root, &m.destination, Create::No)?;
        rustix::mount::mount_change(fd_path(&target), p)?;
    }
    Ok(())
}

/// `/sys/fs/cgroup` as the container sees it: its own cgroup of each
/// hierarchy (as runc shows it without a cgroup namespace). On cgroup v2
/// the one directory; on v1 and hybrid hosts a tmpfs with one bind mount per
/// hierarchy, named as on the host (and `cpu` -> `cpu,cpuacct` links).
fn cgroup_view(root: &OwnedFd, m: &MountSpec, cgroups_path: &str) -> io::Result<()> {
    let o = &m.options;
    let bind_flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC | o.flags;
    let bind_ro = |source: &Path, target: &OwnedFd, reopen: &dyn Fn() -> io::Result<OwnedFd>| {
        rustix::mount::mount(source, fd_path(target), "", MountFlags::BIND, None)?;
        let mut flags = MountFlags::BIND | bind_flags;
        if o.readonly {
            flags |= MountFlags::RDONLY;
        }
        rustix::mount::mount_remount(fd_path(&reopen()?), flags, "")?;
        io::Result::Ok(())
    };
    let target = resolve(root, &m.destination, Create::Dir)?;
    if cgroup_mode() == CgroupMode::Unified {
        let host = cgroup_dir(Path::new("/sys/fs/cgroup"), cgroups_path);
        return bind_ro(&host, &target, &|| {
            resolve(root, &m.destination, Create::No)
        });
    }
    rustix::mount::mount(
        "tmpfs",
        fd_path(&target),
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        Some(c"mode=755"),
    )?;
    drop(target);
    let base = resolve(root, &m.destination, Create::No)?;
    for hierarchy in hierarchy_roots()? {
        let Some(name) = hierarchy.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        // One walk down the host's (long) cgroup path: the descriptor is
        // the bind's source.
        let host = match rustix::fs::open(
            cgroup_dir(hierarchy, cgroups_path),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => continue,
            Err(e) => return Err(e.into()),
        };
        match rustix::fs::mkdirat(&base, name, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        let open = || -> io::Result<OwnedFd> {
            Ok(rustix::fs::openat(
                &base,
                name,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?)
        };
        bind_ro(Path::new(&fd_path(&host)), &open()?, &open)?;
        if name.contains(',') {
            for part in name.split(',') {
                match rustix::fs::symlinkat(name, &base, part) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    if o.readonly {
        rustix::mount::mount_remount(
            fd_path(&base),
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC | MountFlags::RDONLY,
            "mode=755",
        )?;
    }
    Ok(())
}

/// The default devices and `/dev`'s usual links, in the container's `/dev`.
fn make_devices(root: &OwnedFd) -> Result<(), String> {
    let dev = resolve(root, "/dev", Create::Dir).map_err(|e| err("open /dev", e))?;
    // mknodat needs a real directory descriptor, not O_PATH.
    let dev = rustix::fs::openat(
        &dev,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err("open /dev", e))?;
    for (name, major, minor) in DEFAULT_DEVICES {
        let made = rustix::fs::mknodat(
            &dev,
            *name,
            rustix::fs::FileType::CharacterDevice,
            Mode::from_bits_truncate(0o666),
            rustix::fs::makedev(*major, *minor),
        );
        match made {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(err(format_args!("create /dev/{name}"), e)),
        }
    }
    for (name, target) in DEV_LINKS {
        match rustix::fs::symlinkat(*target, &dev, *name) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(err(format_args!("create /dev/{name}"), e)),
        }
    }
    Ok(())
}

/// Makes `rootfs` the root and drops the host's tree from this namespace.
fn pivot_root(rootfs: &Path) -> Result<(), String> {
    rustix::process::chdir(rootfs).map_err(|e| err("enter rootfs", e))?;
    // The old root ends up on top of the new one at "/": unmount it there.
    rustix::process::pivot_root(".", ".").map_err(|e| err("pivot_root", e))?;
    rustix::mount::unmount(".", UnmountFlags::DETACH).map_err(|e| err("unmount old root", e))?;
    rustix::process::chdir("/").map_err(|e| err("chdir /", e))
}

fn mask(path: &str) -> io::Result<()> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.is_dir() {
        rustix::mount::mount("tmpfs", path, "tmpfs", MountFlags::RDONLY, None)?;
    } else {
        rustix::mount::mount("/dev/null", path, "", MountFlags::BIND, None)?;
    }
    Ok(())
}

fn make_readonly(path: &str) -> io::Result<()> {
    match rustix::mount::mount(path, path, "", MountFlags::BIND | MountFlags::REC, None) {
        Ok(()) => {}
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let flags = MountFlags::BIND
        | MountFlags::REC
        | MountFlags::RDONLY
        | MountFlags::NOSUID
        | MountFlags::NODEV
        | MountFlags::NOEXEC;
    rustix::mount::mount_remount(path, flags, "")?;
    Ok(())
}

/// Stdio, limits, identity and exec. `joined`: an exec into a running
/// container (no new session unless it gets a terminal).
pub(super) fn exec_process(
    p: &ProcessSpec,
    stdio: Stdio,
    joined: bool,
) -> Result<Infallible, String> {
    let program = p
        .args
        .first()
        .ok_or_else(|| "no command specified".to_owned())?;
    match stdio {
        Stdio::Fds {
            stdin,
            stdout,
            stderr,
        } => {
            dup_onto(&stdin, 0)?;
            dup_onto(&stdout, 1)?;
            dup_onto(&stderr, 2)?;
            if !joined {
                rustix::process::setsid().map_err(|e| err("setsid", e))?;
            }
        }
        Stdio::Terminal { socket, size } => terminal(socket, size)?,
    }
    if let Some(n) = p.nofile {
        let limit = rustix::process::Rlimit {
            current: Some(n),
            maximum: Some(n),
        };
        rustix::process::setrlimit(rustix::process::Resource::Nofile, limit)
            .map_err(|e| err("set RLIMIT_NOFILE", e))?;
    }
    if !p.cwd.is_empty() {
        rustix::process::chdir(p.cwd.as_str())
            .map_err(|e| format!("chdir to cwd ({:?}) set in config.json failed: {e}", p.cwd))?;
    }
    identity(p)?;
    rustix::process::umask(Mode::from_bits_truncate(0o022));
    let path = look_path(program, &p.env)?;
    let c = |s: &str| CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"));
    let path = c(&path)?;
    let argv = p.args.iter().map(|a| c(a)).collect::<Result<Vec<_>, _>>()?;
    let envp = p.env.iter().map(|e| c(e)).collect::<Result<Vec<_>, _>>()?;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    reset_signals();
    // Everything but stdio closes at exec (the error pipe among them, which
    // is how the supervisor learns that the exec happened).
    // SAFETY: close_range only marks descriptors close-on-exec.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
    // SAFETY: `path`, `argv` and `envp` are NUL-terminated strings kept
    // alive above, and both pointer arrays end with a null pointer.
    unsafe { libc::execve(path.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr()) };
    Err(format!("exec: {program:?}: {}", io::Error::last_os_error()))
}

/// Makes `fd` this process's descriptor `n` (without close-on-exec).
fn dup_onto(fd: &OwnedFd, n: i32) -> Result<(), String> {
    let raw = fd.as_raw_fd();
    // SAFETY: plain descriptor operations on descriptors we own or on 0-2.
    let ok = unsafe {
        if raw == n {
            libc::fcntl(n, libc::F_SETFD, 0) == 0
        } else {
            libc::dup2(raw, n) == n
        }
    };
    if ok {
        Ok(())
    } else {
        Err(err("set up stdio", io::Error::last_os_error()))
    }
}

/// A new terminal from the container's devpts as controlling terminal and
/// stdio; its master end goes to the supervisor over `socket`.
fn terminal(socket: OwnedFd, size: Option<(u16, u16)>) -> Result<(), String> {
    use rustix::pty::OpenptFlags;
    rustix::process::setsid().map_err(|e| err("setsid", e))?;
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
            .map_err(|e| err("open /dev/ptmx", e))?;
    rustix::pty::unlockpt(&master).map_err(|e| err("unlock terminal", e))?;
    if let Some((cols, rows)) = size {
        crate::pty::set_size(&master, cols, rows).map_err(|e| err("terminal size", e))?;
    }
    let name = rustix::pty::ptsname(&master, Vec::new()).map_err(|e| err("terminal name", e))?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err("open terminal", e))?;
    rustix::process::ioctl_tiocsctty(&slave).map_err(|e| err("set controlling terminal", e))?;
    for n in 0..3 {
        dup_onto(&slave, n)?;
    }
    let socket = std::os::unix::net::UnixStream::from(socket);
    super::send_fd(&socket, &master).map_err(|e| err("send terminal", e))?;
    Ok(())
}

/// Bounding set, user and groups, then the capability sets and
/// no_new_privs, in the order that keeps the capabilities needed for each
/// step until it is done.
fn identity(p: &ProcessSpec) -> Result<(), String> {
    for cap in 0..64u32 {
        if p.capabilities & (1u64 << cap) != 0 {
            continue;
        }
        match rustix::thread::remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(
            1u64 << cap,
        )) {
            // Beyond the kernel's last capability.
            Ok(()) | Err(rustix::io::Errno::INVAL) => {}
            Err(e) => return Err(err("drop capability from the bounding set", e)),
        }
    }
    rustix::thread::set_keep_capabilities(true).map_err(|e| err("keep capabilities", e))?;
    let groups: Vec<rustix::process::Gid> = p
        .additional_gids
        .iter()
        .map(|g| rustix::process::Gid::from_raw(*g))
        .collect();
    rustix::thread::set_thread_groups(&groups).map_err(|e| err("setgroups", e))?;
    let gid = rustix::process::Gid::from_raw(p.gid);
    rustix::thread::set_thread_res_gid(gid, gid, gid)
        .map_err(|e| err(format_args!("setgid {}", p.gid), e))?;
    let uid = rustix::process::Uid::from_raw(p.uid);
    rustix::thread::set_thread_res_uid(uid, uid, uid)
        .map_err(|e| err(format_args!("setuid {}", p.uid), e))?;
    rustix::thread::set_keep_capabilities(false).map_err(|e| err("keep capabilities", e))?;
    let caps = CapabilitySet::from_bits_retain(p.capabilities);
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: caps,
            permitted: caps,
            inheritable: CapabilitySet::empty(),
        },
    )
    .map_err(|e| err("unable to apply caps", e))?;
    if p.no_new_privileges {
        rustix::thread::set_no_new_privs(true).map_err(|e| err("set no_new_privs", e))?;
    }
    Ok(())
}

/// `program` as exec finds it: a path as given, a name through `PATH` in
/// `env` (the image's, as the container sees it).
fn look_path(program: &str, env: &[String]) -> Result<String, String> {
    if program.contains('/') {
        return Ok(program.to_owned());
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = format!("{dir}/{program}");
        let is_file = std::fs::metadata(&candidate).is_ok_and(|m| m.is_file());
        if is_file
            && rustix::fs::accessat(
                CWD,
                candidate.as_str(),
                rustix::fs::Access::EXEC_OK,
                rustix::fs::AtFlags::EACCESS,
            )
            .is_ok()
        {
            return Ok(candidate);
        }
    }
    Err(format!(
        "exec: {program:?}: executable file not found in $PATH"
    ))
}

/// Signals as a new program expects them: nothing blocked, SIGPIPE (which
/// the Rust runtime ignores) back to its default.
fn reset_signals() {
    // SAFETY: plain signal-mask and disposition changes in a single-threaded
    // process about to exec.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn open_root(dir: &Path) -> OwnedFd {
        rustix::fs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    #[test]
    fn paths_resolve_and_are_created_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root_dir = tmp.path().join("root");
        std::fs::create_dir_all(root_dir.join("etc")).unwrap();
        let outside = tmp.path().join("outside");
        // An image's dangling links: relative, absolute, and out through "..".
        std::os::unix::fs::symlink("../run/stub/resolv.conf", root_dir.join("etc/resolv.conf"))
            .unwrap();
        std::os::unix::fs::symlink(&outside, root_dir.join("etc/abs")).unwrap();
        std::os::unix::fs::symlink("../../../../escape", root_dir.join("etc/up")).unwrap();
        std::os::unix::fs::symlink("loop", root_dir.join("etc/loop")).unwrap();
        let root = open_root(&root_dir);

        resolve(&root, "/etc/resolv.conf", Create::File).unwrap();
        assert!(root_dir.join("run/stub/resolv.conf").is_file());

        resolve(&root, "/etc/abs/sub", Create::Dir).unwrap();
        assert!(
            root_dir
                .join(outside.strip_prefix("/").unwrap())
                .join("sub")
                .is_dir()
        );
        assert!(!outside.exists());

        resolve(&root, "/etc/up", Create::Dir).unwrap();
        assert!(root_dir.join("escape").is_dir());
        assert!(!tmp.path().join("escape").exists());

        resolve(&root, "/../../a/b", Create::Dir).unwrap();
        assert!(root_dir.join("a/b").is_dir());

        assert!(resolve(&root, "/etc/loop", Create::Dir).is_err());
        assert!(resolve(&root, "/missing", Create::No).is_err());
        assert!(!root_dir.join("missing").exists());
    }

    #[test]
    fn programs_are_found_on_the_containers_path() {
        let env = vec!["PATH=/nonexistent:/bin".to_owned()];
        assert_eq!(look_path("sh", &env).unwrap(), "/bin/sh");
        assert_eq!(look_path("./x", &env).unwrap(), "./x");
        assert_eq!(
            look_path("no-such-program", &env).unwrap_err(),
            "exec: \"no-such-program\": executable file not found in $PATH"
        );
    }
}
