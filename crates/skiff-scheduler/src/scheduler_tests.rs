#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::json;
use skiff_client::EventSink;
use skiff_client::events::PendingEvent;

use super::{PodStatusWriter, Scheduler};
use crate::cache::{Cache, CacheSnapshot};
use crate::framework::{Handle, Plugin, StaticLister};
use crate::metrics::SchedulerMetrics;
use crate::queue::{QueueName, SchedulingQueue};
use crate::run::{SchedulerOptions, build_frameworks};

#[derive(Debug, Default)]
struct Events(Mutex<Vec<PendingEvent>>);

impl EventSink for Events {
    fn record(&self, event: PendingEvent) {
        self.0.lock().unwrap().push(event);
    }
}

#[derive(Default)]
struct Statuses(Mutex<Vec<(String, String)>>);

impl PodStatusWriter for Statuses {
    fn set_unschedulable(&self, pod: &Pod, reason: &str, message: &str, _: Option<&str>) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        self.0
            .lock()
            .unwrap()
            .push((name, format!("{reason}: {message}")));
    }
}

fn pod(name: &str) -> Arc<Pod> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}")},
            "spec": {"containers": [{"name": "c", "image": "i",
                "resources": {"requests": {"cpu": "1"}}}]}
        }))
        .unwrap(),
    )
}

#[tokio::test]
async fn a_failed_binding_gives_its_room_back_to_the_pods_waiting_for_it() {
    // The default profile, whose DefaultBinder has no API client here: every
    // binding fails, as one does when the pod or the node is gone.
    let opts = SchedulerOptions::new();
    let handle = Handle {
        lister: Arc::new(StaticLister::default()),
    };
    let frameworks = build_frameworks(&opts, &handle).unwrap();
    let fwk = frameworks.values().next().unwrap().clone();
    let plugins: Vec<Arc<dyn Plugin>> = fwk.plugins().cloned().collect();
    let queue = Arc::new(SchedulingQueue::new(
        fwk.queue_sort().cloned(),
        HashMap::new(),
        &plugins,
        Duration::from_secs(1),
        Duration::from_secs(10),
    ));
    let cache = Arc::new(Cache::new());
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": "n1"},
        "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "110"}}
    }))
    .unwrap();
    cache.add_or_update_node(Arc::new(node));
    let events = Arc::new(Events::default());
    let statuses = Arc::new(Statuses::default());
    let sched = Arc::new(Scheduler {
        frameworks,
        queue: queue.clone(),
        cache: cache.clone(),
        events: events.clone(),
        status: statuses.clone(),
        metrics: SchedulerMetrics::new(),
    });
    let mut snap = CacheSnapshot::default();

    // a fits and is assumed onto n1; its binding runs as its own task, which
    // this single-threaded runtime starts only once the test waits.
    queue.add(pod("a"));
    let a = queue.pop().await.unwrap();
    sched.schedule_one(a, &mut snap).await;
    assert_eq!(cache.pod_node("ns/a").as_deref(), Some("n1"));
    // b does not fit beside the assumed a, and waits for a cluster event.
    queue.add(pod("b"));
    let b = queue.pop().await.unwrap();
    sched.schedule_one(b, &mut snap).await;
    assert_eq!(queue.queue_of("ns/b"), Some(QueueName::Unschedulable));
    let failed = statuses.0.lock().unwrap().clone();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "b");
    assert!(failed[0].1.contains("Insufficient cpu"), "{failed:?}");

    // a's binding fails: a leaves the cache and is requeued, and its leaving
    // n1 (a scheduled pod deleted, as NodeResourcesFit's hint reads it) sends
    // b back to be tried again rather than waiting for the periodic flush.
    for _ in 0..100 {
        if cache.pod_node("ns/a").is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(cache.pod_node("ns/a"), None);
    assert!(matches!(
        queue.queue_of("ns/a"),
        Some(QueueName::Backoff | QueueName::Active)
    ));
    assert!(
        matches!(
            queue.queue_of("ns/b"),
            Some(QueueName::Backoff | QueueName::Active)
        ),
        "{:?}",
        queue.queue_of("ns/b")
    );
    let failed = statuses.0.lock().unwrap().clone();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert_eq!(failed[1].0, "a");
    assert!(failed[1].1.contains("no API client"), "{failed:?}");
    let reasons: Vec<String> = events
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|e| format!("{} {}", e.reason, e.regarding.name.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(reasons, ["FailedScheduling b", "FailedScheduling a"]);
}
