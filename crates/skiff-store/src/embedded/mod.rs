//! The embedded backend (being written).
use bytes::Bytes;

use crate::{DeleteResponse, KeyValue, ListOptions, ListResponse, Result, Revision, Store, StoreError, WatchStream};

/// How to reach etcd.
#[derive(Clone, Debug, Default)]
pub struct EmbeddedConfig {
    /// The directory holding the database.
    pub dir: std::path::PathBuf,
}

/// A [`Store`] in a local data directory.
#[derive(Clone, Debug)]
pub struct EmbeddedStore {}

fn todo<T>() -> Result<T> {
    Err(StoreError::Io("embedded backend not implemented yet".into()))
}

impl Store for EmbeddedStore {
    async fn get(&self, _key: &str) -> Result<Option<KeyValue>> { todo() }
    async fn list(&self, _prefix: &str, _opts: ListOptions) -> Result<ListResponse> { todo() }
    async fn count(&self, _prefix: &str) -> Result<i64> { todo() }
    async fn create(&self, _key: &str, _value: Bytes) -> Result<KeyValue> { todo() }
    async fn update(&self, _key: &str, _value: Bytes, _expected: Revision) -> Result<KeyValue> { todo() }
    async fn delete(&self, _key: &str, _expected: Revision) -> Result<DeleteResponse> { todo() }
    async fn watch(&self, _prefix: &str, _after: Revision) -> Result<WatchStream> { todo() }
    async fn compact(&self, _revision: Revision) -> Result<()> { todo() }
    async fn current_revision(&self) -> Result<Revision> { todo() }
}
