//! The watch cache through the real HTTPS server, driven by kube-rs: many
//! watchers fed by one store watch, watches resumed from the event window
//! or (outside it) from the store, 410 Expired after compaction, consistent
//! paging while writers run, read-your-writes, and selector watches.

use crate::support::{self, Events, next_event};

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::core::ObjectMeta;
use skiff_apiserver::ApiServer;
use skiff_store::{AnyStore, Store};

fn cm(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A server whose store the test keeps a handle on (to compact it).
async fn start_with_store(dir: &Path) -> (ApiServer, kube::Client, AnyStore) {
    let (server, store) = support::start_server_with(dir, |_| {}).await;
    (server, support::client(dir).await, store)
}

fn rv(c: &ConfigMap) -> String {
    c.metadata.resource_version.clone().unwrap()
}

async fn watch(api: &Api<ConfigMap>, wp: &WatchParams, rv: &str) -> Events {
    api.watch(wp, rv).await.unwrap().boxed()
}

async fn relabel(api: &Api<ConfigMap>, name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    let mut c = api.get(name).await.unwrap();
    c.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
    api.replace(name, &PostParams::default(), &c).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_watchers_each_receive_one_update() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = support::start(dir.path(), 0).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    // Start the cache first: the watchers below resume inside its window.
    cms.list(&ListParams::default()).await.unwrap();
    let target = cms
        .create(&PostParams::default(), &cm("target", &[]))
        .await
        .unwrap();
    let wp = WatchParams::default().fields("metadata.name=target");
    let mut watchers = Vec::new();
    for chunk in 0..10 {
        let started = futures::future::join_all((0..100).map(|_| {
            let cms = cms.clone();
            let wp = wp.clone();
            let rv = rv(&target);
            async move { watch(&cms, &wp, &rv).await }
        }))
        .await;
        watchers.extend(started);
        assert_eq!(watchers.len(), (chunk + 1) * 100);
    }
    relabel(&cms, "target", &[("touched", "yes")]).await;
    let seen = futures::future::join_all(watchers.iter_mut().map(next_event)).await;
    assert_eq!(seen.len(), 1000);
    assert!(
        seen.iter()
            .all(|(kind, name)| *kind == "MODIFIED" && name == "target"),
        "{:?}",
        seen.iter().find(|(kind, _)| *kind != "MODIFIED")
    );
    drop(watchers);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_inside_the_window_with_exactly_the_later_events() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = support::start(dir.path(), 0).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    // Start the cache before the writes so they are all in its window.
    cms.list(&ListParams::default()).await.unwrap();
    let a = cms
        .create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap();
    cms.create(&PostParams::default(), &cm("b", &[]))
        .await
        .unwrap();
    relabel(&cms, "a", &[("x", "1")]).await;
    cms.delete("b", &DeleteParams::default()).await.unwrap();
    let mut w = watch(&cms, &WatchParams::default(), &rv(&a)).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(next_event(&mut w).await);
    }
    cms.create(&PostParams::default(), &cm("c", &[]))
        .await
        .unwrap();
    seen.push(next_event(&mut w).await);
    let expected = [
        ("ADDED", "b"),
        ("MODIFIED", "a"),
        ("DELETED", "b"),
        ("ADDED", "c"),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(k, n)| (*k, (*n).to_owned()))
        .collect();
    assert_eq!(seen, expected);
    drop(w);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revisions_before_the_cache_come_from_the_store_until_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client, store) = start_with_store(dir.path()).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    // Written straight to the store before anything started the cache:
    // outside its window.
    let key = "/registry/configmaps/default/a";
    let stored = |labels: serde_json::Value| {
        bytes::Bytes::from(
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
                "name": "a", "namespace": "default", "labels": labels,
                "uid": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
                "creationTimestamp": "2026-01-01T00:00:00Z"}})
            .to_string(),
        )
    };
    let created = store
        .create(key, stored(serde_json::json!({})))
        .await
        .unwrap();
    store
        .update(
            key,
            stored(serde_json::json!({"x": "1"})),
            created.mod_revision,
        )
        .await
        .unwrap();
    let a_rv = created.mod_revision.to_string();
    cms.list(&ListParams::default()).await.unwrap();
    let mut w = watch(&cms, &WatchParams::default(), &a_rv).await;
    assert_eq!(next_event(&mut w).await, ("MODIFIED", "a".to_owned()));
    drop(w);

    let current = store.current_revision().await.unwrap();
    store.compact(current).await.unwrap();
    let mut w = watch(&cms, &WatchParams::default(), &a_rv).await;
    let (kind, what) = next_event(&mut w).await;
    assert_eq!((kind, what.as_str()), ("ERROR", "410 Expired"));
    drop(w);
    // A list at a compacted exact revision is 410 as well.
    let err = cms
        .list(
            &ListParams::default()
                .at(&a_rv)
                .matching(kube::api::VersionMatch::Exact),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 410),
        "{err:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_read_their_own_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = support::start(dir.path(), 0).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    cms.list(&ListParams::default()).await.unwrap();
    for i in 0..30 {
        let name = format!("ryw-{i}");
        cms.create(&PostParams::default(), &cm(&name, &[]))
            .await
            .unwrap();
        let names: BTreeSet<String> = cms
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .collect();
        assert!(names.contains(&name), "{name} missing right after create");
        if i % 3 == 0 {
            cms.delete(&name, &DeleteParams::default()).await.unwrap();
            let list = cms.list(&ListParams::default()).await.unwrap();
            assert!(
                list.items
                    .iter()
                    .all(|c| c.metadata.name.as_deref() != Some(&name)),
                "{name} still listed after delete"
            );
        }
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_is_consistent_while_writers_run() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = support::start(dir.path(), 0).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    for i in 0..60 {
        cms.create(&PostParams::default(), &cm(&format!("p-{i:03}"), &[]))
            .await
            .unwrap();
    }
    let writer = {
        let cms = cms.clone();
        tokio::spawn(async move {
            for i in 0.. {
                let name = format!("p-{:03}", 1000 + i);
                cms.create(&PostParams::default(), &cm(&name, &[]))
                    .await
                    .unwrap();
                cms.delete(&format!("p-{:03}", i % 60), &DeleteParams::default())
                    .await
                    .ok();
            }
        })
    };
    for _ in 0..3 {
        let mut names = Vec::new();
        let mut lp = ListParams::default().limit(7);
        let mut first_rv = None;
        loop {
            let page = cms.list(&lp).await.unwrap();
            let page_rv = page.metadata.resource_version.clone().unwrap();
            first_rv.get_or_insert(page_rv.clone());
            names.extend(page.items.into_iter().map(|c| c.metadata.name.unwrap()));
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => {
                    assert!(page.metadata.remaining_item_count.unwrap() > 0);
                    lp = ListParams::default().limit(7).continue_token(&token);
                }
                _ => break,
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Every page shows the state at the first page's revision.
        let at = first_rv.unwrap();
        let whole = cms
            .list(
                &ListParams::default()
                    .at(&at)
                    .matching(kube::api::VersionMatch::Exact),
            )
            .await
            .unwrap();
        let expected: Vec<String> = whole
            .items
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .collect();
        assert_eq!(names, expected);
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "items come in key order");
    }
    writer.abort();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selector_watch_turns_edge_crossing_updates_into_added_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = support::start(dir.path(), 0).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    cms.create(&PostParams::default(), &cm("in", &[("app", "web")]))
        .await
        .unwrap();
    cms.create(&PostParams::default(), &cm("out", &[("app", "db")]))
        .await
        .unwrap();
    // From "0": the initial state from the cache, then changes.
    let mut w = watch(&cms, &WatchParams::default().labels("app=web"), "0").await;
    assert_eq!(next_event(&mut w).await, ("ADDED", "in".to_owned()));
    relabel(&cms, "out", &[("app", "web")]).await;
    relabel(&cms, "out", &[("app", "web"), ("tier", "1")]).await;
    relabel(&cms, "in", &[("app", "db")]).await;
    relabel(&cms, "in", &[("app", "cache")]).await;
    cms.delete("out", &DeleteParams::default()).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(next_event(&mut w).await);
    }
    let expected = [
        ("ADDED", "out"),
        ("MODIFIED", "out"),
        ("DELETED", "in"),
        ("DELETED", "out"),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(k, n)| (*k, (*n).to_owned()))
        .collect();
    assert_eq!(seen, expected);
    drop(w);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_does_not_read_does_not_hold_back_others() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = support::start(dir.path(), 0).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let list = cms.list(&ListParams::default()).await.unwrap();
    let start = list.metadata.resource_version.unwrap();
    // Never polled after the response headers.
    let _stalled = watch(&cms, &WatchParams::default(), &start).await;
    let mut live = watch(&cms, &WatchParams::default(), &start).await;
    let big: BTreeMap<String, String> = BTreeMap::from([("blob".into(), "x".repeat(64 * 1024))]);
    for i in 0..40 {
        let mut c = cm(&format!("s-{i}"), &[]);
        c.data = Some(big.clone());
        cms.create(&PostParams::default(), &c).await.unwrap();
    }
    for i in 0..40 {
        assert_eq!(next_event(&mut live).await, ("ADDED", format!("s-{i}")));
    }
    drop((live, _stalled));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_list_ends_its_initial_events_with_a_bookmark() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = support::start(dir.path(), 0).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    for name in ["c", "a", "b"] {
        cms.create(&PostParams::default(), &cm(name, &[]))
            .await
            .unwrap();
    }
    let mut w = watch(&cms, &WatchParams::streaming_lists(), "").await;
    let mut initial = Vec::new();
    let end_rv = loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), w.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match ev {
            WatchEvent::Added(c) => initial.push(c.metadata.name.unwrap()),
            WatchEvent::Bookmark(b) => {
                assert_eq!(
                    b.metadata.annotations.get("k8s.io/initial-events-end"),
                    Some(&"true".to_owned())
                );
                break b.metadata.resource_version;
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(initial, ["a", "b", "c"], "the current objects in key order");
    let d = cms
        .create(&PostParams::default(), &cm("d", &[]))
        .await
        .unwrap();
    assert!(rv(&d).parse::<i64>().unwrap() > end_rv.parse::<i64>().unwrap());
    assert_eq!(next_event(&mut w).await, ("ADDED", "d".to_owned()));
    drop(w);
    server.shutdown().await;
}

/// The first line of a raw watch of the default namespace's ConfigMaps.
async fn first_watch_line(client: &kube::Client, query: &str, accept: &str) -> String {
    use futures::AsyncBufReadExt;
    let req = http::Request::get(format!(
        "/api/v1/namespaces/default/configmaps?watch=true&{query}"
    ))
    .header("Accept", accept)
    .body(Vec::new())
    .unwrap();
    let stream = client.request_stream(req).await.unwrap();
    let stream = std::pin::pin!(stream);
    let mut lines = stream.lines();
    tokio::time::timeout(Duration::from_secs(10), lines.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_lines_give_the_type_before_the_object() {
    // Upstream's order; kube-rs decodes `{"object":...,"type":...}` only by
    // buffering the whole object first.
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = support::start(dir.path(), 0).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let start = cms.list(&ListParams::default()).await.unwrap();
    let start = start.metadata.resource_version.unwrap();
    cms.create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap();
    // From the cache as stored JSON, as a Table (kubectl get -w), and a
    // bookmark.
    for accept in [
        "application/json",
        "application/json;as=Table;v=v1;g=meta.k8s.io",
    ] {
        let line = first_watch_line(&client, &format!("resourceVersion={start}"), accept).await;
        assert!(
            line.starts_with(r#"{"type":"ADDED","object":{"#),
            "{accept}: {line}"
        );
    }
    let bookmark = first_watch_line(
        &client,
        "sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&fieldSelector=metadata.name%3Dnone",
        "application/json",
    )
    .await;
    assert!(
        bookmark.starts_with(r#"{"type":"BOOKMARK","object":{"#),
        "{bookmark}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_comes_in_few_chunks_every_event_once_in_order() {
    use http_body_util::BodyExt;
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = support::start(dir.path(), 0).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let start = cms.list(&ListParams::default()).await.unwrap();
    let start = start.metadata.resource_version.unwrap();
    let names: Vec<String> = (0..40).map(|i| format!("cm-{i:02}")).collect();
    for name in &names {
        cms.create(&PostParams::default(), &cm(name, &[]))
            .await
            .unwrap();
    }
    // Resumed behind the writes: the backlog is ready at once.
    let req = http::Request::get(format!(
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={start}"
    ))
    .body(kube::client::Body::empty())
    .unwrap();
    let mut body = client.send(req).await.unwrap().into_body();
    let (mut text, mut frames) = (String::new(), 0);
    while text.lines().count() < names.len() {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("no watch data within 10 s")
            .expect("watch ended")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            frames += 1;
            text.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
    let seen: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let name = v["object"]["metadata"]["name"].as_str().unwrap().to_owned();
            (v["type"].as_str().unwrap().to_owned(), name)
        })
        .collect();
    let expected: Vec<(String, String)> = names
        .iter()
        .map(|n| ("ADDED".to_owned(), n.clone()))
        .collect();
    assert_eq!(seen, expected);
    assert!(
        frames < names.len() / 2,
        "{} events came in {frames} chunks",
        names.len()
    );
    drop(body);
    server.shutdown().await;
}

/// Events are left out of the watch cache (as upstream's default watch
/// cache sizes leave them): every read of them goes to the store, which
/// serves the same answers — selectors, paging, both APIs, watches from a
/// list, resumed, and 410 after compaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_served_from_the_store() {
    use k8s_openapi::api::core::v1::{Event, ObjectReference};
    use k8s_openapi::api::events::v1::Event as NewEvent;

    let dir = tempfile::tempdir().unwrap();
    let (server, client, store) = start_with_store(dir.path()).await;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let new_events: Api<NewEvent> = Api::namespaced(client.clone(), "default");
    let event = |name: &str, pod: &str| Event {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            kind: Some("Pod".to_owned()),
            name: Some(pod.to_owned()),
            namespace: Some("default".to_owned()),
            ..Default::default()
        },
        reason: Some("Scheduled".to_owned()),
        message: Some(format!("placed {pod}")),
        type_: Some("Normal".to_owned()),
        ..Default::default()
    };
    for (name, pod) in [("e1", "a"), ("e2", "b"), ("e3", "a")] {
        events
            .create(&PostParams::default(), &event(name, pod))
            .await
            .unwrap();
    }
    let names = |items: Vec<Event>| -> Vec<String> {
        items
            .into_iter()
            .map(|e| e.metadata.name.unwrap())
            .collect()
    };
    // Consistent lists read their writes; field selectors and paging hold.
    let all = events.list(&ListParams::default()).await.unwrap();
    assert_eq!(names(all.items.clone()), ["e1", "e2", "e3"]);
    let of_a = events
        .list(&ListParams::default().fields("involvedObject.name=a"))
        .await
        .unwrap();
    assert_eq!(names(of_a.items), ["e1", "e3"]);
    let first = events.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(names(first.items), ["e1", "e2"]);
    let token = first.metadata.continue_.clone().unwrap();
    let rest = events
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(names(rest.items), ["e3"]);
    // The other API reads the same objects.
    let as_new = new_events.list(&ListParams::default()).await.unwrap();
    assert_eq!(as_new.items.len(), 3);
    assert_eq!(as_new.items[0].note.as_deref(), Some("placed a"));

    // A watch from the list's revision sees exactly the later changes.
    let list_rv = all.metadata.resource_version.clone().unwrap();
    let from_list = || async {
        events
            .watch(&WatchParams::default(), &list_rv)
            .await
            .unwrap()
            .boxed()
    };
    let mut w = from_list().await;
    events
        .create(&PostParams::default(), &event("e4", "b"))
        .await
        .unwrap();
    events.delete("e2", &DeleteParams::default()).await.unwrap();
    assert_eq!(next_event(&mut w).await, ("ADDED", "e4".to_owned()));
    assert_eq!(next_event(&mut w).await, ("DELETED", "e2".to_owned()));
    drop(w);
    // A watch without a revision starts with the current objects; a
    // selector watch of the other API gets only its matches.
    let mut w = new_events
        .watch(&WatchParams::default().fields("regarding.name=b"), "0")
        .await
        .unwrap()
        .boxed();
    assert_eq!(next_event(&mut w).await, ("ADDED", "e4".to_owned()));
    drop(w);
    // Resumed from the first list again: the same two changes.
    let mut w = from_list().await;
    assert_eq!(next_event(&mut w).await, ("ADDED", "e4".to_owned()));
    assert_eq!(next_event(&mut w).await, ("DELETED", "e2".to_owned()));
    drop(w);
    // History compacted away: 410 Expired, as from the cache.
    store
        .compact(store.current_revision().await.unwrap())
        .await
        .unwrap();
    let mut w = from_list().await;
    assert_eq!(
        next_event(&mut w).await,
        ("ERROR", "410 Expired".to_owned())
    );
    server.shutdown().await;
}
