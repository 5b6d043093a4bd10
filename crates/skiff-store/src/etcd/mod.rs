//! The etcd backend: every [`Store`] operation is one etcd v3 request.
//!
//! Connect with [`EtcdStore::connect`] and an [`EtcdConfig`] naming the
//! cluster's client URLs (`--datastore-endpoint`).
//!
//! | operation | etcd request |
//! |---|---|
//! | `get(k)` | `Range(k)` |
//! | `list(p, opts)` | `Range([max(p, continue_after + "\0"), prefix_end(p)), revision, limit)`; `remaining` = the response's `count` (every key in that range) minus the keys returned |
//! | `count(p)` | `Range([p, prefix_end(p)), count_only)` |
//! | `create(k, v)` | `Txn(if create_revision(k) == 0 then Put(k, v))`; a failed compare is `AlreadyExists` |
//! | `update(k, v, r)` | `Txn(if mod_revision(k) == r && version(k) > 0 then Put(k, v, prev_kv) else Range(k))`; the else branch tells `NotFound` from `Conflict` |
//! | `delete(k, r)` | `Txn(if mod_revision(k) == r && version(k) > 0 then DeleteRange(k, prev_kv) else Range(k))` |
//! | `watch(p, after)` | `Watch([p, prefix_end(p)), start_revision = after + 1, prev_kv)`, reopened from the last delivered revision + 1 whenever the stream breaks |
//! | `compact(r)` | `Compact(r, physical)` |
//! | `current_revision()` | the header revision of `Range("/", count_only)` |
//!
//! Details that matter:
//! - Every read is linearizable (etcd's default), and every request carries
//!   etcd's "require leader" flag, so a member cut off from its cluster fails
//!   fast (`Unavailable`) instead of serving stale data or stalling watches.
//! - `version(k) > 0` in `update`/`delete`: without it, `expected = 0` on an
//!   absent key would pass the `mod_revision` compare (an absent key's mod
//!   revision is 0) and create the key.
//! - `watch(p, 0)` first reads the current revision (linearizably) and then
//!   watches from the one after; the etcd watch is open when `watch` returns,
//!   so "from now on" is fixed then, not when the stream is first polled. See
//!   the `watch` submodule for how a watch survives connection loss.
//! - etcd reports compaction without the compacted revision. On that error
//!   path the backend asks for it by opening a throw-away watch at a revision
//!   known to be compacted: etcd cancels it with `compact_revision` set (within
//!   its 100 ms watcher sync period). If that fails, the smallest revision
//!   consistent with the error is reported.
//! - Boundaries: after `compact(r)`, reads at `r` still work and reads below
//!   `r` fail, as in etcd. A watch with `after >= r` works and one with
//!   `after < r - 1` fails (etcd refuses to start it). etcd does start a
//!   watch with `after = r - 1`, but leaves out the previous value of the
//!   update or delete at `r` (it is compacted); the backend turns that into
//!   [`StoreError::Compacted`] as the contract (and the embedded backend)
//!   says, except that a create at `r`, which has no previous value, is
//!   still delivered. Compacting at or below the compacted revision again
//!   fails with [`StoreError::Compacted`], as in etcd.
//! - Retries: a request that never left (no connection to the endpoint the
//!   client balanced it to, e.g. a dead member) is sent again at once, reads
//!   also after other failures of unknown outcome; writes are not, as they
//!   may have been applied. All within [`EtcdConfig::request_timeout`].
//! - etcd refuses requests larger than its `--max-request-bytes` (default
//!   1.5 MiB, the same number as [`crate::MAX_VALUE_BYTES`]); a write carries the
//!   key and some framing besides the value, so a value just under the limit is
//!   refused by a default etcd with "request is too large", reported as
//!   [`StoreError::ValueTooLarge`]. Run etcd with
//!   `--max-request-bytes=1581056` (1.5 MiB + 8 KiB) to accept every value
//!   [`crate::validate_value`] accepts.
//! - Errors: see the `error` submodule for which etcd failures become
//!   [`StoreError::Unavailable`] (outcome unknown, retry) and which
//!   [`StoreError::Io`] (refused, nothing applied).

mod error;
mod watch;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use etcd_client::proto::{
    PbKeyValue, PbRangeResponse, PbResponseHeader, PbTxnOpResponse, PbTxnResponse,
};
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions,
    KvClient, PutOptions, Txn, TxnOp, WatchClient,
};
use tracing::{debug, instrument};

