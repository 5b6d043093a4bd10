//! SPDY/3.1 remotecommand driver: `kubectl exec`/`attach` over SPDY, the
//! fallback when WebSockets fail and the protocol of older clients.
//!
//! The client opens one SPDY stream per channel, naming it in the
//! `streamtype` header (`error`, `stdin`, `stdout`, `stderr`, `resize`); the
//! server replies to each and, once all the streams the request asked for
//! exist, runs the command. Client-initiated streams have odd ids. Output goes
//! out as DATA frames on the client's streams; the exit status goes on the
//! `error` stream just before the connection closes.

mod conn;
#[cfg(test)]
mod flow_tests;
pub(crate) mod frame;
#[cfg(test)]
mod test_client;
#[cfg(test)]
mod tests;

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tracing::Instrument;

pub use frame::FrameError;

use super::{Session, StreamOpts, Version};

/// How long the client has to open its streams once the connection is
/// upgraded (upstream's `DefaultStreamCreationTimeout`).
pub const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The versions served over SPDY, newest first (v5 is WebSocket-only).
const SERVED: [Version; 4] = [Version::V4, Version::V3, Version::V2, Version::V1];

/// Why a SPDY session could not start.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    /// The client did not open the expected streams in time.
    #[error("timed out waiting for client to create streams")]
    Timeout,
    /// The client closed the connection (or sent GOAWAY) before opening the
    /// expected streams.
    #[error("the client closed the connection before creating its streams")]
    Closed,
    /// The client broke the framing rules.
    #[error("SPDY protocol error: {0}")]
    Protocol(#[from] FrameError),
    /// Reading or writing the connection failed.
    #[error("SPDY connection: {0}")]
    Io(#[from] std::io::Error),
}

/// The remotecommand version to speak over SPDY, given every value of the
/// request's `X-Stream-Protocol-Version` headers (each may list several
/// comma-separated names): the first name the client lists that the server
/// serves, as upstream's `httpstream.Handshake`. `None` when nothing matches
/// or the client named nothing (upstream then answers 403 or 400).
pub fn negotiate(client: &[&str]) -> Option<Version> {
    client
        .iter()
        .flat_map(|value| value.split(','))
        .map(|name| name.trim_matches(' '))
        .filter(|name| !name.is_empty())
        .find_map(|name| SERVED.into_iter().find(|v| v.name() == name))
}

/// Runs SPDY/3.1 on an upgraded connection (the 101 response has been
/// sent). Waits up to [`STREAM_CREATION_TIMEOUT`] for the client to open
/// the streams `opts` implies, replying to each, then hands out the
/// process side [`Session`] while a spawned task pumps data both ways; once
/// the session's output has ended the task writes the outcome on the error
/// stream, closes every stream and sends GOAWAY.
#[tracing::instrument(skip_all, fields(version = version.name()))]
pub async fn accept<I>(io: I, version: Version, opts: StreamOpts) -> Result<Session, SpdyError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ready_tx, ready_rx) = oneshot::channel();
    tokio::spawn(conn::run(io, version, opts, ready_tx).in_current_span());
    ready_rx.await.unwrap_or(Err(SpdyError::Closed))
}
