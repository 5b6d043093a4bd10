//! Deployment status and conditions (upstream's `calculateStatus`,
//! `syncRolloutStatus` decisions and the condition helpers).

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::util::{max_unavailable, replicas, rs_replicas};

/// Condition type: enough pods available.
pub const AVAILABLE: &str = "Available";
/// Condition type: the rollout moves (or completed, or timed out).
pub const PROGRESSING: &str = "Progressing";
/// Condition type: the new ReplicaSet cannot create pods.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// Progressing reason: a new ReplicaSet was created.
pub const NEW_RS_REASON: &str = "NewReplicaSetCreated";
/// Progressing reason: the new ReplicaSet already existed.
pub const FOUND_NEW_RS_REASON: &str = "FoundNewReplicaSet";
/// Progressing reason: the rollout made progress.
pub const RS_UPDATED_REASON: &str = "ReplicaSetUpdated";
/// Progressing reason: the rollout completed.
pub const NEW_RS_AVAILABLE_REASON: &str = "NewReplicaSetAvailable";
/// Progressing reason: no progress within progressDeadlineSeconds.
pub const TIMED_OUT_REASON: &str = "ProgressDeadlineExceeded";
/// Progressing reason: paused.
pub const PAUSED_REASON: &str = "DeploymentPaused";
/// Progressing reason: resumed.
pub const RESUMED_REASON: &str = "DeploymentResumed";
/// Available reason: enough pods.
pub const MIN_AVAILABLE_REASON: &str = "MinimumReplicasAvailable";
/// Available reason: too few pods.
pub const MIN_UNAVAILABLE_REASON: &str = "MinimumReplicasUnavailable";

/// A new condition stamped `now`.
pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// The condition of `type_`.
pub fn get_condition<'a>(s: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    s.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// Sets `cond` (upstream's `SetDeploymentCondition`): a condition with the
/// same status and reason is left alone; the same status keeps its
/// transition time.
pub fn set_condition(s: &mut DeploymentStatus, mut cond: DeploymentCondition) {
    if let Some(cur) = get_condition(s, &cond.type_) {
        if cur.status == cond.status && cur.reason == cond.reason {
            return;
        }
        if cur.status == cond.status {
            cond.last_transition_time = cur.last_transition_time.clone();
        }
    }
    remove_condition(s, &cond.type_);
    s.conditions.get_or_insert_with(Vec::new).push(cond);
}

/// Drops the condition of `type_`.
pub fn remove_condition(s: &mut DeploymentStatus, type_: &str) {
    if let Some(c) = s.conditions.as_mut() {
        c.retain(|c| c.type_ != type_);
    }
}

/// progressDeadlineSeconds, unless unset or "never" (MaxInt32).
pub fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .filter(|s| *s != i32::MAX)
}

fn sum(rss: &[&ReplicaSet], f: impl Fn(&ReplicaSet) -> Option<i32>) -> i32 {
    rss.iter().map(|r| f(r).unwrap_or(0)).sum()
}

/// The status counted from the ReplicaSets, with the Available condition
/// (upstream's `calculateStatus`).
pub fn calculate_status(
    d: &Deployment,
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    now: Timestamp,
) -> DeploymentStatus {
    let available = sum(all, |r| {
        r.status.as_ref().and_then(|s| s.available_replicas)
    });
    let total: i32 = all.iter().map(|r| rs_replicas(r)).sum();
    let mut status = d.status.clone().unwrap_or_default();
    status.observed_generation = d.metadata.generation;
    status.replicas = Some(sum(all, |r| r.status.as_ref().map(|s| s.replicas)));
    status.updated_replicas = Some(
        new_rs
            .and_then(|r| r.status.as_ref())
            .map_or(0, |s| s.replicas),
    );
    status.ready_replicas = Some(sum(all, |r| {
        r.status.as_ref().and_then(|s| s.ready_replicas)
    }));
    status.available_replicas = Some(available);
    status.unavailable_replicas = Some((total - available).max(0));
    let cond = if available >= replicas(d) - max_unavailable(d) {
        new_condition(
            AVAILABLE,
            "True",
            MIN_AVAILABLE_REASON,
            "Deployment has minimum availability.".into(),
            now,
        )
    } else {
        new_condition(
            AVAILABLE,
            "False",
            MIN_UNAVAILABLE_REASON,
            "Deployment does not have minimum availability.".into(),
            now,
        )
    };
    set_condition(&mut status, cond);
    status
}

