#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::*;
use crate::framework::{EventResource, PreEnqueuePlugin, Status, action};

/// Rejects pods on nodes; interested in new nodes only.
struct NodeWaiter;
impl Plugin for NodeWaiter {
    fn name(&self) -> &'static str {
        "NodeWaiter"
    }
    fn events_to_register(&self) -> Vec<ClusterEvent> {
        vec![ClusterEvent {
            resource: EventResource::Node,
            action: action::ADD,
        }]
    }
}

/// Gates pods labelled `gated`.
struct Gate;
impl Plugin for Gate {
    fn name(&self) -> &'static str {
        "Gate"
    }
    fn as_pre_enqueue(&self) -> Option<&dyn PreEnqueuePlugin> {
        Some(self)
    }
}
impl PreEnqueuePlugin for Gate {
    fn pre_enqueue(&self, pod: &Pod) -> Status {
        if pod
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key("gated"))
        {
            Status::unresolvable("gated")
        } else {
            Status::success()
        }
    }
}

fn queue() -> SchedulingQueue {
    let gate: Arc<dyn Plugin> = Arc::new(Gate);
    let plugins: Vec<Arc<dyn Plugin>> = vec![Arc::new(NodeWaiter), gate.clone()];
    SchedulingQueue::new(
        None,
        HashMap::from([("default-scheduler".to_owned(), vec![gate])]),
        &plugins,
        Duration::from_secs(1),
        Duration::from_secs(10),
    )
}

fn pod(name: &str, priority: i32, gated: bool) -> Arc<Pod> {
    let labels = if gated {
        json!({"gated": "y"})
    } else {
        json!({})
    };
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "labels": labels},
            "spec": {"containers": [], "priority": priority}
        }))
        .unwrap(),
    )
}

const NODE_ADD: ClusterEvent = ClusterEvent {
    resource: EventResource::Node,
    action: action::ADD,
};

async fn pop_within(q: &SchedulingQueue, d: Duration) -> Option<QueuedPodInfo> {
    tokio::time::timeout(d, q.pop()).await.ok().flatten()
}

fn reject(mut p: QueuedPodInfo, plugin: &'static str) -> QueuedPodInfo {
    p.unschedulable_plugins = BTreeSet::from([plugin]);
    p
}

#[test]
fn backoff_doubles_from_one_to_ten_seconds() {
    let q = queue();
    let got: Vec<u64> = (1..=6).map(|a| q.backoff_duration(a).as_secs()).collect();
    assert_eq!(got, vec![1, 2, 4, 8, 10, 10]);
}

#[tokio::test(start_paused = true)]
async fn pops_by_priority_then_age() {
    let q = queue();
    q.add(pod("low", 1, false));
    tokio::time::advance(Duration::from_millis(1)).await;
    q.add(pod("high", 10, false));
    tokio::time::advance(Duration::from_millis(1)).await;
    q.add(pod("mid", 5, false));
    tokio::time::advance(Duration::from_millis(1)).await;
    q.add(pod("mid2", 5, false));
    let mut order = Vec::new();
    for _ in 0..4 {
        order.push(q.pop().await.unwrap().pod_info.key.clone());
    }
    assert_eq!(order, vec!["ns/high", "ns/mid", "ns/mid2", "ns/low"]);
    assert!(q.is_empty());
}

#[tokio::test(start_paused = true)]
async fn unschedulable_pods_move_on_a_registered_event_and_are_tried_when_nothing_is_active() {
    let q = queue();
    q.add(pod("p", 0, false));
    let p = q.pop().await.unwrap();
    assert_eq!(p.attempts, 1);
    q.add_unschedulable_if_not_present(reject(p, "NodeWaiter"));
    assert_eq!(q.queue_of("ns/p"), Some(QueueName::Unschedulable));
    // An event NodeWaiter did not register leaves it parked.
    q.move_all_to_active_or_backoff(ClusterEvent {
        resource: EventResource::Pod,
        action: action::DELETE,
    });
    assert_eq!(q.queue_of("ns/p"), Some(QueueName::Unschedulable));
    assert!(pop_within(&q, Duration::from_millis(10)).await.is_none());
    q.move_all_to_active_or_backoff(NODE_ADD);
    assert_eq!(q.queue_of("ns/p"), Some(QueueName::Backoff));
    // Backing off, but activeQ is empty: tried now, not in a second.
    let p = pop_within(&q, Duration::from_millis(1)).await.unwrap();
    assert_eq!(p.attempts, 2);
}

