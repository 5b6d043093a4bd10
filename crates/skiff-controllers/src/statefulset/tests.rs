#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::json;

use super::control::{
    CondemnedStep, UpdateStep, complete_rolling_update, compute_replica_status, condemned_step,
    first_unhealthy, rolling_update_step, split_replicas,
};
use super::sync::{UpdateRevisionPlan, plan_update_revision, status_changed};
use super::utils::*;
use crate::cached_pod::CachedPod;
use crate::controllerref::controller_ref;
use crate::history::{CONTROLLER_REVISION_HASH_LABEL, new_controller_revision};

fn set(v: serde_json::Value) -> StatefulSet {
    let mut base = json!({
        "metadata": {"name": "web", "namespace": "ns", "uid": "set-uid"},
        "spec": {
            "replicas": 3,
            "serviceName": "nginx",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}
        }
    });
    merge(&mut base, v);
    serde_json::from_value(base).unwrap()
}

fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
    match (a, b) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

/// A pod of `web` at `ordinal` in `phase`, ready or not, at revision `rev`.
fn pod(ordinal: i32, phase: &str, ready: bool, rev: &str) -> Arc<CachedPod> {
    let mut p = new_stateful_set_pod(&set(json!({})), ordinal);
    set_pod_revision(&mut p, rev);
    let mut p = CachedPod::from(p);
    p.status = Some(
        serde_json::from_value(json!({
            "phase": phase,
            "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"},
                            "lastTransitionTime": "2020-01-01T00:00:00Z"}]
        }))
        .unwrap(),
    );
    Arc::new(p)
}

fn terminating(p: Arc<CachedPod>) -> Arc<CachedPod> {
    let mut p = (*p).clone();
    p.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    Arc::new(p)
}

#[test]
fn parses_parent_name_and_ordinal() {
    let cases: &[(&str, Option<(&str, i32)>)] = &[
        ("web-0", Some(("web", 0))),
        ("web-12", Some(("web", 12))),
        ("my-web-3", Some(("my-web", 3))),
        ("web", None),
        ("web-", None),
        ("web-x1", None),
        ("web-1a", None),
        ("web--1", Some(("web-", 1))),
    ];
    for (name, want) in cases {
        assert_eq!(parent_name_and_ordinal(name), *want, "{name}");
    }
}

#[test]
fn membership_is_by_parent_name() {
    let s = set(json!({}));
    let mut p = (*pod(1, "Running", true, "r")).clone();
    assert!(is_member_of(&s, &p));
    p.metadata.name = Some("webby-1".into());
    assert!(!is_member_of(&s, &p));
    p.metadata.name = Some("my-web-1".into());
    assert!(!is_member_of(&s, &p));
}

#[test]
fn new_pod_has_identity_labels_hostname_and_claims() {
    let s = set(json!({
        "spec": {"ordinals": {"start": 5},
                 "volumeClaimTemplates": [{"metadata": {"name": "data"},
                                           "spec": {"accessModes": ["ReadWriteOnce"]}}]}
    }));
    let p = new_stateful_set_pod(&s, 6);
    let labels = p.metadata.labels.as_ref().unwrap();
    assert_eq!(p.metadata.name.as_deref(), Some("web-6"));
    assert_eq!(labels[POD_NAME_LABEL], "web-6");
    assert_eq!(labels[POD_INDEX_LABEL], "6");
    assert_eq!(labels["app"], "web");
    let spec = p.spec.as_ref().unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("web-6"));
    assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
    let vols = spec.volumes.as_ref().unwrap();
    assert_eq!(vols.len(), 1);
    assert_eq!(vols[0].name, "data");
    assert_eq!(
        vols[0].persistent_volume_claim.as_ref().unwrap().claim_name,
        "data-web-6"
    );
    let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.controller, owner.block_owner_deletion),
        (Some(true), Some(true))
    );
    let p = CachedPod::from(p);
    assert!(identity_matches(&s, &p));
    assert!(storage_matches(&s, &p));
    let claims = persistent_volume_claims(&s, 6);
    let c = &claims["data"];
    assert_eq!(c.metadata.name.as_deref(), Some("data-web-6"));
    assert_eq!(c.metadata.labels.as_ref().unwrap()["app"], "web");
}

