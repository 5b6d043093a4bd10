//! Forwarding names outside the cluster to upstream resolvers (the host's,
//! from `/etc/resolv.conf`, as CoreDNS's `forward . /etc/resolv.conf`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::message::Transport;

/// How long one upstream gets to answer before the next is tried.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// The `nameserver` addresses of a resolv.conf (port 53), without `skip`
/// (our own listener: forwarding to ourselves would loop).
pub fn upstreams_from_resolv_conf(text: &str, skip: &[SocketAddr]) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? != "nameserver" {
                return None;
            }
            // A link-local IPv6 nameserver may carry a zone (`fe80::1%eth0`).
            let addr = words.next()?.split('%').next()?;
            addr.parse::<IpAddr>().ok()
        })
        .map(|ip| SocketAddr::new(ip, 53))
        .filter(|a| !skip.contains(a))
        .collect()
}

/// The host's upstream resolvers (none if resolv.conf is unreadable).
pub fn host_upstreams(skip: &[SocketAddr]) -> Vec<SocketAddr> {
    match std::fs::read_to_string("/etc/resolv.conf") {
        Ok(text) => upstreams_from_resolv_conf(&text, skip),
        Err(err) => {
            tracing::warn!(error = %err, "cannot read /etc/resolv.conf; names outside the cluster get REFUSED");
            Vec::new()
        }
    }
}

/// Sends `query` to the upstreams in turn over `transport` and returns the
/// first reply that carries its ID; `None` if none answered.
pub async fn exchange(
    upstreams: &[SocketAddr],
    query: &[u8],
    transport: Transport,
) -> Option<Vec<u8>> {
    let id = query.get(..2)?;
    for &upstream in upstreams {
        let reply = match transport {
            Transport::Udp => {
                tokio::time::timeout(UPSTREAM_TIMEOUT, udp(upstream, query, id)).await
            }
            Transport::Tcp => tokio::time::timeout(UPSTREAM_TIMEOUT, tcp(upstream, query)).await,
        };
        match reply {
            Ok(Ok(bytes)) if bytes.get(..2) == Some(id) => return Some(bytes),
            Ok(Ok(_)) => tracing::debug!(%upstream, "upstream reply with another ID"),
            Ok(Err(err)) => tracing::debug!(%upstream, error = %err, "upstream failed"),
            Err(_) => tracing::debug!(%upstream, "upstream timed out"),
        }
    }
    None
}

async fn udp(upstream: SocketAddr, query: &[u8], id: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buf).await?;
        // Stray datagrams (late replies to someone else) are skipped.
        if n >= 2 && buf.get(..2) == Some(id) {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn tcp(upstream: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let len = u16::try_from(query.len()).map_err(std::io::Error::other)?;
    let mut stream = TcpStream::connect(upstream).await?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let n = stream.read_u16().await?;
    let mut buf = vec![0u8; usize::from(n)];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}
