#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, NodeCondition, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::json;
use tokio::time::Instant;

use super::health::{GracePeriods, NodeHealthData, status_written, update_node_health};
use super::taints::*;
use super::zone::*;
use super::{NodeLifecycleOptions, zone};

const GRACE: GracePeriods = GracePeriods {
    monitor: Duration::from_secs(40),
    startup: Duration::from_secs(60),
};

fn ts(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap()
}

fn cond(type_: &str, status: &str, heartbeat: i64) -> serde_json::Value {
    json!({"type": type_, "status": status, "lastHeartbeatTime": Time(ts(heartbeat)),
           "lastTransitionTime": Time(ts(0)), "reason": "KubeletReady", "message": "ok"})
}

fn node(conditions: serde_json::Value) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": "n1", "uid": "u1", "creationTimestamp": Time(ts(0)),
                     "labels": {"topology.kubernetes.io/zone": "z1"}},
        "status": {"conditions": conditions},
    }))
    .unwrap()
}

fn find<'a>(cs: &'a [NodeCondition], t: &str) -> &'a NodeCondition {
    cs.iter().find(|c| c.type_ == t).unwrap()
}

fn healthy() -> Node {
    node(json!([
        cond("Ready", "True", 0),
        cond("MemoryPressure", "False", 0),
        cond("DiskPressure", "False", 0),
    ]))
}

/// Runs the state machine as the monitor does, `secs` after a start at
/// wall time `ts(0)`.
fn step(
    saved: Option<&NodeHealthData>,
    n: &Node,
    lease: Option<i64>,
    start: Instant,
    secs: u64,
) -> (NodeHealthData, super::health::HealthUpdate) {
    update_node_health(
        saved,
        n,
        lease.map(ts),
        GRACE,
        start + Duration::from_secs(secs),
        ts(secs as i64),
    )
}

