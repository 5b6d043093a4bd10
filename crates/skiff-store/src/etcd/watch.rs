//! Watches on etcd that survive connection loss.
//!
//! A [`Watcher`] is a small state machine run as a stream:
//!
//! ```text
//! Opening ──open ok──▶ Watching ──events──▶ (delivered, `last` advances)
//!    ▲                    │
//!    └──stream error, ────┘     compacted (see below) ──▶ Finished (Err(Compacted))
//!       end or cancel           retrying too long     ──▶ Finished (Err(Unavailable))
//! ```
//!
//! It remembers `last`, the revision of the last event it delivered (at the
//! start, the caller's `after`). Each etcd watch it opens starts at
//! `last + 1`, and it drops any event at or below the `last` of the moment the
//! response arrived, so a reopened watch neither loses nor repeats events.
//! All events of one revision come in one etcd response, so filtering by
//! revision never splits a multi-key transaction.
//!
//! An update or delete that arrives without its previous value gets it read
//! at the revision before the event. etcd leaves it out in two cases: it is
//! compacted (a watch started exactly at the compacted revision, which etcd
//! accepts), and a race in etcd 3.4 where a new watch's first events are sent
//! before its `prev_kv` flag is recorded. In the first case the read fails
//! and the stream ends with [`StoreError::Compacted`], as the contract (and
//! the embedded backend) says for `after` below the compacted revision.
//! The history is also gone when etcd cancels the watch with
//! `compact_revision` set.
//!
//! Progress notifications are not used to advance `last`: etcd 3.4 before
//! 3.4.25 can send one ahead of events of the same revision (etcd#15220),
//! and resuming past them would lose those events.

use std::collections::VecDeque;
use std::time::Duration;

use etcd_client::proto::PbWatchResponse;
use etcd_client::{GetOptions, KvClient, WatchClient, WatchOptions};
use futures::StreamExt;
use tokio::time::{Instant, sleep, timeout};
use tracing::{debug, warn};

use super::error::{Failure, classify, malformed, timed_out};
use super::{key_value, prefix_end};
use crate::{EventKind, KeyValue, Result, Revision, StoreError, WatchEvent, WatchStream};

/// The first pause before reopening a broken watch; doubled per failure.
const INITIAL_BACKOFF: Duration = Duration::from_millis(50);
/// The longest pause between attempts to reopen a watch.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Attempts to open the first etcd watch before `watch` fails.
const OPEN_ATTEMPTS: u32 = 4;

/// How a watch retries.
#[derive(Clone, Copy, Debug)]
pub(super) struct Retry {
    /// Limit on opening one etcd watch (until etcd confirms it).
    pub(super) open_timeout: Duration,
    /// Give up after failing this long without a working etcd watch.
    pub(super) give_up_after: Duration,
}

/// A stream of every change under `prefix` after revision `after`.
///
/// The first etcd watch is opened before this returns: a watch that starts at
/// the current revision is then "synced" in etcd and gets events at once,
/// while one opened later would start in the past and wait for etcd's
/// 100 ms catch-up loop. Failing to open it (after a few quick attempts) is
/// an error here.
pub(super) async fn watch(
    client: WatchClient,
    kv: KvClient,
    prefix: &str,
    after: Revision,
    retry: Retry,
) -> Result<WatchStream> {
    let mut watcher = Watcher {
        client,
        kv,
        key: prefix.as_bytes().to_vec(),
        range_end: prefix_end(prefix),
        delivery: Delivery {
            last: after,
            pending: VecDeque::new(),
        },
        delivered: after,
        error: None,
        state: State::Finished,
        failing: None,
        retry,
    };
    let mut attempt = 1;
    let stream = loop {
        match watcher.open().await {
            Ok(stream) => break stream,
            // Another endpoint may serve it (see `EtcdStore::request`).
            Err(reason) if attempt < OPEN_ATTEMPTS => {
                debug!(attempt, %reason, "retrying to open etcd watch");
                sleep(INITIAL_BACKOFF * attempt).await;
                attempt += 1;
            }
            Err(reason) => return Err(StoreError::Unavailable(reason)),
        }
    };
    watcher.state = State::Watching {
        stream: Box::new(stream),
    };
    Ok(futures::stream::unfold(watcher, |mut watcher| async move {
        let item = watcher.next().await?;
        Some((item, watcher))
    })
    .boxed())
}

