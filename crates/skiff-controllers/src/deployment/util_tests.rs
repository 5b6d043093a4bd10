#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;

use super::util::*;

fn ios(v: serde_json::Value) -> IntOrString {
    serde_json::from_value(v).unwrap()
}

fn deploy(replicas: i32, surge: serde_json::Value, unavail: serde_json::Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "d", "namespace": "ns", "annotations": {"a": "1"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "x"}},
                 "strategy": {"type": "RollingUpdate",
                              "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavail}},
                 "template": {"metadata": {"labels": {"app": "x"}}}},
    }))
    .unwrap()
}

fn rs(name: &str, replicas: i32, available: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {}},
        "status": {"replicas": replicas, "availableReplicas": available},
    }))
    .unwrap()
}

#[test]
fn fnv32a_matches_reference_vectors() {
    assert_eq!(fnv32a(b""), 0x811c_9dc5);
    assert_eq!(fnv32a(b"a"), 0xe40c_292c);
    assert_eq!(fnv32a(b"foobar"), 0xbf9c_f968);
}

#[test]
fn safe_encode_maps_bytes_into_the_alphabet() {
    // '0' is 48: 48 % 27 = 21 -> '4'; '1' -> '5'; '9' (57) -> 3 -> 'f'.
    assert_eq!(safe_encode("019"), "45f");
    let h = compute_hash(&PodTemplateSpec::default(), None);
    assert!(h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
}

#[test]
fn hash_depends_on_template_and_collision_count() {
    let t1: PodTemplateSpec =
        serde_json::from_value(json!({"metadata": {"labels": {"app": "x"}}})).unwrap();
    let t2: PodTemplateSpec =
        serde_json::from_value(json!({"metadata": {"labels": {"app": "y"}}})).unwrap();
    let h1 = compute_hash(&t1, None);
    assert_eq!(h1, compute_hash(&t1.clone(), None), "stable");
    assert_ne!(h1, compute_hash(&t2, None));
    assert_ne!(h1, compute_hash(&t1, Some(1)));
    assert_ne!(compute_hash(&t1, Some(1)), compute_hash(&t1, Some(2)));
}

#[test]
fn equal_ignore_hash_drops_only_the_hash_label() {
    let a: PodTemplateSpec = serde_json::from_value(
        json!({"metadata": {"labels": {"app": "x", "pod-template-hash": "abc"}}}),
    )
    .unwrap();
    let b: PodTemplateSpec =
        serde_json::from_value(json!({"metadata": {"labels": {"app": "x"}}})).unwrap();
    let c: PodTemplateSpec =
        serde_json::from_value(json!({"metadata": {"labels": {"app": "z"}}})).unwrap();
    assert!(equal_ignore_hash(&a, &b));
    assert!(!equal_ignore_hash(&a, &c));
    // Empty structs equal absent ones, as Go's semantic equality has it.
    let d: PodTemplateSpec = serde_json::from_value(json!({
        "metadata": {"labels": {"app": "x"}},
        "spec": {"containers": [{"name": "c", "resources": {}}]}}))
    .unwrap();
    let e: PodTemplateSpec = serde_json::from_value(json!({
        "metadata": {"labels": {"app": "x"}},
        "spec": {"containers": [{"name": "c"}]}}))
    .unwrap();
    let f: PodTemplateSpec = serde_json::from_value(json!({
        "metadata": {"labels": {"app": "x"}},
        "spec": {"containers": [{"name": "d"}]}}))
    .unwrap();
    assert!(equal_ignore_hash(&d, &e));
    assert!(!equal_ignore_hash(&d, &f));
}

#[test]
fn fenceposts_round_surge_up_and_unavailable_down() {
    // (surge, unavailable, desired) -> expected
    let cases = [
        (json!("25%"), json!("25%"), 10, (3, 2)),
        (json!("25%"), json!("25%"), 1, (1, 0)),
        (json!(0), json!(0), 5, (0, 1)),
        (json!("0%"), json!("0%"), 5, (0, 1)),
        (json!(2), json!(1), 5, (2, 1)),
        (json!("50%"), json!("10%"), 3, (2, 0)),
        (json!("100%"), json!("100%"), 7, (7, 7)),
    ];
    for (s, u, desired, want) in cases {
        let got = resolve_fenceposts(Some(&ios(s.clone())), Some(&ios(u.clone())), desired);
        assert_eq!(got, Ok(want), "surge {s} unavailable {u} of {desired}");
    }
    assert!(resolve_fenceposts(Some(&ios(json!("x%"))), None, 3).is_err());
}

#[test]
fn max_unavailable_is_capped_and_zero_for_recreate() {
    assert_eq!(max_unavailable(&deploy(2, json!(0), json!(5))), 2);
    assert_eq!(max_unavailable(&deploy(0, json!(1), json!(1))), 0);
    let mut d = deploy(4, json!(1), json!(1));
    d.spec.as_mut().unwrap().strategy.as_mut().unwrap().type_ = Some("Recreate".into());
    assert_eq!((max_unavailable(&d), max_surge(&d)), (0, 0));
}

#[test]
fn new_replica_set_grows_within_the_surge() {
    // desired 10, surge 3: at most 13 pods in total.
    let d = deploy(10, json!(3), json!(0));
    let cases = [
        // (old replicas, new replicas) -> new size
        (10, 0, 3),
        (10, 3, 3),
        (7, 3, 6),
        (0, 8, 10),
        (12, 0, 1),
    ];
    for (old, new, want) in cases {
        let n = rs("new", new, 0);
        let all = [rs("old", old, old), n.clone()];
        assert_eq!(
            new_rs_new_replicas(&d, &all, &n),
            want,
            "old {old} new {new}"
        );
    }
}

#[test]
fn old_replica_sets_scale_down_keeping_minimum_available() {
    // desired 10, maxUnavailable 2: at least 8 available.
    let d = deploy(10, json!(3), json!(2));
    let new_rs = rs("new", 3, 0);
    let old = [rs("old1", 4, 4), rs("old2", 6, 6)];
    let all = [old[0].clone(), old[1].clone(), new_rs.clone()];
    // 13 pods - 8 min - 3 unavailable new = 2.
    assert_eq!(max_scaled_down(&d, &all, Some(&new_rs)), 2);
    // 10 available - 8 = 2 from the oldest first.
    assert_eq!(scale_down_old_for_rolling(&d, &all, &old), vec![(0, 2)]);
    // Budget spills to the next ReplicaSet.
    let old = [rs("old1", 1, 1), rs("old2", 9, 9)];
    let all = [old[0].clone(), old[1].clone(), rs("new", 3, 3)];
    assert_eq!(
        scale_down_old_for_rolling(&d, &all, &old),
        vec![(0, 0), (1, 5)]
    );
    // At the minimum: nothing.
    let all = [rs("old", 8, 8), rs("new", 2, 0)];
    assert!(scale_down_old_for_rolling(&d, &all, &all[..1]).is_empty());
    // Just scaled to 7, its status still counts the 8 pods it had: 7 + 2
    // available - 8 = 1, not 2.
    let all = [rs("old", 7, 8), rs("new", 3, 2)];
    assert_eq!(
        scale_down_old_for_rolling(&d, &all, &all[..1]),
        vec![(0, 6)]
    );
}

#[test]
fn unhealthy_old_pods_go_first() {
    let old = [rs("a", 3, 3), rs("b", 4, 1), rs("c", 2, 0)];
    assert_eq!(cleanup_unhealthy(&old, 4), vec![(1, 1), (2, 1)]);
    assert_eq!(cleanup_unhealthy(&old, 2), vec![(1, 2)]);
    assert!(cleanup_unhealthy(&old, 0).is_empty());
}

#[test]
fn annotations_carry_revision_and_history() {
    let d = deploy(4, json!(1), json!(0));
    let mut new_rs = rs("n", 0, 0);
    assert!(set_new_replica_set_annotations(&d, &mut new_rs, 1, false));
    let a = new_rs.metadata.annotations.clone().unwrap();
    assert_eq!(a[REVISION_ANNOTATION], "1");
    assert_eq!(a[DESIRED_REPLICAS_ANNOTATION], "4");
    assert_eq!(a[MAX_REPLICAS_ANNOTATION], "5");
    assert_eq!(a["a"], "1", "deployment annotations copied");
    assert!(!set_new_replica_set_annotations(&d, &mut new_rs, 1, true));
    // A rollback to this ReplicaSet: revision 3, history keeps 1.
    assert!(set_new_replica_set_annotations(&d, &mut new_rs, 3, true));
    let a = new_rs.metadata.annotations.clone().unwrap();
    assert_eq!(a[REVISION_ANNOTATION], "3");
    assert_eq!(a[REVISION_HISTORY_ANNOTATION], "1");
    assert_eq!(revision(&new_rs), 3);
}

#[test]
fn proportional_shares_follow_max_replicas() {
    // Scaling 10 (+3 surge, annotated 13) to 20 (+5 surge = 25): an RS of
    // 6 grows to round(6 * 25 / 13) = 12.
    let d = deploy(20, json!("25%"), json!(0));
    let mut r = rs("a", 6, 6);
    set_replicas_annotations(&mut r, 10, 13);
    assert_eq!(proportion(&d, &r, 12, 0), 6);
    assert_eq!(proportion(&d, &r, 12, 10), 2, "capped by what is left");
    assert_eq!(proportion(&d, &rs("z", 0, 0), 12, 0), 0);
    let zero = deploy(0, json!(1), json!(0));
    assert_eq!(proportion(&zero, &r, -6, 0), -6);
}
