//! Watches on the etcd backend survive connection loss: the watching store
//! reaches etcd through a TCP proxy whose connections are severed while a
//! second store writes directly; the watch must deliver every event exactly
//! once, in order, with correct previous values.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use skiff_store::{
    EtcdConfig, EtcdStore, EventKind, KeyValue, Store, StoreError, WatchEvent, WatchStream,
};
use support::{EtcdProcess, TcpProxy};

const WRITES: usize = 500;
const KEYS: usize = 23;
/// No single wait in these tests may exceed this.
const WAIT: Duration = Duration::from_secs(30);

async fn connect(url: &str) -> EtcdStore {
    EtcdStore::connect(EtcdConfig::new([url]))
        .await
        .expect("connect")
}

async fn next_item(w: &mut WatchStream) -> Option<Result<WatchEvent, StoreError>> {
    tokio::time::timeout(WAIT, w.next())
        .await
        .expect("a watch item in time")
}

/// Writes `WRITES` changes under `/t/r/` one after another (creates, updates
/// and deletes, plus writes outside the prefix) and returns the events a
/// watch of `/t/r/` must deliver, in order.
async fn write_history(store: EtcdStore, progress: Arc<AtomicUsize>) -> Vec<WatchEvent> {
    let mut live: BTreeMap<String, KeyValue> = BTreeMap::new();
    let mut expected = Vec::with_capacity(WRITES);
    for i in 0..WRITES {
        let key = format!("/t/r/{:02}", (i * 7) % KEYS);
        let value = Bytes::from(format!("write {i}"));
        let event = match live.remove(&key) {
            None => {
                let kv = store.create(&key, value).await.expect("create");
                live.insert(key, kv.clone());
                WatchEvent {
                    kind: EventKind::Put,
                    kv,
                    prev: None,
                }
            }
            Some(prev) if i % 5 == 0 => {
                let deleted = store.delete(&key, prev.mod_revision).await.expect("delete");
                assert_eq!(deleted.prev, prev);
                WatchEvent {
                    kind: EventKind::Delete,
                    kv: KeyValue {
                        key,
                        value: Bytes::new(),
                        create_revision: 0,
                        mod_revision: deleted.revision,
                        version: 0,
                    },
                    prev: Some(prev),
                }
            }
            Some(prev) => {
                let kv = store
                    .update(&key, value, prev.mod_revision)
                    .await
                    .expect("update");
                live.insert(key, kv.clone());
                WatchEvent {
                    kind: EventKind::Put,
                    kv,
                    prev: Some(prev),
                }
            }
        };
        expected.push(event);
        if i % 10 == 0 {
            // Outside the watched prefix: must not be delivered.
            store
                .create(&format!("/t/r0/{i}"), Bytes::from_static(b"x"))
                .await
                .expect("create outside the prefix");
        }
        progress.store(i + 1, Ordering::SeqCst);
        // Spread the writes over a few seconds, so the watch is cut (and
        // reconnects) many times while they go on.
        tokio::time::sleep(Duration::from_millis(4)).await;
    }
    expected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_delivers_every_event_once_across_severed_connections() {
    let etcd = EtcdProcess::start().await;
    let proxy = TcpProxy::for_url(etcd.client_url()).await;
    let writer = connect(etcd.client_url()).await;
    let watcher = connect(&proxy.url()).await;

    let mut watch = watcher.watch("/t/r/", 0).await.expect("watch");
    let progress = Arc::new(AtomicUsize::new(0));
    let writes = tokio::spawn(write_history(writer.clone(), progress.clone()));

    // Read concurrently, so connections are cut while events are in flight.
    let reader = tokio::spawn(async move {
        let mut got = Vec::with_capacity(WRITES);
        while got.len() < WRITES {
            match next_item(&mut watch).await {
                Some(Ok(event)) => got.push(event),
                Some(Err(e)) => panic!("watch failed after {} events: {e}", got.len()),
                None => panic!("watch ended after {} events", got.len()),
            }
        }
        (got, watch)
    });

    // Sever the watch's connection at points spread over the writes, each
    // time once it has reconnected; every other time also refuse new
    // connections for a while, so reopening fails and backs off first.
    let mut cuts = 0;
    for (n, at) in [40, 90, 150, 210, 270, 330, 390, 450]
        .into_iter()
        .enumerate()
    {
        let deadline = tokio::time::Instant::now() + WAIT;
        while progress.load(Ordering::SeqCst) < at || proxy.live() == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "writes stalled before {at} or the watch did not reconnect"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let refuse = n % 2 == 1;
        proxy.set_refusing(refuse);
        cuts += proxy.cut();
        if refuse {
            tokio::time::sleep(Duration::from_millis(300)).await;
            proxy.set_refusing(false);
        }
    }

    let expected = tokio::time::timeout(WAIT * 2, writes)
        .await
        .expect("writes finish in time")
        .expect("writer panicked");
    let (got, mut watch) = tokio::time::timeout(WAIT * 2, reader)
        .await
        .expect("the watch delivers every event in time")
        .expect("reader panicked");

    eprintln!(
        "{cuts} live connections severed; {} connections through the proxy",
        proxy.accepted()
    );
    assert!(
        cuts >= 8,
        "connections were severed during the writes: {cuts}"
    );
    assert!(
        proxy.accepted() > cuts,
        "the watch reconnected after each cut"
    );
    for (i, (got, want)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "event {i}");
    }
    assert_eq!(got.len(), expected.len());
    // And nothing more: no duplicate slipped in after the last event.
    let extra = writer
        .create("/t/r/zz-last", Bytes::from_static(b"end"))
        .await
        .unwrap();
    match next_item(&mut watch).await {
        Some(Ok(event)) => assert_eq!(
            event.kv, extra,
            "no event after the last write but this one"
        ),
        other => panic!("expected the final event, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_resuming_behind_compaction_fails_with_compacted() {
    let etcd = EtcdProcess::start().await;
    let proxy = TcpProxy::for_url(etcd.client_url()).await;
    let writer = connect(etcd.client_url()).await;
    let watcher = connect(&proxy.url()).await;

    let mut watch = watcher.watch("/t/c/", 0).await.expect("watch");
    let first = writer
        .create("/t/c/a", Bytes::from_static(b"1"))
        .await
        .unwrap();
    let ev = next_item(&mut watch).await.unwrap().unwrap();
    assert_eq!(ev.kv, first);

    // While the watch is cut off, history it has not seen is compacted away.
    proxy.set_refusing(true);
    proxy.cut();
    let mut kv = first.clone();
    for i in 0..5 {
        kv = writer
            .update("/t/c/a", Bytes::from(format!("{i}")), kv.mod_revision)
            .await
            .unwrap();
    }
    writer.compact(kv.mod_revision).await.unwrap();
    proxy.set_refusing(false);

    match next_item(&mut watch).await {
        Some(Err(StoreError::Compacted {
            requested,
            compacted,
        })) => {
            assert_eq!(requested, first.mod_revision, "the last revision delivered");
            assert_eq!(compacted, kv.mod_revision);
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert!(
        next_item(&mut watch).await.is_none(),
        "the watch ends after the error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_gives_up_with_unavailable_when_etcd_stays_unreachable() {
    let etcd = EtcdProcess::start().await;
    let proxy = TcpProxy::for_url(etcd.client_url()).await;
    let config = EtcdConfig {
        watch_retry_timeout: Duration::from_secs(1),
        ..EtcdConfig::new([proxy.url()])
    };
    let watcher = EtcdStore::connect(config).await.expect("connect");
    let mut watch = watcher.watch("/t/u/", 0).await.expect("watch");

    proxy.set_refusing(true);
    proxy.cut();
    match next_item(&mut watch).await {
        Some(Err(StoreError::Unavailable(msg))) => eprintln!("gave up: {msg}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(
        next_item(&mut watch).await.is_none(),
        "the watch ends after the error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_survives_an_etcd_restart() {
    let mut etcd = EtcdProcess::start().await;
    let store = connect(etcd.client_url()).await;
    let mut watch = store.watch("/t/s/", 0).await.expect("watch");

    let mut written = Vec::new();
    let mut kv = store
        .create("/t/s/a", Bytes::from_static(b"0"))
        .await
        .unwrap();
    written.push(kv.clone());
    for i in 1..20 {
        kv = store
            .update("/t/s/a", Bytes::from(format!("{i}")), kv.mod_revision)
            .await
            .unwrap();
        written.push(kv.clone());
    }
    // Read a few, then kill etcd (SIGKILL) under the open watch and bring it
    // back on the same port and data.
    for want in &written[..5] {
        assert_eq!(&next_item(&mut watch).await.unwrap().unwrap().kv, want);
    }
    etcd.kill();
    etcd.restart().await;
    for i in 20..40 {
        kv = store
            .update("/t/s/a", Bytes::from(format!("{i}")), kv.mod_revision)
            .await
            .unwrap();
        written.push(kv.clone());
    }
    for (i, want) in written.iter().enumerate().skip(5) {
        let ev = next_item(&mut watch).await.unwrap().unwrap();
        assert_eq!(&ev.kv, want, "event {i}");
        assert_eq!(
            ev.prev.as_ref(),
            Some(&written[i - 1]),
            "previous of event {i}"
        );
    }
}
