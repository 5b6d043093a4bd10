//! Creating and deleting a Job's pods (upstream's `manageJob`,
//! `deleteJobPods`, `deleteActivePods`).

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::failure::{only_replace_failed_pods, remaining_for_failures};
use super::indexed::{
    self, COMPLETION_INDEX_ANNOTATION, add_completion_index_env, completions,
    first_pending_indexes, generate_name_with_index, is_indexed,
};
use super::intervals::OrderedIntervals;
use super::status::is_suspended;
use super::sync::{Failed, SyncCtx};
use super::{
    JobController, MAX_POD_CREATE_DELETE_PER_SYNC, TRACKING_FINALIZER, has_tracking_finalizer,
};
use crate::apierrors::{api_message, is_not_found};
use crate::cached_pod::CachedPod;
use crate::podcontrol::{PodControl, pod_from_template, slow_start_batch};
use crate::podutil::{is_pod_ready, key_of};
use crate::replicaset::ranking::pods_to_delete;

fn len32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The `n` active pods to remove first: for Indexed Jobs the pods with
/// bad, duplicate or failed indexes, then by upstream's active-pod ranking.
pub(crate) fn active_pods_for_removal(
    job: &Job,
    pods: &[Arc<CachedPod>],
    failed: Option<&OrderedIntervals>,
    n: usize,
) -> Vec<Arc<CachedPod>> {
    let (mut rm, left) = if is_indexed(job) {
        indexed::split_extra_index_pods(pods, completions(job), failed)
    } else {
        (Vec::new(), pods.to_vec())
    };
    if rm.len() < n {
        let more = pods_to_delete(&left, &left, n - rm.len(), Timestamp::now());
        rm.extend(more);
    }
    rm
}

/// The removal patch for the tracking finalizer (strategic merge).
pub(crate) fn remove_finalizer_patch() -> serde_json::Value {
    json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}})
}

