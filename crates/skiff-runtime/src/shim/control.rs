//! The supervisor's control channel: a unix socket in the container's
//! directory, served by a thread of the (long-lived) shim, so the runtime —
//! possibly a newer agent than the one that started the shim — can ask it
//! for things only it can do.
//!
//! The protocol is one request line per connection and one reply line:
//! `<command>[ <args>]\n` answered by `ok[ <payload>]\n` or `error <message>\n`.
//! Commands: `reopen` (reopen the CRI log file at its path) and `attach`
//! (after `ok`, the connection carries [`super::attach`] frames). An unknown
//! command is answered with an error, so callers can tell an old shim apart.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::CriLog;
use super::attach::{AttachHub, Wants};

/// The socket's file name in the container's directory.
pub const SOCKET_NAME: &str = "control.sock";

/// How long a connection may take to send its request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest request line accepted.
const MAX_REQUEST: u64 = 4096;

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No socket: the shim predates the control channel (or is gone).
    #[error(
        "the container's supervisor has no control socket at {0} (started by an older skiff, or it exited)"
    )]
    NoSocket(PathBuf),
    /// The socket exists but nobody answers on it.
    #[error("cannot reach the container's supervisor at {path}: {source}")]
    Unreachable {
        /// The socket.
        path: PathBuf,
        /// The connect error.
        source: std::io::Error,
    },
    /// No reply in time.
    #[error("the container's supervisor did not answer {command:?} within {timeout:?}")]
    Timeout {
        /// The request.
        command: String,
        /// The limit.
        timeout: Duration,
    },
    /// The shim answered with an error.
    #[error("{0}")]
    Failed(String),
    /// The exchange broke off or the reply made no sense.
    #[error("control channel: {0}")]
    Protocol(String),
}

/// A path to `name` in `dir` short enough for `sockaddr_un` (108 bytes):
/// `/proc/self/fd/<dirfd>/<name>`, valid while `dir` stays open. Container
/// directories under a data dir easily exceed the limit.
fn short_path(dir: &std::fs::File, name: &std::ffi::OsStr) -> PathBuf {
    Path::new("/proc/self/fd")
        .join(dir.as_raw_fd().to_string())
        .join(name)
}

fn split(path: &Path) -> std::io::Result<(std::fs::File, &std::ffi::OsStr)> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("bad control socket path {}", path.display()),
        ));
    };
    Ok((std::fs::File::open(parent)?, name))
}

/// Binds the control socket at `path` (replacing a stale one).
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    let (dir, name) = split(path)?;
    let short = short_path(&dir, name);
    match std::fs::remove_file(&short) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    UnixListener::bind(&short)
}

/// Serves `listener` on a thread: one thread per connection, so a slow or
/// long-lived client never holds up the others.
pub fn serve(listener: UnixListener, log: CriLog, hub: Option<std::sync::Arc<AttachHub>>) {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else {
                // Out of descriptors or memory: don't spin.
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            let log = log.clone();
            let hub = hub.clone();
            std::thread::spawn(move || handle(conn, &log, hub.as_deref()));
        }
    });
}

fn handle(conn: UnixStream, log: &CriLog, hub: Option<&AttachHub>) {
    let _ = conn.set_read_timeout(Some(REQUEST_TIMEOUT));
    let mut line = String::new();
    // Byte by byte: nothing past the request line may be read ahead, for
    // attach hands the connection over to frames.
    let read = (&conn).take(MAX_REQUEST).read_line_unbuffered(&mut line);
    let request = line.trim_end();
    let (command, args) = request.split_once(' ').unwrap_or((request, ""));
    if command == "attach" && line.ends_with('\n') {
        match hub {
            Some(hub) => {
                let _ = conn.set_read_timeout(None);
                hub.serve(conn, Wants::parse(args));
            }
            None => {
                let _ = (&conn).write_all(b"error this container cannot be attached to\n");
            }
        }
        return;
    }
    let reply = match read {
        Ok(_) if line.ends_with('\n') => dispatch(line.trim_end(), log),
        Ok(_) => Err("request line missing or too long".to_owned()),
        Err(e) => Err(format!("read request: {e}")),
    };
    let reply = match reply {
        Ok(payload) if payload.is_empty() => "ok\n".to_owned(),
        Ok(payload) => format!("ok {payload}\n"),
        Err(msg) => format!("error {}\n", msg.replace('\n', " ")),
    };
    let _ = (&conn).write_all(reply.as_bytes());
}

fn dispatch(request: &str, log: &CriLog) -> Result<String, String> {
    let (command, _args) = request.split_once(' ').unwrap_or((request, ""));
    match command {
        "reopen" => log
            .reopen()
            .map(|()| String::new())
            .map_err(|e| format!("reopen container log: {e}")),
        other => Err(format!("unknown command {other:?}")),
    }
}

/// Sends `command` to the shim listening at `path`; returns the reply's
/// payload. Connecting and the whole exchange are bounded by `timeout`.
pub async fn request(
    path: &Path,
    command: &str,
    timeout: Duration,
) -> Result<String, ControlError> {
    open(path, command, timeout)
        .await
        .map(|(payload, _)| payload)
}

