//! Events expire `--event-ttl` after their last write, as upstream's
//! API server makes them expire (it gives every event write an etcd lease
//! of that length).
//!
//! The store has no leases, so the server keeps its own clock of the
//! store: every tick it notes the current revision and the time. A key
//! whose last write is at or below a revision noted at least a TTL ago was
//! written at least a TTL ago, and is deleted — only in that version (the
//! delete names the revision it read), so an event written again meanwhile
//! lives on. Events already stored when the server started count as
//! written at the start: they are never removed early, and at most one
//! tick late.

use std::collections::VecDeque;
use std::time::Duration;

use skiff_api::resources::EVENTS_STORAGE_PREFIX;
use skiff_store::{AnyStore, ListOptions, Revision, Store, StoreError};
use tokio::time::Instant;

/// Upstream's `--event-ttl` default.
pub const DEFAULT_EVENT_TTL: Duration = Duration::from_secs(3600);
/// Keys read per page while sweeping.
const PAGE: u64 = 1000;

/// How often a TTL is checked for: a tenth of it, between 1 s and 1 min.
fn tick(ttl: Duration) -> Duration {
    (ttl / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// When the store was at which revision, oldest first.
#[derive(Debug, Default)]
struct Marks(VecDeque<(Revision, Instant)>);

impl Marks {
    fn note(&mut self, rev: Revision, at: Instant) {
        self.0.push_back((rev, at));
    }

    /// The newest noted revision at least `ttl` old at `now`: every write
    /// up to it is that old. Older marks are dropped.
    fn expired_through(&mut self, now: Instant, ttl: Duration) -> Option<Revision> {
        let old_enough = |at: &Instant| now.saturating_duration_since(*at) >= ttl;
        while self.0.len() > 1 && self.0.get(1).is_some_and(|(_, at)| old_enough(at)) {
            self.0.pop_front();
        }
        self.0
            .front()
            .filter(|(_, at)| old_enough(at))
            .map(|(rev, _)| *rev)
    }
}

/// Deletes events older than `ttl`, every [`tick`], until aborted.
pub(crate) async fn run(store: AnyStore, ttl: Duration) {
    let mut marks = Marks::default();
    let mut swept: Revision = 0;
    let mut ticks = tokio::time::interval(tick(ttl));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match store.current_revision().await {
            Ok(rev) => marks.note(rev, Instant::now()),
            Err(e) => {
                tracing::warn!(error = %e, "event TTL: cannot read the store's revision");
                continue;
            }
        }
        let Some(through) = marks.expired_through(Instant::now(), ttl) else {
            continue;
        };
        // Everything written up to the last sweep's bound is gone already
        // (or written again, past it).
        if through <= swept {
            continue;
        }
        match sweep(&store, through).await {
            Ok(deleted) => {
                swept = through;
                if deleted > 0 {
                    tracing::debug!(deleted, through, "event TTL: expired events deleted");
                }
            }
            Err(e) => tracing::warn!(error = %e, "event TTL: sweep failed; retrying next tick"),
        }
    }
}

/// Deletes every event last written at or before `through`; how many.
async fn sweep(store: &AnyStore, through: Revision) -> Result<usize, StoreError> {
    let mut opts = ListOptions {
        limit: PAGE,
        ..ListOptions::default()
    };
    let mut deleted = 0;
    loop {
        let page = store.list(EVENTS_STORAGE_PREFIX, opts.clone()).await?;
        for kv in page.kvs.iter().filter(|kv| kv.mod_revision <= through) {
            match store.delete(&kv.key, kv.mod_revision).await {
                Ok(_) => deleted += 1,
                // Written again, or deleted, since the list: not expired.
                Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        opts.revision = page.revision;
        match page.continue_after() {
            Some(after) => opts.continue_after = Some(after.to_owned()),
            None => return Ok(deleted),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revision_expires_once_noted_a_ttl_ago() {
        let ttl = Duration::from_secs(60);
        let t0 = Instant::now();
        let mut marks = Marks::default();
        marks.note(10, t0);
        assert_eq!(marks.expired_through(t0, ttl), None);
        marks.note(20, t0 + Duration::from_secs(30));
        assert_eq!(
            marks.expired_through(t0 + Duration::from_secs(59), ttl),
            None
        );
        assert_eq!(
            marks.expired_through(t0 + Duration::from_secs(60), ttl),
            Some(10)
        );
        marks.note(25, t0 + Duration::from_secs(60));
        // The newest mark old enough wins; the ones before it are dropped.
        assert_eq!(
            marks.expired_through(t0 + Duration::from_secs(95), ttl),
            Some(20)
        );
        assert_eq!(marks.0.len(), 2);
        assert_eq!(
            marks.expired_through(t0 + Duration::from_secs(200), ttl),
            Some(25)
        );
        assert_eq!(marks.0.len(), 1);
    }

    #[test]
    fn ticks_are_a_tenth_of_the_ttl_within_bounds() {
        assert_eq!(tick(DEFAULT_EVENT_TTL), Duration::from_secs(60));
        assert_eq!(tick(Duration::from_secs(100)), Duration::from_secs(10));
        assert_eq!(tick(Duration::from_secs(2)), Duration::from_secs(1));
    }
}
