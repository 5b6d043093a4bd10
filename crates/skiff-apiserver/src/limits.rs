//! Self-defense: upstream's in-flight limits (`--max-requests-inflight`,
//! `--max-mutating-requests-inflight`) and request deadlines
//! (`--request-timeout`, the `timeout` query parameter).
//!
//! - Long-running requests (watches, proxy, and the log, exec, attach and
//!   portforward subresources) take no slot and have no deadline.
//! - Health probes (`/healthz`, `/livez`, `/readyz`) and members of
//!   `system:masters` are never turned away, as upstream's priority and
//!   fairness exempts them.
//! - Anything else waits for no one: over the limit it gets 429 at once.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use skiff_api::duration::{GoDuration, parse_go_duration};
use skiff_api::status::ApiError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::{GaugeGuard, Metrics};
use crate::request_info::{self, RequestInfo};

/// Upstream's default `--max-requests-inflight`.
pub const DEFAULT_MAX_REQUESTS_INFLIGHT: usize = 400;
/// Upstream's default `--max-mutating-requests-inflight`.
pub const DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT: usize = 200;
/// Upstream's default `--request-timeout`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The `Retry-After` of a 429, in seconds.
const RETRY_AFTER_SECONDS: i32 = 1;

/// The group whose members are never throttled.
const MASTERS_GROUP: &str = crate::pki::MASTERS_GROUP;

/// Paths never throttled (load balancers' and kubelets' probes).
const EXEMPT_PATHS: &[&str] = &["/healthz", "/livez", "/readyz"];

/// Verbs of long-running requests.
const LONG_RUNNING_VERBS: &[&str] = &["watch", "proxy"];
/// Subresources of long-running requests.
const LONG_RUNNING_SUBRESOURCES: &[&str] = &["attach", "exec", "proxy", "log", "portforward"];

/// Which limit a request counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// get, list (and watch, which is long-running anyway).
    ReadOnly,
    /// Everything else.
    Mutating,
}

impl RequestKind {
    /// The kind of a request with this (lower-case) verb, as upstream
    /// classifies it.
    pub fn of(verb: &str) -> RequestKind {
        match verb {
            "get" | "list" | "watch" => RequestKind::ReadOnly,
            _ => RequestKind::Mutating,
        }
    }

    /// The `request_kind` label (`readOnly`, `mutating`).
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::ReadOnly => "readOnly",
            RequestKind::Mutating => "mutating",
        }
    }
}

/// The two in-flight limits; 0 means unlimited.
#[derive(Debug)]
pub struct Limits {
    read_only: Limit,
    mutating: Limit,
}

#[derive(Debug)]
struct Limit {
    slots: Option<Arc<Semaphore>>,
    gauge: Gauge,
}

/// A request's place among those in flight; the slot frees on drop.
#[derive(Debug)]
pub struct Slot {
    _permit: Option<OwnedSemaphorePermit>,
    _gauge: Option<GaugeGuard>,
}

impl Limits {
    /// Limits of `read_only` and `mutating` requests in flight (0: no
    /// limit), reported on `metrics`' `apiserver_current_inflight_requests`.
    pub fn new(read_only: usize, mutating: usize, metrics: &Metrics) -> Limits {
        let limit = |max: usize, kind: RequestKind| Limit {
            slots: (max > 0).then(|| Arc::new(Semaphore::new(max))),
            gauge: metrics.inflight_gauge(kind.as_str()),
        };
        Limits {
            read_only: limit(read_only, RequestKind::ReadOnly),
            mutating: limit(mutating, RequestKind::Mutating),
        }
    }

    /// A slot for a request of `kind`, or `None` when all are taken.
    /// `privileged` requests (`system:masters`) get through regardless,
    /// without a slot (and uncounted) when all are taken.
    pub fn try_acquire(&self, kind: RequestKind, privileged: bool) -> Option<Slot> {
        let limit = match kind {
            RequestKind::ReadOnly => &self.read_only,
            RequestKind::Mutating => &self.mutating,
        };
        let permit = match &limit.slots {
            None => None,
            Some(slots) => match slots.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) if privileged => {
                    return Some(Slot {
                        _permit: None,
                        _gauge: None,
                    });
                }
                Err(_) => return None,
            },
        };
        Some(Slot {
            _permit: permit,
            _gauge: Some(GaugeGuard::new(limit.gauge.clone())),
        })
    }
}

/// True for requests that stay open (watches, proxy, exec, attach,
/// portforward, log): no slot, no deadline.
pub fn is_long_running(info: &RequestInfo) -> bool {
    match info {
        RequestInfo::Resource(r) => {
            LONG_RUNNING_VERBS.contains(&r.verb)
                || r.subresource
                    .as_deref()
                    .is_some_and(|s| LONG_RUNNING_SUBRESOURCES.contains(&s))
        }
        RequestInfo::NonResource(_) => false,
    }
}

/// True for paths that are never throttled.
pub fn is_exempt_path(path: &str) -> bool {
    EXEMPT_PATHS.iter().any(|p| {
        path == *p
            || path
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// True for members of `system:masters`.
pub fn is_privileged(groups: &[String]) -> bool {
    groups.iter().any(|g| g == MASTERS_GROUP)
}

/// The 429 of a request over the limit.
pub fn too_many_requests() -> ApiError {
    ApiError::TooManyRequests {
        message: "Too many requests, please try again later.".to_owned(),
        retry_after_seconds: RETRY_AFTER_SECONDS,
    }
}

/// The 504 of a request past its deadline.
pub fn timed_out() -> ApiError {
    ApiError::Timeout {
        message: "request did not complete within requested timeout - context deadline exceeded"
            .to_owned(),
        retry_after_seconds: 0,
    }
}

/// How long a request may take: the `timeout` query parameter when it is
/// positive and shorter than `max`, else `max`. A malformed one is a 400.
pub fn request_timeout(query: Option<&str>, max: Duration) -> Result<Duration, ApiError> {
    let value = request_info::query_value(query, "timeout").unwrap_or_default();
    if value.is_empty() {
        return Ok(max);
    }
    match parse_go_duration(&value) {
        Ok(GoDuration::Positive(d)) if !d.is_zero() && d < max => Ok(d),
        Ok(_) => Ok(max),
        Err(err) => Err(ApiError::BadRequest(format!(
            "invalid timeout specified in the request URL - {err}"
        ))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
