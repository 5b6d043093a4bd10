//! Per-key exponential back-off (upstream's `flowcontrol.Backoff`), used to
//! pace the deletion of failed daemon pods so the controller does not fight
//! a kubelet that keeps rejecting them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
struct Entry {
    backoff: Duration,
    last_update: Instant,
}

/// Delays per key, doubling from `initial` up to `max`; a key untouched
/// for twice `max` starts over.
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Backoff {
    /// A back-off from `initial` to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn expired(&self, e: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(e.last_update) > self.max * 2
    }

    /// Records an attempt for `key` at `now`: the first (or first after
    /// expiry) waits `initial`, each later one twice the previous.
    pub fn next(&self, key: &str, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // Forget expired keys (upstream's periodic GC).
        entries.retain(|_, e| now.saturating_duration_since(e.last_update) <= self.max * 2);
        let backoff = match entries.get(key) {
            Some(e) => (e.backoff * 2).min(self.max),
            None => self.initial,
        };
        entries.insert(
            key.to_owned(),
            Entry {
                backoff,
                last_update: now,
            },
        );
    }

    /// Whether `key`'s current delay has not yet passed since its last
    /// attempt.
    pub fn is_in_back_off_since_update(&self, key: &str, now: Instant) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(key).is_some_and(|e| {
            !self.expired(e, now) && now.saturating_duration_since(e.last_update) < e.backoff
        })
    }

    /// `key`'s current delay (zero when unknown).
    pub fn get(&self, key: &str) -> Duration {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(key).map_or(Duration::ZERO, |e| e.backoff)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn delays_double_up_to_the_max_then_expire() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let t0 = Instant::now();
        assert!(!b.is_in_back_off_since_update("k", t0));
        b.next("k", t0);
        assert_eq!(b.get("k"), Duration::from_secs(1));
        assert!(b.is_in_back_off_since_update("k", t0 + Duration::from_millis(999)));
        assert!(!b.is_in_back_off_since_update("k", t0 + Duration::from_secs(1)));
        let mut t = t0;
        for want in [2, 4, 8, 8] {
            t += Duration::from_secs(1);
            b.next("k", t);
            assert_eq!(b.get("k"), Duration::from_secs(want));
        }
        assert_eq!(b.get("other"), Duration::ZERO);
        // Untouched for more than twice the max: back to the start.
        let later = t + Duration::from_secs(17);
        assert!(!b.is_in_back_off_since_update("k", later));
        b.next("k", later);
        assert_eq!(b.get("k"), Duration::from_secs(1));
    }
}
