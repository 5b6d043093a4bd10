//! `GET pods/{name}/log`: the container's log streamed from its node's
//! kubelet, as upstream's `LogREST` (`pkg/registry/core/pod/rest/log.go`):
//! the query is decoded and validated as `PodLogOptions`, the container
//! chosen (the only one, or the one named), the node's kubelet asked over
//! HTTPS for `/containerLogs/{namespace}/{pod}/{container}` and its answer
//! streamed back as `text/plain`.
//!
//! Kubelets are reached at the node's InternalIP (then ExternalIP, then
//! Hostname: k3s's `--kubelet-preferred-address-types`) and its
//! `daemonEndpoints.kubeletEndpoint.Port`. The API server presents its
//! kubelet client certificate; like upstream without
//! `--kubelet-certificate-authority`, it does not verify the kubelet's
//! serving certificate, so agents may serve with self-signed ones.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::{Value, json};
use skiff_api::field::{Error as FieldError, ErrorList, Path};
use skiff_api::resources;
use skiff_api::status::ApiError;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Call, Registry, decode};
use crate::pki::{Credentials, PkiError};
use crate::request_info::query_pairs;
use crate::response::{self, Body};

/// The kubelet port when a Node does not say (upstream's default).
pub const DEFAULT_KUBELET_PORT: u16 = 10250;
/// Longest the connection to a kubelet may take (Go's default dialer).
const DIAL_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of a kubelet's error answer is read (upstream's `maxReadLength`).
const MAX_ERROR_BODY: usize = 50_000;
/// Node address types tried in order.
const PREFERRED_ADDRESS_TYPES: [&str; 3] = ["InternalIP", "ExternalIP", "Hostname"];

/// Connects to kubelets with the API server's kubelet client certificate.
#[derive(Clone)]
pub struct KubeletClient {
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for KubeletClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletClient").finish_non_exhaustive()
    }
}

impl KubeletClient {
    /// A client presenting `creds` (the PKI's kubelet client certificate).
    pub fn new(creds: &Credentials) -> Result<KubeletClient, PkiError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(AnyServerCert {
            provider: provider.clone(),
        });
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(vec![creds.cert_der().clone()], creds.key_der())?;
        Ok(KubeletClient { tls: Arc::new(tls) })
    }
}

/// Accepts any kubelet serving certificate (upstream's behaviour without
/// `--kubelet-certificate-authority`), while still checking that the peer
/// holds the certificate's key.
#[derive(Debug)]
struct AnyServerCert {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `PodLogOptions` from the query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PodLogOptions {
    pub container: Option<String>,
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub since_seconds: Option<i64>,
    pub since_time: Option<OffsetDateTime>,
    pub tail_lines: Option<i64>,
    pub limit_bytes: Option<i64>,
}

impl PodLogOptions {
    /// Decodes the query (400 for values that do not decode, as upstream's
    /// parameter codec).
    pub fn parse(query: Option<&str>) -> Result<PodLogOptions, ApiError> {
        let mut opts = PodLogOptions::default();
        for (k, v) in query_pairs(query) {
            // Go's url.Values.Get: the first value counts.
            match k.as_str() {
                "container" if opts.container.is_none() => {
                    opts.container = Some(v).filter(|c| !c.is_empty());
                }
                "follow" => opts.follow = parse_bool(&v)?,
                "previous" => opts.previous = parse_bool(&v)?,
                "timestamps" => opts.timestamps = parse_bool(&v)?,
                "sinceSeconds" => opts.since_seconds = parse_int(&v)?,
                "tailLines" => opts.tail_lines = parse_int(&v)?,
                "limitBytes" => opts.limit_bytes = parse_int(&v)?,
                "sinceTime" if !v.is_empty() => {
                    opts.since_time = Some(OffsetDateTime::parse(&v, &Rfc3339).map_err(|_| {
                        ApiError::BadRequest(format!(
                            "parsing time {v:?} as \"2006-01-02T15:04:05Z07:00\": cannot parse {v:?} as \"2006\""
                        ))
                    })?);
                }
                _ => {}
            }
        }
        Ok(opts)
    }

