//! The scheduling queue (upstream's `PriorityQueue`): activeQ ordered by
//! the QueueSort plugin, backoffQ (1 s doubling to 10 s by attempts), and
//! unschedulable pods that move back on cluster events registered by the
//! plugins that rejected them, or after 5 minutes. PreEnqueue plugins gate
//! entry to activeQ. Time is tokio's clock, so tests pause it.
//!
//! As upstream with `SchedulerPopFromBackoffQ` (beta and on by default
//! since 1.33): back-off expiries are truncated to 1 s ordering windows, a
//! pod's back-off is over once its window has passed, and when activeQ is
//! empty the scheduler takes the first pod of backoffQ (earliest window,
//! then activeQ's order) rather than idling. Pods that failed with an error
//! (no plugin rejected them) always wait out their back-off.

mod heap;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::Notify;

use crate::framework::{
    ClusterEvent, EventObjects, NominatedPods, Plugin, PodActivator, PodInfo, QueuedPodInfo,
    QueueingHint,
};
use crate::runtime::PodNominator;
use heap::Heap;

/// Unschedulable pods are retried after this long even without an event
/// (upstream's `podMaxInUnschedulablePodsDuration`).
pub const POD_MAX_IN_UNSCHEDULABLE_PODS_DURATION: Duration = Duration::from_secs(5 * 60);
/// How often leftover unschedulable pods are checked.
const UNSCHEDULABLE_FLUSH_PERIOD: Duration = Duration::from_secs(30);
/// Back-off expiries are truncated to windows this long, whole seconds
/// (upstream's `backoffQOrderingWindowDuration`); within one, pods leave
/// in activeQ's order.
const BACKOFF_WINDOW: Duration = Duration::from_secs(1);

/// The current instant on tokio's (pausable) clock.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Where a pod is, for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueName {
    /// Ready to be scheduled.
    Active,
    /// Waiting out its back-off.
    Backoff,
    /// Waiting for a cluster event (or gated by PreEnqueue).
    Unschedulable,
}

#[derive(Debug, Default)]
struct InFlight {
    latest: Option<Arc<Pod>>,
    deleted: bool,
    /// Activated while in flight: requeued without waiting for an event.
    activated: bool,
    cycle: u64,
}

#[derive(Default)]
struct State {
    active: Heap<QueuedPodInfo>,
    active_seq: HashMap<String, (u64, QueuedPodInfo)>,
    backoff: HashMap<String, QueuedPodInfo>,
    unschedulable: HashMap<String, (QueuedPodInfo, Instant)>,
    in_flight: HashMap<String, InFlight>,
    nominated: HashMap<String, NominatedPods>,
    nominated_node_of: HashMap<String, String>,
    seq: u64,
    scheduling_cycle: u64,
    move_request_cycle: u64,
    last_unschedulable_flush: Option<Instant>,
    closed: bool,
}

/// Orders pods: the QueueSort plugin, or priority then age.
type LessFn = dyn Fn(&QueuedPodInfo, &QueuedPodInfo) -> bool + Send + Sync;

/// The queue; shared by the informers (producers) and the scheduling loop.
pub struct SchedulingQueue {
    state: Mutex<State>,
    notify: Notify,
    less: Box<LessFn>,
    pre_enqueue: HashMap<String, Vec<Arc<dyn Plugin>>>,
    plugin_events: HashMap<&'static str, Vec<ClusterEvent>>,
    /// The plugins by name, for their queueing hints.
    hinters: HashMap<&'static str, Arc<dyn Plugin>>,
    initial_backoff: Duration,
    max_backoff: Duration,
    /// Where back-off windows start: whole seconds from here.
    origin: Instant,
}

impl std::fmt::Debug for SchedulingQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulingQueue").finish_non_exhaustive()
    }
}

fn pod_priority(p: &QueuedPodInfo) -> i32 {
    p.pod_info
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.priority)
        .unwrap_or(0)
}

/// Meaningful changes: anything but status and bookkeeping metadata
/// (upstream's `isPodUpdated`).
fn is_pod_updated(old: &Pod, new: &Pod) -> bool {
    let strip = |p: &Pod| {
        let mut p = p.clone();
        p.status = None;
        p.metadata.resource_version = None;
        p.metadata.generation = None;
        p.metadata.managed_fields = None;
        p
    };
    strip(old) != strip(new)
}

