//! The kubelet's HTTPS server (upstream `pkg/kubelet/server`): today
//! `GET /containerLogs/{namespace}/{pod}/{container}` for the API server's
//! `pods/log`, and `/healthz`.
//!
//! Clients authenticate with a certificate signed by the cluster's client CA,
//! checked in the TLS handshake ([`tls_config`]), as upstream's kubelet with
//! `--client-ca-file`; a client without one gets 401 except on `/healthz`.
//! (Upstream then authorizes through a SubjectAccessReview; here every
//! client the CA vouches for may read logs.)

pub mod crilog;
pub mod query;
pub mod stream;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

pub use crilog::LogTarget;
use query::{LogQuery, QueryError};
pub use stream::{ContainerStreamer, ExecParams, PortForwardParams, StreamFlags};

/// Longest a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest shutdown waits for open connections (followed logs) to end.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Tells the server where a container's log files are (the pod worker
/// knows; it implements this).
pub trait LogLocator: Send + Sync + 'static {
    /// The log file of `container` in `namespace/pod`; with `previous`, the
    /// previous instance's. `Err((status code, message))` when there is none,
    /// with upstream's messages, e.g. 404 `pod "p" does not exist`, 404
    /// `container "c" not found in pod "p"`, 400 `previous terminated
    /// container "c" in pod "p" not found`, 400 `container "c" in pod "p" is
    /// waiting to start: ContainerCreating`.
    fn locate(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Result<LogTarget, (u16, String)>;
}

