//! The supervisor's control channel: a unix socket in the container's
//! directory, served by a thread of the (long-lived) shim, so the runtime —
//! possibly a newer agent than the one that started the shim — can ask it
//! for things only it can do.
//!
//! The protocol is one request line per connection and one reply line:
//! `<command>[ <args>]\n` answered by `ok[ <payload>]\n` or `error <message>\n`.
//! Commands: `reopen` (reopen the CRI log file at its path). An unknown
//! command is answered with an error, so callers can tell an old shim apart.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use super::CriLog;

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
pub fn serve(listener: UnixListener, log: CriLog) {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else {
                // Out of descriptors or memory: don't spin.
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            let log = log.clone();
            std::thread::spawn(move || handle(conn, &log));
        }
    });
}

fn handle(conn: UnixStream, log: &CriLog) {
    let _ = conn.set_read_timeout(Some(REQUEST_TIMEOUT));
    let mut line = String::new();
    let read = BufReader::new(&conn).take(MAX_REQUEST).read_line(&mut line);
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
    let exchange = async {
        let (dir, name) = split(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ControlError::NoSocket(path.to_owned()),
            _ => ControlError::Unreachable {
                path: path.to_owned(),
                source: e,
            },
        })?;
        let conn = tokio::net::UnixStream::connect(short_path(&dir, name))
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => ControlError::NoSocket(path.to_owned()),
                _ => ControlError::Unreachable {
                    path: path.to_owned(),
                    source: e,
                },
            })?;
        drop(dir);
        let (read, mut write) = conn.into_split();
        write
            .write_all(format!("{command}\n").as_bytes())
            .await
            .map_err(|e| ControlError::Protocol(format!("send request: {e}")))?;
        let mut line = String::new();
        tokio::io::BufReader::new(read)
            .read_line(&mut line)
            .await
            .map_err(|e| ControlError::Protocol(format!("read reply: {e}")))?;
        parse_reply(&line)
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
        serve(bind(&socket).unwrap(), log.clone());

        std::fs::rename(&log_path, tmp.path().join("c/0.log.1")).unwrap();
        let reply = request(&socket, "reopen", Duration::from_secs(5)).await;
        assert_eq!(reply.unwrap(), "");
        log.copy("stdout", &b"after\n"[..]);
        let new = std::fs::read_to_string(&log_path).unwrap();
        let old = std::fs::read_to_string(tmp.path().join("c/0.log.1")).unwrap();
        assert!(new.ends_with(" stdout F after\n") && !new.contains("before"));
        assert!(old.ends_with(" stdout F before\n") && !old.contains("after"));

        let err = request(&socket, "attach 1", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ControlError::Failed(m) if m == "unknown command \"attach\""),
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
