//! The request path after TLS: authenticate, then serve a non-resource path
//! (health, version) or an API resource request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, Request, Response, StatusCode};
use rustls_pki_types::CertificateDer;
use tokio::sync::watch;

use skiff_api::status::ApiError;
use skiff_api::{discovery, resources};

use crate::authn::{Authenticator, PeerIdentity, UserInfo};
use crate::health;
use crate::limits::{self, Limits, RequestKind};
use crate::metrics::{GaugeGuard, Metrics, RequestLabels};
use crate::negotiate;
use crate::registry::{self, Call, Registry};
use crate::request_info::{self, RequestInfo};
use crate::response::{self, Body};

/// Largest request body accepted (upstream's 3 MiB).
pub const MAX_REQUEST_BODY: usize = 3 * 1024 * 1024;

/// Paths anonymous clients may read (kubelets' and load balancers' probes).
const ANONYMOUS_PATHS: &[&str] = &["/healthz", "/livez", "/readyz", "/version"];

/// How requests are limited and measured (`skiff server` flags).
#[derive(Debug)]
pub struct Serving {
    /// Where request and storage metrics go.
    pub metrics: Arc<Metrics>,
    /// `--max-requests-inflight` (0: no limit).
    pub max_requests_inflight: usize,
    /// `--max-mutating-requests-inflight` (0: no limit).
    pub max_mutating_requests_inflight: usize,
    /// `--request-timeout`: the longest a non-long-running request may take.
    pub request_timeout: Duration,
}

