#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use serde_json::json;

use super::*;

use crate::cached_pod::CachedPod;

/// A pod: name, phase, created at second `created`, node, terminating.
fn pod(name: &str, phase: &str, created: i64, node: &str, terminating: bool) -> Arc<CachedPod> {
    let t = |s: i64| format!("2025-01-01T00:00:{s:02}Z");
    let mut v = json!({
        "metadata": {"name": name, "namespace": "ns", "creationTimestamp": t(created)},
        "spec": {"containers": [], "nodeName": node},
        "status": {"phase": phase},
    });
    if terminating {
        v["metadata"]["deletionTimestamp"] = json!(t(59));
    }
    Arc::new(serde_json::from_value(v).unwrap())
}

fn evicted(name: &str, created: i64) -> Arc<CachedPod> {
    let mut p = (*pod(name, "Failed", created, "n1", false)).clone();
    p.status.as_mut().unwrap().reason = Some("Evicted".into());
    Arc::new(p)
}

fn names(pods: Vec<Arc<CachedPod>>) -> Vec<String> {
    pods.into_iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect()
}

#[test]
fn terminated_pods_over_the_threshold_oldest_and_evicted_first() {
    let pods = vec![
        pod("running", "Running", 0, "n1", false),
        pod("pending", "Pending", 0, "", false),
        pod("unknown", "Unknown", 0, "n1", false),
        pod("ok-3", "Succeeded", 3, "n1", false),
        pod("fail-1", "Failed", 1, "n1", false),
        pod("ok-2b", "Succeeded", 2, "n1", false),
        pod("ok-2a", "Succeeded", 2, "n1", false),
        evicted("evicted-9", 9),
    ];
    // (threshold, deleted)
    let cases: [(usize, Vec<&str>); 4] = [
        (5, vec![]),
        (4, vec!["evicted-9"]),
        (2, vec!["evicted-9", "fail-1", "ok-2a"]),
        (0, vec!["evicted-9", "fail-1", "ok-2a", "ok-2b", "ok-3"]),
    ];
    for (threshold, want) in cases {
        assert_eq!(
            names(terminated_to_delete(&pods, threshold)),
            want,
            "threshold {threshold}"
        );
    }
}

fn node(name: &str, ready: &str, out_of_service: bool) -> Arc<Node> {
    let taints = if out_of_service {
        json!([{"key": "node.kubernetes.io/out-of-service", "effect": "NoExecute"}])
    } else {
        json!([])
    };
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"taints": taints},
            "status": {"conditions": [{"type": "Ready", "status": ready}]},
        }))
        .unwrap(),
    )
}

#[test]
fn terminating_pods_on_out_of_service_not_ready_nodes() {
    let nodes = vec![
        node("down-oos", "False", true),
        node("ready-oos", "True", true),
        node("down", "Unknown", false),
    ];
    let pods = vec![
        pod("a", "Running", 0, "down-oos", true),
        pod("b", "Running", 0, "down-oos", false),
        pod("c", "Running", 0, "ready-oos", true),
        pod("d", "Running", 0, "down", true),
    ];
    assert_eq!(names(out_of_service_terminating(&pods, &nodes)), ["a"]);
}

#[test]
fn orphans_and_unscheduled_terminating_pods() {
    let pods = vec![
        pod("on-gone", "Running", 0, "gone", false),
        pod("done-on-gone", "Succeeded", 0, "gone", false),
        pod("on-live", "Running", 0, "live", false),
        pod("unscheduled-terminating", "Pending", 0, "", true),
        pod("unscheduled", "Pending", 0, "", false),
        pod("scheduled-terminating", "Running", 0, "live", true),
    ];
    let gone: HashSet<String> = ["gone".to_owned()].into();
    assert_eq!(
        names(orphaned_pods(&pods, &gone)),
        ["on-gone", "done-on-gone"]
    );
    assert!(orphaned_pods(&pods, &HashSet::new()).is_empty());
    assert_eq!(
        names(unscheduled_terminating(&pods)),
        ["unscheduled-terminating"]
    );
    assert!(is_pod_terminated(&pods[1]) && !is_pod_terminated(&pods[0]));
}