struct Watcher {
    client: WatchClient,
    kv: KvClient,
    key: Vec<u8>,
    range_end: Vec<u8>,
    delivery: Delivery,
    /// The revision of the last event handed to the caller, or `after`.
    delivered: Revision,
    /// The error that ends the stream, delivered after `pending`.
    error: Option<StoreError>,
    state: State,
    /// Set while there is no working etcd watch.
    failing: Option<Failing>,
    retry: Retry,
}

enum State {
    /// No etcd watch is open: open one from `last + 1` after `delay`.
    Opening { delay: Duration },
    /// An etcd watch is open (boxed: the stream is large).
    Watching {
        stream: Box<etcd_client::WatchStream>,
    },
    /// The stream has ended.
    Finished,
}

/// What has been delivered and what is ready to be: the part of a watch that
/// turns etcd's responses into events, without I/O.
struct Delivery {
    /// The revision of the last event taken, or the caller's `after`.
    last: Revision,
    /// Events taken but not yet delivered, in order.
    pending: VecDeque<WatchEvent>,
}

/// Since when and how a watch has been failing.
struct Failing {
    since: Instant,
    backoff: Duration,
}

/// What a response means for the state machine.
enum Step {
    /// Keep reading this etcd watch.
    Continue,
    /// This etcd watch is over; open another.
    Reopen(String),
    /// The stream ends with this error (after the events already taken).
    Fail(StoreError),
}

impl Watcher {
    /// The next item: an event, or the error that ends the stream.
    async fn next(&mut self) -> Option<Result<WatchEvent>> {
        loop {
            if let Some(mut event) = self.delivery.pending.pop_front() {
                if event.prev.is_none() && needs_prev(&event) {
                    match self.fetch_prev(&event).await {
                        Ok(prev) => event.prev = Some(prev),
                        Err(e) => {
                            self.delivery.pending.clear();
                            self.state = State::Finished;
                            return Some(Err(e));
                        }
                    }
                }
                self.delivered = event.revision();
                return Some(Ok(event));
            }
            if let Some(error) = self.error.take() {
                self.state = State::Finished;
                return Some(Err(error));
            }
            match std::mem::replace(&mut self.state, State::Finished) {
                State::Finished => return None,
                State::Opening { delay } => {
                    if !delay.is_zero() {
                        sleep(delay).await;
                    }
                    match self.open().await {
                        Ok(stream) => {
                            self.state = State::Watching {
                                stream: Box::new(stream),
                            }
                        }
                        Err(reason) => {
                            if let Err(e) = self.reopen(reason) {
                                return Some(Err(e));
                            }
                        }
                    }
                }
                State::Watching { mut stream } => {
                    let step = match stream.message().await {
                        Ok(Some(response)) => {
                            let response = response.0;
                            if response.created
                                && !response.canceled
                                && response.compact_revision == 0
                            {
                                self.failing = None;
                            }
                            self.delivery.take(response)
                        }
                        Ok(None) => Step::Reopen("etcd closed the watch stream".into()),
                        Err(e) => Step::Reopen(e.to_string()),
                    };
                    match step {
                        Step::Continue => self.state = State::Watching { stream },
                        Step::Reopen(reason) => {
                            if let Err(e) = self.reopen(reason) {
                                return Some(Err(e));
                            }
                        }
                        Step::Fail(e) => self.error = Some(e),
                    }
                }
            }
        }
    }

    /// Reads the previous value of `event` that etcd left out (see the
    /// module docs): the key at the revision before the event.
    async fn fetch_prev(&mut self, event: &WatchEvent) -> Result<KeyValue> {
        let at = event.revision().saturating_sub(1);
        let mut attempt = 1;
        loop {
            let mut kv = self.kv.clone();
            let options = GetOptions::new().with_revision(at);
            let request = kv.get(event.kv.key.as_bytes(), Some(options));
            let failure = match timeout(self.retry.open_timeout, request).await {
                Ok(Ok(response)) => {
                    return match response.0.kvs.into_iter().next() {
                        Some(prev) => key_value(prev),
                        None => Err(malformed("no previous value for an update or delete")),
                    };
                }
                Ok(Err(e)) => classify(e),
                Err(_) => Failure::Other(timed_out("range", self.retry.open_timeout)),
            };
            match failure {
                Failure::Compacted => {
                    let compacted = compacted_revision(
                        self.client.clone(),
                        at,
                        super::COMPACTED_LOOKUP_TIMEOUT,
                    )
                    .await;
                    let at_least = at.saturating_add(1);
                    return Err(StoreError::Compacted {
                        requested: self.delivered,
                        compacted: compacted.unwrap_or(at_least).max(at_least),
                    });
                }
                Failure::NotSent(_) | Failure::Other(StoreError::Unavailable(_))
                    if attempt < OPEN_ATTEMPTS =>
                {
                    sleep(INITIAL_BACKOFF * attempt).await;
                    attempt += 1;
                }
                other => return Err(other.into_store_error()),
            }
        }
    }