    /// Upstream's `ValidatePodLogOptions`: 422 for pod `name`.
    pub fn validate(&self, name: &str) -> Result<(), ApiError> {
        let mut errors = ErrorList::new();
        if let Some(t) = self.tail_lines.filter(|t| *t < 0) {
            errors.push(FieldError::invalid(
                &Path::new("tailLines"),
                t,
                "must be greater than or equal to 0",
            ));
        }
        if let Some(l) = self.limit_bytes.filter(|l| *l < 1) {
            errors.push(FieldError::invalid(
                &Path::new("limitBytes"),
                l,
                "must be greater than 0",
            ));
        }
        match (self.since_seconds, self.since_time) {
            (Some(_), Some(_)) => errors.push(FieldError::forbidden(
                &Path::new(""),
                "at most one of `sinceTime` or `sinceSeconds` may be specified",
            )),
            (Some(s), None) if s < 1 => errors.push(FieldError::invalid(
                &Path::new("sinceSeconds"),
                s,
                "must be greater than 0",
            )),
            _ => {}
        }
        if errors.is_empty() {
            return Ok(());
        }
        Err(ApiError::Invalid {
            group: String::new(),
            kind: "PodLogOptions".into(),
            name: name.to_owned(),
            errors,
        })
    }

    /// The kubelet's query, keys sorted as Go's `url.Values.Encode`.
    pub fn kubelet_query(&self) -> String {
        let mut params: Vec<(&str, String)> = Vec::new();
        if self.follow {
            params.push(("follow", "true".into()));
        }
        if let Some(l) = self.limit_bytes {
            params.push(("limitBytes", l.to_string()));
        }
        if self.previous {
            params.push(("previous", "true".into()));
        }
        if let Some(s) = self.since_seconds {
            params.push(("sinceSeconds", s.to_string()));
        }
        if let Some(t) = self.since_time {
            // RFC 3339 to the second, in UTC.
            let t = t
                .to_offset(time::UtcOffset::UTC)
                .replace_nanosecond(0)
                .unwrap_or(t);
            let t = t.format(&Rfc3339).unwrap_or_default();
            params.push(("sinceTime", t.replace(':', "%3A")));
        }
        if let Some(t) = self.tail_lines {
            params.push(("tailLines", t.to_string()));
        }
        if self.timestamps {
            params.push(("timestamps", "true".into()));
        }
        params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// Go's `strconv.ParseBool`, as the parameter codec decodes booleans.
pub(super) fn parse_bool(v: &str) -> Result<bool, ApiError> {
    match v {
        "" | "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        _ => Err(ApiError::BadRequest(format!(
            "strconv.ParseBool: parsing {v:?}: invalid syntax"
        ))),
    }
}

fn parse_int(v: &str) -> Result<Option<i64>, ApiError> {
    if v.is_empty() {
        return Ok(None);
    }
    v.parse().map(Some).map_err(|_| {
        ApiError::BadRequest(format!("strconv.ParseInt: parsing {v:?}: invalid syntax"))
    })
}