#[test]
fn identity_and_storage_mismatches_are_detected_and_fixed() {
    let s = set(json!({
        "spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {}}]}
    }));
    let cached = |p: &Pod| CachedPod::from(p.clone());
    let mut p = new_stateful_set_pod(&s, 1);
    p.metadata.labels.as_mut().unwrap().remove(POD_NAME_LABEL);
    assert!(!identity_matches(&s, &cached(&p)));
    update_identity(&s, &mut p, 1);
    assert!(identity_matches(&s, &cached(&p)));
    p.spec.as_mut().unwrap().volumes.as_mut().unwrap()[0]
        .persistent_volume_claim
        .as_mut()
        .unwrap()
        .claim_name = "data-web-2".into();
    assert!(!storage_matches(&s, &cached(&p)));
    update_storage(&s, &mut p);
    assert!(storage_matches(&s, &cached(&p)));
    assert_eq!(p.spec.as_ref().unwrap().volumes.as_ref().unwrap().len(), 1);
    let other = set(json!({"metadata": {"namespace": "other"}}));
    assert!(!identity_matches(&other, &cached(&p)));
}

#[test]
fn split_places_pods_by_ordinal_and_condemns_the_rest_highest_first() {
    let s = set(json!({"spec": {"replicas": 2, "ordinals": {"start": 1}}}));
    let pods = vec![
        pod(0, "Running", true, "a"),
        pod(2, "Running", true, "a"),
        pod(4, "Running", true, "a"),
        pod(3, "Running", true, "a"),
    ];
    let slots = split_replicas(&s, &pods);
    let names: Vec<_> = slots
        .replicas
        .iter()
        .map(|p| p.as_ref().map(|p| p.metadata.name.clone().unwrap()))
        .collect();
    assert_eq!(names, vec![None, Some("web-2".into())]);
    let condemned: Vec<_> = slots
        .condemned
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(condemned, vec!["web-4", "web-3", "web-0"]);
}

#[test]
fn ordered_ready_scale_down_waits_for_healthy_pods() {
    let now = Timestamp::now();
    let healthy = pod(3, "Running", true, "a");
    let unready = pod(4, "Running", false, "a");
    // The first unhealthy pod may go; any other unhealthy one blocks.
    assert_eq!(
        condemned_step(&unready, true, Some("web-4"), 0, now),
        CondemnedStep::Delete
    );
    assert_eq!(
        condemned_step(&unready, true, Some("web-1"), 0, now),
        CondemnedStep::Block
    );
    assert_eq!(
        condemned_step(&unready, false, Some("web-1"), 0, now),
        CondemnedStep::Delete
    );
    assert_eq!(
        condemned_step(&healthy, true, Some("web-1"), 0, now),
        CondemnedStep::Delete
    );
    let gone = terminating(healthy);
    assert_eq!(
        condemned_step(&gone, true, None, 0, now),
        CondemnedStep::Block
    );
    assert_eq!(
        condemned_step(&gone, false, None, 0, now),
        CondemnedStep::Skip
    );
    // Ready, but not for minReadySeconds yet (ready since 2020: long ago).
    let recent = {
        let mut p = (*pod(3, "Running", true, "a")).clone();
        let c = &mut p.status.as_mut().unwrap().conditions.as_mut().unwrap()[0];
        c.last_transition_time = Some(Time(now - SignedDuration::from_secs(5)));
        Arc::new(p)
    };
    assert_eq!(
        condemned_step(&recent, true, None, 10, now),
        CondemnedStep::Block
    );
    assert_eq!(
        condemned_step(&recent, true, None, 2, now),
        CondemnedStep::Delete
    );
}

#[test]
fn first_unhealthy_prefers_replicas_in_order() {
    let s = set(json!({"spec": {"replicas": 3}}));
    let pods = vec![
        pod(0, "Running", true, "a"),
        pod(1, "Pending", false, "a"),
        pod(2, "Running", false, "a"),
        pod(3, "Running", false, "a"),
    ];
    let slots = split_replicas(&s, &pods);
    let now = Timestamp::now();
    assert_eq!(first_unhealthy(&slots, 0, now).as_deref(), Some("web-1"));
    let s1 = set(json!({"spec": {"replicas": 1}}));
    let slots = split_replicas(&s1, &pods);
    assert_eq!(first_unhealthy(&slots, 0, now).as_deref(), Some("web-3"));
}

