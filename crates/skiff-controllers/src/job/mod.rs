//! The Job controller (upstream's `job`): runs pods to completion for
//! NonIndexed and Indexed Jobs, tracks finished pods through the
//! `batch.kubernetes.io/job-tracking` finalizer and
//! `status.uncountedTerminatedPods` so none is counted twice or lost, and
//! applies backoffLimit (global and per index), activeDeadlineSeconds,
//! podFailurePolicy, successPolicy and suspend.

pub mod failure;
pub mod indexed;
pub mod intervals;
mod manage;
pub mod status;
mod sync;
mod tracking;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::batch::v1::Job;
use kube::runtime::reflector::{ObjectRef, Store};
use skiff_client::EventSink;

use crate::cached_pod::CachedPod;
use crate::consistency::OwnWrites;
use crate::expectations::ControllerExpectations;
use crate::informer::{ControllerIndex, InformerFactory, NamespaceIndex, ResourceEventHandler};
use crate::podutil::{controller_of, key_of};
use crate::workqueue::WorkQueue;

use failure::BackoffRecord;

/// The controller's name for `--controllers`.
pub const NAME: &str = "job";
/// The name events are reported under.
pub const CONTROLLER_NAME: &str = "job-controller";
/// `--concurrent-job-syncs` default.
pub const DEFAULT_WORKERS: usize = 5;
/// Finalizer on every pod the controller creates until it is counted.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// At most this many pods are created or deleted per sync
/// (`MaxPodCreateDeletePerSync`).
pub const MAX_POD_CREATE_DELETE_PER_SYNC: usize = 500;
/// At most this many pods wait in `uncountedTerminatedPods`
/// (`MaxUncountedPods`).
pub const MAX_UNCOUNTED_PODS: usize = 500;

/// Prefix of work-queue keys naming a pod (not a Job) whose tracking
/// finalizer may need removing because its Job is gone or finished.
const ORPHAN_POD_PREFIX: &str = "pod:";

/// Whether the pod still carries the tracking finalizer.
pub fn has_tracking_finalizer(pod: &CachedPod) -> bool {
    pod.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == TRACKING_FINALIZER))
}

/// Pod UIDs whose finalizer removal this controller issued but has not
/// yet seen (upstream's `finishedJobExpectations`).
#[derive(Debug, Default)]
pub(crate) struct FinalizerExpectations(Mutex<HashMap<String, HashSet<String>>>);

impl FinalizerExpectations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashSet<String>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub(crate) fn expect(&self, job: &str, uids: impl IntoIterator<Item = String>) {
        self.lock().entry(job.to_owned()).or_default().extend(uids);
    }
    pub(crate) fn observed(&self, job: &str, uid: &str) {
        let mut m = self.lock();
        if let Some(set) = m.get_mut(job) {
            set.remove(uid);
            if set.is_empty() {
                m.remove(job);
            }
        }
    }
    pub(crate) fn expected(&self, job: &str) -> HashSet<String> {
        self.lock().get(job).cloned().unwrap_or_default()
    }
    fn forget(&self, job: &str) {
        self.lock().remove(job);
    }
}

/// The Job controller.
pub struct JobController {
    pub(crate) client: kube::Client,
    pub(crate) jobs: Store<Job>,
    pub(crate) pods: Arc<NamespaceIndex<CachedPod>>,
    /// Pods by controller UID: a Job's own pods without a namespace scan.
    pub(crate) pods_by_controller: Arc<ControllerIndex<CachedPod>>,
    pub(crate) queue: Arc<WorkQueue<String>>,
    pub(crate) expectations: Arc<ControllerExpectations>,
    pub(crate) finalizer_expectations: FinalizerExpectations,
    pub(crate) backoff: Mutex<HashMap<String, BackoffRecord>>,
    /// This controller's latest status write per Job: a sync waits until
    /// the Job informer shows it.
    pub(crate) own_writes: OwnWrites,
    pub(crate) events: Arc<dyn EventSink>,
}

impl std::fmt::Debug for JobController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobController").finish_non_exhaustive()
    }
}

impl JobController {
    /// A controller on `factory`'s Job and Pod informers, its handlers
    /// registered (start the factory afterwards).
    pub fn new(
        client: kube::Client,
        factory: &InformerFactory,
        events: Arc<dyn EventSink>,
    ) -> Arc<Self> {
        let job_informer = factory.informer::<Job>();
        let pod_informer = factory.informer::<CachedPod>();
        let c = Arc::new(JobController {
            client,
            jobs: job_informer.store(),
            pods: pod_informer.namespace_index(),
            pods_by_controller: pod_informer.controller_index(),
            queue: Arc::new(factory.metrics().queue("job")),
            expectations: Arc::new(ControllerExpectations::new()),
            finalizer_expectations: FinalizerExpectations::default(),
            backoff: Mutex::new(HashMap::new()),
            own_writes: OwnWrites::default(),
            events,
        });
        job_informer.add_event_handler(Arc::new(JobHandler(c.clone())));
        pod_informer.add_event_handler(Arc::new(PodHandler(c.clone())));
        c
    }

    /// The controller's work queue.
    pub fn queue(&self) -> Arc<WorkQueue<String>> {
        self.queue.clone()
    }

