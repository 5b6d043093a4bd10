//! Container probes: liveness, readiness and startup, as upstream's
//! `pkg/kubelet/prober` and `pkg/probe/{http,tcp,exec,grpc}`.
//!
//! [`run_probe`] makes one attempt of a probe's handler; [`spawn_worker`] runs
//! the per-container loop that applies periods, thresholds and startup gating and
//! reports thresholded results on a channel. The pod worker decides what a result
//! means (a liveness failure restarts the container; readiness feeds the
//! container's `ready` flag; a startup success sets `started`).
//!
//! Wiring for one container instance, as upstream's probe manager does it:
//! - no startup probe: `started` is true at once; spawn readiness/liveness
//!   workers with [`spawn_worker`];
//! - with a startup probe: keep a `watch::channel(false)` per container, spawn
//!   the startup worker ungated and readiness/liveness with
//!   [`spawn_gated_worker`] (or [`WorkerSpec::started`]); set the watch to true
//!   when the startup update says `true`.
//! - Until its first update, a container's readiness is `false`, liveness is
//!   healthy and started is unknown ([`ProbeKind::initial_result`]).
//! - On a liveness or startup `false` the worker ends by itself (upstream holds
//!   it until a new container id): restart the container and spawn new workers
//!   for the new instance. Stop all of a pod's liveness/startup workers when the
//!   pod is being deleted; readiness keeps running through termination.

mod exec;
mod grpc;
mod http;
mod net;
mod tcp;
mod worker;

#[cfg(test)]
mod grpc_tests;
#[cfg(test)]
mod http_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod worker_tests;

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ContainerPort, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub use exec::expand_command;
pub use worker::{
    ProbeEvent, ProbeUpdate, ProbeWorker, ThresholdState, WorkerSpec, spawn_gated_worker,
    spawn_worker,
};

/// The version the probes announce in `User-Agent` (`kube-probe/<major>.<minor>`).
pub const USER_AGENT: &str = "kube-probe/1.33";

/// Upstream's default `periodSeconds`.
pub const DEFAULT_PERIOD_SECONDS: i32 = 10;
/// Upstream's default `timeoutSeconds`.
pub const DEFAULT_TIMEOUT_SECONDS: i32 = 1;
/// Upstream's default `successThreshold`.
pub const DEFAULT_SUCCESS_THRESHOLD: i32 = 1;
/// Upstream's default `failureThreshold`.
pub const DEFAULT_FAILURE_THRESHOLD: i32 = 3;

/// Which of a container's three probes this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// Failure means the container is restarted.
    Liveness,
    /// Success means the container may receive traffic.
    Readiness,
    /// Gates the other two probes until it succeeds once.
    Startup,
}

impl ProbeKind {
    /// The result a worker starts from before any probe ran, as upstream's
    /// `initialValue`: liveness is presumed healthy, readiness not ready, and
    /// startup unknown (`None`). Workers never send this initial value.
    pub fn initial_result(self) -> Option<bool> {
        match self {
            ProbeKind::Liveness => Some(true),
            ProbeKind::Readiness => Some(false),
            ProbeKind::Startup => None,
        }
    }
}

impl fmt::Display for ProbeKind {
    /// Upstream's capitalised name, as used in event messages
    /// (`"Liveness probe failed: ..."`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        })
    }
}

/// The outcome of one probe attempt (upstream's `probe.Result` plus its output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The handler succeeded.
    Success,
    /// The handler succeeded with a caveat (an HTTP redirect to another host was
    /// not followed). Counts as success; upstream records a Warning event with
    /// this message.
    Warning(String),
    /// The handler failed; the message uses upstream's wording and is what
    /// upstream puts after `"<Kind> probe failed: "` in its event.
    Failure(String),
    /// The probe could not be run at all (e.g. a named port that the container
    /// does not declare). Upstream retries such an attempt and then throws the
    /// result away; the message follows `"<Kind> probe errored and resulted in
    /// unknown state: "` in its event.
    Unknown(String),
}

impl ProbeOutcome {
    /// Whether the attempt counts as a success for thresholds.
    pub fn is_success(&self) -> bool {
        matches!(self, ProbeOutcome::Success | ProbeOutcome::Warning(_))
    }
}

/// Runs a command in a container (the kubelet implements it over CRI `ExecSync`).
pub trait ExecRunner: Send + Sync {
    /// Runs `cmd` in `container_id` and returns its exit code and combined
    /// output. `timeout` is passed on to the runtime; the prober also enforces it
    /// and reports `command "..." timed out` when it runs out.
    fn exec(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<(i32, Vec<u8>), String>>;
}

impl std::fmt::Debug for dyn ExecRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExecRunner")
    }
}

