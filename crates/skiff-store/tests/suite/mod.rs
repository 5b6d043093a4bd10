//! The conformance suite every `Store` backend must pass.
//!
//! Use: `#[macro_use] mod suite;` then `store_conformance!(make);` where
//! `make` is an `async fn() -> (S, G)` returning a fresh, empty store and a
//! guard that keeps its resources (temp dir, etcd process) alive. The macro
//! expands to one `#[tokio::test]` per case below.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use skiff_store::{
    EventKind, KeyValue, ListOptions, MAX_VALUE_BYTES, Revision, Store, StoreError, WatchEvent,
    WatchStream,
};

/// Generates one test per conformance case for the backend made by `$make`.
#[macro_export]
macro_rules! store_conformance {
    ($make:path) => {
        $crate::store_conformance!(@cases $make;
            create_and_get, create_existing_fails, update_compare_and_swap,
            delete_compare_and_swap, recreate_after_delete, list_prefix_boundaries,
            list_paging_is_consistent_while_writes_continue, list_at_old_revision,
            count_keys, watch_delivers_puts_and_deletes_with_previous_values,
            watch_orders_events_from_many_concurrent_writers, watch_from_old_revision_replays_history,
            watch_filters_by_prefix, slow_watcher_gets_every_event, many_watchers_see_the_same_events,
            compaction_errors_for_old_revisions, future_revisions_are_errors, large_values,
            invalid_keys_are_rejected,
        );
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let (store, _guard) = $make().await;
                $crate::suite::$case(&store).await;
            }
        )*
    };
}

const WAIT: Duration = Duration::from_secs(20);

fn val(s: impl Into<String>) -> Bytes {
    Bytes::from(s.into())
}

/// The next event, failing the test on error, end of stream or time-out.
pub async fn next_event(w: &mut WatchStream) -> WatchEvent {
    match tokio::time::timeout(WAIT, w.next()).await {
        Ok(Some(Ok(ev))) => ev,
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch event within {WAIT:?}"),
    }
}

/// Asserts no event arrives within a short while.
async fn assert_quiet(w: &mut WatchStream) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(300), w.next()).await {
        panic!("unexpected watch item: {item:?}");
    }
}

async fn list_all<S: Store>(s: &S, prefix: &str, revision: Revision) -> Vec<KeyValue> {
    s.list(
        prefix,
        ListOptions {
            revision,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .kvs
}

pub async fn create_and_get<S: Store>(s: &S) {
    let r0 = s.current_revision().await.unwrap();
    let kv = s.create("/t/a", val("one")).await.unwrap();
    assert_eq!(kv.key, "/t/a");
    assert_eq!(kv.value, val("one"));
    assert_eq!(
        kv.mod_revision,
        r0 + 1,
        "each write takes the next revision"
    );
    assert_eq!(kv.create_revision, kv.mod_revision);
    assert_eq!(kv.version, 1);
    assert_eq!(s.current_revision().await.unwrap(), r0 + 1);
    assert_eq!(s.get("/t/a").await.unwrap(), Some(kv));
    assert_eq!(s.get("/t/missing").await.unwrap(), None);
    let kv2 = s.create("/t/b", val("two")).await.unwrap();
    assert_eq!(kv2.mod_revision, r0 + 2);
}

pub async fn create_existing_fails<S: Store>(s: &S) {
    let kv = s.create("/t/a", val("one")).await.unwrap();
    let err = s.create("/t/a", val("two")).await.unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyExists { ref key } if key == "/t/a"),
        "{err:?}"
    );
    assert_eq!(
        s.current_revision().await.unwrap(),
        kv.mod_revision,
        "a failed write takes no revision"
    );
    assert_eq!(s.get("/t/a").await.unwrap().unwrap().value, val("one"));
}

