//! The per-container supervisor ("shim"), run as a separate process: forked
//! by the supervisor [`zygote`], itself started once from a binary (`skiff
//! runtime-shim zygote` or the test bin `skiff-runtime-shim`), or by
//! re-executing that binary; never forked from inside tokio.
//!
//! `run` creates the container's cgroups and starts it
//! (`skiff_sys::container`), reports the init PID on stdout, then lives as a
//! subreaper in its own session: it copies the container's stdout/stderr
//! into the CRI log, waits for the init, writes the exit record durably and
//! removes the container's cgroups. While the container runs it answers requests on a
//! [`control`] socket (log reopening). `exec` runs a process inside a running
//! container and writes its exit code to a result file.

pub mod attach;
mod console;
pub mod control;
mod logs;
pub mod oci;
pub mod zygote;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::sync::Arc;

use attach::AttachHub;
use serde::{Deserialize, Serialize};
use skiff_sys::cgroups::Cgroups;
use skiff_sys::container::{ExecTarget, Stdio};

pub use logs::{CriLog, format_entry, split_line, timestamp_now};

/// Arguments of `shim run`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunArgs {
    /// Container ID.
    pub id: String,
    /// OCI bundle (config.json + rootfs).
    pub bundle: PathBuf,
    /// The CRI log file, if any.
    pub log_path: Option<PathBuf>,
    /// Where the exit record goes.
    pub exit_file: PathBuf,
    /// The container's cgroup path (read for OOM kills).
    pub cgroups_path: String,
    /// Where the shim serves its [`control`] socket (absent from older agents).
    #[serde(default)]
    pub control_socket: Option<PathBuf>,
    /// Keep stdin open for attach (else it is /dev/null).
    #[serde(default)]
    pub stdin: bool,
    /// Close stdin when the first attached client detaches.
    #[serde(default)]
    pub stdin_once: bool,
    /// Run on a terminal (the spec says `terminal: true`).
    #[serde(default)]
    pub tty: bool,
    /// Mount roots the supervisor drops from its own mount namespace before
    /// it creates the container (none: it keeps the host's whole view).
    #[serde(default)]
    pub detach_mounts: Vec<PathBuf>,
    /// The container's own mounts below those roots, which it keeps.
    #[serde(default)]
    pub keep_mounts: Vec<PathBuf>,
    /// The runtime's namespace without those roots, to copy instead of the
    /// host's (`skiff_sys::mount_view::MountTemplate`).
    #[serde(default)]
    pub mount_template: Option<PathBuf>,
}

/// Arguments of `shim exec`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecArgs {
    /// Container ID.
    pub id: String,
    /// The container's bundle (its `config.json` gives the process's user,
    /// environment, working directory, capabilities and limits).
    pub bundle: PathBuf,
    /// The container's init PID (whose namespaces the process joins).
    pub pid: i32,
    /// The container's cgroup (which the process joins).
    pub cgroups_path: String,
    /// The command.
    pub args: Vec<String>,
    /// Kill the process after this long.
    pub timeout_ms: Option<u64>,
    /// Where the [`ExecResult`] goes.
    pub result_file: PathBuf,
    /// Run the process on a terminal inside the container, relayed to the
    /// supervisor's stdio (itself a terminal, whose size is followed).
    #[serde(default)]
    pub tty: bool,
    /// Where the exec'd process's host PID goes (so it can be killed when
    /// the client goes away).
    #[serde(default)]
    pub pid_file: Option<PathBuf>,
    /// Mount roots the supervisor drops from its view (it joins the
    /// container's own mount namespace and needs none of their mounts).
    #[serde(default)]
    pub detach_mounts: Vec<PathBuf>,
    /// As [`RunArgs::mount_template`].
    #[serde(default)]
    pub mount_template: Option<PathBuf>,
}

/// What `shim run` prints on stdout once the container runs (or failed to).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum StartReport {
    /// Running with this init PID.
    Started {
        /// The init PID (host namespace).
        pid: i32,
        /// Its start time in clock ticks, to recognise it after a restart.
        start_ticks: u64,
    },
    /// Could not start.
    Failed(String),
}