fn scheduler_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .unwrap_or(crate::config::DEFAULT_SCHEDULER_NAME)
}

impl SchedulingQueue {
    /// A queue ordered by `queue_sort` (None: priority, then age), gated by
    /// each profile's PreEnqueue plugins, moving pods on the events each
    /// plugin registered.
    pub fn new(
        queue_sort: Option<Arc<dyn Plugin>>,
        pre_enqueue: HashMap<String, Vec<Arc<dyn Plugin>>>,
        plugins: &[Arc<dyn Plugin>],
        initial_backoff: Duration,
        max_backoff: Duration,
    ) -> SchedulingQueue {
        let less: Box<LessFn> = match queue_sort {
            Some(p) if p.as_queue_sort().is_some() => {
                Box::new(move |a, b| p.as_queue_sort().is_some_and(|qs| qs.less(a, b)))
            }
            _ => Box::new(|a, b| {
                let (pa, pb) = (pod_priority(a), pod_priority(b));
                pa > pb || (pa == pb && a.timestamp < b.timestamp)
            }),
        };
        let plugin_events = plugins
            .iter()
            .map(|p| (p.name(), p.events_to_register()))
            .collect();
        let hinters = plugins.iter().map(|p| (p.name(), p.clone())).collect();
        SchedulingQueue {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            less,
            pre_enqueue,
            plugin_events,
            hinters,
            initial_backoff,
            max_backoff,
            origin: now(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent maps; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Upstream's `calculateBackoffDuration`: initial, doubled per attempt
    /// beyond the first, capped.
    pub fn backoff_duration(&self, attempts: u32) -> Duration {
        let mut d = self.initial_backoff;
        for _ in 1..attempts {
            if d >= self.max_backoff.saturating_sub(d) {
                return self.max_backoff;
            }
            d += d;
        }
        d.min(self.max_backoff)
    }

    /// The start of the back-off window holding `t`.
    fn window_of(&self, t: Instant) -> Instant {
        let secs = t.saturating_duration_since(self.origin).as_secs();
        self.origin + Duration::from_secs(secs - secs % BACKOFF_WINDOW.as_secs())
    }

    /// The window in which `p`'s back-off expires; None when it has none
    /// (never attempted, or `podMaxBackoffSeconds: 0`, which turns
    /// back-off off).
    fn backoff_window(&self, p: &QueuedPodInfo) -> Option<Instant> {
        if p.attempts == 0 || self.max_backoff.is_zero() {
            return None;
        }
        Some(self.window_of(p.timestamp + self.backoff_duration(p.attempts)))
    }

    /// Upstream's `isPodBackingoff`: until the window of its expiry has
    /// passed.
    fn is_backing_off(&self, p: &QueuedPodInfo, now: Instant) -> bool {
        self.backoff_window(p)
            .is_some_and(|w| w >= self.window_of(now))
    }

    /// When `p`'s back-off is over (the next window), if it has one.
    fn backoff_over_at(&self, p: &QueuedPodInfo) -> Option<Instant> {
        self.backoff_window(p).map(|w| w + BACKOFF_WINDOW)
    }

    /// backoffQ's order: earliest window first, then activeQ's order.
    fn backoff_order(&self, a: &QueuedPodInfo, b: &QueuedPodInfo) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        self.backoff_window(a)
            .cmp(&self.backoff_window(b))
            .then_with(|| {
                if (self.less)(a, b) {
                    Ordering::Less
                } else if (self.less)(b, a) {
                    Ordering::Greater
                } else {
                    Ordering::Equal
                }
            })
    }

    /// The plugin that gates `pod`, if any.
    fn gate(&self, pod: &Pod) -> Option<&'static str> {
        let plugins = self.pre_enqueue.get(scheduler_name(pod))?;
        plugins.iter().find_map(|p| {
            let pe = p.as_pre_enqueue()?;
            (!pe.pre_enqueue(pod).is_success()).then(|| p.name())
        })
    }

    fn push_active(&self, st: &mut State, p: QueuedPodInfo) {
        st.seq += 1;
        let seq = st.seq;
        st.active_seq
            .insert(p.pod_info.key.clone(), (seq, p.clone()));
        st.active.push(seq, p, &*self.less);
        self.notify.notify_one();
    }

    /// Puts `p` into activeQ, or parks it in unschedulable when a PreEnqueue
    /// plugin gates it.
    fn enqueue(&self, st: &mut State, mut p: QueuedPodInfo) {
        if let Some(plugin) = self.gate(&p.pod_info.pod) {
            p.unschedulable_plugins = BTreeSet::from([plugin]);
            st.unschedulable.insert(p.pod_info.key.clone(), (p, now()));
            return;
        }
        self.push_active(st, p);
    }

    fn update_nominated(&self, st: &mut State, info: &Arc<PodInfo>, old: Option<&Pod>) {
        let mut node = nominated_node_name(&info.pod);
        // An update where neither version has a nominated node, right after
        // preemption nominated the pod in memory (its status patch not seen
        // yet), keeps the nomination, as upstream's `UpdateNominatedPod`.
        if node.is_none() && old.is_some_and(|o| nominated_node_name(o).is_none()) {
            node = st.nominated_node_of.get(&info.key).cloned();
        }
        set_nominated(st, info, node);
    }

    /// Records (or with `""` clears) the node preemption nominated `info`
    /// to, before the pod's status shows it, so later cycles account for
    /// it (upstream's `AddNominatedPod` with `ModeOverride`).
    pub fn set_nominated_node(&self, info: &Arc<PodInfo>, node: &str) {
        let mut st = self.lock();
        let node = (!node.is_empty()).then(|| node.to_owned());
        set_nominated(&mut st, info, node);
    }

    /// A new pending pod.
    pub fn add(&self, pod: Arc<Pod>) {
        let info = Arc::new(PodInfo::new(pod));
        let t = now();
        let p = QueuedPodInfo {
            pod_info: info.clone(),
            initial_attempt_timestamp: t,
            timestamp: t,
            attempts: 0,
            unschedulable_plugins: BTreeSet::new(),
            pending_plugins: BTreeSet::new(),
        };
        let mut st = self.lock();
        if st.active_seq.contains_key(&info.key)
            || st.backoff.contains_key(&info.key)
            || st.unschedulable.contains_key(&info.key)
        {
            drop(st);
            self.update(pod_of(&info), info.pod.clone());
            return;
        }
        self.update_nominated(&mut st, &info, None);
        self.enqueue(&mut st, p);
    }

    /// A pending pod changed.
    pub fn update(&self, old: Arc<Pod>, new: Arc<Pod>) {
        let info = Arc::new(PodInfo::new(new.clone()));
        let key = info.key.clone();
        let mut st = self.lock();
        if let Some(f) = st.in_flight.get_mut(&key) {
            // Kept for its requeue; its nomination is left as the attempt
            // leaves it (upstream returns before the nominator too). A late
            // status event of a pod being bound would otherwise nominate it
            // again while the cache counts it as assumed: twice on one node.
            f.latest = Some(new);
            return;
        }
        self.update_nominated(&mut st, &info, Some(&old));
        if let Some((_, mut p)) = st.active_seq.remove(&key) {
            // Re-pushed with a new sequence number: the old heap entry is
            // skipped when it surfaces.
            p.pod_info = info;
            self.push_active(&mut st, p);
            return;
        }
        if let Some(p) = st.backoff.get_mut(&key) {
            p.pod_info = info;
            return;
        }
        if let Some((mut p, _)) = st.unschedulable.remove(&key) {
            p.pod_info = info.clone();
            if !is_pod_updated(&old, &new) {
                st.unschedulable.insert(key, (p, now()));
                return;
            }
            if self.gate(&p.pod_info.pod).is_some() {
                st.unschedulable.insert(key, (p, now()));
                return;
            }
            if self.is_backing_off(&p, now()) {
                st.backoff.insert(key, p);
                self.notify.notify_one();
            } else {
                self.push_active(&mut st, p);
            }
            return;
        }
        drop(st);
        self.add(new);
    }

    /// A pod was deleted (or got assigned elsewhere).
    pub fn delete(&self, key: &str) {
        let mut st = self.lock();
        st.active_seq.remove(key);
        st.backoff.remove(key);
        st.unschedulable.remove(key);
        remove_nominated(&mut st, key);
        if let Some(f) = st.in_flight.get_mut(key) {
            f.deleted = true;
        }
    }

    /// Waits for the next pod to schedule; None once closed. The returned
    /// pod counts one more attempt and is in flight until
    /// [`done`](Self::done) or [`add_unschedulable_if_not_present`].
    ///
    /// [`add_unschedulable_if_not_present`]: Self::add_unschedulable_if_not_present
    pub async fn pop(&self) -> Option<QueuedPodInfo> {
        loop {
            let notified = self.notify.notified();
            let deadline = {
                let mut st = self.lock();
                if st.closed {
                    return None;
                }
                self.flush(&mut st, now());
                while let Some((seq, p)) = st.active.pop(&*self.less) {
                    if st.active_seq.get(&p.pod_info.key).map(|e| e.0) != Some(seq) {
                        continue;
                    }
                    st.active_seq.remove(&p.pod_info.key);
                    return Some(start_attempt(&mut st, p));
                }
                // activeQ is empty: rather than idle, try the pod that
                // leaves backoffQ first.
                if let Some(p) = self.take_first_backoff(&mut st) {
                    return Some(start_attempt(&mut st, p));
                }
                let next_backoff = st
                    .backoff
                    .values()
                    .filter_map(|p| self.backoff_over_at(p))
                    .min();
                let next_flush =
                    st.last_unschedulable_flush.unwrap_or_else(now) + UNSCHEDULABLE_FLUSH_PERIOD;
                next_backoff.map_or(next_flush, |b| b.min(next_flush))
            };
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {}
            }
        }
    }