use crate::{
    DeleteResponse, KeyValue, ListOptions, ListResponse, MAX_VALUE_BYTES, Result, Revision, Store,
    StoreError, WatchStream, validate_key, validate_prefix, validate_value,
};
use error::{Failure, classify, malformed, timed_out};

/// The largest response accepted from etcd. A page of a `list` can hold many
/// values of up to 1.5 MiB each; etcd itself sends up to `i32::MAX` bytes
/// (as the Kubernetes API server's client accepts).
const MAX_RESPONSE_BYTES: usize = i32::MAX as usize;

/// Attempts per request (see [`EtcdStore::request`]).
const MAX_ATTEMPTS: u32 = 8;
/// The pause before replaying a read, times the attempt number.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// How long to wait for the compacted revision on a `Compacted` error path.
const COMPACTED_LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);

/// How to reach etcd.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    /// Client URLs, e.g. `http://127.0.0.1:2379` (plain HTTP only for now).
    /// Requests are balanced over all of them.
    pub endpoints: Vec<String>,
    /// Limit on establishing one connection to one endpoint.
    pub connect_timeout: Duration,
    /// Limit on one request (everything but `compact` and watch streams),
    /// including waiting for a connection. A write that hits it fails with
    /// [`StoreError::Unavailable`]: it may or may not have been applied.
    pub request_timeout: Duration,
    /// Limit on `compact`, which waits until etcd has physically removed the
    /// old revisions.
    pub compact_timeout: Duration,
    /// HTTP/2 keep-alive ping interval while requests or watches are open;
    /// detects dead connections (etcd permits pings every 5 s or slower).
    pub keep_alive_interval: Duration,
    /// How long a keep-alive ping may go unanswered before the connection
    /// is considered dead.
    pub keep_alive_timeout: Duration,
    /// How long a watch keeps trying to reopen its etcd watch after the
    /// connection is lost before it ends with [`StoreError::Unavailable`].
    pub watch_retry_timeout: Duration,
}

impl EtcdConfig {
    /// A configuration for these client URLs with the default timeouts.
    pub fn new<I, S>(endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        EtcdConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            ..EtcdConfig::default()
        }
    }
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            compact_timeout: Duration::from_secs(60),
            keep_alive_interval: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(5),
            watch_retry_timeout: Duration::from_secs(60),
        }
    }
}

/// A [`Store`] on a real etcd cluster. Cheap to clone: clones share the
/// connections.
#[derive(Clone)]
pub struct EtcdStore {
    inner: Arc<Inner>,
}

