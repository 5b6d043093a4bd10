//! Pod failure handling: which pods count as failed, `podFailurePolicy`
//! rule matching, and the pod re-creation back-off (upstream's
//! `pod_failure_policy.go` and `backoff_utils.go`).

use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, PodFailurePolicy, PodFailurePolicyRule};
use k8s_openapi::jiff::Timestamp;

use crate::cached_pod::{CachedContainerStatus, CachedPod};
use crate::podutil::phase;

/// First re-creation delay after a failure (`DefaultJobPodFailureBackOff`).
pub const DEFAULT_POD_FAILURE_BACKOFF: Duration = Duration::from_secs(10);
/// The longest re-creation delay (`MaxJobPodFailureBackOff`).
pub const MAX_POD_FAILURE_BACKOFF: Duration = Duration::from_secs(6 * 60);

/// A `podFailurePolicy` rule's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyAction {
    /// Fail the whole Job.
    FailJob,
    /// Fail the pod's index (backoffLimitPerIndex only).
    FailIndex,
    /// Do not count the failure.
    Ignore,
    /// Count the failure towards backoffLimit (the default).
    Count,
}

impl PolicyAction {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "FailJob" => Some(PolicyAction::FailJob),
            "FailIndex" => Some(PolicyAction::FailIndex),
            "Ignore" => Some(PolicyAction::Ignore),
            "Count" => Some(PolicyAction::Count),
            _ => None,
        }
    }
}

/// What the policy says about one failed pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyMatch {
    /// For FailJob, upstream's message naming the rule.
    pub message: Option<String>,
    /// Whether the failure counts towards backoffLimit.
    pub count_failed: bool,
    /// The matching rule's action (None when no rule matched).
    pub action: Option<PolicyAction>,
}

/// Replacement pods are created only once the old ones reached Failed
/// (`podReplacementPolicy: Failed`, implied by a podFailurePolicy).
pub fn only_replace_failed_pods(job: &Job) -> bool {
    let spec = job.spec.as_ref();
    spec.and_then(|s| s.pod_replacement_policy.as_deref()) == Some("Failed")
        || spec.is_some_and(|s| s.pod_failure_policy.is_some())
}

/// Whether `pod` counts as failed for `job`: phase Failed, or, unless only
/// Failed pods are replaced, being deleted without having succeeded (an
/// orphan that never reaches a terminal phase).
pub fn is_pod_failed(pod: &CachedPod, job: &Job) -> bool {
    let p = phase(pod);
    if p == "Failed" {
        return true;
    }
    if only_replace_failed_pods(job) {
        return false;
    }
    pod.metadata.deletion_timestamp.is_some() && p != "Succeeded"
}

fn terminated_exit_code(s: &CachedContainerStatus) -> Option<i32> {
    s.state.as_ref()?.terminated.as_ref().map(|t| t.exit_code)
}

/// The first container (init containers first) whose non-zero exit code
/// the rule's `onExitCodes` matches: `(container name, exit code)`.
fn match_on_exit_codes(pod: &CachedPod, rule: &PodFailurePolicyRule) -> Option<(String, i32)> {
    let req = rule.on_exit_codes.as_ref()?;
    let status = pod.status.as_ref()?;
    let all = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for cs in all {
        if req.container_name.as_deref().is_some_and(|n| n != cs.name) {
            continue;
        }
        let Some(code) = terminated_exit_code(cs) else {
            continue;
        };
        // Exit code 0 is success and never matches.
        if code == 0 {
            continue;
        }
        let listed = req.values.contains(&code);
        let hit = match req.operator.as_str() {
            "In" => listed,
            "NotIn" => !listed,
            _ => false,
        };
        if hit {
            return Some((cs.name.clone(), code));
        }
    }
    None
}

/// The first `onPodConditions` pattern the pod's conditions match: the
/// condition type.
fn match_on_pod_conditions(pod: &CachedPod, rule: &PodFailurePolicyRule) -> Option<String> {
    let patterns = rule.on_pod_conditions.as_ref()?;
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    for pattern in patterns {
        let want = if pattern.status.is_empty() {
            "True"
        } else {
            pattern.status.as_str()
        };
        if conditions
            .iter()
            .any(|c| c.type_ == pattern.type_ && c.status == want)
        {
            return Some(pattern.type_.clone());
        }
    }
    None
}

