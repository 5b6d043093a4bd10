//! httpGet probes (upstream `pkg/probe/http`): a GET whose status 200–399 is
//! success. Redirects are followed on the same host (up to Go's limit of 10);
//! a redirect to another host is not followed and counts as success with a
//! warning. HTTPS does not verify the server's certificate, as upstream.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::HTTPGetAction;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::task::AbortOnDropHandle;

use super::net::{dial_error, dial_timeout_error};
use super::{
    ProbeOutcome, ProbeTarget, USER_AGENT, default_host, join_host_port, resolve_container_port,
};

/// Upstream reads at most this much of a response body.
const MAX_BODY: usize = 10 * 1024;
/// Go's default client stops after this many requests in one redirect chain.
const MAX_REDIRECTS: usize = 10;

/// Runs one httpGet probe.
pub(crate) async fn probe(
    action: &HTTPGetAction,
    target: &ProbeTarget,
    timeout: Duration,
) -> ProbeOutcome {
    let request = match ProbeRequest::new(action, target) {
        Ok(r) => r,
        Err(e) => return ProbeOutcome::Unknown(e),
    };
    let mut progress = Progress {
        url: request.url.to_string(),
        phase: Phase::Dialing,
    };
    match tokio::time::timeout(timeout, request.run(&mut progress)).await {
        Ok(outcome) => outcome,
        // Go's http.Client.Timeout wording, which depends on how far it got.
        Err(_) => match progress.phase {
            Phase::Dialing => ProbeOutcome::Failure(format!(
                "Get {:?}: {} (Client.Timeout exceeded while awaiting headers)",
                progress.url,
                dial_timeout_error(&progress.addr_of_url())
            )),
            Phase::AwaitingHeaders => ProbeOutcome::Failure(format!(
                "Get {:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                progress.url
            )),
            // Upstream's body read error is an error, not a failure.
            Phase::ReadingBody => ProbeOutcome::Unknown(
                "context deadline exceeded (Client.Timeout or context cancellation while reading body)"
                    .to_string(),
            ),
        },
    }
}

/// How far a request got, for the timeout message.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Dialing,
    AwaitingHeaders,
    ReadingBody,
}

#[derive(Debug)]
struct Progress {
    url: String,
    phase: Phase,
}

impl Progress {
    fn addr_of_url(&self) -> String {
        let rest = self.url.split_once("://").map_or(&*self.url, |(_, r)| r);
        rest.split(['/', '?']).next().unwrap_or(rest).to_string()
    }
}

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// An absolute URL as a probe uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProbeUrl {
    scheme: Scheme,
    /// Host name or IP, without brackets.
    host: String,
    port: u16,
    /// Path and query as written (may be empty).
    path: String,
}

impl ProbeUrl {
    fn authority(&self) -> String {
        join_host_port(&self.host, self.port)
    }

    /// The request target: the path, `/` when empty.
    fn request_target(&self) -> String {
        if self.path.is_empty() {
            "/".to_string()
        } else {
            self.path.clone()
        }
    }

    /// Resolves a `Location` header against this URL.
    fn join(&self, location: &str) -> Result<ProbeUrl, String> {
        if has_scheme(location) {
            return parse_absolute(location);
        }
        if let Some(rest) = location.strip_prefix("//") {
            return parse_absolute(&format!("{}://{rest}", self.scheme.as_str()));
        }
        let path = if location.starts_with('/') {
            location.to_string()
        } else {
            // Relative to the current path's directory (query dropped).
            let current = self.request_target();
            let current = current.split('?').next().unwrap_or("/");
            let dir = current.rfind('/').map_or("/", |i| &current[..=i]);
            format!("{dir}{location}")
        };
        Ok(ProbeUrl {
            path,
            ..self.clone()
        })
    }
}

impl std::fmt::Display for ProbeUrl {
    /// Go's `url.String()` for the URLs probes build.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let slash = if self.path.is_empty() || self.path.starts_with('/') {
            ""
        } else {
            "/"
        };
        write!(
            f,
            "{}://{}{slash}{}",
            self.scheme.as_str(),
            self.authority(),
            self.path
        )
    }
}

