//! Rate limiters for requeues, as client-go's `workqueue` rate limiters:
//! per-item exponential back-off, an overall token bucket, and the max of
//! several (`DefaultControllerRateLimiter`).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use skiff_client::rate::TokenBucket;
use tokio::time::Instant;

/// How long an item waits before its next attempt.
pub trait RateLimiter<T>: Send + Sync + std::fmt::Debug {
    /// The delay before `item` is retried; counts one more failure.
    fn when(&self, item: &T) -> Duration;
    /// Stops tracking `item` (it succeeded).
    fn forget(&self, item: &T);
    /// How many times `item` has been requeued.
    fn num_requeues(&self, item: &T) -> u32;
}

/// `base * 2^failures`, capped at `max`, per item.
#[derive(Debug)]
pub struct ItemExponentialFailureRateLimiter<T> {
    failures: Mutex<HashMap<T, u32>>,
    base: Duration,
    max: Duration,
}

impl<T> ItemExponentialFailureRateLimiter<T> {
    /// A limiter starting at `base` and never waiting longer than `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        ItemExponentialFailureRateLimiter {
            failures: Mutex::new(HashMap::new()),
            base,
            max,
        }
    }
}

impl<T: Hash + Eq + Clone + Send + std::fmt::Debug> RateLimiter<T>
    for ItemExponentialFailureRateLimiter<T>
{
    fn when(&self, item: &T) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let exp = failures.entry(item.clone()).or_insert(0);
        let n = *exp;
        *exp = exp.saturating_add(1);
        // Past 2^63 the multiplication overflows: the cap applies anyway.
        let factor = 1u64.checked_shl(n).unwrap_or(u64::MAX);
        let nanos = (self.base.as_nanos()).saturating_mul(u128::from(factor));
        if nanos > self.max.as_nanos() {
            self.max
        } else {
            Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
        }
    }

    fn forget(&self, item: &T) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(item);
    }

    fn num_requeues(&self, item: &T) -> u32 {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(item)
            .copied()
            .unwrap_or(0)
    }
}

/// A token bucket shared by all items (golang.org/x/time/rate's reserve:
/// tokens may go negative, and the deficit is the wait).
#[derive(Debug)]
pub struct BucketRateLimiter {
    bucket: Mutex<TokenBucket>,
}

impl BucketRateLimiter {
    /// `qps` tokens a second, at most `burst` saved up (full at start).
    pub fn new(qps: f64, burst: u32) -> Self {
        BucketRateLimiter {
            bucket: Mutex::new(TokenBucket::new(qps, burst)),
        }
    }
}

impl<T> RateLimiter<T> for BucketRateLimiter {
    fn when(&self, _item: &T) -> Duration {
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        b.reserve(Instant::now())
    }

    fn forget(&self, _item: &T) {}

    fn num_requeues(&self, _item: &T) -> u32 {
        0
    }
}

/// The longest delay of several limiters.
#[derive(Debug)]
pub struct MaxOfRateLimiter<T> {
    limiters: Vec<Box<dyn RateLimiter<T>>>,
}

impl<T> MaxOfRateLimiter<T> {
    /// Combines `limiters`.
    pub fn new(limiters: Vec<Box<dyn RateLimiter<T>>>) -> Self {
        MaxOfRateLimiter { limiters }
    }
}

impl<T: std::fmt::Debug> RateLimiter<T> for MaxOfRateLimiter<T> {
    fn when(&self, item: &T) -> Duration {
        self.limiters
            .iter()
            .map(|l| l.when(item))
            .max()
            .unwrap_or(Duration::ZERO)
    }

    fn forget(&self, item: &T) {
        for l in &self.limiters {
            l.forget(item);
        }
    }

    fn num_requeues(&self, item: &T) -> u32 {
        self.limiters
            .iter()
            .map(|l| l.num_requeues(item))
            .max()
            .unwrap_or(0)
    }
}

/// client-go's `DefaultControllerRateLimiter`: per item 5 ms doubling to
/// 1000 s, and overall 10 qps with a burst of 100.
pub fn default_controller_rate_limiter<T>() -> MaxOfRateLimiter<T>
where
    T: Hash + Eq + Clone + Send + Sync + std::fmt::Debug + 'static,
{
    MaxOfRateLimiter::new(vec![
        Box::new(ItemExponentialFailureRateLimiter::new(
            Duration::from_millis(5),
            Duration::from_secs(1000),
        )),
        Box::new(BucketRateLimiter::new(10.0, 100)),
    ])
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn exponential_doubles_per_item_and_caps() {
        let l = ItemExponentialFailureRateLimiter::new(
            Duration::from_millis(5),
            Duration::from_secs(1000),
        );
        let a = "a".to_owned();
        let expect = [5u64, 10, 20, 40, 80];
        for ms in expect {
            assert_eq!(l.when(&a), Duration::from_millis(ms));
        }
        assert_eq!(l.num_requeues(&a), 5);
        // Another item starts over.
        assert_eq!(l.when(&"b".to_owned()), Duration::from_millis(5));
        for _ in 0..100 {
            l.when(&a);
        }
        assert_eq!(l.when(&a), Duration::from_secs(1000));
        l.forget(&a);
        assert_eq!(l.num_requeues(&a), 0);
        assert_eq!(l.when(&a), Duration::from_millis(5));
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_allows_burst_then_paces() {
        let l = BucketRateLimiter::new(10.0, 100);
        for _ in 0..100 {
            assert_eq!(RateLimiter::<u8>::when(&l, &0), Duration::ZERO);
        }
        let d = RateLimiter::<u8>::when(&l, &0);
        assert!((d.as_secs_f64() - 0.1).abs() < 1e-6, "{d:?}");
        let d = RateLimiter::<u8>::when(&l, &0);
        assert!((d.as_secs_f64() - 0.2).abs() < 1e-6, "{d:?}");
        // A second refills ten tokens: the deficit of two is paid, eight left.
        tokio::time::advance(Duration::from_secs(1)).await;
        for _ in 0..8 {
            assert_eq!(RateLimiter::<u8>::when(&l, &0), Duration::ZERO);
        }
        assert!(RateLimiter::<u8>::when(&l, &0) > Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn default_is_the_max_of_both() {
        let l = default_controller_rate_limiter::<String>();
        let k = "k".to_owned();
        assert_eq!(l.when(&k), Duration::from_millis(5));
        assert_eq!(l.when(&k), Duration::from_millis(10));
        assert_eq!(l.num_requeues(&k), 2);
        // Exhaust the bucket with other items: then the bucket dominates.
        for i in 0..98 {
            l.when(&format!("other-{i}"));
        }
        let d = l.when(&"fresh".to_owned());
        assert!(d >= Duration::from_millis(99), "{d:?}");
        l.forget(&k);
        assert_eq!(l.num_requeues(&k), 0);
    }
}