/// Matches a failed pod against the policy's rules in order (upstream's
/// `matchPodFailurePolicy`); no match counts the failure.
pub fn match_pod_failure_policy(policy: &PodFailurePolicy, pod: &CachedPod) -> PolicyMatch {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    for (index, rule) in policy.rules.iter().enumerate() {
        let Some(action) = PolicyAction::parse(&rule.action) else {
            continue;
        };
        let what = if let Some((container, code)) = match_on_exit_codes(pod, rule) {
            format!("Container {container} for pod {ns}/{name} failed with exit code {code}")
        } else if let Some(cond) = match_on_pod_conditions(pod, rule) {
            format!("Pod {ns}/{name} has condition {cond}")
        } else {
            continue;
        };
        let message = format!("{what} matching {} rule at index {index}", rule.action);
        return match action {
            PolicyAction::Ignore => PolicyMatch {
                message: None,
                count_failed: false,
                action: Some(action),
            },
            PolicyAction::Count => PolicyMatch {
                message: None,
                count_failed: true,
                action: Some(action),
            },
            PolicyAction::FailJob => PolicyMatch {
                message: Some(message),
                count_failed: true,
                action: Some(action),
            },
            PolicyAction::FailIndex => PolicyMatch {
                message: None,
                count_failed: true,
                action: Some(action),
            },
        };
    }
    PolicyMatch {
        message: None,
        count_failed: true,
        action: None,
    }
}

/// When the pod finished: the latest container finishedAt, else when its
/// Ready condition turned False, else its deletion, else its creation.
pub fn finished_time(pod: &CachedPod) -> Option<Timestamp> {
    let status = pod.status.as_ref();
    let from_containers = status
        .into_iter()
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .filter_map(|cs| {
            cs.state
                .as_ref()?
                .terminated
                .as_ref()?
                .finished_at
                .as_ref()
                .map(|t| t.0)
        })
        .max();
    from_containers
        .or_else(|| {
            status?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "Ready" && c.status == "False")?
                .last_transition_time
                .as_ref()
                .map(|t| t.0)
        })
        .or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Failures since the last success and when the last one happened
/// (upstream's `backoffRecord`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackoffRecord {
    /// Failed pods finished after the last succeeded one.
    pub failures_after_last_success: u32,
    /// When the newest of those failed.
    pub last_failure_time: Option<Timestamp>,
}

impl BackoffRecord {
    /// The record after newly finished pods: a success resets the count to
    /// the failures that finished after it.
    pub fn updated(&self, succeeded: &[Timestamp], failed: &[Timestamp]) -> BackoffRecord {
        let mut failed = failed.to_vec();
        failed.sort();
        let Some(last_success) = succeeded.iter().max() else {
            let Some(last) = failed.last() else {
                return self.clone();
            };
            return BackoffRecord {
                failures_after_last_success: self.failures_after_last_success
                    + u32::try_from(failed.len()).unwrap_or(u32::MAX),
                last_failure_time: Some(*last),
            };
        };
        let after: Vec<&Timestamp> = failed.iter().filter(|t| *t > last_success).collect();
        BackoffRecord {
            failures_after_last_success: u32::try_from(after.len()).unwrap_or(u32::MAX),
            last_failure_time: after.last().map(|t| **t),
        }
    }

    /// How long until the next pod may be created at `now`.
    pub fn remaining(&self, now: Timestamp) -> Duration {
        remaining_for_failures(
            self.failures_after_last_success,
            self.last_failure_time,
            now,
        )
    }
}

/// The back-off after `failures` failures (10 s doubling, at most 6 min)
/// minus the time since the last one.
pub fn remaining_for_failures(failures: u32, last: Option<Timestamp>, now: Timestamp) -> Duration {
    let Some(last) = last.filter(|_| failures > 0) else {
        return Duration::ZERO;
    };
    let mut backoff = DEFAULT_POD_FAILURE_BACKOFF;
    for _ in 1..failures {
        backoff *= 2;
        if backoff >= MAX_POD_FAILURE_BACKOFF {
            backoff = MAX_POD_FAILURE_BACKOFF;
            break;
        }
    }
    let elapsed = now.duration_since(last);
    let elapsed = Duration::try_from(elapsed).unwrap_or(Duration::ZERO);
    backoff.saturating_sub(elapsed)
}
