//! The supervisor zygote: one single-threaded process, started once by the
//! runtime from the supervisor command (`... zygote`), that forks each
//! container's supervisor instead of the runtime executing the binary anew.
//!
//! Executing Skiff's one large binary for every container costs more than
//! the fork: the kernel maps it, the loader relocates it and each page it
//! touches faults in again. A fork of the zygote shares all that, already
//! done. The zygote starts no thread, so a fork of it is safe (the
//! runtime itself, a tokio process, must never fork).
//!
//! Protocol, over a `SOCK_SEQPACKET` pair (the zygote's end is its stdin):
//! the runtime sends one [`RunArgs`] as JSON with two descriptors, the
//! write end of the report pipe (the supervisor's stdout, where it prints
//! its [`super::StartReport`]) and its log (stderr). The zygote forks; the
//! child runs [`super::run`] as `shim run` would, and the zygote replies
//! with a [`Reply`] and, on success, a pidfd of the supervisor. The zygote
//! reaps its children as they end and exits when the runtime closes its end;
//! running supervisors carry on without it.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use skiff_sys::fdpass;
use skiff_sys::process::{Forked, fork};

use super::RunArgs;

/// Largest request: a container's [`RunArgs`] (paths and mount lists, a
/// few KiB). A larger one is refused and the runtime executes that
/// supervisor instead. Kept small: every fork copies the zygote's page
/// tables, and every page it writes after a fork is copied once more.
const MAX_REQUEST: usize = 64 << 10;

/// How long the runtime waits for the zygote to take a request or answer.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// The zygote's answer to one request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Reply {
    /// The supervisor runs with this PID; its pidfd is attached.
    Forked {
        /// The supervisor's PID.
        pid: i32,
    },
    /// No supervisor was started.
    Failed(String),
}

/// Reaps `pid` if it has ended; whether it is gone (an error means it is
/// not our child any more).
fn reaped(pid: i32) -> bool {
    matches!(
        skiff_sys::process::try_wait_child(pid),
        Ok(Some(_)) | Err(_)
    )
}

/// The zygote's main loop (`shim zygote`); its stdin is the runtime's socket.
pub(super) fn serve() -> i32 {
    let socket = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(socket) => socket,
        Err(e) => {
            eprintln!("zygote: no socket on stdin: {e}");
            return 2;
        }
    };
    let null = match std::fs::File::open("/dev/null") {
        Ok(null) => null,
        Err(e) => {
            eprintln!("zygote: /dev/null: {e}");
            return 2;
        }
    };
    // Every supervisor is a copy of this process, arguments and all: the
    // command names tell them apart in `ps -o comm` and `top`.
    let _ = skiff_sys::process::set_name(c"skiff-zygote");
    // Host facts each supervisor reads once per process, read here once:
    // the forked supervisors inherit them (the cgroup hierarchies come from
    // /proc/self/mountinfo, which grows with every running container).
    let _ = skiff_sys::cgroups::cgroup_mode();
    let _ = skiff_sys::cgroups::hierarchy_roots();
    let mut children: Vec<(i32, OwnedFd)> = Vec::new();
    let mut buf = vec![0u8; MAX_REQUEST];
    loop {
        let (request, ended) = match wait(&socket, &children) {
            Ok(ready) => ready,
            Err(e) => {
                eprintln!("zygote: poll: {e}");
                return 1;
            }
        };
        children.retain(|(pid, _)| !ended.contains(pid) || !reaped(*pid));
        if !request {
            continue;
        }
        let (len, fds) = match fdpass::recv(&socket, &mut buf) {
            Ok(received) => received,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                reply(&socket, &Reply::Failed(format!("bad request: {e}")), None);
                continue;
            }
            Err(e) => {
                eprintln!("zygote: receive: {e}");
                return 1;
            }
        };
        if len == 0 {
            // The runtime closed its end: the supervisors carry on alone.
            return 0;
        }
        let parsed = serde_json::from_slice::<RunArgs>(&buf[..len]);
        let (args, [report, log]) = match (parsed, <[OwnedFd; 2]>::try_from(fds)) {
            (Ok(args), Ok(fds)) => (args, fds),
            (Err(e), _) => {
                reply(&socket, &Reply::Failed(format!("bad arguments: {e}")), None);
                continue;
            }
            (_, Err(fds)) => {
                let got = fds.len();
                let msg = format!("expected a report pipe and a log, got {got} descriptors");
                reply(&socket, &Reply::Failed(msg), None);
                continue;
            }
        };
        match fork() {
            Ok(Forked::Child) => {
                // Nothing of the zygote's stays open in the supervisor.
                drop(socket);
                drop(children);
                if let Err(e) = skiff_sys::process::redirect_stdio(&null, &report, &log) {
                    eprintln!("zygote: supervisor stdio: {e}");
                    std::process::exit(2);
                }
                drop((null, report, log));
                let _ = skiff_sys::process::set_name(c"skiff-shim");
                let code = std::panic::catch_unwind(|| super::run(&args)).unwrap_or(101);
                std::process::exit(code);
            }
            Ok(Forked::Parent(pid)) => {
                drop((report, log));
                match skiff_sys::process::pidfd_open(pid) {
                    Ok(pidfd) => {
                        reply(&socket, &Reply::Forked { pid }, Some(pidfd.as_fd()));
                        children.push((pid, pidfd));
                    }
                    Err(e) => {
                        // Cannot happen to an unreaped child; answer anyway.
                        reply(&socket, &Reply::Failed(format!("pidfd: {e}")), None);
                        let _ = skiff_sys::process::wait_child(pid);
                    }
                }
            }
            Err(e) => reply(&socket, &Reply::Failed(format!("fork: {e}")), None),
        }
    }
}