struct Inner {
    kv: KvClient,
    watch: WatchClient,
    config: EtcdConfig,
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.inner.config.endpoints)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects to etcd and checks that it answers (one linearizable read),
    /// so a wrong or unreachable endpoint is reported here.
    ///
    /// Fails with [`StoreError::Open`] for an unusable configuration and
    /// [`StoreError::Unavailable`] when etcd does not answer.
    #[instrument(skip_all, fields(endpoints = ?config.endpoints))]
    pub async fn connect(config: EtcdConfig) -> Result<EtcdStore> {
        if config.endpoints.is_empty() {
            return Err(StoreError::Open("no etcd endpoints given".into()));
        }
        let options = ConnectOptions::new()
            .with_connect_timeout(config.connect_timeout)
            .with_keep_alive(config.keep_alive_interval, config.keep_alive_timeout)
            // etcd sends GOAWAY ("too many pings") to clients that ping while
            // no stream is open.
            .with_keep_alive_while_idle(false)
            .with_require_leader(true);
        let client = Client::connect(&config.endpoints, Some(options))
            .await
            .map_err(|e| match classify(e) {
                Failure::Other(StoreError::Io(msg)) => StoreError::Open(msg),
                other => other.into_store_error(),
            })?;
        let store = EtcdStore {
            inner: Arc::new(Inner {
                kv: client
                    .kv_client()
                    .max_decoding_message_size(MAX_RESPONSE_BYTES),
                watch: client
                    .watch_client()
                    .max_decoding_message_size(MAX_RESPONSE_BYTES),
                config,
            }),
        };
        store.current_revision().await?;
        Ok(store)
    }

    /// The configuration this store was connected with.
    pub fn config(&self) -> &EtcdConfig {
        &self.inner.config
    }

    /// Sends one etcd request, built afresh by `send` for each attempt, and
    /// gives up after `limit` in all.
    ///
    /// A request that never left (no connection to the endpoint the balancer
    /// picked) is sent again at once: another endpoint may take it. A
    /// `replayable` request (a read) is also sent again after any failure of
    /// unknown outcome, after a short pause (a leader election, a member that
    /// just died). Writes are not: whether they were applied is unknown, and
    /// that is the caller's to resolve.
    async fn request<T, F, Fut>(
        &self,
        what: &'static str,
        limit: Duration,
        replayable: bool,
        mut send: F,
    ) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let now = tokio::time::Instant::now();
        // A configured limit too large to add means "no limit" (a year).
        let deadline = now
            .checked_add(limit)
            .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600));
        let mut attempt = 1;
        loop {
            let failure = match tokio::time::timeout_at(deadline, send()).await {
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(e)) => classify(e),
                Err(_) => return Err(Failure::Other(timed_out(what, limit))),
            };
            let pause = match &failure {
                Failure::NotSent(_) => Duration::ZERO,
                Failure::Other(StoreError::Unavailable(_)) if replayable => RETRY_PAUSE * attempt,
                _ => return Err(failure),
            };
            if attempt >= MAX_ATTEMPTS {
                return Err(failure);
            }
            debug!(what, attempt, ?failure, "retrying etcd request");
            attempt += 1;
            if !pause.is_zero() {
                tokio::time::sleep_until((tokio::time::Instant::now() + pause).min(deadline)).await;
            }
        }
    }

    async fn range(&self, key: Vec<u8>, options: GetOptions) -> Result<PbRangeResponse, Failure> {
        let response = self
            .request("range", self.inner.config.request_timeout, true, || {
                let mut kv = self.inner.kv.clone();
                let (key, options) = (key.clone(), options.clone());
                async move { kv.get(key, Some(options)).await }
            })
            .await?;
        Ok(response.0)
    }

    /// Sends the transaction `build` makes (once per attempt, so the value is
    /// copied into a request only as often as one is sent).
    async fn txn(&self, build: impl Fn() -> Txn) -> Result<PbTxnResponse, Failure> {
        let response = self
            .request("txn", self.inner.config.request_timeout, false, || {
                let mut kv = self.inner.kv.clone();
                let txn = build();
                async move { kv.txn(txn).await }
            })
            .await?;
        Ok(response.0)
    }

    /// The error for a request at `requested`, which etcd says is compacted.
    /// `probe` is a revision known to be compacted (below the compacted
    /// revision), if there is one; `at_least` the smallest compacted revision
    /// consistent with the error.
    async fn compacted(
        &self,
        requested: Revision,
        probe: Option<Revision>,
        at_least: Revision,
    ) -> StoreError {
        let found = match probe {
            Some(probe) => {
                watch::compacted_revision(self.inner.watch.clone(), probe, COMPACTED_LOOKUP_TIMEOUT)
                    .await
            }
            None => None,
        };
        StoreError::Compacted {
            requested,
            compacted: found.unwrap_or(at_least).max(at_least),
        }
    }

    /// The error for a request at `requested`, which etcd says is in the future.
    async fn future_revision(&self, requested: Revision) -> StoreError {
        let current = match self.current_revision().await {
            Ok(current) => current,
            Err(_) => requested.saturating_sub(1),
        };
        StoreError::FutureRevision { requested, current }
    }
}

