#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::framework::{Code, StaticLister};
use crate::plugins::testing::{node, pod, run_filter, snapshot, verdict};
use k8s_openapi::api::core::v1::PersistentVolume;
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::{Value, json};

fn lister() -> StaticLister {
    let mut l = StaticLister::default();
    let pvc = |name: &str, spec: Value, extra: Value| -> Arc<PersistentVolumeClaim> {
        let mut v = json!({"metadata": {"name": name, "namespace": "default"}, "spec": spec});
        if let Some(obj) = extra.as_object() {
            for (k, val) in obj {
                v[k] = val.clone();
            }
        }
        Arc::new(serde_json::from_value(v).unwrap())
    };
    for (name, spec, extra) in [
        ("bound-local", json!({"volumeName": "pv-local"}), json!({})),
        ("bound-any", json!({"volumeName": "pv-any"}), json!({})),
        ("bound-gone", json!({"volumeName": "pv-gone"}), json!({})),
        (
            "unbound-immediate",
            json!({"storageClassName": "fast"}),
            json!({}),
        ),
        ("unbound-noclass", json!({}), json!({})),
        (
            "unbound-wait",
            json!({"storageClassName": "wait"}),
            json!({}),
        ),
        (
            "unbound-unknown",
            json!({"storageClassName": "nope"}),
            json!({}),
        ),
        (
            "lost",
            json!({"volumeName": "pv-x"}),
            json!({"status": {"phase": "Lost"}}),
        ),
    ] {
        l.pvcs
            .insert(format!("default/{name}"), pvc(name, spec, extra));
    }
    let mut deleting = (*pvc("deleting", json!({}), json!({}))).clone();
    deleting.metadata.deletion_timestamp =
        Some(serde_json::from_value(json!("2025-01-01T00:00:00Z")).unwrap());
    l.pvcs.insert("default/deleting".into(), Arc::new(deleting));
    let mut eph = (*pvc("p-scratch", json!({"storageClassName": "wait"}), json!({}))).clone();
    eph.metadata.owner_references = Some(vec![
        serde_json::from_value(json!(
        {"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "pod-uid", "controller": true}))
        .unwrap(),
    ]);
    l.pvcs.insert("default/p-scratch".into(), Arc::new(eph));

    let pv = |name: &str, affinity: Value| -> Arc<PersistentVolume> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"nodeAffinity": affinity}}))
            .unwrap(),
        )
    };
    l.pvs.insert("pv-local".into(), pv("pv-local", json!({"required": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}})));
    l.pvs.insert("pv-any".into(), pv("pv-any", json!(null)));
    let sc = |name: &str, mode: Option<&str>| -> Arc<StorageClass> {
        let mut v = json!({"metadata": {"name": name}, "provisioner": "x"});
        if let Some(m) = mode {
            v["volumeBindingMode"] = json!(m);
        }
        Arc::new(serde_json::from_value(v).unwrap())
    };
    l.storage_classes
        .insert("fast".into(), sc("fast", Some("Immediate")));
    l.storage_classes
        .insert("wait".into(), sc("wait", Some("WaitForFirstConsumer")));
    l
}

fn plugin() -> Arc<dyn Plugin> {
    new(
        None,
        &Handle {
            lister: Arc::new(lister()),
        },
    )
    .unwrap()
}

fn pod_with_claims(claims: &[&str]) -> PodInfo {
    let volumes: Vec<Value> = claims
        .iter()
        .map(|c| json!({"name": format!("v-{c}"), "persistentVolumeClaim": {"claimName": c}}))
        .collect();
    pod(json!({"metadata": {"uid": "pod-uid"}, "spec": {"containers": [], "volumes": volumes}}))
}

fn nodes() -> Snapshot {
    snapshot(vec![
        node(json!({"metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}}})),
        node(json!({"metadata": {"name": "n2", "labels": {"kubernetes.io/hostname": "n2"}}})),
    ])
}

#[test]
fn pre_filter_rejections() {
    let uu = Code::UnschedulableAndUnresolvable;
    let cases: Vec<(Vec<&str>, Code, &str)> = vec![
        (
            vec!["missing"],
            uu,
            "persistentvolumeclaim \"missing\" not found",
        ),
        (
            vec!["deleting"],
            uu,
            "persistentvolumeclaim \"deleting\" is being deleted",
        ),
        (
            vec!["lost"],
            uu,
            "persistentvolumeclaim \"lost\" bound to non-existent persistentvolume \"pv-x\"",
        ),
        (vec!["unbound-immediate"], uu, ERR_REASON_UNBOUND_IMMEDIATE),
        (vec!["unbound-noclass"], uu, ERR_REASON_UNBOUND_IMMEDIATE),
        (
            vec!["unbound-wait", "unbound-immediate"],
            uu,
            ERR_REASON_UNBOUND_IMMEDIATE,
        ),
        // A missing claim is reported before class problems.
        (
            vec!["unbound-immediate", "missing"],
            uu,
            "persistentvolumeclaim \"missing\" not found",
        ),
        (
            vec!["unbound-unknown"],
            Code::Error,
            "storageclass.storage.k8s.io \"nope\" not found",
        ),
    ];
    for (claims, code, reason) in cases {
        let (_, s, _) = run_filter(plugin().as_ref(), &pod_with_claims(&claims), &nodes());
        assert_eq!(verdict(&s), (code, vec![reason.to_owned()]), "{claims:?}");
    }
}

#[test]
fn filter_by_bound_volume_affinity() {
    let p = plugin();
    let (_, s, _) = run_filter(
        p.as_ref(),
        &pod(json!({"spec": {"containers": []}})),
        &nodes(),
    );
    assert!(s.is_skip());

    let (_, s, statuses) = run_filter(
        p.as_ref(),
        &pod_with_claims(&["bound-any", "unbound-wait"]),
        &nodes(),
    );
    assert!(s.is_success());
    assert!(statuses.iter().all(Status::is_success));

    let (_, _, statuses) = run_filter(p.as_ref(), &pod_with_claims(&["bound-local"]), &nodes());
    assert!(statuses[0].is_success());
    assert_eq!(
        verdict(&statuses[1]),
        (
            Code::UnschedulableAndUnresolvable,
            vec![ERR_REASON_NODE_CONFLICT.to_owned()]
        )
    );

    let (_, _, statuses) = run_filter(p.as_ref(), &pod_with_claims(&["bound-gone"]), &nodes());
    assert_eq!(statuses[0].reasons(), [ERR_REASON_PV_NOT_EXIST]);
}

#[test]
fn ephemeral_volumes() {
    let p = plugin();
    let eph = |uid: &str, vol: &str| {
        pod(
            json!({"metadata": {"uid": uid}, "spec": {"containers": [], "volumes": [
            {"name": vol, "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}]}}),
        )
    };
    let (_, s, _) = run_filter(p.as_ref(), &eph("pod-uid", "scratch"), &nodes());
    assert!(s.is_success(), "{s:?}");
    let (_, s, _) = run_filter(p.as_ref(), &eph("other-uid", "scratch"), &nodes());
    assert_eq!(
        s.reasons(),
        ["PVC default/p-scratch was not created for pod default/p (pod is not owner)"]
    );
    let (_, s, _) = run_filter(p.as_ref(), &eph("pod-uid", "cache"), &nodes());
    assert_eq!(
        s.reasons(),
        ["waiting for ephemeral volume controller to create the persistentvolumeclaim \"p-cache\""]
    );
}