    /// The first pod of backoffQ by [`backoff_order`](Self::backoff_order),
    /// taken out; pods that failed with an error are not taken.
    fn take_first_backoff(&self, st: &mut State) -> Option<QueuedPodInfo> {
        let key = st
            .backoff
            .values()
            .filter(|p| rejected_by_plugins(p))
            .min_by(|a, b| self.backoff_order(a, b))
            .map(|p| p.pod_info.key.clone())?;
        st.backoff.remove(&key)
    }

    /// Moves backoff pods whose back-off is over, and unschedulable pods
    /// parked too long, to activeQ.
    fn flush(&self, st: &mut State, now: Instant) {
        let done: Vec<String> = st
            .backoff
            .iter()
            .filter(|(_, p)| !self.is_backing_off(p, now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in done {
            if let Some(p) = st.backoff.remove(&k) {
                self.push_active(st, p);
            }
        }
        let due = st
            .last_unschedulable_flush
            .is_none_or(|t| now >= t + UNSCHEDULABLE_FLUSH_PERIOD);
        if due {
            st.last_unschedulable_flush = Some(now);
            let old: Vec<String> = st
                .unschedulable
                .iter()
                .filter(|(_, (_, since))| {
                    now.duration_since(*since) > POD_MAX_IN_UNSCHEDULABLE_PODS_DURATION
                })
                .map(|(k, _)| k.clone())
                .collect();
            for k in old {
                if let Some((p, _)) = st.unschedulable.remove(&k) {
                    self.move_to_active_or_backoff(st, p, now);
                }
            }
        }
    }

    /// Parks `p` among the unschedulable pods when a PreEnqueue plugin
    /// gates it (the plugin joins those that rejected it, as upstream, so
    /// either's events move it); hands it back when nothing gates it.
    fn park_if_gated(
        &self,
        st: &mut State,
        mut p: QueuedPodInfo,
        now: Instant,
    ) -> Option<QueuedPodInfo> {
        let Some(plugin) = self.gate(&p.pod_info.pod) else {
            return Some(p);
        };
        p.unschedulable_plugins.insert(plugin);
        st.unschedulable.insert(p.pod_info.key.clone(), (p, now));
        None
    }

    fn move_to_active_or_backoff(&self, st: &mut State, p: QueuedPodInfo, now: Instant) {
        let Some(p) = self.park_if_gated(st, p, now) else {
            return;
        };
        if self.is_backing_off(&p, now) {
            st.backoff.insert(p.pod_info.key.clone(), p);
            // pop() may be sleeping (activeQ empty, or until a later
            // deadline): it may take this pod now, or recompute.
            self.notify.notify_one();
        } else {
            self.push_active(st, p);
        }
    }

    /// The scheduling attempt of `key` ended (bound, or dropped).
    pub fn done(&self, key: &str) {
        self.lock().in_flight.remove(key);
    }

    /// A scheduling attempt failed: back to the queue. Pods rejected by
    /// plugins wait for an event in unschedulable, unless an event arrived
    /// (or the pod was activated) while they were in flight; errors go to
    /// backoff. A pod a PreEnqueue plugin now gates (its preemption under
    /// way) waits in unschedulable. A pod deleted meanwhile is dropped; a
    /// pod updated meanwhile is requeued as it is now.
    pub fn add_unschedulable_if_not_present(&self, mut p: QueuedPodInfo) {
        let t = now();
        let mut st = self.lock();
        let key = p.pod_info.key.clone();
        let flight = st.in_flight.remove(&key).unwrap_or_default();
        if flight.deleted {
            return;
        }
        if let Some(latest) = flight.latest {
            p.pod_info = Arc::new(PodInfo::new(latest));
        }
        p.timestamp = t;
        let Some(p) = self.park_if_gated(&mut st, p, t) else {
            return;
        };
        if !rejected_by_plugins(&p)
            || flight.activated
            || st.move_request_cycle >= flight.cycle.max(1)
        {
            st.backoff.insert(key, p);
        } else {
            st.unschedulable.insert(key, (p, t));
        }
        self.notify.notify_one();
    }

    /// A cluster event happened, without its objects: unschedulable pods
    /// whose rejecting plugins registered for it move (see
    /// [`move_on_event`](Self::move_on_event)).
    pub fn move_all_to_active_or_backoff(&self, event: ClusterEvent) {
        self.move_on_event(event, &EventObjects::Unknown);
    }

    /// A cluster event happened: unschedulable pods move to activeQ (or
    /// backoffQ while backing off) when a plugin that rejected them
    /// registered for the event and its queueing hint says the event may
    /// make them fit (upstream's `MoveAllToActiveOrBackoffQueue` with
    /// queueing hints).
    pub fn move_on_event(&self, event: ClusterEvent, objects: &EventObjects) {
        let t = now();
        let mut st = self.lock();
        st.move_request_cycle = st.scheduling_cycle;
        let keys: Vec<String> = st
            .unschedulable
            .iter()
            .filter(|(_, (p, _))| self.worth_requeuing(p, &event, objects))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            if let Some((p, _)) = st.unschedulable.remove(&k) {
                self.move_to_active_or_backoff(&mut st, p, t);
            }
        }
    }

    /// Upstream's `isPodWorthRequeuing`: a pod rejected by no plugin (an
    /// error) always moves; otherwise one rejecting plugin registered for
    /// the event must hint Queue. A plugin with no registered events
    /// counts as interested in everything.
    fn worth_requeuing(
        &self,
        p: &QueuedPodInfo,
        event: &ClusterEvent,
        objects: &EventObjects,
    ) -> bool {
        let mut plugins = p
            .unschedulable_plugins
            .iter()
            .chain(p.pending_plugins.iter())
            .peekable();
        if plugins.peek().is_none() {
            return true;
        }
        plugins.any(|name| {
            let registered = match self.plugin_events.get(name) {
                None => return true,
                Some(evs) => evs.is_empty() || evs.iter().any(|e| e.matches(event)),
            };
            registered
                && self.hinters.get(name).is_none_or(|pl| {
                    pl.queueing_hint(&p.pod_info, event, objects) == QueueingHint::Queue
                })
        })
    }

    /// Which sub-queue holds `key`.
    pub fn queue_of(&self, key: &str) -> Option<QueueName> {
        let st = self.lock();
        if st.active_seq.contains_key(key) {
            Some(QueueName::Active)
        } else if st.backoff.contains_key(key) {
            Some(QueueName::Backoff)
        } else if st.unschedulable.contains_key(key) {
            Some(QueueName::Unschedulable)
        } else {
            None
        }
    }

    /// Pending pods in all sub-queues.
    pub fn len(&self) -> usize {
        let st = self.lock();
        st.active_seq.len() + st.backoff.len() + st.unschedulable.len()
    }

    /// Each sub-queue's size for `scheduler_pending_pods`; unschedulable
    /// pods that a PreEnqueue plugin parked count as gated.
    pub fn pending_counts(&self) -> crate::metrics::PendingCounts {
        let gates: HashSet<&'static str> = self
            .pre_enqueue
            .values()
            .flatten()
            .map(|p| p.name())
            .collect();
        let st = self.lock();
        let gated = st
            .unschedulable
            .values()
            .filter(|(p, _)| p.unschedulable_plugins.iter().any(|n| gates.contains(n)))
            .count();
        crate::metrics::PendingCounts {
            active: st.active_seq.len(),
            backoff: st.backoff.len(),
            unschedulable: st.unschedulable.len() - gated,
            gated,
        }
    }

    /// True when no pod is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes [`pop`](Self::pop) return None.
    pub fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_one();
    }
}

