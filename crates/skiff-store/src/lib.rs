//! Skiff's storage layer: etcd's v3 data model behind one trait.
//!
//! Every write gets the next global revision; each key carries its create
//! revision, mod revision and version, exactly as in etcd, so the API server's
//! `metadata.resourceVersion` is the object's mod revision whichever backend
//! is in use.
//!
//! Two backends implement [`Store`]:
//! - [`EmbeddedStore`] (the default): a durable store in the server's data
//!   directory, built on [redb](https://docs.rs/redb). See the
//!   [`embedded`] module for why that engine and how it is laid out.
//! - [`EtcdStore`]: a real etcd cluster through the `etcd-client` crate, every
//!   operation mapped 1:1 onto an etcd request.
//!
//! [`AnyStore`] picks one at run time (`--datastore-endpoint`) without boxing.

pub mod embedded;
pub mod etcd;
mod validate;

use std::future::Future;
use std::path::Path;

use bytes::Bytes;
use futures::stream::BoxStream;

pub use embedded::{EmbeddedConfig, EmbeddedStats, EmbeddedStore};
pub use etcd::{EtcdConfig, EtcdStore};
pub use validate::{MAX_KEY_BYTES, MAX_VALUE_BYTES, validate_key, validate_prefix, validate_value};

/// A global store revision, as in etcd (`int64`, starting at 1 for the first write).
pub type Revision = i64;

/// One key at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The key, e.g. `/registry/pods/default/web-0`.
    pub key: String,
    /// The stored bytes (the object's JSON for the API server).
    pub value: Bytes,
    /// Revision of the write that created this key (in its current life).
    pub create_revision: Revision,
    /// Revision of the last write to this key.
    pub mod_revision: Revision,
    /// Number of writes to this key since it was created (1 after create).
    pub version: i64,
}

/// What `list` should return.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Serve the list at this revision; 0 (or less) means the current revision.
    pub revision: Revision,
    /// Return at most this many keys; 0 means no limit.
    pub limit: u64,
    /// Start after this key (exclusive): the last key of the previous page.
    pub continue_after: Option<String>,
}

/// One page of a `list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListResponse {
    /// Keys in ascending byte order.
    pub kvs: Vec<KeyValue>,
    /// The revision the list was served at; pass it back to read further pages
    /// consistently.
    pub revision: Revision,
    /// How many matching keys follow this page (0 when this is the last page).
    pub remaining: u64,
}

impl ListResponse {
    /// True when more keys follow this page.
    pub fn more(&self) -> bool {
        self.remaining > 0
    }

    /// The `continue_after` for the next page, if there is one.
    pub fn continue_after(&self) -> Option<&str> {
        if self.more() {
            self.kvs.last().map(|kv| kv.key.as_str())
        } else {
            None
        }
    }
}

/// The outcome of a successful delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteResponse {
    /// The revision of the delete itself.
    pub revision: Revision,
    /// The key as it was just before the delete.
    pub prev: KeyValue,
}

/// Whether a watch event wrote or removed its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A create or an update.
    Put,
    /// A delete.
    Delete,
}

/// One change delivered by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    /// Put or delete.
    pub kind: EventKind,
    /// For a put, the key as written. For a delete, the key with an empty
    /// value, `mod_revision` = the delete's revision and create revision and
    /// version 0 (etcd's tombstone).
    pub kv: KeyValue,
    /// The key as it was before this event: present for every update and
    /// delete, absent for a create.
    pub prev: Option<KeyValue>,
}

