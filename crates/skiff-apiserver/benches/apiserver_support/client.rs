//! Raw HTTPS clients for the benchmark: TLS with the admin kubeconfig's
//! client certificate, HTTP/2 (ALPN `h2`), many requests multiplexed on one
//! connection. Lighter than kube-rs, so more of the machine's two cores go
//! to the server under test.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;

/// Where and how to connect: the server's address and a TLS client
/// configuration carrying the admin's certificate.
#[derive(Clone)]
pub struct Target {
    addr: SocketAddr,
    tls: tokio_rustls::TlsConnector,
}

impl Target {
    /// Reads the admin kubeconfig written by the server (certificates
    /// embedded as base64 `*-data`) for a server on 127.0.0.1:`port`.
    pub fn from_kubeconfig(path: &Path, port: u16) -> anyhow::Result<Target> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let kc: Value = serde_saphyr::from_str(&text).context("parsing the kubeconfig")?;
        let field = |pointer: &str| -> anyhow::Result<Vec<u8>> {
            let b64 = kc
                .pointer(pointer)
                .and_then(Value::as_str)
                .with_context(|| format!("kubeconfig has no {pointer}"))?;
            STANDARD
                .decode(b64)
                .with_context(|| format!("kubeconfig {pointer} is not base64"))
        };
        let ca = field("/clusters/0/cluster/certificate-authority-data")?;
        let cert = field("/users/0/user/client-certificate-data")?;
        let key = field("/users/0/user/client-key-data")?;

        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&ca) {
            roots.add(c.context("kubeconfig CA certificate")?)?;
        }
        let chain = CertificateDer::pem_slice_iter(&cert)
            .collect::<Result<Vec<_>, _>>()
            .context("kubeconfig client certificate")?;
        let key = PrivateKeyDer::from_pem_slice(&key).context("kubeconfig client key")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Target {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    /// Opens one HTTP/2 connection.
    pub async fn connect(&self) -> anyhow::Result<Conn> {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        tcp.set_nodelay(true)?;
        let name = ServerName::IpAddress(self.addr.ip().into());
        let tls = self.tls.connect(name, tcp).await.context("TLS handshake")?;
        let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            // Lists of 10,000 pods are tens of MB: do not crawl through
            // them 64 KiB at a time.
            .initial_stream_window_size(8 << 20)
            .initial_connection_window_size(32 << 20)
            .max_concurrent_reset_streams(20_000)
            .handshake(TokioIo::new(tls))
            .await
            .context("HTTP/2 handshake")?;
        tokio::spawn(async move {
            // Ends when the server or the client closes the connection.
            let _ = conn.await;
        });
        Ok(Conn {
            send,
            base: format!("https://{}", self.addr),
        })
    }

    /// Opens `n` connections.
    pub async fn connect_many(&self, n: usize) -> anyhow::Result<Vec<Conn>> {
        let mut conns = Vec::with_capacity(n);
        for _ in 0..n {
            conns.push(self.connect().await?);
        }
        Ok(conns)
    }
}

/// One HTTP/2 connection; clones share it.
#[derive(Clone)]
pub struct Conn {
    send: SendRequest<Full<Bytes>>,
    base: String,
}

impl Conn {
    /// Sends a request and returns the status with the response body
    /// still streaming.
    pub async fn open(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Bytes)>,
    ) -> anyhow::Result<(StatusCode, Incoming)> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(http::header::ACCEPT, "application/json");
        let body = match body {
            Some((content_type, bytes)) => {
                req = req.header(http::header::CONTENT_TYPE, content_type);
                Full::new(bytes)
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body)?;
        let mut send = self.send.clone();
        send.ready().await.context("HTTP/2 connection closed")?;
        let resp = send.send_request(req).await.context("request failed")?;
        Ok((resp.status(), resp.into_body()))
    }

    /// Sends a request and reads the whole response.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Bytes)>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let (status, body) = self.open(method, path, body).await?;
        let bytes = body.collect().await.context("reading the response")?;
        Ok((status, bytes.to_bytes()))
    }

    /// POSTs a JSON object.
    pub async fn post_json(&self, path: &str, json: Bytes) -> anyhow::Result<(StatusCode, Bytes)> {
        self.call(Method::POST, path, Some(("application/json", json)))
            .await
    }

    /// GET, failing on anything but 200.
    pub async fn get_ok(&self, path: &str) -> anyhow::Result<Bytes> {
        let (status, body) = self.call(Method::GET, path, None).await?;
        anyhow::ensure!(
            status == StatusCode::OK,
            "GET {path}: {status}: {}",
            String::from_utf8_lossy(&body)
        );
        Ok(body)
    }
}
