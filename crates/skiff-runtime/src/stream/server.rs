//! The streaming HTTP server behind CRI `Exec` and `Attach`: plain
//! HTTP on a loopback port, one-time URLs.
//!
//! As upstream's CRI streaming server, a URL is a random token that stays
//! valid for a minute and serves one request; the kubelet proxies the
//! client's upgrade request to it. Loopback only: nothing but the node's own
//! kubelet should reach it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use skiff_sys::NamespaceKind;

use super::portforward::{self, NetnsDialer, PodDialer};
use super::{StreamOpts, Version, attach, exec, spdy, ws};
use crate::Runtime;
use crate::cri::api;

/// How long a URL stays valid (upstream's cache TTL).
const TOKEN_TTL: Duration = Duration::from_secs(60);
/// Most URLs handed out and not yet used (upstream's `maxInFlight`).
const MAX_PENDING: usize = 1000;

/// What a URL was handed out for.
#[derive(Debug, Clone)]
enum Pending {
    Exec {
        container_id: String,
        cmd: Vec<String>,
        opts: StreamOpts,
    },
    Attach {
        container_id: String,
        opts: StreamOpts,
    },
    PortForward {
        sandbox_id: String,
        ports: Vec<u16>,
    },
}

/// Why a URL could not be handed out; maps onto a gRPC status.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    /// The request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// Too many URLs are outstanding.
    #[error("maximum number of in-flight requests exceeded")]
    ResourceExhausted,
}

/// A running streaming server.
#[derive(Debug)]
pub struct StreamingServer {
    base: String,
    runtime: Arc<Runtime>,
    pending: Mutex<HashMap<String, (Instant, Pending)>>,
}

impl StreamingServer {
    /// Binds `bind` (use a loopback address; port 0 picks one) and serves
    /// until the server is dropped.
    pub async fn start(bind: SocketAddr, runtime: Arc<Runtime>) -> std::io::Result<Arc<Self>> {
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let server = Arc::new(StreamingServer {
            base: format!("http://{addr}"),
            runtime,
            pending: Mutex::new(HashMap::new()),
        });
        tokio::spawn(accept_loop(listener, Arc::downgrade(&server)));
        Ok(server)
    }

    /// The server's address as a URL prefix (`http://127.0.0.1:PORT`).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// A one-time URL for a CRI `ExecRequest`, validated as upstream does.
    pub fn exec_url(&self, req: &api::ExecRequest) -> Result<String, UrlError> {
        let opts = checked_opts(
            &req.container_id,
            req.stdin,
            req.stdout,
            req.stderr,
            req.tty,
        )?;
        if req.cmd.is_empty() {
            return Err(UrlError::InvalidArgument("missing required cmd".into()));
        }
        let token = self.insert(Pending::Exec {
            container_id: req.container_id.clone(),
            cmd: req.cmd.clone(),
            opts,
        })?;
        Ok(format!("{}/exec/{token}", self.base))
    }

    /// A one-time URL for a CRI `AttachRequest`, validated as upstream does.
    pub fn attach_url(&self, req: &api::AttachRequest) -> Result<String, UrlError> {
        let opts = checked_opts(
            &req.container_id,
            req.stdin,
            req.stdout,
            req.stderr,
            req.tty,
        )?;
        let token = self.insert(Pending::Attach {
            container_id: req.container_id.clone(),
            opts,
        })?;
        Ok(format!("{}/attach/{token}", self.base))
    }

    /// A one-time URL for a CRI `PortForwardRequest`.
    pub fn port_forward_url(&self, req: &api::PortForwardRequest) -> Result<String, UrlError> {
        if req.pod_sandbox_id.is_empty() {
            return Err(UrlError::InvalidArgument(
                "missing required pod_sandbox_id".into(),
            ));
        }
        let ports = req
            .port
            .iter()
            .map(|&p| {
                u16::try_from(p)
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or_else(|| UrlError::InvalidArgument(format!("invalid port {p}")))
            })
            .collect::<Result<Vec<u16>, UrlError>>()?;
        let token = self.insert(Pending::PortForward {
            sandbox_id: req.pod_sandbox_id.clone(),
            ports,
        })?;
        Ok(format!("{}/portforward/{token}", self.base))
    }

    fn insert(&self, pending: Pending) -> Result<String, UrlError> {
        let now = Instant::now();
        let mut map = self
            .pending
            .lock()
            .map_err(|_| UrlError::ResourceExhausted)?;
        map.retain(|_, (at, _)| now.duration_since(*at) < TOKEN_TTL);
        if map.len() >= MAX_PENDING {
            return Err(UrlError::ResourceExhausted);
        }
        let token = new_token();
        map.insert(token.clone(), (now, pending));
        Ok(token)
    }

