#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::json;

use super::status::*;

fn now() -> Timestamp {
    "2026-01-01T12:00:00Z".parse().unwrap()
}

fn deploy(replicas: i32, status: serde_json::Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "ns", "generation": 2},
        "spec": {"replicas": replicas, "progressDeadlineSeconds": 600,
                 "selector": {"matchLabels": {"app": "x"}},
                 "strategy": {"type": "RollingUpdate",
                              "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                 "template": {"metadata": {"labels": {"app": "x"}}}},
        "status": status,
    }))
    .unwrap()
}

fn rs(name: &str, replicas: i32, ready: i32, available: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {}},
        "status": {"replicas": replicas, "readyReplicas": ready, "availableReplicas": available},
    }))
    .unwrap()
}

fn cond<'a>(s: &'a DeploymentStatus, t: &str) -> (&'a str, &'a str) {
    let c = get_condition(s, t).unwrap();
    (c.status.as_str(), c.reason.as_deref().unwrap())
}

#[test]
fn counts_and_available_condition() {
    let d = deploy(4, json!({}));
    let (old, new) = (rs("old", 2, 2, 2), rs("new", 3, 2, 1));
    let s = calculate_status(&d, &[&old, &new], Some(&new), now());
    assert_eq!(s.replicas, Some(5));
    assert_eq!(s.updated_replicas, Some(3));
    assert_eq!(s.ready_replicas, Some(4));
    assert_eq!(s.available_replicas, Some(3));
    assert_eq!(s.unavailable_replicas, Some(2));
    assert_eq!(s.observed_generation, Some(2));
    // 4 replicas, 1 may be unavailable: 3 available is enough.
    assert_eq!(cond(&s, AVAILABLE), ("True", MIN_AVAILABLE_REASON));
    let low = rs("new", 4, 2, 2);
    let s = calculate_status(&d, &[&low], Some(&low), now());
    assert_eq!(cond(&s, AVAILABLE), ("False", MIN_UNAVAILABLE_REASON));
    assert_eq!(
        get_condition(&s, AVAILABLE).unwrap().message.as_deref(),
        Some("Deployment does not have minimum availability.")
    );
}

#[test]
fn set_condition_keeps_transition_time_for_the_same_status() {
    let mut s = DeploymentStatus::default();
    let t0 = now();
    let t1 = t0 + SignedDuration::from_secs(30);
    set_condition(
        &mut s,
        new_condition(PROGRESSING, "True", NEW_RS_REASON, "a".into(), t0),
    );
    // Same status and reason: untouched.
    set_condition(
        &mut s,
        new_condition(PROGRESSING, "True", NEW_RS_REASON, "b".into(), t1),
    );
    assert_eq!(
        get_condition(&s, PROGRESSING).unwrap().message.as_deref(),
        Some("a")
    );
    // Same status, new reason: transition time kept, update time moves.
    set_condition(
        &mut s,
        new_condition(PROGRESSING, "True", RS_UPDATED_REASON, "c".into(), t1),
    );
    let c = get_condition(&s, PROGRESSING).unwrap();
    assert_eq!(c.last_transition_time.as_ref().unwrap().0, t0);
    assert_eq!(c.last_update_time.as_ref().unwrap().0, t1);
    // New status: both move.
    set_condition(
        &mut s,
        new_condition(PROGRESSING, "False", TIMED_OUT_REASON, "d".into(), t1),
    );
    let c = get_condition(&s, PROGRESSING).unwrap();
    assert_eq!(c.last_transition_time.as_ref().unwrap().0, t1);
    assert_eq!(s.conditions.as_ref().unwrap().len(), 1);
}

#[test]
fn progressing_reasons_follow_the_rollout() {
    let t_old = now() - SignedDuration::from_secs(10);
    let started = json!({"replicas": 3, "updatedReplicas": 1, "readyReplicas": 2, "availableReplicas": 2,
        "observedGeneration": 2,
        "conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetCreated",
                        "lastUpdateTime": t_old.to_string(), "lastTransitionTime": t_old.to_string()}]});
    let d = deploy(3, started.clone());
    let new = rs("web-abc", 2, 2, 2);
    let old = rs("web-old", 1, 1, 1);
    // More updated replicas: ReplicaSetUpdated.
    let mut s = calculate_status(&d, &[&old, &new], Some(&new), now());
    update_progressing(&d, &mut s, Some(&new), now());
    assert_eq!(cond(&s, PROGRESSING), ("True", RS_UPDATED_REASON));
    assert_eq!(
        get_condition(&s, PROGRESSING).unwrap().message.as_deref(),
        Some("ReplicaSet \"web-abc\" is progressing.")
    );
    // Complete: NewReplicaSetAvailable.
    let done = rs("web-abc", 3, 3, 3);
    let mut s = calculate_status(&d, &[&done], Some(&done), now());
    update_progressing(&d, &mut s, Some(&done), now());
    assert_eq!(cond(&s, PROGRESSING), ("True", NEW_RS_AVAILABLE_REASON));
    assert_eq!(
        get_condition(&s, PROGRESSING).unwrap().message.as_deref(),
        Some("ReplicaSet \"web-abc\" has successfully progressed.")
    );
    // No progress past the deadline: ProgressDeadlineExceeded.
    let stuck_new = rs("web-abc", 1, 0, 0);
    let stuck_old = rs("web-old", 2, 2, 2);
    let d = deploy(3, started);
    let later = now() + SignedDuration::from_secs(601);
    let mut s = calculate_status(&d, &[&stuck_old, &stuck_new], Some(&stuck_new), later);
    update_progressing(&d, &mut s, Some(&stuck_new), later);
    assert_eq!(cond(&s, PROGRESSING), ("False", TIMED_OUT_REASON));
    // Before the deadline nothing changes, and a requeue is due then.
    let mut s = calculate_status(&d, &[&stuck_old, &stuck_new], Some(&stuck_new), now());
    update_progressing(&d, &mut s, Some(&stuck_new), now());
    assert_eq!(cond(&s, PROGRESSING), ("True", NEW_RS_REASON));
    assert_eq!(
        stuck_requeue_after(&d, &s, now()),
        Some(std::time::Duration::from_secs(591))
    );
}

#[test]
fn complete_requires_observed_generation() {
    let d = deploy(2, json!({}));
    let mut s: DeploymentStatus = serde_json::from_value(json!({
        "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2, "observedGeneration": 1}))
    .unwrap();
    assert!(!deployment_complete(&d, &s));
    s.observed_generation = Some(2);
    assert!(deployment_complete(&d, &s));
    s.available_replicas = Some(1);
    assert!(!deployment_complete(&d, &s));
}
