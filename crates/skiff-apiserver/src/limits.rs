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

/// A Go `time.Duration`'s sign and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoDuration {
    /// Zero or more.
    Positive(Duration),
    /// Less than zero.
    Negative(Duration),
}

/// Parses a duration as Go's `time.ParseDuration` does (`300ms`, `1.5h`,
/// `2h45m`, `-1s`), with its error messages.
pub fn parse_go_duration(input: &str) -> Result<GoDuration, String> {
    let quoted = go_quote(input);
    let invalid = || format!("time: invalid duration {quoted}");
    let mut s = input;
    let negative = match s.as_bytes().first() {
        Some(b'-') => {
            s = &s[1..];
            true
        }
        Some(b'+') => {
            s = &s[1..];
            false
        }
        _ => false,
    };
    if s == "0" {
        return Ok(GoDuration::Positive(Duration::ZERO));
    }
    if s.is_empty() {
        return Err(invalid());
    }
    // Nanoseconds, with room to detect overflow past Go's int64.
    let mut total: u128 = 0;
    while !s.is_empty() {
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, rest) = s.split_at(int_len);
        let (frac_part, rest) = match rest.strip_prefix('.') {
            Some(after) => {
                let frac_len = after.bytes().take_while(u8::is_ascii_digit).count();
                after.split_at(frac_len)
            }
            None => ("", rest),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(rest.len(), |(i, _)| i);
        let (unit, rest) = rest.split_at(unit_len);
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration {quoted}"));
        }
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {quoted}",
                    go_quote(unit)
                ));
            }
        };
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        let mut nanos = whole.checked_mul(scale).ok_or_else(invalid)?;
        // The fraction, digit by digit, truncated as Go truncates it.
        let mut place = scale;
        for digit in frac_part.bytes() {
            place /= 10;
            if place == 0 {
                break;
            }
            nanos += u128::from(digit - b'0') * place;
        }
        total = total.checked_add(nanos).ok_or_else(invalid)?;
        if total > i64::MAX as u128 + u128::from(negative) {
            return Err(invalid());
        }
        s = rest;
    }
    let nanos = u64::try_from(total).map_err(|_| invalid())?;
    let duration = Duration::from_nanos(nanos);
    Ok(if negative && nanos > 0 {
        GoDuration::Negative(duration)
    } else {
        GoDuration::Positive(duration)
    })
}

/// `s` in double quotes with quotes, backslashes and control characters
/// escaped, as Go's `%q`-style quoting shows it.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
