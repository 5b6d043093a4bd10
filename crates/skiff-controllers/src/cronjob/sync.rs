//! One sync of a CronJob key (upstream's `sync`, `syncCronJob`,
//! `cleanupFinishedJobs`): reconcile status.active with the Jobs, delete
//! finished Jobs over the history limits, start the due run, write status
//! once, and requeue for the next schedule time.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::reflector::ObjectRef;

use super::schedule::load_location;
use super::utils::{
    active, delete_from_active_list, finished_condition, in_active_list, is_job_finished,
    is_job_succeeded, job_from_template, job_name, job_ref, jobs_over_limit, next_schedule_time,
    next_schedule_time_duration, parse_schedule, schedule_has_tz, spec,
};
use super::{CronJobController, to_std};
use crate::apierrors::{api_message, is_already_exists, is_namespace_terminating, is_not_found};
use crate::controller::{Action, Reconciler, SyncError};
use crate::podcontrol::record_event;
use crate::podutil::controller_of;

/// A sync error carrying upstream's message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Failed(pub String);

impl From<kube::Error> for Failed {
    fn from(e: kube::Error) -> Self {
        Failed(api_message(&e))
    }
}

/// What `sync_cron_job` decided.
#[derive(Default)]
struct Outcome {
    requeue_after: Option<jiff::SignedDuration>,
    update_status: bool,
}

fn status_mut(cj: &mut CronJob) -> &mut CronJobStatus {
    cj.status.get_or_insert_with(CronJobStatus::default)
}

impl Reconciler for CronJobController {
    fn name(&self) -> &str {
        "cronjob"
    }

    #[tracing::instrument(skip_all, fields(cronjob = %key))]
    async fn sync(&self, key: &str) -> Result<Action, SyncError> {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        let Some(cached) = self.cronjobs.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(Action::Await);
        };
        let jobs: Vec<Arc<Job>> = self
            .jobs
            .list(ns)
            .into_iter()
            .filter(|j| controller_of(&j.metadata).is_some_and(|r| r.name == name))
            .collect();
        let mut cj = (*cached).clone();
        let cleaned = self.cleanup_finished_jobs(&mut cj, &jobs).await;
        let mut out = Outcome::default();
        let result = self.sync_cron_job(&mut cj, &jobs, &mut out).await;
        if let Err(e) = &result {
            tracing::debug!(error = %e, "error reconciling cronjob");
        }
        if cleaned || out.update_status {
            let api: Api<CronJob> = Api::namespaced(self.client.clone(), ns);
            api.replace_status(name, &PostParams::default(), &cj)
                .await
                .map_err(Failed::from)?;
        }
        if let Some(d) = out.requeue_after {
            return Ok(Action::RequeueAfter(to_std(d)));
        }
        result.map(|()| Action::Await).map_err(Into::into)
    }
}

impl CronJobController {
    pub(crate) fn event(&self, cj: &CronJob, normal: bool, reason: &str, note: String) {
        record_event(self.events.as_ref(), cj, normal, reason, "Sync", note);
    }

    fn job_api(&self, ns: &str) -> Api<Job> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Deletes finished Jobs beyond successfulJobsHistoryLimit and
    /// failedJobsHistoryLimit, oldest first; true when status changed.
    async fn cleanup_finished_jobs(&self, cj: &mut CronJob, jobs: &[Arc<Job>]) -> bool {
        let s = spec(cj);
        if s.successful_jobs_history_limit.is_none() && s.failed_jobs_history_limit.is_none() {
            return false;
        }
        let of = |kind: &str| -> Vec<Arc<Job>> {
            jobs.iter()
                .filter(|j| finished_condition(j) == Some(kind))
                .cloned()
                .collect()
        };
        let mut update = false;
        for (kind, limit) in [
            ("Complete", s.successful_jobs_history_limit),
            ("Failed", s.failed_jobs_history_limit),
        ] {
            let Some(limit) = limit else { continue };
            for job in jobs_over_limit(&of(kind), limit) {
                if self.delete_job(cj, &job).await {
                    update = true;
                }
            }
        }
        update
    }