impl PodActivator for SchedulingQueue {
    fn activate(&self, key: &str) {
        let mut st = self.lock();
        if let Some(f) = st.in_flight.get_mut(key) {
            f.activated = true;
            return;
        }
        let waiting = match st.unschedulable.remove(key) {
            Some((p, _)) => Some(p),
            None => st.backoff.remove(key),
        };
        let Some(p) = waiting.and_then(|p| self.park_if_gated(&mut st, p, now())) else {
            return;
        };
        // Straight to activeQ, back-off or not (upstream's ForceActivate).
        self.push_active(&mut st, p);
    }
}

/// True when plugins rejected `p`'s last attempt; false when it failed
/// with an error.
fn rejected_by_plugins(p: &QueuedPodInfo) -> bool {
    !p.unschedulable_plugins.is_empty() || !p.pending_plugins.is_empty()
}

/// `p` leaves the queue for a scheduling attempt: one more attempt, in
/// flight in a new cycle.
fn start_attempt(st: &mut State, mut p: QueuedPodInfo) -> QueuedPodInfo {
    p.attempts += 1;
    st.scheduling_cycle += 1;
    st.in_flight.insert(
        p.pod_info.key.clone(),
        InFlight {
            cycle: st.scheduling_cycle,
            ..InFlight::default()
        },
    );
    p
}

