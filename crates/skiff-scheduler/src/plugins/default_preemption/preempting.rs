//! Asynchronous preemption (upstream's SchedulerAsyncPreemption, beta and
//! on by default in 1.33): the scheduling cycle picks the candidate and
//! nominates the preemptor at once, and a task makes the API calls —
//! clearing lower-priority nominations, then the DisruptionTarget patch and
//! graceful delete of each victim — while PreEnqueue keeps the preemptor
//! out of activeQ, so it is not retried mid-flight.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryFutureExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use skiff_client::events::PendingEvent;

use super::prepare::{Evicted, PodPreemptor};
use super::reference;
use crate::framework::DetachedHandle;

/// Victims evicted at once (upstream's parallelizer, default parallelism).
const PARALLELISM: usize = 16;
/// How long an evicted victim still counts as terminating: ample for its
/// deletion to reach the scheduler's cache through the watch.
const EVICTED_MEMORY: Duration = Duration::from_secs(10);

/// Preemptors whose victims are being evicted (upstream's `preempting`
/// set), and those victims, both by pod UID. Cheap to clone: clones share
/// the sets.
#[derive(Debug, Default, Clone)]
pub struct Preempting(Arc<Mutex<Sets>>);

#[derive(Debug, Default)]
struct Sets {
    preemptors: HashSet<String>,
    /// Victims: `None` while their eviction's API calls run, then when
    /// they returned. An evicted victim with no grace period is gone from
    /// the API at once but stays in the cache until the watch delivers its
    /// deletion, with nothing on it saying it is terminating; until then
    /// (at most [`EVICTED_MEMORY`]) it still counts as a victim.
    victims: HashMap<String, Option<Instant>>,
}

impl Sets {
    fn forget_old_evictions(&mut self, now: Instant) {
        self.victims.retain(|_, at| still_victim(*at, now));
    }
}

/// Whether a victim whose eviction returned at `evicted` (None: still
/// under way) still counts as one at `now`.
fn still_victim(evicted: Option<Instant>, now: Instant) -> bool {
    evicted.is_none_or(|t| now.duration_since(t) < EVICTED_MEMORY)
}

impl Preempting {
    fn lock(&self) -> MutexGuard<'_, Sets> {
        // The sets stay consistent whatever panicked while holding them.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks `pod` as preempting, and its `victims` as being evicted.
    pub fn insert(&self, pod: &Pod, victims: &[Arc<Pod>]) {
        let mut sets = self.lock();
        sets.forget_old_evictions(crate::queue::now());
        sets.preemptors.insert(id(pod));
        sets.victims.extend(victims.iter().map(|v| (id(v), None)));
    }

    /// Clears `id`'s mark.
    fn remove(&self, id: &str) {
        self.lock().preemptors.remove(id);
    }

    /// A victim's eviction returned: evicted (it counts as terminating a
    /// while longer), or spared (no victim any more).
    fn victim_done(&self, victim: &Pod, evicted: bool) {
        let mut sets = self.lock();
        if evicted {
            sets.victims.insert(id(victim), Some(crate::queue::now()));
        } else {
            sets.victims.remove(&id(victim));
        }
    }

    /// True while `pod`'s victims are being evicted.
    pub fn contains(&self, pod: &Pod) -> bool {
        let sets = self.lock();
        !sets.preemptors.is_empty() && sets.preemptors.contains(&id(pod))
    }

    /// True while `pod` is a victim being evicted, or lately evicted: it
    /// is as good as terminating, though no watch shows it so yet.
    pub fn is_victim(&self, pod: &Pod) -> bool {
        let sets = self.lock();
        if sets.victims.is_empty() {
            return false;
        }
        sets.victims
            .get(&id(pod))
            .is_some_and(|at| still_victim(*at, crate::queue::now()))
    }
}

/// The pod's UID; its `namespace/name` when it has none (pods built by
/// hand in tests).
fn id(pod: &Pod) -> String {
    match pod.metadata.uid.as_deref() {
        Some(uid) if !uid.is_empty() => uid.to_owned(),
        _ => format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or(""),
            pod.metadata.name.as_deref().unwrap_or("")
        ),
    }
}

/// The `Preempted` event on a victim.
pub fn preempted_event(victim: &Pod, preemptor_uid: &str, node: &str) -> PendingEvent {
    PendingEvent {
        regarding: reference(victim),
        normal: true,
        reason: "Preempted".into(),
        action: "Preempting".into(),
        note: format!("Preempted by pod {preemptor_uid} on node {node}"),
    }
}