/// Whether a URL reference is absolute (`scheme:...`), as Go's `URL.IsAbs`.
fn has_scheme(location: &str) -> bool {
    match location.split_once(':') {
        Some((scheme, _)) => {
            !scheme.is_empty()
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

fn parse_absolute(location: &str) -> Result<ProbeUrl, String> {
    let uri: http::Uri = location
        .parse()
        .map_err(|e| format!("failed to parse Location header {location:?}: {e}"))?;
    let scheme = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
        Some("https") => Scheme::Https,
        Some("http") => Scheme::Http,
        _ => return Err(format!("unsupported protocol scheme in {location:?}")),
    };
    let host = uri
        .host()
        .ok_or_else(|| format!("no Host in request URL {location:?}"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(match scheme {
        Scheme::Http => 80,
        Scheme::Https => 443,
    });
    let path = uri
        .path_and_query()
        .map_or(String::new(), |p| p.to_string());
    Ok(ProbeUrl {
        scheme,
        host,
        port,
        path,
    })
}

/// The request an httpGet action describes (upstream's
/// `NewRequestForHTTPGetAction`).
#[derive(Debug)]
struct ProbeRequest {
    url: ProbeUrl,
    /// Headers in order, names as written by the user or our defaults.
    headers: Vec<(String, String)>,
    /// A user-supplied `Host` header.
    host_override: Option<String>,
}

impl ProbeRequest {
    fn new(action: &HTTPGetAction, target: &ProbeTarget) -> Result<Self, String> {
        let scheme = match action
            .scheme
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("") | Some("http") => Scheme::Http,
            Some("https") => Scheme::Https,
            Some(other) => return Err(format!("unsupported protocol scheme {other:?}")),
        };
        let port = resolve_container_port(&action.port, &target.container_ports)?;
        let host = default_host(action.host.as_deref(), target)?;
        let url = ProbeUrl {
            scheme,
            host,
            port,
            path: action.path.clone().unwrap_or_default(),
        };
        let user = action.http_headers.as_deref().unwrap_or_default();
        let has = |name: &str| user.iter().any(|h| h.name.eq_ignore_ascii_case(name));
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut host_override = None;
        for h in user {
            if h.name.eq_ignore_ascii_case("host") {
                // Go sends req.Host, taken from the first Host header.
                if host_override.is_none() && !h.value.is_empty() {
                    host_override = Some(h.value.clone());
                }
            } else if h.name.eq_ignore_ascii_case("accept") && h.value.is_empty() {
                // An empty Accept removes the default instead of sending it.
            } else {
                headers.push((h.name.clone(), h.value.clone()));
            }
        }
        if !has("user-agent") {
            headers.push(("User-Agent".to_string(), USER_AGENT.to_string()));
        }
        if !has("accept") {
            headers.push(("Accept".to_string(), "*/*".to_string()));
        }
        Ok(ProbeRequest {
            url,
            headers,
            host_override,
        })
    }

    /// Sends the request and follows redirects, then judges the response.
    async fn run(&self, progress: &mut Progress) -> ProbeOutcome {
        let mut url = self.url.clone();
        let mut host_override = self.host_override.clone();
        let mut requests = 0usize;
        loop {
            progress.url = url.to_string();
            progress.phase = Phase::Dialing;
            requests += 1;
            // The guard keeps this connection alive until its body is read.
            let (response, _conn) = match self.send(&url, host_override.as_deref(), progress).await
            {
                Ok(r) => r,
                Err(e) => return ProbeOutcome::Failure(format!("Get {:?}: {e}", url.to_string())),
            };
            let status = response.status();
            let location = response
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            if is_followed_redirect(status)
                && let Some(location) = location
            {
                let next = match url.join(&location) {
                    Ok(n) => n,
                    Err(e) => {
                        return ProbeOutcome::Failure(format!("Get {:?}: {e}", url.to_string()));
                    }
                };
                // The kubelet's redirect checker: another host ends the chain
                // and the redirect response itself is judged.
                if next.host == self.url.host {
                    if requests >= MAX_REDIRECTS {
                        return ProbeOutcome::Failure(format!(
                            "Get {:?}: stopped after {MAX_REDIRECTS} redirects",
                            url.to_string()
                        ));
                    }
                    // A custom Host survives only a redirect without a scheme (Go).
                    host_override = if has_scheme(&location) {
                        None
                    } else {
                        self.host_override.clone()
                    };
                    url = next;
                    continue;
                }
            }
            progress.phase = Phase::ReadingBody;
            let body = match read_at_most(response.into_body(), MAX_BODY).await {
                Ok(b) => b,
                Err(e) => return ProbeOutcome::Unknown(e),
            };
            return judge(status, &body);
        }
    }

    async fn send(
        &self,
        url: &ProbeUrl,
        host_override: Option<&str>,
        progress: &mut Progress,
    ) -> Result<(hyper::Response<Incoming>, AbortOnDropHandle<()>), String> {
        let addr = url.authority();
        let tcp = TcpStream::connect(&addr)
            .await
            .map_err(|e| dial_error(&addr, &e))?;
        progress.phase = Phase::AwaitingHeaders;
        let mut builder = Request::get(url.request_target()).header(
            http::header::HOST,
            host_override.map_or_else(|| addr.clone(), str::to_string),
        );
        for (name, value) in &self.headers {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|_| format!("net/http: invalid header field name {name:?}"))?;
            let value = HeaderValue::try_from(value.as_str())
                .map_err(|_| format!("net/http: invalid header field value for {name:?}"))?;
            builder = builder.header(name, value);
        }
        // Upstream's transport disables keep-alives.
        builder = builder.header(http::header::CONNECTION, "close");
        let request = builder
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("net/http: {e}"))?;
        match url.scheme {
            Scheme::Http => exchange(tcp, request).await,
            Scheme::Https => {
                let name = rustls_pki_types::ServerName::try_from(url.host.clone())
                    .map_err(|e| format!("tls: {e}"))?;
                let tls = tokio_rustls::TlsConnector::from(insecure_tls_config()?)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("tls: {e}"))?;
                exchange(tls, request).await
            }
        }
    }
}

