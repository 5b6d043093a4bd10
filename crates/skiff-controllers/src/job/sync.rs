//! One sync of a Job key (upstream's `syncJob`): count finished pods,
//! decide whether the Job failed or succeeded, manage its pods, and hand
//! over to the status tracking.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;

use super::failure::{BackoffRecord, finished_time, is_pod_failed, match_pod_failure_policy};
use super::indexed::{
    backoff_limit_per_index, calculate_failed_indexes, completions, is_indexed,
    pods_with_delayed_deletion, valid_index,
};
use super::intervals::OrderedIntervals;
use super::status::{self, new_condition};
use super::{JobController, ORPHAN_POD_PREFIX, has_tracking_finalizer};
use crate::cached_pod::CachedPod;
use crate::controller::{Action, Reconciler, SyncError};
use crate::podcontrol::record_event;
use crate::podutil::{controller_of, is_pod_active, is_pod_ready, phase};

/// A sync error carrying upstream's message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Failed(pub String);

/// Everything one sync computes about a Job (upstream's `syncJobCtx`).
pub(crate) struct SyncCtx {
    /// The Job with the status being built.
    pub job: Job,
    /// The Job's key.
    pub key: String,
    /// Every pod the Job controls.
    pub pods: Vec<Arc<CachedPod>>,
    /// Its active pods.
    pub active_pods: Vec<Arc<CachedPod>>,
    /// Succeeded pods, counted and about to be.
    pub succeeded: i32,
    /// Failed pods, counted and about to be.
    pub failed: i32,
    /// Pods being deleted that have not finished.
    pub terminating: i32,
    /// Active pods that are ready.
    pub ready: i32,
    /// The condition the Job is heading to, when decided.
    pub finished_condition: Option<JobCondition>,
    /// UIDs in `status.uncountedTerminatedPods.succeeded`.
    pub uncounted_succeeded: HashSet<String>,
    /// UIDs in `status.uncountedTerminatedPods.failed`.
    pub uncounted_failed: HashSet<String>,
    /// Pods whose finalizer removal is in flight.
    pub expected_rm_finalizers: HashSet<String>,
    /// `status.completedIndexes` as last written (Indexed).
    pub prev_succeeded_indexes: OrderedIntervals,
    /// Succeeded indexes including new ones (Indexed).
    pub succeeded_indexes: OrderedIntervals,
    /// Failed indexes (backoffLimitPerIndex).
    pub failed_indexes: Option<OrderedIntervals>,
    /// Per index, the failed pod kept until its replacement exists.
    pub delayed_deletion: HashMap<i32, Arc<CachedPod>>,
    /// The back-off record after this sync's newly finished pods.
    pub new_backoff: BackoffRecord,
    /// Sync again after this long.
    pub requeue_after: Option<Duration>,
    /// When the sync started.
    pub now: Timestamp,
    /// The status as the sync found it.
    pub original_status: Option<JobStatus>,
}

impl SyncCtx {
    /// Asks for another sync after `d` (the soonest request wins).
    pub fn requeue(&mut self, d: Duration) {
        self.requeue_after = Some(self.requeue_after.map_or(d, |r| r.min(d)));
    }

    /// Pods with the finalizer, not already processed, with a valid index
    /// for Indexed Jobs, and passing `filter` (upstream's
    /// `getValidPodsWithFilter`).
    pub fn valid_pods(
        &self,
        uncounted: Option<&HashSet<String>>,
        filter: impl Fn(&CachedPod) -> bool,
    ) -> Vec<Arc<CachedPod>> {
        let n = completions(&self.job);
        let indexed = is_indexed(&self.job);
        self.pods
            .iter()
            .filter(|p| {
                let uid = p.metadata.uid.as_deref().unwrap_or("");
                has_tracking_finalizer(p)
                    && !uncounted.is_some_and(|u| u.contains(uid))
                    && !self.expected_rm_finalizers.contains(uid)
                    && (!indexed || valid_index(p, n).is_some())
                    && filter(p)
            })
            .cloned()
            .collect()
    }
}

/// Counts pods being deleted that have not reached a terminal phase.
fn count_terminating(pods: &[Arc<CachedPod>]) -> i32 {
    let n = pods
        .iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_some() && !matches!(phase(p), "Succeeded" | "Failed")
        })
        .count();
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn len32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// How long a sync waits for the Job informer to show this controller's
/// own status write before it looks again (the write's event usually
/// requeues the Job first).
const OWN_WRITE_WAIT: Duration = Duration::from_secs(1);

/// The interim failure condition (the Job turns Failed once its pods are
/// gone).
fn failure_target(reason: &str, message: &str, now: Timestamp) -> JobCondition {
    new_condition(status::FAILURE_TARGET, "True", reason, message, now)
}

