//! The CRI streaming server: `kubectl exec`, `attach` and `port-forward` end here.
//!
//! The CRI `Exec`/`Attach` calls do not stream; they return a one-time URL
//! on this server ([`server`]). The kubelet proxies the client's upgraded
//! connection to that URL, so the wire protocol a client speaks (WebSocket
//! `v5.channel.k8s.io`/`v4.channel.k8s.io`, or SPDY/3.1 with
//! `X-Stream-Protocol-Version`) is spoken here, as containerd's and CRI-O's
//! streaming servers do.
//!
//! Every protocol driver ([`ws`], [`spdy`]) turns an upgraded connection into
//! the same protocol-independent [`Session`]: channels for stdin, terminal
//! resizes, stdout and stderr, and a [`Outcome`] that the driver reports on
//! the error stream before it closes the connection.

pub mod attach;
pub mod exec;
pub mod portforward;
pub mod server;
pub mod spdy;
pub mod ws;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

/// How many chunks may queue between a process and the wire, each way.
pub const CHANNEL_DEPTH: usize = 16;

/// Which streams the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamOpts {
    /// The client sends stdin.
    pub stdin: bool,
    /// The client reads stdout.
    pub stdout: bool,
    /// The client reads stderr (never with `tty`: a terminal merges it).
    pub stderr: bool,
    /// The process runs on a terminal; the client may send resizes.
    pub tty: bool,
}

/// A terminal size, as clients send it on the resize stream
/// (`{"Width":80,"Height":24}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct TermSize {
    /// Columns.
    #[serde(rename = "Width")]
    pub width: u16,
    /// Rows.
    #[serde(rename = "Height")]
    pub height: u16,
}

/// The remotecommand subprotocol version a client negotiated; it decides
/// what the error stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    /// `channel.k8s.io`: error text only.
    V1,
    /// `v2.channel.k8s.io`: as v1 (fixes stream ordering).
    V2,
    /// `v3.channel.k8s.io`: adds terminal resizes.
    V3,
    /// `v4.channel.k8s.io`: the error stream carries a `metav1.Status` with
    /// the exit code.
    V4,
    /// `v5.channel.k8s.io`: adds the CLOSE signal (WebSocket only).
    V5,
}

impl Version {
    /// The protocol name.
    pub fn name(self) -> &'static str {
        match self {
            Version::V1 => "channel.k8s.io",
            Version::V2 => "v2.channel.k8s.io",
            Version::V3 => "v3.channel.k8s.io",
            Version::V4 => "v4.channel.k8s.io",
            Version::V5 => "v5.channel.k8s.io",
        }
    }

    /// The version named `name`.
    pub fn from_name(name: &str) -> Option<Version> {
        [
            Version::V5,
            Version::V4,
            Version::V3,
            Version::V2,
            Version::V1,
        ]
        .into_iter()
        .find(|v| v.name() == name.trim())
    }

    /// Whether the client may send terminal resizes.
    pub fn has_resize(self) -> bool {
        self >= Version::V3
    }
}

/// How the command (or attached container) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exit code 0.
    Success,
    /// A non-zero exit code; `message` describes the command, e.g. `error
    /// executing command [sh -c exit 3], exit code 3`.
    NonZero {
        /// The exit code.
        code: i32,
        /// What ran and how it ended.
        message: String,
    },
    /// The command could not run at all (reported as an internal error).
    Failed(String),
}

impl Outcome {
    /// The outcome of `cmd` exiting with `code`.
    pub fn exited(cmd: &[String], code: i32) -> Outcome {
        if code == 0 {
            Outcome::Success
        } else {
            Outcome::NonZero {
                code,
                message: format!(
                    "error executing command [{}], exit code {code}",
                    cmd.join(" ")
                ),
            }
        }
    }

