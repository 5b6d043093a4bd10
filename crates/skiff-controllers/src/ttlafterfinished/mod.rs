//! The TTL-after-finished controller (upstream's
//! `ttl-after-finished-controller`): deletes a finished Job
//! `spec.ttlSecondsAfterFinished` seconds after its Complete or Failed
//! condition, with foreground propagation so its pods go first.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::controller::{Action, Reconciler, SyncError};
use crate::informer::{InformerFactory, ResourceEventHandler};
use crate::podutil::key_of;
use crate::workqueue::WorkQueue;

/// The controller's name for `--controllers`.
pub const NAME: &str = "ttl-after-finished-controller";
/// `--concurrent-ttl-after-finished-syncs` default.
pub const DEFAULT_WORKERS: usize = 5;

/// Why a Job's finish time cannot be told.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TtlError {
    /// Finished, but the condition has no lastTransitionTime.
    #[error("unable to find the time when the Job {0} finished")]
    NoFinishTime(String),
}

/// When the Job finished: its Complete/Failed=True condition's transition
/// time. `Ok(None)` if it has not finished.
pub fn finish_time(job: &Job) -> Result<Option<Timestamp>, TtlError> {
    let conds = job.status.as_ref().and_then(|s| s.conditions.as_ref());
    let Some(c) = conds
        .into_iter()
        .flatten()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
    else {
        return Ok(None);
    };
    match &c.last_transition_time {
        Some(t) => Ok(Some(t.0)),
        None => Err(TtlError::NoFinishTime(key_of(&job.metadata))),
    }
}

/// Whether the controller looks after the Job: a TTL set, finished, and
/// not already being deleted.
pub fn needs_cleanup(job: &Job) -> bool {
    job.spec
        .as_ref()
        .is_some_and(|s| s.ttl_seconds_after_finished.is_some())
        && job.metadata.deletion_timestamp.is_none()
        && finish_time(job).is_ok_and(|t| t.is_some())
}

/// How long until the Job expires at `now` (zero once expired); None when
/// it does not need cleaning up.
pub fn time_left(job: &Job, now: Timestamp) -> Result<Option<Duration>, TtlError> {
    if !needs_cleanup(job) {
        return Ok(None);
    }
    let Some(finished) = finish_time(job)? else {
        return Ok(None);
    };
    let ttl = job
        .spec
        .as_ref()
        .and_then(|s| s.ttl_seconds_after_finished)
        .unwrap_or(0);
    let ttl = Duration::from_secs(u64::try_from(ttl).unwrap_or(0));
    let since = Duration::try_from(now.duration_since(finished)).unwrap_or(Duration::ZERO);
    Ok(Some(ttl.saturating_sub(since)))
}

/// The controller.
pub struct TtlAfterFinishedController {
    client: kube::Client,
    jobs: Store<Job>,
    queue: Arc<WorkQueue<String>>,
}

impl std::fmt::Debug for TtlAfterFinishedController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtlAfterFinishedController")
            .finish_non_exhaustive()
    }
}

impl TtlAfterFinishedController {
    /// A controller on `factory`'s Job informer.
    pub fn new(client: kube::Client, factory: &InformerFactory) -> Arc<Self> {
        let informer = factory.informer::<Job>();
        let c = Arc::new(TtlAfterFinishedController {
            client,
            jobs: informer.store(),
            queue: Arc::new(factory.metrics().queue("ttl_jobs_to_delete")),
        });
        informer.add_event_handler(Arc::new(Handler(c.clone())));
        c
    }

    /// The controller's work queue.
    pub fn queue(&self) -> Arc<WorkQueue<String>> {
        self.queue.clone()
    }

