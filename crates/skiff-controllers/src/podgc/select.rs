//! Which pods a collector pass deletes: pure functions of the cached pods
//! and nodes.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;

use crate::cached_pod::CachedPod;
use crate::nodelifecycle::taints::{self, TAINT_NODE_OUT_OF_SERVICE};
use crate::podutil::phase;

/// Succeeded or Failed (any phase but Pending, Running and Unknown, as
/// upstream's `isPodTerminated`).
pub fn is_pod_terminated(pod: &CachedPod) -> bool {
    !matches!(phase(pod), "Pending" | "Running" | "Unknown" | "")
}

fn is_evicted(pod: &CachedPod) -> bool {
    phase(pod) == "Failed"
        && pod.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted")
}

fn node_name(pod: &CachedPod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

/// The terminated pods over `threshold`: evicted ones first, then the
/// oldest (by creation, then name).
pub fn terminated_to_delete(pods: &[Arc<CachedPod>], threshold: usize) -> Vec<Arc<CachedPod>> {
    let mut terminated: Vec<Arc<CachedPod>> = pods
        .iter()
        .filter(|p| is_pod_terminated(p))
        .cloned()
        .collect();
    let Some(excess) = terminated.len().checked_sub(threshold).filter(|n| *n > 0) else {
        return Vec::new();
    };
    terminated.sort_by(|a, b| {
        is_evicted(b)
            .cmp(&is_evicted(a))
            .then_with(|| {
                let t = |p: &CachedPod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
                t(a).cmp(&t(b))
            })
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    terminated.truncate(excess);
    terminated
}

/// Terminating pods on nodes that are not Ready and carry the
/// out-of-service taint.
pub fn out_of_service_terminating(
    pods: &[Arc<CachedPod>],
    nodes: &[Arc<Node>],
) -> Vec<Arc<CachedPod>> {
    let out_of_service: HashSet<&str> = nodes
        .iter()
        .filter(|n| {
            !taints::is_node_ready(n)
                && taints::node_taints(n)
                    .iter()
                    .any(|t| t.key == TAINT_NODE_OUT_OF_SERVICE)
        })
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    if out_of_service.is_empty() {
        return Vec::new();
    }
    pods.iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_some() && out_of_service.contains(node_name(p))
        })
        .cloned()
        .collect()
}

/// Pods bound to one of `deleted_nodes`.
pub fn orphaned_pods(
    pods: &[Arc<CachedPod>],
    deleted_nodes: &HashSet<String>,
) -> Vec<Arc<CachedPod>> {
    if deleted_nodes.is_empty() {
        return Vec::new();
    }
    pods.iter()
        .filter(|p| deleted_nodes.contains(node_name(p)))
        .cloned()
        .collect()
}

/// Terminating pods that were never bound to a node.
pub fn unscheduled_terminating(pods: &[Arc<CachedPod>]) -> Vec<Arc<CachedPod>> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some() && node_name(p).is_empty())
        .cloned()
        .collect()
}