/// Statuses Go's client follows when a `Location` is present.
fn is_followed_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// Upstream's `DoHTTPProbe` verdict on a final response.
fn judge(status: StatusCode, body: &[u8]) -> ProbeOutcome {
    let code = status.as_u16();
    if (200..400).contains(&code) {
        if code >= 300 {
            return ProbeOutcome::Warning(format!(
                "Probe terminated redirects, Response body: {}",
                String::from_utf8_lossy(body)
            ));
        }
        return ProbeOutcome::Success;
    }
    // Upstream keeps the body out of the user-facing message on purpose.
    ProbeOutcome::Failure(format!("HTTP probe failed with statuscode: {code}"))
}

/// One HTTP/1.1 request on a fresh connection.
async fn exchange<S>(
    io: S,
    request: Request<Empty<Bytes>>,
) -> Result<(hyper::Response<Incoming>, AbortOnDropHandle<()>), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| hyper_error(&e))?;
    // Aborted when the probe ends or times out.
    let driver = AbortOnDropHandle::new(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| hyper_error(&e))?;
    Ok((response, driver))
}

/// Go-like text for a transport error.
fn hyper_error(err: &hyper::Error) -> String {
    if err.is_incomplete_message() {
        "EOF".to_string()
    } else {
        err.to_string()
    }
}

/// Reads up to `limit` bytes of a body; more is silently dropped (upstream
/// logs a non-fatal truncation).
async fn read_at_most(mut body: Incoming, limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while out.len() < limit {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let take = (limit - out.len()).min(data.len());
                    out.extend_from_slice(&data[..take]);
                }
            }
            Some(Err(e)) => return Err(hyper_error(&e)),
        }
    }
    Ok(out)
}

/// A TLS client that accepts any server certificate (Go's
/// `InsecureSkipVerify`), still checking handshake signatures.
fn insecure_tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SkipVerify(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct SkipVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
