//! The etcd backend (being written).
use bytes::Bytes;

use crate::{DeleteResponse, KeyValue, ListOptions, ListResponse, Result, Revision, Store, StoreError, WatchStream};

/// How to reach etcd.
#[derive(Clone, Debug, Default)]
pub struct EtcdConfig {
    /// Client URLs, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
}

/// A [`Store`] on a real etcd cluster.
#[derive(Clone, Debug)]
pub struct EtcdStore {}

fn todo<T>() -> Result<T> {
    Err(StoreError::Io("etcd backend not implemented yet".into()))
}

impl Store for EtcdStore {
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