pub async fn update_compare_and_swap<S: Store>(s: &S) {
    let created = s.create("/t/a", val("v1")).await.unwrap();
    let updated = s
        .update("/t/a", val("v2"), created.mod_revision)
        .await
        .unwrap();
    assert_eq!(updated.version, 2);
    assert_eq!(updated.create_revision, created.create_revision);
    assert_eq!(updated.mod_revision, created.mod_revision + 1);
    assert_eq!(s.get("/t/a").await.unwrap(), Some(updated.clone()));

    // A stale expected revision conflicts and reports the current value.
    let err = s
        .update("/t/a", val("v3"), created.mod_revision)
        .await
        .unwrap_err();
    match err {
        StoreError::Conflict {
            key,
            expected,
            current,
        } => {
            assert_eq!(key, "/t/a");
            assert_eq!(expected, created.mod_revision);
            assert_eq!(*current, updated);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(s.current_revision().await.unwrap(), updated.mod_revision);

    let err = s.update("/t/none", val("x"), 0).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    let err = s
        .update("/t/none", val("x"), updated.mod_revision)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert_eq!(
        s.get("/t/none").await.unwrap(),
        None,
        "update must never create"
    );
}

pub async fn delete_compare_and_swap<S: Store>(s: &S) {
    let v1 = s.create("/t/a", val("v1")).await.unwrap();
    let v2 = s.update("/t/a", val("v2"), v1.mod_revision).await.unwrap();
    let err = s.delete("/t/a", v1.mod_revision).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { ref current, .. } if **current == v2),
        "{err:?}"
    );
    let del = s.delete("/t/a", v2.mod_revision).await.unwrap();
    assert_eq!(del.revision, v2.mod_revision + 1);
    assert_eq!(del.prev, v2);
    assert_eq!(s.get("/t/a").await.unwrap(), None);
    assert_eq!(s.current_revision().await.unwrap(), del.revision);
    let err = s.delete("/t/a", v2.mod_revision).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
}

pub async fn recreate_after_delete<S: Store>(s: &S) {
    let v1 = s.create("/t/a", val("v1")).await.unwrap();
    let v2 = s.update("/t/a", val("v2"), v1.mod_revision).await.unwrap();
    s.delete("/t/a", v2.mod_revision).await.unwrap();
    let again = s.create("/t/a", val("new")).await.unwrap();
    assert_eq!(again.version, 1, "a new life starts at version 1");
    assert_eq!(again.create_revision, again.mod_revision);
    assert!(again.create_revision > v1.create_revision);
}

pub async fn list_prefix_boundaries<S: Store>(s: &S) {
    for k in ["/t/p/b", "/t/p/a", "/t/p0", "/t/pa", "/t/q/x", "/t/p/c/d"] {
        s.create(k, val(k)).await.unwrap();
    }
    let keys = |kvs: Vec<KeyValue>| kvs.into_iter().map(|kv| kv.key).collect::<Vec<_>>();
    assert_eq!(
        keys(list_all(s, "/t/p/", 0).await),
        ["/t/p/a", "/t/p/b", "/t/p/c/d"]
    );
    assert_eq!(keys(list_all(s, "/t/q/", 0).await), ["/t/q/x"]);
    assert!(list_all(s, "/t/none/", 0).await.is_empty());
    let all = list_all(s, "/t/", 0).await;
    assert_eq!(all.len(), 6);
    assert!(all.windows(2).all(|w| w[0].key < w[1].key), "sorted by key");
    for kv in &all {
        assert_eq!(kv.value, val(kv.key.clone()));
    }
    let resp = s.list("/t/p/", ListOptions::default()).await.unwrap();
    assert_eq!(resp.revision, s.current_revision().await.unwrap());
    assert!(!resp.more());
}

pub async fn list_paging_is_consistent_while_writes_continue<S: Store + Clone>(s: &S) {
    for i in 0..60 {
        s.create(&format!("/t/page/{i:03}"), val(format!("v{i}")))
            .await
            .unwrap();
    }
    let snapshot_rev = s.current_revision().await.unwrap();
    let expected: BTreeMap<String, Bytes> = list_all(s, "/t/page/", 0)
        .await
        .into_iter()
        .map(|kv| (kv.key, kv.value))
        .collect();
    assert_eq!(expected.len(), 60);

    // Writers keep changing the prefix while pages are read.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let s = s.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 500 {
                let key = format!("/t/page/{:03}", i % 60);
                if let Ok(Some(kv)) = s.get(&key).await {
                    if i % 7 == 0 {
                        let _ = s.delete(&key, kv.mod_revision).await;
                    } else {
                        let _ = s.update(&key, val(format!("w{i}")), kv.mod_revision).await;
                    }
                }
                let _ = s.create(&format!("/t/page/new{i:04}"), val("n")).await;
                i += 1;
            }
        })
    };

    let mut got = BTreeMap::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let resp = s
            .list(
                "/t/page/",
                ListOptions {
                    revision: snapshot_rev,
                    limit: 7,
                    continue_after: after.clone(),
                },
            )
            .await
            .unwrap();
        assert_eq!(resp.revision, snapshot_rev);
        assert!(resp.kvs.len() <= 7);
        pages += 1;
        let before = got.len();
        for kv in &resp.kvs {
            assert!(kv.mod_revision <= snapshot_rev);
            got.insert(kv.key.clone(), kv.value.clone());
        }
        assert_eq!(
            resp.remaining as usize,
            expected.len() - got.len(),
            "remaining after page {pages}"
        );
        assert_eq!(got.len(), before + resp.kvs.len(), "pages do not overlap");
        match resp.continue_after() {
            Some(k) => after = Some(k.to_owned()),
            None => break,
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    assert_eq!(pages, 9);
    assert_eq!(
        got, expected,
        "paged list at a fixed revision equals the snapshot"
    );
    assert!(
        s.current_revision().await.unwrap() > snapshot_rev,
        "writes did continue"
    );
}

