//! Indexed completion mode: completion indexes on pods, the pending
//! indexes to start, per-index failures and back-off (upstream's
//! `indexed_job_utils.go`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, EnvVar, EnvVarSource, ObjectFieldSelector};
use k8s_openapi::jiff::Timestamp;

use super::failure::{PolicyAction, finished_time, is_pod_failed, match_pod_failure_policy};
use super::has_tracking_finalizer;
use super::intervals::OrderedIntervals;

use crate::cached_pod::CachedPod;

/// Annotation and label carrying a pod's completion index.
pub const COMPLETION_INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";
/// Failures of the index before this pod.
pub const INDEX_FAILURE_COUNT_ANNOTATION: &str = "batch.kubernetes.io/job-index-failure-count";
/// Ignored failures of the index before this pod.
pub const INDEX_IGNORED_FAILURE_COUNT_ANNOTATION: &str =
    "batch.kubernetes.io/job-index-ignored-failure-count";
/// The env var the index is exposed as.
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// Longest `generateName` prefix (63 minus the 5 random characters).
const MAX_GENERATED_NAME_LENGTH: usize = 58;

/// `completionMode: Indexed`.
pub fn is_indexed(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) == Some("Indexed")
}

/// `backoffLimitPerIndex` set (Indexed jobs only).
pub fn backoff_limit_per_index(job: &Job) -> Option<i32> {
    if !is_indexed(job) {
        return None;
    }
    job.spec.as_ref()?.backoff_limit_per_index
}

/// `spec.completions` (0 when unset, for the Indexed paths that need it).
pub fn completions(job: &Job) -> i32 {
    job.spec.as_ref().and_then(|s| s.completions).unwrap_or(0)
}

fn parse_index(s: &str) -> Option<i32> {
    s.parse::<i32>().ok().filter(|i| *i >= 0)
}

/// The pod's completion index (annotation, else label), if valid.
pub fn completion_index(pod: &CachedPod) -> Option<i32> {
    let m = &pod.metadata;
    m.annotations
        .as_ref()
        .and_then(|a| a.get(COMPLETION_INDEX_ANNOTATION))
        .or_else(|| m.labels.as_ref()?.get(COMPLETION_INDEX_ANNOTATION))
        .and_then(|s| parse_index(s))
}

/// The index if it is below `completions`.
pub fn valid_index(pod: &CachedPod, completions: i32) -> Option<i32> {
    completion_index(pod).filter(|i| *i < completions)
}

fn annotation_count(pod: &CachedPod, key: &str) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|v| *v >= 0)
        .unwrap_or(0)
}

/// Failures of the pod's index before it.
pub fn index_failure_count(pod: &CachedPod) -> i32 {
    annotation_count(pod, INDEX_FAILURE_COUNT_ANNOTATION)
}

/// Failures, counted or ignored, of the pod's index before it.
fn index_absolute_failure_count(pod: &CachedPod) -> i32 {
    index_failure_count(pod) + annotation_count(pod, INDEX_IGNORED_FAILURE_COUNT_ANNOTATION)
}

/// `<job>-<index>-`, the job name cut so the prefix stays generatable.
pub fn generate_name_with_index(job_name: &str, index: i32) -> String {
    let suffix = format!("-{index}-");
    let keep = MAX_GENERATED_NAME_LENGTH.saturating_sub(suffix.len());
    let base: String = if job_name.len() + suffix.len() > MAX_GENERATED_NAME_LENGTH {
        job_name.chars().take(keep).collect()
    } else {
        job_name.to_owned()
    };
    format!("{base}{suffix}")
}

/// Adds JOB_COMPLETION_INDEX (from the pod's index label, through the
/// downward API) to every container that does not set it.
pub fn add_completion_index_env(containers: &mut [Container]) {
    for c in containers {
        let env = c.env.get_or_insert_with(Vec::new);
        if env.iter().any(|e| e.name == COMPLETION_INDEX_ENV) {
            continue;
        }
        env.push(EnvVar {
            name: COMPLETION_INDEX_ENV.to_owned(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: format!("metadata.labels['{COMPLETION_INDEX_ANNOTATION}']"),
                }),
                ..EnvVarSource::default()
            }),
        });
    }
}

/// The indexes of `pods` (pods without a valid index are skipped).
pub fn indexes_of<'a>(pods: impl IntoIterator<Item = &'a Arc<CachedPod>>) -> HashSet<i32> {
    pods.into_iter()
        .filter_map(|p| completion_index(p))
        .collect()
}

/// Up to `count` indexes below `completions` that are neither succeeded,
/// failed, active nor (when `not_pending` says so) held by terminating pods,
/// lowest first (upstream's `firstPendingIndexes`).
pub fn first_pending_indexes(
    not_pending: &OrderedIntervals,
    count: usize,
    completions: i32,
) -> Vec<i32> {
    let mut out = Vec::with_capacity(count);
    let mut candidate = 0;
    for iv in &not_pending.0 {
        while candidate < completions && out.len() < count && candidate < iv.first {
            out.push(candidate);
            candidate += 1;
        }
        candidate = candidate.max(iv.last + 1);
    }
    while candidate < completions && out.len() < count {
        out.push(candidate);
        candidate += 1;
    }
    out
}