#[test]
fn a_node_not_heard_from_for_the_grace_period_becomes_unknown() {
    let start = Instant::now();
    let n = healthy();
    let (h, u) = step(None, &n, None, start, 0);
    assert!(u.new_conditions.is_none());
    // Within the grace period: nothing to do.
    let (h, u) = step(Some(&h), &n, None, start, 40);
    assert!(
        u.new_conditions.is_none(),
        "exactly the grace period is fine"
    );
    let (mut h, u) = step(Some(&h), &n, None, start, 41);
    let conds = u.new_conditions.clone().expect("conditions to write");
    for t in ["Ready", "MemoryPressure", "DiskPressure"] {
        let c = find(&conds, t);
        assert_eq!(c.status, "Unknown", "{t}");
        assert_eq!(c.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(
            c.message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
        assert_eq!(c.last_transition_time, Some(Time(ts(41))));
        assert_eq!(c.last_heartbeat_time, Some(Time(ts(0))), "heartbeat kept");
    }
    // PIDPressure was never posted.
    let pid = find(&conds, "PIDPressure");
    assert_eq!(pid.status, "Unknown");
    assert_eq!(pid.reason.as_deref(), Some("NodeStatusNeverUpdated"));
    assert_eq!(
        pid.message.as_deref(),
        Some("Kubelet never posted node status.")
    );
    assert_eq!(u.observed_ready.status, "True");
    assert_eq!(u.current_ready.as_ref().unwrap().status, "Unknown");
    status_written(&mut h, &u, start + Duration::from_secs(41));
    // Written: the next pass sees it Unknown and writes nothing more.
    let written = node(serde_json::to_value(&conds).unwrap());
    let (_, u) = step(Some(&h), &written, None, start, 46);
    assert!(u.new_conditions.is_none());
    assert_eq!(u.observed_ready.status, "Unknown");
}

#[test]
fn lease_renewals_and_new_heartbeats_keep_a_node_healthy() {
    let start = Instant::now();
    let n = healthy();
    let (h, _) = step(None, &n, Some(0), start, 0);
    // The Lease is renewed at 30 s: the 41 s check is within grace.
    let (h, u) = step(Some(&h), &n, Some(30), start, 30);
    assert!(u.new_conditions.is_none());
    let (h, u) = step(Some(&h), &n, Some(30), start, 69);
    assert!(u.new_conditions.is_none());
    // No renewal since 30 s: stale after 70 s.
    let (_, u) = step(Some(&h), &n, Some(30), start, 71);
    assert!(u.new_conditions.is_some());
    // A new Ready heartbeat counts the same as a renewal.
    let (h, _) = step(None, &n, None, start, 0);
    let beat = node(json!([cond("Ready", "True", 35)]));
    let (h, _) = step(Some(&h), &beat, None, start, 35);
    let (_, u) = step(Some(&h), &beat, None, start, 75);
    assert!(u.new_conditions.is_none());
}

#[test]
fn a_node_that_never_reported_gets_the_startup_grace_from_its_creation() {
    let start = Instant::now() + Duration::from_secs(1000);
    let n = node(json!([]));
    // First seen 30 s after its creation: 30 s of startup grace left.
    let (h, u) = step(None, &n, None, start, 30);
    assert!(u.new_conditions.is_none());
    assert!(u.current_ready.is_none());
    assert_eq!(u.observed_ready.status, "Unknown");
    let (h, u) = step(Some(&h), &n, None, start, 60);
    assert!(u.new_conditions.is_none());
    let (_, u) = step(Some(&h), &n, None, start, 61);
    let conds = u.new_conditions.unwrap();
    assert_eq!(conds.len(), 4);
    for c in &conds {
        assert_eq!(c.status, "Unknown");
        assert_eq!(c.reason.as_deref(), Some("NodeStatusNeverUpdated"));
        assert_eq!(c.last_heartbeat_time, Some(Time(ts(0))), "creation time");
    }
}

#[test]
fn condition_taints_follow_conditions() {
    let t = |k: &str| taint(k, NO_SCHEDULE);
    // (conditions, unschedulable, expected NoSchedule taint keys)
    let cases = [
        (json!([cond("Ready", "True", 0)]), false, vec![]),
        (
            json!([cond("Ready", "False", 0)]),
            false,
            vec![TAINT_NODE_NOT_READY],
        ),
        (
            json!([cond("Ready", "Unknown", 0), cond("DiskPressure", "True", 0)]),
            false,
            vec![TAINT_NODE_UNREACHABLE, TAINT_NODE_DISK_PRESSURE],
        ),
        (
            json!([
                cond("MemoryPressure", "True", 0),
                cond("PIDPressure", "True", 0),
                cond("NetworkUnavailable", "True", 0)
            ]),
            true,
            vec![
                TAINT_NODE_MEMORY_PRESSURE,
                TAINT_NODE_PID_PRESSURE,
                TAINT_NODE_NETWORK_UNAVAILABLE,
                TAINT_NODE_UNSCHEDULABLE,
            ],
        ),
    ];
    for (conds, unschedulable, want) in cases {
        let mut n = node(conds.clone());
        n.spec.get_or_insert_default().unschedulable = Some(unschedulable);
        let want: Vec<Taint> = want.into_iter().map(t).collect();
        assert_eq!(condition_taints(&n), want, "{conds}");
    }
}

#[test]
fn reconciling_condition_taints_keeps_foreign_taints() {
    let mut n = node(json!([cond("Ready", "Unknown", 0)]));
    n.spec.get_or_insert_default().taints = Some(vec![
        taint(TAINT_NODE_NOT_READY, NO_SCHEDULE),
        taint("dedicated", NO_SCHEDULE),
        taint(TAINT_NODE_UNREACHABLE, NO_EXECUTE),
    ]);
    let got = reconcile_condition_taints(&n).unwrap();
    assert_eq!(
        got,
        [
            taint("dedicated", NO_SCHEDULE),
            taint(TAINT_NODE_UNREACHABLE, NO_EXECUTE),
            taint(TAINT_NODE_UNREACHABLE, NO_SCHEDULE),
        ]
    );
    n.spec.as_mut().unwrap().taints = Some(got);
    assert_eq!(reconcile_condition_taints(&n), None, "settled");
}

#[test]
fn swapping_no_execute_taints_stamps_the_time() {
    let now = ts(5);
    let current = vec![
        taint(TAINT_NODE_NOT_READY, NO_EXECUTE),
        taint("x", NO_SCHEDULE),
    ];
    let got = swap_taints(
        &current,
        &[taint(TAINT_NODE_UNREACHABLE, NO_EXECUTE)],
        &[taint(TAINT_NODE_NOT_READY, NO_EXECUTE)],
        Some(now),
    )
    .unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].key, "x");
    assert_eq!(got[1].key, TAINT_NODE_UNREACHABLE);
    assert_eq!(got[1].time_added, Some(Time(now)));
    // Already there and nothing to remove: no change.
    assert_eq!(
        swap_taints(
            &got,
            &[taint(TAINT_NODE_UNREACHABLE, NO_EXECUTE)],
            &[],
            Some(ts(9))
        ),
        None
    );
    assert_eq!(
        swap_taints(
            &got,
            &[],
            &[taint(TAINT_NODE_UNREACHABLE, NO_EXECUTE)],
            None
        )
        .unwrap(),
        [taint("x", NO_SCHEDULE)]
    );
}