pub async fn list_at_old_revision<S: Store>(s: &S) {
    let a = s.create("/t/a", val("a1")).await.unwrap();
    let b = s.create("/t/b", val("b1")).await.unwrap();
    let r1 = b.mod_revision;
    let a2 = s.update("/t/a", val("a2"), a.mod_revision).await.unwrap();
    s.delete("/t/b", b.mod_revision).await.unwrap();
    s.create("/t/c", val("c1")).await.unwrap();

    let at_r1 = list_all(s, "/t/", r1).await;
    assert_eq!(at_r1, vec![a.clone(), b.clone()]);
    let now = list_all(s, "/t/", 0).await;
    let keys: Vec<_> = now.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/t/a", "/t/c"]);
    assert_eq!(now[0], a2);
    assert_eq!(list_all(s, "/t/", a.mod_revision).await, vec![a]);
}

pub async fn count_keys<S: Store>(s: &S) {
    assert_eq!(s.count("/t/").await.unwrap(), 0);
    let mut last = None;
    for i in 0..25 {
        last = Some(s.create(&format!("/t/c/{i}"), val("x")).await.unwrap());
    }
    s.create("/t/other", val("x")).await.unwrap();
    assert_eq!(s.count("/t/c/").await.unwrap(), 25);
    let last = last.unwrap();
    s.delete(&last.key, last.mod_revision).await.unwrap();
    assert_eq!(s.count("/t/c/").await.unwrap(), 24);
    assert_eq!(s.count("/t/").await.unwrap(), 25);
}

pub async fn watch_delivers_puts_and_deletes_with_previous_values<S: Store>(s: &S) {
    let mut w = s.watch("/t/w/", 0).await.unwrap();
    let c = s.create("/t/w/a", val("1")).await.unwrap();
    let u = s.update("/t/w/a", val("2"), c.mod_revision).await.unwrap();
    let d = s.delete("/t/w/a", u.mod_revision).await.unwrap();

    let ev = next_event(&mut w).await;
    assert_eq!(ev.kind, EventKind::Put);
    assert_eq!(ev.kv, c);
    assert_eq!(ev.prev, None, "a create has no previous value");

    let ev = next_event(&mut w).await;
    assert_eq!(ev.kind, EventKind::Put);
    assert_eq!(ev.kv, u);
    assert_eq!(ev.prev, Some(c.clone()));

    let ev = next_event(&mut w).await;
    assert_eq!(ev.kind, EventKind::Delete);
    assert_eq!(ev.kv.key, "/t/w/a");
    assert_eq!(ev.kv.mod_revision, d.revision);
    assert!(ev.kv.value.is_empty());
    assert_eq!(ev.prev, Some(u));
    assert_quiet(&mut w).await;
}

pub async fn watch_orders_events_from_many_concurrent_writers<S: Store + Clone>(s: &S) {
    const WRITERS: usize = 16;
    const EACH: usize = 40;
    let mut w = s.watch("/t/cc/", 0).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..WRITERS {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let key = format!("/t/cc/{t:02}");
            let mut kv = s.create(&key, val(format!("{t}-0"))).await.unwrap();
            acked.push(kv.clone());
            for i in 1..EACH {
                kv = s
                    .update(&key, val(format!("{t}-{i}")), kv.mod_revision)
                    .await
                    .unwrap();
                acked.push(kv.clone());
            }
            acked
        }));
    }
    let mut acked: HashMap<Revision, KeyValue> = HashMap::new();
    for t in tasks {
        for kv in t.await.unwrap() {
            assert!(
                acked.insert(kv.mod_revision, kv).is_none(),
                "revisions are unique"
            );
        }
    }
    let mut last = 0;
    let mut latest_by_key: HashMap<String, KeyValue> = HashMap::new();
    for _ in 0..WRITERS * EACH {
        let ev = next_event(&mut w).await;
        assert!(
            ev.revision() > last,
            "events in revision order: {} after {last}",
            ev.revision()
        );
        last = ev.revision();
        let expected = acked
            .remove(&ev.revision())
            .expect("every event is an acknowledged write");
        assert_eq!(ev.kv, expected);
        assert_eq!(
            ev.prev.as_ref(),
            latest_by_key.get(&ev.kv.key),
            "previous value of {}",
            ev.kv.key
        );
        latest_by_key.insert(ev.kv.key.clone(), ev.kv);
    }
    assert!(acked.is_empty(), "every acknowledged write was delivered");
    assert_quiet(&mut w).await;
}

