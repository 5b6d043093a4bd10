//! The event recorder against the real API server: repeats fold into one
//! Event's series, other events stay apart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;
use skiff_apiserver::{ApiServer, ApiServerConfig};
use skiff_client::events::PendingEvent;
use skiff_client::{EventRecorder, EventSink};
use skiff_store::AnyStore;

async fn start_server(dir: &Path) -> (ApiServer, kube::Client) {
    let store = AnyStore::open(&[], dir).await.unwrap();
    let server = ApiServer::start(ApiServerConfig::loopback(dir), store)
        .await
        .unwrap();
    let client = skiff_client::kubeconfig::client_from(&dir.join("kubeconfig.yaml"))
        .await
        .unwrap();
    (server, client)
}

fn about(kind: &str, namespace: Option<&str>, name: &str, reason: &str) -> PendingEvent {
    PendingEvent {
        regarding: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some(kind.into()),
            namespace: namespace.map(str::to_owned),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        },
        normal: reason != "Failed",
        reason: reason.into(),
        action: "Testing".into(),
        note: format!("{reason} {name}"),
    }
}

/// Lists events until `done` holds for them (the recorder writes in the
/// background).
async fn events_until(api: &Api<Event>, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
    for _ in 0..200 {
        let list = api.list(&ListParams::default()).await.unwrap().items;
        if done(&list) {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("events never reached the expected state");
}

#[tokio::test]
async fn repeats_become_one_series_and_other_events_stay_apart() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, client) = start_server(dir.path()).await;
    let rec = EventRecorder::spawn(client.clone(), "skiff-test", "skiff-test-1", 100);
    for _ in 0..3 {
        rec.record(about("Pod", Some("default"), "p1", "Created"));
    }
    rec.record(about("Pod", Some("default"), "p1", "Failed"));
    rec.record(about("Pod", Some("default"), "p2", "Created"));
    // A cluster-scoped object's events go to "default".
    rec.record(about("Node", None, "n1", "Created"));

    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    let count = |e: &Event| e.series.as_ref().map_or(1, |s| s.count);
    let list = events_until(&api, |l| {
        l.len() == 4 && l.iter().map(count).sum::<i32>() == 6
    })
    .await;
    let find = |name: &str, reason: &str| {
        list.iter()
            .find(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                    && e.reason.as_deref() == Some(reason)
            })
            .unwrap_or_else(|| panic!("no {reason} event for {name}"))
    };
    let repeated = find("p1", "Created");
    assert_eq!(count(repeated), 3);
    assert!(
        repeated
            .metadata
            .name
            .as_deref()
            .unwrap()
            .starts_with("p1.")
    );
    assert_eq!(repeated.reporting_controller.as_deref(), Some("skiff-test"));
    assert_eq!(repeated.reporting_instance.as_deref(), Some("skiff-test-1"));
    assert_eq!(repeated.note.as_deref(), Some("Created p1"));
    let series = repeated.series.as_ref().unwrap();
    assert!(series.last_observed_time.0 >= repeated.event_time.as_ref().unwrap().0);
    let failed = find("p1", "Failed");
    assert_eq!(failed.type_.as_deref(), Some("Warning"));
    assert!(failed.series.is_none());
    assert!(find("p2", "Created").series.is_none());
    assert_eq!(find("n1", "Created").type_.as_deref(), Some("Normal"));

    // The series' event deleted (as the event TTL would): the next repeat
    // starts a new event rather than failing.
    let first = repeated.metadata.name.clone().unwrap();
    api.delete(&first, &Default::default()).await.unwrap();
    rec.record(about("Pod", Some("default"), "p1", "Created"));
    let list = events_until(&api, |l| {
        l.len() == 4
            && l.iter().any(|e| {
                e.reason.as_deref() == Some("Created")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("p1")
            })
    })
    .await;
    let fresh = list
        .iter()
        .find(|e| {
            e.reason.as_deref() == Some("Created") && e.metadata.name.as_deref() != Some(&first)
        })
        .unwrap();
    assert!(fresh.series.is_none());
}

#[tokio::test]
async fn a_rate_limited_recorder_writes_its_burst_at_once_then_paces_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, client) = start_server(dir.path()).await;
    // 5 a second after a burst of 2: six events span at least 0.8 s.
    let rec = EventRecorder::spawn_limited(
        client.clone(),
        "skiff-test",
        "skiff-test-1",
        100,
        skiff_client::rate::TokenBucket::new(5.0, 2),
    );
    for i in 0..6 {
        rec.record(about("Pod", Some("default"), &format!("p{i}"), "Created"));
    }
    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    let list = events_until(&api, |l| l.len() == 6).await;
    let mut times: Vec<_> = list
        .iter()
        .map(|e| e.event_time.as_ref().unwrap().0)
        .collect();
    times.sort();
    let span = |a: usize, b: usize| times[b].duration_since(times[a]).as_secs_f64();
    // Whatever the write latency, no window of T seconds holds more than
    // 2 + 5T of them: the six span at least 0.8 s.
    assert!(span(0, 5) >= 0.75, "six events in {} s", span(0, 5));
    // Every event was written once, in its own Event.
    let mut names: Vec<_> = list
        .iter()
        .filter_map(|e| e.regarding.as_ref()?.name.clone())
        .collect();
    names.sort();
    assert_eq!(names, ["p0", "p1", "p2", "p3", "p4", "p5"]);
}