/// The first podFailurePolicy FailJob message among failed pods.
fn fail_job_message(job: &Job, pods: &[Arc<CachedPod>]) -> Option<String> {
    let policy = job.spec.as_ref()?.pod_failure_policy.as_ref()?;
    pods.iter()
        .filter(|p| is_pod_failed(p, job))
        .find_map(|p| match_pod_failure_policy(policy, p).message)
}

impl JobController {
    pub(crate) fn event(&self, job: &Job, normal: bool, reason: &str, action: &str, note: String) {
        record_event(self.events.as_ref(), job, normal, reason, action, note);
    }

    fn job_pods(&self, job: &Job) -> Vec<Arc<CachedPod>> {
        let ns = job.metadata.namespace.as_deref().unwrap_or("");
        let uid = job.metadata.uid.as_deref().unwrap_or("");
        self.job_pods_of(ns, uid)
    }

    /// The pods in `ns` whose controller is the Job with `uid`.
    pub(crate) fn job_pods_of(&self, ns: &str, uid: &str) -> Vec<Arc<CachedPod>> {
        self.pods_by_controller
            .owned_or_orphaned(ns, uid)
            .into_iter()
            .filter(|p| controller_of(&p.metadata).is_some_and(|r| r.uid == uid))
            .collect()
    }

    /// The sync of `key`: a Job, or an orphan pod.
    pub(crate) async fn sync_key(&self, key: &str) -> Result<Action, SyncError> {
        if let Some(pod_key) = key.strip_prefix(ORPHAN_POD_PREFIX) {
            return self.sync_orphan_pod(pod_key).await;
        }
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        let Some(job) = self.jobs.get(&ObjectRef::new(name).within(ns)) else {
            tracing::debug!(key, "job deleted");
            self.expectations.delete_expectations(key);
            self.finalizer_expectations.forget(key);
            self.own_writes.forget(key);
            self.backoff_forget(key);
            return Ok(Action::Await);
        };
        if !self.own_writes.caught_up(key, &job.metadata) {
            // The informer still has the Job from before this controller's
            // last status write, while the pods may already show what
            // followed it (finalizers removed): the indexes and counts
            // read now would be the older ones. The write's event brings
            // the Job back; the requeue is a fallback.
            tracing::debug!(key, "job informer behind this controller's status write");
            return Ok(Action::RequeueAfter(OWN_WRITE_WAIT));
        }
        if status::is_job_finished(&job) {
            self.backoff_forget(key);
            return Ok(Action::Await);
        }
        let mut ctx = self.new_ctx(key, (*job).clone());
        self.decide_and_manage(&mut ctx).await?;
        Ok(ctx
            .requeue_after
            .map_or(Action::Await, Action::RequeueAfter))
    }

