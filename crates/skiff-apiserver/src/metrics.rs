//! `/metrics`: the API server's Prometheus metrics under upstream's names,
//! labels and buckets (`apiserver_request_total`,
//! `apiserver_request_duration_seconds`, `apiserver_current_inflight_requests`,
//! `apiserver_longrunning_requests`, `apiserver_request_terminations_total`,
//! `etcd_request_duration_seconds`, `process_*`).
//!
//! Which labels a request gets is decided once, from its [`RequestInfo`],
//! by [`Metrics::describe`]; see [`RequestLabels`] for how upstream
//! normalises the verb and scope.

mod process;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Response, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use skiff_store::{Operation, StoreObserver};

use crate::request_info::{self, RequestInfo};
use crate::response::{self, Body};

/// Upstream's buckets for request and storage latencies (seconds).
pub const LATENCY_BUCKETS: [f64; 23] = [
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

/// The `component` label of API requests.
const APISERVER: &str = "apiserver";

/// Verbs reported as themselves; anything else is reported as `other`.
const VALID_VERBS: &[&str] = &[
    "APPLY",
    "CONNECT",
    "CREATE",
    "DELETE",
    "DELETECOLLECTION",
    "GET",
    "LIST",
    "PATCH",
    "POST",
    "PROXY",
    "PUT",
    "UPDATE",
    "WATCH",
    "WATCHLIST",
];

/// Subresources whose requests are reported as `CONNECT`.
const CONNECT_SUBRESOURCES: &[&str] = &["log", "exec", "portforward", "attach", "proxy"];

/// Server-side apply's patch type: PATCHes in it are reported as APPLY.
const APPLY_PATCH: &str = "application/apply-patch+yaml";

/// Health endpoints, instrumented (with an empty component) as upstream does.
const HEALTH_PATHS: &[&str] = &["/healthz", "/livez", "/readyz"];

/// The labels of one request, as upstream's `MonitorRequest` computes them.
///
/// - `verb`: from the HTTP method, GET becoming LIST unless one object is
///   named; WATCH for watches, APPLY for server-side apply patches,
///   CONNECT for log/exec/attach/portforward/proxy subresources.
/// - `scope`: `resource` when one object is named or created, else
///   `namespace` when namespaced, else `cluster`; empty for non-resource
///   paths.
/// - `dry_run`: the sorted distinct `dryRun` values (`All`), `invalid` for
///   anything else, empty without one.
///
/// Fields are in alphabetical order, as upstream's exposition orders labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Empty for API requests, `""` for health endpoints.
    pub component: &'static str,
    /// `""`, `All` or `invalid`.
    pub dry_run: String,
    /// API group.
    pub group: String,
    /// Resource (plural).
    pub resource: String,
    /// `resource`, `namespace`, `cluster` or empty.
    pub scope: &'static str,
    /// Subresource, or the path of a non-resource request.
    pub subresource: String,
    /// Upper-case reported verb.
    pub verb: &'static str,
    /// API version.
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: u16,
    component: &'static str,
    dry_run: String,
    group: String,
    resource: String,
    scope: &'static str,
    subresource: String,
    verb: &'static str,
    version: String,
}

/// Labels without `dry_run` (long-running gauge).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NoDryRunLabels {
    component: &'static str,
    group: String,
    resource: String,
    scope: &'static str,
    subresource: String,
    verb: &'static str,
    version: String,
}