/// Where and how the server listens.
#[derive(Debug, Clone)]
pub struct KubeletServerConfig {
    /// Address to bind (upstream's default port is 10250).
    pub bind: SocketAddr,
    /// TLS, verifying client certificates: build it with [`tls_config`].
    /// A connection whose client presented a certificate counts as
    /// authenticated, so the configuration must verify it.
    pub tls: rustls::ServerConfig,
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS configuration could not be built.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The client CA could not be used.
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The server's TLS configuration: `cert_chain` and `key` serve, client
/// certificates are verified against `client_cas` (optional in the
/// handshake, so `/healthz` needs none; the other paths answer 401 without
/// one). ALPN offers `h2` and `http/1.1`; the crypto provider is ring.
pub fn tls_config(
    client_cas: &[CertificateDer<'static>],
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in client_cas {
        roots.add(ca.clone())?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(cert_chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A bound kubelet server, not yet serving.
pub struct KubeletServer {
    listener: TcpListener,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for KubeletServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletServer")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl KubeletServer {
    /// Binds `config.bind`.
    pub async fn bind(config: KubeletServerConfig) -> Result<KubeletServer, ServerError> {
        let addr = config.bind;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        Ok(KubeletServer {
            listener,
            acceptor: TlsAcceptor::from(Arc::new(config.tls)),
        })
    }

    /// The address it listens on (the port when 0 was asked).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then waits a little for open
    /// connections.
    #[tracing::instrument(skip_all, fields(addr = ?self.listener.local_addr().ok()))]
    pub async fn serve(
        self,
        locator: Arc<dyn LogLocator>,
        streamer: Option<Arc<dyn ContainerStreamer>>,
        shutdown: impl Future<Output = ()>,
    ) {
        let graceful = GracefulShutdown::new();
        let builder = auto::Builder::new(TokioExecutor::new());
        tokio::pin!(shutdown);
        loop {
            let (tcp, remote) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(err) => {
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let acceptor = self.acceptor.clone();
            let locator = locator.clone();
            let streamer = streamer.clone();
            let builder = builder.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(err)) => {
                        tracing::debug!(%remote, error = %err, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                // The handshake verified the chain against the client CA.
                let authenticated = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .is_some_and(|c| !c.is_empty());
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let locator = locator.clone();
                    let streamer = streamer.clone();
                    async move {
                        let path = req.uri().path();
                        let exec = match path.strip_prefix("/exec/") {
                            Some(rest) => Some((rest.to_owned(), false)),
                            None => path.strip_prefix("/attach/").map(|r| (r.to_owned(), true)),
                        };
                        let port_forward = path.strip_prefix("/portForward/").map(str::to_owned);
                        let streaming = authenticated
                            && (req.method() == Method::GET || req.method() == Method::POST);
                        let resp = match (exec, port_forward) {
                            (Some((rest, attach)), _) if streaming => {
                                stream::exec(req, &rest, attach, streamer.as_deref()).await
                            }
                            (_, Some(rest)) if streaming => {
                                stream::port_forward(req, &rest, streamer.as_deref()).await
                            }
                            _ => handle(req, authenticated, &*locator),
                        };
                        Ok::<_, Infallible>(resp)
                    }
                });
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                if let Err(err) = watcher.watch(conn.into_owned()).await {
                    tracing::debug!(%remote, error = %err, "connection ended with an error");
                }
            });
        }
        drop(self.listener);
        if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::debug!("kubelet server connections still open; closing them");
        }
    }
}

/// Binds `config.bind` and serves logs from `locator` (and exec through
/// `streamer`) until `shutdown`.
pub async fn serve(
    config: KubeletServerConfig,
    locator: Arc<dyn LogLocator>,
    streamer: Option<Arc<dyn ContainerStreamer>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    KubeletServer::bind(config)
        .await?
        .serve(locator, streamer, shutdown)
        .await;
    Ok(())
}

/// The body of every response.
type Body = UnsyncBoxBody<Bytes, Infallible>;

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()).boxed_unsync());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Serves one request.
fn handle<B>(req: Request<B>, authenticated: bool, locator: &dyn LogLocator) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "405: Method Not Allowed");
    }
    let path = req.uri().path();
    if path == "/healthz" {
        return text(StatusCode::OK, "ok");
    }
    if !authenticated {
        return text(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    match path.strip_prefix("/containerLogs/") {
        Some(rest) => container_logs(rest, req.uri().query(), locator),
        None => text(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

/// `GET /containerLogs/{namespace}/{pod}/{container}`, as upstream's
/// `getContainerLogs`.
fn container_logs(rest: &str, query: Option<&str>, locator: &dyn LogLocator) -> Response<Body> {
    // Upstream's route has exactly three segments; more is another path.
    if rest.split('/').count() > 3 {
        return text(StatusCode::NOT_FOUND, "404 page not found");
    }
    let mut parts = rest.splitn(3, '/').map(query::percent_decode);
    let namespace = parts.next().unwrap_or_default();
    let pod = parts.next().unwrap_or_default();
    let container = parts.next().unwrap_or_default();
    let missing = if pod.is_empty() {
        Some("Missing podID.")
    } else if container.is_empty() {
        Some("Missing container name.")
    } else if namespace.is_empty() {
        Some("Missing podNamespace.")
    } else {
        None
    };
    if let Some(what) = missing {
        return text(
            StatusCode::BAD_REQUEST,
            format!("{{\"message\": \"{what}\"}}"),
        );
    }
    let q = match LogQuery::parse(query) {
        Ok(q) => q,
        Err(QueryError::Decode) => {
            return text(
                StatusCode::BAD_REQUEST,
                r#"{"message": "Unable to decode query."}"#,
            );
        }
        Err(QueryError::Invalid) => {
            return text(
                StatusCode::UNPROCESSABLE_ENTITY,
                r#"{"message": "Invalid request."}"#,
            );
        }
    };
    let target = match locator.locate(&namespace, &pod, &container, q.previous) {
        Ok(target) => target,
        Err((code, message)) => {
            let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return text(code, message);
        }
    };
    // Opened here too so that a missing file is an error status, not an
    // empty 200.
    if let Err(err) = std::fs::File::open(&target.path) {
        return text(
            StatusCode::BAD_REQUEST,
            format!("failed to open log file {:?}: {err}", target.path),
        );
    }
    let opts = q.options(time::OffsetDateTime::now_utc());
    let (tx, rx) = mpsc::channel(8);
    let path = target.path.clone();
    tokio::spawn(async move {
        if let Err(err) = crilog::stream_log(target, opts, tx).await {
            tracing::warn!(path = %path.display(), error = %err, "reading a container log failed");
        }
    });
    let mut resp = Response::new(ChannelBody(rx).boxed_unsync());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// A body fed by a channel: ends when the sender is dropped; dropping the
/// body (the client went away) closes the channel, which stops the reader.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

#[cfg(test)]
mod tests;