    fn backoff_forget(&self, key: &str) {
        self.backoff
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    fn new_ctx(&self, key: &str, job: Job) -> SyncCtx {
        let pods = self.job_pods(&job);
        let active_pods: Vec<Arc<CachedPod>> =
            pods.iter().filter(|p| is_pod_active(p)).cloned().collect();
        let st = job.status.clone().unwrap_or_default();
        let uncounted = st.uncounted_terminated_pods.clone().unwrap_or_default();
        let set = |v: Option<Vec<String>>| -> HashSet<String> {
            v.unwrap_or_default().into_iter().collect()
        };
        SyncCtx {
            key: key.to_owned(),
            terminating: count_terminating(&pods),
            ready: len32(active_pods.iter().filter(|p| is_pod_ready(p)).count()),
            active_pods,
            pods,
            succeeded: 0,
            failed: 0,
            finished_condition: None,
            uncounted_succeeded: set(uncounted.succeeded),
            uncounted_failed: set(uncounted.failed),
            expected_rm_finalizers: self.finalizer_expectations.expected(key),
            prev_succeeded_indexes: OrderedIntervals::default(),
            succeeded_indexes: OrderedIntervals::default(),
            failed_indexes: None,
            delayed_deletion: HashMap::new(),
            new_backoff: BackoffRecord::default(),
            requeue_after: None,
            now: Timestamp::now(),
            original_status: job.status.clone(),
            job,
        }
    }

    async fn decide_and_manage(&self, ctx: &mut SyncCtx) -> Result<(), SyncError> {
        let key = ctx.key.clone();
        let satisfied = self.expectations.satisfied_expectations(&key);
        let now = ctx.now;
        let st = ctx.job.status.clone().unwrap_or_default();
        let policy = ctx
            .job
            .spec
            .as_ref()
            .and_then(|s| s.pod_failure_policy.clone());

        let new_succeeded =
            ctx.valid_pods(Some(&ctx.uncounted_succeeded), |p| phase(p) == "Succeeded");
        let job = ctx.job.clone();
        let new_failed = ctx.valid_pods(Some(&ctx.uncounted_failed), |p| is_pod_failed(p, &job));
        let counted_new_failed = new_failed
            .iter()
            .filter(|p| {
                policy
                    .as_ref()
                    .is_none_or(|pol| match_pod_failure_policy(pol, p).count_failed)
            })
            .count();
        ctx.succeeded = st.succeeded.unwrap_or(0)
            + len32(new_succeeded.len())
            + len32(ctx.uncounted_succeeded.len());
        ctx.failed =
            st.failed.unwrap_or(0) + len32(counted_new_failed) + len32(ctx.uncounted_failed.len());

        // First start: the clock for activeDeadlineSeconds starts now,
        // unless the Job is created suspended.
        if st.start_time.is_none() && !status::is_suspended(&ctx.job) {
            ctx.job
                .status
                .get_or_insert_with(Default::default)
                .start_time = Some(Time(now));
        }

        let record = self
            .backoff
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned()
            .unwrap_or_default();
        let times = |pods: &[Arc<CachedPod>]| -> Vec<Timestamp> {
            pods.iter().filter_map(|p| finished_time(p)).collect()
        };
        ctx.new_backoff = record.updated(&times(&new_succeeded), &times(&new_failed));

        let backoff_limit = ctx
            .job
            .spec
            .as_ref()
            .and_then(|s| s.backoff_limit)
            .unwrap_or(6);
        let exceeds_backoff_limit = ctx.failed > backoff_limit;

        // SuccessCriteriaMet already recorded: the Job is completing, and
        // failures no longer matter.
        let success_met = status::find_condition(&ctx.job, status::SUCCESS_CRITERIA_MET)
            .filter(|c| c.status == "True")
            .cloned();
        ctx.finished_condition = success_met.clone();
        if success_met.is_none() {
            if let Some(target) = status::find_condition(&ctx.job, status::FAILURE_TARGET)
                .filter(|c| c.status == "True")
            {
                ctx.finished_condition = Some(status::final_for_interim(target, now));
            } else if let Some(msg) = fail_job_message(&ctx.job, &ctx.pods) {
                ctx.finished_condition =
                    Some(failure_target(status::REASON_POD_FAILURE_POLICY, &msg, now));
            }
        }
        if ctx.finished_condition.is_none() {
            if exceeds_backoff_limit
                || status::past_backoff_limit_on_failure(&ctx.job, &ctx.active_pods)
            {
                ctx.finished_condition = Some(failure_target(
                    status::REASON_BACKOFF_LIMIT_EXCEEDED,
                    "Job has reached the specified backoff limit",
                    now,
                ));
            } else if status::past_active_deadline(&ctx.job, now) {
                ctx.finished_condition = Some(failure_target(
                    status::REASON_DEADLINE_EXCEEDED,
                    "Job was active longer than specified deadline",
                    now,
                ));
            } else if let Some(left) = status::remaining_active_deadline(&ctx.job, now) {
                ctx.requeue(left);
            }
        }

        if is_indexed(&ctx.job) {
            self.compute_indexes(ctx);
        }

        let mut manage_err = None;
        if ctx.finished_condition.is_some() {
            let active = len32(ctx.active_pods.len());
            let pods = ctx.active_pods.clone();
            let (deleted, deleted_ready, err) = self.delete_active_pods(&ctx.job, &pods).await;
            if deleted != active || !satisfied {
                // Pods may still be in flight: decide again next time.
                ctx.finished_condition = None;
            }
            ctx.active_pods.clear();
            ctx.terminating += deleted;
            ctx.ready -= deleted_ready;
            manage_err = err;
            let remaining = active - deleted;
            self.set_counts(ctx, remaining);
        } else {
            let mut manage_called = false;
            let mut active = len32(ctx.active_pods.len());
            if satisfied && ctx.job.metadata.deletion_timestamp.is_none() {
                let (a, err) = self.manage_job(ctx).await;
                active = a;
                manage_err = err;
                manage_called = true;
            }
            let want = ctx.job.spec.as_ref().and_then(|s| s.completions);
            let complete = match want {
                // Without completions, one success finishes the Job once
                // the rest are done.
                None => ctx.succeeded > 0 && active == 0,
                Some(n) => ctx.succeeded >= n && active == 0,
            };
            if complete {
                ctx.finished_condition = Some(new_condition(
                    status::SUCCESS_CRITERIA_MET,
                    "True",
                    status::REASON_COMPLETIONS_REACHED,
                    "Reached expected number of succeeded pods",
                    now,
                ));
            } else if manage_called {
                self.update_suspend_condition(ctx);
            }
            self.set_counts(ctx, active);
        }
        self.track_job_status_and_remove_finalizers(ctx).await?;
        match manage_err {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    fn set_counts(&self, ctx: &mut SyncCtx, active: i32) {
        let s = ctx.job.status.get_or_insert_with(Default::default);
        s.active = Some(active.max(0));
        s.ready = Some(ctx.ready.max(0));
        s.terminating = Some(ctx.terminating.max(0));
    }

    /// Suspended=True while suspended; Suspended=False (and a new start
    /// time) once resumed. Whether it changed.
    fn update_suspend_condition(&self, ctx: &mut SyncCtx) -> bool {
        let now = ctx.now;
        let suspended = status::is_suspended(&ctx.job);
        let job_copy = ctx.job.clone();
        let st = ctx.job.status.get_or_insert_with(Default::default);
        let conds = st.conditions.get_or_insert_with(Vec::new);
        let changed = if suspended {
            status::ensure_condition_status(
                conds,
                status::SUSPENDED,
                "True",
                "JobSuspended",
                "Job suspended",
                now,
            )
        } else {
            status::ensure_condition_status(
                conds,
                status::SUSPENDED,
                "False",
                "JobResumed",
                "Job resumed",
                now,
            )
        };
        if conds.is_empty() {
            st.conditions = None;
        }
        if changed {
            if suspended {
                self.event(
                    &job_copy,
                    true,
                    "Suspended",
                    "Suspend",
                    "Job suspended".to_owned(),
                );
            } else {
                // activeDeadlineSeconds counts continuous activity: the
                // clock restarts on resume.
                st.start_time = Some(Time(now));
                self.event(
                    &job_copy,
                    true,
                    "Resumed",
                    "Resume",
                    "Job resumed".to_owned(),
                );
            }
        }
        changed
    }

    /// Succeeded and failed indexes, index failure conditions and
    /// successPolicy for an Indexed Job.
    fn compute_indexes(&self, ctx: &mut SyncCtx) {
        let n = completions(&ctx.job);
        let prev = ctx
            .job
            .status
            .as_ref()
            .and_then(|s| s.completed_indexes.as_deref())
            .map(|s| OrderedIntervals::parse(s, n))
            .unwrap_or_default();
        let mut new: Vec<i32> = ctx
            .pods
            .iter()
            .filter(|p| phase(p) == "Succeeded" && has_tracking_finalizer(p))
            .filter_map(|p| valid_index(p, n))
            .collect();
        new.sort_unstable();
        new.dedup();
        ctx.succeeded_indexes = prev.with_ordered_indexes(&new);
        ctx.prev_succeeded_indexes = prev;
        ctx.succeeded = ctx.succeeded_indexes.total();
        let now = ctx.now;
        if let Some(limit) = backoff_limit_per_index(&ctx.job) {
            let failed = calculate_failed_indexes(&ctx.job, &ctx.pods, limit);
            if ctx.finished_condition.is_none() {
                let max = ctx.job.spec.as_ref().and_then(|s| s.max_failed_indexes);
                if max.is_some_and(|m| failed.total() > m) {
                    ctx.finished_condition = Some(failure_target(
                        status::REASON_MAX_FAILED_INDEXES_EXCEEDED,
                        "Job has exceeded the specified maximal number of failed indexes",
                        now,
                    ));
                } else if failed.total() > 0 && failed.total() + ctx.succeeded_indexes.total() >= n
                {
                    ctx.finished_condition = Some(failure_target(
                        status::REASON_FAILED_INDEXES,
                        "Job has failed indexes",
                        now,
                    ));
                }
            }
            let tracked = ctx.valid_pods(None, |_| true);
            ctx.delayed_deletion = pods_with_delayed_deletion(
                &ctx.job,
                &tracked,
                &ctx.active_pods,
                &ctx.succeeded_indexes,
                &failed,
            );
            ctx.failed_indexes = Some(failed);
        }
        if ctx.finished_condition.is_none() {
            let policy = ctx
                .job
                .spec
                .as_ref()
                .and_then(|s| s.success_policy.as_ref());
            if let Some(msg) = status::match_success_policy(policy, n, &ctx.succeeded_indexes) {
                ctx.finished_condition = Some(new_condition(
                    status::SUCCESS_CRITERIA_MET,
                    "True",
                    status::REASON_SUCCESS_POLICY,
                    &msg,
                    now,
                ));
            }
        }
    }
}

impl Reconciler for JobController {
    fn name(&self) -> &str {
        super::NAME
    }

    fn sync(
        &self,
        key: &str,
    ) -> impl std::future::Future<Output = Result<Action, SyncError>> + Send {
        self.sync_key(key)
    }
}