/// Labels without `dry_run`, with `code` (terminations).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TerminationLabels {
    code: u16,
    component: &'static str,
    group: String,
    resource: String,
    scope: &'static str,
    subresource: String,
    verb: &'static str,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    request_kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StorageLabels {
    operation: &'static str,
    r#type: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Every metric the API server exports, and its registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<CodeLabels, Counter>,
    durations: HistogramFamily<RequestLabels>,
    terminations: Family<TerminationLabels, Counter>,
    inflight: Family<KindLabels, Gauge>,
    long_running: Family<NoDryRunLabels, Gauge>,
    storage: Arc<StorageMetrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh set of metrics in its own registry.
    pub fn new() -> Metrics {
        Metrics::with_collectors([])
    }

    /// [`Metrics::new`], also serving `collectors` (other components'
    /// metrics).
    pub fn with_collectors(collectors: impl IntoIterator<Item = SharedCollector>) -> Metrics {
        let mut registry = Registry::default();
        for c in collectors {
            registry.register_collector(Box::new(c));
        }
        let requests = Family::<CodeLabels, Counter>::default();
        registry.register(
            "apiserver_request",
            "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code",
            requests.clone(),
        );
        let durations = HistogramFamily::<RequestLabels>::new_with_constructor(latency_histogram);
        registry.register(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component",
            durations.clone(),
        );
        let terminations = Family::<TerminationLabels, Counter>::default();
        registry.register(
            "apiserver_request_terminations",
            "Number of requests which apiserver terminated in self-defense",
            terminations.clone(),
        );
        let inflight = Family::<KindLabels, Gauge>::default();
        registry.register(
            "apiserver_current_inflight_requests",
            "Number of currently used inflight request limit of this apiserver per request kind",
            inflight.clone(),
        );
        for request_kind in ["readOnly", "mutating"] {
            let _ = inflight.get_or_create(&KindLabels { request_kind });
        }
        let long_running = Family::<NoDryRunLabels, Gauge>::default();
        registry.register(
            "apiserver_longrunning_requests",
            "Gauge of all active long-running apiserver requests broken out by verb, group, version, resource, scope and component. Not all requests are tracked this way",
            long_running.clone(),
        );
        let storage = Arc::new(StorageMetrics::new(&mut registry));
        process::register(&mut registry);
        Metrics {
            registry,
            requests,
            durations,
            terminations,
            inflight,
            long_running,
            storage,
        }
    }

    /// The observer to hang on the store so its latencies show up as
    /// `etcd_request_duration_seconds`.
    pub fn store_observer(&self) -> Arc<dyn StoreObserver> {
        self.storage.clone()
    }

    /// The labels of a request, or `None` for requests upstream does not
    /// count (discovery, `/version`, `/openapi`, `/metrics`, and paths no
    /// resource serves, which would otherwise let any client mint label
    /// values).
    pub fn describe(
        method: &Method,
        info: &RequestInfo,
        query: Option<&str>,
        content_type: Option<&str>,
    ) -> Option<RequestLabels> {
        match info {
            RequestInfo::Resource(r) if is_served(r) => {
                let scope = if r.name.is_some() || r.verb == "create" {
                    "resource"
                } else if r.namespace.is_some() {
                    "namespace"
                } else {
                    "cluster"
                };
                let mut verb = canonical_verb(method, scope);
                if r.verb == "watch" || (*method == Method::GET && watch_param(query)) {
                    verb = "WATCH";
                }
                if verb == "PATCH" && content_type == Some(APPLY_PATCH) {
                    verb = "APPLY";
                }
                let subresource = r.subresource.clone().unwrap_or_default();
                if CONNECT_SUBRESOURCES.contains(&subresource.as_str()) {
                    verb = "CONNECT";
                }
                Some(RequestLabels {
                    component: APISERVER,
                    dry_run: dry_run(query),
                    group: r.group.clone(),
                    resource: r.resource.clone(),
                    scope,
                    subresource,
                    verb: if VALID_VERBS.contains(&verb) {
                        verb
                    } else {
                        "other"
                    },
                    version: r.version.clone(),
                })
            }
            RequestInfo::NonResource(n) if is_health_path(&n.path) => Some(RequestLabels {
                component: "",
                dry_run: dry_run(query),
                group: String::new(),
                resource: String::new(),
                scope: "",
                subresource: n.path.clone(),
                verb: match canonical_verb(method, "") {
                    v if VALID_VERBS.contains(&v) => v,
                    _ => "other",
                },
                version: String::new(),
            }),
            _ => None,
        }
    }

    /// Counts one finished request and its latency.
    pub fn record(&self, labels: &RequestLabels, code: StatusCode, elapsed: Duration) {
        self.requests.get_or_create(&with_code(labels, code)).inc();
        self.durations
            .get_or_create(labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a request rejected with 429 by the in-flight limit (it never
    /// ran, so it has no latency).
    pub fn record_dropped(&self, labels: &RequestLabels) {
        self.requests
            .get_or_create(&with_code(labels, StatusCode::TOO_MANY_REQUESTS))
            .inc();
        self.record_termination(labels, StatusCode::TOO_MANY_REQUESTS);
    }

    /// Counts a request the server ended in self-defense (429, 504).
    pub fn record_termination(&self, labels: &RequestLabels, code: StatusCode) {
        self.terminations
            .get_or_create(&TerminationLabels {
                code: code.as_u16(),
                component: labels.component,
                group: labels.group.clone(),
                resource: labels.resource.clone(),
                scope: labels.scope,
                subresource: labels.subresource.clone(),
                verb: labels.verb,
                version: labels.version.clone(),
            })
            .inc();
    }

    /// The gauge of requests in flight of one kind (`readOnly`, `mutating`).
    pub fn inflight_gauge(&self, request_kind: &'static str) -> Gauge {
        self.inflight
            .get_or_create_owned(&KindLabels { request_kind })
    }

    /// Counts one more open long-running request until the guard drops.
    pub fn long_running(&self, labels: &RequestLabels) -> GaugeGuard {
        let gauge = self.long_running.get_or_create_owned(&NoDryRunLabels {
            component: labels.component,
            group: labels.group.clone(),
            resource: labels.resource.clone(),
            scope: labels.scope,
            subresource: labels.subresource.clone(),
            verb: labels.verb,
            version: labels.version.clone(),
        });
        GaugeGuard::new(gauge)
    }

    /// Everything in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// The `/metrics` response.
    pub fn response(&self) -> Response<Body> {
        let mut resp = Response::new(response::full(self.encode()));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            ),
        );
        resp
    }
}

