//! Job conditions and the status-level decisions: finished, suspended,
//! deadline, restart-count back-off, and successPolicy matching.

use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, SuccessPolicy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::intervals::OrderedIntervals;

use crate::cached_pod::CachedPod;

/// Condition types.
pub const COMPLETE: &str = "Complete";
/// The Job failed.
pub const FAILED: &str = "Failed";
/// The Job is suspended (True) or was resumed (False).
pub const SUSPENDED: &str = "Suspended";
/// The Job will fail once its pods are gone.
pub const FAILURE_TARGET: &str = "FailureTarget";
/// The Job will complete once its pods are gone.
pub const SUCCESS_CRITERIA_MET: &str = "SuccessCriteriaMet";

/// Condition reasons.
pub const REASON_BACKOFF_LIMIT_EXCEEDED: &str = "BackoffLimitExceeded";
/// activeDeadlineSeconds passed.
pub const REASON_DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
/// A podFailurePolicy FailJob rule matched.
pub const REASON_POD_FAILURE_POLICY: &str = "PodFailurePolicy";
/// More failed indexes than maxFailedIndexes.
pub const REASON_MAX_FAILED_INDEXES_EXCEEDED: &str = "MaxFailedIndexesExceeded";
/// Every index finished and some failed.
pub const REASON_FAILED_INDEXES: &str = "FailedIndexes";
/// A successPolicy rule matched.
pub const REASON_SUCCESS_POLICY: &str = "SuccessPolicy";
/// spec.completions pods succeeded.
pub const REASON_COMPLETIONS_REACHED: &str = "CompletionsReached";

/// A condition of `type_` set at `now`.
pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> JobCondition {
    JobCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// The condition of `type_`, if present.
pub fn find_condition<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

fn is_true(job: &Job, type_: &str) -> bool {
    find_condition(job, type_).is_some_and(|c| c.status == "True")
}

/// Complete or Failed is True.
pub fn is_job_finished(job: &Job) -> bool {
    is_true(job, COMPLETE) || is_true(job, FAILED)
}

/// `spec.suspend`.
pub fn is_suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
}

/// Sets the condition `type_` to `status`: an existing one is replaced
/// when anything differs; a missing one is added unless it would be False.
/// Whether the list changed.
pub fn ensure_condition_status(
    list: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    if let Some(c) = list.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status
            || c.reason.as_deref() != Some(reason)
            || c.message.as_deref() != Some(message)
        {
            *c = new_condition(type_, status, reason, message, now);
            return true;
        }
        return false;
    }
    if status != "False" {
        list.push(new_condition(type_, status, reason, message, now));
        return true;
    }
    false
}

/// The final condition an interim one leads to: FailureTarget → Failed,
/// SuccessCriteriaMet → Complete, with the same reason and message.
pub fn final_for_interim(c: &JobCondition, now: Timestamp) -> JobCondition {
    let type_ = if c.type_ == SUCCESS_CRITERIA_MET {
        COMPLETE
    } else {
        FAILED
    };
    new_condition(
        type_,
        "True",
        c.reason.as_deref().unwrap_or(""),
        c.message.as_deref().unwrap_or(""),
        now,
    )
}

/// How long the Job may still run before activeDeadlineSeconds, None when
/// no deadline applies (unset, not started, or suspended).
pub fn remaining_active_deadline(job: &Job, now: Timestamp) -> Option<Duration> {
    let secs = job.spec.as_ref()?.active_deadline_seconds?;
    let start = job.status.as_ref()?.start_time.as_ref()?.0;
    if is_suspended(job) {
        return None;
    }
    let allowed = Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    let elapsed = Duration::try_from(now.duration_since(start)).unwrap_or(Duration::ZERO);
    Some(allowed.saturating_sub(elapsed))
}

/// Whether activeDeadlineSeconds has passed.
pub fn past_active_deadline(job: &Job, now: Timestamp) -> bool {
    remaining_active_deadline(job, now).is_some_and(|d| d.is_zero())
}

/// With restartPolicy OnFailure, whether the container restarts of the
/// active pods reached backoffLimit (upstream's `pastBackoffLimitOnFailure`).
pub fn past_backoff_limit_on_failure(job: &Job, active: &[std::sync::Arc<CachedPod>]) -> bool {
    let spec = job.spec.as_ref();
    let policy = spec
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.restart_policy.as_deref());
    if policy != Some("OnFailure") {
        return false;
    }
    let limit = spec.and_then(|s| s.backoff_limit).unwrap_or(6);
    let mut restarts = 0;
    for p in active {
        let Some(st) = p.status.as_ref() else {
            continue;
        };
        for cs in st
            .init_container_statuses
            .iter()
            .flatten()
            .chain(st.container_statuses.iter().flatten())
        {
            restarts += cs.restart_count;
        }
    }
    if limit == 0 {
        return restarts > 0;
    }
    restarts >= limit
}

/// The first successPolicy rule the succeeded indexes satisfy: upstream's
/// message "Matched rules at index N".
pub fn match_success_policy(
    policy: Option<&SuccessPolicy>,
    completions: i32,
    succeeded: &OrderedIntervals,
) -> Option<String> {
    let policy = policy?;
    if succeeded.0.is_empty() {
        return None;
    }
    for (index, rule) in policy.rules.iter().enumerate() {
        let met = if let Some(ix) = rule.succeeded_indexes.as_deref() {
            let required = OrderedIntervals::parse(ix, completions);
            if required.0.is_empty() {
                continue;
            }
            let have = required.intersection_total(succeeded);
            match rule.succeeded_count {
                Some(n) => have >= n,
                None => have == required.total(),
            }
        } else if let Some(n) = rule.succeeded_count {
            succeeded.total() >= n
        } else {
            false
        };
        if met {
            return Some(format!("Matched rules at index {index}"));
        }
    }
    None
}
