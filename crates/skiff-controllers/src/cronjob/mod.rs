//! The CronJob controller (upstream's `pkg/controller/cronjob`, controller
//! v2): creates a Job for each time a CronJob's schedule comes due (named
//! `<cronjob>-<minutes since the epoch>` so a run is never created twice),
//! honours concurrencyPolicy, startingDeadlineSeconds, suspend and
//! spec.timeZone, tracks active Jobs and the last schedule/success times in
//! status, and deletes finished Jobs beyond the history limits.
//!
//! Time comes from an injected [`Clock`] so tests control it.

pub mod schedule;
mod sync;
pub mod utils;

#[cfg(test)]
mod schedule_tests;
#[cfg(test)]
mod utils_tests;

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::runtime::reflector::{ObjectRef, Store};
use skiff_client::EventSink;

use crate::informer::{InformerFactory, NamespaceIndex, ResourceEventHandler};
use crate::podutil::{controller_of, key_of};
use crate::workqueue::WorkQueue;

/// Workers (`--concurrent-cron-job-syncs`).
pub const DEFAULT_WORKERS: usize = 5;

/// Upstream's controller name, for events.
pub const CONTROLLER_NAME: &str = "cronjob-controller";

/// The controller's source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealClock;

impl Clock for RealClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// The CronJob controller.
pub struct CronJobController {
    pub(crate) client: kube::Client,
    pub(crate) cronjobs: Store<CronJob>,
    pub(crate) jobs: Arc<NamespaceIndex<Job>>,
    pub(crate) queue: Arc<WorkQueue<String>>,
    pub(crate) events: Arc<dyn EventSink>,
    pub(crate) clock: Arc<dyn Clock>,
    /// The zone of schedules without a time zone (upstream: the controller
    /// manager's local zone).
    pub(crate) local: TimeZone,
}

impl std::fmt::Debug for CronJobController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CronJobController")
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl CronJobController {
    /// A controller on `factory`'s CronJob and Job informers, with its
    /// handlers registered; schedules without a zone use the system's.
    pub fn new(
        client: kube::Client,
        factory: &InformerFactory,
        events: Arc<dyn EventSink>,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        let cj_inf = factory.informer::<CronJob>();
        let job_inf = factory.informer::<Job>();
        let c = Arc::new(CronJobController {
            client,
            cronjobs: cj_inf.store(),
            jobs: job_inf.namespace_index(),
            queue: Arc::new(factory.metrics().queue("cronjob")),
            events,
            clock,
            local: TimeZone::system(),
        });
        cj_inf.add_event_handler(Arc::new(CronJobHandler(c.clone())));
        job_inf.add_event_handler(Arc::new(JobHandler(c.clone())));
        c
    }

    /// The controller's work queue.
    pub fn queue(&self) -> Arc<WorkQueue<String>> {
        self.queue.clone()
    }

    /// The CronJob a Job's controllerRef names, if kind and UID match.
    fn resolve(&self, job: &Job) -> Option<Arc<CronJob>> {
        let r = controller_of(&job.metadata)?;
        if r.kind != "CronJob" {
            return None;
        }
        let ns = job.metadata.namespace.as_deref().unwrap_or("");
        let cj = self.cronjobs.get(&ObjectRef::new(&r.name).within(ns))?;
        (cj.metadata.uid.as_deref() == Some(r.uid.as_str())).then_some(cj)
    }

    fn enqueue_owner(&self, job: &Job) {
        if let Some(cj) = self.resolve(job) {
            self.queue.add(key_of(&cj.metadata));
        }
    }

    /// A schedule or zone change moves the next sync to the new schedule's
    /// next time; other changes sync now.
    fn on_cronjob_update(&self, old: &CronJob, cur: &CronJob) {
        let spec = |c: &CronJob| c.spec.clone().unwrap_or_default();
        let (o, n) = (spec(old), spec(cur));
        let key = key_of(&cur.metadata);
        if o.schedule == n.schedule && o.time_zone == n.time_zone {
            self.queue.add(key);
            return;
        }
        match utils::parse_schedule(cur, &self.local) {
            Ok(sched) => {
                let d = utils::next_schedule_time_duration(cur, self.clock.now(), &sched);
                self.queue.add_after(key, to_std(d));
            }
            Err(_) => self.event(
                cur,
                false,
                "UnParseableCronJobSchedule",
                format!("unparseable schedule for cronjob: {}", n.schedule),
            ),
        }
    }
}

/// A requeue delay; a time already passed means now.
pub(crate) fn to_std(d: jiff::SignedDuration) -> Duration {
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

struct CronJobHandler(Arc<CronJobController>);

impl ResourceEventHandler<CronJob> for CronJobHandler {
    fn on_add(&self, cj: &Arc<CronJob>) {
        self.0.queue.add(key_of(&cj.metadata));
    }
    fn on_update(&self, old: &Arc<CronJob>, cur: &Arc<CronJob>) {
        self.0.on_cronjob_update(old, cur);
    }
    fn on_delete(&self, cj: &Arc<CronJob>) {
        self.0.queue.add(key_of(&cj.metadata));
    }
}

struct JobHandler(Arc<CronJobController>);

impl ResourceEventHandler<Job> for JobHandler {
    fn on_add(&self, job: &Arc<Job>) {
        self.0.enqueue_owner(job);
    }
    fn on_update(&self, old: &Arc<Job>, cur: &Arc<Job>) {
        if old.metadata.resource_version == cur.metadata.resource_version {
            return;
        }
        if controller_of(&old.metadata) != controller_of(&cur.metadata) {
            self.0.enqueue_owner(old);
        }
        self.0.enqueue_owner(cur);
    }
    fn on_delete(&self, job: &Arc<Job>) {
        self.0.enqueue_owner(job);
    }
}
