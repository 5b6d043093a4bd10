//! SPDY/3.1 remotecommand driver (kubectl's fallback when WebSockets fail).
//! Placeholder until the driver lands: negotiates nothing.

use tokio::io::{AsyncRead, AsyncWrite};

use super::{Session, StreamOpts, Version};

/// Why a SPDY session could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    /// Not implemented yet.
    #[error("SPDY is not supported yet")]
    Unsupported,
}

/// The version for the client's `X-Stream-Protocol-Version` values.
pub fn negotiate(_client: &[&str]) -> Option<Version> {
    None
}

/// Runs SPDY/3.1 on an upgraded connection.
pub async fn accept<I>(_io: I, _version: Version, _opts: StreamOpts) -> Result<Session, SpdyError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    Err(SpdyError::Unsupported)
}
