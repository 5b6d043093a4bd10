//! Watches: a stream of `{"type": ..., "object": ...}` lines, as upstream
//! serves them over HTTP/1.1 chunks or HTTP/2 data frames.
//!
//! Served from the watch cache (see [`super::cache`]) when the revision is
//! "0", unset (once the cache has caught up with the store) or inside the
//! cache's window of recent events; older revisions are watched straight
//! from the store, which answers 410 Expired once they are compacted.
//!
//! - `resourceVersion` unset or "0": the current objects first (ADDED), then
//!   changes; `sendInitialEvents=true` ends the initial objects with a
//!   BOOKMARK annotated `k8s.io/initial-events-end`.
//! - `resourceVersion=N`: changes after N; a compacted N gets a 200 with one
//!   ERROR event carrying 410 Expired, as upstream.
//! - Label and field selectors turn updates across the selector's edge into
//!   ADDED and DELETED, as upstream's filtered watches do.
//! - `allowWatchBookmarks=true`: a BOOKMARK with the latest revision every
//!   minute; `timeoutSeconds` ends the watch (default: 30-60 minutes).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use skiff_api::resources::ResourceInfo;
use skiff_api::selector::fields::FieldSelector;
use skiff_api::selector::labels::Selector;
use skiff_api::status::ApiError;
use skiff_store::{AnyStore, EventKind, ListOptions, Store, StoreError, WatchEvent, WatchStream};
use tokio::sync::mpsc;

use super::cache::object::CachedObject;
use super::cache::{Cache, CachedEvent, CachedStore, Initial, Start, holds};
use super::{Call, decode, matches, parse_rv, selectors, set_rv};
use crate::negotiate::{self, Output};
use crate::request_info::query_value;
use crate::response::Body;

const BOOKMARK_EVERY: Duration = Duration::from_secs(60);
/// Most bytes of ready watch lines joined into one chunk.
const MAX_CHUNK: usize = 256 * 1024;
/// Upstream's `--min-request-timeout` (watches last 1-2x this by default).
const MIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(1800);