    /// Opens an etcd watch from `last + 1`.
    async fn open(&mut self) -> Result<etcd_client::WatchStream, String> {
        let options = WatchOptions::new()
            .with_range(self.range_end.clone())
            .with_start_revision(self.delivery.last.saturating_add(1))
            .with_prev_key();
        let key = self.key.clone();
        match timeout(
            self.retry.open_timeout,
            self.client.watch(key, Some(options)),
        )
        .await
        {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "opening the watch timed out after {:?}",
                self.retry.open_timeout
            )),
        }
    }

    /// Schedules another attempt after a failure, or gives up.
    fn reopen(&mut self, reason: String) -> Result<()> {
        let now = Instant::now();
        let failing = self.failing.get_or_insert(Failing {
            since: now,
            backoff: Duration::ZERO,
        });
        if now.duration_since(failing.since) >= self.retry.give_up_after {
            warn!(last = self.delivery.last, %reason, "giving up on etcd watch");
            return Err(StoreError::Unavailable(format!(
                "etcd watch lost for {:?}: {reason}",
                self.retry.give_up_after
            )));
        }
        // The first attempt after a working watch broke goes out at once;
        // repeated failures back off.
        let delay = failing.backoff;
        failing.backoff = if delay.is_zero() {
            INITIAL_BACKOFF
        } else {
            (delay * 2).min(MAX_BACKOFF)
        };
        debug!(last = self.delivery.last, ?delay, %reason, "reopening etcd watch");
        self.state = State::Opening { delay };
        Ok(())
    }
}

impl Delivery {
    /// Takes the events of one response that come after `last`.
    fn take(&mut self, response: PbWatchResponse) -> Step {
        if response.compact_revision != 0 {
            return Step::Fail(StoreError::Compacted {
                requested: self.last,
                compacted: response.compact_revision,
            });
        }
        if response.canceled {
            return Step::Reopen(format!(
                "etcd canceled the watch: {}",
                response.cancel_reason
            ));
        }
        let floor = self.last;
        for event in response.events {
            let Some(kv) = event.kv else {
                return Step::Fail(malformed("watch event without a key"));
            };
            if kv.mod_revision <= floor {
                continue;
            }
            let kind = match event.r#type {
                0 => EventKind::Put,
                1 => EventKind::Delete,
                _ => return Step::Fail(malformed("watch event of unknown type")),
            };
            let converted = key_value(kv).and_then(|kv| {
                let prev = event.prev_kv.map(key_value).transpose()?;
                Ok(WatchEvent { kind, kv, prev })
            });
            match converted {
                Ok(event) => {
                    self.last = self.last.max(event.revision());
                    self.pending.push_back(event);
                }
                Err(e) => return Step::Fail(e),
            }
        }
        Step::Continue
    }
}

/// An update (version > 1) or a delete always has a previous value.
fn needs_prev(event: &WatchEvent) -> bool {
    event.kind == EventKind::Delete || event.kv.version > 1
}

/// etcd's compacted revision, learned by watching from `probe` (a revision
/// known to be compacted): etcd cancels such a watch with `compact_revision`
/// set. `None` if it does not answer within `limit`.
pub(super) async fn compacted_revision(
    mut client: WatchClient,
    probe: Revision,
    limit: Duration,
) -> Option<Revision> {
    let lookup = async move {
        let options = WatchOptions::new().with_start_revision(probe.max(1));
        let mut stream = client.watch("/", Some(options)).await.ok()?;
        loop {
            let response = stream.message().await.ok()??.0;
            if response.compact_revision != 0 {
                return Some(response.compact_revision);
            }
            if response.canceled {
                return None;
            }
        }
    };
    timeout(limit, lookup).await.ok().flatten()
}

#[cfg(test)]
mod tests {
    use etcd_client::proto::{PbEvent, PbKeyValue};

    use super::*;

    fn put(key: &str, rev: Revision, version: i64, prev: Option<Revision>) -> PbEvent {
        PbEvent {
            r#type: 0,
            kv: Some(PbKeyValue {
                key: key.into(),
                value: format!("v{rev}").into(),
                create_revision: rev - version + 1,
                mod_revision: rev,
                version,
                lease: 0,
            }),
            prev_kv: prev.map(|p| PbKeyValue {
                key: key.into(),
                value: format!("v{p}").into(),
                create_revision: 1,
                mod_revision: p,
                version: version - 1,
                lease: 0,
            }),
        }
    }

