//! `/exec/{namespace}/{pod}/{container}` and `/attach/...` (and the forms
//! with the pod UID before the container), as upstream kubelet's `getExec`
//! and `getAttach`: the streams
//! asked for come from the query (`input`, `output`, `error`, `tty` = "1",
//! `command` repeated, as the API server sends them), the runtime hands out
//! a streaming URL through CRI `Exec`, and the client's upgrade request is
//! proxied to it byte for byte.
//!
//! `/portForward/{namespace}/{pod}` (and `.../{uid}`), as upstream's
//! `getPortForward`, works the same way through CRI `PortForward`; the
//! ports come from the repeated `port` query parameter (WebSocket clients
//! must name them; SPDY clients name a port per stream).

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use super::query::{percent_decode, query_pairs};
use super::{Body, text};

/// Which streams a client asked for (upstream's `remotecommand.Options`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamFlags {
    /// `input=1`.
    pub stdin: bool,
    /// `output=1`.
    pub stdout: bool,
    /// `error=1` (dropped with a terminal, as upstream).
    pub stderr: bool,
    /// `tty=1`.
    pub tty: bool,
}

/// An exec or attach request's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecParams {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The container's name.
    pub container: String,
    /// The command and its arguments (exec only).
    pub command: Vec<String>,
    /// The streams.
    pub flags: StreamFlags,
}

/// A boxed future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Finds a running container and asks the runtime for a streaming URL (the
/// kubelet implements it over its pods and CRI).
pub trait ContainerStreamer: Send + Sync + 'static {
    /// The runtime's exec URL for `params`, or `(status code, message)`.
    fn exec_url(&self, params: ExecParams) -> BoxFuture<Result<String, (u16, String)>>;

    /// The runtime's attach URL for `params` (no command).
    fn attach_url(&self, params: ExecParams) -> BoxFuture<Result<String, (u16, String)>>;

    /// The runtime's port-forward URL for the pod.
    fn port_forward_url(
        &self,
        params: PortForwardParams,
    ) -> BoxFuture<Result<String, (u16, String)>>;
}

/// A port-forward request's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortForwardParams {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The pod's UID, when the path names one.
    pub uid: Option<String>,
    /// The ports (from the query; SPDY clients may name none).
    pub ports: Vec<u16>,
}

/// Parses `rest` (after `/portForward/`) and the query; `websocket` clients
/// must name their ports (upstream's `NewV4Options`).
pub fn parse_port_forward(
    rest: &str,
    query: Option<&str>,
    websocket: bool,
) -> Result<PortForwardParams, (u16, String)> {
    let segments: Vec<String> = rest.split('/').map(percent_decode).collect();
    let (namespace, pod, uid) = match segments.as_slice() {
        [ns, pod] => (ns.clone(), pod.clone(), None),
        [ns, pod, uid] => (ns.clone(), pod.clone(), Some(uid.clone())),
        _ => return Err((404, "404 page not found".into())),
    };
    let mut ports = Vec::new();
    for (k, v) in query_pairs(query) {
        if k != "port" {
            continue;
        }
        // kube-rs joins ports with commas; upstream clients repeat them.
        for p in v.split(',') {
            let port: u16 = p
                .parse()
                .map_err(|e| (400, format!("unable to parse {p:?} as a port: {e}")))?;
            if port < 1 {
                return Err((400, format!("port {p:?} must be > 0")));
            }
            ports.push(port);
        }
    }
    if websocket && ports.is_empty() {
        return Err((400, "query parameter \"port\" is required".into()));
    }
    Ok(PortForwardParams {
        namespace,
        pod,
        uid,
        ports,
    })
}

/// Serves `/portForward/...`.
pub async fn port_forward<B>(
    req: Request<B>,
    rest: &str,
    streamer: Option<&dyn ContainerStreamer>,
) -> Response<Body> {
    let Some(streamer) = streamer else {
        return text(StatusCode::NOT_FOUND, "404 page not found");
    };
    let websocket = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
    let params = match parse_port_forward(rest, req.uri().query(), websocket) {
        Ok(p) => p,
        Err((code, msg)) => return error(code, msg),
    };
    match streamer.port_forward_url(params).await {
        Ok(url) => proxy_upgrade(req, &url).await,
        Err((code, msg)) => error(code, msg),
    }
}

/// Parses `rest` (after `/exec/`) and the query.
pub fn parse_exec(rest: &str, query: Option<&str>) -> Result<ExecParams, (u16, String)> {
    let segments: Vec<String> = rest.split('/').map(percent_decode).collect();
    // {ns}/{pod}/{container} or {ns}/{pod}/{uid}/{container}.
    let (namespace, pod, container) = match segments.as_slice() {
        [ns, pod, container] | [ns, pod, _, container] => {
            (ns.clone(), pod.clone(), container.clone())
        }
        _ => return Err((404, "404 page not found".into())),
    };
    let mut flags = StreamFlags::default();
    let mut command = Vec::new();
    for (k, v) in query_pairs(query) {
        match k.as_str() {
            "command" => command.push(v),
            "input" => flags.stdin = v == "1",
            "output" => flags.stdout = v == "1",
            "error" => flags.stderr = v == "1",
            "tty" => flags.tty = v == "1",
            _ => {}
        }
    }
    if flags.tty && flags.stderr {
        // Upstream drops stderr with a terminal (it is merged into stdout).
        flags.stderr = false;
    }
    if !flags.stdin && !flags.stdout && !flags.stderr {
        return Err((
            400,
            "you must specify at least 1 of stdin, stdout, stderr".into(),
        ));
    }
    Ok(ExecParams {
        namespace,
        pod,
        container,
        command,
        flags,
    })
}