#[test]
fn rolling_update_goes_from_the_highest_ordinal_down_to_the_partition() {
    let slots = |revs: &[(&str, bool)]| -> Vec<Option<Arc<CachedPod>>> {
        revs.iter()
            .enumerate()
            .map(|(i, (r, ready))| Some(pod(i32::try_from(i).unwrap(), "Running", *ready, r)))
            .collect()
    };
    type Case = (&'static str, Vec<Option<Arc<CachedPod>>>, i32, UpdateStep);
    let cases: Vec<Case> = vec![
        (
            "all old",
            slots(&[("a", true), ("a", true), ("a", true)]),
            0,
            UpdateStep::Delete("web-2".into()),
        ),
        (
            "top done",
            slots(&[("a", true), ("a", true), ("b", true)]),
            0,
            UpdateStep::Delete("web-1".into()),
        ),
        (
            "top not ready",
            slots(&[("a", true), ("a", true), ("b", false)]),
            0,
            UpdateStep::Wait,
        ),
        (
            "partition 2 done",
            slots(&[("a", true), ("a", true), ("b", true)]),
            2,
            UpdateStep::Done,
        ),
        (
            "partition 1",
            slots(&[("a", true), ("a", true), ("b", true)]),
            1,
            UpdateStep::Delete("web-1".into()),
        ),
        (
            "all new",
            slots(&[("b", true), ("b", true), ("b", true)]),
            0,
            UpdateStep::Done,
        ),
        (
            "missing",
            vec![Some(pod(0, "Running", true, "a")), None],
            0,
            UpdateStep::Wait,
        ),
        (
            "partition above",
            slots(&[("a", true)]),
            3,
            UpdateStep::Done,
        ),
    ];
    for (name, replicas, partition, want) in cases {
        assert_eq!(
            rolling_update_step(&replicas, partition, "b"),
            want,
            "{name}"
        );
    }
    let mut t = slots(&[("a", true), ("a", true)]);
    t[1] = Some(terminating(t[1].clone().unwrap()));
    assert_eq!(rolling_update_step(&t, 0, "b"), UpdateStep::Wait);
}

#[test]
fn versioned_pods_below_the_partition_stay_at_the_current_revision() {
    let cur = set(json!({"spec": {"updateStrategy": {"type": "RollingUpdate",
                                                      "rollingUpdate": {"partition": 2}}}}));
    let mut upd = cur.clone();
    upd.spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .containers[0]
        .image = Some("nginx:2".into());
    let image = |p: &Pod| {
        p.spec.as_ref().unwrap().containers[0]
            .image
            .clone()
            .unwrap()
    };
    for (ordinal, rev, img) in [
        (0, "cur", "nginx:1"),
        (1, "cur", "nginx:1"),
        (2, "upd", "nginx:2"),
    ] {
        let p = new_versioned_stateful_set_pod(&cur, &upd, "cur", "upd", ordinal);
        assert_eq!(
            pod_revision(&CachedPod::from(p.clone())),
            rev,
            "ordinal {ordinal}"
        );
        assert_eq!(image(&p), img);
    }
    // OnDelete: new pods always get the update revision.
    let on_delete = set(json!({"spec": {"updateStrategy": {"type": "OnDelete"}}}));
    let p = new_versioned_stateful_set_pod(&on_delete, &upd, "cur", "upd", 0);
    assert_eq!(pod_revision(&CachedPod::from(p)), "upd");
}

#[test]
fn revision_round_trips_the_template() {
    let a = set(json!({}));
    let mut b = a.clone();
    b.spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .containers[0]
        .image = Some("nginx:2".into());
    let cr = ControllerRevision {
        metadata: ObjectMeta::default(),
        data: Some(k8s_openapi::apimachinery::pkg::runtime::RawExtension(
            revision_patch(&b),
        )),
        revision: 2,
    };
    assert_eq!(revision_patch(&b)["spec"]["template"]["$patch"], "replace");
    let applied = apply_revision(&a, &cr);
    assert_eq!(applied.spec.unwrap().template, b.spec.unwrap().template);
}

fn rev(s: &StatefulSet, n: i64) -> Arc<ControllerRevision> {
    let mut cr = new_controller_revision(
        &s.metadata,
        controller_ref(s),
        None,
        revision_patch(s),
        n,
        Some(0),
    );
    let hash = cr.metadata.labels.as_ref().unwrap()[CONTROLLER_REVISION_HASH_LABEL].clone();
    cr.metadata.name = Some(format!("web-{hash}-{n}"));
    Arc::new(cr)
}

#[test]
fn update_revision_is_latest_renumbered_on_rollback_or_new() {
    let v1 = set(json!({}));
    let v2 = set(
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}}),
    );
    let v3 = set(
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:3"}]}}}}),
    );
    let history = vec![rev(&v1, 1), rev(&v2, 2)];
    assert_eq!(
        plan_update_revision(&history, &rev(&v2, 3)),
        UpdateRevisionPlan::Latest(1)
    );
    assert_eq!(
        plan_update_revision(&history, &rev(&v1, 3)),
        UpdateRevisionPlan::Renumber(0)
    );
    assert_eq!(
        plan_update_revision(&history, &rev(&v3, 3)),
        UpdateRevisionPlan::Create
    );
    assert_eq!(
        plan_update_revision(&[], &rev(&v1, 1)),
        UpdateRevisionPlan::Create
    );
}