impl WatchEvent {
    /// The revision at which this change happened.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// A stream of changes in revision order. It ends with an error (for example
/// [`StoreError::Compacted`] when the watcher fell behind compaction) or when
/// the store shuts down.
pub type WatchStream = BoxStream<'static, Result<WatchEvent, StoreError>>;

/// Errors from a [`Store`]. The API server maps each onto one `metav1.Status`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `create` of a key that exists.
    #[error("key {key:?} already exists")]
    AlreadyExists { key: String },
    /// `update` or `delete` of a key that does not exist.
    #[error("key {key:?} not found")]
    NotFound { key: String },
    /// The compare-and-swap failed: the key's mod revision is not the one
    /// expected. `current` is the key as it is now, so callers can retry.
    #[error("conflict on key {key:?}: expected mod revision {expected}, found {}", current.mod_revision)]
    Conflict {
        key: String,
        expected: Revision,
        current: Box<KeyValue>,
    },
    /// The requested revision is older than the compacted revision.
    #[error("required revision {requested} has been compacted (compacted revision is {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// The requested revision has not been written yet.
    #[error("required revision {requested} is a future revision (current revision is {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    /// The value exceeds [`MAX_VALUE_BYTES`] (etcd's request limit).
    #[error("value of {size} bytes exceeds the limit of {limit} bytes")]
    ValueTooLarge { size: usize, limit: usize },
    /// The key or prefix is not acceptable.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    /// The store cannot be reached right now; the operation may be retried.
    /// A write that fails this way may or may not have been applied.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A storage error (I/O, disk full, a failed commit). The operation was
    /// not acknowledged and its effects are not visible.
    #[error("storage error: {0}")]
    Io(String),
    /// The data directory or database is not a usable Skiff store.
    #[error("cannot open store: {0}")]
    Open(String),
    /// The store was shut down.
    #[error("store is closed")]
    Closed,
}

impl StoreError {
    /// True for [`StoreError::Compacted`].
    pub fn is_compacted(&self) -> bool {
        matches!(self, StoreError::Compacted { .. })
    }
}

/// Result alias for store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// etcd's v3 model: the storage contract of `ARCHITECTURE.md`.
///
/// Every method is cancel-safe in the sense that dropping a write's future
/// never corrupts the store; the write may or may not have been applied.
pub trait Store: Send + Sync + 'static {
    /// The key at the current revision, or `None`.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<KeyValue>>> + Send;

    /// Keys under `prefix` at one revision, in key order, paged.
    fn list(
        &self,
        prefix: &str,
        opts: ListOptions,
    ) -> impl Future<Output = Result<ListResponse>> + Send;

    /// Number of keys under `prefix` at the current revision.
    fn count(&self, prefix: &str) -> impl Future<Output = Result<i64>> + Send;

    /// Creates `key`; fails with [`StoreError::AlreadyExists`] if present.
    fn create(&self, key: &str, value: Bytes) -> impl Future<Output = Result<KeyValue>> + Send;

    /// Replaces `key`'s value if its mod revision is `expected`.
    fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
    ) -> impl Future<Output = Result<KeyValue>> + Send;

    /// Deletes `key` if its mod revision is `expected`.
    fn delete(
        &self,
        key: &str,
        expected: Revision,
    ) -> impl Future<Output = Result<DeleteResponse>> + Send;

    /// Every change under `prefix` after revision `after` (exclusive), in
    /// order. `after` = 0 (or less) means "from now on". Fails with
    /// [`StoreError::Compacted`] when the events after `after` are gone.
    fn watch(
        &self,
        prefix: &str,
        after: Revision,
    ) -> impl Future<Output = Result<WatchStream>> + Send;

    /// Discards history before `revision`: reads at older revisions and
    /// watches from older revisions fail with [`StoreError::Compacted`].
    fn compact(&self, revision: Revision) -> impl Future<Output = Result<()>> + Send;

    /// The revision of the last write.
    fn current_revision(&self) -> impl Future<Output = Result<Revision>> + Send;
}

/// A store chosen at run time: embedded or etcd, optionally timed by a
/// [`StoreObserver`].
#[derive(Clone, Debug)]
pub enum AnyStore {
    /// The embedded backend.
    Embedded(EmbeddedStore),
    /// The etcd backend.
    Etcd(EtcdStore),
    /// One of the backends above with every `get`, `list`, `count`,
    /// `create`, `update` and `delete` timed (see [`AnyStore::observed`]).
    Observed(ObservedStore),
}

