//! Pure helpers of the Deployment controller (upstream's
//! `pkg/controller/deployment/util`): template hashing, surge and
//! unavailability fenceposts, revisions and replica annotations.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The label carrying the template hash on a Deployment's ReplicaSets and
/// pods.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// The revision of a ReplicaSet (and of its Deployment).
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// Revisions a ReplicaSet had before a rollback reused it.
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's replicas when the ReplicaSet was last scaled.
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
/// The Deployment's replicas plus maxSurge when the ReplicaSet was last
/// scaled.
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";

/// Annotations never copied from a Deployment to its ReplicaSets.
const SKIPPED_ANNOTATIONS: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION_ANNOTATION,
    REVISION_HISTORY_ANNOTATION,
    DESIRED_REPLICAS_ANNOTATION,
    MAX_REPLICAS_ANNOTATION,
    "deprecated.deployment.rollback.to",
];

/// Consonants and digits that cannot spell words (upstream's
/// `rand.SafeEncodeString` alphabet).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Maps each byte of `s` into the safe alphabet.
pub fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| char::from(SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()]))
        .collect()
}

/// FNV-1a, 32 bits.
pub fn fnv32a(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The pod-template-hash of `template` (upstream's `ComputeHash`): FNV-32a
/// of the template's canonical JSON, then the collision count as four
/// little-endian bytes, rendered in decimal through the safe alphabet.
/// Upstream hashes Go's printed struct, so the values differ from upstream's
/// but are stable across our restarts, which is what matters.
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    // serde_json serialises struct fields in declaration order and maps
    // sorted (BTreeMap): deterministic.
    let mut data = serde_json::to_vec(template).unwrap_or_default();
    if let Some(c) = collision_count {
        data.extend_from_slice(&c.to_le_bytes());
    }
    safe_encode(&fnv32a(&data).to_string())
}

/// The template without the pod-template-hash label.
fn without_hash(t: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = t.clone();
    if let Some(m) = t.metadata.as_mut()
        && let Some(labels) = m.labels.as_mut()
    {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
        if labels.is_empty() {
            m.labels = None;
        }
    }
    t
}

/// Drops nulls and empty objects and lists: Go's semantic equality treats
/// an empty struct, slice or map like an absent one (kubectl sends
/// `resources: {}` where we have none).
fn prune_empty(v: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Null => true,
        Value::Object(m) => {
            m.retain(|_, v| !prune_empty(v));
            m.is_empty()
        }
        Value::Array(a) => {
            for x in a.iter_mut() {
                prune_empty(x);
            }
            a.is_empty()
        }
        _ => false,
    }
}

fn normalized(t: &PodTemplateSpec) -> serde_json::Value {
    let mut v = serde_json::to_value(without_hash(t)).unwrap_or_default();
    prune_empty(&mut v);
    v
}

/// Templates semantically equal but for the pod-template-hash label
/// (upstream's `EqualIgnoreHash`).
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    normalized(a) == normalized(b)
}

/// A percentage or an absolute number scaled against `total`: percentages
/// round up or down as asked.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            let prod = pct * i64::from(total);
            let v = if round_up {
                (prod + 99).div_euclid(100)
            } else {
                prod.div_euclid(100)
            };
            Ok(i32::try_from(v).unwrap_or(i32::MAX))
        }
    }
}

/// (maxSurge, maxUnavailable) as absolute numbers for `desired` replicas:
/// surge rounds up, unavailability down, and both zero means one may be
/// unavailable (upstream's `ResolveFenceposts`).
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> Result<(i32, i32), String> {
    let zero = IntOrString::Int(0);
    let surge = scaled_value(max_surge.unwrap_or(&zero), desired, true)?;
    let unavailable = scaled_value(max_unavailable.unwrap_or(&zero), desired, false)?;
    if surge == 0 && unavailable == 0 {
        return Ok((0, 1));
    }
    Ok((surge, unavailable))
}

