//! CRI `PortForward`: `kubectl port-forward` ends here.
//!
//! As for exec, `PortForward` returns a one-time URL on the streaming
//! server; the kubelet proxies the client's upgraded connection to it. Two
//! wire protocols are served, as upstream's streaming server does:
//!
//! - SPDY/3.1 with `X-Stream-Protocol-Version: portforward.k8s.io`
//!   ([`spdy`]): every forwarded connection is a pair of client-opened
//!   streams (`streamType` `error` and `data`) sharing a `requestID` and
//!   naming the pod's `port`. kubectl speaks it, directly or tunnelled
//!   through a WebSocket by the API server.
//! - WebSocket `v4.channel.k8s.io` ([`ws`]): one connection per port for
//!   the life of the socket, on channels `2i` (data) and `2i+1` (error);
//!   kube-rs and the Python client speak it.
//!
//! Either way a connection to the pod is a TCP connection to
//! `127.0.0.1:port` made inside the pod's network namespace ([`PodDialer`]);
//! a failure is reported as text on the pair's error stream.

pub mod spdy;
pub mod ws;

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// The SPDY subprotocol (`X-Stream-Protocol-Version`).
pub const PROTOCOL_V1: &str = "portforward.k8s.io";

/// How long a connect inside the pod may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Opens TCP connections to ports of one pod.
pub trait PodDialer: Send + Sync + 'static {
    /// Connects to `port` on the pod's loopback; the error's text goes to
    /// the client.
    fn dial(&self, port: u16) -> BoxFuture<Result<TcpStream, String>>;

    /// How the pod is named in error messages (upstream: the sandbox ID).
    fn pod(&self) -> &str;
}

/// [`PodDialer`] into a pinned network namespace (the sandbox's).
#[derive(Debug, Clone)]
pub struct NetnsDialer {
    sandbox_id: String,
    netns: PathBuf,
}

impl NetnsDialer {
    /// A dialer for sandbox `sandbox_id` whose network namespace is pinned
    /// at `netns`.
    pub fn new(sandbox_id: String, netns: PathBuf) -> NetnsDialer {
        NetnsDialer { sandbox_id, netns }
    }
}

impl PodDialer for NetnsDialer {
    fn dial(&self, port: u16) -> BoxFuture<Result<TcpStream, String>> {
        let (id, netns) = (self.sandbox_id.clone(), self.netns.clone());
        Box::pin(async move {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            // The socket is made on a thread inside the namespace and stays
            // there; the blocking connect runs off the async workers.
            let connected = tokio::task::spawn_blocking(move || {
                skiff_sys::net::run_in_netns(&netns, || {
                    std::net::TcpStream::connect_timeout(&addr, DIAL_TIMEOUT)
                })
            })
            .await
            .map_err(|e| format!("port forward in {id:?}: {e}"))?;
            let stream = match connected {
                Ok(Ok(stream)) => stream,
                Ok(Err(err)) => {
                    return Err(format!(
                        "failed to connect to localhost:{port} inside namespace {id:?}: dial tcp4 {addr}: connect: {}",
                        describe(&err)
                    ));
                }
                Err(err) => {
                    return Err(format!(
                        "failed to enter the network namespace of {id:?}: {err}"
                    ));
                }
            };
            stream
                .set_nonblocking(true)
                .and_then(|()| TcpStream::from_std(stream))
                .map_err(|e| format!("port forward in {id:?}: {e}"))
        })
    }

    fn pod(&self) -> &str {
        &self.sandbox_id
    }
}

/// An I/O error as Go words it (`connection refused`), without Rust's
/// `(os error N)` suffix.
fn describe(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::TimedOut => "i/o timeout".into(),
        _ => err.to_string(),
    }
}

/// The text for a failed forward (upstream's wording).
pub fn forward_error(port: u16, pod: &str, err: &str) -> String {
    format!("error forwarding port {port} to pod {pod}, uid : {err}")
}

/// One forwarded connection, whatever the wire protocol: dials `port` in
/// the pod, then copies what arrives on `from_client` to it and its replies
/// out as `data(chunk)` (at most `max_chunk` bytes each), until the pod's
/// side ends. When the client stops sending, the pod's side is shut for
/// writing but still read. A failed dial sends upstream's message as
/// `error(text)` instead.
pub(crate) async fn pump<T: Send>(
    dialer: &dyn PodDialer,
    port: u16,
    max_chunk: usize,
    mut from_client: mpsc::Receiver<Bytes>,
    out: &mpsc::Sender<T>,
    data: impl Fn(Bytes) -> T,
    error: impl Fn(Bytes) -> T,
) {
    let tcp = match dialer.dial(port).await {
        Ok(tcp) => tcp,
        Err(err) => {
            let msg = forward_error(port, dialer.pod(), &err);
            tracing::debug!(error = %msg, "port forward failed");
            let _ = out.send(error(Bytes::from(msg))).await;
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    let (mut rd, mut wr) = tcp.into_split();
    let to_pod = async {
        while let Some(chunk) = from_client.recv().await {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
        }
        // The client is done sending; the pod may still answer.
        let _ = wr.shutdown().await;
        std::future::pending::<()>().await;
    };
    let from_pod = async {
        let mut buf = vec![0u8; max_chunk];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if out
                        .send(data(Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    };
    tokio::select! {
        () = to_pod => {}
        () = from_pod => {}
    }
}
