//! etcd-specific error paths of the etcd backend, beyond the shared
//! conformance suite: the revisions reported with `Compacted` and
//! `FutureRevision`, the watch boundary at the compacted revision, and how
//! an unreachable etcd is reported.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use skiff_store::{EtcdConfig, EtcdStore, ListOptions, Revision, Store, StoreError, WatchEvent};
use support::EtcdProcess;

const WAIT: Duration = Duration::from_secs(20);

async fn first_watch_item(
    store: &EtcdStore,
    prefix: &str,
    after: Revision,
) -> Result<WatchEvent, StoreError> {
    let mut w = store.watch(prefix, after).await?;
    match tokio::time::timeout(WAIT, w.next()).await {
        Ok(Some(item)) => item,
        Ok(None) => panic!("watch ended without an item"),
        Err(_) => panic!("no watch item within {WAIT:?}"),
    }
}

fn assert_compacted(
    result: Result<impl std::fmt::Debug, StoreError>,
    requested: Revision,
    compacted: Revision,
) {
    match result {
        Err(StoreError::Compacted {
            requested: r,
            compacted: c,
        }) => assert_eq!(
            (r, c),
            (requested, compacted),
            "Compacted {{ requested, compacted }}"
        ),
        other => panic!(
            "expected Compacted {{ requested: {requested}, compacted: {compacted} }}, got {other:?}"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_and_future_errors_carry_the_real_revisions() {
    let etcd = EtcdProcess::start().await;
    let store = EtcdStore::connect(EtcdConfig::new([etcd.client_url()]))
        .await
        .unwrap();

    let mut kv = store
        .create("/t/k", Bytes::from_static(b"0"))
        .await
        .unwrap();
    let first = kv.mod_revision;
    for i in 1..6 {
        kv = store
            .update("/t/k", Bytes::from(format!("{i}")), kv.mod_revision)
            .await
            .unwrap();
    }
    let compact_at = kv.mod_revision;
    store.compact(compact_at).await.unwrap();

    let at = |revision| ListOptions {
        revision,
        ..ListOptions::default()
    };
    assert_compacted(store.list("/t/", at(first)).await, first, compact_at);
    assert_compacted(
        store.list("/t/", at(compact_at - 1)).await,
        compact_at - 1,
        compact_at,
    );
    assert_eq!(
        store.list("/t/", at(compact_at)).await.unwrap().kvs,
        vec![kv.clone()]
    );

    assert_compacted(store.compact(compact_at).await, compact_at, compact_at);
    assert_compacted(store.compact(first).await, first, compact_at);

    assert_compacted(
        first_watch_item(&store, "/t/", first).await,
        first,
        compact_at,
    );
    // etcd itself accepts a watch from exactly the compacted revision but
    // leaves out the previous value of its first event; the backend calls
    // it compacted, as the contract (and the embedded backend) does.
    assert_compacted(
        first_watch_item(&store, "/t/", compact_at - 1).await,
        compact_at - 1,
        compact_at,
    );
    let mut w = store.watch("/t/", compact_at).await.unwrap();
    let next = store
        .update("/t/k", Bytes::from_static(b"after"), kv.mod_revision)
        .await
        .unwrap();
    let ev = tokio::time::timeout(WAIT, w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((ev.kv, ev.prev), (next.clone(), Some(kv)));

    let current = store.current_revision().await.unwrap();
    assert_eq!(current, next.mod_revision);
    match store.list("/t/", at(current + 10)).await {
        Err(StoreError::FutureRevision {
            requested,
            current: c,
        }) => {
            assert_eq!((requested, c), (current + 10, current));
        }
        other => panic!("expected FutureRevision, got {other:?}"),
    }
    match store.compact(current + 10).await {
        Err(StoreError::FutureRevision {
            requested,
            current: c,
        }) => {
            assert_eq!((requested, c), (current + 10, current));
        }
        other => panic!("expected FutureRevision, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_etcd_is_unavailable() {
    let mut etcd = EtcdProcess::start().await;
    let config = EtcdConfig {
        request_timeout: Duration::from_secs(2),
        ..EtcdConfig::new([etcd.client_url()])
    };
    let store = EtcdStore::connect(config.clone()).await.unwrap();
    store
        .create("/t/a", Bytes::from_static(b"x"))
        .await
        .unwrap();

    etcd.kill();
    let started = Instant::now();
    let err = store.get("/t/a").await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let err = store
        .create("/t/b", Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let err = store.watch("/t/", 0).await.map(drop).unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "errors come within the request timeout"
    );

    let err = EtcdStore::connect(config).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let err = EtcdStore::connect(EtcdConfig::default()).await.unwrap_err();
    assert!(matches!(err, StoreError::Open(_)), "{err:?}");
    // No TLS support is compiled in.
    let err = EtcdStore::connect(EtcdConfig::new(["https://127.0.0.1:2379"]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Open(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_continue_after_outside_the_prefix() {
    let etcd = EtcdProcess::start().await;
    let store = EtcdStore::connect(EtcdConfig::new([etcd.client_url()]))
        .await
        .unwrap();
    for k in ["/t/p/a", "/t/p/b", "/t/q"] {
        store.create(k, Bytes::from_static(b"x")).await.unwrap();
    }
    let after = |k: &str| ListOptions {
        continue_after: Some(k.to_owned()),
        ..ListOptions::default()
    };
    let page = store.list("/t/p/", after("/t/z")).await.unwrap();
    assert!(page.kvs.is_empty() && !page.more(), "{page:?}");
    let page = store.list("/t/p/", after("/a")).await.unwrap();
    assert_eq!(page.kvs.len(), 2);
    let page = store.list("/t/p/", after("/t/p/a")).await.unwrap();
    assert_eq!(page.kvs[0].key, "/t/p/b");
    assert_eq!(page.remaining, 0);
}