impl Default for Serving {
    /// Upstream's defaults, with fresh metrics.
    fn default() -> Self {
        Serving {
            metrics: Arc::new(Metrics::new()),
            max_requests_inflight: limits::DEFAULT_MAX_REQUESTS_INFLIGHT,
            max_mutating_requests_inflight: limits::DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT,
            request_timeout: limits::DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// Everything a request may need.
#[derive(Debug)]
pub struct App {
    authn: Authenticator,
    healthz: health::Endpoint,
    livez: health::Endpoint,
    readyz: health::Endpoint,
    /// `serverAddressByClientCIDRs` of discovery documents.
    server_address: String,
    registry: Registry,
    metrics: Arc<Metrics>,
    limits: Limits,
    request_timeout: Duration,
    /// Set once shutdown starts: long-running responses end.
    draining: watch::Sender<bool>,
}

impl App {
    /// An app authenticating with `authn` and reporting `checks` on every
    /// health endpoint, plus `ready_checks` on `/readyz` only.
    pub fn new(
        authn: Authenticator,
        registry: Registry,
        server_address: String,
        checks: Vec<health::Check>,
        ready_checks: Vec<health::Check>,
        serving: Serving,
    ) -> App {
        let mut ready = checks.clone();
        ready.extend(ready_checks);
        let limits = Limits::new(
            serving.max_requests_inflight,
            serving.max_mutating_requests_inflight,
            &serving.metrics,
        );
        App {
            authn,
            healthz: health::Endpoint::new("healthz", checks.clone()),
            livez: health::Endpoint::new("livez", checks),
            readyz: health::Endpoint::new("readyz", ready),
            server_address,
            registry,
            metrics: serving.metrics,
            limits,
            request_timeout: serving.request_timeout,
            draining: watch::channel(false).0,
        }
    }

    /// Ends every open long-running response (watches) and makes new ones
    /// end at once: the first step of a graceful shutdown.
    pub fn start_draining(&self) {
        self.draining.send_replace(true);
    }

    /// Verifies a connection's client certificate chain once.
    pub fn peer_identity(&self, chain: Option<&[CertificateDer<'_>]>) -> PeerIdentity {
        self.authn.peer_identity(chain)
    }

    /// Serves one request: authenticates it, applies the in-flight limit
    /// and deadline, serves it and records its metrics.
    pub async fn handle<B>(&self, peer: &PeerIdentity, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = bytes::Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = Instant::now();
        let user = match self.authn.authenticate(peer, req.headers()) {
            Ok(user) => user.unwrap_or_else(UserInfo::anonymous),
            Err(err) => {
                tracing::debug!(error = %err, "authentication failed");
                return response::unauthorized();
            }
        };
        let path = req.uri().path().to_owned();
        let query = req.uri().query().map(str::to_owned);
        if user.is_anonymous() && !anonymous_allowed(&path) {
            return response::unauthorized();
        }
        let info = request_info::parse(req.method(), &path, query.as_deref());
        let content_type = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let labels = Metrics::describe(req.method(), &info, query.as_deref(), content_type);
        let non_resource = matches!(info, RequestInfo::NonResource(_));

        if limits::is_long_running(&info) {
            let open = labels.as_ref().map(|l| self.metrics.long_running(l));
            let resp = self.route(req, info, &path, query.as_deref(), &user).await;
            return self.until_drained(resp, labels, started, open);
        }

        let _slot = if limits::is_exempt_path(&path) {
            None
        } else {
            let verb = match &info {
                RequestInfo::Resource(r) => r.verb,
                RequestInfo::NonResource(n) => n.verb.as_str(),
            };
            let kind = RequestKind::of(verb);
            match self
                .limits
                .try_acquire(kind, limits::is_privileged(&user.groups))
            {
                Some(slot) => Some(slot),
                None => {
                    if let Some(labels) = &labels {
                        self.metrics.record_dropped(labels);
                    }
                    return registry::error_response(&limits::too_many_requests());
                }
            }
        };
        let resp = match limits::request_timeout(query.as_deref(), self.request_timeout) {
            Err(err) => registry::error_response(&err),
            Ok(deadline) => {
                let route = self.route(req, info, &path, query.as_deref(), &user);
                match tokio::time::timeout(deadline, route).await {
                    Ok(resp) => resp,
                    Err(_) => {
                        if let Some(labels) = &labels {
                            self.metrics
                                .record_termination(labels, StatusCode::GATEWAY_TIMEOUT);
                        }
                        registry::error_response(&limits::timed_out())
                    }
                }
            }
        };
        // A health check that does not exist is not worth a time series.
        let unknown_path = resp.status() == StatusCode::NOT_FOUND && non_resource;
        if let Some(labels) = labels.as_ref().filter(|_| !unknown_path) {
            self.metrics
                .record(labels, resp.status(), started.elapsed());
        }
        resp
    }

    /// A long-running response whose body ends when shutdown starts, and
    /// which counts as open (and is recorded) until its body ends.
    fn until_drained(
        &self,
        resp: Response<Body>,
        labels: Option<RequestLabels>,
        started: Instant,
        open: Option<GaugeGuard>,
    ) -> Response<Body> {
        use futures::StreamExt;
        use http_body_util::BodyExt;

        let (parts, body) = resp.into_parts();
        let ended = Ended {
            metrics: self.metrics.clone(),
            labels,
            code: parts.status,
            started,
            _open: open,
        };
        let mut draining = self.draining.subscribe();
        let drained = async move {
            // An error means the app is gone: end as well.
            let _ = draining.wait_for(|d| *d).await;
        };
        let frames = http_body_util::BodyStream::new(body)
            .take_until(drained)
            .map(move |frame| {
                let _ = &ended;
                frame
            });
        Response::from_parts(
            parts,
            http_body_util::StreamBody::new(frames).boxed_unsync(),
        )
    }

    /// Serves an authenticated request.
    async fn route<B>(
        &self,
        req: Request<B>,
        info: RequestInfo,
        path: &str,
        query: Option<&str>,
        user: &UserInfo,
    ) -> Response<Body>
    where
        B: hyper::body::Body<Data = bytes::Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = path.to_owned();
        let query = query.map(str::to_owned);
        let accept = req
            .headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        match info {
            RequestInfo::NonResource(_) if path == "/api" || path.starts_with("/apis") => {
                self.discovery(req.method(), &path, &accept)
            }
            RequestInfo::NonResource(_) => {
                self.non_resource(req.method(), &path, query.as_deref(), req.headers())
                    .await
            }
            RequestInfo::Resource(r) if r.resource.is_empty() => {
                self.discovery(req.method(), &path, &accept)
            }
            RequestInfo::Resource(r) => {
                let Some(info) = resources::by_gvr(&r.group, &r.version, &r.resource) else {
                    return response::not_found_path();
                };
                // exec, attach and portforward upgrade the connection: no body to
                // read, the request itself goes to the kubelet.
                if info.group.is_empty()
                    && info.plural == "pods"
                    && let Some(sub @ ("exec" | "attach")) = r.subresource.as_deref()
                    && matches!(r.verb, "get" | "create")
                    && let Some(name) = r.name.as_deref()
                {
                    let namespace = r.namespace.as_deref().unwrap_or_default();
                    return match self
                        .registry
                        .pod_exec(req, namespace, name, sub, query.as_deref())
                        .await
                    {
                        Ok(resp) => resp,
                        Err(err) => registry::error_response(&err),
                    };
                }
                if info.group.is_empty()
                    && info.plural == "pods"
                    && r.subresource.as_deref() == Some("portforward")
                    && matches!(r.verb, "get" | "create")
                    && let Some(name) = r.name.as_deref()
                {
                    let namespace = r.namespace.as_deref().unwrap_or_default();
                    return match self
                        .registry
                        .pod_port_forward(req, namespace, name, query.as_deref())
                        .await
                    {
                        Ok(resp) => resp,
                        Err(err) => registry::error_response(&err),
                    };
                }
                if let Err(err) = check_content_type(req.method(), req.headers()) {
                    return registry::error_response(&err);
                }
                let patch_type = req
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(skiff_api::patch::PatchType::from_content_type);
                let format = registry::body::BodyFormat::from_content_type(
                    req.headers()
                        .get(http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default(),
                );
                let protobuf = req
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(skiff_protobuf::is_media_type);
                let http1 = req.version() < http::Version::HTTP_2;
                let user_agent = req
                    .headers()
                    .get(http::header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = match read_body(req.into_body()).await {
                    Ok(body) => body,
                    Err(err) => {
                        let mut resp = registry::error_response(&err);
                        // The unread rest of the body is still on an HTTP/1
                        // connection: close it rather than read it.
                        if http1 {
                            resp.headers_mut().insert(
                                http::header::CONNECTION,
                                http::HeaderValue::from_static("close"),
                            );
                        }
                        return resp;
                    }
                };
                let body = if protobuf {
                    match protobuf_to_json(info, r.subresource.as_deref(), &body) {
                        Ok(json) => json,
                        Err(err) => return registry::error_response(&err),
                    }
                } else {
                    body
                };
                let output = if matches!(r.verb, "get" | "list" | "watch" | "deletecollection") {
                    let include = request_info::query_value(query.as_deref(), "includeObject");
                    match negotiate::choose(&accept, include.as_deref()) {
                        Ok(output) => output,
                        Err(err) => return registry::error_response(&err),
                    }
                } else {
                    negotiate::Output::Json
                };
                let call = Call {
                    info,
                    req: &r,
                    query: query.as_deref(),
                    body,
                    output,
                    patch_type,
                    format,
                    user_agent: user_agent.as_deref(),
                    user,
                };
                match self.registry.serve(call).await {
                    Ok(resp) => resp,
                    Err(err) => registry::error_response(&err),
                }
            }
        }
    }

    /// `/api`, `/api/v1`, `/apis`, `/apis/{group}` and `/apis/{group}/{version}`;
    /// aggregated discovery (apidiscovery.k8s.io/v2) for `/api` and `/apis`
    /// when the client asks for it.
    fn discovery(&self, method: &Method, path: &str, accept: &str) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            return method_not_allowed();
        }
        let path = path.trim_end_matches('/');
        if discovery::wants_aggregated_v2(accept) {
            let doc = match path {
                "/api" => Some(discovery::aggregated_core()),
                "/apis" => Some(discovery::aggregated_apis()),
                _ => None,
            };
            if let Some(doc) = doc {
                let mut resp = response::json(StatusCode::OK, &doc);
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static(discovery::AGGREGATED_DISCOVERY_V2_MEDIA_TYPE),
                );
                return resp;
            }
        }
        match discovery::document(path, &self.server_address) {
            Some(doc) => response::json(StatusCode::OK, &doc),
            None => response::not_found_path(),
        }
    }

    async fn non_resource(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &http::HeaderMap,
    ) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            return method_not_allowed();
        }
        let mut segments = path.trim_start_matches('/').splitn(2, '/');
        let first = segments.next().unwrap_or_default();
        let single = segments.next().filter(|s| !s.is_empty());
        let endpoint = match first {
            "healthz" => &self.healthz,
            "livez" => &self.livez,
            "readyz" => &self.readyz,
            "version" if single.is_none() => {
                return response::json(StatusCode::OK, &crate::version::info());
            }
            "openapi" => return crate::openapi::serve(single.unwrap_or_default(), query, headers),
            "metrics" if single.is_none() => return self.metrics.response(),
            _ => return response::not_found_path(),
        };
        let answer = endpoint.answer(single, query).await;
        let status =
            StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        response::text(status, answer.body)
    }
}

