//! The process side of an exec session: runs the command in the container
//! under an exec supervisor, on pipes or on a pseudo-terminal, and feeds the
//! [`Session`].

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{Outcome, Session, StreamOpts, TermSize};
use crate::Runtime;
use skiff_sys::pty::AsyncMaster;

/// How long output may keep coming after the command exits (a background
/// process can hold the pipes open forever).
const OUTPUT_GRACE: Duration = Duration::from_secs(2);
/// How long a terminal session waits for the client's first size.
const FIRST_SIZE_WAIT: Duration = Duration::from_millis(300);
/// Read size for output.
const CHUNK: usize = 32 * 1024;

/// Runs `cmd` in container `id` for `session` and reports how it ended. If
/// the client goes away first, the command is killed.
pub async fn run(
    runtime: Arc<Runtime>,
    id: String,
    cmd: Vec<String>,
    opts: StreamOpts,
    session: Session,
) {
    let Session {
        stdin,
        resize,
        stdout,
        stderr,
        mut finish,
    } = session;
    let io = Io {
        stdin,
        resize,
        stdout,
        stderr,
    };
    let outcome = match exec(&runtime, &id, &cmd, opts, io, &mut finish).await {
        Ok(code) => Outcome::exited(&cmd, code),
        Err(msg) => Outcome::Failed(msg),
    };
    // Fails only when the client is gone: nobody to tell.
    let _ = finish.send(outcome);
}

/// The session's streams.
struct Io {
    stdin: Option<mpsc::Receiver<Bytes>>,
    resize: Option<mpsc::Receiver<TermSize>>,
    stdout: Option<mpsc::Sender<Bytes>>,
    stderr: Option<mpsc::Sender<Bytes>>,
}

fn piped_if(on: bool) -> Stdio {
    if on { Stdio::piped() } else { Stdio::null() }
}

async fn exec(
    runtime: &Runtime,
    id: &str,
    cmd: &[String],
    opts: StreamOpts,
    io: Io,
    finish: &mut oneshot::Sender<Outcome>,
) -> Result<i32, String> {
    let mut exec = runtime
        .exec_command(id, cmd, 0, opts.tty)
        .map_err(|e| e.to_string())?;
    // Output pumps are awaited (briefly) after the exit; input pumps aborted.
    let mut outputs: Vec<JoinHandle<()>> = Vec::new();
    let mut inputs: Vec<JoinHandle<()>> = Vec::new();
    let mut child = if opts.tty {
        let (master, slave) =
            skiff_sys::pty::open().map_err(|e| format!("open a terminal: {e}"))?;
        // Clients send the terminal's size first thing: start the process
        // with it rather than resize it a moment later.
        let mut resize = io.resize;
        if let Some(rx) = resize.as_mut()
            && let Ok(Some(size)) = tokio::time::timeout(FIRST_SIZE_WAIT, rx.recv()).await
        {
            let _ = skiff_sys::pty::set_size(&master, size.width, size.height);
        }
        let dup = |fd: &std::os::fd::OwnedFd| {
            fd.try_clone()
                .map_err(|e| format!("duplicate the terminal: {e}"))
        };
        exec.command
            .stdin(Stdio::from(dup(&slave)?))
            .stdout(Stdio::from(dup(&slave)?))
            .stderr(Stdio::from(slave))
            .kill_on_drop(true);
        let child = exec
            .command
            .spawn()
            .map_err(|e| format!("start exec supervisor: {e}"))?;
        // Close our copies of the terminal, or its output never ends.
        exec.command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let master = Arc::new(
            skiff_sys::pty::AsyncMaster::new(master)
                .map_err(|e| format!("watch the terminal: {e}"))?,
        );
        outputs.push(tokio::spawn(pty_output(master.clone(), io.stdout)));
        if let Some(rx) = io.stdin {
            inputs.push(tokio::spawn(pty_input(master.clone(), rx)));
        }
        if let Some(rx) = resize {
            inputs.push(tokio::spawn(pty_resize(master, rx)));
        }
        child
    } else {
        exec.command
            .stdin(piped_if(io.stdin.is_some()))
            .stdout(piped_if(io.stdout.is_some()))
            .stderr(piped_if(io.stderr.is_some()))
            .kill_on_drop(true);
        let mut child = exec
            .command
            .spawn()
            .map_err(|e| format!("start exec supervisor: {e}"))?;
        if let (Some(out), Some(tx)) = (child.stdout.take(), io.stdout) {
            outputs.push(tokio::spawn(copy_out(out, tx)));
        }
        if let (Some(err), Some(tx)) = (child.stderr.take(), io.stderr) {
            outputs.push(tokio::spawn(copy_out(err, tx)));
        }
        if let (Some(input), Some(rx)) = (child.stdin.take(), io.stdin) {
            inputs.push(tokio::spawn(copy_in(rx, input)));
        }
        child
    };
    let status = tokio::select! {
        status = child.wait() => status,
        () = finish.closed() => {
            exec.kill();
            child.wait().await
        }
    };
    let drained = async {
        for task in &mut outputs {
            let _ = task.await;
        }
    };
    if tokio::time::timeout(OUTPUT_GRACE, drained).await.is_err() {
        outputs.iter().for_each(JoinHandle::abort);
    }
    inputs.iter().for_each(JoinHandle::abort);
    status.map_err(|e| format!("wait for exec supervisor: {e}"))?;
    exec.result(&[]).map_err(|e| e.to_string())
}

async fn copy_out(mut from: impl AsyncRead + Unpin, to: mpsc::Sender<Bytes>) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Copies the client's stdin to the process; the end of the channel closes
/// the process's stdin.
async fn copy_in(mut from: mpsc::Receiver<Bytes>, mut to: impl AsyncWrite + Unpin) {
    while let Some(data) = from.recv().await {
        if to.write_all(&data).await.is_err() {
            return;
        }
    }
    let _ = to.shutdown().await;
}

/// Terminal output until every holder of the slave side is gone (then the
/// master reads EIO). Read even when the client does not want it, or the
/// process would block on a full terminal.
async fn pty_output(master: Arc<AsyncMaster>, to: Option<mpsc::Sender<Bytes>>) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match master.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if let Some(to) = &to
                    && to.send(Bytes::copy_from_slice(&buf[..n])).await.is_err()
                {
                    return;
                }
            }
        }
    }
}

async fn pty_input(master: Arc<AsyncMaster>, mut from: mpsc::Receiver<Bytes>) {
    while let Some(data) = from.recv().await {
        let mut rest: &[u8] = &data;
        while !rest.is_empty() {
            match master.write(rest).await {
                Ok(n) => rest = &rest[n..],
                Err(_) => return,
            }
        }
    }
}

async fn pty_resize(master: Arc<AsyncMaster>, mut sizes: mpsc::Receiver<TermSize>) {
    while let Some(size) = sizes.recv().await {
        if let Err(err) = master.set_size(size.width, size.height) {
            tracing::debug!(error = %err, "resizing an exec terminal failed");
        }
    }
}