/// Serves `/exec/...` (or, with `attach`, `/attach/...`).
pub async fn exec<B>(
    req: Request<B>,
    rest: &str,
    attach: bool,
    streamer: Option<&dyn ContainerStreamer>,
) -> Response<Body> {
    let Some(streamer) = streamer else {
        return text(StatusCode::NOT_FOUND, "404 page not found");
    };
    let params = match parse_exec(rest, req.uri().query()) {
        Ok(p) => p,
        Err((code, msg)) => return error(code, msg),
    };
    let url = if attach {
        streamer.attach_url(params).await
    } else {
        streamer.exec_url(params).await
    };
    match url {
        Ok(url) => proxy_upgrade(req, &url).await,
        Err((code, msg)) => error(code, msg),
    }
}

fn error(code: u16, msg: String) -> Response<Body> {
    text(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        msg,
    )
}

/// Sends the client's request (method, headers, upgrade) to the runtime's
/// `url` (`http://host:port/path`) and, when it switches protocols, splices
/// the two upgraded connections together.
async fn proxy_upgrade<B>(mut req: Request<B>, url: &str) -> Response<Body> {
    let Some((host, path)) = url
        .strip_prefix("http://")
        .map(|rest| rest.split_at(rest.find('/').unwrap_or(rest.len())))
    else {
        return error(500, format!("unsupported streaming URL {url:?}"));
    };
    let path = if path.is_empty() { "/" } else { path };
    let client_upgrade = hyper::upgrade::on(&mut req);
    let tcp = match tokio::net::TcpStream::connect(host).await {
        Ok(tcp) => tcp,
        Err(err) => return error(500, format!("dial {host}: {err}")),
    };
    let _ = tcp.set_nodelay(true);
    let (mut send, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await {
        Ok(v) => v,
        Err(err) => return error(500, format!("streaming server {host}: {err}")),
    };
    tokio::spawn(async move {
        if let Err(err) = conn.with_upgrades().await {
            tracing::debug!(error = %err, "streaming server connection ended with an error");
        }
    });
    let mut out = Request::builder().method(req.method()).uri(path);
    for (name, value) in req.headers() {
        if name != header::HOST && name != header::CONTENT_LENGTH {
            out = out.header(name, value);
        }
    }
    let out = match out.header(header::HOST, host).body(Empty::<Bytes>::new()) {
        Ok(r) => r,
        Err(err) => return error(500, err.to_string()),
    };
    let mut resp = match send.send_request(out).await {
        Ok(r) => r,
        Err(err) => return error(500, format!("streaming server {host}: {err}")),
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, body) = resp.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let mut out = text(parts.status, bytes);
        if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
            out.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
        }
        return out;
    }
    let backend_upgrade = hyper::upgrade::on(&mut resp);
    let mut out = Response::new(
        Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for (name, value) in resp.headers() {
        out.headers_mut().append(name, value.clone());
    }
    out.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    tokio::spawn(async move {
        let (client, backend) = tokio::join!(client_upgrade, backend_upgrade);
        match (client, backend) {
            (Ok(client), Ok(backend)) => {
                let mut client = TokioIo::new(client);
                let mut backend = TokioIo::new(backend);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
            }
            (Err(err), _) | (_, Err(err)) => {
                tracing::debug!(error = %err, "exec upgrade failed");
            }
        }
    });
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn exec_params_from_path_and_query() {
        let p = parse_exec(
            "ns/p/c",
            Some("command=sh&command=-c&command=echo+hi%21&input=1&output=1&tty=1&error=1"),
        )
        .unwrap();
        assert_eq!(
            (p.namespace.as_str(), p.pod.as_str(), p.container.as_str()),
            ("ns", "p", "c")
        );
        assert_eq!(p.command, ["sh", "-c", "echo hi!"]);
        // A terminal merges stderr into stdout.
        assert_eq!(
            p.flags,
            StreamFlags {
                stdin: true,
                stdout: true,
                stderr: false,
                tty: true
            }
        );
        let p = parse_exec("ns/p/uid-1/c", Some("command=ls&error=1")).unwrap();
        assert_eq!(p.container, "c");
        assert!(p.flags.stderr && !p.flags.stdout);
        assert_eq!(
            parse_exec("ns/p/c", Some("command=ls&output=true")).unwrap_err(),
            (
                400,
                "you must specify at least 1 of stdin, stdout, stderr".into()
            )
        );
        assert_eq!(parse_exec("ns/p", None).unwrap_err().0, 404);
    }

    #[test]
    fn port_forward_params_from_path_and_query() {
        let p = parse_port_forward("ns/web", Some("port=80&port=8080"), true).unwrap();
        assert_eq!(
            p,
            PortForwardParams {
                namespace: "ns".into(),
                pod: "web".into(),
                uid: None,
                ports: vec![80, 8080],
            }
        );
        let p = parse_port_forward("ns/web/uid-1", Some("port=80%2C81"), false).unwrap();
        assert_eq!((p.uid.as_deref(), p.ports), (Some("uid-1"), vec![80, 81]));
        // SPDY clients name ports per stream; WebSocket ones must name them.
        assert!(
            parse_port_forward("ns/web", None, false)
                .unwrap()
                .ports
                .is_empty()
        );
        assert_eq!(
            parse_port_forward("ns/web", None, true).unwrap_err(),
            (400, "query parameter \"port\" is required".into())
        );
        assert_eq!(
            parse_port_forward("ns/web", Some("port=0"), false).unwrap_err(),
            (400, "port \"0\" must be > 0".into())
        );
        assert_eq!(
            parse_port_forward("ns/web", Some("port=http"), false)
                .unwrap_err()
                .0,
            400
        );
        assert_eq!(parse_port_forward("ns", None, false).unwrap_err().0, 404);
    }
}