    /// Deletes a Job (its pods in the background) and drops it from
    /// status.active; false (with a FailedDelete event) when that failed.
    async fn delete_job(&self, cj: &mut CronJob, job: &Job) -> bool {
        let ns = job.metadata.namespace.as_deref().unwrap_or("");
        let name = job.metadata.name.as_deref().unwrap_or("");
        if let Err(e) = self
            .job_api(ns)
            .delete(name, &DeleteParams::background())
            .await
        {
            self.event(
                cj,
                false,
                "FailedDelete",
                format!("Deleted job: {}", api_message(&e)),
            );
            return false;
        }
        delete_from_active_list(cj, job.metadata.uid.as_deref());
        self.event(cj, true, "SuccessfulDelete", format!("Deleted job {name}"));
        true
    }

    /// Reconciles status with the Jobs, then starts the due run if any.
    async fn sync_cron_job(
        &self,
        cj: &mut CronJob,
        jobs: &[Arc<Job>],
        out: &mut Outcome,
    ) -> Result<(), Failed> {
        let now = self.clock.now();
        let ns = cj.metadata.namespace.clone().unwrap_or_default();
        let cj_name = cj.metadata.name.clone().unwrap_or_default();
        for j in jobs {
            let uid = j.metadata.uid.as_deref();
            let found = in_active_list(cj, uid);
            let job_name = j.metadata.name.clone().unwrap_or_default();
            if !found && !is_job_finished(j) {
                // Our status may be stale: check the live object first.
                let api: Api<CronJob> = Api::namespaced(self.client.clone(), &ns);
                let fresh = api.get(&cj_name).await?;
                if in_active_list(&fresh, uid) {
                    *cj = fresh;
                    continue;
                }
                self.event(
                    cj,
                    false,
                    "UnexpectedJob",
                    format!("Saw a job that the controller did not create or forgot: {job_name}"),
                );
            } else if found && is_job_finished(j) {
                let cond = finished_condition(j).unwrap_or_default();
                delete_from_active_list(cj, uid);
                self.event(
                    cj,
                    true,
                    "SawCompletedJob",
                    format!("Saw completed job: {job_name}, condition: {cond}"),
                );
                out.update_status = true;
            } else if is_job_succeeded(j) {
                // Finished runs count for lastSuccessfulTime whether or not
                // they were still listed as active.
                let done = j.status.as_ref().and_then(|s| s.completion_time.clone());
                let last = cj
                    .status
                    .as_ref()
                    .and_then(|s| s.last_successful_time.clone());
                let newer = match (&last, &done) {
                    (None, _) => true,
                    (Some(l), Some(d)) => d.0 > l.0,
                    (Some(_), None) => false,
                };
                if newer {
                    status_mut(cj).last_successful_time = done;
                    out.update_status = true;
                }
            }
        }

        // Active entries whose Job is gone (checked live, the cache may lag).
        for r in active(cj) {
            if jobs.iter().any(|j| j.metadata.uid == r.uid) {
                continue;
            }
            let r_ns = r.namespace.clone().unwrap_or_else(|| ns.clone());
            let r_name = r.name.clone().unwrap_or_default();
            match self.job_api(&r_ns).get(&r_name).await {
                Err(e) if is_not_found(&e) => {
                    self.event(
                        cj,
                        true,
                        "MissingJob",
                        format!("Active job went missing: {r_name}"),
                    );
                    delete_from_active_list(cj, r.uid.as_deref());
                    out.update_status = true;
                }
                Err(e) => return Err(e.into()),
                Ok(_) => {}
            }
        }

        if cj.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let s = spec(cj);
        if let Some(tz) = &s.time_zone
            && let Err(e) = load_location(tz)
        {
            self.event(
                cj,
                false,
                "UnknownTimeZone",
                format!("invalid timeZone: {:?}: {e}", tz),
            );
            return Ok(());
        }
        if s.suspend == Some(true) {
            return Ok(());
        }
        if schedule_has_tz(cj) {
            self.event(
                cj,
                false,
                "UnsupportedSchedule",
                format!(
                    "CRON_TZ or TZ used in schedule {:?} is not officially supported, see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details",
                    s.schedule
                ),
            );
        }
        let sched = match parse_schedule(cj, &self.local) {
            Ok(sched) => sched,
            Err(e) => {
                self.event(
                    cj,
                    false,
                    "UnparseableSchedule",
                    format!("unparseable schedule: {:?} : {e}", s.schedule),
                );
                return Ok(());
            }
        };
        let scheduled = match next_schedule_time(cj, now, &sched) {
            Ok((t, too_many)) => {
                if too_many {
                    self.event(
                        cj,
                        false,
                        "TooManyMissedTimes",
                        "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".to_owned(),
                    );
                }
                t
            }
            Err(e) => {
                self.event(
                    cj,
                    false,
                    "InvalidSchedule",
                    format!("invalid schedule: {} : {e}", s.schedule),
                );
                return Ok(());
            }
        };
        let requeue = |cj: &CronJob| Some(next_schedule_time_duration(cj, now, &sched));
        let Some(scheduled) = scheduled else {
            // Nothing due (e.g. the queue was filled after a restart).
            out.requeue_after = requeue(cj);
            return Ok(());
        };
        if let Some(secs) = s.starting_deadline_seconds
            && scheduled
                .checked_add(jiff::SignedDuration::from_secs(secs))
                .is_ok_and(|deadline| deadline < now)
        {
            self.event(
                cj,
                false,
                "MissSchedule",
                format!(
                    "Missed scheduled time to start a job: {}",
                    rfc1123z(scheduled)
                ),
            );
            out.requeue_after = requeue(cj);
            return Ok(());
        }
        let name = job_name(cj, scheduled);
        let last = cj
            .status
            .as_ref()
            .and_then(|st| st.last_schedule_time.as_ref());
        let processed = active(cj).iter().any(|r| {
            r.name.as_deref() == Some(name.as_str()) && r.namespace.as_deref() == Some(ns.as_str())
        }) || last.is_some_and(|t| t.0 == scheduled);
        if processed {
            out.requeue_after = requeue(cj);
            return Ok(());
        }
        let policy = s.concurrency_policy.as_deref().unwrap_or("Allow");
        if policy == "Forbid" && !active(cj).is_empty() {
            self.event(
                cj,
                true,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid".to_owned(),
            );
            out.requeue_after = requeue(cj);
            return Ok(());
        }
        if policy == "Replace" {
            for r in active(cj) {
                let r_ns = r.namespace.clone().unwrap_or_else(|| ns.clone());
                let r_name = r.name.clone().unwrap_or_default();
                let job = match self.job_api(&r_ns).get(&r_name).await {
                    Ok(job) => job,
                    Err(e) => {
                        self.event(
                            cj,
                            false,
                            "FailedGet",
                            format!("Get job: {}", api_message(&e)),
                        );
                        return Err(e.into());
                    }
                };
                if !self.delete_job(cj, &job).await {
                    return Err(Failed(format!("could not replace job {r_ns}/{r_name}")));
                }
                out.update_status = true;
            }
        }
        if self.create_job(cj, scheduled, &ns).await? {
            out.update_status = true;
            out.requeue_after = requeue(cj);
        }
        Ok(())
    }

