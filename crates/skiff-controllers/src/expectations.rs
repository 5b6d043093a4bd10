//! Upstream's `UIDTrackingControllerExpectations`: what a controller
//! expects its informers to show after its own creates and deletes, so it
//! does not act twice on a cache that has not caught up. A controller key
//! whose expectations are unmet is not synced (its status still is) until
//! they are met or five minutes pass.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How long unmet expectations hold a controller back (upstream's
/// `ExpectationsTimeout`).
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone)]
struct Expectation {
    add: i64,
    del: i64,
    timestamp: Instant,
}

impl Expectation {
    fn fulfilled(&self) -> bool {
        self.add <= 0 && self.del <= 0
    }
}

/// Expected creations and deletions per controller key (`ns/name`), with
/// the keys of the pods whose deletion is expected.
#[derive(Debug, Default)]
pub struct ControllerExpectations {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    expectations: HashMap<String, Expectation>,
    deleting: HashMap<String, HashSet<String>>,
}

impl ControllerExpectations {
    /// No expectations.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `key` may be synced: its expectations are met or expired, or
    /// it has none (a controller seen for the first time).
    pub fn satisfied_expectations(&self, key: &str) -> bool {
        match self.lock().expectations.get(key) {
            Some(e) => {
                if e.fulfilled() {
                    true
                } else if e.timestamp.elapsed() > EXPECTATIONS_TIMEOUT {
                    tracing::debug!(key, "expectations expired");
                    true
                } else {
                    false
                }
            }
            None => true,
        }
    }

    /// Expects `adds` creations for `key` (replacing what was expected).
    pub fn expect_creations(&self, key: &str, adds: usize) {
        self.set(key, i64::try_from(adds).unwrap_or(i64::MAX), 0);
    }

    /// Expects the deletion of the pods `pod_keys` for `key`.
    pub fn expect_deletions(&self, key: &str, pod_keys: Vec<String>) {
        let mut inner = self.lock();
        let n = i64::try_from(pod_keys.len()).unwrap_or(i64::MAX);
        inner
            .deleting
            .insert(key.to_owned(), pod_keys.into_iter().collect());
        inner.expectations.insert(
            key.to_owned(),
            Expectation {
                add: 0,
                del: n,
                timestamp: Instant::now(),
            },
        );
    }

    /// Expects `adds` creations and the deletion of the pods `pod_keys` at
    /// once (upstream's `SetExpectations`, as the DaemonSet controller uses
    /// it).
    pub fn set_expectations(&self, key: &str, adds: usize, pod_keys: Vec<String>) {
        let mut inner = self.lock();
        let n = i64::try_from(pod_keys.len()).unwrap_or(i64::MAX);
        inner
            .deleting
            .insert(key.to_owned(), pod_keys.into_iter().collect());
        inner.expectations.insert(
            key.to_owned(),
            Expectation {
                add: i64::try_from(adds).unwrap_or(i64::MAX),
                del: n,
                timestamp: Instant::now(),
            },
        );
    }

    fn set(&self, key: &str, add: i64, del: i64) {
        self.lock().expectations.insert(
            key.to_owned(),
            Expectation {
                add,
                del,
                timestamp: Instant::now(),
            },
        );
    }

    /// One expected creation for `key` was observed (or will never happen).
    pub fn creation_observed(&self, key: &str) {
        if let Some(e) = self.lock().expectations.get_mut(key) {
            e.add -= 1;
        }
    }

    /// The deletion of pod `pod_key` was observed (or failed): counts only
    /// if that pod's deletion was expected, and only once.
    pub fn deletion_observed(&self, key: &str, pod_key: &str) {
        let mut inner = self.lock();
        let removed = inner
            .deleting
            .get_mut(key)
            .is_some_and(|set| set.remove(pod_key));
        if removed && let Some(e) = inner.expectations.get_mut(key) {
            e.del -= 1;
        }
    }

    /// Forgets `key` (its controller was deleted).
    pub fn delete_expectations(&self, key: &str) {
        let mut inner = self.lock();
        inner.expectations.remove(key);
        inner.deleting.remove(key);
    }

    /// The (adds, dels) still expected for `key`.
    pub fn get(&self, key: &str) -> Option<(i64, i64)> {
        self.lock().expectations.get(key).map(|e| (e.add, e.del))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn creations_hold_the_key_until_observed() {
        let e = ControllerExpectations::new();
        assert!(e.satisfied_expectations("ns/rs"), "unknown keys sync");
        e.expect_creations("ns/rs", 2);
        assert!(!e.satisfied_expectations("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(!e.satisfied_expectations("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(e.satisfied_expectations("ns/rs"));
        assert_eq!(e.get("ns/rs"), Some((0, 0)));
        // Other keys are independent.
        e.expect_creations("ns/other", 1);
        assert!(e.satisfied_expectations("ns/rs"));
    }

    #[tokio::test(start_paused = true)]
    async fn deletions_count_each_expected_pod_once() {
        let e = ControllerExpectations::new();
        e.expect_deletions("ns/rs", vec!["ns/a".into(), "ns/b".into()]);
        e.deletion_observed("ns/rs", "ns/unrelated");
        e.deletion_observed("ns/rs", "ns/a");
        e.deletion_observed("ns/rs", "ns/a");
        assert_eq!(e.get("ns/rs"), Some((0, 1)));
        assert!(!e.satisfied_expectations("ns/rs"));
        e.deletion_observed("ns/rs", "ns/b");
        assert!(e.satisfied_expectations("ns/rs"));
    }

    #[tokio::test(start_paused = true)]
    async fn unmet_expectations_expire_after_five_minutes() {
        let e = ControllerExpectations::new();
        e.expect_creations("ns/rs", 1);
        tokio::time::advance(Duration::from_secs(299)).await;
        assert!(!e.satisfied_expectations("ns/rs"));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(e.satisfied_expectations("ns/rs"));
    }

    #[tokio::test(start_paused = true)]
    async fn deleting_the_controller_forgets_its_expectations() {
        let e = ControllerExpectations::new();
        e.expect_creations("ns/rs", 3);
        e.delete_expectations("ns/rs");
        assert!(e.satisfied_expectations("ns/rs"));
        assert_eq!(e.get("ns/rs"), None);
    }
}