pub async fn watch_from_old_revision_replays_history<S: Store>(s: &S) {
    // A revision above 0: `after = 0` means "from now on".
    let start = s.create("/t/start", val("x")).await.unwrap().mod_revision;
    let mut written = Vec::new();
    let mut kv = s.create("/t/h/a", val("0")).await.unwrap();
    written.push(kv.clone());
    for i in 1..30 {
        kv = s
            .update("/t/h/a", val(i.to_string()), kv.mod_revision)
            .await
            .unwrap();
        written.push(kv.clone());
    }
    let b = s.create("/t/h/b", val("b")).await.unwrap();
    let del = s.delete("/t/h/b", b.mod_revision).await.unwrap();

    // From the start: everything, in order.
    let mut w = s.watch("/t/h/", start).await.unwrap();
    for (i, kv) in written.iter().enumerate() {
        let ev = next_event(&mut w).await;
        assert_eq!(&ev.kv, kv);
        assert_eq!(
            ev.prev.as_ref(),
            if i == 0 { None } else { Some(&written[i - 1]) }
        );
    }
    assert_eq!(next_event(&mut w).await.kv, b);
    let ev = next_event(&mut w).await;
    assert_eq!((ev.kind, ev.revision()), (EventKind::Delete, del.revision));
    assert_eq!(ev.prev, Some(b));
    // Live events follow the replay seamlessly.
    let c = s.create("/t/h/c", val("c")).await.unwrap();
    assert_eq!(next_event(&mut w).await.kv, c);

    // From the middle: only what came after.
    let mid = written[10].mod_revision;
    let mut w = s.watch("/t/h/", mid).await.unwrap();
    let ev = next_event(&mut w).await;
    assert_eq!(ev.kv, written[11]);
    assert_eq!(ev.prev, Some(written[10].clone()));
}

pub async fn watch_filters_by_prefix<S: Store>(s: &S) {
    let mut w = s.watch("/t/f/", 0).await.unwrap();
    s.create("/t/f0", val("x")).await.unwrap();
    s.create("/t/g/a", val("x")).await.unwrap();
    let mine = s.create("/t/f/a", val("x")).await.unwrap();
    let ev = next_event(&mut w).await;
    assert_eq!(ev.kv, mine);
    assert_quiet(&mut w).await;
}

