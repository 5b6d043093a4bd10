//! Keyed exponential back-off, as upstream's `flowcontrol.Backoff` the
//! kubelet uses for container restarts (CrashLoopBackOff) and image pulls
//! (ImagePullBackOff): 10 s doubling to 5 min, forgotten after twice the
//! maximum without a new failure (so a container that ran 10 minutes
//! restarts at once again).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The first back-off after a failure.
pub const INITIAL: Duration = Duration::from_secs(10);
/// The longest back-off.
pub const MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy)]
struct Entry {
    backoff: Duration,
    last_update: Instant,
}

/// Back-off per key (e.g. `pod-uid/container`).
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: HashMap<String, Entry>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(INITIAL, MAX)
    }
}

impl Backoff {
    /// A back-off from `initial` doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            entries: HashMap::new(),
        }
    }

    fn live(&self, key: &str, now: Instant) -> Option<Entry> {
        self.entries
            .get(key)
            .copied()
            .filter(|e| now.saturating_duration_since(e.last_update) <= 2 * self.max)
    }

    /// Whether `key` must still wait at `now`, counting from `since` (the
    /// failure's time, e.g. the container's finish). Returns the remaining
    /// wait and the whole back-off when it must.
    pub fn in_backoff_since(
        &self,
        key: &str,
        since: Instant,
        now: Instant,
    ) -> Option<(Duration, Duration)> {
        let e = self.live(key, now)?;
        let waited = now.saturating_duration_since(since);
        (waited < e.backoff).then(|| (e.backoff - waited, e.backoff))
    }

    /// Whether `key` must still wait at `now`, counting from its last
    /// recorded attempt (image pulls). Returns the remaining wait.
    pub fn in_backoff_since_update(&self, key: &str, now: Instant) -> Option<Duration> {
        let e = self.live(key, now)?;
        let waited = now.saturating_duration_since(e.last_update);
        (waited < e.backoff).then(|| e.backoff - waited)
    }

    /// Records an attempt at `now`: the first sets the initial back-off,
    /// later ones double it up to the maximum.
    pub fn next(&mut self, key: &str, now: Instant) {
        let backoff = match self.live(key, now) {
            None => self.initial,
            Some(e) => (e.backoff * 2).min(self.max),
        };
        self.entries.insert(
            key.to_owned(),
            Entry {
                backoff,
                last_update: now,
            },
        );
    }

    /// The current back-off of `key`, if any.
    pub fn current(&self, key: &str, now: Instant) -> Option<Duration> {
        self.live(key, now).map(|e| e.backoff)
    }

    /// Forgets `key` (the pod went away).
    pub fn reset(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Forgets every key starting with `prefix`.
    pub fn reset_prefix(&mut self, prefix: &str) {
        self.entries.retain(|k, _| !k.starts_with(prefix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_attempt_is_free_then_doubles_to_the_max() {
        let mut b = Backoff::default();
        let t0 = Instant::now();
        assert_eq!(b.in_backoff_since("k", t0, t0), None);
        b.next("k", t0);
        assert_eq!(b.current("k", t0), Some(INITIAL));
        // Failed again right away: wait the 10 s.
        let (left, whole) = b
            .in_backoff_since("k", t0, t0 + Duration::from_secs(3))
            .unwrap_or_default();
        assert_eq!((left, whole), (Duration::from_secs(7), INITIAL));
        assert_eq!(b.in_backoff_since("k", t0, t0 + INITIAL), None);
        assert_eq!(
            b.in_backoff_since_update("k", t0 + Duration::from_secs(4)),
            Some(Duration::from_secs(6))
        );
        assert_eq!(b.in_backoff_since_update("k", t0 + INITIAL), None);
        let mut now = t0;
        let mut seen = vec![];
        for _ in 0..7 {
            now += Duration::from_secs(1);
            b.next("k", now);
            seen.push(b.current("k", now).unwrap_or_default().as_secs());
        }
        assert_eq!(seen, [20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn forgotten_after_twice_the_max_without_failure() {
        let mut b = Backoff::default();
        let t0 = Instant::now();
        for i in 0..5 {
            b.next("k", t0 + Duration::from_secs(i));
        }
        assert_eq!(
            b.current("k", t0 + Duration::from_secs(5)),
            Some(Duration::from_secs(160))
        );
        let later = t0 + Duration::from_secs(5) + 2 * MAX + Duration::from_secs(1);
        assert_eq!(b.current("k", later), None);
        b.next("k", later);
        assert_eq!(b.current("k", later), Some(INITIAL));
        b.reset_prefix("k");
        assert_eq!(b.current("k", later), None);
    }
}