fn tol(v: serde_json::Value) -> Toleration {
    serde_json::from_value(v).unwrap()
}

#[test]
fn toleration_matching() {
    let unreachable = taint(TAINT_NODE_UNREACHABLE, NO_EXECUTE);
    let mut valued = taint("k", NO_SCHEDULE);
    valued.value = Some("v".into());
    // (toleration, taint, tolerates)
    let cases = [
        (json!({"operator": "Exists"}), &unreachable, true),
        (
            json!({"key": TAINT_NODE_UNREACHABLE, "operator": "Exists"}),
            &unreachable,
            true,
        ),
        (
            json!({"key": TAINT_NODE_UNREACHABLE, "operator": "Exists", "effect": "NoSchedule"}),
            &unreachable,
            false,
        ),
        (
            json!({"key": TAINT_NODE_NOT_READY, "operator": "Exists"}),
            &unreachable,
            false,
        ),
        (
            json!({"key": "k", "operator": "Equal", "value": "v"}),
            &valued,
            true,
        ),
        (json!({"key": "k", "value": "v"}), &valued, true),
        (
            json!({"key": "k", "operator": "Equal", "value": "w"}),
            &valued,
            false,
        ),
        (
            json!({"key": "k", "operator": "Exists", "effect": "NoSchedule"}),
            &valued,
            true,
        ),
    ];
    for (t, taint, want) in cases {
        assert_eq!(tolerates(&tol(t.clone()), taint), want, "{t}");
    }
    let taints = [unreachable.clone(), valued.clone()];
    let (all, used) = matching_tolerations(&taints, &[tol(json!({"operator": "Exists"}))]);
    assert!(all && used.len() == 2);
    let (all, used) = matching_tolerations(
        &taints,
        &[tol(
            json!({"key": TAINT_NODE_UNREACHABLE, "operator": "Exists"}),
        )],
    );
    assert!(!all && used.is_empty());
}

#[test]
fn min_toleration_time() {
    let s = |secs: Option<i64>| tol(json!({"operator": "Exists", "tolerationSeconds": secs}));
    // (tolerations, expected)
    let cases = [
        (vec![], Some(0)),
        (vec![s(None)], None),
        (vec![s(None), s(Some(30))], Some(30)),
        (vec![s(Some(300)), s(Some(30))], Some(30)),
        (vec![s(Some(-5)), s(Some(30))], Some(0)),
    ];
    for (tols, want) in cases {
        assert_eq!(min_toleration_seconds(&tols), want, "{tols:?}");
    }
}