/// Waits until a request arrives or children end: whether the socket is
/// readable (or closed), and the PIDs of the children that ended.
fn wait(socket: &OwnedFd, children: &[(i32, OwnedFd)]) -> io::Result<(bool, Vec<i32>)> {
    use rustix::event::{PollFd, PollFlags, poll};
    let mut fds = Vec::with_capacity(children.len() + 1);
    fds.push(PollFd::new(socket, PollFlags::IN));
    fds.extend(
        children
            .iter()
            .map(|(_, fd)| PollFd::new(fd, PollFlags::IN)),
    );
    loop {
        match poll(&mut fds, None) {
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let request = !fds[0].revents().is_empty();
    let ended = children
        .iter()
        .zip(&fds[1..])
        .filter(|(_, fd)| !fd.revents().is_empty())
        .map(|((pid, _), _)| *pid)
        .collect();
    Ok((request, ended))
}

fn reply(socket: &OwnedFd, reply: &Reply, pidfd: Option<BorrowedFd<'_>>) {
    let data = match serde_json::to_vec(reply) {
        Ok(data) => data,
        Err(e) => {
            eprintln!("zygote: encode reply: {e}");
            return;
        }
    };
    let fds: Vec<BorrowedFd<'_>> = pidfd.into_iter().collect();
    if let Err(e) = fdpass::send(socket, &data, &fds) {
        eprintln!("zygote: reply: {e}");
    }
}

/// How a request to the zygote went wrong.
#[derive(Debug)]
pub(crate) enum RequestError {
    /// The zygote never took the request: nothing was started.
    NotSent(String),
    /// It took the request but gave no usable answer: a supervisor may or
    /// may not run (its report, on the pipe, tells).
    NoReply(String),
}

/// The runtime's end: the zygote process and its socket.
#[derive(Debug)]
pub(crate) struct Zygote {
    socket: OwnedFd,
    /// Kept so the zygote is reaped when it ends (it is never killed: it
    /// exits when the socket closes).
    _process: tokio::process::Child,
}

impl Zygote {
    /// Starts a zygote from the supervisor command `command`.
    pub(crate) fn start(mut command: tokio::process::Command) -> io::Result<Self> {
        let (ours, theirs) = fdpass::seqpacket_pair()?;
        fdpass::set_timeout(&ours, EXCHANGE_TIMEOUT)?;
        let process = command
            .arg("zygote")
            .stdin(std::process::Stdio::from(theirs))
            .stdout(std::process::Stdio::null())
            // Its own process group: signals to the agent's group don't reach
            // it or the supervisors it forks.
            .process_group(0)
            .spawn()?;
        Ok(Self {
            socket: ours,
            _process: process,
        })
    }

    /// Asks for a supervisor for `args` with the report pipe `report` as its
    /// stdout and `log` as its stderr: its PID and pidfd. Blocks for the
    /// fork (well under a millisecond), at most [`EXCHANGE_TIMEOUT`].
    pub(crate) fn spawn(
        &self,
        args: &RunArgs,
        report: BorrowedFd<'_>,
        log: BorrowedFd<'_>,
    ) -> Result<(i32, OwnedFd), RequestError> {
        let data = serde_json::to_vec(args).map_err(|e| RequestError::NotSent(e.to_string()))?;
        fdpass::send(&self.socket, &data, &[report, log])
            .map_err(|e| RequestError::NotSent(format!("send to zygote: {e}")))?;
        let mut buf = [0u8; 4096];
        let (len, fds) = fdpass::recv(&self.socket, &mut buf)
            .map_err(|e| RequestError::NoReply(format!("zygote reply: {e}")))?;
        if len == 0 {
            return Err(RequestError::NoReply("the zygote has ended".into()));
        }
        let reply = serde_json::from_slice::<Reply>(&buf[..len])
            .map_err(|e| RequestError::NoReply(format!("bad zygote reply: {e}")))?;
        match (reply, fds.into_iter().next()) {
            (Reply::Forked { pid }, Some(pidfd)) => Ok((pid, pidfd)),
            (Reply::Forked { pid }, None) => Err(RequestError::NoReply(format!(
                "zygote forked {pid} but sent no pidfd"
            ))),
            // Nothing was forked: as if never sent.
            (Reply::Failed(msg), _) => Err(RequestError::NotSent(msg)),
        }
    }
}