/// Serves a watch call: from the watch cache when it can, else straight
/// from the store.
pub(crate) async fn serve(
    store: &CachedStore,
    call: &Call<'_>,
) -> Result<Response<Body>, ApiError> {
    let info = call.info;
    let (labels, fields) = selectors(info, call.query)?;
    let prefix = info.prefix(call.req.namespace.as_deref());
    let rv = query_value(call.query, "resourceVersion").unwrap_or_default();
    let bookmarks = is_true(query_value(call.query, "allowWatchBookmarks"));
    let send_initial = query_value(call.query, "sendInitialEvents").map(|v| is_true(Some(v)));
    let timeout = match query_value(call.query, "timeoutSeconds") {
        Some(t) if !t.is_empty() => Duration::from_secs(
            t.parse()
                .map_err(|_| ApiError::BadRequest(format!("invalid timeoutSeconds: {t}")))?,
        ),
        _ => MIN_REQUEST_TIMEOUT + MIN_REQUEST_TIMEOUT.mul_f64(rand::random::<f64>()),
    };
    let requested = match rv.as_str() {
        "" | "0" => None,
        rv => Some(parse_rv(rv)?),
    };
    let initial = send_initial.unwrap_or(requested.is_none());
    let mut st = State {
        view: View {
            info,
            output: call.output,
            labels,
            fields,
        },
        source: Source::Done,
        initial: Vec::new().into_iter(),
        initial_end: None,
        pending: VecDeque::new(),
        last_rev: 0,
        bookmarks,
        deadline: tokio::time::Instant::now() + timeout,
        next_bookmark: tokio::time::Instant::now() + BOOKMARK_EVERY,
    };
    let start = match (initial, requested) {
        (true, _) => Start::Objects,
        (false, Some(rev)) => Start::After(rev),
        (false, None) => Start::Now,
    };
    // Unset: as fresh as the store (a consistent read); "0": any state.
    let fresh = match (rv.as_str(), requested) {
        _ if !holds(info) => false,
        ("", _) => store.wait_fresh(None).await,
        (_, rev) => store.wait_fresh(Some(rev.unwrap_or(0))).await,
    };
    let registration = if fresh {
        let cache = store.cache();
        let registered = cache.lock().watch(info.storage_prefix, &prefix, start);
        registered.ok().map(|r| (r, cache.clone()))
    } else {
        None
    };
    match registration {
        Some((reg, cache)) => {
            st.last_rev = reg.revision;
            match reg.initial {
                Initial::Objects(objects) => {
                    // Rendered as the client reads them, not all up front.
                    st.initial = objects.into_iter();
                    st.initial_end = (send_initial == Some(true)).then_some(reg.revision);
                }
                Initial::Events(events) => {
                    for ev in events {
                        if let Some(line) = translate_cached(&st.view, &ev) {
                            st.pending.push_back(line);
                        }
                    }
                }
            }
            st.source = Source::Cache {
                events: reg.events,
                cache,
            };
        }
        None => from_store(store, &prefix, initial, send_initial, requested, &mut st).await?,
    }
    let stream = futures::stream::unfold(st, next).map(|b| Ok::<_, Infallible>(Frame::data(b)));
    let mut resp = Response::new(StreamBody::new(stream).boxed_unsync());
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// Starts `st` on a direct store watch: for revisions the cache no longer
/// (or not yet) has. A compacted revision gets the 410 ERROR event.
async fn from_store(
    store: &AnyStore,
    prefix: &str,
    initial: bool,
    send_initial: Option<bool>,
    requested: Option<i64>,
    st: &mut State,
) -> Result<(), ApiError> {
    let after = if initial {
        let list = store
            .list(prefix, ListOptions::default())
            .await
            .map_err(|e| ApiError::InternalError(e.to_string()))?;
        for kv in &list.kvs {
            let obj = decode(kv)?;
            if matches(st.view.info, &st.view.labels, &st.view.fields, &obj) {
                st.pending.push_back(line(
                    "ADDED",
                    &negotiate::object(st.view.info, st.view.output, obj),
                ));
            }
        }
        if send_initial == Some(true) {
            st.pending
                .push_back(bookmark(st.view.info, list.revision, true));
        }
        list.revision
    } else {
        match requested {
            Some(rev) => rev,
            None => store
                .current_revision()
                .await
                .map_err(|e| ApiError::InternalError(e.to_string()))?,
        }
    };
    st.last_rev = after;
    match store.watch(prefix, after).await {
        Ok(w) => st.source = Source::Store(w),
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => {
            let err = ApiError::too_old_resource_version(
                requested.max(0) as u64,
                compacted.max(0) as u64,
            );
            st.pending.push_back(error_line(&err));
        }
        Err(e) => return Err(ApiError::InternalError(e.to_string())),
    }
    Ok(())
}

/// Where a watch's events come from.
enum Source {
    /// The watch cache: events fanned out to this watcher. The channel
    /// closes when the watcher fell too far behind or the cache relisted.
    Cache {
        events: mpsc::Receiver<Arc<CachedEvent>>,
        cache: Arc<Cache>,
    },
    /// A direct store watch.
    Store(WatchStream),
    /// The watch has ended (error, closed channel or end of the store's
    /// stream); only `pending` lines remain.
    Done,
}

/// What one watcher sees: its resource, output shape and selectors.
struct View {
    info: &'static ResourceInfo,
    output: Output,
    labels: Selector,
    fields: FieldSelector,
}

struct State {
    view: View,
    source: Source,
    /// Initial objects from the cache not yet sent as ADDED.
    initial: std::vec::IntoIter<Arc<CachedObject>>,
    /// The revision of the initial-events-end bookmark still to send.
    initial_end: Option<i64>,
    pending: VecDeque<Bytes>,
    last_rev: i64,
    bookmarks: bool,
    deadline: tokio::time::Instant,
    next_bookmark: tokio::time::Instant,
}

/// The next chunk of the response: the next line, joined by the lines
/// that are ready at once. A client that fell behind then gets its backlog
/// in few chunks, each one write and one wake-up of its reader rather than
/// one per event (chunk boundaries mean nothing in a watch stream).
async fn next(st: State) -> Option<(Bytes, State)> {
    let (first, mut st) = next_line(st).await?;
    if st.initial.len() > 0 || st.initial_end.is_some() {
        return Some((first, st));
    }
    let mut chunk: Option<Vec<u8>> = None;
    while chunk.as_ref().map_or(first.len(), Vec::len) < MAX_CHUNK {
        let line = match st.pending.pop_front() {
            Some(line) => line,
            None => {
                let Source::Cache { events, .. } = &mut st.source else {
                    break;
                };
                match events.try_recv() {
                    Ok(ev) => {
                        st.last_rev = ev.rev;
                        match translate_cached(&st.view, &ev) {
                            Some(line) => line,
                            None => continue,
                        }
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        st.source = Source::Done;
                        break;
                    }
                }
            }
        };
        chunk
            .get_or_insert_with(|| first.to_vec())
            .extend_from_slice(&line);
    }
    Some((chunk.map_or(first, Bytes::from), st))
}

/// The next line of the response, waiting for one.
async fn next_line(mut st: State) -> Option<(Bytes, State)> {
    loop {
        if let Some(line) = st.pending.pop_front() {
            return Some((line, st));
        }
        let view = &st.view;
        let added = st
            .initial
            .by_ref()
            .find(|obj| obj.matches(view.info, &view.labels, &view.fields));
        if let Some(obj) = added {
            return Some((cached_line(view, "ADDED", &obj), st));
        }
        if let Some(rev) = st.initial_end.take() {
            return Some((bookmark(view.info, rev, true), st));
        }
        let bookmark_at = if st.bookmarks {
            st.next_bookmark
        } else {
            st.deadline
        };
        match &mut st.source {
            Source::Done => return None,
            Source::Cache { events, cache } => {
                tokio::select! {
                    item = events.recv() => match item {
                        Some(ev) => {
                            st.last_rev = ev.rev;
                            if let Some(line) = translate_cached(&st.view, &ev) {
                                st.pending.push_back(line);
                            }
                        }
                        None => st.source = Source::Done,
                    },
                    () = tokio::time::sleep_until(st.deadline) => return None,
                    () = tokio::time::sleep_until(bookmark_at), if st.bookmarks => {
                        // Every event up to the published revision is already
                        // in the channel: drain it before claiming that revision.
                        let rev = cache.revision();
                        let mut lines = Vec::new();
                        let mut closed = false;
                        loop {
                            match events.try_recv() {
                                Ok(ev) => {
                                    st.last_rev = ev.rev;
                                    lines.extend(translate_cached(&st.view, &ev));
                                }
                                Err(mpsc::error::TryRecvError::Empty) => break,
                                Err(mpsc::error::TryRecvError::Disconnected) => {
                                    closed = true;
                                    break;
                                }
                            }
                        }
                        st.pending.extend(lines);
                        if closed {
                            // Events may have been dropped: no bookmark past them.
                            st.source = Source::Done;
                        } else {
                            st.last_rev = st.last_rev.max(rev);
                            st.pending.push_back(bookmark(st.view.info, st.last_rev, false));
                        }
                        st.next_bookmark = tokio::time::Instant::now() + BOOKMARK_EVERY;
                    }
                }
            }
            Source::Store(events) => {
                tokio::select! {
                    item = events.next() => match item {
                        Some(Ok(ev)) => {
                            st.last_rev = ev.revision();
                            if let Some(line) = translate(&st.view, &ev) {
                                st.pending.push_back(line);
                            }
                        }
                        Some(Err(StoreError::Compacted { requested, compacted })) => {
                            let err = ApiError::too_old_resource_version(requested.max(0) as u64, compacted.max(0) as u64);
                            st.pending.push_back(error_line(&err));
                            st.source = Source::Done;
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "watch ended by the store");
                            st.source = Source::Done;
                        }
                        None => st.source = Source::Done,
                    },
                    () = tokio::time::sleep_until(st.deadline) => return None,
                    () = tokio::time::sleep_until(bookmark_at), if st.bookmarks => {
                        st.pending.push_back(bookmark(st.view.info, st.last_rev, false));
                        st.next_bookmark = tokio::time::Instant::now() + BOOKMARK_EVERY;
                    }
                }
            }
        }
    }
}