/// How a container ended, written by the shim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The exit code (`128 + signal` for a signal).
    pub exit_code: i32,
    /// The killing signal, if any.
    pub signal: Option<i32>,
    /// When it ended, in Unix nanoseconds.
    pub finished_at: i64,
    /// Whether the kernel OOM killer fired in the container's cgroup.
    pub oom_killed: bool,
}

/// The outcome of `shim exec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecResult {
    /// The process exited with this code.
    Exited(i32),
    /// The timeout passed; the process was killed.
    TimedOut,
    /// The process could not be started.
    Failed(String),
}

/// The shim's entry point: `run <json>`, `exec <json>` or `zygote` (see
/// [`zygote`]). Returns the exit status.
pub fn main(args: &[String]) -> i32 {
    match (args.first().map(String::as_str), args.get(1)) {
        (Some("run"), Some(json)) => match serde_json::from_str::<RunArgs>(json) {
            Ok(a) => run(&a),
            Err(e) => {
                report(&StartReport::Failed(format!("bad shim arguments: {e}")));
                2
            }
        },
        (Some("zygote"), None) => zygote::serve(),
        (Some("exec"), Some(json)) => match serde_json::from_str::<ExecArgs>(json) {
            Ok(a) => exec(&a),
            Err(e) => {
                eprintln!("bad shim arguments: {e}");
                2
            }
        },
        _ => {
            eprintln!("usage: runtime-shim run|exec JSON, or runtime-shim zygote");
            2
        }
    }
}

fn report(r: &StartReport) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, r);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

fn unix_nanos_now() -> i64 {
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    i64::try_from(now).unwrap_or(i64::MAX)
}

/// Writes `data` to `path` via a temp file and rename, so readers never see
/// half; no fsync: for files needed only while the host is up (the run dir's
/// tmpfs, an exec's result and pid), where a flush buys nothing.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

/// [`write_atomic`] for state that must survive a crash of the host: the
/// file is flushed before the rename (never an empty or torn record after a
/// crash). A new name is flushed too, with one fsync of the directory after
/// the rename; a replaced file is not: until the directory reaches the disk
/// a crash leaves the previous version, which callers accept (a stopped
/// sandbox's earlier record; the host's crash stopped it anyway).
pub fn write_durable(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    let replaces = path.exists();
    std::fs::rename(&tmp, path)?;
    if replaces {
        return Ok(());
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

fn run(a: &RunArgs) -> i32 {
    // Outlive the agent: own session, and reap the container's processes.
    if let Err(e) = skiff_sys::process::new_session() {
        eprintln!("setsid: {e}");
    }
    if let Err(e) = skiff_sys::process::set_child_subreaper() {
        report(&StartReport::Failed(format!("set child subreaper: {e}")));
        return 1;
    }
    trim_mounts(
        &a.detach_mounts,
        &a.keep_mounts,
        a.mount_template.as_deref(),
    );
    let log = match CriLog::open(a.log_path.as_deref()) {
        Ok(l) => l,
        Err(e) => {
            report(&StartReport::Failed(format!("open log: {e}")));
            return 1;
        }
    };
    // Bound before the container starts (so it exists once StartContainer
    // returns) but served only after: no thread may run while the container
    // process is cloned.
    let control = a.control_socket.as_deref().and_then(|path| {
        control::bind(path)
            .inspect_err(|e| eprintln!("control socket {}: {e}", path.display()))
            .ok()
    });
    let (pid, readers, hub) = match create_and_start(a) {
        Ok(v) => v,
        Err(msg) => {
            cleanup_state(a);
            remove_control_socket(a);
            report(&StartReport::Failed(msg));
            return 1;
        }
    };
    if let Some(listener) = control {
        control::serve(listener, log.clone(), Some(hub.clone()));
    }
    report(&StartReport::Started {
        pid,
        start_ticks: skiff_sys::process::process_start_ticks(pid).unwrap_or(0),
    });
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    for (stream, reader) in readers {
        let log = log.clone();
        let done_tx = done_tx.clone();
        let hub = hub.clone();
        let kind = if stream == "stderr" {
            attach::kind::STDERR
        } else {
            attach::kind::STDOUT
        };
        std::thread::spawn(move || {
            log.copy_tee(stream, reader, |chunk| hub.broadcast(kind, chunk));
            let _ = done_tx.send(());
        });
    }
    drop(done_tx);
    let exit = loop {
        match skiff_sys::process::wait_any_child() {
            Ok(Some((p, exit))) if p == pid => break exit,
            Ok(Some(_)) => continue,
            Ok(None) => break skiff_sys::process::ChildExit::Exited(255),
            Err(e) => {
                eprintln!("wait: {e}");
                break skiff_sys::process::ChildExit::Exited(255);
            }
        }
    };
    let finished_at = unix_nanos_now();
    // The pipes close when the last container process goes; don't hang on a
    // straggler that inherited them.
    let deadline = Instant::now() + Duration::from_secs(2);
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            break;
        }
    }
    // Attached clients hear the end after the last output.
    hub.end();
    let record = ExitRecord {
        exit_code: exit.code(),
        signal: match exit {
            skiff_sys::process::ChildExit::Signaled(s) => Some(s),
            skiff_sys::process::ChildExit::Exited(_) => None,
        },
        finished_at,
        oom_killed: oom_killed(&a.cgroups_path),
    };
    remove_control_socket(a);
    match serde_json::to_vec(&record) {
        Ok(data) => {
            if let Err(e) = write_durable(&a.exit_file, &data) {
                eprintln!("write exit record: {e}");
            }
        }
        Err(e) => eprintln!("encode exit record: {e}"),
    }
    cleanup_state(a);
    0
}

