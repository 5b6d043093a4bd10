//! Starting container processes without an OCI runtime: the built-in
//! runtime's own container set-up, for the subset of the OCI runtime spec
//! that CRI containers use.
//!
//! [`create`] clones one child into a new PID and mount namespace. While it
//! waits, the caller puts it into its cgroups (the kernel accounts its
//! set-up to the container); [`Created::start`] then lets it join the pod's
//! network, IPC and UTS namespaces, mount the container's filesystems
//! (`setup::rootfs`), `pivot_root` into the rootfs, take on the process's
//! identity (`setup::identity`) and exec. No intermediate process, no state
//! files: the caller (the per-container supervisor) is the child's parent
//! and learns of every failure through a close-on-exec pipe, which is empty
//! when the exec happened.
//!
//! [`exec`] runs another process in a running container: a short-lived
//! child joins the container's cgroups and namespaces and forks the process
//! (a PID namespace is entered only by children of the joiner).
//!
//! The caller must be single-threaded when it calls [`create`] or [`exec`]
//! (the child runs Rust code between the clone and the exec), and is
//! expected to be a child subreaper: an exec'd process outlives the child
//! that forked it.

pub mod options;
mod setup;

use std::convert::Infallible;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use crate::namespaces::NamespaceKind;

pub use options::MountOptions;

/// One filesystem to mount in the container, in spec order.
#[derive(Debug, Clone)]
pub struct MountSpec {
    /// The path in the container (resolved inside the rootfs).
    pub destination: String,
    /// The filesystem type (`proc`, `tmpfs`, `cgroup`, ... ; `bind` or
    /// empty for a bind mount).
    pub fs_type: String,
    /// The source (a host path for bind mounts).
    pub source: String,
    /// Flags, propagation and filesystem data.
    pub options: MountOptions,
}

/// The container's process: what it runs and as whom.
#[derive(Debug, Clone, Default)]
pub struct ProcessSpec {
    /// Program and arguments; a program without `/` is looked up in the
    /// `PATH` of `env`.
    pub args: Vec<String>,
    /// `NAME=value` pairs.
    pub env: Vec<String>,
    /// The working directory in the container (created at start if missing).
    pub cwd: String,
    /// User ID.
    pub uid: u32,
    /// Group ID.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
    /// The effective, permitted and bounding capability sets (bit N = cap N).
    pub capabilities: u64,
    /// `RLIMIT_NOFILE` (soft and hard), if set.
    pub nofile: Option<u64>,
    /// `PR_SET_NO_NEW_PRIVS`.
    pub no_new_privileges: bool,
}

/// A new container: where its root is, what it shares with its pod, what it
/// mounts, and its process.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// The (already mounted) root filesystem on the host.
    pub rootfs: PathBuf,
    /// Remount the root read-only once set up.
    pub readonly_root: bool,
    /// Namespaces to join (the pod sandbox's pinned net, IPC and UTS).
    pub join: Vec<(NamespaceKind, PathBuf)>,
    /// Filesystems to mount, in order.
    pub mounts: Vec<MountSpec>,
    /// Paths hidden from the container (`/dev/null` over files, an empty
    /// read-only tmpfs over directories).
    pub masked_paths: Vec<String>,
    /// Paths made read-only.
    pub readonly_paths: Vec<String>,
    /// The container's cgroup (absolute, as in every hierarchy): what a
    /// `cgroup` mount shows of each hierarchy.
    pub cgroups_path: String,
    /// The process.
    pub process: ProcessSpec,
}

/// The container process's standard streams.
#[derive(Debug)]
pub enum Stdio {
    /// These descriptors become its stdin, stdout and stderr.
    Fds {
        /// Standard input.
        stdin: OwnedFd,
        /// Standard output.
        stdout: OwnedFd,
        /// Standard error.
        stderr: OwnedFd,
    },
    /// A new terminal inside the container, its controlling terminal and
    /// stdio; the master end is sent over `socket` (SCM_RIGHTS).
    Terminal {
        /// Where the master end goes.
        socket: OwnedFd,
        /// The terminal's size (columns, rows), set before the exec so the
        /// process never sees a terminal without one.
        size: Option<(u16, u16)>,
    },
}