fn pod_of(info: &PodInfo) -> Arc<Pod> {
    info.pod.clone()
}

fn nominated_node_name(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()
        .and_then(|s| s.nominated_node_name.clone())
        .filter(|n| !n.is_empty())
}

fn set_nominated(st: &mut State, info: &Arc<PodInfo>, node: Option<String>) {
    remove_nominated(st, &info.key);
    if let Some(node) = node {
        st.nominated_node_of.insert(info.key.clone(), node.clone());
        let mut on: Vec<Arc<PodInfo>> = st
            .nominated
            .get(&node)
            .map(|l| l.to_vec())
            .unwrap_or_default();
        on.push(info.clone());
        st.nominated.insert(node, on.into());
    }
}

fn remove_nominated(st: &mut State, key: &str) {
    if let Some(node) = st.nominated_node_of.remove(key)
        && let Some(on) = st.nominated.get(&node)
    {
        let rest: Vec<Arc<PodInfo>> = on.iter().filter(|p| p.key != key).cloned().collect();
        if rest.is_empty() {
            st.nominated.remove(&node);
        } else {
            st.nominated.insert(node, rest.into());
        }
    }
}

impl PodNominator for SchedulingQueue {
    fn nominated_pods_for_node(&self, node: &str) -> Option<NominatedPods> {
        self.lock().nominated.get(node).cloned()
    }
    fn has_nominated_pods(&self) -> bool {
        !self.lock().nominated.is_empty()
    }
    fn nominated_node_of(&self, key: &str) -> Option<String> {
        self.lock().nominated_node_of.get(key).cloned()
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
