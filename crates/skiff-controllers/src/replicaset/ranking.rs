//! Which pods a scale-down deletes first: upstream's
//! `ActivePodsWithRanks` order (with the PodDeletionCost and
//! LogarithmicScaleDown features, both on by default).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;

use crate::cached_pod::CachedPod;
use crate::podutil::{is_pod_active, is_pod_ready, max_container_restarts, phase, ready_time};

/// The annotation that makes a pod cheaper (lower) or dearer to delete.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

fn node_name(pod: &CachedPod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn phase_ordinal(pod: &CachedPod) -> u8 {
    match phase(pod) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        // Upstream's map has no other phases: they rank as Pending.
        _ => 0,
    }
}

/// The pod's deletion cost; a missing or unparsable annotation is 0.
pub fn deletion_cost(pod: &CachedPod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_DELETION_COST))
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0)
}

/// `floor(log2(now - t))` in nanoseconds, -1 for times not in the past, so
/// pods of similar age (within a factor of two) compare equal.
fn log_rank(t: Timestamp, now: Timestamp) -> i64 {
    let d = now.duration_since(t).as_nanos();
    if d > 0 {
        // Truncation is the point: the bucket index.
        #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
        let r = (d as f64).log2() as i64;
        r
    } else {
        -1
    }
}

/// Orders two optional timestamps with "newer first": a missing time first,
/// then the later one; pods in the same log2 age bucket tie and fall back
/// to comparing UIDs.
fn newer_first(
    a: Option<Timestamp>,
    b: Option<Timestamp>,
    now: Option<Timestamp>,
    uids: (&str, &str),
) -> Option<Ordering> {
    if a == b {
        return None;
    }
    let (Some(ta), Some(tb)) = (a, b) else {
        // afterOrZero: the zero time sorts first.
        return Some(if a.is_none() {
            Ordering::Less
        } else {
            Ordering::Greater
        });
    };
    let Some(now) = now else {
        return Some(if ta > tb {
            Ordering::Less
        } else {
            Ordering::Greater
        });
    };
    let diff = log_rank(ta, now) - log_rank(tb, now);
    if diff == 0 {
        return Some(uids.0.cmp(uids.1));
    }
    Some(if diff < 0 {
        Ordering::Less
    } else {
        Ordering::Greater
    })
}

/// `Less` of `ActivePodsWithRanks`: whether pod `a` (of rank `ra`) should
/// be deleted before pod `b` (of rank `rb`).
pub fn compare(
    a: &CachedPod,
    ra: usize,
    b: &CachedPod,
    rb: usize,
    now: Option<Timestamp>,
) -> Ordering {
    let (na, nb) = (node_name(a), node_name(b));
    // 1. Unassigned before assigned.
    if na != nb && (na.is_empty() || nb.is_empty()) {
        return if na.is_empty() {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    // 2. Pending before Unknown before Running.
    let (pa, pb) = (phase_ordinal(a), phase_ordinal(b));
    if pa != pb {
        return pa.cmp(&pb);
    }
    // 3. Not ready before ready.
    let (ya, yb) = (is_pod_ready(a), is_pod_ready(b));
    if ya != yb {
        return if ya {
            Ordering::Greater
        } else {
            Ordering::Less
        };
    }
    // 4. Lower deletion cost first.
    let (ca, cb) = (deletion_cost(a), deletion_cost(b));
    if ca != cb {
        return ca.cmp(&cb);
    }
    // 5. More pods of the same owner on the node first.
    if ra != rb {
        return rb.cmp(&ra);
    }
    let uids = (
        a.metadata.uid.as_deref().unwrap_or(""),
        b.metadata.uid.as_deref().unwrap_or(""),
    );
    // 6. Ready for less time first.
    if ya
        && yb
        && let Some(o) = newer_first(ready_time(a), ready_time(b), now, uids)
    {
        return o;
    }
    // 7. More container restarts first.
    let (ka, kb) = (max_container_restarts(a), max_container_restarts(b));
    if ka != kb {
        return kb.cmp(&ka);
    }
    // 8. Newer first.
    let created = |p: &CachedPod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    if let Some(o) = newer_first(created(a), created(b), now, uids) {
        return o;
    }
    Ordering::Equal
}

/// The `diff` pods of `pods` to delete first. Each pod's rank is the count
/// of active `related` pods (the owner's and its siblings') on its node.
pub fn pods_to_delete(
    pods: &[Arc<CachedPod>],
    related: &[Arc<CachedPod>],
    diff: usize,
    now: Timestamp,
) -> Vec<Arc<CachedPod>> {
    if diff >= pods.len() {
        return pods.to_vec();
    }
    let mut on_node: HashMap<&str, usize> = HashMap::new();
    for p in related {
        let n = node_name(p);
        if !n.is_empty() && is_pod_active(p) {
            *on_node.entry(n).or_default() += 1;
        }
    }
    let mut ranked: Vec<(usize, &Arc<CachedPod>)> = pods
        .iter()
        .map(|p| (on_node.get(node_name(p)).copied().unwrap_or(0), p))
        .collect();
    merge_sort(&mut ranked, &|(ra, a), (rb, b)| {
        compare(a, *ra, b, *rb, Some(now))
    });
    ranked
        .into_iter()
        .take(diff)
        .map(|(_, p)| p.clone())
        .collect()
}

/// A stable merge sort that tolerates a comparison that is not a strict
/// total order (log-scale age buckets are not transitive), where the
/// standard library's sorts may panic.
fn merge_sort<T: Clone>(v: &mut Vec<T>, less: &dyn Fn(&T, &T) -> Ordering) {
    if v.len() <= 1 {
        return;
    }
    let mut right = v.split_off(v.len() / 2);
    merge_sort(v, less);
    merge_sort(&mut right, less);
    let left = std::mem::take(v);
    let mut out = Vec::with_capacity(left.len() + right.len());
    let (mut i, mut j) = (0, 0);
    while i < left.len() && j < right.len() {
        if less(&right[j], &left[i]) == Ordering::Less {
            out.push(right[j].clone());
            j += 1;
        } else {
            out.push(left[i].clone());
            i += 1;
        }
    }
    out.extend_from_slice(&left[i..]);
    out.extend_from_slice(&right[j..]);
    *v = out;
}

#[cfg(test)]
#[path = "ranking_tests.rs"]
mod tests;