    /// The Job the pod's controllerRef names, if it exists with that UID.
    fn resolve_controller_ref(&self, pod: &CachedPod) -> Option<Arc<Job>> {
        let r = controller_of(&pod.metadata)?;
        if r.kind != "Job" {
            return None;
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let job = self.jobs.get(&ObjectRef::new(&r.name).within(ns))?;
        (job.metadata.uid.as_deref() == Some(r.uid.as_str())).then_some(job)
    }

    fn is_job_pod(pod: &CachedPod) -> bool {
        controller_of(&pod.metadata).is_some_and(|r| r.kind == "Job" && r.api_version == "batch/v1")
    }

    fn enqueue_orphan_pod(&self, pod: &CachedPod) {
        self.queue
            .add(format!("{ORPHAN_POD_PREFIX}{}", key_of(&pod.metadata)));
    }

    /// Upstream's `deletePod`: a deletion (or the start of one) observed.
    fn on_pod_delete(&self, pod: &CachedPod, is_final: bool) {
        if !Self::is_job_pod(pod) {
            return;
        }
        let job = self.resolve_controller_ref(pod);
        let Some(job) = job.filter(|j| !status::is_job_finished(j)) else {
            if has_tracking_finalizer(pod) && !is_final {
                self.enqueue_orphan_pod(pod);
            }
            return;
        };
        let key = key_of(&job.metadata);
        self.expectations
            .deletion_observed(&key, &key_of(&pod.metadata));
        if (is_final || !has_tracking_finalizer(pod))
            && let Some(uid) = pod.metadata.uid.as_deref()
        {
            self.finalizer_expectations.observed(&key, uid);
        }
        self.queue.add(key);
    }
}

struct JobHandler(Arc<JobController>);

impl ResourceEventHandler<Job> for JobHandler {
    fn on_add(&self, job: &Arc<Job>) {
        self.0.queue.add(key_of(&job.metadata));
    }
    fn on_update(&self, old: &Arc<Job>, cur: &Arc<Job>) {
        if old.metadata.uid != cur.metadata.uid {
            self.on_delete(old);
        }
        self.0.queue.add(key_of(&cur.metadata));
    }
    fn on_delete(&self, job: &Arc<Job>) {
        let c = &self.0;
        let key = key_of(&job.metadata);
        c.expectations.delete_expectations(&key);
        c.finalizer_expectations.forget(&key);
        c.own_writes.forget(&key);
        c.queue.add(key);
        // Its pods may still carry the finalizer: free them.
        let ns = job.metadata.namespace.as_deref().unwrap_or("");
        let uid = job.metadata.uid.as_deref().unwrap_or("");
        for pod in c.job_pods_of(ns, uid) {
            if has_tracking_finalizer(&pod) {
                c.enqueue_orphan_pod(&pod);
            }
        }
    }
}

struct PodHandler(Arc<JobController>);

impl ResourceEventHandler<CachedPod> for PodHandler {
    fn on_add(&self, pod: &Arc<CachedPod>) {
        let c = &self.0;
        if pod.metadata.deletion_timestamp.is_some() {
            c.on_pod_delete(pod, false);
            return;
        }
        if !JobController::is_job_pod(pod) {
            return;
        }
        match c.resolve_controller_ref(pod) {
            Some(job) => {
                let key = key_of(&job.metadata);
                c.expectations.creation_observed(&key);
                c.queue.add(key);
            }
            None => {
                if has_tracking_finalizer(pod) {
                    c.enqueue_orphan_pod(pod);
                }
            }
        }
    }

    fn on_update(&self, old: &Arc<CachedPod>, cur: &Arc<CachedPod>) {
        let c = &self.0;
        if old.metadata.resource_version == cur.metadata.resource_version {
            return;
        }
        if has_tracking_finalizer(old)
            && !has_tracking_finalizer(cur)
            && let Some(job) = c.resolve_controller_ref(cur)
            && let Some(uid) = cur.metadata.uid.as_deref()
        {
            c.finalizer_expectations
                .observed(&key_of(&job.metadata), uid);
        }
        if cur.metadata.deletion_timestamp.is_some() {
            // Count it gone now so a replacement need not wait out the
            // grace period.
            c.on_pod_delete(cur, false);
            return;
        }
        if !JobController::is_job_pod(cur) {
            return;
        }
        match c.resolve_controller_ref(cur) {
            Some(job) if !status::is_job_finished(&job) => c.queue.add(key_of(&job.metadata)),
            _ => {
                if has_tracking_finalizer(cur) {
                    c.enqueue_orphan_pod(cur);
                }
            }
        }
    }

    fn on_delete(&self, pod: &Arc<CachedPod>) {
        self.0.on_pod_delete(pod, true);
    }
}

impl JobController {
    /// Removes the tracking finalizer from a pod whose Job is gone or
    /// finished (upstream's `syncOrphanPod`).
    async fn sync_orphan_pod(
        &self,
        pod_key: &str,
    ) -> Result<crate::controller::Action, crate::controller::SyncError> {
        let (ns, name) = pod_key.split_once('/').unwrap_or(("", pod_key));
        let Some(pod) = self
            .pods
            .list(ns)
            .into_iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
        else {
            return Ok(crate::controller::Action::Await);
        };
        if !has_tracking_finalizer(&pod) {
            return Ok(crate::controller::Action::Await);
        }
        if let Some(job) = self.resolve_controller_ref(&pod)
            && !status::is_job_finished(&job)
        {
            // Its Job tracks it.
            return Ok(crate::controller::Action::Await);
        }
        self.patch_out_finalizer(&pod).await?;
        Ok(crate::controller::Action::Await)
    }
}
