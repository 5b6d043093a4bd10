//! The scheduler's Prometheus metrics under upstream's names, labels and
//! buckets (`scheduler_schedule_attempts_total`,
//! `scheduler_scheduling_attempt_duration_seconds`, `scheduler_pending_pods`,
//! `scheduler_preemption_attempts_total`, `scheduler_preemption_victims`,
//! `scheduler_preemption_goroutines_duration_seconds`,
//! `scheduler_preemption_goroutines_execution_total`,
//! `scheduler_pod_scheduling_sli_duration_seconds`).
//!
//! [`SchedulerMetrics`] is a prometheus-client [`Collector`], so whoever
//! serves `/metrics` (the API server of `skiff server`, or the standalone
//! scheduler's listener, [`skiff_client::metrics_listener`]) registers it in
//! its registry.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use skiff_client::metrics_listener::describe;

use crate::queue::SchedulingQueue;

/// Attempts from which the SLI histogram's `attempts` label is `15+`.
const MAX_ATTEMPTS_LABEL: u32 = 15;

/// The `result` label of a scheduling attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    /// The pod was bound.
    Scheduled,
    /// No node fits (a rejected status).
    Unschedulable,
    /// An internal error (a plugin or API call failed).
    Error,
}

impl AttemptResult {
    fn label(self) -> &'static str {
        match self {
            AttemptResult::Scheduled => "scheduled",
            AttemptResult::Unschedulable => "unschedulable",
            AttemptResult::Error => "error",
        }
    }
}

// Fields in alphabetical order, as upstream's exposition orders labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    profile: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SliLabels {
    attempts: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Upstream's `scheduling_attempt_duration_seconds` buckets: 1 ms doubling
/// 15 times.
fn attempt_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Upstream's `pod_scheduling_sli_duration_seconds` buckets: 10 ms doubling
/// 20 times.
fn sli_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 20))
}

/// Sizes of the scheduling queue's sub-queues, as `scheduler_pending_pods`
/// reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingCounts {
    /// Pods in activeQ.
    pub active: usize,
    /// Pods in backoffQ.
    pub backoff: usize,
    /// Pods in unschedulablePods that were tried and failed.
    pub unschedulable: usize,
    /// Pods in unschedulablePods a PreEnqueue plugin keeps out.
    pub gated: usize,
}

/// Every scheduler metric. Cheap to clone: clones share the values.
#[derive(Clone, Debug)]
pub struct SchedulerMetrics {
    schedule_attempts: Family<AttemptLabels, Counter>,
    attempt_duration: HistogramFamily<AttemptLabels>,
    preemption_attempts: Counter,
    preemption_victims: Histogram,
    preemption_goroutines_duration: HistogramFamily<ResultLabels>,
    preemption_goroutines_execution: Family<ResultLabels, Counter>,
    sli_duration: HistogramFamily<SliLabels>,
    leader: skiff_client::leader_election::LeaderStatus,
    /// The leading instance's queue, read at scrape time for
    /// `scheduler_pending_pods` (so the queue keeps no gauges of its own).
    queue: Arc<Mutex<Weak<SchedulingQueue>>>,
}

impl Default for SchedulerMetrics {
    fn default() -> Self {
        SchedulerMetrics::new()
    }
}

impl SchedulerMetrics {
    /// Fresh metrics, all zero.
    pub fn new() -> SchedulerMetrics {
        SchedulerMetrics {
            schedule_attempts: Family::default(),
            attempt_duration: HistogramFamily::new_with_constructor(attempt_histogram),
            preemption_attempts: Counter::default(),
            // Upstream's buckets: 1, 2, 4, ... 64 victims.
            preemption_victims: Histogram::new(exponential_buckets(1.0, 2.0, 7)),
            // Upstream's buckets: 10 ms doubling 20 times.
            preemption_goroutines_duration: HistogramFamily::new_with_constructor(sli_histogram),
            preemption_goroutines_execution: Family::default(),
            sli_duration: HistogramFamily::new_with_constructor(sli_histogram),
            leader: Default::default(),
            queue: Arc::new(Mutex::new(Weak::new())),
        }
    }

