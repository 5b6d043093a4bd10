//! The plain-HTTP metrics listener of the standalone components
//! (`--metrics-bind-address` of `skiff scheduler` and `skiff
//! controller-manager`): `GET /metrics` and `GET /healthz`, one request per
//! connection. Small on purpose: scrapers and probes send a bare GET, so no
//! HTTP library is pulled in for it.

use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the listener serves: metrics in the Prometheus text format.
pub trait TextMetrics: Clone + Send + Sync + 'static {
    /// The current values, in the Prometheus text exposition format.
    fn encode_text(&self) -> String;
}

/// Every cheaply cloned prometheus-client [`Collector`] serves as itself.
impl<C: Collector + Clone> TextMetrics for C {
    fn encode_text(&self) -> String {
        encode_text(self.clone())
    }
}

/// `collector`'s metrics in the Prometheus text format.
pub fn encode_text(collector: impl Collector) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(collector));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
    out
}

/// Encodes `metric` under `name` with its `help` text: one step of a
/// [`Collector`]'s `encode`.
pub fn describe(
    encoder: &mut prometheus_client::encoding::DescriptorEncoder,
    name: &str,
    help: &str,
    metric: &impl prometheus_client::encoding::EncodeMetric,
) -> Result<(), std::fmt::Error> {
    let m = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(m)
}

/// Longest request head read before answering 431.
const MAX_HEAD: usize = 8 * 1024;
/// A client that sends no complete head by then is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `metrics` on `listener` until `shutdown` turns true.
pub async fn serve<M: TextMetrics>(
    listener: TcpListener,
    metrics: M,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(READ_TIMEOUT, answer(stream, &metrics)).await;
                });
            }
            Err(err) => {
                tracing::warn!(error = %err, "metrics listener: accept failed");
                // Out of file descriptors and the like: do not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer<M: TextMetrics>(mut stream: TcpStream, metrics: &M) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            return reply(&mut stream, "431 Request Header Fields Too Large", "", "").await;
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => {
            let body = metrics.encode_text();
            let ct = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
            reply(&mut stream, "200 OK", ct, &body).await
        }
        ("GET", "/healthz") => {
            reply(&mut stream, "200 OK", "text/plain; charset=utf-8", "ok").await
        }
        ("GET", _) => {
            reply(
                &mut stream,
                "404 Not Found",
                "text/plain; charset=utf-8",
                "404 page not found\n",
            )
            .await
        }
        _ => reply(&mut stream, "405 Method Not Allowed", "", "").await,
    }
}

async fn reply(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if !content_type.is_empty() {
        out.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    stream.write_all(out.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
    use prometheus_client::metrics::counter::Counter;

    use super::*;

    /// A one-counter collector.
    #[derive(Clone, Debug, Default)]
    struct Hits(Counter);

    impl Collector for Hits {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            let m = encoder.encode_descriptor("test_hits", "Hits.", None, self.0.metric_type())?;
            self.0.encode(m)
        }
    }

    async fn get(addr: std::net::SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_and_healthz_until_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Hits::default();
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(serve(listener, metrics.clone(), rx));
        metrics.0.inc();
        metrics.0.inc();

        let r = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Type: text/plain; version=0.0.4"), "{r}");
        assert!(r.contains("\r\n\r\n# HELP test_hits_total Hits.\n"), "{r}");
        assert!(r.contains("\ntest_hits_total 2\n"), "{r}");
        let r = get(addr, "GET /healthz HTTP/1.1\r\n\r\n").await;
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\nok"),
            "{r}"
        );
        let r = get(addr, "GET /nope HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"), "{r}");
        let r = get(addr, "POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 405 "), "{r}");

        tx.send_replace(true);
        task.await.unwrap();
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "the listener is closed"
        );
    }
}
