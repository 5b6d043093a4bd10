//! The watch cache, as upstream's cacher: lists and watches served from
//! memory.
//!
//! A reflector lists everything under [`ROOT`] once, then follows ONE store
//! watch of it, applying each change to [`state::CacheState`]: the current
//! objects of every resource (decoded once, shared by `Arc`), a window of
//! recent events per resource, and the watchers to fan events out to.
//!
//! One watch of the root rather than one per resource: the `Store` trait has
//! no progress notifications, so only a watch that sees every write can tell
//! when the cache has reached the store's current revision, which consistent
//! lists (resourceVersion unset) wait for.
//!
//! When the store watch fails (compaction, store restart) the reflector
//! relists; watchers are closed then (clients re-watch), as upstream's
//! cacher terminates its watchers when it relists.

pub(crate) mod object;
mod selectable;
pub(crate) mod state;

use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;

use futures::StreamExt;
use skiff_api::resources::{EVENTS_STORAGE_PREFIX, ResourceInfo};
use skiff_store::{
    AnyStore, EventKind, ListOptions, Revision, Store, StoreError, WatchEvent, WatchStream,
};
use tokio::sync::watch;

use object::{CachedObject, Written};
pub(crate) use state::{CacheConfig, CachedEvent, Initial, Start};
use state::{CacheState, Change};

/// The prefix every API object is stored under.
pub(crate) const ROOT: &str = "/registry/";
/// Storage prefixes the cache leaves to the store, as upstream's default
/// watch cache sizes do: events (core and events.k8s.io share one storage)
/// are written far more often than anyone lists or watches them, so
/// holding them would cost every write a decode and the server their
/// memory. Their lists and watches are served from the store.
const UNCACHED: &[&str] = &[EVENTS_STORAGE_PREFIX];
/// How long a request waits for the cache to reach a revision before it
/// falls back to the store (upstream waits up to 3 s as well).
pub(crate) const FRESHNESS_WAIT: Duration = Duration::from_secs(3);
/// Keys read per page while relisting.
const RELIST_PAGE: u64 = 10_000;
/// Longest pause between relist attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The store plus the watch cache over it. Writes go to the store (it
/// dereferences to [`AnyStore`]); lists and watches may be served by
/// [`CachedStore::cache`].
#[derive(Clone)]
pub(crate) struct CachedStore {
    store: AnyStore,
    cache: Arc<Cache>,
    reflector: Arc<OnceLock<Reflector>>,
    /// The runtime the store was opened on, which runs the reflector: a
    /// request served on another runtime (an in-process client's) may be
    /// the cache's first use.
    runtime: Option<tokio::runtime::Handle>,
}

impl fmt::Debug for CachedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedStore")
            .field("store", &self.store)
            .field("revision", &self.cache.revision())
            .finish()
    }
}

impl Deref for CachedStore {
    type Target = AnyStore;

    fn deref(&self) -> &AnyStore {
        &self.store
    }
}

impl CachedStore {
    /// `store` with a cache that starts on first use.
    pub fn new(store: AnyStore) -> CachedStore {
        CachedStore::with_config(store, CacheConfig::default())
    }