#[tokio::test(start_paused = true)]
async fn active_pods_go_before_backing_off_ones() {
    let q = queue();
    q.add(pod("old", 100, false));
    let p = q.pop().await.unwrap();
    q.add_unschedulable_if_not_present(reject(p, "NodeWaiter"));
    q.move_all_to_active_or_backoff(NODE_ADD);
    q.add(pod("new", 0, false));
    // Lower priority, but active: first.
    let first = pop_within(&q, Duration::from_millis(1)).await.unwrap();
    assert_eq!(first.pod_info.key, "ns/new");
    assert_eq!(q.queue_of("ns/old"), Some(QueueName::Backoff));
    let second = pop_within(&q, Duration::from_millis(1)).await.unwrap();
    assert_eq!(second.pod_info.key, "ns/old");
}

#[tokio::test(start_paused = true)]
async fn backoff_pods_leave_by_window_then_priority() {
    let q = queue();
    for (name, priority) in [("a", 1), ("b", 10), ("c", 100)] {
        q.add(pod(name, priority, false));
    }
    let mut popped: HashMap<String, QueuedPodInfo> = HashMap::new();
    for _ in 0..3 {
        let p = q.pop().await.unwrap();
        popped.insert(p.pod_info.key.clone(), p);
    }
    // a and b fail in the same window (expiring in window 1), c later
    // (window 2): b outranks a, and c waits for its later window despite
    // its priority.
    for (key, at) in [("ns/a", 100), ("ns/b", 400), ("ns/c", 700)] {
        tokio::time::advance(Duration::from_millis(at)).await;
        let p = popped.remove(key).unwrap();
        q.add_unschedulable_if_not_present(reject(p, "NodeWaiter"));
    }
    q.move_all_to_active_or_backoff(NODE_ADD);
    // All still backing off, and activeQ empty: taken at once, in order.
    let mut order = Vec::new();
    for _ in 0..3 {
        let p = pop_within(&q, Duration::from_millis(1)).await.unwrap();
        order.push(p.pod_info.key.clone());
    }
    assert_eq!(order, ["ns/b", "ns/a", "ns/c"]);
}

#[tokio::test(start_paused = true)]
async fn errors_wait_out_their_back_off_to_the_end_of_its_window() {
    let q = queue();
    q.add(pod("err", 0, false));
    tokio::time::advance(Duration::from_millis(300)).await;
    let p = q.pop().await.unwrap();
    // No plugin rejected it: an error. Its 1 s back-off expires at 1.3 s,
    // in window [1 s, 2 s); it is over when that window is.
    q.add_unschedulable_if_not_present(p);
    assert_eq!(q.queue_of("ns/err"), Some(QueueName::Backoff));
    assert!(pop_within(&q, Duration::from_millis(1650)).await.is_none());
    let p = pop_within(&q, Duration::from_millis(100)).await.unwrap();
    assert_eq!(p.attempts, 2);
    // The second failure (at 2 s) backs off 2 s: over at 5 s.
    q.add_unschedulable_if_not_present(p);
    assert!(pop_within(&q, Duration::from_millis(2950)).await.is_none());
    assert_eq!(
        pop_within(&q, Duration::from_millis(100))
            .await
            .unwrap()
            .attempts,
        3
    );
}

#[tokio::test(start_paused = true)]
async fn a_zero_max_backoff_turns_back_off_off() {
    let q = SchedulingQueue::new(
        None,
        HashMap::new(),
        &[],
        Duration::from_secs(1),
        Duration::ZERO,
    );
    q.add(pod("err", 0, false));
    let p = q.pop().await.unwrap();
    q.add_unschedulable_if_not_present(p);
    assert_eq!(q.queue_of("ns/err"), Some(QueueName::Backoff));
    let p = pop_within(&q, Duration::from_millis(1)).await.unwrap();
    assert_eq!(p.attempts, 2);
}

#[tokio::test(start_paused = true)]
async fn an_event_during_the_attempt_sends_the_pod_to_backoff() {
    let q = queue();
    q.add(pod("p", 0, false));
    let p = q.pop().await.unwrap();
    q.move_all_to_active_or_backoff(NODE_ADD);
    q.add_unschedulable_if_not_present(reject(p, "NodeWaiter"));
    assert_eq!(q.queue_of("ns/p"), Some(QueueName::Backoff));
}

