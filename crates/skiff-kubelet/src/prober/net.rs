//! Dialing shared by the HTTP and TCP probes, with Go's error wording
//! (`dial tcp 127.0.0.1:1: connect: connection refused`), since probe messages
//! end up in events that users and tools match on.

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;

/// Connects to `addr` (`host:port`, host a name or an IP literal) within
/// `timeout`; the error is worded as Go's `net.OpError`.
pub(crate) async fn dial(addr: &str, timeout: Duration) -> Result<TcpStream, String> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(err)) => Err(dial_error(addr, &err)),
        Err(_) => Err(dial_timeout_error(addr)),
    }
}

/// Go's text for a dial that ran out of time.
pub(crate) fn dial_timeout_error(addr: &str) -> String {
    format!("dial tcp {addr}: i/o timeout")
}

/// Go's text for a failed dial: the operation and the lower-case errno text.
pub(crate) fn dial_error(addr: &str, err: &io::Error) -> String {
    let text = match err.kind() {
        io::ErrorKind::ConnectionRefused => "connect: connection refused".to_string(),
        io::ErrorKind::HostUnreachable => "connect: no route to host".to_string(),
        io::ErrorKind::NetworkUnreachable => "connect: network is unreachable".to_string(),
        io::ErrorKind::AddrNotAvailable => "connect: cannot assign requested address".to_string(),
        io::ErrorKind::TimedOut => "connect: connection timed out".to_string(),
        // Name resolution and the rest: the OS text without Rust's errno suffix.
        _ => {
            let raw = err.to_string();
            lower_first(raw.split(" (os error").next().unwrap_or(&raw))
        }
    };
    format!("dial tcp {addr}: {text}")
}

fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}