    /// `store` with a cache of the given sizes.
    pub fn with_config(store: AnyStore, config: CacheConfig) -> CachedStore {
        CachedStore {
            store,
            cache: Arc::new(Cache::new(config)),
            reflector: Arc::new(OnceLock::new()),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// The cache, its reflector started if it was not yet. Call from
    /// within the tokio runtime.
    pub fn cache(&self) -> &Arc<Cache> {
        self.reflector.get_or_init(|| {
            let handles = Arc::new(Handles {
                store: Mutex::new(Some(self.store.clone())),
                watch: Mutex::new(None),
            });
            let reflect = reflect(handles.clone(), self.cache.clone());
            let task = match &self.runtime {
                Some(runtime) => runtime.spawn(reflect),
                None => tokio::spawn(reflect),
            };
            Reflector { task, handles }
        });
        &self.cache
    }

    /// Waits (at most [`FRESHNESS_WAIT`]) until the cache has applied every
    /// change up to `rev`, or (`None`) up to the store's current revision.
    /// False when it did not get there in time.
    pub async fn wait_fresh(&self, rev: Option<Revision>) -> bool {
        let cache = self.cache().clone();
        let rev = match rev {
            Some(rev) => rev,
            None => match self.store.current_revision().await {
                Ok(rev) => rev,
                Err(_) => return false,
            },
        };
        cache.wait_for(rev, FRESHNESS_WAIT).await
    }
}

/// Whether the cache holds the objects of `info` (else its lists and
/// watches go to the store).
pub(crate) fn holds(info: &ResourceInfo) -> bool {
    holds_key(info.storage_prefix)
}

/// Whether the cache holds the object stored at `key`.
pub(crate) fn holds_key(key: &str) -> bool {
    !UNCACHED.iter().any(|p| key.starts_with(p))
}

/// Stops the reflector when the last [`CachedStore`] clone goes.
struct Reflector {
    task: tokio::task::JoinHandle<()>,
    handles: Arc<Handles>,
}

impl Drop for Reflector {
    fn drop(&mut self) {
        self.task.abort();
        // Release the store right now, not whenever the aborted task is
        // next polled: the embedded store frees its data directory once
        // its last handle and watch are gone, and a restart reopens it.
        self.handles.release();
    }
}

/// The reflector's hold on the store, released synchronously on drop.
struct Handles {
    store: Mutex<Option<AnyStore>>,
    watch: Mutex<Option<WatchStream>>,
}

impl Handles {
    fn store(&self) -> Option<AnyStore> {
        self.store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_watch(&self, events: WatchStream) {
        *self.watch.lock().unwrap_or_else(PoisonError::into_inner) = Some(events);
    }

    /// The next store event; `None` once released.
    fn poll_event(&self, cx: &mut Context<'_>) -> Poll<Option<Result<WatchEvent, StoreError>>> {
        let mut watch = self.watch.lock().unwrap_or_else(PoisonError::into_inner);
        match watch.as_mut() {
            Some(events) => events.poll_next_unpin(cx),
            None => Poll::Ready(None),
        }
    }

    fn release(&self) {
        let store = self
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let watch = self
            .watch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop((store, watch));
    }
}

/// The shared cache: its state under a short lock and its progress.
#[derive(Debug)]
pub(crate) struct Cache {
    state: Mutex<CacheState>,
    /// The applied revision (0 while not listed), for requests waiting
    /// for freshness.
    progress: watch::Sender<Revision>,
    /// Objects the registry is writing, by key, for the reflector to
    /// take when their event comes instead of decoding the stored bytes.
    expected: Mutex<HashMap<String, Expected>>,
}

/// A write announced by the registry before it reached the store.
#[derive(Debug)]
struct Expected {
    written: Written,
    since: Instant,
}

/// Most writes announced at once. Past this, announcements older than
/// [`EXPECTED_TTL`] (writes whose outcome their request never saw) are
/// dropped, and new ones refused while none is that old: the reflector
/// then decodes, as it does for every write it was not told of.
const MAX_EXPECTED: usize = 4096;
const EXPECTED_TTL: Duration = Duration::from_secs(10);

impl Cache {
    fn new(config: CacheConfig) -> Cache {
        Cache {
            expected: Mutex::default(),
            state: Mutex::new(CacheState::new(config)),
            progress: watch::Sender::new(0),
        }
    }

    /// The state, locked. Hold it briefly: the reflector waits on it.
    pub fn lock(&self) -> MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The revision every change up to which is applied (0: not listed).
    pub fn revision(&self) -> Revision {
        *self.progress.borrow()
    }

    /// Waits up to `timeout` until the cache has applied revision `rev`.
    pub async fn wait_for(&self, rev: Revision, timeout: Duration) -> bool {
        let mut rx = self.progress.subscribe();
        let reached = rx.wait_for(|r| *r > 0 && *r >= rev);
        matches!(tokio::time::timeout(timeout, reached).await, Ok(Ok(_)))
    }

    fn publish(&self, state: &CacheState) {
        self.progress.send_replace(state.revision());
    }

    fn expected(&self) -> MutexGuard<'_, HashMap<String, Expected>> {
        self.expected.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Announces that `written` is being stored at `key`, before the write
    /// is sent, so its event cannot come first. Call [`Self::unexpect`]
    /// when the write fails.
    pub fn expect(&self, key: &str, written: Written) {
        let now = Instant::now();
        let mut expected = self.expected();
        if expected.len() >= MAX_EXPECTED {
            expected.retain(|_, e| now.duration_since(e.since) < EXPECTED_TTL);
            if expected.len() >= MAX_EXPECTED {
                return;
            }
        }
        expected.insert(
            key.to_owned(),
            Expected {
                written,
                since: now,
            },
        );
    }

    /// Withdraws the announcement of `stored` at `key` (its write failed),
    /// if there is one; another write's announcement of the key stays.
    pub fn unexpect(&self, key: &str, stored: &Bytes) {
        let mut expected = self.expected();
        if expected
            .get(key)
            .is_some_and(|e| same_bytes(&e.written.stored, stored))
        {
            expected.remove(key);
        }
    }

    /// The cached object for a put of `value` at `key` and `rev`, when it
    /// is the write announced for the key (the same bytes); otherwise an
    /// announcement of the key is left for its own event.
    fn take_expected(&self, key: &str, value: &Bytes, rev: Revision) -> Option<CachedObject> {
        let mut expected = self.expected();
        if !expected
            .get(key)
            .is_some_and(|e| same_bytes(&e.written.stored, value))
        {
            return None;
        }
        let e = expected.remove(key)?;
        drop(expected);
        e.written.at(rev)
    }

    /// Forgets every announcement: after a relist the events of those
    /// writes that landed were skipped.
    fn clear_expected(&self) {
        self.expected().clear();
    }
}

/// The same bytes: one buffer shared (the embedded store hands the
/// written `Bytes` to its watchers), or equal contents.
fn same_bytes(a: &Bytes, b: &Bytes) -> bool {
    (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a == b
}

/// Lists and watches the store forever (until the store closes), keeping
/// `cache` current.
#[tracing::instrument(skip_all)]
async fn reflect(handles: Arc<Handles>, cache: Arc<Cache>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let err = match handles.store() {
            None => StoreError::Closed,
            Some(store) => match relist(&store, &cache).await {
                Ok(rev) => {
                    backoff = Duration::from_millis(100);
                    match store.watch(ROOT, rev).await {
                        Ok(events) => {
                            drop(store);
                            handles.set_watch(events);
                            follow(&handles, &cache).await
                        }
                        Err(e) => e,
                    }
                }
                Err(e) => e,
            },
        };
        if matches!(err, StoreError::Closed) {
            tracing::debug!("store closed; the watch cache stops");
            // Serve nothing stale: requests go to the store from now on.
            let mut state = cache.lock();
            state.reset();
            cache.publish(&state);
            return;
        }
        tracing::warn!(error = %err, "watch cache lost its store watch; relisting");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Reads everything under [`ROOT`] at one revision into the cache.
async fn relist(store: &AnyStore, cache: &Cache) -> Result<Revision, StoreError> {
    {
        let mut state = cache.lock();
        state.reset();
        cache.publish(&state);
    }
    let mut opts = ListOptions {
        limit: RELIST_PAGE,
        ..ListOptions::default()
    };
    let mut objects = Vec::new();
    loop {
        let page = store.list(ROOT, opts.clone()).await?;
        for kv in &page.kvs {
            if let Some(obj) = decode(&kv.key, &kv.value, kv.mod_revision) {
                objects.push((kv.key.clone(), obj));
            }
        }
        opts.revision = page.revision;
        match page.continue_after() {
            Some(after) => opts.continue_after = Some(after.to_owned()),
            None => break,
        }
    }
    let rev = opts.revision;
    cache.clear_expected();
    let mut state = cache.lock();
    state.replace(rev, objects);
    cache.publish(&state);
    let stats = state.stats();
    tracing::debug!(
        revision = rev,
        objects = stats.objects,
        "watch cache listed the store"
    );
    Ok(rev)
}

/// Applies the store's changes until its watch fails or is released.
async fn follow(handles: &Handles, cache: &Cache) -> StoreError {
    while let Some(item) = std::future::poll_fn(|cx| handles.poll_event(cx)).await {
        let ev = match item {
            Ok(ev) => ev,
            Err(e) => return e,
        };
        let rev = ev.revision();
        let prepared = match ev.kind {
            EventKind::Put => cache.take_expected(&ev.kv.key, &ev.kv.value, rev),
            EventKind::Delete => None,
        };
        let change = match ev.kind {
            EventKind::Put => match prepared.or_else(|| decode(&ev.kv.key, &ev.kv.value, rev)) {
                Some(obj) => Change::Put {
                    key: ev.kv.key,
                    rev,
                    obj,
                },
                // Not an object the cache holds: the revision still counts.
                None => Change::Delete {
                    key: ev.kv.key,
                    rev,
                },
            },
            EventKind::Delete => Change::Delete {
                key: ev.kv.key,
                rev,
            },
        };
        let mut state = cache.lock();
        state.apply(change);
        cache.publish(&state);
    }
    StoreError::Closed
}

/// A stored object as the cache keeps it, or `None` when the key is not
/// one the cache holds, or (logged) the value is not a JSON object or the
/// key no resource's.
fn decode(key: &str, value: &[u8], rev: Revision) -> Option<CachedObject> {
    if !key.starts_with(ROOT) || key.starts_with("/registry/allocations/") || !holds_key(key) {
        return None;
    }
    let obj = CachedObject::from_store(key, value, rev);
    if obj.is_none() {
        tracing::warn!(
            key,
            "stored value is not an object of a served resource; left out of the watch cache"
        );
    }
    obj
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod expected_tests {
    use serde_json::json;
    use skiff_api::resources::by_gvr;

    use super::*;

    const KEY: &str = "/registry/pods/ns/p";

    fn written(name: &str) -> (Bytes, Written) {
        let obj = json!({"metadata": {"name": name, "namespace": "ns", "labels": {"n": name}}});
        let stored = Bytes::from(serde_json::to_vec(&obj).unwrap());
        (stored.clone(), Written::new(KEY, stored, &obj).unwrap())
    }

    #[test]
    fn an_announced_write_is_taken_by_its_own_event_only() {
        assert!(
            by_gvr("", "v1", "pods")
                .unwrap()
                .storage_prefix
                .starts_with("/registry/pods/")
        );
        let cache = Cache::new(CacheConfig::default());
        let (a, wa) = written("a");
        cache.expect(KEY, wa);
        // Another write of the key (other bytes) leaves it; its own takes it,
        // once, with the event's revision.
        let (b, _) = written("b");
        assert!(cache.take_expected(KEY, &b, 4).is_none());
        let obj = cache.take_expected(KEY, &a, 5).unwrap();
        let text = std::str::from_utf8(&obj.json).unwrap();
        assert!(text.contains(r#""resourceVersion":"5""#) && text.contains(r#""name":"a""#));
        assert!(cache.take_expected(KEY, &a, 5).is_none());
        // Equal contents in another buffer (a remote store) match too.
        let (_, wa) = written("a");
        cache.expect(KEY, wa);
        assert!(
            cache
                .take_expected(KEY, &Bytes::from(a.to_vec()), 6)
                .is_some()
        );
    }

    #[test]
    fn failed_writes_and_relists_withdraw_announcements() {
        let cache = Cache::new(CacheConfig::default());
        let (a, wa) = written("a");
        let (b, wb) = written("b");
        cache.expect(KEY, wa);
        // A newer announcement of the key replaced it: a's failure leaves b's.
        cache.expect(KEY, wb);
        cache.unexpect(KEY, &a);
        assert_eq!(cache.expected().len(), 1);
        cache.unexpect(KEY, &b);
        assert!(cache.expected().is_empty());
        let (_, wa) = written("a");
        cache.expect(KEY, wa);
        cache.clear_expected();
        assert!(cache.take_expected(KEY, &a, 9).is_none());
    }

    #[test]
    fn the_reflector_decodes_no_event() {
        let value = |kind: &str| {
            serde_json::to_vec(&json!({"apiVersion": "v1", "kind": kind,
                "metadata": {"name": "x", "namespace": "ns"}}))
            .unwrap()
        };
        assert!(decode("/registry/configmaps/ns/x", &value("ConfigMap"), 3).is_some());
        assert!(decode("/registry/events/ns/x", &value("Event"), 3).is_none());
    }

    #[test]
    fn announcements_are_bounded() {
        let cache = Cache::new(CacheConfig::default());
        for i in 0..MAX_EXPECTED + 10 {
            let (_, w) = written("x");
            cache.expect(&format!("/registry/pods/ns/p{i}"), w);
        }
        assert_eq!(cache.expected().len(), MAX_EXPECTED);
    }
}