impl Store for EtcdStore {
    #[instrument(skip_all, fields(key = %key))]
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        validate_key(key)?;
        let mut response = self
            .range(key.into(), GetOptions::new())
            .await
            .map_err(Failure::into_store_error)?;
        response.kvs.pop().map(key_value).transpose()
    }

    #[instrument(skip_all, fields(prefix = %prefix, revision = opts.revision, limit = opts.limit))]
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResponse> {
        validate_prefix(prefix)?;
        let mut start = prefix.as_bytes().to_vec();
        if let Some(after) = &opts.continue_after {
            let mut next = after.as_bytes().to_vec();
            next.push(0);
            start = start.max(next);
        }
        let revision = opts.revision.max(0);
        let options = GetOptions::new()
            .with_range(prefix_end(prefix))
            .with_revision(revision)
            .with_limit(i64::try_from(opts.limit).unwrap_or(i64::MAX));
        let response = match self.range(start, options).await {
            Ok(response) => response,
            Err(Failure::Compacted) => {
                return Err(self
                    .compacted(revision, Some(revision), revision.saturating_add(1))
                    .await);
            }
            Err(Failure::FutureRevision) => return Err(self.future_revision(revision).await),
            Err(other) => return Err(other.into_store_error()),
        };
        let served = if revision > 0 {
            revision
        } else {
            header_revision(&response.header)?
        };
        let returned = u64::try_from(response.kvs.len()).unwrap_or(u64::MAX);
        let total = u64::try_from(response.count).unwrap_or(0);
        let kvs = response
            .kvs
            .into_iter()
            .map(key_value)
            .collect::<Result<Vec<_>>>()?;
        Ok(ListResponse {
            kvs,
            revision: served,
            remaining: total.saturating_sub(returned),
        })
    }

    #[instrument(skip_all, fields(prefix = %prefix))]
    async fn count(&self, prefix: &str) -> Result<i64> {
        validate_prefix(prefix)?;
        let options = GetOptions::new()
            .with_range(prefix_end(prefix))
            .with_count_only();
        let response = self
            .range(prefix.into(), options)
            .await
            .map_err(Failure::into_store_error)?;
        Ok(response.count)
    }

    #[instrument(skip_all, fields(key = %key, size = value.len()))]
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        validate_key(key)?;
        validate_value(&value)?;
        let txn = || {
            Txn::new()
                .when([Compare::create_revision(key, CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key, value.to_vec(), None)])
        };
        let response = self.txn(txn).await.map_err(|f| write_error(f, &value))?;
        if !response.succeeded {
            return Err(StoreError::AlreadyExists { key: key.into() });
        }
        let revision = header_revision(&response.header)?;
        Ok(KeyValue {
            key: key.into(),
            value,
            create_revision: revision,
            mod_revision: revision,
            version: 1,
        })
    }

    #[instrument(skip_all, fields(key = %key, expected, size = value.len()))]
    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue> {
        validate_key(key)?;
        validate_value(&value)?;
        let txn = || {
            Txn::new()
                .when(swap_guard(key, expected))
                .and_then([TxnOp::put(
                    key,
                    value.to_vec(),
                    Some(PutOptions::new().with_prev_key()),
                )])
                .or_else([TxnOp::get(key, None)])
        };
        let response = self.txn(txn).await.map_err(|f| write_error(f, &value))?;
        let revision = header_revision(&response.header)?;
        if !response.succeeded {
            return Err(swap_failed(key, expected, response)?);
        }
        let Some(PbTxnOpResponse::ResponsePut(put)) = first_op(response) else {
            return Err(malformed("txn put without a put response"));
        };
        let prev = put
            .prev_kv
            .ok_or_else(|| malformed("txn put without the previous key"))?;
        Ok(KeyValue {
            key: key.into(),
            value,
            create_revision: prev.create_revision,
            mod_revision: revision,
            version: prev.version.saturating_add(1),
        })
    }

    #[instrument(skip_all, fields(key = %key, expected))]
    async fn delete(&self, key: &str, expected: Revision) -> Result<DeleteResponse> {
        validate_key(key)?;
        let txn = || {
            Txn::new()
                .when(swap_guard(key, expected))
                .and_then([TxnOp::delete(
                    key,
                    Some(DeleteOptions::new().with_prev_key()),
                )])
                .or_else([TxnOp::get(key, None)])
        };
        let response = self.txn(txn).await.map_err(Failure::into_store_error)?;
        let revision = header_revision(&response.header)?;
        if !response.succeeded {
            return Err(swap_failed(key, expected, response)?);
        }
        let Some(PbTxnOpResponse::ResponseDeleteRange(deleted)) = first_op(response) else {
            return Err(malformed("txn delete without a delete response"));
        };
        let prev = deleted
            .prev_kvs
            .into_iter()
            .next()
            .ok_or_else(|| malformed("txn delete without the previous key"))?;
        Ok(DeleteResponse {
            revision,
            prev: key_value(prev)?,
        })
    }

    #[instrument(skip_all, fields(prefix = %prefix, after))]
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        validate_prefix(prefix)?;
        let after = if after > 0 {
            after
        } else {
            self.current_revision().await?
        };
        let retry = watch::Retry {
            open_timeout: self.inner.config.request_timeout,
            give_up_after: self.inner.config.watch_retry_timeout,
        };
        let (watch, kv) = (self.inner.watch.clone(), self.inner.kv.clone());
        watch::watch(watch, kv, prefix, after, retry).await
    }

    #[instrument(skip_all, fields(revision))]
    async fn compact(&self, revision: Revision) -> Result<()> {
        let send = || {
            let mut kv = self.inner.kv.clone();
            async move {
                kv.compact(revision, Some(CompactionOptions::new().with_physical()))
                    .await
            }
        };
        // Not replayable: a repeated compaction that had been applied would
        // fail with `Compacted`.
        match self
            .request("compact", self.inner.config.compact_timeout, false, send)
            .await
        {
            Ok(_) => Ok(()),
            // etcd refuses to compact at or below its compacted revision; a
            // watch from `revision - 1` is below it, if that is a revision.
            Err(Failure::Compacted) => {
                let probe = (revision > 1).then(|| revision - 1);
                Err(self.compacted(revision, probe, revision).await)
            }
            Err(Failure::FutureRevision) => Err(self.future_revision(revision).await),
            Err(other) => Err(other.into_store_error()),
        }
    }

    #[instrument(skip_all)]
    async fn current_revision(&self) -> Result<Revision> {
        let response = self
            .range(b"/".to_vec(), GetOptions::new().with_count_only())
            .await
            .map_err(Failure::into_store_error)?;
        header_revision(&response.header)
    }
}

