//! The controller manager's Prometheus metrics:
//! - client-go's work queue metrics by queue `name` (upstream's names, help
//!   texts and buckets): `workqueue_depth`, `workqueue_adds_total`,
//!   `workqueue_queue_duration_seconds`, `workqueue_work_duration_seconds`,
//!   `workqueue_unfinished_work_seconds`,
//!   `workqueue_longest_running_processor_seconds`, `workqueue_retries_total`;
//! - per controller (ours: upstream has no generic equivalent):
//!   `skiff_controller_workers`, `skiff_controller_syncs_total` and
//!   `skiff_controller_sync_duration_seconds` by `controller` and `result`;
//! - `leader_election_master_status` by Lease `name`, as upstream.
//!
//! A manager creates one [`ControllerMetrics`] and hands it to its
//! controllers (through the [`InformerFactory`](crate::informer::InformerFactory)),
//! which create their queues through it by name; it is a prometheus-client
//! [`Collector`], so whoever serves `/metrics` (the API server of `skiff
//! server`, or the standalone manager's listener) registers it. Two managers
//! in one process keep their metrics apart.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use skiff_client::metrics_listener::describe;
use tokio::time::Instant;

use crate::workqueue::{QueueItem, RateLimiter, WorkQueue, default_controller_rate_limiter};

/// How a sync of a key ended (the `result` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncResult {
    /// Done; the key waits for the next event.
    Success,
    /// Done; the sync asked to run again after a delay.
    Requeue,
    /// Failed; the key is requeued with back-off.
    Error,
    /// Panicked; the key is requeued with back-off.
    Panic,
}

impl SyncResult {
    fn label(self) -> &'static str {
        match self {
            SyncResult::Success => "success",
            SyncResult::Requeue => "requeue",
            SyncResult::Error => "error",
            SyncResult::Panic => "panic",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameLabels {
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: String,
}

// Fields in alphabetical order, as upstream's exposition orders labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SyncLabels {
    controller: String,
    result: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// Upstream's work queue buckets: 1 µs to 1000 s, ten times apart
/// (written out so the `le` labels print as exactly as upstream's).
fn queue_histogram() -> Histogram {
    Histogram::new([1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0])
}

/// Sync durations: 4 ms doubling 15 times (to about 65 s), the buckets of
/// upstream's `job_controller_job_sync_duration_seconds`.
fn sync_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.004, 2.0, 15))
}

/// When the items a queue's workers hold were taken (a multiset: two items
/// may be taken at the same instant), for the unfinished-work gauges,
/// computed at scrape time.
#[derive(Debug, Default)]
struct InFlight(BTreeMap<Instant, usize>);

impl InFlight {
    fn start(&mut self, at: Instant) {
        *self.0.entry(at).or_default() += 1;
    }

    fn finish(&mut self, at: Instant) {
        if let Some(n) = self.0.get_mut(&at) {
            *n -= 1;
            if *n == 0 {
                self.0.remove(&at);
            }
        }
    }

    /// Seconds of work in progress in all, and of the longest-running item.
    fn unfinished(&self, now: Instant) -> (f64, f64) {
        // A fold from +0.0: an empty f64 sum is -0.0, which would print so.
        let total = self.0.iter().fold(0.0, |sum, (at, n)| {
            // Items in flight at once are few: the conversion is exact.
            let n = *n as f64;
            sum + now.saturating_duration_since(*at).as_secs_f64() * n
        });
        let longest = self
            .0
            .keys()
            .next()
            .map_or(0.0, |at| now.saturating_duration_since(*at).as_secs_f64());
        (total, longest)
    }
}

#[derive(Debug)]
struct Inner {
    depth: Family<NameLabels, Gauge>,
    adds: Family<NameLabels, Counter>,
    queue_duration: HistogramFamily<NameLabels>,
    work_duration: HistogramFamily<NameLabels>,
    retries: Family<NameLabels, Counter>,
    /// Per queue name (queues of one name share it).
    in_flight: Mutex<BTreeMap<String, Arc<Mutex<InFlight>>>>,
    workers: Family<ControllerLabels, Gauge>,
    syncs: Family<SyncLabels, Counter>,
    sync_duration: HistogramFamily<SyncLabels>,
    leader: skiff_client::leader_election::LeaderStatus,
}

/// Every controller manager metric. Cheap to clone: clones share the
/// values.
#[derive(Clone, Debug)]
pub struct ControllerMetrics(Arc<Inner>);

impl Default for ControllerMetrics {
    fn default() -> Self {
        ControllerMetrics::new()
    }
}

impl ControllerMetrics {
    /// Fresh metrics, with no queue yet.
    pub fn new() -> ControllerMetrics {
        ControllerMetrics(Arc::new(Inner {
            depth: Family::default(),
            adds: Family::default(),
            queue_duration: HistogramFamily::new_with_constructor(queue_histogram),
            work_duration: HistogramFamily::new_with_constructor(queue_histogram),
            retries: Family::default(),
            in_flight: Mutex::new(BTreeMap::new()),
            workers: Family::default(),
            syncs: Family::default(),
            sync_duration: HistogramFamily::new_with_constructor(sync_histogram),
            leader: Default::default(),
        }))
    }

    /// A work queue named `name` (upstream's queue name, the `name` label)
    /// with client-go's default controller rate limiter, reporting here.
    pub fn queue<T: QueueItem>(&self, name: &str) -> WorkQueue<T> {
        self.queue_with_rate_limiter(name, Box::new(default_controller_rate_limiter()))
    }