/// Sends `command` and, on `ok`, returns the payload and the connection,
/// positioned right after the reply line (for commands that go on to
/// stream, like `attach`). Bounded by `timeout` up to the reply.
pub async fn open(
    path: &Path,
    command: &str,
    timeout: Duration,
) -> Result<(String, tokio::net::UnixStream), ControlError> {
    let exchange = async {
        let (dir, name) = split(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ControlError::NoSocket(path.to_owned()),
            _ => ControlError::Unreachable {
                path: path.to_owned(),
                source: e,
            },
        })?;
        let mut conn = tokio::net::UnixStream::connect(short_path(&dir, name))
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => ControlError::NoSocket(path.to_owned()),
                _ => ControlError::Unreachable {
                    path: path.to_owned(),
                    source: e,
                },
            })?;
        drop(dir);
        conn.write_all(format!("{command}\n").as_bytes())
            .await
            .map_err(|e| ControlError::Protocol(format!("send request: {e}")))?;
        // Byte by byte: what follows the reply belongs to the caller.
        let mut line = Vec::new();
        while line.len() < MAX_REQUEST as usize {
            match conn.read_u8().await {
                Ok(b) => {
                    line.push(b);
                    if b == b'\n' {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(ControlError::Protocol(format!("read reply: {e}"))),
            }
        }
        let payload = parse_reply(&String::from_utf8_lossy(&line))?;
        Ok((payload, conn))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ControlError::Timeout {
            command: command.to_owned(),
            timeout,
        })?
}

/// Parses one reply line.
fn parse_reply(line: &str) -> Result<String, ControlError> {
    let Some(line) = line.strip_suffix('\n') else {
        return Err(ControlError::Protocol(
            "the supervisor closed the connection without a reply".to_owned(),
        ));
    };
    if line == "ok" {
        return Ok(String::new());
    }
    if let Some(payload) = line.strip_prefix("ok ") {
        return Ok(payload.to_owned());
    }
    if let Some(msg) = line.strip_prefix("error ") {
        return Err(ControlError::Failed(msg.to_owned()));
    }
    Err(ControlError::Protocol(format!("unexpected reply {line:?}")))
}

/// Reads one line without reading past it.
trait ReadLineUnbuffered {
    fn read_line_unbuffered(&mut self, line: &mut String) -> std::io::Result<usize>;
}

impl<R: Read> ReadLineUnbuffered for R {
    fn read_line_unbuffered(&mut self, line: &mut String) -> std::io::Result<usize> {
        let mut bytes = Vec::new();
        let mut b = [0u8; 1];
        loop {
            match self.read(&mut b)? {
                0 => break,
                _ => {
                    bytes.push(b[0]);
                    if b[0] == b'\n' {
                        break;
                    }
                }
            }
        }
        let n = bytes.len();
        line.push_str(&String::from_utf8_lossy(&bytes));
        Ok(n)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse() {
        let cases: Vec<(&str, Result<&str, &str>)> = vec![
            ("ok\n", Ok("")),
            ("ok 42\n", Ok("42")),
            ("error disk on fire\n", Err("disk on fire")),
            ("ok", Err("control channel: the supervisor closed")),
            ("", Err("control channel: the supervisor closed")),
            ("okay\n", Err("control channel: unexpected reply")),
        ];
        for (line, want) in cases {
            match (parse_reply(line), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{line:?}"),
                (Err(got), Err(want)) => {
                    assert!(got.to_string().starts_with(want), "{line:?}: {got}")
                }
                (got, want) => panic!("{line:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    /// A directory whose path alone is longer than `sockaddr_un` allows.
    fn long_dir(base: &Path) -> PathBuf {
        let dir = base.join("d".repeat(60)).join("e".repeat(60));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reopen_swaps_the_log_file_over_a_long_socket_path() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = long_dir(tmp.path());
        let log_path = tmp.path().join("c/0.log");
        let log = CriLog::open(Some(&log_path)).unwrap();
        log.copy("stdout", &b"before\n"[..]);
        let socket = dir.join(SOCKET_NAME);
        assert!(socket.as_os_str().len() > 108);
        serve(bind(&socket).unwrap(), log.clone(), None);

        std::fs::rename(&log_path, tmp.path().join("c/0.log.1")).unwrap();
        let reply = request(&socket, "reopen", Duration::from_secs(5)).await;
        assert_eq!(reply.unwrap(), "");
        log.copy("stdout", &b"after\n"[..]);
        let new = std::fs::read_to_string(&log_path).unwrap();
        let old = std::fs::read_to_string(tmp.path().join("c/0.log.1")).unwrap();
        assert!(new.ends_with(" stdout F after\n") && !new.contains("before"));
        assert!(old.ends_with(" stdout F before\n") && !old.contains("after"));

        let err = request(&socket, "frobnicate 1", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ControlError::Failed(m) if m == "unknown command \"frobnicate\""),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_missing_socket_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let err = request(
            &tmp.path().join(SOCKET_NAME),
            "reopen",
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ControlError::NoSocket(_)), "{err}");
        assert!(err.to_string().contains("older skiff"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_silent_listener_times_out() {
        let tmp = tempfile::tempdir().unwrap();
        let socket = tmp.path().join(SOCKET_NAME);
        // Bound but never accepted: the connection waits in the backlog.
        let _listener = bind(&socket).unwrap();
        let err = request(&socket, "reopen", Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(err, ControlError::Timeout { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_dead_listener_is_unreachable() {
        let tmp = tempfile::tempdir().unwrap();
        let socket = tmp.path().join(SOCKET_NAME);
        drop(bind(&socket).unwrap());
        let err = request(&socket, "reopen", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, ControlError::Unreachable { .. }), "{err}");
    }
}