    async fn process_job(&self, key: &str) -> Result<Action, SyncError> {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        let Some(job) = self.jobs.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(Action::Await);
        };
        let now = Timestamp::now();
        match time_left(&job, now)? {
            None => return Ok(Action::Await),
            Some(left) if !left.is_zero() => return Ok(Action::RequeueAfter(left)),
            Some(_) => {}
        }
        // The cache may be stale (the TTL changed, or the Job was recreated):
        // check again on a fresh copy before deleting.
        let api: Api<Job> = Api::namespaced(self.client.clone(), ns);
        let Some(fresh) = api.get_opt(name).await? else {
            return Ok(Action::Await);
        };
        match time_left(&fresh, now)? {
            None => return Ok(Action::Await),
            Some(left) if !left.is_zero() => return Ok(Action::RequeueAfter(left)),
            Some(_) => {}
        }
        tracing::debug!(key, "cleaning up Job");
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            preconditions: Some(Preconditions {
                uid: fresh.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => Ok(Action::Await),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::Await),
            Err(e) => Err(e.into()),
        }
    }
}

impl Reconciler for TtlAfterFinishedController {
    fn name(&self) -> &str {
        NAME
    }

    fn sync(
        &self,
        key: &str,
    ) -> impl std::future::Future<Output = Result<Action, SyncError>> + Send {
        self.process_job(key)
    }
}

struct Handler(Arc<TtlAfterFinishedController>);

impl Handler {
    fn enqueue(&self, job: &Job) {
        if needs_cleanup(job) {
            self.0.queue.add(key_of(&job.metadata));
        }
    }
}

impl ResourceEventHandler<Job> for Handler {
    fn on_add(&self, job: &Arc<Job>) {
        self.enqueue(job);
    }
    fn on_update(&self, _old: &Arc<Job>, cur: &Arc<Job>) {
        self.enqueue(cur);
    }
    fn on_delete(&self, _job: &Arc<Job>) {}
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use k8s_openapi::jiff::SignedDuration;
    use serde_json::json;

    use super::*;

    fn job(ttl: Option<i32>, cond: Option<(&str, &str, Option<&str>)>, deleting: bool) -> Job {
        let mut v = json!({"metadata": {"name": "j", "namespace": "ns"}, "spec": {"template": {}}});
        if let Some(t) = ttl {
            v["spec"]["ttlSecondsAfterFinished"] = json!(t);
        }
        if let Some((t, s, at)) = cond {
            v["status"] =
                json!({"conditions": [{"type": t, "status": s, "lastTransitionTime": at}]});
        }
        if deleting {
            v["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn time_left_counts_from_the_finish_condition() {
        let at = "2024-01-01T00:00:00Z";
        let finished: Timestamp = at.parse().unwrap();
        let now = finished + SignedDuration::from_secs(40);
        // (job, expected)
        let cases = [
            (
                job(Some(100), Some(("Complete", "True", Some(at))), false),
                Some(60),
            ),
            (
                job(Some(100), Some(("Failed", "True", Some(at))), false),
                Some(60),
            ),
            (
                job(Some(10), Some(("Complete", "True", Some(at))), false),
                Some(0),
            ),
            (
                job(Some(0), Some(("Complete", "True", Some(at))), false),
                Some(0),
            ),
            (job(None, Some(("Complete", "True", Some(at))), false), None),
            (
                job(Some(10), Some(("Complete", "False", Some(at))), false),
                None,
            ),
            (
                job(
                    Some(10),
                    Some(("SuccessCriteriaMet", "True", Some(at))),
                    false,
                ),
                None,
            ),
            (job(Some(10), None, false), None),
            (
                job(Some(10), Some(("Complete", "True", Some(at))), true),
                None,
            ),
        ];
        for (i, (j, want)) in cases.iter().enumerate() {
            let got = time_left(j, now).unwrap().map(|d| d.as_secs());
            assert_eq!(got, *want, "case {i}");
        }
    }

    #[test]
    fn a_finished_job_without_a_transition_time_is_an_error() {
        let j = job(Some(10), Some(("Complete", "True", None)), false);
        assert_eq!(
            finish_time(&j),
            Err(TtlError::NoFinishTime("ns/j".to_owned()))
        );
    }
}