/// The compare of `update` and `delete`: the key exists and was last written
/// at `expected`.
fn swap_guard(key: &str, expected: Revision) -> [Compare; 2] {
    [
        Compare::mod_revision(key, CompareOp::Equal, expected),
        Compare::version(key, CompareOp::Greater, 0),
    ]
}

/// `NotFound` or `Conflict` from the else branch (`Range(key)`) of a failed
/// compare-and-swap.
fn swap_failed(key: &str, expected: Revision, response: PbTxnResponse) -> Result<StoreError> {
    let Some(PbTxnOpResponse::ResponseRange(range)) = first_op(response) else {
        return Err(malformed("failed txn without its range response"));
    };
    Ok(match range.kvs.into_iter().next() {
        None => StoreError::NotFound { key: key.into() },
        Some(current) => StoreError::Conflict {
            key: key.into(),
            expected,
            current: Box::new(key_value(current)?),
        },
    })
}

/// The error of a failed write of `value`.
fn write_error(failure: Failure, value: &[u8]) -> StoreError {
    match failure {
        Failure::TooLarge => StoreError::ValueTooLarge {
            size: value.len(),
            limit: MAX_VALUE_BYTES,
        },
        other => other.into_store_error(),
    }
}

fn first_op(response: PbTxnResponse) -> Option<PbTxnOpResponse> {
    response.responses.into_iter().next()?.response
}

fn header_revision(header: &Option<PbResponseHeader>) -> Result<Revision> {
    header
        .as_ref()
        .map(|h| h.revision)
        .ok_or_else(|| malformed("no response header"))
}

/// Converts etcd's key-value, refusing keys that are not UTF-8 (which Skiff
/// never writes).
fn key_value(kv: PbKeyValue) -> Result<KeyValue> {
    let key = String::from_utf8(kv.key)
        .map_err(|e| StoreError::Io(format!("etcd returned a key that is not UTF-8: {e}")))?;
    Ok(KeyValue {
        key,
        value: Bytes::from(kv.value),
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
    })
}

/// The end of the range of keys starting with `prefix` (exclusive): the
/// prefix with its last byte below 0xff incremented. Validated prefixes start
/// with `/`, so there always is one; `"\0"` (etcd's "to the end") otherwise.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end("/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end("/"), b"0".to_vec());
        assert_eq!(prefix_end("/a\u{7f}"), b"/a\x80".to_vec());
        assert_eq!(prefix_end("/\u{10ffff}"), b"/\xf4\x8f\xbf\xc0".to_vec());
    }

    #[test]
    fn config_defaults() {
        let config = EtcdConfig::new(["http://127.0.0.1:2379"]);
        assert_eq!(config.endpoints, vec!["http://127.0.0.1:2379".to_string()]);
        assert!(config.request_timeout > Duration::ZERO);
        assert!(config.keep_alive_interval >= Duration::from_secs(5));
    }
}