    /// Takes the request for `token` if it is still valid.
    fn take(&self, token: &str) -> Option<Pending> {
        let mut map = self.pending.lock().ok()?;
        let (at, pending) = map.remove(token)?;
        (at.elapsed() < TOKEN_TTL).then_some(pending)
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::POST {
            return text(StatusCode::METHOD_NOT_ALLOWED, "405: Method Not Allowed");
        }
        let path = req.uri().path();
        let Some(token) = path
            .strip_prefix("/exec/")
            .or_else(|| path.strip_prefix("/attach/"))
            .or_else(|| path.strip_prefix("/portforward/"))
        else {
            return text(StatusCode::NOT_FOUND, "404 page not found");
        };
        let runtime = self.runtime.clone();
        match self.take(token) {
            Some(Pending::Exec {
                container_id,
                cmd,
                opts,
            }) if path.starts_with("/exec/") => upgrade(req, opts, move |session| {
                exec::run(runtime, container_id, cmd, opts, session)
            }),
            Some(Pending::Attach { container_id, opts }) if path.starts_with("/attach/") => {
                upgrade(req, opts, move |session| {
                    attach::run(runtime, container_id, opts, session)
                })
            }
            Some(Pending::PortForward { sandbox_id, ports })
                if path.starts_with("/portforward/") =>
            {
                let netns = runtime
                    .namespace_paths(&sandbox_id)
                    .get(NamespaceKind::Net)
                    .to_path_buf();
                let dialer: Arc<dyn PodDialer> = Arc::new(NetnsDialer::new(sandbox_id, netns));
                upgrade_port_forward(req, ports, dialer)
            }
            _ => text(StatusCode::NOT_FOUND, "404 page not found"),
        }
    }
}

/// A request's streams, after upstream's checks.
fn checked_opts(
    container_id: &str,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
) -> Result<StreamOpts, UrlError> {
    if container_id.is_empty() {
        return Err(UrlError::InvalidArgument(
            "missing required container_id".into(),
        ));
    }
    let opts = StreamOpts {
        stdin,
        stdout,
        stderr,
        tty,
    };
    check_streams(opts)?;
    Ok(opts)
}

/// Upstream's checks on the requested streams.
fn check_streams(opts: StreamOpts) -> Result<(), UrlError> {
    if opts.tty && opts.stderr {
        return Err(UrlError::InvalidArgument(
            "tty and stderr cannot both be true".into(),
        ));
    }
    if !opts.stdin && !opts.stdout && !opts.stderr {
        return Err(UrlError::InvalidArgument(
            "one of stdin, stdout, or stderr must be set".into(),
        ));
    }
    Ok(())
}

fn new_token() -> String {
    let bytes: [u8; 12] = rand::random();
    hex::encode(bytes)
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn header_values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect()
}

/// The upgrade the request asks for, lower-cased (`websocket`, `spdy/3.1`).
fn upgrade_kind(headers: &HeaderMap) -> Option<String> {
    let connection_upgrade = header_values(headers, "connection")
        .iter()
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let upgrade = headers.get(header::UPGRADE)?.to_str().ok()?;
    connection_upgrade.then(|| upgrade.trim().to_ascii_lowercase())
}

/// Answers the upgrade (WebSocket or SPDY/3.1) and, once the connection is
/// switched, runs `then` on the negotiated session.
fn upgrade<F, Fut>(mut req: Request<Incoming>, opts: StreamOpts, then: F) -> Response<Full<Bytes>>
where
    F: FnOnce(super::Session) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let headers = req.headers().clone();
    let on_upgrade = hyper::upgrade::on(&mut req);
    match upgrade_kind(&headers).as_deref() {
        Some("websocket") => {
            let offered = header_values(&headers, "sec-websocket-protocol");
            let Some(protocol) = ws::negotiate(&offered) else {
                return text(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "unable to upgrade: unable to match any of the offered subprotocols {offered:?}"
                    ),
                );
            };
            let Some(key) = headers.get("sec-websocket-key") else {
                return text(
                    StatusCode::BAD_REQUEST,
                    "unable to upgrade: missing Sec-WebSocket-Key",
                );
            };
            tokio::spawn(async move {
                match on_upgrade.await {
                    Ok(upgraded) => {
                        let session = ws::serve(TokioIo::new(upgraded), protocol, opts).await;
                        then(session).await;
                    }
                    Err(err) => tracing::debug!(error = %err, "exec WebSocket upgrade failed"),
                }
            });
            websocket_switching(key, Some(protocol.name()))
        }
        Some("spdy/3.1") => {
            let offered = header_values(&headers, "x-stream-protocol-version");
            let Some(version) = spdy::negotiate(&offered) else {
                return spdy_refusal(&offered, &spdy_names());
            };
            tokio::spawn(async move {
                let upgraded = match on_upgrade.await {
                    Ok(u) => u,
                    Err(err) => {
                        tracing::debug!(error = %err, "exec SPDY upgrade failed");
                        return;
                    }
                };
                match spdy::accept(TokioIo::new(upgraded), version, opts).await {
                    Ok(session) => then(session).await,
                    Err(err) => tracing::debug!(error = %err, "exec SPDY streams failed"),
                }
            });
            spdy_switching(version.name())
        }
        _ => text(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: missing upgrade headers in request",
        ),
    }
}