/// Drops the mount roots `detach` from this process's view, keeping the
/// mounts at `keep`: fewer mounts for the kernel to copy into a new
/// container's mount namespace; see `skiff_sys::mount_view`.
fn trim_mounts(detach: &[PathBuf], keep: &[PathBuf], template: Option<&Path>) {
    if detach.is_empty() {
        return;
    }
    let view = skiff_sys::mount_view::TrimmedView {
        detach: detach.to_vec(),
        keep: keep.to_vec(),
        template: template.map(Path::to_path_buf),
    };
    if let Err(e) = skiff_sys::mount_view::enter_trimmed_mount_namespace(&view) {
        // The host's whole view works too, only slower.
        eprintln!("trimmed mount namespace: {e}");
    }
}

fn remove_control_socket(a: &RunArgs) {
    if let Some(path) = &a.control_socket {
        let _ = std::fs::remove_file(path);
    }
}

type Readers = Vec<(&'static str, Box<dyn std::io::Read + Send>)>;

/// Creates and starts the container with its stdio: pipes for stdout and
/// stderr, stdin from /dev/null or (for attach) a pipe we keep; or, with a
/// terminal, the master end the container sends back over a socket pair.
fn create_and_start(a: &RunArgs) -> Result<(i32, Readers, Arc<AttachHub>), String> {
    let spec = oci::load(&a.bundle)?;
    let container = spec.to_container(&a.bundle)?;
    let mut readers: Readers = Vec::new();
    let mut input = None;
    let (stdio, console) = if a.tty {
        let (ours, theirs) =
            std::os::unix::net::UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
        let stdio = Stdio::Terminal {
            socket: theirs.into(),
            size: None,
        };
        (stdio, Some(ours))
    } else {
        let (out_r, out_w) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
        let (err_r, err_w) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
        readers.push(("stdout", Box::new(out_r)));
        readers.push(("stderr", Box::new(err_r)));
        let stdin = if a.stdin {
            let (in_r, in_w) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
            input = Some(std::fs::File::from(std::os::fd::OwnedFd::from(in_w)));
            in_r.into()
        } else {
            std::fs::File::open("/dev/null")
                .map_err(|e| format!("/dev/null: {e}"))?
                .into()
        };
        let stdio = Stdio::Fds {
            stdin,
            stdout: out_w.into(),
            stderr: err_w.into(),
        };
        (stdio, None)
    };
    let path = &container.cgroups_path;
    skiff_sys::cgroups::LinuxCgroups::new()
        .ensure(path, &spec.resource_config())
        .map_err(|e| format!("create cgroup: {e}"))?;
    skiff_sys::cgroups::restrict_devices(path).map_err(|e| format!("devices cgroup: {e}"))?;
    spec.apply_other_resources()?;
    let created = skiff_sys::container::create(&container, stdio)
        .map_err(|e| format!("create container: {e}"))?;
    skiff_sys::cgroups::add_process(path, created.pid())
        .map_err(|e| format!("join cgroup: {e}"))?;
    if let Some(score) = spec.process.oom_score_adj.filter(|s| *s > 0) {
        let file = format!("/proc/{}/oom_score_adj", created.pid());
        std::fs::write(&file, score.to_string()).map_err(|e| format!("{file}: {e}"))?;
    }
    let pid = created
        .start()
        .map_err(|e| format!("start container: {e}"))?;
    let mut terminal = None;
    if let Some(console) = console {
        let master = std::fs::File::from(
            skiff_sys::pty::receive_fd(&console).map_err(|e| format!("container terminal: {e}"))?,
        );
        let clone = || {
            master
                .try_clone()
                .map_err(|e| format!("container terminal: {e}"))
        };
        if a.stdin {
            input = Some(clone()?);
        }
        terminal = Some(clone()?);
        readers.push(("stdout", Box::new(master)));
    }
    Ok((pid, readers, AttachHub::new(input, a.stdin_once, terminal)))
}

/// Removes the container's cgroups once its processes are gone (the kernel
/// kills what was left in its PID namespace when the init ended; they may
/// take a moment to leave).
fn cleanup_state(a: &RunArgs) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match skiff_sys::cgroups::remove_cgroup(&a.cgroups_path) {
            Ok(()) => return,
            Err(e) if Instant::now() >= deadline => {
                eprintln!("remove cgroup {}: {e}", a.cgroups_path);
                return;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Whether the OOM killer acted in the container's memory cgroup (v1
/// `memory.oom_control`, v2 `memory.events`).
fn oom_killed(cgroups_path: &str) -> bool {
    let rel = cgroups_path.trim_start_matches('/');
    let candidates = [
        (
            Path::new("/sys/fs/cgroup/memory")
                .join(rel)
                .join("memory.oom_control"),
            "oom_kill ",
        ),
        (
            Path::new("/sys/fs/cgroup").join(rel).join("memory.events"),
            "oom_kill ",
        ),
    ];
    candidates.iter().any(|(file, key)| {
        std::fs::read_to_string(file).is_ok_and(|text| {
            text.lines()
                .filter_map(|l| l.strip_prefix(key))
                .any(|n| n.trim().parse::<u64>().is_ok_and(|n| n > 0))
        })
    })
}

fn exec(a: &ExecArgs) -> i32 {
    let result = exec_inner(a);
    let code = match &result {
        ExecResult::Exited(c) => *c,
        ExecResult::TimedOut => 137,
        ExecResult::Failed(msg) => {
            eprintln!("{msg}");
            126
        }
    };
    if let Ok(data) = serde_json::to_vec(&result) {
        let _ = write_atomic(&a.result_file, &data);
    }
    code
}

fn exec_inner(a: &ExecArgs) -> ExecResult {
    // The process is reparented to us once the child that forked it exits.
    if let Err(e) = skiff_sys::process::set_child_subreaper() {
        return ExecResult::Failed(format!("set child subreaper: {e}"));
    }
    trim_mounts(&a.detach_mounts, &[], a.mount_template.as_deref());
    let process = match exec_process(a) {
        Ok(p) => p,
        Err(msg) => return ExecResult::Failed(msg),
    };
    let target = match skiff_sys::container::cgroup_procs(&a.cgroups_path) {
        Ok(cgroup_procs) => ExecTarget {
            pid: a.pid,
            cgroup_procs,
        },
        Err(e) => return ExecResult::Failed(format!("container cgroup: {e}")),
    };
    let (stdio, console) = match exec_stdio(a.tty) {
        Ok(v) => v,
        Err(msg) => return ExecResult::Failed(msg),
    };
    let pid = match skiff_sys::container::exec(&target, &process, stdio) {
        Ok(pid) => pid,
        Err(msg) => return ExecResult::Failed(format!("exec in container: {msg}")),
    };
    if let Some(pid_file) = &a.pid_file {
        let _ = write_atomic(pid_file, pid.to_string().as_bytes());
    }
    let output = match console.map(|c| skiff_sys::pty::receive_fd(&c)) {
        None => None,
        Some(Ok(master)) => Some(console::relay(std::fs::File::from(master))),
        Some(Err(e)) => {
            let _ = skiff_sys::process::kill(pid, 9);
            let _ = skiff_sys::process::wait_child(pid);
            return ExecResult::Failed(format!("container terminal: {e}"));
        }
    };
    let deadline = a
        .timeout_ms
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_millis(t));
    let result = loop {
        match skiff_sys::process::try_wait_child(pid) {
            Ok(Some(exit)) => break ExecResult::Exited(exit.code()),
            Ok(None) => {}
            Err(e) => break ExecResult::Failed(format!("wait: {e}")),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = skiff_sys::process::kill(pid, 9);
            let _ = skiff_sys::process::wait_child(pid);
            break ExecResult::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // The terminal's last output, unless a background process keeps it open.
    if let Some(done) = output {
        let _ = done.recv_timeout(Duration::from_secs(2));
    }
    result
}

/// The exec's process: the container's own (user, environment, working
/// directory, capabilities, limits) with `args` replaced, as containerd
/// builds an exec's spec.
fn exec_process(a: &ExecArgs) -> Result<skiff_sys::container::ProcessSpec, String> {
    let spec = oci::load(&a.bundle)?;
    let mut process = spec.process.to_spec()?;
    process.args.clone_from(&a.args);
    Ok(process)
}

/// Our own stdio for the process, or (with a terminal) a socket pair over
/// which it sends the master end of a terminal it opens in the container.
fn exec_stdio(tty: bool) -> Result<(Stdio, Option<std::os::unix::net::UnixStream>), String> {
    use std::os::fd::AsFd;
    if tty {
        let (ours, theirs) =
            std::os::unix::net::UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
        // Our stdin is the runtime's end of the client's terminal.
        let size = skiff_sys::pty::size(std::io::stdin()).ok();
        let stdio = Stdio::Terminal {
            socket: theirs.into(),
            size,
        };
        return Ok((stdio, Some(ours)));
    }
    let dup = |fd: std::os::fd::BorrowedFd<'_>| {
        fd.try_clone_to_owned()
            .map_err(|e| format!("duplicate stdio: {e}"))
    };
    let stdio = Stdio::Fds {
        stdin: dup(std::io::stdin().as_fd())?,
        stdout: dup(std::io::stdout().as_fd())?,
        stderr: dup(std::io::stderr().as_fd())?,
    };
    Ok((stdio, None))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    type Write = fn(&Path, &[u8]) -> std::io::Result<()>;

    #[test]
    fn writes_make_or_replace_the_whole_file_and_leave_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exit.json");
        let writes: [(Write, &str); 4] = [
            (write_durable, "first"),
            (write_durable, "second"),
            (write_atomic, "third"),
            (write_atomic, "4"),
        ];
        for (write, data) in writes {
            write(&path, data.as_bytes()).unwrap();
            assert_eq!(std::fs::read_to_string(&path).unwrap(), data);
            let names: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, ["exit.json"]);
        }
    }
}
