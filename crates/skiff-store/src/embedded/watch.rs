//! Watch streams of the embedded backend.
//!
//! A watch is a small state machine run as a stream:
//! - `Replay`: read the records after the last delivered revision from the
//!   `revisions` table, in chunks, until caught up with the current revision;
//! - `Live`: take batches the writer broadcasts, skipping anything already
//!   delivered; if the watch falls behind the broadcast buffer it goes back
//!   to `Replay` (from disk) instead of losing events;
//! - `Done`: after an error or the store's shutdown.
//!
//! The broadcast subscription is taken before the first replay, so every
//! batch after the replayed revision is either replayed or received.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::record::Record;
use super::{REVISIONS, Shared, read_record, rev_key};
use crate::{EventKind, Result, Revision, StoreError, WatchEvent, WatchStream};

/// Records read per replay step.
const REPLAY_CHUNK: i64 = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Replay,
    Live,
    Done,
}

struct WatchState {
    shared: Arc<Shared>,
    rx: broadcast::Receiver<Arc<[WatchEvent]>>,
    prefix: Arc<str>,
    /// The last revision delivered (or skipped as not matching).
    last: Revision,
    pending: VecDeque<WatchEvent>,
    phase: Phase,
}

/// Starts a watch of `prefix` after revision `after` (0 = now).
pub(crate) fn start(
    shared: &Arc<Shared>,
    events: &broadcast::Sender<Arc<[WatchEvent]>>,
    prefix: &str,
    after: Revision,
) -> Result<WatchStream> {
    let index = shared.index();
    let current = index.current();
    // 0 (or less, as etcd treats it) means from now on.
    let last = if after <= 0 { current } else { after };
    if last < index.compacted() {
        return Err(StoreError::Compacted {
            requested: last,
            compacted: index.compacted(),
        });
    }
    // Subscribe under the index lock: every batch not yet in the index is
    // broadcast after this point.
    let rx = events.subscribe();
    drop(index);
    let state = WatchState {
        shared: shared.clone(),
        rx,
        prefix: prefix.into(),
        last,
        pending: VecDeque::new(),
        phase: if last < current {
            Phase::Replay
        } else {
            Phase::Live
        },
    };
    Ok(futures::stream::unfold(state, next).boxed())
}

async fn next(mut st: WatchState) -> Option<(Result<WatchEvent>, WatchState)> {
    loop {
        if let Some(ev) = st.pending.pop_front() {
            return Some((Ok(ev), st));
        }
        match st.phase {
            Phase::Done => return None,
            Phase::Replay => {
                let shared = st.shared.clone();
                let prefix = st.prefix.clone();
                let last = st.last;
                let step =
                    tokio::task::spawn_blocking(move || replay_chunk(&shared, &prefix, last)).await;
                match step {
                    Ok(Ok(chunk)) => {
                        st.pending.extend(chunk.events);
                        st.last = chunk.last;
                        if chunk.caught_up {
                            st.phase = Phase::Live;
                        }
                    }
                    Ok(Err(err)) => return fail(st, err),
                    Err(join) => {
                        return fail(st, StoreError::Io(format!("watch replay failed: {join}")));
                    }
                }
            }
            Phase::Live => match st.rx.recv().await {
                Ok(batch) => {
                    for ev in batch.iter() {
                        if ev.revision() > st.last && ev.kv.key.starts_with(&*st.prefix) {
                            st.pending.push_back(ev.clone());
                        }
                    }
                    if let Some(ev) = batch.last() {
                        st.last = st.last.max(ev.revision());
                    }
                }
                Err(RecvError::Lagged(_)) => st.phase = Phase::Replay,
                Err(RecvError::Closed) => return fail(st, StoreError::Closed),
            },
        }
    }
}

fn fail(mut st: WatchState, err: StoreError) -> Option<(Result<WatchEvent>, WatchState)> {
    st.phase = Phase::Done;
    st.pending.clear();
    Some((Err(err), st))
}

struct Chunk {
    events: Vec<WatchEvent>,
    last: Revision,
    caught_up: bool,
}

/// Reads the events of up to REPLAY_CHUNK revisions after `last`.
fn replay_chunk(shared: &Shared, prefix: &str, last: Revision) -> Result<Chunk> {
    let (txn, current) = {
        let index = shared.index();
        if last < index.compacted() {
            return Err(StoreError::Compacted {
                requested: last,
                compacted: index.compacted(),
            });
        }
        (shared.begin_read()?, index.current())
    };
    let end = current.min(last.saturating_add(REPLAY_CHUNK));
    let table = txn
        .open_table(REVISIONS)
        .map_err(|e| StoreError::Io(e.to_string()))?;
    let mut events = Vec::new();
    let range = table
        .range(rev_key(last + 1)..=rev_key(end))
        .map_err(|e| StoreError::Io(e.to_string()))?;
    for item in range {
        let (k, v) = item.map_err(|e| StoreError::Io(e.to_string()))?;
        let rev = k.value() as Revision;
        let record = Record::decode(rev, v.value())?;
        if !record.key.starts_with(prefix) {
            continue;
        }
        let prev = match record.prev_revision {
            0 => None,
            p => Some(read_record(&table, p)?),
        };
        events.push(WatchEvent {
            kind: if record.deleted {
                EventKind::Delete
            } else {
                EventKind::Put
            },
            kv: record.to_kv(rev),
            prev,
        });
    }
    Ok(Chunk {
        events,
        last: end,
        caught_up: end >= current,
    })
}
