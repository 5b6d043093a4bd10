//! A token bucket as golang.org/x/time/rate's reservations (client-go's
//! `flowcontrol` and workqueue bucket limiters): full at start with `burst`
//! tokens, refilled at `qps` a second; taking a token from an empty bucket
//! drives it negative, and the deficit is how long the taker must wait.

use std::time::Duration;

use tokio::time::Instant;

/// See the module docs. A `qps` of zero or less never makes anyone wait.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    qps: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    /// `qps` tokens a second, at most `burst` saved up (full at start).
    pub fn new(qps: f64, burst: u32) -> Self {
        TokenBucket {
            qps,
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: None,
        }
    }

    /// Takes a token at `now`; returns how long to wait before using it
    /// (zero when the bucket had one, always zero when unlimited).
    pub fn reserve(&mut self, now: Instant) -> Duration {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.qps).min(self.burst);
        }
        self.last = Some(now);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 || self.qps <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.qps)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    #[test]
    fn a_burst_then_one_token_per_interval_and_the_deficit_accumulates() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 3);
        for _ in 0..3 {
            assert_eq!(b.reserve(t0), Duration::ZERO);
        }
        assert!((secs(b.reserve(t0)) - 0.1).abs() < 1e-9);
        assert!((secs(b.reserve(t0)) - 0.2).abs() < 1e-9);
        // Half a second refills five: the deficit of two is paid, three left,
        // which is also the most the bucket holds.
        let t1 = t0 + Duration::from_millis(500);
        for _ in 0..3 {
            assert_eq!(b.reserve(t1), Duration::ZERO);
        }
        assert!(b.reserve(t1) > Duration::ZERO);
        // A long idle time never saves more than the burst.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(b.reserve(t2), Duration::ZERO);
        }
        assert!((secs(b.reserve(t2)) - 0.1).abs() < 1e-9);
    }

    #[test]
    fn zero_qps_is_unlimited() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0.0, 0);
        for _ in 0..1000 {
            assert_eq!(b.reserve(t0), Duration::ZERO);
        }
    }
}
