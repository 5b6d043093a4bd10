//! The PodDisruptionBudget arithmetic, free of I/O: expected and desired
//! healthy pods, the healthy count, the disrupted-pods map and the status
//! with its `DisruptionAllowed` condition.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::policy::v1::{
    PodDisruptionBudget, PodDisruptionBudgetSpec, PodDisruptionBudgetStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::cached_pod::CachedPod;
use crate::deployment::util::scaled_value;
use crate::podutil::{controller_of, is_pod_ready};

/// How long an eviction's entry in `disruptedPods` keeps the pod out of the
/// healthy count while its deletion is awaited (upstream's `DeletionTimeout`).
pub const DELETION_TIMEOUT: SignedDuration = SignedDuration::from_secs(120);

/// The PDB condition type.
pub const DISRUPTION_ALLOWED_CONDITION: &str = "DisruptionAllowed";
/// Reason when disruptions are allowed.
pub const SUFFICIENT_PODS_REASON: &str = "SufficientPods";
/// Reason when no disruption is allowed.
pub const INSUFFICIENT_PODS_REASON: &str = "InsufficientPods";
/// Reason when the controller could not compute the status.
pub const SYNC_FAILED_REASON: &str = "SyncFailed";

/// A pod controller's identity and desired scale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerAndScale {
    /// The controller's UID (a Deployment's, not its ReplicaSet's).
    pub uid: String,
    /// Its `spec.replicas`.
    pub scale: i32,
}

/// What the budget expects of its pods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpectedPods {
    /// `status.expectedPods`.
    pub expected_count: i32,
    /// `status.desiredHealthy`.
    pub desired_healthy: i32,
    /// Selected pods without a controller (ignored by the scale sum).
    pub unmanaged_pods: Vec<String>,
}

/// Upstream's `getExpectedPodCount`: an integer `minAvailable` counts the
/// selected pods; a percentage, or any `maxUnavailable`, sums the scale of
/// the pods' controllers (percentages round up in both cases).
pub fn expected_pod_count(
    spec: &PodDisruptionBudgetSpec,
    pods: &[Arc<CachedPod>],
    find: impl FnMut(&OwnerReference, &str) -> Result<Option<ControllerAndScale>, String>,
) -> Result<ExpectedPods, String> {
    if let Some(max_unavailable) = &spec.max_unavailable {
        let (expected_count, unmanaged_pods) = expected_scale(pods, find)?;
        let max_unavailable = scaled_value(max_unavailable, expected_count, true)?;
        return Ok(ExpectedPods {
            expected_count,
            desired_healthy: expected_count.saturating_sub(max_unavailable).max(0),
            unmanaged_pods,
        });
    }
    match &spec.min_available {
        Some(IntOrString::Int(n)) => Ok(ExpectedPods {
            expected_count: i32::try_from(pods.len()).unwrap_or(i32::MAX),
            desired_healthy: *n,
            unmanaged_pods: Vec::new(),
        }),
        Some(min_available) => {
            let (expected_count, unmanaged_pods) = expected_scale(pods, find)?;
            Ok(ExpectedPods {
                expected_count,
                desired_healthy: scaled_value(min_available, expected_count, true)?,
                unmanaged_pods,
            })
        }
        None => Ok(ExpectedPods::default()),
    }
}

/// Upstream's `getExpectedScale`: the sum of the scales of the distinct
/// controllers of `pods`, and the names of pods with no controller.
pub fn expected_scale(
    pods: &[Arc<CachedPod>],
    mut find: impl FnMut(&OwnerReference, &str) -> Result<Option<ControllerAndScale>, String>,
) -> Result<(i32, Vec<String>), String> {
    // Scales are keyed by the found controller's UID, so a Deployment counts
    // once however many ReplicaSets its pods belong to.
    let mut seen_refs: HashSet<String> = HashSet::new();
    let mut scales: HashMap<String, i32> = HashMap::new();
    let mut unmanaged = Vec::new();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(r) = controller_of(&pod.metadata) else {
            unmanaged.push(name);
            continue;
        };
        if seen_refs.contains(&r.uid) {
            continue;
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        match find(r, ns)? {
            Some(c) => {
                seen_refs.insert(r.uid.clone());
                scales.insert(c.uid, c.scale);
            }
            None => return Err(format!("found no controllers for pod {name:?}")),
        }
    }
    let total = scales.values().fold(0i32, |a, s| a.saturating_add(*s));
    Ok((total, unmanaged))
}

/// Ready pods that are neither terminating nor recently evicted
/// (upstream's `countHealthyPods`).
pub fn count_healthy_pods(
    pods: &[Arc<CachedPod>],
    disrupted: &BTreeMap<String, Time>,
    now: Timestamp,
) -> i32 {
    let mut n = 0;
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = pod.metadata.name.as_deref().unwrap_or("");
        if disrupted
            .get(name)
            .is_some_and(|t| t.0 + DELETION_TIMEOUT > now)
        {
            continue;
        }
        if is_pod_ready(pod) {
            n += 1;
        }
    }
    n
}

/// The cleaned `disruptedPods` map (upstream's `buildDisruptedPodMap`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DisruptedPodMap {
    /// Entries of pods still present, not terminating, and evicted less than
    /// [`DELETION_TIMEOUT`] ago.
    pub pods: BTreeMap<String, Time>,
    /// When the earliest kept entry expires: sync again then.
    pub recheck: Option<Timestamp>,
    /// Pods evicted longer ago than the timeout yet not deleted.
    pub not_deleted: Vec<String>,
}