#[test]
fn zone_states_from_ready_counts() {
    let t = Some("True");
    let f = Some("False");
    let u = Some("Unknown");
    // (ready statuses, unhealthy count, state)
    let cases: Vec<(Vec<Option<&str>>, usize, ZoneState)> = vec![
        (vec![t, t, t], 0, ZoneState::Normal),
        (vec![f], 1, ZoneState::FullDisruption),
        (vec![f, u, None], 3, ZoneState::FullDisruption),
        // Two unhealthy of three is 67%, but two are not "more than two".
        (vec![t, f, u], 2, ZoneState::Normal),
        (vec![t, t, f, u, None], 3, ZoneState::PartialDisruption),
        // 3 of 6 = 50% < 55%.
        (vec![t, t, t, f, f, f], 3, ZoneState::Normal),
        (vec![], 0, ZoneState::Normal),
    ];
    for (ready, unhealthy, state) in cases {
        assert_eq!(
            compute_zone_state(&ready, 0.55),
            (unhealthy, state),
            "{ready:?}"
        );
    }
    let o = NodeLifecycleOptions::default();
    assert_eq!(o.zone_rate(10, ZoneState::Normal), 0.1);
    assert_eq!(o.zone_rate(10, ZoneState::FullDisruption), 0.1);
    assert_eq!(o.zone_rate(50, ZoneState::PartialDisruption), 0.0);
    assert_eq!(o.zone_rate(51, ZoneState::PartialDisruption), 0.01);
}

#[test]
fn zone_keys() {
    let mut n = node(json!([]));
    assert_eq!(zone::zone_key(&n), ":\x00:z1");
    n.metadata.labels = Some(
        [(
            "failure-domain.beta.kubernetes.io/region".to_owned(),
            "r".to_owned(),
        )]
        .into(),
    );
    assert_eq!(zone::zone_key(&n), "r:\x00:");
    n.metadata.labels = None;
    assert_eq!(zone::zone_key(&n), "");
}

#[tokio::test(start_paused = true)]
async fn the_tainting_queue_lets_nodes_through_at_the_zone_rate() {
    let start = Instant::now();
    let mut q = RateLimitedTimedQueue::new(0.1, start);
    for n in ["a", "b", "c"] {
        assert!(q.add(n, "uid", start));
    }
    assert!(!q.add("a", "uid", start), "already a member");
    let names = |v: Vec<TimedValue>| v.into_iter().map(|t| t.value).collect::<Vec<_>>();
    // A burst of one, then one every 10 s.
    assert_eq!(names(q.take_due(start)), ["a"]);
    assert!(q.take_due(start + Duration::from_secs(9)).is_empty());
    let b = q.take_due(start + Duration::from_secs(10));
    assert_eq!(b.len(), 1);
    // b's taint failed: retried later, after c.
    let t = start + Duration::from_secs(10);
    q.done(b[0].clone(), false, Duration::from_secs(1), t);
    assert_eq!(names(q.take_due(start + Duration::from_secs(20))), ["c"]);
    assert_eq!(names(q.take_due(start + Duration::from_secs(30))), ["b"]);
    q.done(
        TimedValue {
            value: "b".into(),
            uid: "uid".into(),
            added_at: start,
            process_at: start,
        },
        true,
        Duration::ZERO,
        start,
    );
    assert!(q.is_empty());
    // Processed nodes stay members until removed.
    assert!(!q.add("a", "uid", start));
    assert!(q.remove("a"));
    assert!(q.add("a", "uid", start));
    // Rate zero stops everything.
    q.swap_limiter(0.0, start + Duration::from_secs(100));
    assert!(q.take_due(start + Duration::from_secs(1000)).is_empty());
    q.swap_limiter(0.1, start + Duration::from_secs(1000));
    // The stopped limiter had no token, so the new one starts drained.
    assert!(q.take_due(start + Duration::from_secs(1000)).is_empty());
    assert_eq!(names(q.take_due(start + Duration::from_secs(1010))), ["a"]);
}

#[test]
fn health_is_judged_on_our_clock_not_the_nodes() {
    // The node's clock is an hour ahead: its heartbeat times mean nothing
    // but a change.
    let start = Instant::now();
    let ahead = SignedDuration::from_hours(1);
    let mk = |beat: i64| {
        let mut n = healthy();
        let c = &mut n.status.as_mut().unwrap().conditions.as_mut().unwrap()[0];
        c.last_heartbeat_time = Some(Time(ts(beat) + ahead));
        n
    };
    let (h, _) = step(None, &mk(0), None, start, 0);
    let (h, u) = step(Some(&h), &mk(0), None, start, 41);
    assert!(u.new_conditions.is_some());
    let (_, u) = step(Some(&h), &mk(1), None, start, 42);
    assert!(u.new_conditions.is_none(), "a new heartbeat is fresh");
}