/// Records a long-running request when its response body ends.
struct Ended {
    metrics: Arc<Metrics>,
    labels: Option<RequestLabels>,
    code: StatusCode,
    started: Instant,
    _open: Option<GaugeGuard>,
}

impl Drop for Ended {
    fn drop(&mut self) {
        if let Some(labels) = &self.labels {
            self.metrics
                .record(labels, self.code, self.started.elapsed());
        }
    }
}

/// Media types request bodies may use.
const BODY_MEDIA_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    skiff_protobuf::MEDIA_TYPE,
];

/// A Kubernetes protobuf body as the JSON object kube-apiserver would have
/// decoded (what typed clients such as `kubectl create <kind>` send).
fn protobuf_to_json(
    info: &resources::ResourceInfo,
    subresource: Option<&str>,
    body: &[u8],
) -> Result<bytes::Bytes, ApiError> {
    let (api_version, kind) = match subresource.and_then(|s| info.subresource(s)) {
        Some(sub) => match sub.kind_group_version {
            Some(("", v)) => (v.to_owned(), sub.kind),
            Some((g, v)) => (format!("{g}/{v}"), sub.kind),
            None => (info.api_version(), sub.kind),
        },
        None => (info.api_version(), info.kind),
    };
    if !skiff_protobuf::supports(&api_version, kind) {
        return Err(ApiError::UnsupportedMediaType {
            accepted: vec!["application/json".into(), "application/yaml".into()],
        });
    }
    let obj = skiff_protobuf::decode_with_defaults(body, &api_version, kind)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    serde_json::to_vec(&obj)
        .map(bytes::Bytes::from)
        .map_err(|e| ApiError::InternalError(e.to_string()))
}
/// Media types PATCH bodies may use.
const PATCH_MEDIA_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