/// A collector shared with another component, which keeps updating it.
#[derive(Clone, Debug)]
pub struct SharedCollector(pub Arc<dyn Collector>);

impl Collector for SharedCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }
}

/// Adds one to a gauge until dropped.
#[derive(Debug)]
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    /// Increments `gauge` now and decrements it on drop.
    pub fn new(gauge: Gauge) -> GaugeGuard {
        gauge.inc();
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn with_code(labels: &RequestLabels, code: StatusCode) -> CodeLabels {
    CodeLabels {
        code: code.as_u16(),
        component: labels.component,
        dry_run: labels.dry_run.clone(),
        group: labels.group.clone(),
        resource: labels.resource.clone(),
        scope: labels.scope,
        subresource: labels.subresource.clone(),
        verb: labels.verb,
        version: labels.version.clone(),
    }
}

/// True for a resource (and subresource) in the resource table.
fn is_served(r: &request_info::ResourceRequest) -> bool {
    skiff_api::resources::by_gvr(&r.group, &r.version, &r.resource).is_some_and(|info| {
        r.subresource
            .as_deref()
            .is_none_or(|s| info.subresource(s).is_some())
    })
}

fn is_health_path(path: &str) -> bool {
    HEALTH_PATHS.iter().any(|p| {
        path == *p
            || path
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// Upstream's `CanonicalVerb`: GET and HEAD of a collection are LISTs.
fn canonical_verb(method: &Method, scope: &str) -> &'static str {
    match *method {
        Method::GET | Method::HEAD if scope != "resource" && !scope.is_empty() => "LIST",
        Method::GET | Method::HEAD => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// True when the first `watch` parameter is set and not `0`/`false`.
fn watch_param(query: Option<&str>) -> bool {
    request_info::query_value(query, "watch")
        .is_some_and(|v| !v.eq_ignore_ascii_case("0") && !v.eq_ignore_ascii_case("false"))
}

/// Upstream's `cleanDryRun`.
fn dry_run(query: Option<&str>) -> String {
    let Some(query) = query.filter(|q| q.contains("dryRun")) else {
        return String::new();
    };
    let mut values: Vec<String> = query
        .split('&')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (request_info::percent_decode(key) == "dryRun")
                .then(|| request_info::percent_decode(value))
        })
        .collect();
    if values.is_empty() {
        return String::new();
    }
    if values.iter().any(|v| v != "All") {
        return "invalid".to_owned();
    }
    values.sort();
    values.dedup();
    values.join(",")
}

/// `etcd_request_duration_seconds` and `etcd_requests_total`, fed by the
/// store observer.
#[derive(Debug)]
struct StorageMetrics {
    durations: HistogramFamily<StorageLabels>,
    requests: Family<StorageLabels, Counter>,
    /// Storage prefix (`/registry/deployments/`) → `type` label
    /// (`deployments.apps`).
    types: HashMap<&'static str, String>,
}

impl StorageMetrics {
    fn new(registry: &mut Registry) -> StorageMetrics {
        let durations = HistogramFamily::<StorageLabels>::new_with_constructor(latency_histogram);
        registry.register(
            "etcd_request_duration_seconds",
            "Etcd request latency in seconds for each operation and object type",
            durations.clone(),
        );
        let requests = Family::<StorageLabels, Counter>::default();
        registry.register(
            "etcd_requests",
            "Etcd request counts for each operation and object type",
            requests.clone(),
        );
        let mut types = HashMap::new();
        // Owners first, so a shared prefix is named after its owner.
        let mut resources: Vec<_> = skiff_api::resources::RESOURCES.iter().collect();
        resources.sort_by_key(|r| r.shares_storage_with.is_some());
        for r in resources {
            types
                .entry(r.storage_prefix)
                .or_insert_with(|| r.qualified_resource());
        }
        StorageMetrics {
            durations,
            requests,
            types,
        }
    }

    /// The `type` label of a key: the resource owning the longest storage
    /// prefix of `key`, else the segment after `/registry/`.
    fn type_of(&self, key: &str) -> String {
        let mut found = None;
        for (i, _) in key.match_indices('/').skip(1) {
            if let Some(t) = self.types.get(&key[..=i]) {
                found = Some(t);
            }
        }
        match found {
            Some(t) => t.clone(),
            None => key
                .strip_prefix("/registry/")
                .and_then(|rest| rest.split('/').next())
                .unwrap_or("unknown")
                .to_owned(),
        }
    }
}

impl StoreObserver for StorageMetrics {
    fn observe(&self, operation: Operation, key: &str, elapsed: Duration, _ok: bool) {
        let labels = StorageLabels {
            operation: operation.as_str(),
            r#type: self.type_of(key),
        };
        self.durations
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        self.requests.get_or_create(&labels).inc();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