/// A cloned container process, waiting for [`Created::start`].
#[derive(Debug)]
pub struct Created {
    pid: i32,
    go: Option<std::io::PipeWriter>,
    errors: std::io::PipeReader,
}

impl Created {
    /// The process's PID (in the caller's PID namespace).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Lets the process set up and exec; returns once it has exec'd, or
    /// with what failed (the process has then exited and is reaped).
    pub fn start(mut self) -> Result<i32, String> {
        let go = self.go.take();
        if let Some(mut go) = go
            && let Err(e) = go.write_all(&[1])
        {
            return Err(self.failed(format!("signal container process: {e}")));
        }
        let mut message = String::new();
        match self.errors.read_to_string(&mut message) {
            Ok(_) if message.is_empty() => Ok(self.pid),
            Ok(_) => Err(self.failed(message)),
            Err(e) => Err(self.failed(format!("read container start errors: {e}"))),
        }
    }

    fn failed(&self, message: String) -> String {
        let _ = crate::process::kill(self.pid, libc::SIGKILL);
        let _ = crate::process::wait_child(self.pid);
        message
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        // Never started: the child reads EOF and exits; reap it.
        if self.go.take().is_some() {
            let _ = crate::process::wait_child(self.pid);
        }
    }
}

/// Clones the container's process into new PID and mount namespaces. It
/// waits for [`Created::start`] before it does anything else.
pub fn create(spec: &ContainerSpec, stdio: Stdio) -> io::Result<Created> {
    let join = spec
        .join
        .iter()
        .map(|(kind, path)| {
            std::fs::File::open(path)
                .map(|f| (*kind, OwnedFd::from(f)))
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
        })
        .collect::<io::Result<Vec<_>>>()?;
    let (go_r, go_w) = std::io::pipe()?;
    let (err_r, err_w) = std::io::pipe()?;
    let flags = libc::CLONE_NEWPID | libc::CLONE_NEWNS;
    // SAFETY: see `fork_like`; the caller is single-threaded (module docs).
    let pid = unsafe { fork_like(flags) }?;
    if pid == 0 {
        drop(go_w);
        drop(err_r);
        child_main(err_w, || {
            let mut go = go_r;
            let mut byte = [0u8; 1];
            if go.read(&mut byte).unwrap_or(0) == 0 {
                // The supervisor gave up before the start.
                return Err(String::new());
            }
            drop(go);
            setup::init(spec, &join, stdio)
        })
    }
    drop(go_r);
    drop(err_w);
    Ok(Created {
        pid,
        go: Some(go_w),
        errors: err_r,
    })
}

/// What [`exec`] joins: a running container, found through its init.
#[derive(Debug, Clone)]
pub struct ExecTarget {
    /// The container's init PID.
    pub pid: i32,
    /// `cgroup.procs` of the container's cgroup in every hierarchy.
    pub cgroup_procs: Vec<PathBuf>,
}