/// Whether the failed pod exhausts its index's back-off (or a FailIndex
/// rule matches it).
pub fn is_index_failed(job: &Job, pod: &CachedPod, limit_per_index: i32) -> bool {
    if !is_pod_failed(pod, job) {
        return false;
    }
    let counted = match job
        .spec
        .as_ref()
        .and_then(|s| s.pod_failure_policy.as_ref())
    {
        Some(policy) => {
            let m = match_pod_failure_policy(policy, pod);
            if m.action == Some(PolicyAction::FailIndex) {
                return true;
            }
            m.count_failed
        }
        None => true,
    };
    counted && index_failure_count(pod) >= limit_per_index
}

/// `status.failedIndexes` with the newly failed (still tracked) indexes.
pub fn calculate_failed_indexes(
    job: &Job,
    pods: &[Arc<CachedPod>],
    limit: i32,
) -> OrderedIntervals {
    let n = completions(job);
    let prev = job
        .status
        .as_ref()
        .and_then(|s| s.failed_indexes.as_deref())
        .map(|s| OrderedIntervals::parse(s, n))
        .unwrap_or_default();
    let mut new: Vec<i32> = pods
        .iter()
        .filter(|p| has_tracking_finalizer(p) && is_index_failed(job, p, limit))
        .filter_map(|p| valid_index(p, n))
        .collect();
    new.sort_unstable();
    new.dedup();
    prev.with_ordered_indexes(&new)
}

/// Per pending index, the last failed pod whose finalizer stays until its
/// replacement exists, so the failure count carries over.
pub fn pods_with_delayed_deletion(
    job: &Job,
    tracked: &[Arc<CachedPod>],
    active: &[Arc<CachedPod>],
    succeeded: &OrderedIntervals,
    failed: &OrderedIntervals,
) -> HashMap<i32, Arc<CachedPod>> {
    let n = completions(job);
    let active_ix = indexes_of(active);
    let mut out: HashMap<i32, Arc<CachedPod>> = HashMap::new();
    for p in tracked {
        if !is_pod_failed(p, job) {
            continue;
        }
        let Some(ix) = valid_index(p, n) else {
            continue;
        };
        if succeeded.has(ix) || failed.has(ix) || active_ix.contains(&ix) {
            continue;
        }
        let replace = match out.get(&ix) {
            Some(last) => {
                index_absolute_failure_count(last) <= index_absolute_failure_count(p)
                    && finished_time(p) >= finished_time(last)
            }
            None => true,
        };
        if replace {
            out.insert(ix, p.clone());
        }
    }
    out
}

/// The per-index back-off left for the failed pod being replaced.
pub fn remaining_for_index(last: Option<&Arc<CachedPod>>, now: Timestamp) -> std::time::Duration {
    let Some(p) = last else {
        return std::time::Duration::ZERO;
    };
    let failures = u32::try_from(index_absolute_failure_count(p) + 1).unwrap_or(1);
    super::failure::remaining_for_failures(failures, finished_time(p), now)
}

/// The failure-count annotations of a replacement for `replaced`.
pub fn failure_count_annotations(
    job: &Job,
    replaced: Option<&Arc<CachedPod>>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(old) = replaced else {
        out.insert(INDEX_FAILURE_COUNT_ANNOTATION.to_owned(), "0".to_owned());
        return out;
    };
    let mut failures = index_failure_count(old);
    let mut ignored = annotation_count(old, INDEX_IGNORED_FAILURE_COUNT_ANNOTATION);
    let counted = job
        .spec
        .as_ref()
        .and_then(|s| s.pod_failure_policy.as_ref())
        .is_none_or(|policy| match_pod_failure_policy(policy, old).count_failed);
    if counted {
        failures += 1;
    } else {
        ignored += 1;
    }
    out.insert(
        INDEX_FAILURE_COUNT_ANNOTATION.to_owned(),
        failures.to_string(),
    );
    if ignored > 0 {
        out.insert(
            INDEX_IGNORED_FAILURE_COUNT_ANNOTATION.to_owned(),
            ignored.to_string(),
        );
    }
    out
}

/// Active pods that must go first: out-of-range or duplicate indexes
/// (keeping one pod per index), or a failed index; the rest after.
pub fn split_extra_index_pods(
    pods: &[Arc<CachedPod>],
    completions: i32,
    failed: Option<&OrderedIntervals>,
) -> (Vec<Arc<CachedPod>>, Vec<Arc<CachedPod>>) {
    let mut sorted: Vec<Arc<CachedPod>> = pods.to_vec();
    sorted.sort_by_key(|p| completion_index(p));
    let (mut rm, mut left) = (Vec::new(), Vec::new());
    let mut seen = HashSet::new();
    for p in sorted {
        match valid_index(&p, completions) {
            Some(ix) if failed.is_some_and(|f| f.has(ix)) => rm.push(p),
            Some(ix) if seen.insert(ix) => left.push(p),
            _ => rm.push(p),
        }
    }
    (rm, left)
}