/// All replicas updated, available and observed (upstream's
/// `DeploymentComplete`).
pub fn deployment_complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let r = replicas(d);
    s.updated_replicas == Some(r)
        && s.replicas == Some(r)
        && s.available_replicas == Some(r)
        && s.observed_generation >= d.metadata.generation
}

/// The new status shows progress over the stored one (upstream's
/// `DeploymentProgressing`).
pub fn deployment_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let n = |o: Option<i32>| o.unwrap_or(0);
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(new.replicas) - n(new.updated_replicas);
    n(new.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

/// The Progressing condition is older than the deadline (upstream's
/// `DeploymentTimedOut`).
pub fn deployment_timed_out(d: &Deployment, s: &DeploymentStatus, now: Timestamp) -> bool {
    let Some(deadline) = progress_deadline(d) else {
        return false;
    };
    let Some(c) = get_condition(s, PROGRESSING) else {
        return false;
    };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE_REASON) => false,
        Some(TIMED_OUT_REASON) => true,
        _ => c
            .last_update_time
            .as_ref()
            .is_some_and(|t| t.0 + SignedDuration::from_secs(i64::from(deadline)) < now),
    }
}

/// The Progressing condition a rollout step sets (upstream's
/// `syncRolloutStatus`), applied to `status`.
pub fn update_progressing(
    d: &Deployment,
    status: &mut DeploymentStatus,
    new_rs: Option<&ReplicaSet>,
    now: Timestamp,
) {
    if progress_deadline(d).is_none() {
        remove_condition(status, PROGRESSING);
        return;
    }
    let current = get_condition(status, PROGRESSING).cloned();
    let complete = status.replicas == status.updated_replicas
        && current
            .as_ref()
            .is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE_REASON));
    if complete {
        return;
    }
    let dname = d.metadata.name.clone().unwrap_or_default();
    let subject = match new_rs {
        Some(rs) => format!("ReplicaSet {:?}", rs.metadata.name.as_deref().unwrap_or("")),
        None => format!("Deployment {dname:?}"),
    };
    if deployment_complete(d, status) {
        let c = new_condition(
            PROGRESSING,
            "True",
            NEW_RS_AVAILABLE_REASON,
            format!("{subject} has successfully progressed."),
            now,
        );
        set_condition(status, c);
    } else if deployment_progressing(d, status) {
        let mut c = new_condition(
            PROGRESSING,
            "True",
            RS_UPDATED_REASON,
            format!("{subject} is progressing."),
            now,
        );
        // Progress refreshes lastUpdateTime even with an unchanged reason.
        if let Some(cur) = current.filter(|c| c.status == "True") {
            c.last_transition_time = cur.last_transition_time;
        }
        remove_condition(status, PROGRESSING);
        set_condition(status, c);
    } else if deployment_timed_out(d, status, now) {
        let c = new_condition(
            PROGRESSING,
            "False",
            TIMED_OUT_REASON,
            format!("{subject} has timed out progressing."),
            now,
        );
        set_condition(status, c);
    }
}

/// When to look again at a rollout that may time out: the time left until
/// the deadline of its Progressing condition (upstream's
/// `requeueStuckDeployment`).
pub fn stuck_requeue_after(
    d: &Deployment,
    s: &DeploymentStatus,
    now: Timestamp,
) -> Option<std::time::Duration> {
    let deadline = progress_deadline(d)?;
    let c = get_condition(s, PROGRESSING)?;
    if matches!(
        c.reason.as_deref(),
        Some(NEW_RS_AVAILABLE_REASON | TIMED_OUT_REASON)
    ) || deployment_complete(d, s)
    {
        return None;
    }
    let at = c.last_update_time.as_ref()?.0 + SignedDuration::from_secs(i64::from(deadline));
    let left = at.duration_since(now);
    // One second past the deadline so the check sees it exceeded.
    let secs = left.as_secs().max(0) + 1;
    Some(std::time::Duration::from_secs(
        u64::try_from(secs).unwrap_or(1),
    ))
}

/// Status equal for the purpose of writing it (ignores nothing: the
/// condition times only change when the condition does).
pub fn status_changed(d: &Deployment, s: &DeploymentStatus) -> bool {
    d.status.as_ref() != Some(s)
}