    /// What the error stream carries for `version`, if anything: a
    /// `metav1.Status` for v4 and later (as upstream's `v4WriteStatusFunc`),
    /// the error text for earlier versions (nothing on success).
    pub fn error_payload(&self, version: Version) -> Option<Vec<u8>> {
        if version >= Version::V4 {
            let status = match self {
                Outcome::Success => json!({"metadata": {}, "status": "Success"}),
                Outcome::NonZero { code, message } => json!({
                    "metadata": {},
                    "status": "Failure",
                    "message": format!("command terminated with non-zero exit code: {message}"),
                    "reason": "NonZeroExitCode",
                    "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
                }),
                Outcome::Failed(message) => json!({
                    "metadata": {},
                    "status": "Failure",
                    "message": format!("Internal error occurred: {message}"),
                    "reason": "InternalError",
                    "details": {"causes": [{"message": message}]},
                    "code": 500,
                }),
            };
            return serde_json::to_vec(&status).ok();
        }
        match self {
            Outcome::Success => None,
            Outcome::NonZero { message, .. } => {
                Some(format!("command terminated with non-zero exit code: {message}").into_bytes())
            }
            Outcome::Failed(message) => {
                Some(format!("Internal error occurred: {message}").into_bytes())
            }
        }
    }
}

/// The process side of one exec/attach session. A driver hands it out once
/// the client's streams are open.
///
/// The process side writes output to `stdout`/`stderr`, drops both when the
/// output has ended, and then sends the [`Outcome`] on `finish`; the driver
/// flushes the output, writes the outcome to the error stream and closes the
/// connection. Dropping `finish` without sending reports an internal error.
/// `stdin` yields the client's input and ends when the client closes stdin
/// (or goes away); `resize` yields terminal sizes.
#[derive(Debug)]
pub struct Session {
    /// The client's input, when asked for.
    pub stdin: Option<mpsc::Receiver<Bytes>>,
    /// Terminal sizes, with `tty`.
    pub resize: Option<mpsc::Receiver<TermSize>>,
    /// Output to the client's stdout, when asked for.
    pub stdout: Option<mpsc::Sender<Bytes>>,
    /// Output to the client's stderr, when asked for.
    pub stderr: Option<mpsc::Sender<Bytes>>,
    /// How it ended.
    pub finish: oneshot::Sender<Outcome>,
}

/// The driver's side of a [`Session`].
#[derive(Debug)]
pub struct DriverEnds {
    /// Feeds the session's stdin (dropping it is EOF).
    pub stdin: Option<mpsc::Sender<Bytes>>,
    /// Feeds terminal sizes.
    pub resize: Option<mpsc::Sender<TermSize>>,
    /// The process's stdout.
    pub stdout: Option<mpsc::Receiver<Bytes>>,
    /// The process's stderr.
    pub stderr: Option<mpsc::Receiver<Bytes>>,
    /// The outcome; an error means the process side dropped it.
    pub finish: oneshot::Receiver<Outcome>,
}

/// A connected [`Session`] and [`DriverEnds`] pair for `opts`.
pub fn session_pair(opts: StreamOpts) -> (Session, DriverEnds) {
    fn pipe<T>(on: bool) -> (Option<mpsc::Sender<T>>, Option<mpsc::Receiver<T>>) {
        if on {
            let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        }
    }
    let (stdin_tx, stdin_rx) = pipe(opts.stdin);
    let (resize_tx, resize_rx) = pipe(opts.tty);
    let (stdout_tx, stdout_rx) = pipe(opts.stdout);
    let (stderr_tx, stderr_rx) = pipe(opts.stderr && !opts.tty);
    let (finish_tx, finish_rx) = oneshot::channel();
    (
        Session {
            stdin: stdin_rx,
            resize: resize_rx,
            stdout: stdout_tx,
            stderr: stderr_tx,
            finish: finish_tx,
        },
        DriverEnds {
            stdin: stdin_tx,
            resize: resize_tx,
            stdout: stdout_rx,
            stderr: stderr_rx,
            finish: finish_rx,
        },
    )
}

/// The outcome a driver reports: what the process side sent, or an internal
/// error when it went away without saying.
pub async fn await_outcome(finish: oneshot::Receiver<Outcome>) -> Outcome {
    finish
        .await
        .unwrap_or_else(|_| Outcome::Failed("the stream ended without an exit status".into()))
}