    /// [`ControllerMetrics::queue`] requeueing through `rate_limiter`.
    pub fn queue_with_rate_limiter<T: QueueItem>(
        &self,
        name: &str,
        rate_limiter: Box<dyn RateLimiter<T>>,
    ) -> WorkQueue<T> {
        WorkQueue::with_rate_limiter(rate_limiter).with_metrics(self.queue_metrics(name))
    }

    fn queue_metrics(&self, name: &str) -> QueueMetrics {
        let labels = NameLabels {
            name: name.to_owned(),
        };
        let m = &self.0;
        let in_flight = m
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_owned())
            .or_default()
            .clone();
        QueueMetrics {
            controller: self.clone(),
            depth: m.depth.get_or_create(&labels).clone(),
            adds: m.adds.get_or_create(&labels).clone(),
            queue_duration: m.queue_duration.get_or_create(&labels).clone(),
            work_duration: m.work_duration.get_or_create(&labels).clone(),
            retries: m.retries.get_or_create(&labels).clone(),
            in_flight,
        }
    }

    /// Reports that `controller` runs `workers` workers.
    pub fn set_workers(&self, controller: &str, workers: usize) {
        self.0
            .workers
            .get_or_create(&ControllerLabels {
                controller: controller.to_owned(),
            })
            .set(i64::try_from(workers).unwrap_or(i64::MAX));
    }

    /// Counts one sync of `controller` that ended with `result` after
    /// `elapsed`.
    pub fn observe_sync(&self, controller: &str, result: SyncResult, elapsed: Duration) {
        let labels = SyncLabels {
            controller: controller.to_owned(),
            result: result.label(),
        };
        self.0.syncs.get_or_create(&labels).inc();
        self.0
            .sync_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Reports whether this instance holds the Lease `name` (1) or stands
    /// by (0).
    pub fn set_leader(&self, name: &str, leading: bool) {
        self.0.leader.set(name, leading);
    }

    /// These metrics in the Prometheus text format.
    pub fn encode_text(&self) -> String {
        skiff_client::metrics_listener::encode_text(self.clone())
    }

    /// Per queue name: seconds of unfinished work, and of the longest
    /// running item, now.
    fn unfinished(
        &self,
    ) -> (
        Family<NameLabels, FloatGauge>,
        Family<NameLabels, FloatGauge>,
    ) {
        let now = Instant::now();
        let total = Family::<NameLabels, FloatGauge>::default();
        let longest = Family::<NameLabels, FloatGauge>::default();
        let queues = self.0.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        for (name, in_flight) in queues.iter() {
            let (t, l) = in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .unfinished(now);
            let labels = NameLabels { name: name.clone() };
            total.get_or_create(&labels).set(t);
            longest.get_or_create(&labels).set(l);
        }
        (total, longest)
    }
}

/// One queue's metrics, updated by the queue under its lock.
#[derive(Clone, Debug)]
pub(crate) struct QueueMetrics {
    controller: ControllerMetrics,
    depth: Gauge,
    adds: Counter,
    queue_duration: Histogram,
    work_duration: Histogram,
    retries: Counter,
    in_flight: Arc<Mutex<InFlight>>,
}

impl QueueMetrics {
    /// The metrics the queue belongs to (its controller's syncs go there).
    pub(crate) fn controller(&self) -> &ControllerMetrics {
        &self.controller
    }

    /// An item became dirty (queued, or marked to requeue once processed).
    pub(crate) fn added(&self) {
        self.adds.inc();
        self.depth.inc();
    }

    /// A worker took an item that had waited `waited`, at `now`.
    pub(crate) fn taken(&self, waited: Option<Duration>, now: Instant) {
        self.depth.dec();
        if let Some(w) = waited {
            self.queue_duration.observe(w.as_secs_f64());
        }
        self.lock_in_flight().start(now);
    }

    /// The worker that took an item at `started` is done with it.
    pub(crate) fn done(&self, started: Instant, now: Instant) {
        self.work_duration
            .observe(now.saturating_duration_since(started).as_secs_f64());
        self.lock_in_flight().finish(started);
    }

    /// An `add_after` (delayed add or rate-limited requeue).
    pub(crate) fn retried(&self) {
        self.retries.inc();
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, InFlight> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Collector for ControllerMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = &self.0;
        let e = &mut encoder;
        describe(e, "workqueue_depth", "Current depth of workqueue", &m.depth)?;
        describe(
            e,
            "workqueue_adds",
            "Total number of adds handled by workqueue",
            &m.adds,
        )?;
        describe(
            e,
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested.",
            &m.queue_duration,
        )?;
        describe(
            e,
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes.",
            &m.work_duration,
        )?;
        let (unfinished, longest) = self.unfinished();
        describe(
            e,
            "workqueue_unfinished_work_seconds",
            "How many seconds of work has done that is in progress and hasn't been observed by work_duration. Large values indicate stuck threads. One can deduce the number of stuck threads by observing the rate at which this increases.",
            &unfinished,
        )?;
        describe(
            e,
            "workqueue_longest_running_processor_seconds",
            "How many seconds has the longest running processor for workqueue been running.",
            &longest,
        )?;
        describe(
            e,
            "workqueue_retries",
            "Total number of retries handled by workqueue",
            &m.retries,
        )?;
        describe(
            e,
            "skiff_controller_workers",
            "Number of workers each controller runs (its --concurrent-*-syncs).",
            &m.workers,
        )?;
        describe(
            e,
            "skiff_controller_syncs",
            "Number of syncs of a key by each controller, by result: success, requeue (asked to sync again later), error or panic.",
            &m.syncs,
        )?;
        describe(
            e,
            "skiff_controller_sync_duration_seconds",
            "How long in seconds each controller's syncs of a key take, by result.",
            &m.sync_duration,
        )?;
        m.leader.describe(e)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