#[test]
fn status_counts_and_rollout_completion() {
    let s = set(json!({}));
    let pods = vec![
        pod(0, "Running", true, "b"),
        pod(1, "Running", true, "a"),
        pod(2, "Pending", false, "b"),
        terminating(pod(3, "Running", true, "a")),
    ];
    let st = compute_replica_status(&pods, 0, "a", "b", Timestamp::now());
    assert_eq!(st.replicas, 4);
    assert_eq!(st.ready_replicas, Some(3));
    assert_eq!(st.available_replicas, Some(3));
    assert_eq!(st.current_replicas, Some(1));
    assert_eq!(st.updated_replicas, Some(2));
    let unborn = Arc::new(CachedPod::default());
    assert_eq!(
        compute_replica_status(&[unborn], 0, "a", "b", Timestamp::now()).replicas,
        0
    );

    let mut done = compute_replica_status(
        &[
            pod(0, "Running", true, "b"),
            pod(1, "Running", true, "b"),
            pod(2, "Running", true, "b"),
        ],
        0,
        "a",
        "b",
        Timestamp::now(),
    );
    done.current_revision = Some("a".into());
    done.update_revision = Some("b".into());
    let mut partial = done.clone();
    partial.ready_replicas = Some(2);
    complete_rolling_update(&s, &mut partial);
    assert_eq!(partial.current_revision.as_deref(), Some("a"));
    complete_rolling_update(&s, &mut done);
    assert_eq!(done.current_revision.as_deref(), Some("b"));
    assert_eq!(done.current_replicas, Some(3));

    let mut stored = s.clone();
    stored.status = Some(done.clone());
    assert!(!status_changed(&stored, &done));
    let mut more = done.clone();
    more.ready_replicas = Some(2);
    assert!(status_changed(&stored, &more));
    assert!(status_changed(&s, &done));
}

#[test]
fn claim_owner_refs_follow_the_retention_policy() {
    let policy = |deleted: &str, scaled: &str, replicas: i32| {
        set(json!({"spec": {"replicas": replicas,
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": deleted, "whenScaled": scaled}}}))
    };
    let mut p = (*pod(2, "Running", true, "a")).clone();
    p.metadata.uid = Some("pod-uid".into());
    let kinds = |c: &PersistentVolumeClaim| -> Vec<String> {
        c.metadata
            .owner_references
            .iter()
            .flatten()
            .map(|r| r.kind.clone())
            .collect()
    };
    // (whenDeleted, whenScaled, replicas, owners wanted)
    let cases: &[(&str, &str, i32, &[&str])] = &[
        (RETAIN, RETAIN, 3, &[]),
        (RETAIN, RETAIN, 1, &[]),
        (DELETE, RETAIN, 3, &["StatefulSet"]),
        (DELETE, RETAIN, 1, &["StatefulSet"]),
        (RETAIN, DELETE, 3, &[]),
        (RETAIN, DELETE, 1, &["Pod"]),
        (DELETE, DELETE, 3, &["StatefulSet"]),
        (DELETE, DELETE, 1, &["Pod"]),
    ];
    for (d, s, n, want) in cases {
        let st = policy(d, s, *n);
        let mut c = PersistentVolumeClaim::default();
        // A stale owner of the other kind must be removed as needed.
        update_claim_owner_ref_for_set_and_pod(&mut c, &policy(DELETE, DELETE, 3), &p);
        update_claim_owner_ref_for_set_and_pod(&mut c, &policy(RETAIN, DELETE, 1), &p);
        update_claim_owner_ref_for_set_and_pod(&mut c, &st, &p);
        assert_eq!(kinds(&c), *want, "{d}/{s} replicas {n}");
        assert!(claim_owner_matches_set_and_pod(&c, &st, &p));
    }
    assert_eq!(retention_policy(&set(json!({}))), (RETAIN, RETAIN));
}