/// The watch type of a change for a watcher whose selectors say whether
/// the object matched before (`None`: did not exist) and matches after;
/// `None` when the watcher does not see the change.
fn event_type(before: Option<bool>, after: bool) -> Option<&'static str> {
    match (before, after) {
        (None | Some(false), true) => Some("ADDED"),
        (Some(true), true) => Some("MODIFIED"),
        (Some(true), false) => Some("DELETED"),
        _ => None,
    }
}

/// One cached event as the watch line the client sees, if any; the line is
/// rendered once per event and shared with watchers of the same output.
fn translate_cached(st: &View, ev: &CachedEvent) -> Option<Bytes> {
    let filtered = !(st.labels.is_empty() && st.fields.is_empty());
    let matching = |obj: &CachedObject| !filtered || obj.matches(st.info, &st.labels, &st.fields);
    let kind = match ev.kind {
        EventKind::Put => event_type(ev.prev.as_deref().map(matching), matching(&ev.obj))?,
        EventKind::Delete => matching(&ev.obj).then_some("DELETED")?,
    };
    Some(ev.line(st.info, kind, st.output, |obj| cached_line(st, kind, obj)))
}

/// The watch line of a cached object: its JSON spliced in as it is when the
/// client reads plain JSON of the stored kind, else converted.
fn cached_line(st: &View, kind: &str, obj: &CachedObject) -> Bytes {
    if st.output == Output::Json && st.info.shares_storage_with.is_none() && st.info.kind != "Event"
    {
        let mut s = Vec::with_capacity(obj.json.len() + 32);
        s.extend_from_slice(b"{\"type\":");
        s.extend_from_slice(serde_json::to_string(kind).unwrap_or_default().as_bytes());
        s.extend_from_slice(b",\"object\":");
        s.extend_from_slice(&obj.json);
        s.extend_from_slice(b"}\n");
        return Bytes::from(s);
    }
    line(kind, &negotiate::object(st.info, st.output, obj.decode()))
}

