//! `pods/{name}/exec` and `pods/{name}/attach` (GET for WebSocket clients,
//! POST for SPDY ones), as upstream's `ExecREST`/`AttachREST` +
//! `UpgradeAwareHandler`: the query is decoded as `PodExecOptions` (or
//! `PodAttachOptions`: the same without a command), the container chosen
//! as for logs, and the client's upgrade request is sent to the node's
//! kubelet as
//! `/{exec,attach}/{namespace}/{pod}/{container}?command=...&input=1&output=1&error=1&tty=1`
//! (upstream's `streamParams`). When the kubelet switches protocols, the two
//! upgraded connections are spliced together; any other answer goes back to
//! the client as the kubelet gave it, so a client that cannot upgrade sees
//! the kubelet's (or the runtime's) reason.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use skiff_api::resources;
use skiff_api::status::ApiError;

use super::pod_log::{choose_container, parse_bool, unknown_error};
use super::{Registry, decode};
use crate::request_info::query_pairs;
use crate::response::{self, Body};

/// Headers that belong to one hop and are not forwarded (the upgrade
/// headers are, as upstream's proxy keeps them for upgrades).
const HOP_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "authorization",
    "impersonate-user",
    "impersonate-group",
    "impersonate-uid",
];

/// `PodExecOptions` from the query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PodExecOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
    pub container: Option<String>,
    pub command: Vec<String>,
}

impl PodExecOptions {
    /// Decodes the query (booleans as Go's ParseBool, 400 otherwise).
    pub fn parse(query: Option<&str>) -> Result<PodExecOptions, ApiError> {
        let mut opts = PodExecOptions::default();
        for (k, v) in query_pairs(query) {
            match k.as_str() {
                "stdin" => opts.stdin = parse_bool(&v)?,
                "stdout" => opts.stdout = parse_bool(&v)?,
                "stderr" => opts.stderr = parse_bool(&v)?,
                "tty" => opts.tty = parse_bool(&v)?,
                "container" if !v.is_empty() => opts.container = Some(v),
                "command" => opts.command.push(v),
                _ => {}
            }
        }
        Ok(opts)
    }

    /// The kubelet's query (upstream's `streamParams`).
    pub fn kubelet_query(&self) -> String {
        let mut params: Vec<String> = Vec::new();
        for (on, key) in [
            (self.stdin, "input"),
            (self.stdout, "output"),
            (self.stderr, "error"),
            (self.tty, "tty"),
        ] {
            if on {
                params.push(format!("{key}=1"));
            }
        }
        for c in &self.command {
            params.push(format!("command={}", encode_component(c)));
        }
        params.join("&")
    }
}

