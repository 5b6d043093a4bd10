#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::json;

use super::PodHandler;
use crate::cache::{Cache, CacheSnapshot};
use crate::framework::PodInfo;
use crate::queue::{QueueName, SchedulingQueue};

fn pod(name: &str, node: Option<&str>, scheduler: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"containers": [{"name": "c", "image": "i",
            "resources": {"requests": {"cpu": "1"}}}],
            "nodeName": node, "schedulerName": scheduler}
    }))
    .unwrap()
}

fn handler() -> PodHandler {
    let queue = Arc::new(SchedulingQueue::new(
        None,
        HashMap::new(),
        &[],
        Duration::from_secs(1),
        Duration::from_secs(10),
    ));
    let cache = Arc::new(Cache::new());
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": "n1"},
        "status": {"allocatable": {"cpu": "4", "pods": "110"}}
    }))
    .unwrap();
    cache.add_or_update_node(Arc::new(node));
    PodHandler::new(
        HashSet::from(["default-scheduler".to_owned()]),
        cache,
        queue,
    )
}

fn requested_cpu(cache: &Cache) -> i64 {
    let mut snap = CacheSnapshot::default();
    cache.update_snapshot(&mut snap);
    snap.snapshot.get("n1").unwrap().requested.milli_cpu
}

#[tokio::test(start_paused = true)]
async fn pods_move_from_the_queue_to_the_cache_when_bound() {
    let mut h = handler();
    h.apply(pod("mine", None, "default-scheduler"));
    h.apply(pod("theirs", None, "other-scheduler"));
    assert_eq!(h.queue.queue_of("ns/mine"), Some(QueueName::Active));
    assert_eq!(h.queue.queue_of("ns/theirs"), None);

    h.apply(pod("mine", Some("n1"), "default-scheduler"));
    assert_eq!(h.queue.queue_of("ns/mine"), None);
    assert_eq!(h.cache.pod_node("ns/mine").as_deref(), Some("n1"));
    assert_eq!(requested_cpu(&h.cache), 1000);

    h.delete("ns/mine");
    assert_eq!(h.cache.pod_node("ns/mine"), None);
    assert_eq!(requested_cpu(&h.cache), 0);
}

#[tokio::test(start_paused = true)]
async fn an_assumed_pod_seen_only_pending_leaves_the_cache_on_deletion() {
    let mut h = handler();
    let pending = pod("p", None, "default-scheduler");
    h.apply(pending.clone());
    let popped = h.queue.pop().await.unwrap();
    let assumed = pod("p", Some("n1"), "default-scheduler");
    h.cache
        .assume_pod(Arc::new(PodInfo::new(Arc::new(assumed))), "n1")
        .unwrap();
    assert_eq!(requested_cpu(&h.cache), 1000);
    // The binding landed and the pod was deleted while the watch was down:
    // the relist reports only that the pending pod is gone.
    h.delete("ns/p");
    assert_eq!(h.cache.pod_node("ns/p"), None);
    assert_eq!(requested_cpu(&h.cache), 0);
    // The in-flight attempt is dropped, not requeued.
    h.queue.add_unschedulable_if_not_present(popped);
    assert!(h.queue.is_empty());
}