/// Every container name of the pod: init containers, containers, then
/// ephemeral containers (upstream's `VisitContainers` order).
fn container_names(pod: &Value) -> Vec<String> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|field| {
            pod.pointer(&format!("/spec/{field}"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

/// The container to read: the one named (which must exist), or the pod's
/// only regular container. Upstream's `validateContainer`.
pub(crate) fn choose_container(
    pod: &Value,
    pod_name: &str,
    container: Option<&str>,
) -> Result<String, ApiError> {
    if let Some(name) = container {
        if container_names(pod).iter().any(|c| c == name) {
            return Ok(name.to_owned());
        }
        return Err(ApiError::BadRequest(format!(
            "container {name} is not valid for pod {pod_name}"
        )));
    }
    let regular = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    match regular {
        [only] => Ok(only
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()),
        [] => Err(ApiError::BadRequest(format!(
            "a container name must be specified for pod {pod_name}"
        ))),
        _ => Err(ApiError::BadRequest(format!(
            "a container name must be specified for pod {pod_name}, choose one of: [{}]",
            container_names(pod).join(" ")
        ))),
    }
}

/// `host:port` of a Node's kubelet, or upstream's error when the Node has no
/// usable address.
pub(crate) fn kubelet_host(node: &Value) -> Result<String, String> {
    let addresses = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let address = PREFERRED_ADDRESS_TYPES.iter().find_map(|want| {
        addresses.iter().find_map(|a| {
            let matches = a.get("type").and_then(Value::as_str) == Some(want);
            let value = a.get("address").and_then(Value::as_str).unwrap_or("");
            (matches && !value.is_empty()).then_some(value)
        })
    });
    let Some(address) = address else {
        let known: Vec<String> = addresses
            .iter()
            .map(|a| {
                format!(
                    "{{{} {}}}",
                    a.get("type").and_then(Value::as_str).unwrap_or(""),
                    a.get("address").and_then(Value::as_str).unwrap_or("")
                )
            })
            .collect();
        return Err(format!(
            "no preferred addresses found; known addresses: [{}]",
            known.join(" ")
        ));
    };
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_i64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Ok(match address.parse::<std::net::Ipv6Addr>() {
        Ok(v6) => format!("[{v6}]:{port}"),
        Err(_) => format!("{address}:{port}"),
    })
}

/// A `metav1.Status` failure without a reason: what upstream answers for a
/// plain error (one that is not an API status), e.g. a kubelet it cannot
/// reach.
pub(super) fn unknown_error(code: StatusCode, message: &str) -> Response<Body> {
    response::json(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": message, "code": code.as_u16()}),
    )
}

/// A kubelet's error answer as upstream's `GenericHttpResponseChecker`
/// turns it into a Status.
fn kubelet_error(code: StatusCode, body: &str, name: &str) -> Response<Body> {
    let err = match code.as_u16() {
        400 => return super::error_response(&ApiError::BadRequest(body.to_owned())),
        500 => return super::error_response(&ApiError::InternalError(body.to_owned())),
        c => c,
    };
    let (reason, message) = match err {
        404 => (
            "NotFound",
            "the server could not find the requested resource".to_owned(),
        ),
        401 => (
            "Unauthorized",
            "the server has asked for the client to provide credentials".to_owned(),
        ),
        403 => ("Forbidden", body.to_owned()),
        409 => ("Conflict", "the server reported a conflict".to_owned()),
        422 => (
            "Invalid",
            "the server rejected our request due to an error in our request".to_owned(),
        ),
        503 => (
            "ServiceUnavailable",
            "the server is currently unable to handle the request".to_owned(),
        ),
        c if c >= 500 => (
            "InternalError",
            format!("an error on the server ({body:?}) has prevented the request from succeeding"),
        ),
        c => (
            "",
            format!(
                "the server responded with the status code {c} but did not return more information"
            ),
        ),
    };
    let mut status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("{message} ( pods/log {name})"),
        "details": {"name": name, "kind": "pods/log"},
        "code": err,
    });
    if !reason.is_empty() {
        status["reason"] = json!(reason);
    }
    response::json(code, &status)
}

impl Registry {
    /// The kubelet client and `host:port` of node `node_name`'s kubelet; the
    /// inner error is upstream's plain message for a node without an address.
    pub(super) async fn kubelet_of(
        &self,
        node_name: &str,
    ) -> Result<Result<(&KubeletClient, String), String>, ApiError> {
        let nodes = resources::by_gvr("", "v1", "nodes").ok_or_else(|| {
            ApiError::InternalError("nodes missing from the resource table".into())
        })?;
        let node = decode(
            &self
                .current(nodes, &nodes.key(None, node_name), node_name)
                .await?,
        )?;
        let Some(client) = &self.kubelet_client else {
            return Err(ApiError::InternalError(
                "no kubelet client is configured".into(),
            ));
        };
        Ok(kubelet_host(&node).map(|host| (client, host)))
    }

    /// `GET pods/{name}/log`.
    pub(super) async fn pod_log(
        &self,
        call: &Call<'_>,
        name: &str,
    ) -> Result<Response<Body>, ApiError> {
        let opts = PodLogOptions::parse(call.query)?;
        opts.validate(name)?;
        let namespace = call.req.namespace.as_deref().unwrap_or_default();
        let kv = self
            .current(call.info, &call.info.key(Some(namespace), name), name)
            .await?;
        let pod = decode(&kv)?;
        let container = choose_container(&pod, name, opts.container.as_deref())?;
        let node_name = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if node_name.is_empty() {
            // Not scheduled: nothing to stream (upstream answers an empty
            // location with 204).
            let mut resp = Response::new(response::full(Bytes::new()));
            *resp.status_mut() = StatusCode::NO_CONTENT;
            return Ok(resp);
        }
        let (client, host) = match self.kubelet_of(node_name).await? {
            Ok(found) => found,
            Err(message) => {
                return Ok(unknown_error(StatusCode::INTERNAL_SERVER_ERROR, &message));
            }
        };
        let path = format!("/containerLogs/{namespace}/{name}/{container}");
        let query = opts.kubelet_query();
        let url = if query.is_empty() {
            format!("https://{host}{path}")
        } else {
            format!("https://{host}{path}?{query}")
        };
        let resp = match client.get(&host, &url).await {
            Ok(resp) => resp,
            Err(message) => {
                return Ok(unknown_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("Get {url:?}: {message}"),
                ));
            }
        };
        let (parts, body) = resp.into_parts();
        if !(200..=206).contains(&parts.status.as_u16()) {
            let bytes = read_limited(body).await;
            return Ok(kubelet_error(
                parts.status,
                &String::from_utf8_lossy(&bytes),
                name,
            ));
        }
        let mut out = Response::new(body.boxed_unsync());
        *out.status_mut() = parts.status;
        out.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        Ok(out)
    }
}