#[tokio::test(start_paused = true)]
async fn errors_back_off_and_leftovers_flush_after_five_minutes() {
    let q = queue();
    q.add(pod("err", 0, false));
    q.add(pod("stuck", 0, false));
    let a = q.pop().await.unwrap();
    let b = q.pop().await.unwrap();
    let (err, stuck) = if a.pod_info.key == "ns/err" {
        (a, b)
    } else {
        (b, a)
    };
    q.add_unschedulable_if_not_present(err);
    assert_eq!(q.queue_of("ns/err"), Some(QueueName::Backoff));
    q.add_unschedulable_if_not_present(reject(stuck, "NodeWaiter"));
    assert_eq!(
        pop_within(&q, Duration::from_secs(3))
            .await
            .unwrap()
            .pod_info
            .key,
        "ns/err"
    );
    q.done("ns/err");
    assert!(pop_within(&q, Duration::from_secs(290)).await.is_none());
    let p = pop_within(&q, Duration::from_secs(60)).await.unwrap();
    assert_eq!(p.pod_info.key, "ns/stuck");
}

#[tokio::test(start_paused = true)]
async fn pods_deleted_in_flight_are_dropped_and_updates_are_kept() {
    let q = queue();
    q.add(pod("gone", 0, false));
    let p = q.pop().await.unwrap();
    q.delete("ns/gone");
    q.add_unschedulable_if_not_present(p);
    assert!(q.is_empty());

    q.add(pod("upd", 0, false));
    let p = q.pop().await.unwrap();
    let old = p.pod_info.pod.clone();
    q.update(old, pod("upd", 42, false));
    q.add_unschedulable_if_not_present(p);
    tokio::time::advance(Duration::from_secs(1)).await;
    let p = q.pop().await.unwrap();
    assert_eq!(p.pod_info.pod.spec.as_ref().unwrap().priority, Some(42));
}

#[tokio::test(start_paused = true)]
async fn pre_enqueue_gates_until_an_update_lifts_the_gate() {
    let q = queue();
    q.add(pod("g", 0, true));
    assert_eq!(q.queue_of("ns/g"), Some(QueueName::Unschedulable));
    assert!(pop_within(&q, Duration::from_millis(10)).await.is_none());
    q.update(pod("g", 0, true), pod("g", 0, false));
    assert_eq!(q.queue_of("ns/g"), Some(QueueName::Active));
    assert_eq!(q.pop().await.unwrap().pod_info.key, "ns/g");
}

fn nominated_names(q: &SchedulingQueue, node: &str) -> Vec<String> {
    q.nominated_pods_for_node(node)
        .iter()
        .flat_map(|l| l.iter())
        .map(|p| p.key.clone())
        .collect()
}

#[test]
fn nominations_from_preemption_survive_updates_until_overridden() {
    let q = queue();
    let p = pod("p", 10, false);
    q.add(p.clone());
    assert!(!q.has_nominated_pods());
    let info = Arc::new(PodInfo::new(p.clone()));
    q.set_nominated_node(&info, "n1");
    assert_eq!(nominated_names(&q, "n1"), ["ns/p"]);
    // An update that predates the status patch keeps the nomination.
    let mut relabelled = (*p).clone();
    relabelled.metadata.labels = Some([("a".to_owned(), "b".to_owned())].into());
    let relabelled = Arc::new(relabelled);
    q.update(p.clone(), relabelled.clone());
    assert_eq!(nominated_names(&q, "n1"), ["ns/p"]);
    // The status names another node: that wins.
    let mut moved = (*relabelled).clone();
    moved.status = Some(serde_json::from_value(json!({"nominatedNodeName": "n2"})).unwrap());
    let moved = Arc::new(moved);
    q.update(relabelled, moved.clone());
    assert!(nominated_names(&q, "n1").is_empty());
    assert_eq!(nominated_names(&q, "n2"), ["ns/p"]);
    // The status clears it: gone.
    let mut cleared = (*moved).clone();
    cleared.status = None;
    q.update(moved, Arc::new(cleared));
    assert!(!q.has_nominated_pods());
    // Cleared in memory ("" overrides), and deleted pods lose it too.
    q.set_nominated_node(&info, "n3");
    q.set_nominated_node(&info, "");
    assert!(!q.has_nominated_pods());
    q.set_nominated_node(&info, "n3");
    q.delete("ns/p");
    assert!(!q.has_nominated_pods());
}