/// The Deployment's desired replicas.
pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// Whether the strategy is Recreate.
pub fn is_recreate(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate")
}

fn fenceposts(d: &Deployment) -> (i32, i32) {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    // Validation rejects bad values; treat any that slip through as zero.
    resolve_fenceposts(
        ru.and_then(|r| r.max_surge.as_ref()),
        ru.and_then(|r| r.max_unavailable.as_ref()),
        replicas(d),
    )
    .unwrap_or((0, 1))
}

/// Absolute maxSurge (0 for Recreate).
pub fn max_surge(d: &Deployment) -> i32 {
    if is_recreate(d) { 0 } else { fenceposts(d).0 }
}

/// Absolute maxUnavailable, at most the replicas (0 for Recreate or no
/// replicas).
pub fn max_unavailable(d: &Deployment) -> i32 {
    let r = replicas(d);
    if is_recreate(d) || r == 0 {
        return 0;
    }
    fenceposts(d).1.min(r)
}

/// A ReplicaSet's spec.replicas.
pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

/// A ReplicaSet's status.availableReplicas.
pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

/// An integer annotation.
fn int_annotation(rs: &ReplicaSet, key: &str) -> Option<i32> {
    rs.metadata.annotations.as_ref()?.get(key)?.parse().ok()
}

/// The ReplicaSet's revision (0 when unset or invalid).
pub fn revision(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION_ANNOTATION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The desired-replicas annotation.
pub fn desired_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    int_annotation(rs, DESIRED_REPLICAS_ANNOTATION)
}

/// The max-replicas annotation.
pub fn max_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    int_annotation(rs, MAX_REPLICAS_ANNOTATION)
}

/// Sets desired-replicas and max-replicas; whether anything changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let (d, m) = (desired.to_string(), max.to_string());
    let changed = a.get(DESIRED_REPLICAS_ANNOTATION) != Some(&d)
        || a.get(MAX_REPLICAS_ANNOTATION) != Some(&m);
    a.insert(DESIRED_REPLICAS_ANNOTATION.to_owned(), d);
    a.insert(MAX_REPLICAS_ANNOTATION.to_owned(), m);
    changed
}

/// Copies the Deployment's annotations to the ReplicaSet and raises its
/// revision to `new_revision`, keeping the old one in revision-history (a
/// rollback reuses an old ReplicaSet); a new ReplicaSet also gets the
/// replica annotations. Whether anything changed.
pub fn set_new_replica_set_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
) -> bool {
    let mut changed = false;
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if SKIPPED_ANNOTATIONS.contains(&k.as_str()) || annotations.get(k) == Some(v) {
            continue;
        }
        annotations.insert(k.clone(), v.clone());
        changed = true;
    }
    let old = annotations.get(REVISION_ANNOTATION).cloned();
    let old_int = match old.as_deref() {
        None | Some("") => 0,
        Some(s) => match s.parse::<i64>() {
            Ok(v) => v,
            Err(_) => return changed,
        },
    };
    if old_int < new_revision {
        annotations.insert(REVISION_ANNOTATION.to_owned(), new_revision.to_string());
        changed = true;
        if let Some(old) = old.filter(|o| !o.is_empty()) {
            let history = match annotations.get(REVISION_HISTORY_ANNOTATION) {
                Some(h) if !h.is_empty() => format!("{h},{old}"),
                _ => old,
            };
            annotations.insert(REVISION_HISTORY_ANNOTATION.to_owned(), history);
        }
    }
    if !exists {
        let r = replicas(d);
        changed |= set_replicas_annotations(rs, r, r + max_surge(d));
    }
    changed
}

