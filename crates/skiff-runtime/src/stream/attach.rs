//! The process side of an attach session: the container's supervisor
//! streams its output and takes input over its control socket
//! ([`crate::shim::attach`]); this relays that to the [`Session`].

use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

use super::{Outcome, Session, StreamOpts, TermSize};
use crate::Runtime;
use crate::shim::attach::{Wants, kind};

/// Largest frame accepted from the supervisor.
const MAX_FRAME: usize = 1 << 20;

/// Attaches `session` to container `id` until the container ends or the
/// client goes away.
pub async fn run(runtime: Arc<Runtime>, id: String, opts: StreamOpts, session: Session) {
    let Session {
        stdin,
        resize,
        stdout,
        stderr,
        mut finish,
    } = session;
    let wants = Wants {
        stdin: opts.stdin,
        stdout: opts.stdout,
        stderr: opts.stderr && !opts.tty,
    };
    let conn = match runtime.attach_connection(&id, wants).await {
        Ok(conn) => conn,
        Err(e) => {
            let _ = finish.send(Outcome::Failed(e.to_string()));
            return;
        }
    };
    let (read, write) = conn.into_split();
    let input = tokio::spawn(send_input(write, stdin, resize));
    tokio::select! {
        () = receive_output(read, stdout, stderr) => {
            let _ = finish.send(Outcome::Success);
        }
        // The client went away: dropping the connection detaches (and, with
        // stdinOnce, closes the container's stdin).
        () = finish.closed() => {}
    }
    input.abort();
}

async fn receive_output(
    mut read: OwnedReadHalf,
    stdout: Option<mpsc::Sender<Bytes>>,
    stderr: Option<mpsc::Sender<Bytes>>,
) {
    loop {
        let mut header = [0u8; 5];
        if read.read_exact(&mut header).await.is_err() {
            return;
        }
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if len > MAX_FRAME {
            return;
        }
        let mut data = vec![0u8; len];
        if read.read_exact(&mut data).await.is_err() {
            return;
        }
        let to = match header[0] {
            kind::STDOUT => &stdout,
            kind::STDERR => &stderr,
            kind::EXITED => return,
            _ => continue,
        };
        if let Some(to) = to
            && to.send(Bytes::from(data)).await.is_err()
        {
            return;
        }
    }
}

async fn send_input(
    mut write: OwnedWriteHalf,
    mut stdin: Option<mpsc::Receiver<Bytes>>,
    mut resize: Option<mpsc::Receiver<TermSize>>,
) {
    async fn frame(w: &mut OwnedWriteHalf, k: u8, data: &[u8]) -> std::io::Result<()> {
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let mut header = [0u8; 5];
        header[0] = k;
        header[1..].copy_from_slice(&len.to_be_bytes());
        w.write_all(&header).await?;
        w.write_all(data).await
    }
    loop {
        let sent = tokio::select! {
            data = recv(&mut stdin), if stdin.is_some() => match data {
                Some(d) => frame(&mut write, kind::STDIN, &d).await,
                None => {
                    stdin = None;
                    frame(&mut write, kind::CLOSE_STDIN, &[]).await
                }
            },
            size = recv(&mut resize), if resize.is_some() => match size {
                Some(s) => {
                    let mut d = [0u8; 4];
                    d[..2].copy_from_slice(&s.width.to_be_bytes());
                    d[2..].copy_from_slice(&s.height.to_be_bytes());
                    frame(&mut write, kind::RESIZE, &d).await
                }
                None => {
                    resize = None;
                    Ok(())
                }
            },
            // Inputs done: keep the connection open for output (a
            // shut-down write side tells the supervisor we left).
            else => std::future::pending().await,
        };
        if sent.is_err() {
            return;
        }
    }
}

async fn recv<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(r) => r.recv().await,
        None => None,
    }
}