#[tokio::test(start_paused = true)]
async fn a_waiting_pop_takes_a_pod_moved_to_backoff() {
    let q = Arc::new(queue());
    q.add(pod("p", 0, false));
    let p = q.pop().await.unwrap();
    q.add_unschedulable_if_not_present(reject(p, "NodeWaiter"));
    // pop() is parked (nothing active, nothing backing off) when the
    // event arrives; it must wake and take the pod (activeQ is empty), not
    // sleep until the next unschedulable flush 30 s away.
    let waiting = tokio::spawn({
        let q = q.clone();
        async move { pop_within(&q, Duration::from_millis(20)).await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    q.move_all_to_active_or_backoff(NODE_ADD);
    let p = waiting.await.unwrap().expect("popped at once");
    assert_eq!(p.pod_info.key, "ns/p");
}

#[tokio::test(start_paused = true)]
async fn pending_counts_split_unschedulable_from_gated() {
    let q = queue();
    // One pod rejected, then moved to backoff by an event it waits for.
    q.add(pod("backing-off", 0, false));
    let p = q.pop().await.unwrap();
    q.add_unschedulable_if_not_present(reject(p, "NodeWaiter"));
    q.move_all_to_active_or_backoff(NODE_ADD);
    // One rejected after that event: it stays unschedulable.
    q.add(pod("waiting", 0, false));
    let p = q.pop().await.unwrap();
    assert_eq!(p.pod_info.key, "ns/waiting");
    q.add_unschedulable_if_not_present(reject(p, "NodeWaiter"));
    q.add(pod("gated", 0, true));
    q.add(pod("a", 0, false));
    q.add(pod("b", 0, false));
    assert_eq!(
        q.pending_counts(),
        crate::metrics::PendingCounts {
            active: 2,
            backoff: 1,
            unschedulable: 1,
            gated: 1,
        }
    );
}

#[tokio::test(start_paused = true)]
async fn queueing_hints_leave_pods_waiting_on_events_that_cannot_help() {
    let (_, factory) = crate::plugins::registry()
        .into_iter()
        .find(|(n, _)| *n == "NodeResourcesFit")
        .unwrap();
    let fit = factory(None, &crate::plugins::testing::handle()).unwrap();
    let q = SchedulingQueue::new(
        None,
        HashMap::new(),
        &[fit],
        Duration::from_secs(1),
        Duration::from_secs(10),
    );
    let big: Arc<Pod> = Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": "big", "namespace": "ns"},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "8"}}}]}
        }))
        .unwrap(),
    );
    q.add(big);
    let p = q.pop().await.unwrap();
    q.add_unschedulable_if_not_present(reject(p, "NodeResourcesFit"));
    let node = |cpu: &str| -> Arc<k8s_openapi::api::core::v1::Node> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "n"},
                "status": {"allocatable": {"cpu": cpu, "pods": "110"}}
            }))
            .unwrap(),
        )
    };
    // A node too small for the pod joins: it stays parked.
    q.move_on_event(
        NODE_ADD,
        &EventObjects::Node {
            old: None,
            new: Some(node("4")),
        },
    );
    assert_eq!(q.queue_of("ns/big"), Some(QueueName::Unschedulable));
    // Without objects the event cannot be judged: the pod moves.
    q.move_all_to_active_or_backoff(NODE_ADD);
    assert_eq!(q.queue_of("ns/big"), Some(QueueName::Backoff));
    let p = pop_within(&q, Duration::from_secs(2)).await.unwrap();
    q.add_unschedulable_if_not_present(reject(p, "NodeResourcesFit"));
    assert_eq!(q.queue_of("ns/big"), Some(QueueName::Unschedulable));
    // The node grows enough: the pod moves.
    q.move_on_event(
        ClusterEvent {
            resource: EventResource::Node,
            action: action::UPDATE_NODE_ALLOCATABLE,
        },
        &EventObjects::Node {
            old: Some(node("4")),
            new: Some(node("16")),
        },
    );
    assert_eq!(q.queue_of("ns/big"), Some(QueueName::Backoff));
}

#[tokio::test(start_paused = true)]
async fn updates_of_a_pod_in_flight_leave_its_nomination_alone() {
    let q = queue();
    let p = pod("p", 10, false);
    q.add(p.clone());
    let popped = q.pop().await.unwrap();
    // The attempt assumed the pod and dropped its nomination; then a late
    // status event still naming the node it preempted on arrives.
    q.set_nominated_node(&popped.pod_info, "");
    let mut late = (*p).clone();
    late.status = Some(serde_json::from_value(json!({"nominatedNodeName": "n1"})).unwrap());
    q.update(p, Arc::new(late));
    assert!(!q.has_nominated_pods());
    // Requeued after a failed attempt, it is the latest version.
    q.add_unschedulable_if_not_present(reject(popped, "NodeWaiter"));
    let back = pop_within(&q, Duration::from_secs(400)).await.unwrap();
    assert_eq!(
        back.pod_info
            .pod
            .status
            .as_ref()
            .unwrap()
            .nominated_node_name
            .as_deref(),
        Some("n1")
    );
}
