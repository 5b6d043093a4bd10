#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::stale::stale_disruption_wait;
use super::status::*;

use crate::cached_pod::CachedPod;

fn now() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn ago(secs: i64) -> Time {
    Time(now() - SignedDuration::from_secs(secs))
}

/// A ready pod `name` owned by controller `owner` (uid), if any.
fn pod(name: &str, owner: Option<&str>, ready: bool) -> Arc<CachedPod> {
    let mut v = json!({
        "metadata": {"name": name, "namespace": "ns"},
        "status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": if ready { "True" } else { "False" }}
        ]},
    });
    if let Some(o) = owner {
        v["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": o, "uid": o, "controller": true
        }]);
    }
    Arc::new(serde_json::from_value(v).unwrap())
}

fn spec(v: Value) -> PodDisruptionBudgetSpec {
    serde_json::from_value(v).unwrap()
}

/// Finds controllers named `rs-N` with scale N; "dep-*" RSs map to one
/// Deployment of scale 4; anything else is unknown.
fn finder(r: &OwnerReference, _ns: &str) -> Result<Option<ControllerAndScale>, String> {
    if let Some(n) = r.name.strip_prefix("rs-") {
        return Ok(Some(ControllerAndScale {
            uid: r.uid.clone(),
            scale: n.parse().unwrap(),
        }));
    }
    if r.name.starts_with("dep-") {
        return Ok(Some(ControllerAndScale {
            uid: "the-deployment".into(),
            scale: 4,
        }));
    }
    Ok(None)
}

#[test]
fn expected_pod_count_follows_upstream_arithmetic() {
    let three_of_rs5 = vec![
        pod("a", Some("rs-5"), true),
        pod("b", Some("rs-5"), true),
        pod("c", Some("rs-5"), true),
    ];
    type Case = (&'static str, Value, Vec<Arc<CachedPod>>, i32, i32);
    let cases: Vec<Case> = vec![
        // (name, spec, pods, expectedPods, desiredHealthy)
        (
            "int minAvailable counts pods",
            json!({"minAvailable": 2}),
            three_of_rs5.clone(),
            3,
            2,
        ),
        (
            "percent minAvailable scales controllers",
            json!({"minAvailable": "50%"}),
            three_of_rs5.clone(),
            5,
            3,
        ),
        (
            "percent minAvailable rounds up",
            json!({"minAvailable": "10%"}),
            three_of_rs5.clone(),
            5,
            1,
        ),
        (
            "int maxUnavailable",
            json!({"maxUnavailable": 1}),
            three_of_rs5.clone(),
            5,
            4,
        ),
        (
            "percent maxUnavailable rounds up",
            json!({"maxUnavailable": "30%"}),
            three_of_rs5.clone(),
            5,
            3,
        ),
        (
            "maxUnavailable 50% of 3",
            json!({"maxUnavailable": "50%"}),
            vec![pod("a", Some("rs-3"), true)],
            3,
            1,
        ),
        (
            "desired never negative",
            json!({"maxUnavailable": 9}),
            three_of_rs5.clone(),
            5,
            0,
        ),
        (
            "controllers summed once each",
            json!({"minAvailable": "100%"}),
            vec![
                pod("a", Some("rs-2"), true),
                pod("b", Some("rs-2"), true),
                pod("c", Some("rs-7"), true),
            ],
            9,
            9,
        ),
        (
            "a deployment counts once across its replica sets",
            json!({"maxUnavailable": 0}),
            vec![
                pod("a", Some("dep-old"), true),
                pod("b", Some("dep-new"), true),
            ],
            4,
            4,
        ),
        (
            "maxUnavailable wins over minAvailable",
            json!({"minAvailable": 1, "maxUnavailable": "0%"}),
            three_of_rs5.clone(),
            5,
            5,
        ),
        ("neither field", json!({}), three_of_rs5.clone(), 0, 0),
        ("no pods", json!({"minAvailable": "50%"}), vec![], 0, 0),
    ];
    for (name, s, pods, expected, desired) in cases {
        let got = expected_pod_count(&spec(s), &pods, finder).unwrap();
        assert_eq!(
            (got.expected_count, got.desired_healthy),
            (expected, desired),
            "{name}"
        );
    }
}

#[test]
fn unmanaged_and_unknown_controllers() {
    let pods = vec![pod("lone", None, true), pod("a", Some("rs-2"), true)];
    let got = expected_pod_count(&spec(json!({"maxUnavailable": 1})), &pods, finder).unwrap();
    assert_eq!(got.expected_count, 2);
    assert_eq!(got.unmanaged_pods, vec!["lone".to_owned()]);
    // An integer minAvailable never looks at controllers.
    let got = expected_pod_count(&spec(json!({"minAvailable": 1})), &pods, finder).unwrap();
    assert!(got.unmanaged_pods.is_empty());

    let pods = vec![pod("x", Some("mystery"), true)];
    let err = expected_pod_count(&spec(json!({"minAvailable": "50%"})), &pods, finder).unwrap_err();
    assert_eq!(err, "found no controllers for pod \"x\"");
    let err = expected_pod_count(&spec(json!({"minAvailable": "half"})), &[], finder).unwrap_err();
    assert!(err.starts_with("invalid value for IntOrString"), "{err}");
}

fn pdb(status: Value) -> PodDisruptionBudget {
    serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "ns", "generation": 2},
        "spec": {"minAvailable": 1},
        "status": status,
    }))
    .unwrap()
}

