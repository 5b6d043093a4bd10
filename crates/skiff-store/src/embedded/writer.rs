//! The single writer: group commit, watch fan-out and compaction.
//!
//! One OS thread owns every write. It takes all requests queued while the
//! previous commit was in flight, applies them in order in one redb write
//! transaction (each successful write gets the next revision), commits with
//! one fsync, then publishes the new state to the index, answers every
//! request and hands the batch's events to the watchers. Readers never wait
//! for a commit: they read the last published state.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redb::{Durability, ReadableTable, Table, WriteTransaction};
use tokio::sync::{broadcast, oneshot};

use super::index::Entry;
use super::record::Record;
use super::{META, META_COMPACTED, META_CURRENT, REVISIONS, Shared, rev_key};
use crate::{DeleteResponse, EventKind, KeyValue, Result, Revision, StoreError, WatchEvent};

/// Most writes committed together; bounds one transaction's size.
const MAX_BATCH: usize = 1024;
/// Longest wait for more writes before a commit.
const MAX_GATHER: Duration = Duration::from_millis(1);
/// How often an idle writer checks whether history has aged out.
const IDLE_TICK: Duration = Duration::from_secs(1);
/// Least time between two automatic compactions.
const COMPACT_EVERY: Duration = Duration::from_secs(1);
/// Granularity of the commit-time history used for time-based retention.
const TIME_BUCKET: Duration = Duration::from_millis(100);

/// A write to carry out.
#[derive(Debug)]
pub(crate) enum WriteOp {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Revision,
    },
    Compact {
        revision: Revision,
    },
}

/// What a successful write produced.
#[derive(Debug)]
pub(crate) enum WriteOutcome {
    Put(KeyValue),
    Deleted(DeleteResponse),
    Compacted,
}

/// A write and where to send its outcome.
#[derive(Debug)]
pub(crate) struct WriteRequest {
    pub op: WriteOp,
    pub reply: oneshot::Sender<Result<WriteOutcome>>,
}

/// Retention of history for automatic compaction.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Retention {
    pub revisions: u64,
    pub duration: Duration,
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    rx: Receiver<WriteRequest>,
    events: broadcast::Sender<Arc<[WatchEvent]>>,
    retention: Retention,
    /// (last revision of a commit, when it was committed), oldest first,
    /// coalesced into TIME_BUCKET steps.
    commit_times: VecDeque<(Revision, Instant)>,
    /// Newest revision known to be older than `retention.duration`.
    expired: Revision,
    last_compaction: Instant,
    buf: Vec<u8>,
    /// Writes in the last batch: about how many writers are active.
    last_batch: usize,
    /// How long the last durable commit took.
    last_commit: Duration,
}

impl Writer {
    pub fn new(
        shared: Arc<Shared>,
        rx: Receiver<WriteRequest>,
        events: broadcast::Sender<Arc<[WatchEvent]>>,
        retention: Retention,
    ) -> Self {
        let now = Instant::now();
        let current = shared.index().current();
        Writer {
            shared,
            rx,
            events,
            retention,
            // History from before this start is at least as old as now.
            commit_times: VecDeque::from([(current, now)]),
            expired: 0,
            last_compaction: now,
            buf: Vec::new(),
            last_batch: 0,
            last_commit: Duration::ZERO,
        }
    }

