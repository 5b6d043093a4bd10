//! Watches: a stream of `{"type": ..., "object": ...}` lines, as upstream
//! serves them over HTTP/1.1 chunks or HTTP/2 data frames.
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

use super::{Call, decode, matches, parse_rv, selectors, set_rv};
use crate::negotiate::{self, Output};
use crate::request_info::query_value;
use crate::response::Body;

const BOOKMARK_EVERY: Duration = Duration::from_secs(60);
/// Upstream's `--min-request-timeout` (watches last 1-2x this by default).
const MIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(1800);

/// Serves a watch call.
pub async fn serve(store: &AnyStore, call: &Call<'_>) -> Result<Response<Body>, ApiError> {
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

    let mut pending = VecDeque::new();
    let initial = match send_initial {
        Some(send) => send,
        None => rv.is_empty() || rv == "0",
    };
    let after = if initial {
        let list = store
            .list(&prefix, ListOptions::default())
            .await
            .map_err(|e| ApiError::InternalError(e.to_string()))?;
        for kv in &list.kvs {
            let obj = decode(kv)?;
            if matches(info, &labels, &fields, &obj) {
                pending.push_back(line("ADDED", &negotiate::object(info, call.output, obj)));
            }
        }
        if send_initial == Some(true) {
            pending.push_back(bookmark(info, list.revision, true));
        }
        list.revision
    } else {
        parse_rv(&rv)?
    };

    let events = match store.watch(&prefix, after).await {
        Ok(w) => Some(w),
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => {
            let err = ApiError::too_old_resource_version(
                requested.max(0) as u64,
                compacted.max(0) as u64,
            );
            pending.push_back(error_line(&err));
            None
        }
        Err(e) => return Err(ApiError::InternalError(e.to_string())),
    };
    let state = State {
        info,
        output: call.output,
        labels,
        fields,
        events,
        pending,
        last_rev: after,
        bookmarks,
        deadline: tokio::time::Instant::now() + timeout,
        next_bookmark: tokio::time::Instant::now() + BOOKMARK_EVERY,
    };
    let stream = futures::stream::unfold(state, next).map(|b| Ok::<_, Infallible>(Frame::data(b)));
    let mut resp = Response::new(StreamBody::new(stream).boxed_unsync());
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

struct State {
    info: &'static ResourceInfo,
    output: Output,
    labels: Selector,
    fields: FieldSelector,
    /// None once the watch has ended (error or end of the store's stream).
    events: Option<WatchStream>,
    pending: VecDeque<Bytes>,
    last_rev: i64,
    bookmarks: bool,
    deadline: tokio::time::Instant,
    next_bookmark: tokio::time::Instant,
}

async fn next(mut st: State) -> Option<(Bytes, State)> {
    loop {
        if let Some(line) = st.pending.pop_front() {
            return Some((line, st));
        }
        let events = st.events.as_mut()?;
        let bookmark_at = if st.bookmarks {
            st.next_bookmark
        } else {
            st.deadline
        };
        tokio::select! {
            item = events.next() => match item {
                Some(Ok(ev)) => {
                    st.last_rev = ev.revision();
                    if let Some(line) = translate(&st, &ev) {
                        st.pending.push_back(line);
                    }
                }
                Some(Err(StoreError::Compacted { requested, compacted })) => {
                    let err = ApiError::too_old_resource_version(requested.max(0) as u64, compacted.max(0) as u64);
                    st.pending.push_back(error_line(&err));
                    st.events = None;
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "watch ended by the store");
                    st.events = None;
                }
                None => st.events = None,
            },
            () = tokio::time::sleep_until(st.deadline) => return None,
            () = tokio::time::sleep_until(bookmark_at), if st.bookmarks => {
                st.pending.push_back(bookmark(st.info, st.last_rev, false));
                st.next_bookmark = tokio::time::Instant::now() + BOOKMARK_EVERY;
            }
        }
    }
}

/// One store event as the watch line the client sees, if any.
fn translate(st: &State, ev: &WatchEvent) -> Option<Bytes> {
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
            match (old.as_ref().map(&matching), matching(&new)) {
                (None, true) | (Some(false), true) => ("ADDED", new),
                (Some(true), true) => ("MODIFIED", new),
                (Some(true), false) => ("DELETED", new),
                _ => return None,
            }
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

fn line(kind: &str, obj: &Value) -> Bytes {
    let mut s = serde_json::to_vec(&json!({"type": kind, "object": obj})).unwrap_or_default();
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