    fn events(events: Vec<PbEvent>) -> PbWatchResponse {
        PbWatchResponse {
            events,
            ..PbWatchResponse::default()
        }
    }

    fn delivery(last: Revision) -> Delivery {
        Delivery {
            last,
            pending: VecDeque::new(),
        }
    }

    fn revisions(d: &Delivery) -> Vec<Revision> {
        d.pending.iter().map(WatchEvent::revision).collect()
    }

    #[test]
    fn drops_what_was_already_delivered() {
        let mut d = delivery(5);
        let step = d.take(events(vec![
            put("/a", 4, 1, None),
            put("/a", 5, 2, Some(4)),
            put("/a", 6, 3, Some(5)),
            put("/b", 7, 1, None),
        ]));
        assert!(matches!(step, Step::Continue));
        assert_eq!(revisions(&d), [6, 7]);
        assert_eq!(d.last, 7);
        // A reopened watch repeating revision 7 adds only what is new.
        d.take(events(vec![
            put("/b", 7, 1, None),
            put("/b", 8, 2, Some(7)),
        ]));
        assert_eq!(revisions(&d), [6, 7, 8]);
    }

    #[test]
    fn keeps_every_event_of_one_revision() {
        let mut d = delivery(5);
        d.take(events(vec![put("/a", 6, 1, None), put("/b", 6, 1, None)]));
        assert_eq!(revisions(&d), [6, 6]);
    }

    #[test]
    fn deletes_become_tombstones_with_previous_values() {
        let mut d = delivery(5);
        let delete = PbEvent {
            r#type: 1,
            kv: Some(PbKeyValue {
                key: b"/a".to_vec(),
                mod_revision: 9,
                ..PbKeyValue::default()
            }),
            prev_kv: put("/a", 8, 1, None).kv,
        };
        d.take(events(vec![delete]));
        let ev = d.pending.pop_front().unwrap();
        assert_eq!(ev.kind, EventKind::Delete);
        assert_eq!(
            (ev.kv.key.as_str(), ev.kv.value.len(), ev.kv.mod_revision),
            ("/a", 0, 9)
        );
        assert_eq!((ev.kv.create_revision, ev.kv.version), (0, 0));
        assert_eq!(ev.prev.unwrap().mod_revision, 8);
    }

    #[test]
    fn marks_updates_and_deletes_missing_their_previous_value() {
        let mut d = delivery(5);
        let delete = PbEvent {
            r#type: 1,
            kv: Some(PbKeyValue {
                key: b"/c".to_vec(),
                mod_revision: 9,
                ..PbKeyValue::default()
            }),
            prev_kv: None,
        };
        let step = d.take(events(vec![
            put("/a", 6, 1, None),
            put("/b", 7, 4, None),
            put("/b", 8, 5, Some(7)),
            delete,
        ]));
        assert!(matches!(step, Step::Continue));
        let missing: Vec<_> = d
            .pending
            .iter()
            .map(|ev| (ev.revision(), ev.prev.is_none() && needs_prev(ev)))
            .collect();
        assert_eq!(missing, [(6, false), (7, true), (8, false), (9, true)]);
    }

    #[test]
    fn compaction_ends_and_cancellation_reopens() {
        let mut d = delivery(5);
        let compacted = PbWatchResponse {
            canceled: true,
            compact_revision: 12,
            ..PbWatchResponse::default()
        };
        assert!(matches!(
            d.take(compacted),
            Step::Fail(StoreError::Compacted {
                requested: 5,
                compacted: 12
            })
        ));
        let canceled = PbWatchResponse {
            canceled: true,
            cancel_reason: "etcdserver: no leader".into(),
            ..PbWatchResponse::default()
        };
        assert!(matches!(d.take(canceled), Step::Reopen(r) if r.contains("no leader")));
    }

    #[test]
    fn malformed_events_end_the_stream() {
        let mut d = delivery(0);
        let mut unknown = put("/a", 1, 1, None);
        unknown.r#type = 7;
        assert!(matches!(
            d.take(events(vec![unknown])),
            Step::Fail(StoreError::Io(_))
        ));
        let mut not_utf8 = put("/a", 1, 1, None);
        if let Some(kv) = not_utf8.kv.as_mut() {
            kv.key = vec![b'/', 0xff];
        }
        assert!(matches!(
            d.take(events(vec![not_utf8])),
            Step::Fail(StoreError::Io(_))
        ));
    }
}