    /// Runs until every sender is gone, then returns.
    pub fn run(mut self) {
        loop {
            let first = match self.rx.recv_timeout(IDLE_TICK) {
                Ok(req) => req,
                Err(RecvTimeoutError::Timeout) => {
                    self.maybe_compact();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut writes = Vec::with_capacity(self.last_batch.max(16));
            let mut next = Some(first);
            let gather_until = Instant::now() + self.gather_window();
            while let Some(req) = next.take() {
                match req.op {
                    WriteOp::Compact { revision } => {
                        // Keep order: writes queued before the compaction
                        // commit first.
                        self.commit(std::mem::take(&mut writes));
                        let res = self.compact(revision).map(|()| WriteOutcome::Compacted);
                        let _ = req.reply.send(res);
                    }
                    _ => writes.push(req),
                }
                if writes.len() >= MAX_BATCH {
                    break;
                }
                next = self.rx.try_recv().ok();
                if next.is_none() && writes.len() < self.last_batch {
                    // The writers of the last batch are still resubmitting:
                    // wait briefly for them rather than commit half a batch
                    // and make the other half wait a whole fsync.
                    let left = gather_until.saturating_duration_since(Instant::now());
                    if !left.is_zero() {
                        next = self.rx.recv_timeout(left).ok();
                    }
                }
            }
            self.last_batch = writes.len();
            self.commit(writes);
            self.maybe_compact();
        }
    }

    /// How long a batch may wait for the writers of the previous one: a
    /// fraction of a commit, so waiting costs less than it saves.
    fn gather_window(&self) -> Duration {
        (self.last_commit / 4).min(MAX_GATHER)
    }

    /// Applies `writes` in one transaction and answers each.
    fn commit(&mut self, writes: Vec<WriteRequest>) {
        if writes.is_empty() {
            return;
        }
        let mut batch = Batch::default();
        let started = Instant::now();
        let prepared = self.prepare(&writes, &mut batch);
        let committed = prepared.and_then(|txn| match txn {
            Some(txn) => txn
                .commit()
                .map_err(|e| StoreError::Io(format!("commit failed: {e}"))),
            None => Ok(()),
        });
        if let Err(err) = committed {
            tracing::error!(error = %err, writes = writes.len(), "store commit failed");
            let msg = err.to_string();
            for (req, outcome) in writes.into_iter().zip(batch.outcomes) {
                let res = match outcome {
                    Ok(_) => Err(StoreError::Io(msg.clone())),
                    Err(e) => Err(e),
                };
                let _ = req.reply.send(res);
            }
            return;
        }
        if let Some(last) = batch.applied.last().map(|(_, e)| e.rev) {
            self.shared.commits.fetch_add(1, Ordering::Relaxed);
            self.last_commit = started.elapsed();
            let mut index = self.shared.index_mut();
            for (key, entry) in &batch.applied {
                index.apply(key, *entry);
            }
            drop(index);
            self.note_commit_time(last);
        }
        for (req, outcome) in writes.into_iter().zip(batch.outcomes) {
            let _ = req.reply.send(outcome);
        }
        if !batch.events.is_empty() {
            // No receivers is fine: nobody is watching.
            let _ = self.events.send(batch.events.into());
        }
    }

    /// Checks and writes every request into a new transaction. Returns the
    /// transaction to commit, or `None` when nothing needs writing. Per-write
    /// failures (conflicts, missing keys) go into `batch.outcomes`; an error
    /// returned here fails the whole batch.
    fn prepare(
        &mut self,
        writes: &[WriteRequest],
        batch: &mut Batch,
    ) -> Result<Option<WriteTransaction>> {
        let io = |e: redb::Error| StoreError::Io(e.to_string());
        let mut txn = self.shared.db.begin_write().map_err(|e| io(e.into()))?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| StoreError::Io(e.to_string()))?;
        let index = self.shared.index();
        let mut next = index.current() + 1;
        {
            let mut table = txn.open_table(REVISIONS).map_err(|e| io(e.into()))?;
            // State of keys written earlier in this batch.
            let mut overlay: HashMap<&str, Option<Entry>> = HashMap::new();
            for req in writes {
                let (key, value, expected) = match &req.op {
                    WriteOp::Create { key, value } => (key.as_str(), Some(value), None),
                    WriteOp::Update {
                        key,
                        value,
                        expected,
                    } => (key.as_str(), Some(value), Some(*expected)),
                    WriteOp::Delete { key, expected } => (key.as_str(), None, Some(*expected)),
                    WriteOp::Compact { .. } => {
                        batch
                            .outcomes
                            .push(Err(StoreError::Io("misrouted compaction".into())));
                        continue;
                    }
                };
                let current = match overlay.get(key) {
                    Some(e) => *e,
                    None => index.latest(key),
                };
                let checked = check(key, current, expected, &table)?;
                let prev = match checked {
                    Err(e) => {
                        batch.outcomes.push(Err(e));
                        continue;
                    }
                    Ok(prev) => prev,
                };
                let rev = next;
                next += 1;
                let (entry, prev_kv) = match prev {
                    Some((_, kv)) if value.is_none() => (
                        Entry {
                            rev,
                            create: 0,
                            version: 0,
                            deleted: true,
                        },
                        Some(kv),
                    ),
                    Some((e, kv)) => (
                        Entry {
                            rev,
                            create: e.create,
                            version: e.version + 1,
                            deleted: false,
                        },
                        Some(kv),
                    ),
                    None => (
                        Entry {
                            rev,
                            create: rev,
                            version: 1,
                            deleted: false,
                        },
                        None,
                    ),
                };
                self.buf.clear();
                Record {
                    deleted: entry.deleted,
                    create_revision: entry.create,
                    version: entry.version,
                    prev_revision: prev_kv.as_ref().map_or(0, |kv: &KeyValue| kv.mod_revision),
                    key,
                    value: value.map_or(&[][..], |v| &v[..]),
                }
                .encode_into(&mut self.buf);
                table
                    .insert(rev_key(rev), self.buf.as_slice())
                    .map_err(|e| io(e.into()))?;
                let (event, outcome) = match value {
                    Some(value) => {
                        let kv = KeyValue {
                            key: key.to_owned(),
                            value: value.clone(),
                            create_revision: entry.create,
                            mod_revision: rev,
                            version: entry.version,
                        };
                        let ev = WatchEvent {
                            kind: EventKind::Put,
                            kv: kv.clone(),
                            prev: prev_kv,
                        };
                        (ev, WriteOutcome::Put(kv))
                    }
                    None => {
                        let prev = prev_kv.ok_or_else(|| {
                            StoreError::Io("delete without previous value".into())
                        })?;
                        let ev = WatchEvent {
                            kind: EventKind::Delete,
                            kv: KeyValue {
                                key: key.to_owned(),
                                value: Bytes::new(),
                                create_revision: 0,
                                mod_revision: rev,
                                version: 0,
                            },
                            prev: Some(prev.clone()),
                        };
                        (
                            ev,
                            WriteOutcome::Deleted(DeleteResponse {
                                revision: rev,
                                prev,
                            }),
                        )
                    }
                };
                let stored = if entry.deleted { None } else { Some(entry) };
                overlay.insert(key, stored);
                batch.applied.push((key.to_owned(), entry));
                batch.events.push(event);
                batch.outcomes.push(Ok(outcome));
            }
        }
        drop(index);
        if batch.applied.is_empty() {
            txn.abort().map_err(|e| io(e.into()))?;
            return Ok(None);
        }
        {
            let mut meta = txn.open_table(META).map_err(|e| io(e.into()))?;
            meta.insert(META_CURRENT, (next - 1).to_le_bytes().as_slice())
                .map_err(|e| io(e.into()))?;
        }
        Ok(Some(txn))
    }

    fn note_commit_time(&mut self, rev: Revision) {
        let now = Instant::now();
        match self.commit_times.back_mut() {
            Some((last, at)) if now.duration_since(*at) < TIME_BUCKET => *last = rev,
            _ => self.commit_times.push_back((rev, now)),
        }
    }

    /// Compacts automatically when history exceeds the retention.
    fn maybe_compact(&mut self) {
        let now = Instant::now();
        if now.duration_since(self.last_compaction) < COMPACT_EVERY {
            return;
        }
        while let Some(&(rev, at)) = self.commit_times.front() {
            if now.duration_since(at) < self.retention.duration {
                break;
            }
            self.expired = rev;
            self.commit_times.pop_front();
        }
        let (current, compacted) = {
            let index = self.shared.index();
            (index.current(), index.compacted())
        };
        let by_count = current.saturating_sub(self.retention.revisions as i64);
        let target = by_count.max(self.expired).min(current);
        if target > compacted
            && let Err(err) = self.compact(target)
        {
            tracing::warn!(error = %err, target, "automatic compaction failed");
        }
        self.last_compaction = now;
    }

    /// Discards history before `revision` (see [`super::index::Index::compact`]).
    fn compact(&mut self, revision: Revision) -> Result<()> {
        let removed = {
            let mut index = self.shared.index_mut();
            if revision <= index.compacted() {
                return Err(StoreError::Compacted {
                    requested: revision,
                    compacted: index.compacted(),
                });
            }
            if revision > index.current() {
                return Err(StoreError::FutureRevision {
                    requested: revision,
                    current: index.current(),
                });
            }
            // The index forgets first: from here on no reader asks for the
            // removed records, and readers that already looked them up hold
            // a read transaction from before their removal.
            index.compact(revision)
        };
        let io = |e: redb::Error| StoreError::Io(format!("compaction: {e}"));
        let mut txn = self.shared.db.begin_write().map_err(|e| io(e.into()))?;
        // Compaction need not be durable on its own: after a crash the old
        // records and the old compacted revision come back together.
        txn.set_durability(Durability::None)
            .map_err(|e| StoreError::Io(e.to_string()))?;
        {
            let mut table: Table<u64, &[u8]> =
                txn.open_table(REVISIONS).map_err(|e| io(e.into()))?;
            for rev in &removed {
                table.remove(rev_key(*rev)).map_err(|e| io(e.into()))?;
            }
            let mut meta = txn.open_table(META).map_err(|e| io(e.into()))?;
            meta.insert(META_COMPACTED, revision.to_le_bytes().as_slice())
                .map_err(|e| io(e.into()))?;
        }
        txn.commit().map_err(|e| io(e.into()))?;
        tracing::debug!(revision, removed = removed.len(), "compacted");
        Ok(())
    }
}

/// A batch in the making.
#[derive(Default)]
struct Batch {
    outcomes: Vec<Result<WriteOutcome>>,
    applied: Vec<(String, Entry)>,
    events: Vec<WatchEvent>,
}

/// Checks a write's precondition against the key's current state. The outer
/// error is a storage failure (fails the batch); the inner one is this
/// write's own failure. On success, returns the key's current entry and
/// value when the write replaces one.
fn check(
    key: &str,
    current: Option<Entry>,
    expected: Option<Revision>,
    table: &Table<u64, &[u8]>,
) -> Result<Result<Option<(Entry, KeyValue)>>> {
    match (current, expected) {
        (Some(_), None) => Ok(Err(StoreError::AlreadyExists {
            key: key.to_owned(),
        })),
        (None, None) => Ok(Ok(None)),
        (None, Some(_)) => Ok(Err(StoreError::NotFound {
            key: key.to_owned(),
        })),
        (Some(e), Some(expected)) => {
            let kv = read_kv(table, e.rev)?;
            if e.rev == expected {
                Ok(Ok(Some((e, kv))))
            } else {
                Ok(Err(StoreError::Conflict {
                    key: key.to_owned(),
                    expected,
                    current: Box::new(kv),
                }))
            }
        }
    }
}

fn read_kv(table: &Table<u64, &[u8]>, rev: Revision) -> Result<KeyValue> {
    let guard = table
        .get(rev_key(rev))
        .map_err(|e| StoreError::Io(e.to_string()))?
        .ok_or_else(|| StoreError::Io(format!("record of revision {rev} is missing")))?;
    Ok(Record::decode(rev, guard.value())?.to_kv(rev))
}