/// Runs `process` in the container `target`; returns its PID (in the
/// caller's PID namespace) once it has exec'd. It is the caller's to reap
/// (a subreaper inherits it from the child that forked it).
pub fn exec(target: &ExecTarget, process: &ProcessSpec, stdio: Stdio) -> Result<i32, String> {
    let open = |name: &str| {
        let path = PathBuf::from(format!("/proc/{}/ns/{name}", target.pid));
        std::fs::File::open(&path)
            .map(OwnedFd::from)
            .map_err(|e| format!("open {}: {e}", path.display()))
    };
    // The mount namespace last: after it, no host path is reachable.
    let kinds = [
        ("ipc", libc::CLONE_NEWIPC),
        ("uts", libc::CLONE_NEWUTS),
        ("net", libc::CLONE_NEWNET),
        ("pid", libc::CLONE_NEWPID),
        ("mnt", libc::CLONE_NEWNS),
    ];
    let namespaces = kinds
        .iter()
        .map(|(name, flag)| open(name).map(|fd| (fd, *flag)))
        .collect::<Result<Vec<_>, _>>()?;
    let procs = target
        .cgroup_procs
        .iter()
        .map(|p| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(p)
                .map_err(|e| format!("open {}: {e}", p.display()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (err_r, err_w) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let (mut pid_r, pid_w) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: see `fork_like`; the caller is single-threaded (module docs).
    let joiner = unsafe { fork_like(0) }.map_err(|e| format!("fork: {e}"))?;
    if joiner == 0 {
        drop(err_r);
        drop(pid_r);
        child_main(err_w, move || {
            for mut file in procs {
                // "0": the writer itself.
                file.write_all(b"0")
                    .map_err(|e| format!("join container cgroup: {e}"))?;
            }
            for (fd, flag) in &namespaces {
                // SAFETY: setns on a descriptor we own; this process is single-threaded.
                if unsafe { libc::setns(fd.as_raw_fd(), *flag) } != 0 {
                    return Err(format!(
                        "join container namespace: {}",
                        io::Error::last_os_error()
                    ));
                }
            }
            drop(namespaces);
            // SAFETY: see `fork_like`; this process is single-threaded.
            let pid = unsafe { fork_like(0) }.map_err(|e| format!("fork: {e}"))?;
            if pid == 0 {
                setup::exec_process(process, stdio, true)
            } else {
                let mut pid_w = pid_w;
                let _ = pid_w.write_all(&pid.to_ne_bytes());
                // SAFETY: leaves this child at once, as after a fork.
                unsafe { libc::_exit(0) }
            }
        })
    }
    drop(err_w);
    drop(pid_w);
    drop(stdio);
    let joined = crate::process::wait_child(joiner);
    let mut pid_bytes = [0u8; 4];
    let pid = pid_r
        .read_exact(&mut pid_bytes)
        .ok()
        .map(|()| i32::from_ne_bytes(pid_bytes));
    drop(pid_r);
    let mut message = String::new();
    let mut err_r = err_r;
    let _ = err_r.read_to_string(&mut message);
    match (pid, message.is_empty()) {
        (Some(pid), true) => Ok(pid),
        (pid, _) => {
            if let Some(pid) = pid {
                let _ = crate::process::wait_child(pid);
            }
            if message.is_empty() {
                message = format!("exec in container: joiner ended with {joined:?}");
            }
            Err(message)
        }
    }
}

/// Sends `fd` over the unix socket `socket` (SCM_RIGHTS), as a console
/// socket carries a terminal's master end.
pub fn send_fd(socket: &UnixStream, fd: &OwnedFd) -> io::Result<()> {
    use std::os::fd::AsFd;
    crate::fdpass::send(socket, b"t", &[fd.as_fd()])
}

/// `clone(flags | SIGCHLD)` with the parent's stack, like `fork`: returns 0
/// in the child and the child's PID in the parent.
///
/// # Safety
/// The calling process must be single-threaded: the child is a copy of this
/// thread only, and runs Rust code (allocates) before it execs.
unsafe fn fork_like(flags: libc::c_int) -> io::Result<i32> {
    let flags = libc::c_ulong::try_from(flags | libc::SIGCHLD).unwrap_or(0);
    // SAFETY: a null stack makes clone duplicate the caller's stack (fork
    // semantics); no TLS or TID pointers are passed. Single-threadedness is
    // the caller's promise.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
            0usize,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    i32::try_from(ret).map_err(|_| io::Error::other("clone returned a bad PID"))
}

/// The child's side: runs `body`, which execs on success; on failure writes
/// its message to `errors` (close-on-exec, so empty when the exec
/// happened) and exits. Never returns, not even by a panic.
fn child_main(errors: std::io::PipeWriter, body: impl FnOnce() -> Result<Infallible, String>) -> ! {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
    let message = match outcome {
        Ok(Ok(never)) => match never {},
        Ok(Err(message)) => message,
        Err(_) => "container set-up panicked".to_owned(),
    };
    let mut errors = errors;
    let _ = errors.write_all(message.as_bytes());
    // SAFETY: leaves the child without running the parent's atexit handlers
    // or destructors (it is a copy of the parent).
    unsafe { libc::_exit(1) }
}

/// The `cgroup.procs` files of cgroup `path` in the hierarchies where it
/// exists (for [`ExecTarget::cgroup_procs`]).
pub fn cgroup_procs(path: &str) -> io::Result<Vec<PathBuf>> {
    Ok(crate::cgroups::procs_files(path)?
        .into_iter()
        .filter(|p| p.exists())
        .collect())
}