/// One store event as the watch line the client sees, if any.
fn translate(st: &View, ev: &WatchEvent) -> Option<Bytes> {
    let filtered = !(st.labels.is_empty() && st.fields.is_empty());
    let matching = |obj: &Value| !filtered || matches(st.info, &st.labels, &st.fields, obj);
    let decode_at = |kv: &skiff_store::KeyValue, rev: i64| {
        decode(kv).ok().map(|mut obj| {
            set_rv(&mut obj, rev);
            obj
        })
    };
    let (kind, obj) = match ev.kind {
        EventKind::Put => {
            let new = decode(&ev.kv).ok()?;
            let old = ev.prev.as_ref().and_then(|p| decode(p).ok());
            (
                event_type(old.as_ref().map(&matching), matching(&new))?,
                new,
            )
        }
        EventKind::Delete => {
            let prev = ev.prev.as_ref().and_then(|p| decode_at(p, ev.revision()))?;
            if !matching(&prev) {
                return None;
            }
            ("DELETED", prev)
        }
    };
    Some(line(kind, &negotiate::object(st.info, st.output, obj)))
}

/// `{"type": ..., "object": ...}`, in that order, as upstream writes it:
/// a client decoding into typed events (kube-rs, serde's adjacently
/// tagged enums) reads the object straight into its type once it knows
/// the event type, but must first buffer the whole object as a generic
/// tree when the object comes first.
#[derive(serde::Serialize)]
struct Line<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    object: &'a Value,
}

fn line(kind: &str, obj: &Value) -> Bytes {
    let mut s = serde_json::to_vec(&Line { kind, object: obj }).unwrap_or_default();
    s.push(b'\n');
    Bytes::from(s)
}

fn error_line(err: &ApiError) -> Bytes {
    let status = serde_json::to_value(err.status()).unwrap_or_default();
    line("ERROR", &status)
}

fn bookmark(info: &ResourceInfo, rev: i64, initial_end: bool) -> Bytes {
    let mut metadata = json!({"resourceVersion": rev.to_string()});
    if initial_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        "BOOKMARK",
        &json!({"kind": info.kind, "apiVersion": info.api_version(), "metadata": metadata}),
    )
}

fn is_true(v: Option<String>) -> bool {
    matches!(
        v.as_deref(),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True")
    )
}
