//! Finalizer-based pod tracking (upstream's
//! `trackJobStatusAndRemoveFinalizers`): a finished pod's UID goes into
//! `status.uncountedTerminatedPods` (written first), then its finalizer is
//! removed, then the UID moves into the succeeded/failed counters. A crash
//! between steps repeats a step but never counts a pod twice or loses it.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::batch::v1::{Job, JobStatus, UncountedTerminatedPods};
use kube::Api;
use kube::api::PostParams;

use super::failure::{is_pod_failed, match_pod_failure_policy};
use super::indexed::{completions, is_indexed, valid_index};
use super::status::{self, find_condition};
use super::sync::{Failed, SyncCtx};
use super::{JobController, MAX_UNCOUNTED_PODS, has_tracking_finalizer};
use crate::apierrors::api_message;
use crate::cached_pod::CachedPod;
use crate::podutil::{key_of, phase};

fn uid(p: &CachedPod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

fn is_success_criteria(c: Option<&k8s_openapi::api::batch::v1::JobCondition>) -> bool {
    c.is_some_and(|c| c.type_ == status::SUCCESS_CRITERIA_MET)
}

/// Moves uncounted UIDs whose pods no longer carry the finalizer into the
/// counters. Whether anything moved.
pub(crate) fn clean_uncounted_pods_without_finalizers(
    st: &mut JobStatus,
    with_finalizer: &HashSet<String>,
) -> bool {
    let Some(u) = st.uncounted_terminated_pods.as_mut() else {
        return false;
    };
    let mut changed = false;
    let mut drain = |list: &mut Option<Vec<String>>, counter: &mut Option<i32>| {
        let Some(v) = list.as_mut() else {
            return;
        };
        let before = v.len();
        v.retain(|uid| with_finalizer.contains(uid));
        let moved = before - v.len();
        if moved > 0 {
            changed = true;
            *counter = Some(counter.unwrap_or(0) + i32::try_from(moved).unwrap_or(i32::MAX));
        }
    };
    drain(&mut u.succeeded, &mut st.succeeded);
    drain(&mut u.failed, &mut st.failed);
    changed
}

/// Whether the finished pod's finalizer may go now.
fn can_remove_finalizer(ctx: &SyncCtx, pod: &CachedPod, considered_failed: bool) -> bool {
    if ctx.job.metadata.deletion_timestamp.is_some()
        || ctx.finished_condition.is_some()
        || phase(pod) == "Succeeded"
    {
        return true;
    }
    if !considered_failed {
        return false;
    }
    // The last failed pod of a pending index keeps its finalizer until its
    // replacement (which inherits its failure count) exists.
    if let Some(ix) = super::indexed::completion_index(pod)
        && let Some(p) = ctx.delayed_deletion.get(&ix)
        && p.metadata.uid == pod.metadata.uid
    {
        return false;
    }
    true
}

impl JobController {
    pub(crate) async fn track_job_status_and_remove_finalizers(
        &self,
        ctx: &mut SyncCtx,
    ) -> Result<(), Failed> {
        let original = ctx.original_status.clone();
        let indexed = is_indexed(&ctx.job);
        let n = completions(&ctx.job);
        let mut pods: Vec<Arc<CachedPod>> = ctx.pods.clone();
        if indexed {
            // Completed indexes come in order.
            pods.sort_by_key(|p| super::indexed::completion_index(p));
        }
        let with_finalizer: HashSet<String> = pods
            .iter()
            .filter(|p| has_tracking_finalizer(p) && !ctx.expected_rm_finalizers.contains(&uid(p)))
            .map(|p| uid(p))
            .collect();
        let st = ctx.job.status.get_or_insert_with(Default::default);
        if st.uncounted_terminated_pods.is_none() {
            st.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
        }
        clean_uncounted_pods_without_finalizers(st, &with_finalizer);

        let policy = ctx
            .job
            .spec
            .as_ref()
            .and_then(|s| s.pod_failure_policy.clone());
        let mut to_remove: Vec<Arc<CachedPod>> = Vec::new();
        let mut new_succeeded_indexes: Vec<i32> = Vec::new();
        let mut new_uncounted_succeeded: Vec<String> = Vec::new();
        let mut new_uncounted_failed: Vec<String> = Vec::new();
        let mut reached_max = false;
        let success_finishing = is_success_criteria(ctx.finished_condition.as_ref());
        for pod in &pods {
            let id = uid(pod);
            if !has_tracking_finalizer(pod) || ctx.expected_rm_finalizers.contains(&id) {
                continue;
            }
            let considered_failed = is_pod_failed(pod, &ctx.job);
            if !can_remove_finalizer(ctx, pod, considered_failed) {
                continue;
            }
            to_remove.push(pod.clone());
            if phase(pod) == "Succeeded" && !ctx.uncounted_failed.contains(&id) {
                if indexed {
                    if let Some(ix) = valid_index(pod, n)
                        && !ctx.prev_succeeded_indexes.has(ix)
                    {
                        new_succeeded_indexes.push(ix);
                    }
                } else if !ctx.uncounted_succeeded.contains(&id) {
                    new_uncounted_succeeded.push(id);
                }
            } else if considered_failed || (ctx.finished_condition.is_some() && !success_finishing)
            {
                // A Job that is failing counts its unfinished pods as
                // failed.
                let index_ok = !indexed || valid_index(pod, n).is_some();
                if !ctx.uncounted_failed.contains(&id) && index_ok {
                    let counts = policy
                        .as_ref()
                        .is_none_or(|p| match_pod_failure_policy(p, pod).count_failed);
                    if counts {
                        new_uncounted_failed.push(id);
                    }
                }
            }
            if new_succeeded_indexes.len()
                + new_uncounted_succeeded.len()
                + new_uncounted_failed.len()
                + ctx.uncounted_succeeded.len()
                + ctx.uncounted_failed.len()
                >= MAX_UNCOUNTED_PODS
            {
                reached_max = true;
                break;
            }
        }
        {
            let st = ctx.job.status.get_or_insert_with(Default::default);
            let u = st
                .uncounted_terminated_pods
                .get_or_insert_with(Default::default);
            if !new_uncounted_succeeded.is_empty() {
                u.succeeded
                    .get_or_insert_with(Vec::new)
                    .extend(new_uncounted_succeeded);
            }
            if !new_uncounted_failed.is_empty() {
                u.failed
                    .get_or_insert_with(Vec::new)
                    .extend(new_uncounted_failed);
            }
        }
        if indexed {
            new_succeeded_indexes.sort_unstable();
            ctx.succeeded_indexes = ctx
                .succeeded_indexes
                .with_ordered_indexes(&new_succeeded_indexes);
            let st = ctx.job.status.get_or_insert_with(Default::default);
            st.succeeded = Some(ctx.succeeded_indexes.total());
            st.completed_indexes = Some(ctx.succeeded_indexes.to_string());
            st.failed_indexes = ctx.failed_indexes.as_ref().map(|f| f.to_string());
        }
        // The interim condition is written before any finalizer goes, so
        // the decision survives a restart.
        if let Some(fc) = ctx.finished_condition.clone() {
            let interim =
                fc.type_ == status::FAILURE_TARGET || fc.type_ == status::SUCCESS_CRITERIA_MET;
            if interim {
                if find_condition(&ctx.job, &fc.type_).is_none() {
                    ctx.job
                        .status
                        .get_or_insert_with(Default::default)
                        .conditions
                        .get_or_insert_with(Vec::new)
                        .push(fc.clone());
                }
                ctx.finished_condition = Some(status::final_for_interim(&fc, ctx.now));
            }
        }
        let flushed = self
            .flush_and_remove_finalizers(ctx, &to_remove, &with_finalizer, original)
            .await?;
        let finished = !reached_max && self.enact_job_finished(ctx);
        if finished || normalize(&ctx.job.status) != normalize(&flushed) {
            self.update_status(ctx).await?;
            if finished && let Some(fc) = ctx.finished_condition.clone() {
                self.record_job_finished(&ctx.job, &fc);
            }
        }
        Ok(())
    }

    /// Writes the status if it changed (recording uncounted pods), removes
    /// the finalizers, then moves the pods that lost them into the counters
    /// in memory. The status as last written.
    async fn flush_and_remove_finalizers(
        &self,
        ctx: &mut SyncCtx,
        to_remove: &[Arc<CachedPod>],
        with_finalizer: &HashSet<String>,
        original: Option<JobStatus>,
    ) -> Result<Option<JobStatus>, Failed> {
        let mut written = original;
        if normalize(&ctx.job.status) != normalize(&written) {
            self.update_status(ctx).await?;
            // The back-off counts these failures only once they are on
            // record.
            self.backoff
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(ctx.key.clone(), ctx.new_backoff.clone());
            written = ctx.job.status.clone();
        }
        if to_remove.is_empty() {
            return Ok(written);
        }
        let uids: Vec<String> = to_remove.iter().map(|p| uid(p)).collect();
        self.finalizer_expectations.expect(&ctx.key, uids);
        let results = futures::future::join_all(
            to_remove
                .iter()
                .map(|p| async move { (p.clone(), self.patch_out_finalizer(p).await) }),
        )
        .await;
        let mut remaining = with_finalizer.clone();
        let mut first_err = None;
        for (pod, r) in results {
            match r {
                Ok(()) => {
                    remaining.remove(&uid(&pod));
                }
                Err(e) => {
                    self.finalizer_expectations.observed(&ctx.key, &uid(&pod));
                    first_err.get_or_insert_with(|| {
                        format!(
                            "removing tracking finalizer from {}: {}",
                            key_of(&pod.metadata),
                            api_message(&e)
                        )
                    });
                }
            }
        }
        let st = ctx.job.status.get_or_insert_with(Default::default);
        let moved = clean_uncounted_pods_without_finalizers(st, &remaining);
        if let Some(e) = first_err {
            if moved {
                // Keep the partial progress.
                self.update_status(ctx).await?;
            }
            return Err(Failed(e));
        }
        Ok(written)
    }

    /// Sets the final condition once no pod is uncounted or terminating.
    fn enact_job_finished(&self, ctx: &mut SyncCtx) -> bool {
        let Some(fc) = ctx.finished_condition.clone() else {
            return false;
        };
        let st = ctx.job.status.get_or_insert_with(Default::default);
        if let Some(u) = st.uncounted_terminated_pods.as_ref() {
            let n =
                u.succeeded.as_ref().map_or(0, Vec::len) + u.failed.as_ref().map_or(0, Vec::len);
            if n > 0 {
                return false;
            }
        }
        if ctx.terminating > 0 {
            return false;
        }
        let now = ctx.now;
        let reason = fc.reason.clone().unwrap_or_default();
        let message = fc.message.clone().unwrap_or_default();
        let conds = st.conditions.get_or_insert_with(Vec::new);
        status::ensure_condition_status(conds, &fc.type_, &fc.status, &reason, &message, now);
        if fc.type_ == status::COMPLETE {
            st.completion_time = fc.last_transition_time.clone();
        }
        true
    }

    fn record_job_finished(&self, job: &Job, fc: &k8s_openapi::api::batch::v1::JobCondition) {
        if fc.type_ == status::COMPLETE {
            let st = job.status.clone().unwrap_or_default();
            if let Some(c) = job.spec.as_ref().and_then(|s| s.completions)
                && st.succeeded.unwrap_or(0) > c
            {
                self.event(
                    job,
                    false,
                    "TooManySucceededPods",
                    "Complete",
                    "Too many succeeded pods running after completion count reached".to_owned(),
                );
            }
            self.event(
                job,
                true,
                "Completed",
                "Complete",
                "Job completed".to_owned(),
            );
        } else {
            self.event(
                job,
                false,
                fc.reason.as_deref().unwrap_or(""),
                "Fail",
                fc.message.clone().unwrap_or_default(),
            );
        }
    }

    /// PUTs the status; the returned object becomes the working copy (its
    /// resourceVersion guards the next write).
    async fn update_status(&self, ctx: &mut SyncCtx) -> Result<(), Failed> {
        let ns = ctx.job.metadata.namespace.clone().unwrap_or_default();
        let name = ctx.job.metadata.name.clone().unwrap_or_default();
        let api: Api<Job> = Api::namespaced(self.client.clone(), &ns);
        match api
            .replace_status(&name, &PostParams::default(), &ctx.job)
            .await
        {
            Ok(updated) => {
                self.own_writes.record(&ctx.key, &updated.metadata);
                ctx.job.metadata = updated.metadata;
                Ok(())
            }
            Err(e) => Err(Failed(format!("updating job status: {}", api_message(&e)))),
        }
    }
}

/// A status with empty lists and uncounted pods dropped, for comparing.
fn normalize(st: &Option<JobStatus>) -> JobStatus {
    let mut s = st.clone().unwrap_or_default();
    if let Some(u) = s.uncounted_terminated_pods.as_mut() {
        if u.succeeded.as_ref().is_some_and(Vec::is_empty) {
            u.succeeded = None;
        }
        if u.failed.as_ref().is_some_and(Vec::is_empty) {
            u.failed = None;
        }
        if u.succeeded.is_none() && u.failed.is_none() {
            s.uncounted_terminated_pods = None;
        }
    }
    if s.conditions.as_ref().is_some_and(Vec::is_empty) {
        s.conditions = None;
    }
    s
}
