//! A TCP proxy on loopback that can sever its connections on demand, to test
//! how clients survive connection loss.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// Forwards every connection accepted on a loopback port to `upstream`.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Shared {
    connections: Mutex<Vec<AbortHandle>>,
    refusing: AtomicBool,
    accepted: AtomicUsize,
    cut: AtomicUsize,
}

impl TcpProxy {
    /// Starts a proxy on a free loopback port in front of `upstream`.
    pub async fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared::default());
        let accept = tokio::spawn(accept_loop(listener, upstream, shared.clone()));
        TcpProxy {
            addr,
            shared,
            accept,
        }
    }

    /// Starts a proxy in front of an `http://host:port` URL.
    pub async fn for_url(url: &str) -> TcpProxy {
        let upstream: SocketAddr = url
            .trim_start_matches("http://")
            .parse()
            .unwrap_or_else(|e| panic!("not an http://ip:port URL: {url}: {e}"));
        TcpProxy::start(upstream).await
    }

    /// The proxy's URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Severs every open connection (both sides are closed). Returns how many.
    pub fn cut(&self) -> usize {
        let connections = std::mem::take(&mut *self.shared.connections.lock().unwrap());
        let mut n = 0;
        for c in connections {
            if !c.is_finished() {
                n += 1;
            }
            c.abort();
        }
        self.shared.cut.fetch_add(n, Ordering::Relaxed);
        n
    }

    /// While refusing, new connections are accepted and closed at once.
    pub fn set_refusing(&self, refusing: bool) {
        self.shared.refusing.store(refusing, Ordering::SeqCst);
    }

    /// How many forwarded connections are open now.
    pub fn live(&self) -> usize {
        let connections = self.shared.connections.lock().unwrap();
        connections.iter().filter(|c| !c.is_finished()).count()
    }

    /// How many connections were forwarded so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// How many live connections [`TcpProxy::cut`] has severed so far.
    pub fn severed(&self) -> usize {
        self.shared.cut.load(Ordering::Relaxed)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    loop {
        let Ok((downstream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        if shared.refusing.load(Ordering::SeqCst) {
            drop(downstream);
            continue;
        }
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        let task = tokio::spawn(forward(downstream, upstream));
        let mut connections = shared.connections.lock().unwrap();
        connections.retain(|c| !c.is_finished());
        connections.push(task.abort_handle());
    }
}

async fn forward(mut downstream: TcpStream, upstream: SocketAddr) {
    let Ok(mut upstream) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await;
}
