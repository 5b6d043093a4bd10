//! tcpSocket probes (upstream `pkg/probe/tcp`): success when a TCP connection
//! opens within the timeout; nothing is sent.

use std::time::Duration;

use k8s_openapi::api::core::v1::TCPSocketAction;

use super::net::dial;
use super::{ProbeOutcome, ProbeTarget, default_host, join_host_port, resolve_container_port};

/// Runs one tcpSocket probe.
pub(crate) async fn probe(
    action: &TCPSocketAction,
    target: &ProbeTarget,
    timeout: Duration,
) -> ProbeOutcome {
    let port = match resolve_container_port(&action.port, &target.container_ports) {
        Ok(p) => p,
        Err(e) => return ProbeOutcome::Unknown(e),
    };
    let host = match default_host(action.host.as_deref(), target) {
        Ok(h) => h,
        Err(e) => return ProbeOutcome::Unknown(e),
    };
    let addr = join_host_port(&host, port);
    match dial(&addr, timeout).await {
        // Dropping the stream closes it, as upstream closes right away.
        Ok(_stream) => ProbeOutcome::Success,
        Err(e) => ProbeOutcome::Failure(e),
    }
}