/// Sorts oldest first, then by name (upstream's
/// `ReplicaSetsByCreationTimestamp`).
pub fn sort_by_creation(rss: &mut [ReplicaSet]) {
    rss.sort_by(|a, b| {
        let ta = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let tb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
        ta.cmp(&tb)
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// Replicas a new ReplicaSet should have now (upstream's
/// `NewRSNewReplicas`): for RollingUpdate as many as the surge allows on
/// top of all ReplicaSets' replicas, never above the desired count.
pub fn new_rs_new_replicas(d: &Deployment, all: &[ReplicaSet], new_rs: &ReplicaSet) -> i32 {
    let desired = replicas(d);
    if is_recreate(d) {
        return desired;
    }
    let current: i32 = all.iter().map(rs_replicas).sum();
    let max_total = desired + max_surge(d);
    let cur_new = rs_replicas(new_rs);
    if current >= max_total {
        return cur_new;
    }
    let up = (max_total - current).min(desired - cur_new);
    cur_new + up
}

/// How much to scale the old ReplicaSets down in total this round
/// (upstream's `reconcileOldReplicaSets` bound): all pods minus the minimum
/// available minus the new ReplicaSet's unavailable pods.
pub fn max_scaled_down(d: &Deployment, all: &[ReplicaSet], new_rs: Option<&ReplicaSet>) -> i32 {
    let all_pods: i32 = all.iter().map(rs_replicas).sum();
    let min_available = replicas(d) - max_unavailable(d);
    let new_unavailable = new_rs.map_or(0, |n| rs_replicas(n) - rs_available(n));
    all_pods - min_available - new_unavailable
}

/// Scale-downs of unhealthy old pods (oldest ReplicaSet first), at most
/// `max` in total: (index in `old`, new size).
pub fn cleanup_unhealthy(old: &[ReplicaSet], max: i32) -> Vec<(usize, i32)> {
    let mut out = Vec::new();
    let mut total = 0;
    for (i, rs) in old.iter().enumerate() {
        if total >= max {
            break;
        }
        let (r, avail) = (rs_replicas(rs), rs_available(rs));
        if r == 0 || avail >= r {
            continue;
        }
        let n = (max - total).min(r - avail);
        out.push((i, r - n));
        total += n;
    }
    out
}

/// Scale-downs of available old pods (oldest first) keeping the minimum
/// available across all ReplicaSets: (index in `old`, new size).
///
/// A ReplicaSet counts at most `spec.replicas` available pods. Just after
/// a scale-down its status still counts the pods it is deleting (the
/// ReplicaSet controller computes status from the pods it had before
/// deleting). Counting them let a second scale-down in that window take
/// availability below the minimum.
pub fn scale_down_old_for_rolling(
    d: &Deployment,
    all: &[ReplicaSet],
    old: &[ReplicaSet],
) -> Vec<(usize, i32)> {
    let min_available = replicas(d) - max_unavailable(d);
    let available: i32 = all
        .iter()
        .map(|rs| rs_available(rs).min(rs_replicas(rs)))
        .sum();
    if available <= min_available {
        return Vec::new();
    }
    let budget = available - min_available;
    let mut out = Vec::new();
    let mut total = 0;
    for (i, rs) in old.iter().enumerate() {
        if total >= budget {
            break;
        }
        let r = rs_replicas(rs);
        if r == 0 {
            continue;
        }
        let n = r.min(budget - total);
        out.push((i, r - n));
        total += n;
    }
    out
}

/// The share of `to_add` replicas for `rs` in proportional scaling
/// (upstream's `GetProportion` with `getReplicaSetFraction`).
pub fn proportion(d: &Deployment, rs: &ReplicaSet, to_add: i32, added: i32) -> i32 {
    let r = rs_replicas(rs);
    if r == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = if replicas(d) == 0 {
        -r
    } else {
        let deployment_replicas = replicas(d) + max_surge(d);
        let annotated = max_replicas_annotation(rs)
            .unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
        if annotated == 0 {
            0
        } else {
            let size = f64::from(r) * f64::from(deployment_replicas) / f64::from(annotated);
            // Bounded by i32 products above.
            #[allow(clippy::cast_possible_truncation)]
            let rounded = size.round() as i32;
            rounded - r
        }
    };
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}