#[test]
fn healthy_pods_exclude_unready_terminating_and_recently_disrupted() {
    let mut terminating = (*pod("t", Some("rs-5"), true)).clone();
    terminating.metadata.deletion_timestamp = Some(ago(1));
    let pods = vec![
        pod("ok", Some("rs-5"), true),
        pod("unready", Some("rs-5"), false),
        Arc::new(terminating),
        pod("fresh", Some("rs-5"), true),
        pod("expired", Some("rs-5"), true),
    ];
    let disrupted = BTreeMap::from([
        ("fresh".to_owned(), ago(30)),
        ("expired".to_owned(), ago(121)),
    ]);
    assert_eq!(count_healthy_pods(&pods, &disrupted, now()), 2);
}

#[test]
fn disrupted_pod_map_drops_gone_terminating_and_expired_pods() {
    let mut terminating = (*pod("t", None, true)).clone();
    terminating.metadata.deletion_timestamp = Some(ago(1));
    let pods = vec![
        pod("fresh", None, true),
        pod("older", None, true),
        pod("expired", None, true),
        Arc::new(terminating),
    ];
    let rfc = |t: Time| t.0.to_string();
    let p = pdb(json!({
        "currentHealthy": 0, "desiredHealthy": 0, "disruptionsAllowed": 0, "expectedPods": 0,
        "disruptedPods": {
            "fresh": rfc(ago(10)), "older": rfc(ago(100)), "expired": rfc(ago(130)),
            "t": rfc(ago(5)), "gone": rfc(ago(5)),
        },
    }));
    let m = build_disrupted_pod_map(&pods, &p, now());
    assert_eq!(m.pods.keys().collect::<Vec<_>>(), ["fresh", "older"]);
    assert_eq!(m.not_deleted, ["expired"]);
    // The earliest kept entry expires 20 s from now.
    assert_eq!(m.recheck, Some(now() + SignedDuration::from_secs(20)));
    assert_eq!(
        build_disrupted_pod_map(&pods, &pdb(json!(null)), now()),
        DisruptedPodMap::default()
    );
}

#[test]
fn status_and_condition() {
    let expected = ExpectedPods {
        expected_count: 3,
        desired_healthy: 2,
        unmanaged_pods: vec![],
    };
    let p = pdb(json!(null));
    let s = new_status(&p, 3, &expected, BTreeMap::new(), now()).unwrap();
    assert_eq!(
        (
            s.disruptions_allowed,
            s.current_healthy,
            s.desired_healthy,
            s.expected_pods
        ),
        (1, 3, 2, 3)
    );
    assert_eq!(s.observed_generation, Some(2));
    let c = &s.conditions.as_ref().unwrap()[0];
    assert_eq!(
        (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
        ("DisruptionAllowed", "True", "SufficientPods")
    );
    assert_eq!(
        (c.observed_generation, &c.last_transition_time),
        (Some(2), &Time(now()))
    );

    // Written as is: nothing changes, so nothing to write.
    let mut written = p.clone();
    written.status = Some(s.clone());
    assert!(new_status(&written, 3, &expected, BTreeMap::new(), now()).is_none());

    // One pod fewer: no disruption allowed; the condition flips with a new
    // transition time.
    let later = now() + SignedDuration::from_secs(5);
    let s2 = new_status(&written, 2, &expected, BTreeMap::new(), later).unwrap();
    assert_eq!(s2.disruptions_allowed, 0);
    let c = &s2.conditions.as_ref().unwrap()[0];
    assert_eq!(
        (
            c.status.as_str(),
            c.reason.as_str(),
            &c.last_transition_time
        ),
        ("False", "InsufficientPods", &Time(later))
    );

    // No expected pods: never any disruption, however many are healthy.
    let none = ExpectedPods {
        expected_count: 0,
        desired_healthy: 0,
        unmanaged_pods: vec![],
    };
    assert_eq!(
        new_status(&p, 4, &none, BTreeMap::new(), now())
            .unwrap()
            .disruptions_allowed,
        0
    );

    // A newer generation is observed even when the numbers match.
    let mut bumped = written.clone();
    bumped.metadata.generation = Some(3);
    assert_eq!(
        new_status(&bumped, 3, &expected, BTreeMap::new(), now())
            .unwrap()
            .observed_generation,
        Some(3)
    );

    let f = fail_safe_status(&written, "boom", later);
    assert_eq!(f.disruptions_allowed, 0);
    let c = &f.conditions.as_ref().unwrap()[0];
    assert_eq!(
        (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
        ("False", "SyncFailed", "boom")
    );
    assert_eq!(f.current_healthy, 3, "the rest of the status is kept");
}

#[test]
fn stale_disruption_target_condition() {
    let with = |status: &str, reason: &str, secs: i64, deleting: bool, phase: &str| {
        let mut p: CachedPod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "status": {"phase": phase, "conditions": [{
                "type": "DisruptionTarget", "status": status, "reason": reason,
                "lastTransitionTime": ago(secs).0.to_string(),
            }]},
        }))
        .unwrap();
        if deleting {
            p.metadata.deletion_timestamp = Some(ago(0));
        }
        stale_disruption_wait(&p, now())
    };
    use std::time::Duration;
    assert_eq!(
        with("True", "EvictionByEvictionAPI", 30, false, "Running"),
        Some(Duration::from_secs(90))
    );
    assert_eq!(
        with("True", "PreemptionByScheduler", 300, false, "Running"),
        Some(Duration::ZERO)
    );
    assert_eq!(
        with("False", "EvictionByEvictionAPI", 300, false, "Running"),
        None
    );
    assert_eq!(
        with("True", "TerminationByKubelet", 300, false, "Running"),
        None
    );
    assert_eq!(
        with("True", "EvictionByEvictionAPI", 300, true, "Running"),
        None
    );
    assert_eq!(
        with("True", "EvictionByEvictionAPI", 300, false, "Failed"),
        None
    );
    assert_eq!(stale_disruption_wait(&pod("p", None, true), now()), None);
}
