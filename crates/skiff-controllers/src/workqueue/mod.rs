//! A keyed work queue as client-go's rate-limited `workqueue`: an item is
//! queued at most once (the dirty set), never handed to two workers at once
//! (the processing set: an item added while processed is queued again when
//! its worker calls [`WorkQueue::done`]), delayed adds (`add_after`, the
//! earliest deadline wins) and rate-limited requeues. A queue created
//! through [`ControllerMetrics::queue`] reports client-go's work queue
//! metrics under its name; one built with [`WorkQueue::new`] reports none.

pub mod rate_limiter;

use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::metrics::{ControllerMetrics, QueueMetrics};

pub use rate_limiter::{RateLimiter, default_controller_rate_limiter};

/// What a queue holds: cheap to clone, hashable.
pub trait QueueItem: Hash + Eq + Clone + Send + Sync + std::fmt::Debug + 'static {}
impl<T: Hash + Eq + Clone + Send + Sync + std::fmt::Debug + 'static> QueueItem for T {}

#[derive(Debug)]
struct Waiting<T> {
    ready_at: Instant,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Waiting<T> {
    fn eq(&self, other: &Self) -> bool {
        self.ready_at == other.ready_at && self.seq == other.seq
    }
}
impl<T> Eq for Waiting<T> {}
impl<T> PartialOrd for Waiting<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Waiting<T> {
    // Reversed: BinaryHeap is a max-heap and the earliest must come first.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.ready_at, other.seq).cmp(&(self.ready_at, self.seq))
    }
}

#[derive(Debug)]
struct State<T> {
    queue: VecDeque<T>,
    dirty: HashSet<T>,
    processing: HashSet<T>,
    /// Delayed items; `waiting_for` holds each one's current deadline so a
    /// later, longer `add_after` does not postpone it and stale heap entries
    /// are skipped.
    waiting: BinaryHeap<Waiting<T>>,
    waiting_for: HashMap<T, Instant>,
    seq: u64,
    shutting_down: bool,
    tracked: Option<Tracked<T>>,
}

/// The bookkeeping behind a queue's metrics.
#[derive(Debug)]
struct Tracked<T> {
    metrics: QueueMetrics,
    /// When each dirty item was added (for the queue duration).
    added_at: HashMap<T, Instant>,
    /// When each processed item was taken (for the work duration).
    taken_at: HashMap<T, Instant>,
}

impl<T: QueueItem> State<T> {
    /// Marks `item` dirty at `now`; whether it was queued (it is not while
    /// processed, nor when already dirty).
    fn add(&mut self, item: T, now: Instant) -> bool {
        if self.shutting_down || self.dirty.contains(&item) {
            return false;
        }
        if let Some(t) = &mut self.tracked {
            t.metrics.added();
            t.added_at.entry(item.clone()).or_insert(now);
        }
        self.dirty.insert(item.clone());
        if self.processing.contains(&item) {
            return false;
        }
        self.queue.push_back(item);
        true
    }

    /// Moves delayed items whose time has come into the queue; the next
    /// deadline, if any.
    fn flush_waiting(&mut self, now: Instant) -> (bool, Option<Instant>) {
        let mut added = false;
        while let Some(top) = self.waiting.peek() {
            if self.waiting_for.get(&top.item) != Some(&top.ready_at) {
                self.waiting.pop();
                continue;
            }
            if top.ready_at > now {
                return (added, Some(top.ready_at));
            }
            if let Some(w) = self.waiting.pop() {
                self.waiting_for.remove(&w.item);
                added |= self.add(w.item, now);
            }
        }
        (added, None)
    }
}

/// A rate-limited, delaying, de-duplicating work queue.
#[derive(Debug)]
pub struct WorkQueue<T: QueueItem> {
    state: Mutex<State<T>>,
    notify: Notify,
    rate_limiter: Box<dyn RateLimiter<T>>,
    metrics: Option<ControllerMetrics>,
}

impl<T: QueueItem> WorkQueue<T> {
    /// A queue with client-go's default controller rate limiter.
    pub fn new() -> Self {
        Self::with_rate_limiter(Box::new(default_controller_rate_limiter()))
    }

