//! Events expire `--event-ttl` after their last write, as upstream's etcd
//! leases make them, and never before; other objects stay.

use crate::support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Event, ObjectReference};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::core::ObjectMeta;

fn event(name: &str, message: &str) -> Event {
    Event {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            kind: Some("Pod".to_owned()),
            name: Some("p".to_owned()),
            namespace: Some("default".to_owned()),
            ..Default::default()
        },
        reason: Some("Tested".to_owned()),
        message: Some(message.to_owned()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_expire_a_ttl_after_their_last_write() {
    let ttl = Duration::from_secs(2);
    let dir = tempfile::tempdir().unwrap();
    let (server, _store) = support::start_server_with(dir.path(), |c| c.event_ttl = ttl).await;
    let client = support::client(dir.path()).await;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let kept = ConfigMap {
        metadata: ObjectMeta {
            name: Some("kept".to_owned()),
            ..Default::default()
        },
        ..Default::default()
    };
    cms.create(&PostParams::default(), &kept).await.unwrap();
    let from = events.list(&ListParams::default()).await.unwrap();
    let mut w = events
        .watch(
            &WatchParams::default(),
            from.metadata.resource_version.as_deref().unwrap(),
        )
        .await
        .unwrap()
        .boxed();

    // Each event's last write was sent at or after these instants.
    let mut written = HashMap::new();
    for name in ["a", "b"] {
        written.insert(name.to_owned(), Instant::now());
        events
            .create(&PostParams::default(), &event(name, "first"))
            .await
            .unwrap();
    }
    tokio::time::sleep(ttl / 2).await;
    // b written again: its life starts over.
    let mut b = events.get("b").await.unwrap();
    b.message = Some("again".to_owned());
    written.insert("b".to_owned(), Instant::now());
    events
        .replace("b", &PostParams::default(), &b)
        .await
        .unwrap();

    let mut deleted = HashMap::new();
    while deleted.len() < 2 {
        let ev = tokio::time::timeout(ttl * 10, w.try_next())
            .await
            .expect("an event should expire within ten TTLs")
            .unwrap()
            .expect("watch ended");
        if let WatchEvent::Deleted(e) = ev {
            deleted.insert(e.metadata.name.unwrap(), Instant::now());
        }
    }
    for (name, at) in &deleted {
        let age = at.duration_since(written[name]);
        assert!(age >= ttl, "{name} deleted {age:?} after its last write");
    }
    assert!(
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    cms.get("kept").await.unwrap();
    server.shutdown().await;
}