/// The storage operations an observer is told about, named as upstream's
/// `etcd_request_duration_seconds` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// [`Store::get`].
    Get,
    /// [`Store::list`].
    List,
    /// [`Store::count`].
    Count,
    /// [`Store::create`].
    Create,
    /// [`Store::update`].
    Update,
    /// [`Store::delete`].
    Delete,
}

impl Operation {
    /// The lower-case name (`get`, `list`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Get => "get",
            Operation::List => "list",
            Operation::Count => "count",
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Delete => "delete",
        }
    }
}

/// Told how long each storage operation took (for latency metrics).
///
/// Called on the request path after every timed operation, failed or not:
/// keep it cheap and never block.
pub trait StoreObserver: Send + Sync + 'static {
    /// `operation` on `key` (or prefix, for `list` and `count`) took
    /// `elapsed`; `ok` is false when it failed.
    fn observe(&self, operation: Operation, key: &str, elapsed: std::time::Duration, ok: bool);
}

/// A backend whose operations are timed by a [`StoreObserver`].
#[derive(Clone)]
pub struct ObservedStore {
    backend: Backend,
    observer: std::sync::Arc<dyn StoreObserver>,
}

impl std::fmt::Debug for ObservedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservedStore")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// The backend under an [`ObservedStore`] (never itself observed, so
/// dispatch needs no recursion and no boxing).
#[derive(Clone, Debug)]
enum Backend {
    Embedded(EmbeddedStore),
    Etcd(EtcdStore),
}

impl AnyStore {
    /// Releases the store: for the embedded backend, waits for queued writes
    /// and frees the data directory for the next open (see
    /// [`EmbeddedStore::close`]); the etcd backend just drops its connections.
    pub async fn close(self) {
        match self {
            AnyStore::Embedded(s) => s.close().await,
            AnyStore::Etcd(_) => {}
            AnyStore::Observed(o) => match o.backend {
                Backend::Embedded(s) => s.close().await,
                Backend::Etcd(_) => {}
            },
        }
    }

    /// This store with every `get`, `list`, `count`, `create`, `update` and
    /// `delete` reported to `observer` (replacing any earlier observer).
    /// A store without an observer pays nothing for the feature.
    pub fn observed(self, observer: std::sync::Arc<dyn StoreObserver>) -> AnyStore {
        let backend = match self {
            AnyStore::Embedded(s) => Backend::Embedded(s),
            AnyStore::Etcd(s) => Backend::Etcd(s),
            AnyStore::Observed(o) => o.backend,
        };
        AnyStore::Observed(ObservedStore { backend, observer })
    }

    /// Opens the store `skiff server` was pointed at: with no endpoints, the
    /// embedded store in `DATA_DIR/db`; else the etcd cluster at the given
    /// `http://host:port` client URLs (`--datastore-endpoint`).
    pub async fn open(endpoints: &[String], data_dir: &Path) -> Result<AnyStore> {
        if endpoints.is_empty() {
            let config = EmbeddedConfig::new(data_dir.join("db"));
            let store = tokio::task::spawn_blocking(move || EmbeddedStore::open(config))
                .await
                .map_err(|e| {
                    StoreError::Open(format!("opening the embedded store failed: {e}"))
                })??;
            return Ok(AnyStore::Embedded(store));
        }
        for endpoint in endpoints {
            if endpoint.starts_with("https://") {
                return Err(StoreError::Open(format!(
                    "datastore endpoint {endpoint:?}: TLS to etcd is not supported yet; use http://"
                )));
            }
            if !endpoint.starts_with("http://") {
                return Err(StoreError::Open(format!(
                    "datastore endpoint {endpoint:?} is not an etcd client URL (http://host:port)"
                )));
            }
        }
        Ok(AnyStore::Etcd(
            EtcdStore::connect(EtcdConfig::new(endpoints.iter().cloned())).await?,
        ))
    }
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Embedded($s) => $e.await,
            AnyStore::Etcd($s) => $e.await,
            AnyStore::Observed(o) => match &o.backend {
                Backend::Embedded($s) => $e.await,
                Backend::Etcd($s) => $e.await,
            },
        }
    };
    // Timed: the observer hears of the operation on `$key`.
    ($self:ident, $op:expr, $key:expr, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Embedded($s) => $e.await,
            AnyStore::Etcd($s) => $e.await,
            AnyStore::Observed(o) => {
                let start = std::time::Instant::now();
                let result = match &o.backend {
                    Backend::Embedded($s) => $e.await,
                    Backend::Etcd($s) => $e.await,
                };
                o.observer
                    .observe($op, $key, start.elapsed(), result.is_ok());
                result
            }
        }
    };
}

