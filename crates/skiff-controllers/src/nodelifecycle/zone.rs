//! Zones and how fast their nodes are tainted: zone disruption states and
//! the per-zone rate-limited queue of nodes waiting for a NoExecute taint
//! (upstream's `ComputeZoneState` and `RateLimitedTimedQueue`).

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use tokio::time::Instant;

/// A zone's health as the controller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneState {
    /// Not yet computed.
    Initial,
    /// Few nodes not ready: taint at the normal rate.
    Normal,
    /// At least `--unhealthy-zone-threshold` of the nodes (and more than
    /// two) not ready: taint slower, or not at all in small clusters.
    PartialDisruption,
    /// No node ready.
    FullDisruption,
}

/// The zone key of a node: region and zone labels joined as upstream's
/// `GetZoneKey` (empty when the node has neither).
pub fn zone_key(node: &Node) -> String {
    let labels = node.metadata.labels.as_ref();
    let get = |ga: &str, beta: &str| {
        labels
            .and_then(|l| l.get(ga).or_else(|| l.get(beta)))
            .cloned()
            .unwrap_or_default()
    };
    let region = get(
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/region",
    );
    let zone = get(
        "topology.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/zone",
    );
    if region.is_empty() && zone.is_empty() {
        return String::new();
    }
    format!("{region}:\x00:{zone}")
}

/// The number of not-ready nodes and the zone's state, from each node's
/// Ready status (None when the node has no Ready condition).
pub fn compute_zone_state(ready: &[Option<&str>], unhealthy_threshold: f32) -> (usize, ZoneState) {
    let ready_nodes = ready.iter().filter(|s| **s == Some("True")).count();
    let not_ready = ready.len() - ready_nodes;
    let state = if ready_nodes == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2
        && (not_ready as f32) / ((not_ready + ready_nodes) as f32) >= unhealthy_threshold
    {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    };
    (not_ready, state)
}

/// A token bucket with a burst of one token that starts full (client-go's
/// token bucket limiter as the node controller uses it); a rate of zero
/// never accepts.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    qps: f32,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket refilling at `qps` tokens a second.
    pub fn new(qps: f32, now: Instant) -> Self {
        TokenBucket {
            qps,
            tokens: 1.0,
            last: now,
        }
    }

    /// The refill rate.
    pub fn qps(&self) -> f32 {
        self.qps
    }

    /// Takes a token if there is one.
    pub fn try_accept(&mut self, now: Instant) -> bool {
        if self.qps <= 0.0 {
            return false;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(self.qps)).min(1.0);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A node waiting in a zone's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedValue {
    /// The node's name.
    pub value: String,
    /// The node's UID.
    pub uid: String,
    /// When it was added.
    pub added_at: Instant,
    /// Not before this.
    pub process_at: Instant,
}

/// Nodes to taint in one zone, in order, at most as fast as the limiter
/// allows. A node processed successfully leaves the queue but stays a
/// member until [`RateLimitedTimedQueue::remove`], so it is not queued
/// again meanwhile.
#[derive(Debug)]
pub struct RateLimitedTimedQueue {
    queue: VecDeque<TimedValue>,
    members: HashSet<String>,
    limiter: TokenBucket,
}

impl RateLimitedTimedQueue {
    /// An empty queue limited to `qps`.
    pub fn new(qps: f32, now: Instant) -> Self {
        RateLimitedTimedQueue {
            queue: VecDeque::new(),
            members: HashSet::new(),
            limiter: TokenBucket::new(qps, now),
        }
    }

    /// Queues `name` unless it is a member already; whether it was added.
    pub fn add(&mut self, name: &str, uid: &str, now: Instant) -> bool {
        if !self.members.insert(name.to_owned()) {
            return false;
        }
        self.queue.push_back(TimedValue {
            value: name.to_owned(),
            uid: uid.to_owned(),
            added_at: now,
            process_at: now,
        });
        true
    }

    /// Drops `name` from the queue and the members; whether it was a member.
    pub fn remove(&mut self, name: &str) -> bool {
        self.queue.retain(|v| v.value != name);
        self.members.remove(name)
    }

    /// Changes the rate (upstream's `SwapLimiter`): a new full bucket,
    /// drained at once if the old one had no token, so a burst of one does
    /// not let an extra node through.
    pub fn swap_limiter(&mut self, qps: f32, now: Instant) {
        if self.limiter.qps() == qps {
            return;
        }
        let mut fresh = TokenBucket::new(qps, now);
        if !self.limiter.try_accept(now) {
            fresh.try_accept(now);
        }
        self.limiter = fresh;
    }

    /// The limiter's current rate.
    pub fn qps(&self) -> f32 {
        self.limiter.qps()
    }

    /// Takes the due nodes, in order, as long as the limiter gives tokens.
    /// Each must be handed back with [`RateLimitedTimedQueue::done`].
    pub fn take_due(&mut self, now: Instant) -> Vec<TimedValue> {
        let mut out = Vec::new();
        while let Some(head) = self.queue.front() {
            if head.process_at > now || !self.limiter.try_accept(now) {
                break;
            }
            if let Some(v) = self.queue.pop_front() {
                out.push(v);
            }
        }
        out
    }

    /// Reports how a taken node went: on success it leaves the queue (it
    /// stays a member); otherwise it is retried after `retry`.
    pub fn done(&mut self, mut v: TimedValue, ok: bool, retry: Duration, now: Instant) {
        if ok || !self.members.contains(&v.value) {
            return;
        }
        v.process_at = now + retry;
        let at = self
            .queue
            .iter()
            .position(|q| q.process_at > v.process_at)
            .unwrap_or(self.queue.len());
        self.queue.insert(at, v);
    }

    /// Queued nodes (not yet processed).
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}