/// Answers a port-forward upgrade (WebSocket `v4.channel.k8s.io` or SPDY/3.1
/// `portforward.k8s.io`) and serves the connection through `dialer`.
fn upgrade_port_forward(
    mut req: Request<Incoming>,
    ports: Vec<u16>,
    dialer: Arc<dyn PodDialer>,
) -> Response<Full<Bytes>> {
    let headers = req.headers().clone();
    let on_upgrade = hyper::upgrade::on(&mut req);
    match upgrade_kind(&headers).as_deref() {
        Some("websocket") => {
            if ports.is_empty() {
                return text(
                    StatusCode::BAD_REQUEST,
                    "query parameter \"port\" is required",
                );
            }
            let offered = header_values(&headers, "sec-websocket-protocol");
            let Some((protocol, name)) = portforward::ws::negotiate(&offered) else {
                return text(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "unable to upgrade: unable to match any of the offered subprotocols {offered:?}"
                    ),
                );
            };
            let Some(key) = headers.get("sec-websocket-key") else {
                return text(
                    StatusCode::BAD_REQUEST,
                    "unable to upgrade: missing Sec-WebSocket-Key",
                );
            };
            tokio::spawn(async move {
                match on_upgrade.await {
                    Ok(upgraded) => {
                        portforward::ws::serve(TokioIo::new(upgraded), protocol, ports, dialer)
                            .await;
                    }
                    Err(err) => {
                        tracing::debug!(error = %err, "port-forward WebSocket upgrade failed");
                    }
                }
            });
            websocket_switching(key, name)
        }
        Some("spdy/3.1") => {
            let offered = header_values(&headers, "x-stream-protocol-version");
            let served = offered
                .iter()
                .flat_map(|v| v.split(','))
                .any(|name| name.trim() == portforward::PROTOCOL_V1);
            if !served {
                return spdy_refusal(&offered, &[portforward::PROTOCOL_V1]);
            }
            tokio::spawn(async move {
                match on_upgrade.await {
                    Ok(upgraded) => portforward::spdy::serve(TokioIo::new(upgraded), dialer).await,
                    Err(err) => tracing::debug!(error = %err, "port-forward SPDY upgrade failed"),
                }
            });
            spdy_switching(portforward::PROTOCOL_V1)
        }
        _ => text(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: missing upgrade headers in request",
        ),
    }
}

/// The 101 answer to a WebSocket upgrade with `key`, naming `protocol`.
fn websocket_switching(key: &HeaderValue, protocol: Option<&'static str>) -> Response<Full<Bytes>> {
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert("sec-websocket-accept", v);
    }
    if let Some(protocol) = protocol {
        h.insert("sec-websocket-protocol", HeaderValue::from_static(protocol));
    }
    resp
}

/// The 101 answer to a SPDY/3.1 upgrade speaking `protocol`.
fn spdy_switching(protocol: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        "x-stream-protocol-version",
        HeaderValue::from_static(protocol),
    );
    resp
}

/// Upstream's `httpstream.Handshake` answer when no offered protocol is
/// served: 400 when none was offered, else 403 listing what is.
fn spdy_refusal(offered: &[&str], served: &[&'static str]) -> Response<Full<Bytes>> {
    if offered.iter().all(|v| v.trim().is_empty()) {
        return text(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: X-Stream-Protocol-Version is required",
        );
    }
    let mut resp = text(
        StatusCode::FORBIDDEN,
        &format!(
            "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {served:?}"
        ),
    );
    for name in served {
        resp.headers_mut().append(
            "x-accepted-stream-protocol-versions",
            HeaderValue::from_static(name),
        );
    }
    resp
}

fn spdy_names() -> Vec<&'static str> {
    [Version::V4, Version::V3, Version::V2, Version::V1]
        .into_iter()
        .map(Version::name)
        .collect()
}

async fn accept_loop(listener: TcpListener, server: Weak<StreamingServer>) {
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                tracing::warn!(error = %err, "streaming server: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(server) = server.upgrade() else {
            return;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(server.handle(req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades();
            if let Err(err) = conn.await {
                tracing::debug!(error = %err, "streaming connection ended with an error");
            }
        });
    }
}