    /// Creates the run's Job and records it in status. An existing Job of
    /// ours with that name (we crashed before writing status) is adopted
    /// into status.active; someone else's is left alone. True when status
    /// changed.
    async fn create_job(
        &self,
        cj: &mut CronJob,
        scheduled: Timestamp,
        ns: &str,
    ) -> Result<bool, Failed> {
        let req = job_from_template(cj, scheduled).map_err(Failed)?;
        let api = self.job_api(ns);
        let created = match api.create(&PostParams::default(), &req).await {
            Ok(job) => {
                let name = job.metadata.name.clone().unwrap_or_default();
                self.event(cj, true, "SuccessfulCreate", format!("Created job {name}"));
                job
            }
            Err(e) if is_namespace_terminating(&e) => return Err(e.into()),
            Err(e) if is_already_exists(&e) => {
                let name = req.metadata.name.clone().unwrap_or_default();
                let job = api.get(&name).await?;
                let ours = controller_of(&job.metadata).is_some_and(|r| {
                    r.kind == "CronJob" && Some(&r.uid) == cj.metadata.uid.as_ref()
                });
                if !ours || in_active_list(cj, job.metadata.uid.as_deref()) {
                    return Ok(false);
                }
                tracing::info!(job = %name, "job already exists");
                job
            }
            Err(e) => {
                self.event(
                    cj,
                    false,
                    "FailedCreate",
                    format!("Error creating job: {}", api_message(&e)),
                );
                return Err(e.into());
            }
        };
        let status = status_mut(cj);
        status
            .active
            .get_or_insert_with(Vec::new)
            .push(job_ref(&created));
        status.last_schedule_time = Some(Time(scheduled));
        Ok(true)
    }
}

/// Go's RFC 1123 layout with a numeric zone, in UTC.
fn rfc1123z(t: Timestamp) -> String {
    t.to_zoned(jiff::tz::TimeZone::UTC)
        .strftime("%a, %d %b %Y %H:%M:%S +0000")
        .to_string()
}