/// Refuses bodies in media types we cannot decode (notably protobuf) with
/// 415, which clients answer by retrying in JSON.
fn check_content_type(method: &Method, headers: &http::HeaderMap) -> Result<(), ApiError> {
    let accepted: &[&str] = match *method {
        Method::POST | Method::PUT => BODY_MEDIA_TYPES,
        Method::PATCH => PATCH_MEDIA_TYPES,
        _ => return Ok(()),
    };
    let Some(value) = headers.get(http::header::CONTENT_TYPE) else {
        return Ok(());
    };
    let media = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if media.is_empty() || accepted.contains(&media.as_str()) {
        return Ok(());
    }
    Err(ApiError::UnsupportedMediaType {
        accepted: accepted.iter().map(|s| (*s).to_owned()).collect(),
    })
}

/// The request body, at most [`MAX_REQUEST_BODY`] bytes.
async fn read_body<B>(body: B) -> Result<bytes::Bytes, ApiError>
where
    B: hyper::body::Body<Data = bytes::Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use http_body_util::BodyExt;
    match http_body_util::Limited::new(body, MAX_REQUEST_BODY)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(
            ApiError::RequestEntityTooLarge(format!("limit is {MAX_REQUEST_BODY}")),
        ),
        Err(err) => Err(ApiError::BadRequest(format!(
            "reading the request body: {err}"
        ))),
    }
}

fn method_not_allowed() -> Response<Body> {
    response::status_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
    )
}

fn anonymous_allowed(path: &str) -> bool {
    ANONYMOUS_PATHS.iter().any(|p| {
        path == *p
            || path
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn anonymous_paths() {
        for ok in ["/healthz", "/livez", "/readyz", "/readyz/etcd", "/version"] {
            assert!(super::anonymous_allowed(ok), "{ok}");
        }
        for no in [
            "/api",
            "/healthzz",
            "/versions",
            "/api/v1/namespaces",
            "/metrics",
        ] {
            assert!(!super::anonymous_allowed(no), "{no}");
        }
    }
}