/// Drops entries for pods that are gone or terminating, and those that
/// outlived [`DELETION_TIMEOUT`] (reported as not deleted).
pub fn build_disrupted_pod_map(
    pods: &[Arc<CachedPod>],
    pdb: &PodDisruptionBudget,
    now: Timestamp,
) -> DisruptedPodMap {
    let mut out = DisruptedPodMap::default();
    let Some(disrupted) = pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref()) else {
        return out;
    };
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = pod.metadata.name.as_deref().unwrap_or("");
        let Some(t) = disrupted.get(name) else {
            continue;
        };
        let expected_deletion = t.0 + DELETION_TIMEOUT;
        if expected_deletion < now {
            out.not_deleted.push(name.to_owned());
        } else {
            if out.recheck.is_none_or(|r| expected_deletion < r) {
                out.recheck = Some(expected_deletion);
            }
            out.pods.insert(name.to_owned(), t.clone());
        }
    }
    out
}

/// Sets `cond` in `conds` as upstream's `meta.SetStatusCondition`: the
/// transition time changes only when the status does.
pub fn set_status_condition(conds: &mut Vec<Condition>, mut cond: Condition, now: Timestamp) {
    if let Some(existing) = conds.iter_mut().find(|c| c.type_ == cond.type_) {
        if existing.status != cond.status {
            existing.status = cond.status;
            existing.last_transition_time = Time(now);
        }
        existing.reason = cond.reason;
        existing.message = cond.message;
        existing.observed_generation = cond.observed_generation;
        return;
    }
    cond.last_transition_time = Time(now);
    conds.push(cond);
}

fn allowed_condition(allowed: i32, observed_generation: Option<i64>) -> Condition {
    let (status, reason) = if allowed > 0 {
        ("True", SUFFICIENT_PODS_REASON)
    } else {
        ("False", INSUFFICIENT_PODS_REASON)
    };
    Condition {
        type_: DISRUPTION_ALLOWED_CONDITION.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: String::new(),
        observed_generation,
        last_transition_time: Time(Timestamp::UNIX_EPOCH),
    }
}

/// Whether the `DisruptionAllowed` condition matches the status (upstream's
/// `ConditionsAreUpToDate`).
pub fn conditions_are_up_to_date(pdb: &PodDisruptionBudget) -> bool {
    let Some(status) = pdb.status.as_ref() else {
        return false;
    };
    let Some(cond) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == DISRUPTION_ALLOWED_CONDITION)
    else {
        return false;
    };
    if status.observed_generation != pdb.metadata.generation
        || cond.observed_generation != status.observed_generation
    {
        return false;
    }
    let want = allowed_condition(status.disruptions_allowed, None);
    cond.status == want.status && cond.reason == want.reason
}

/// The status to write, or `None` when the current one is up to date
/// (upstream's `updatePdbStatus`). No disruption is allowed while no pod is
/// expected, so a budget whose pods just appeared is safe until synced.
pub fn new_status(
    pdb: &PodDisruptionBudget,
    current_healthy: i32,
    expected: &ExpectedPods,
    disrupted: BTreeMap<String, Time>,
    now: Timestamp,
) -> Option<PodDisruptionBudgetStatus> {
    let mut allowed = current_healthy - expected.desired_healthy;
    if expected.expected_count <= 0 || allowed <= 0 {
        allowed = 0;
    }
    let old = pdb.status.clone().unwrap_or_default();
    let old_disrupted = old.disrupted_pods.clone().unwrap_or_default();
    if old.current_healthy == current_healthy
        && old.desired_healthy == expected.desired_healthy
        && old.expected_pods == expected.expected_count
        && old.disruptions_allowed == allowed
        && old_disrupted == disrupted
        && old.observed_generation == pdb.metadata.generation
        && conditions_are_up_to_date(pdb)
    {
        return None;
    }
    let mut conditions = old.conditions.unwrap_or_default();
    set_status_condition(
        &mut conditions,
        allowed_condition(allowed, pdb.metadata.generation),
        now,
    );
    Some(PodDisruptionBudgetStatus {
        current_healthy,
        desired_healthy: expected.desired_healthy,
        expected_pods: expected.expected_count,
        disruptions_allowed: allowed,
        disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
        observed_generation: pdb.metadata.generation,
        conditions: Some(conditions),
    })
}

/// The status after a failed sync (upstream's `failSafe`): no disruption
/// allowed, and `DisruptionAllowed=False` with reason `SyncFailed`.
pub fn fail_safe_status(
    pdb: &PodDisruptionBudget,
    message: &str,
    now: Timestamp,
) -> PodDisruptionBudgetStatus {
    let mut status = pdb.status.clone().unwrap_or_default();
    status.disruptions_allowed = 0;
    let mut conditions = status.conditions.take().unwrap_or_default();
    set_status_condition(
        &mut conditions,
        Condition {
            type_: DISRUPTION_ALLOWED_CONDITION.to_owned(),
            status: "False".to_owned(),
            reason: SYNC_FAILED_REASON.to_owned(),
            message: message.to_owned(),
            observed_generation: status.observed_generation,
            last_transition_time: Time(now),
        },
        now,
    );
    status.conditions = Some(conditions);
    status
}