impl Store for AnyStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        dispatch!(self, Operation::Get, key, s => s.get(key))
    }
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResponse> {
        dispatch!(self, Operation::List, prefix, s => s.list(prefix, opts))
    }
    async fn count(&self, prefix: &str) -> Result<i64> {
        dispatch!(self, Operation::Count, prefix, s => s.count(prefix))
    }
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        dispatch!(self, Operation::Create, key, s => s.create(key, value))
    }
    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue> {
        dispatch!(self, Operation::Update, key, s => s.update(key, value, expected))
    }
    async fn delete(&self, key: &str, expected: Revision) -> Result<DeleteResponse> {
        dispatch!(self, Operation::Delete, key, s => s.delete(key, expected))
    }
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        dispatch!(self, s => s.watch(prefix, after))
    }
    async fn compact(&self, revision: Revision) -> Result<()> {
        dispatch!(self, s => s.compact(revision))
    }
    async fn current_revision(&self) -> Result<Revision> {
        dispatch!(self, s => s.current_revision())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod observer_tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(Operation, String, bool)>>);

    impl StoreObserver for Recorder {
        fn observe(&self, operation: Operation, key: &str, _elapsed: Duration, ok: bool) {
            self.0.lock().unwrap().push((operation, key.to_owned(), ok));
        }
    }

    #[tokio::test]
    async fn observer_hears_every_timed_operation() {
        let tmp = tempfile::tempdir().unwrap();
        let recorder = Arc::new(Recorder::default());
        let store = AnyStore::open(&[], tmp.path())
            .await
            .unwrap()
            .observed(recorder.clone());
        let kv = store
            .create("/registry/pods/a/b", "1".into())
            .await
            .unwrap();
        assert!(
            store
                .create("/registry/pods/a/b", "1".into())
                .await
                .is_err()
        );
        store.get("/registry/pods/a/b").await.unwrap();
        store
            .list("/registry/pods/", ListOptions::default())
            .await
            .unwrap();
        store.count("/registry/pods/").await.unwrap();
        let kv = store
            .update("/registry/pods/a/b", "2".into(), kv.mod_revision)
            .await
            .unwrap();
        store
            .delete("/registry/pods/a/b", kv.mod_revision)
            .await
            .unwrap();
        // Untimed operations stay silent.
        store.current_revision().await.unwrap();
        let seen = recorder.0.lock().unwrap().clone();
        let key = "/registry/pods/a/b".to_owned();
        let prefix = "/registry/pods/".to_owned();
        assert_eq!(
            seen,
            vec![
                (Operation::Create, key.clone(), true),
                (Operation::Create, key.clone(), false),
                (Operation::Get, key.clone(), true),
                (Operation::List, prefix.clone(), true),
                (Operation::Count, prefix, true),
                (Operation::Update, key.clone(), true),
                (Operation::Delete, key, true),
            ]
        );
        store.close().await;
    }
}