    /// Counts one scheduling attempt of a pod of `profile` that took
    /// `elapsed` (scheduling cycle, plus the binding cycle when bound).
    pub fn observe_attempt(&self, result: AttemptResult, profile: &str, elapsed: Duration) {
        let labels = AttemptLabels {
            profile: profile.to_owned(),
            result: result.label(),
        };
        self.schedule_attempts.get_or_create(&labels).inc();
        self.attempt_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Observes a bound pod's end-to-end latency since it first entered
    /// the queue, by the number of attempts it took.
    pub fn observe_scheduled_pod(&self, attempts: u32, since_first_enqueue: Duration) {
        let attempts = if attempts >= MAX_ATTEMPTS_LABEL {
            format!("{MAX_ATTEMPTS_LABEL}+")
        } else {
            attempts.to_string()
        };
        self.sli_duration
            .get_or_create(&SliLabels { attempts })
            .observe(since_first_enqueue.as_secs_f64());
    }

    /// Counts one run of DefaultPreemption's PostFilter.
    pub fn preemption_attempt(&self) {
        self.preemption_attempts.inc();
    }

    /// Observes the victims evicted for one preemptor.
    pub fn observe_preemption_victims(&self, victims: usize) {
        // Victim counts are far below 2^53: the conversion is exact.
        #[allow(clippy::cast_precision_loss)]
        self.preemption_victims.observe(victims as f64);
    }

    /// Counts one finished asynchronous preemption (upstream's preemption
    /// goroutine) that took `elapsed`, by whether every API call succeeded.
    pub fn observe_preemption_goroutine(&self, success: bool, elapsed: Duration) {
        let labels = ResultLabels {
            result: if success { "success" } else { "error" },
        };
        self.preemption_goroutines_execution
            .get_or_create(&labels)
            .inc();
        self.preemption_goroutines_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Reports whether this instance holds the Lease `name` (1) or stands
    /// by (0).
    pub fn set_leader(&self, name: &str, leading: bool) {
        self.leader.set(name, leading);
    }

    /// Reports `queue`'s sizes as `scheduler_pending_pods` from now on
    /// (each time an instance starts leading it builds a new queue).
    pub fn set_queue(&self, queue: &Arc<SchedulingQueue>) {
        if let Ok(mut q) = self.queue.lock() {
            *q = Arc::downgrade(queue);
        }
    }

    fn pending(&self) -> PendingCounts {
        let queue = self.queue.lock().ok().and_then(|q| q.upgrade());
        queue.map(|q| q.pending_counts()).unwrap_or_default()
    }

    /// These metrics in the Prometheus text format.
    pub fn encode_text(&self) -> String {
        skiff_client::metrics_listener::encode_text(self.clone())
    }
}

impl Collector for SchedulerMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        describe(
            &mut encoder,
            "scheduler_schedule_attempts",
            "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod could not be scheduled, while 'error' means an internal scheduler problem.",
            &self.schedule_attempts,
        )?;
        describe(
            &mut encoder,
            "scheduler_scheduling_attempt_duration_seconds",
            "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
            &self.attempt_duration,
        )?;
        let pending = Family::<QueueLabels, Gauge>::default();
        let counts = self.pending();
        for (queue, n) in [
            ("active", counts.active),
            ("backoff", counts.backoff),
            ("unschedulable", counts.unschedulable),
            ("gated", counts.gated),
        ] {
            pending
                .get_or_create(&QueueLabels { queue })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        describe(
            &mut encoder,
            "scheduler_pending_pods",
            "Number of pending pods, by the queue type. 'active' means number of pods in activeQ; 'backoff' means number of pods in backoffQ; 'unschedulable' means number of pods in unschedulablePods that the scheduler attempted to schedule and failed; 'gated' is the number of unschedulable pods that the scheduler never attempted to schedule because they are gated.",
            &pending,
        )?;
        describe(
            &mut encoder,
            "scheduler_preemption_attempts",
            "Total preemption attempts in the cluster till now",
            &self.preemption_attempts,
        )?;
        describe(
            &mut encoder,
            "scheduler_preemption_victims",
            "Number of selected preemption victims",
            &self.preemption_victims,
        )?;
        describe(
            &mut encoder,
            "scheduler_preemption_goroutines_duration_seconds",
            "Duration in seconds for running goroutines for the preemption.",
            &self.preemption_goroutines_duration,
        )?;
        describe(
            &mut encoder,
            "scheduler_preemption_goroutines_execution",
            "Number of preemption goroutines executed.",
            &self.preemption_goroutines_execution,
        )?;
        describe(
            &mut encoder,
            "scheduler_pod_scheduling_sli_duration_seconds",
            "E2e latency for a pod being scheduled, from the time the pod enters the scheduling queue and might involve multiple scheduling attempts.",
            &self.sli_duration,
        )?;
        self.leader.describe(&mut encoder)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