/// One preemptor's API work, run as a task of its own (upstream's
/// preemption goroutine).
pub struct Eviction {
    /// The preemptor.
    pub preemptor: Arc<Pod>,
    /// Its queue key, to re-activate it on failure.
    pub preemptor_key: String,
    /// Its `spec.schedulerName`, for the DisruptionTarget message.
    pub scheduler_name: String,
    /// The node it is nominated to.
    pub node: String,
    /// Victims to patch and delete (none waiting at Permit, none already
    /// terminating).
    pub victims: Vec<Arc<Pod>>,
    /// Lower-priority pods nominated to `node`, whose nomination is cleared.
    pub lower_nominated: Vec<Arc<Pod>>,
    /// The API writes.
    pub client: Arc<dyn PodPreemptor>,
    /// Events, the queue and metrics.
    pub handle: DetachedHandle,
    /// The plugin's set, which holds the preemptor while victims remain.
    pub preempting: Preempting,
}

impl std::fmt::Debug for Eviction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Eviction")
            .field("preemptor", &self.preemptor_key)
            .field("node", &self.node)
            .field("victims", &self.victims.len())
            .finish_non_exhaustive()
    }
}

impl Eviction {
    /// Clears the nominations, evicts every victim but the last
    /// concurrently, un-gates the preemptor and evicts the last one. The
    /// preemptor is then moved by the last victim's deletion event; after a
    /// failed API call (upstream), or when the last victim was gone already
    /// and no event will come, it is re-activated at once instead, its
    /// nomination kept for the next attempt to re-evaluate.
    pub async fn run(self) {
        let start = tokio::time::Instant::now();
        let mut ok = true;
        let mut unseen = false;
        for pod in &self.lower_nominated {
            if let Err(e) = self.client.clear_nominated_node_name(pod).await {
                // Not fatal: the pod is retried and re-evaluated anyway.
                tracing::warn!(pod = ?pod.metadata.name, node = %self.node, error = %e,
                    "cannot clear nominatedNodeName of a lower-priority pod");
                ok = false;
            }
        }
        if let Some((last, rest)) = self.victims.split_last() {
            let rest = futures::stream::iter(rest)
                .map(Ok)
                .try_for_each_concurrent(PARALLELISM, |v| self.evict(v).map_ok(drop))
                .await;
            // Un-gate before the last eviction: otherwise its deletion event
            // could reach the queue while the preemptor is still gated and
            // be ignored, leaving the preemptor parked (upstream's order).
            self.preempting.remove(&id(&self.preemptor));
            // After a failure the last victim is spared, so the preemptor
            // re-enters scheduling sooner.
            if rest.is_ok() {
                match self.evict(last).await {
                    Ok(Evicted::Deleted) => {}
                    // No deletion event is coming to move the preemptor:
                    // the victim went before it was un-gated (another
                    // preemptor, scheduled in between, had chosen it too).
                    Ok(Evicted::Gone) => unseen = true,
                    Err(_) => ok = false,
                }
            } else {
                ok = false;
                self.preempting.victim_done(last, false);
            }
        }
        tracing::debug!(preemptor = %self.preemptor_key, node = %self.node, ok,
            "asynchronous preemption finished");
        if let Some(m) = &self.handle.metrics {
            m.observe_preemption_goroutine(ok, start.elapsed());
        }
        if (!ok || unseen)
            && let Some(queue) = &self.handle.activator
        {
            // Without it the preemptor could wait among the unschedulable
            // pods for an event that never comes.
            queue.activate(&self.preemptor_key);
        }
    }

    async fn evict(&self, victim: &Arc<Pod>) -> Result<Evicted, String> {
        let evicted = self.client.preempt(victim, &self.scheduler_name).await;
        self.preempting.victim_done(victim, evicted.is_ok());
        let evicted = match evicted {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(victim = ?victim.metadata.name, preemptor = %self.preemptor_key,
                    error = %e, "cannot preempt victim");
                return Err(e);
            }
        };
        if evicted == Evicted::Deleted
            && let Some(events) = &self.handle.events
        {
            let uid = self.preemptor.metadata.uid.as_deref().unwrap_or("");
            events.record(preempted_event(victim, uid, &self.node));
        }
        Ok(evicted)
    }
}