/// What a probe is aimed at: the pod's address and the container's identity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeTarget {
    /// The pod's IP (the default host for httpGet, tcpSocket and grpc).
    pub pod_ip: Option<IpAddr>,
    /// The CRI container id that exec probes run in.
    pub container_id: String,
    /// The container's declared ports, for named probe ports.
    pub container_ports: Vec<ContainerPort>,
    /// The container's static environment (`env` with literal values), used to
    /// expand `$(VAR)` in exec probe commands as upstream does.
    pub env: Vec<(String, String)>,
}

/// Timing and thresholds of a probe, with upstream's defaults for unset or zero
/// fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeTiming {
    /// `initialDelaySeconds` (default 0).
    pub initial_delay: Duration,
    /// `periodSeconds` (default 10 s).
    pub period: Duration,
    /// `timeoutSeconds` (default 1 s).
    pub timeout: Duration,
    /// `successThreshold` (default 1).
    pub success_threshold: u32,
    /// `failureThreshold` (default 3).
    pub failure_threshold: u32,
}

impl ProbeTiming {
    /// Reads a probe's timing; a missing, zero or negative field takes
    /// upstream's default (API defaulting would have set it).
    pub fn of(probe: &Probe) -> Self {
        let or = |v: Option<i32>, default: i32| match v {
            Some(v) if v > 0 => v,
            _ => default,
        };
        let secs = |v: i32| Duration::from_secs(u64::from(v.unsigned_abs()));
        ProbeTiming {
            initial_delay: secs(probe.initial_delay_seconds.unwrap_or(0).max(0)),
            period: secs(or(probe.period_seconds, DEFAULT_PERIOD_SECONDS)),
            timeout: secs(or(probe.timeout_seconds, DEFAULT_TIMEOUT_SECONDS)),
            success_threshold: or(probe.success_threshold, DEFAULT_SUCCESS_THRESHOLD)
                .unsigned_abs(),
            failure_threshold: or(probe.failure_threshold, DEFAULT_FAILURE_THRESHOLD)
                .unsigned_abs(),
        }
    }
}

/// Runs one attempt of `probe` against `target` (no retries, no thresholds).
///
/// A probe with no handler cannot pass validation; it comes back `Unknown`.
#[tracing::instrument(skip_all, fields(kind = %kind, container_id = %target.container_id))]
pub async fn run_probe(
    probe: &Probe,
    kind: ProbeKind,
    target: &ProbeTarget,
    exec: &dyn ExecRunner,
) -> ProbeOutcome {
    let timeout = ProbeTiming::of(probe).timeout;
    let outcome = if let Some(action) = &probe.exec {
        exec::probe(action, target, exec, timeout).await
    } else if let Some(action) = &probe.http_get {
        http::probe(action, target, timeout).await
    } else if let Some(action) = &probe.tcp_socket {
        tcp::probe(action, target, timeout).await
    } else if let Some(action) = &probe.grpc {
        grpc::probe(action, target, timeout).await
    } else {
        // Upstream: "failed to find probe builder for container"; an empty
        // probe cannot pass validation, so this only guards odd input.
        ProbeOutcome::Unknown("missing probe handler".to_string())
    };
    tracing::debug!(?outcome, "probe ran");
    outcome
}

/// Resolves a probe's port: a number, or the name of a declared container
/// port, or as a last resort a number written as a string (upstream's
/// `ResolveContainerPort`). The error text is upstream's.
pub fn resolve_container_port(
    port: &IntOrString,
    container_ports: &[ContainerPort],
) -> Result<u16, String> {
    let number: i64 = match port {
        IntOrString::Int(n) => i64::from(*n),
        IntOrString::String(name) => {
            match container_ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
            {
                Some(p) => i64::from(p.container_port),
                None => name
                    .parse::<i64>()
                    .map_err(|_| format!("strconv.Atoi: parsing {name:?}: invalid syntax"))?,
            }
        }
    };
    match u16::try_from(number) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("invalid port number: {number}")),
    }
}

/// The host a probe dials when its action names none: the pod's IP.
fn default_host(host: Option<&str>, target: &ProbeTarget) -> Result<String, String> {
    match host {
        Some(h) if !h.is_empty() => Ok(h.to_string()),
        _ => target
            .pod_ip
            .map(|ip| ip.to_string())
            .ok_or_else(|| "pod has no IP address yet".to_string()),
    }
}

/// `net.JoinHostPort`: brackets IPv6 literals.
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Go's `%v` of a whole-second `time.Duration` (`1s`, `1m0s`, `1h0m0s`).
fn go_duration(d: Duration) -> String {
    let total = d.as_secs();
    let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}