/// Up to [`MAX_ERROR_BODY`] bytes of a kubelet's answer.
async fn read_limited(mut body: KubeletBody) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < MAX_ERROR_BODY {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    out.extend_from_slice(&data);
                }
            }
            None => break,
        }
    }
    out.truncate(MAX_ERROR_BODY);
    out
}

/// A kubelet's response body, streamed; a transport error ends it. Dropping
/// it (the client went away) closes the connection to the kubelet, which
/// stops following the log there.
struct KubeletBody {
    body: Incoming,
    conn: tokio::task::JoinHandle<()>,
}

impl Drop for KubeletBody {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

impl hyper::body::Body for KubeletBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Some(Err(err))) => {
                tracing::debug!(error = %err, "kubelet log stream ended with an error");
                Poll::Ready(None)
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl KubeletClient {
    /// `GET url` on the kubelet at `host` (`address:port`); errors read as
    /// Go's net/http ones after `Get "url": `.
    /// A TLS connection to the kubelet at `host` (`address:port`), with our
    /// client certificate; errors read as Go's.
    pub(super) async fn dial(
        &self,
        host: &str,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
        let tcp =
            match tokio::time::timeout(DIAL_TIMEOUT, tokio::net::TcpStream::connect(host)).await {
                Ok(Ok(tcp)) => tcp,
                Ok(Err(err)) => return Err(format!("dial tcp {host}: {}", dial_error(&err))),
                Err(_) => return Err(format!("dial tcp {host}: i/o timeout")),
            };
        let _ = tcp.set_nodelay(true);
        let server_name = server_name(host)?;
        tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("tls: {e}"))
    }

    async fn get(&self, host: &str, url: &str) -> Result<Response<KubeletBody>, String> {
        let tls = self.dial(host).await?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        let conn = tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(error = %err, "kubelet connection ended with an error");
            }
        });
        let path_and_query = url
            .strip_prefix("https://")
            .and_then(|rest| rest.find('/').map(|i| &rest[i..]))
            .unwrap_or("/");
        let req = Request::get(path_and_query)
            .header(header::HOST, host)
            .header(header::USER_AGENT, "skiff-apiserver")
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
        Ok(resp.map(|body| KubeletBody { body, conn }))
    }
}

/// The TLS server name for `host` (`address:port`): the IP, or the DNS name.
fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let address = host
        .rsplit_once(':')
        .map_or(host, |(a, _)| a)
        .trim_start_matches('[')
        .trim_end_matches(']');
    ServerName::try_from(address.to_owned()).map_err(|e| format!("invalid host {address:?}: {e}"))
}

/// An I/O error worded as Go's dialer words it.
fn dial_error(err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".into(),
        std::io::ErrorKind::TimedOut => "i/o timeout".into(),
        _ => err.to_string(),
    }
}

#[cfg(test)]
#[path = "pod_log_tests.rs"]
mod tests;