impl JobController {
    fn pod_control(&self) -> PodControl<'_> {
        PodControl::new(&self.client, self.events.as_ref())
    }

    /// Removes the tracking finalizer from `pod`.
    pub(crate) async fn patch_out_finalizer(&self, pod: &CachedPod) -> Result<(), kube::Error> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let name = pod.metadata.name.as_deref().unwrap_or("");
        let api: Api<CachedPod> = Api::namespaced(self.client.clone(), ns);
        match api
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Strategic(remove_finalizer_patch()),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes `pods`, first removing the finalizer when `drop_finalizer`
    /// (pods removed for suspend or excess are not failures): (deleted,
    /// deleted that were ready, first error).
    async fn delete_pods(
        &self,
        job: &Job,
        pods: &[Arc<CachedPod>],
        drop_finalizer: bool,
    ) -> (i32, i32, Option<Failed>) {
        let key = key_of(&job.metadata);
        if drop_finalizer {
            self.expectations
                .expect_deletions(&key, pods.iter().map(|p| key_of(&p.metadata)).collect());
        }
        let deleted = AtomicI32::new(0);
        let deleted_ready = AtomicI32::new(0);
        let results = futures::future::join_all(pods.iter().map(|pod| {
            let (deleted, deleted_ready, key) = (&deleted, &deleted_ready, &key);
            async move {
                if drop_finalizer
                    && has_tracking_finalizer(pod)
                    && let Err(e) = self.patch_out_finalizer(pod).await
                {
                    self.expectations
                        .deletion_observed(key, &key_of(&pod.metadata));
                    return Err(format!(
                        "removing completion finalizer: {}",
                        api_message(&e)
                    ));
                }
                let ns = pod.metadata.namespace.as_deref().unwrap_or("");
                let name = pod.metadata.name.as_deref().unwrap_or("");
                match self.pod_control().delete_pod(job, ns, name).await {
                    Ok(true) => {
                        deleted.fetch_add(1, Ordering::Relaxed);
                        if is_pod_ready(pod) {
                            deleted_ready.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(())
                    }
                    failed => {
                        if drop_finalizer {
                            self.expectations
                                .deletion_observed(key, &key_of(&pod.metadata));
                        }
                        failed.map(|_| ())
                    }
                }
            }
        }))
        .await;
        let err = results.into_iter().find_map(Result::err).map(Failed);
        (deleted.into_inner(), deleted_ready.into_inner(), err)
    }

    /// Deletes the active pods of a finishing Job, keeping their
    /// finalizers so the tracking counts them.
    pub(crate) async fn delete_active_pods(
        &self,
        job: &Job,
        pods: &[Arc<CachedPod>],
    ) -> (i32, i32, Option<Failed>) {
        self.delete_pods(job, pods, false).await
    }

    /// Creates or deletes pods towards the wanted number of active ones:
    /// the new active count and any error.
    pub(crate) async fn manage_job(&self, ctx: &mut SyncCtx) -> (i32, Option<Failed>) {
        let job = ctx.job.clone();
        let active = len32(ctx.active_pods.len());
        let parallelism = job.spec.as_ref().and_then(|s| s.parallelism).unwrap_or(1);
        if is_suspended(&job) {
            let pods = ctx.active_pods.clone();
            let n = pods.len();
            let rm = active_pods_for_removal(&job, &pods, ctx.failed_indexes.as_ref(), n);
            let (removed, removed_ready, err) = self.delete_pods(&job, &rm, true).await;
            ctx.terminating += removed;
            ctx.ready -= removed_ready;
            return (active - removed, err);
        }
        let want_active = match job.spec.as_ref().and_then(|s| s.completions) {
            // Without completions, once one pod succeeded the rest run out.
            None => {
                if ctx.succeeded > 0 {
                    active
                } else {
                    parallelism
                }
            }
            Some(c) => (c - ctx.succeeded).min(parallelism).max(0),
        };
        let rm_at_least = usize::try_from(active - want_active).unwrap_or(0);
        let pods = ctx.active_pods.clone();
        let mut rm = active_pods_for_removal(&job, &pods, ctx.failed_indexes.as_ref(), rm_at_least);
        rm.truncate(MAX_POD_CREATE_DELETE_PER_SYNC);
        if !rm.is_empty() {
            // Deleting and creating in one sync could fight each other;
            // deletions win, creations wait for the next sync.
            let (removed, removed_ready, err) = self.delete_pods(&job, &rm, true).await;
            ctx.terminating += removed;
            ctx.ready -= removed_ready;
            return (active - removed, err);
        }
        let terminating = if only_replace_failed_pods(&job) {
            ctx.terminating
        } else {
            0
        };
        let diff = want_active - terminating - active;
        if diff <= 0 {
            return (active, None);
        }
        let per_index = indexed::backoff_limit_per_index(&job).is_some();
        if !per_index {
            let left = remaining_for_failures(
                ctx.new_backoff.failures_after_last_success,
                ctx.new_backoff.last_failure_time,
                ctx.now,
            );
            if !left.is_zero() {
                ctx.requeue(left);
                return (active, None);
            }
        }
        let mut diff = usize::try_from(diff)
            .unwrap_or(0)
            .min(MAX_POD_CREATE_DELETE_PER_SYNC);
        let mut indexes: Vec<i32> = Vec::new();
        if is_indexed(&job) {
            let n = completions(&job);
            let mut not_pending = ctx
                .succeeded_indexes
                .with_ordered_indexes(&sorted(indexed::indexes_of(&ctx.active_pods)));
            if let Some(f) = &ctx.failed_indexes {
                not_pending = not_pending.with_ordered_indexes(&f.indexes().collect::<Vec<_>>());
            }
            if only_replace_failed_pods(&job) {
                let terminating = ctx.pods.iter().filter(|p| {
                    p.metadata.deletion_timestamp.is_some()
                        && !matches!(crate::podutil::phase(p), "Succeeded" | "Failed")
                });
                not_pending =
                    not_pending.with_ordered_indexes(&sorted(indexed::indexes_of(terminating)));
            }
            indexes = first_pending_indexes(&not_pending, diff, n);
            if per_index {
                let mut ready = Vec::new();
                let mut min_wait: Option<std::time::Duration> = None;
                for ix in indexes {
                    let wait = indexed::remaining_for_index(ctx.delayed_deletion.get(&ix), ctx.now);
                    if wait.is_zero() {
                        ready.push(ix);
                    } else {
                        min_wait = Some(min_wait.map_or(wait, |m| m.min(wait)));
                    }
                }
                if ready.is_empty() {
                    if let Some(w) = min_wait {
                        ctx.requeue(w);
                    }
                    return (active, None);
                }
                indexes = ready;
            }
            diff = indexes.len();
        }
        if diff == 0 {
            return (active, None);
        }
        let key = ctx.key.clone();
        self.expectations.expect_creations(&key, diff);
        let (created, err) = self.create_pods(ctx, diff, indexes).await;
        // Pods never attempted or failed will not be observed.
        for _ in created..diff {
            self.expectations.creation_observed(&key);
        }
        (active + len32(created), err)
    }

    /// Creates `count` pods in slow-start batches (1, 2, 4, ...), stopping
    /// after a batch with a failure: how many were created, and the error.
    async fn create_pods(
        &self,
        ctx: &SyncCtx,
        count: usize,
        indexes: Vec<i32>,
    ) -> (usize, Option<Failed>) {
        let job = &ctx.job;
        let Some(template) = job.spec.as_ref().map(|s| s.template.clone()) else {
            return (0, Some(Failed("job has no pod template".to_owned())));
        };
        let mut base = template;
        let mut meta = base.metadata.take().unwrap_or_default();
        let mut spec = base.spec.take().unwrap_or_default();
        if is_indexed(job) {
            add_completion_index_env(&mut spec.containers);
            if let Some(init) = spec.init_containers.as_mut() {
                add_completion_index_env(init);
            }
        }
        let finalizers = meta.finalizers.get_or_insert_with(Vec::new);
        if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
            finalizers.push(TRACKING_FINALIZER.to_owned());
        }
        let job_name = job.metadata.name.clone().unwrap_or_default();
        let next = AtomicUsize::new(0);
        slow_start_batch(count, 1, || {
            let ix = indexes.get(next.fetch_add(1, Ordering::Relaxed)).copied();
            let mut meta = meta.clone();
            let mut spec = spec.clone();
            let mut generate_name = format!("{job_name}-");
            if let Some(ix) = ix {
                meta.annotations
                    .get_or_insert_with(Default::default)
                    .insert(COMPLETION_INDEX_ANNOTATION.to_owned(), ix.to_string());
                meta.labels
                    .get_or_insert_with(Default::default)
                    .insert(COMPLETION_INDEX_ANNOTATION.to_owned(), ix.to_string());
                spec.hostname = Some(format!("{job_name}-{ix}"));
                generate_name = generate_name_with_index(&job_name, ix);
                if indexed::backoff_limit_per_index(job).is_some() {
                    let extra =
                        indexed::failure_count_annotations(job, ctx.delayed_deletion.get(&ix));
                    meta.annotations
                        .get_or_insert_with(Default::default)
                        .extend(extra);
                }
            }
            let template = PodTemplateSpec {
                metadata: Some(meta),
                spec: Some(spec),
            };
            let pod = pod_from_template(template, job, Some(generate_name));
            async move {
                self.pod_control()
                    .create_pod(job, &pod)
                    .await
                    .map_err(Failed)
            }
        })
        .await
    }
}

fn sorted(set: std::collections::HashSet<i32>) -> Vec<i32> {
    let mut v: Vec<i32> = set.into_iter().collect();
    v.sort_unstable();
    v
}