    /// A queue requeueing through `rate_limiter`.
    pub fn with_rate_limiter(rate_limiter: Box<dyn RateLimiter<T>>) -> Self {
        WorkQueue {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                waiting: BinaryHeap::new(),
                waiting_for: HashMap::new(),
                seq: 0,
                shutting_down: false,
                tracked: None,
            }),
            notify: Notify::new(),
            rate_limiter,
            metrics: None,
        }
    }

    /// This queue, reporting to `metrics` from now on.
    pub(crate) fn with_metrics(mut self, metrics: QueueMetrics) -> Self {
        self.metrics = Some(metrics.controller().clone());
        self.lock().tracked = Some(Tracked {
            metrics,
            added_at: HashMap::new(),
            taken_at: HashMap::new(),
        });
        self
    }

    /// The metrics this queue reports to, if any (its workers report their
    /// syncs there too).
    pub fn metrics(&self) -> Option<&ControllerMetrics> {
        self.metrics.as_ref()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item` unless it is queued already (or being processed, in
    /// which case it is queued again when its worker is done).
    pub fn add(&self, item: T) {
        if self.lock().add(item, Instant::now()) {
            self.notify.notify_one();
        }
    }

    /// Queues `item` after `delay` (at once when zero). When the item is
    /// already waiting, the earlier deadline is kept. Counted as a retry,
    /// as client-go counts every delayed add.
    pub fn add_after(&self, item: T, delay: Duration) {
        let now = Instant::now();
        let mut s = self.lock();
        if s.shutting_down {
            return;
        }
        if let Some(t) = &s.tracked {
            t.metrics.retried();
        }
        if delay.is_zero() {
            let queued = s.add(item, now);
            drop(s);
            if queued {
                self.notify.notify_one();
            }
            return;
        }
        let ready_at = now + delay;
        if let Some(at) = s.waiting_for.get(&item)
            && *at <= ready_at
        {
            return;
        }
        s.seq += 1;
        let seq = s.seq;
        s.waiting_for.insert(item.clone(), ready_at);
        s.waiting.push(Waiting {
            ready_at,
            seq,
            item,
        });
        drop(s);
        // A worker parked without a deadline must learn of this one.
        self.notify.notify_waiters();
    }

    /// Queues `item` after the rate limiter's delay for it.
    pub fn add_rate_limited(&self, item: T) {
        let delay = self.rate_limiter.when(&item);
        self.add_after(item, delay);
    }

    /// Stops the rate limiter tracking `item` (call after a success).
    pub fn forget(&self, item: &T) {
        self.rate_limiter.forget(item);
    }

    /// How many times `item` was requeued through the rate limiter.
    pub fn num_requeues(&self, item: &T) -> u32 {
        self.rate_limiter.num_requeues(item)
    }

    /// Items queued (ready), not counting delayed or processed ones.
    pub fn len(&self) -> usize {
        let mut s = self.lock();
        s.flush_waiting(Instant::now());
        s.queue.len()
    }

    /// Whether no item is ready.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next item, waiting for one; `None` once the queue is shut down
    /// and drained. The caller must call [`WorkQueue::done`] with it.
    pub async fn get(&self) -> Option<T> {
        loop {
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            let deadline = {
                let mut s = self.lock();
                let now = Instant::now();
                let (_, deadline) = s.flush_waiting(now);
                if let Some(item) = s.queue.pop_front() {
                    s.dirty.remove(&item);
                    s.processing.insert(item.clone());
                    if let Some(t) = &mut s.tracked {
                        let waited = t.added_at.remove(&item).map(|at| now - at);
                        t.metrics.taken(waited, now);
                        t.taken_at.insert(item.clone(), now);
                    }
                    return Some(item);
                }
                if s.shutting_down {
                    return None;
                }
                deadline
            };
            match deadline {
                Some(at) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Marks `item` processed; requeues it if it was added meanwhile.
    pub fn done(&self, item: &T) {
        let mut s = self.lock();
        s.processing.remove(item);
        if let Some(t) = &mut s.tracked
            && let Some(taken) = t.taken_at.remove(item)
        {
            t.metrics.done(taken, Instant::now());
        }
        if s.dirty.contains(item) {
            s.queue.push_back(item.clone());
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Stops accepting items; workers drain what is queued, then
    /// [`WorkQueue::get`] returns `None`.
    pub fn shut_down(&self) {
        let mut s = self.lock();
        s.shutting_down = true;
        s.waiting.clear();
        s.waiting_for.clear();
        drop(s);
        self.notify.notify_waiters();
    }

    /// Whether [`WorkQueue::shut_down`] was called.
    pub fn shutting_down(&self) -> bool {
        self.lock().shutting_down
    }
}

impl<T: QueueItem> Default for WorkQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