/// Percent-encodes a query component (everything but unreserved bytes).
pub(crate) fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Registry {
    /// `pods/{name}/exec` or (`subresource` "attach") `pods/{name}/attach`:
    /// proxies the (upgrade) request to the kubelet.
    pub(crate) async fn pod_exec<B>(
        &self,
        req: Request<B>,
        namespace: &str,
        name: &str,
        subresource: &str,
        query: Option<&str>,
    ) -> Result<Response<Body>, ApiError> {
        let mut opts = PodExecOptions::parse(query)?;
        if subresource == "attach" {
            opts.command.clear();
        }
        let pods = resources::by_gvr("", "v1", "pods").ok_or_else(|| {
            ApiError::InternalError("pods missing from the resource table".into())
        })?;
        let pod = decode(
            &self
                .current(pods, &pods.key(Some(namespace), name), name)
                .await?,
        )?;
        let container = choose_container(&pod, name, opts.container.as_deref())?;
        let node_name = node_of(&pod, name)?;
        let path = format!(
            "/{subresource}/{}/{}/{}?{}",
            encode_component(namespace),
            encode_component(name),
            encode_component(&container),
            opts.kubelet_query()
        );
        self.upgrade_to_kubelet(req, node_name, &path, Vec::new())
            .await
            .map(|upgrade| upgrade.splice())
    }

    /// Sends the client's upgrade request to `node_name`'s kubelet as
    /// `path` (with `headers` replacing the client's of the same names; an
    /// empty value just removes the client's).
    /// A refusal comes back as the kubelet gave it; a switch hands out both
    /// upgraded connections.
    pub(crate) async fn upgrade_to_kubelet<B>(
        &self,
        mut req: Request<B>,
        node_name: &str,
        path: &str,
        headers: Vec<(HeaderName, HeaderValue)>,
    ) -> Result<KubeletUpgrade, ApiError> {
        let (client, host) = match self.kubelet_of(node_name).await? {
            Ok(found) => found,
            Err(message) => {
                return Ok(KubeletUpgrade::Refused(unknown_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &message,
                )));
            }
        };
        let client_upgrade = hyper::upgrade::on(&mut req);
        let tls = match client.dial(&host).await {
            Ok(tls) => tls,
            Err(message) => {
                return Ok(KubeletUpgrade::Refused(unknown_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("error dialing backend: {message}"),
                )));
            }
        };
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| ApiError::InternalError(format!("error dialing backend: {e}")))?;
        tokio::spawn(async move {
            if let Err(err) = conn.with_upgrades().await {
                tracing::debug!(error = %err, "kubelet exec connection ended with an error");
            }
        });
        let mut out = Request::builder().method(req.method()).uri(path);
        for (key, value) in req.headers() {
            if !HOP_HEADERS.contains(&key.as_str()) && !headers.iter().any(|(k, _)| k == key) {
                out = out.header(key, value);
            }
        }
        for (key, value) in headers {
            if !value.is_empty() {
                out = out.header(key, value);
            }
        }
        let out = out
            .header(header::HOST, &host)
            .body(Empty::<Bytes>::new())
            .map_err(|e| ApiError::InternalError(e.to_string()))?;
        let mut resp = send
            .send_request(out)
            .await
            .map_err(|e| ApiError::InternalError(format!("error sending request: {e}")))?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            // The kubelet's refusal, as it gave it: the client prints it
            // after "unable to upgrade connection: ".
            let (parts, body) = resp.into_parts();
            let bytes = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let mut back = Response::new(response::full(bytes));
            *back.status_mut() = parts.status;
            if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
                back.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
            }
            return Ok(KubeletUpgrade::Refused(back));
        }
        let kubelet_upgrade = hyper::upgrade::on(&mut resp);
        Ok(KubeletUpgrade::Switched {
            kubelet_headers: resp.headers().clone(),
            client: client_upgrade,
            kubelet: kubelet_upgrade,
        })
    }
}

/// How a kubelet answered an upgrade request.
pub(crate) enum KubeletUpgrade {
    /// Anything but 101, to go back to the client as it is.
    Refused(Response<Body>),
    /// 101: the kubelet's response headers and both connections, once the
    /// client has been answered.
    Switched {
        kubelet_headers: http::HeaderMap,
        client: hyper::upgrade::OnUpgrade,
        kubelet: hyper::upgrade::OnUpgrade,
    },
}

impl KubeletUpgrade {
    /// Answers the client with the kubelet's 101 and splices the two
    /// connections together byte for byte.
    pub(crate) fn splice(self) -> Response<Body> {
        let (kubelet_headers, client, kubelet) = match self {
            KubeletUpgrade::Refused(resp) => return resp,
            KubeletUpgrade::Switched {
                kubelet_headers,
                client,
                kubelet,
            } => (kubelet_headers, client, kubelet),
        };
        let mut back = Response::new(response::full(Bytes::new()));
        *back.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        for (key, value) in &kubelet_headers {
            back.headers_mut().append(key, value.clone());
        }
        back.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        tokio::spawn(async move {
            match tokio::join!(client, kubelet) {
                (Ok(client), Ok(kubelet)) => {
                    let mut client = TokioIo::new(client);
                    let mut kubelet = TokioIo::new(kubelet);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut kubelet).await;
                }
                (Err(err), _) | (_, Err(err)) => {
                    tracing::debug!(error = %err, "streaming upgrade failed");
                }
            }
        });
        back
    }
}

/// The node a pod is bound to (upstream's message when none).
pub(crate) fn node_of<'a>(pod: &'a Value, name: &str) -> Result<&'a str, ApiError> {
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if node_name.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    Ok(node_name)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn exec_options_decode_and_become_kubelet_params() {
        let opts = PodExecOptions::parse(Some(
            "command=sh&command=-c&command=echo+a%26b&container=app&stdin=true&stdout=true&tty=true",
        ))
        .unwrap();
        assert_eq!(opts.command, ["sh", "-c", "echo a&b"]);
        assert_eq!(opts.container.as_deref(), Some("app"));
        assert!(opts.stdin && opts.stdout && opts.tty && !opts.stderr);
        assert_eq!(
            opts.kubelet_query(),
            "input=1&output=1&tty=1&command=sh&command=-c&command=echo%20a%26b"
        );
        assert!(matches!(
            PodExecOptions::parse(Some("stdin=maybe")),
            Err(ApiError::BadRequest(_))
        ));
    }
}
