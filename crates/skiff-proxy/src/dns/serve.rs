//! The UDP and TCP listeners. In-zone answers are made on the receiving
//! task; forwarded queries get a task each (bounded), so a slow upstream
//! never holds up cluster names.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, watch};

use super::Resolver;
use super::message::{Step, Transport};

/// Forwarded UDP queries in flight at once; more are dropped (the client
/// retries).
const MAX_FORWARDS: usize = 1024;
/// TCP connections served at once.
const MAX_TCP_CONNECTIONS: usize = 256;
/// A TCP connection idle this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Bound UDP and TCP sockets on one address and port.
#[derive(Debug)]
pub struct Listener {
    udp: Arc<UdpSocket>,
    tcp: TcpListener,
}

impl Listener {
    /// Binds UDP and TCP at `addr`; with port 0, both on the port UDP got.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Listener> {
        let mut last = None;
        // With port 0 the TCP port UDP got may be taken: try a few.
        for _ in 0..5 {
            let udp = UdpSocket::bind(addr).await?;
            let local = udp.local_addr()?;
            match TcpListener::bind(local).await {
                Ok(tcp) => {
                    return Ok(Listener {
                        udp: Arc::new(udp),
                        tcp,
                    });
                }
                Err(err) if addr.port() == 0 => last = Some(err),
                Err(err) => return Err(err),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no free port")))
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.udp
            .local_addr()
            .or_else(|_| self.tcp.local_addr())
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves until `shutdown` turns true.
    pub async fn serve(self, resolver: Arc<Resolver>, mut shutdown: watch::Receiver<bool>) {
        let udp = serve_udp(self.udp, resolver.clone());
        let tcp = serve_tcp(self.tcp, resolver);
        tokio::select! {
            _ = udp => {}
            _ = tcp => {}
            _ = shutdown.wait_for(|s| *s) => {}
        }
    }
}

async fn serve_udp(socket: Arc<UdpSocket>, resolver: Arc<Resolver>) {
    let forwards = Arc::new(Semaphore::new(MAX_FORWARDS));
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(err) => {
                // ICMP errors of earlier replies surface here; keep going.
                tracing::debug!(error = %err, "DNS UDP receive failed");
                continue;
            }
        };
        let request = buf.get(..n).unwrap_or_default();
        match resolver.step(request, Transport::Udp) {
            Step::Drop => {}
            Step::Reply(reply) => {
                let _ = socket.send_to(&reply, peer).await;
            }
            step => {
                let Ok(permit) = forwards.clone().try_acquire_owned() else {
                    continue;
                };
                let request = request.to_vec();
                let (socket, resolver) = (socket.clone(), resolver.clone());
                tokio::spawn(async move {
                    if let Some(reply) = resolver
                        .finish(step, &request, Transport::Udp, peer.ip())
                        .await
                    {
                        let _ = socket.send_to(&reply, peer).await;
                    }
                    drop(permit);
                });
            }
        }
    }
}

async fn serve_tcp(listener: TcpListener, resolver: Arc<Resolver>) {
    let connections = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let Ok(permit) = connections.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::debug!(error = %err, "DNS TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let resolver = resolver.clone();
        tokio::spawn(async move {
            serve_connection(stream, &resolver, peer.ip()).await;
            drop(permit);
        });
    }
}

/// Length-prefixed messages (RFC 1035 4.2.2) until EOF, an error or idling.
async fn serve_connection(mut stream: TcpStream, resolver: &Resolver, client: IpAddr) {
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(Ok(len)) => len,
            _ => return,
        };
        let mut request = vec![0u8; usize::from(len)];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut request)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let Some(reply) = resolver.respond(&request, Transport::Tcp, client).await else {
            continue;
        };
        let Ok(n) = u16::try_from(reply.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&n.to_be_bytes());
        framed.extend_from_slice(&reply);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}