pub async fn slow_watcher_gets_every_event<S: Store + Clone>(s: &S) {
    const N: usize = 3000;
    let mut w = s.watch("/t/slow/", 0).await.unwrap();
    // Write far more than any buffer holds without reading the watch.
    let mut tasks = Vec::new();
    for t in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..N / 8 {
                s.create(&format!("/t/slow/{t}/{i:05}"), val("x"))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut last = 0;
    for _ in 0..N {
        let ev = next_event(&mut w).await;
        assert!(ev.revision() > last);
        last = ev.revision();
    }
    assert_eq!(last, s.current_revision().await.unwrap());
    assert_quiet(&mut w).await;
}

pub async fn many_watchers_see_the_same_events<S: Store + Clone>(s: &S) {
    let mut watches = Vec::new();
    for _ in 0..50 {
        watches.push(s.watch("/t/m/", 0).await.unwrap());
    }
    let mut revs = Vec::new();
    for i in 0..20 {
        revs.push(
            s.create(&format!("/t/m/{i}"), val("x"))
                .await
                .unwrap()
                .mod_revision,
        );
    }
    for w in &mut watches {
        for rev in &revs {
            assert_eq!(next_event(w).await.revision(), *rev);
        }
    }
}

pub async fn compaction_errors_for_old_revisions<S: Store>(s: &S) {
    let mut kv = s.create("/t/k", val("0")).await.unwrap();
    let first = kv.mod_revision;
    for i in 1..10 {
        kv = s
            .update("/t/k", val(i.to_string()), kv.mod_revision)
            .await
            .unwrap();
    }
    let other = s.create("/t/other", val("o")).await.unwrap();
    let compact_at = kv.mod_revision;
    s.compact(compact_at).await.unwrap();

    // Reads at or after the compacted revision still work.
    assert_eq!(list_all(s, "/t/", compact_at).await, vec![kv.clone()]);
    assert_eq!(list_all(s, "/t/", 0).await, vec![kv.clone(), other.clone()]);
    assert_eq!(s.get("/t/k").await.unwrap(), Some(kv.clone()));

    // Older revisions are gone, with a distinct error.
    let err = s
        .list(
            "/t/",
            ListOptions {
                revision: first,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(err.is_compacted(), "list at a compacted revision: {err:?}");
    let watch_err = match s.watch("/t/", first).await {
        Err(e) => e,
        Ok(mut w) => match tokio::time::timeout(WAIT, w.next()).await {
            Ok(Some(Err(e))) => e,
            other => panic!("watch from a compacted revision must fail, got {other:?}"),
        },
    };
    assert!(watch_err.is_compacted(), "{watch_err:?}");
    // Compacting again to the same or an older revision is an error too.
    assert!(s.compact(compact_at).await.unwrap_err().is_compacted());

    // A watch from the compacted revision sees the later history, with
    // previous values intact.
    let mut w = s.watch("/t/", compact_at).await.unwrap();
    let ev = next_event(&mut w).await;
    assert_eq!(ev.kv, other);
    let next = s
        .update("/t/k", val("after"), kv.mod_revision)
        .await
        .unwrap();
    let ev = next_event(&mut w).await;
    assert_eq!(ev.kv, next);
    assert_eq!(ev.prev, Some(kv));
}

pub async fn future_revisions_are_errors<S: Store>(s: &S) {
    s.create("/t/a", val("x")).await.unwrap();
    let current = s.current_revision().await.unwrap();
    let err = s
        .list(
            "/t/",
            ListOptions {
                revision: current + 100,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::FutureRevision { .. }), "{err:?}");
    let err = s.compact(current + 100).await.unwrap_err();
    assert!(matches!(err, StoreError::FutureRevision { .. }), "{err:?}");
}

pub async fn large_values<S: Store>(s: &S) {
    let big: Bytes = (0..MAX_VALUE_BYTES)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    s.create("/t/first", val("x")).await.unwrap();
    let kv = s.create("/t/big", big.clone()).await.unwrap();
    assert_eq!(s.get("/t/big").await.unwrap().unwrap().value, big);
    let mut w = s.watch("/t/big", kv.mod_revision - 1).await.unwrap();
    assert_eq!(next_event(&mut w).await.kv.value, big);

    let too_big = Bytes::from(vec![b'x'; MAX_VALUE_BYTES + 1]);
    let rev = s.current_revision().await.unwrap();
    let err = s.create("/t/huge", too_big.clone()).await.unwrap_err();
    assert!(matches!(err, StoreError::ValueTooLarge { .. }), "{err:?}");
    let err = s
        .update("/t/big", too_big, kv.mod_revision)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ValueTooLarge { .. }), "{err:?}");
    assert_eq!(s.current_revision().await.unwrap(), rev);
    assert_eq!(s.get("/t/huge").await.unwrap(), None);
}

pub async fn invalid_keys_are_rejected<S: Store>(s: &S) {
    let start = s.current_revision().await.unwrap();
    let invalid = |r: Result<(), StoreError>| {
        assert!(matches!(r, Err(StoreError::InvalidKey { .. })), "{r:?}");
    };
    for key in ["", "relative", "/", "/trailing/", "/nul\0byte"] {
        invalid(s.create(key, val("x")).await.map(drop));
        invalid(s.get(key).await.map(drop));
        invalid(s.update(key, val("x"), 1).await.map(drop));
        invalid(s.delete(key, 1).await.map(drop));
    }
    for prefix in ["", "relative/", "/nul\0"] {
        invalid(s.list(prefix, ListOptions::default()).await.map(drop));
        invalid(s.count(prefix).await.map(drop));
        invalid(s.watch(prefix, 0).await.map(drop));
    }
    assert_eq!(
        s.current_revision().await.unwrap(),
        start,
        "no write happened"
    );
}
