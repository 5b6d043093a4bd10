//! Storage through the real server: the DefaultStorageClass admission of
//! new claims (none, one, the newest of several, a class named or
//! explicitly empty) and PersistentVolume `status.lastPhaseTransitionTime`
//! on create and on every phase change, by kube-rs and kubectl.

use crate::support;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const DEFAULT: &str = "storageclass.kubernetes.io/is-default-class";

fn class(name: &str, default: Option<&str>) -> StorageClass {
    let mut meta = json!({"name": name});
    if let Some(d) = default {
        meta["annotations"] = json!({DEFAULT: d});
    }
    serde_json::from_value(json!({"metadata": meta, "provisioner": "example.com/p"})).unwrap()
}

fn claim(name: &str, class: Option<&str>) -> PersistentVolumeClaim {
    let mut spec =
        json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}});
    if let Some(c) = class {
        spec["storageClassName"] = json!(c);
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

fn class_of(c: &PersistentVolumeClaim) -> Option<&str> {
    c.spec.as_ref().unwrap().storage_class_name.as_deref()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_without_a_class_get_the_newest_default() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = support::start(dir.path(), 0).await;
    let classes: Api<StorageClass> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();

    // No default class: the claim stays without one.
    classes.create(&pp, &class("plain", None)).await.unwrap();
    classes
        .create(&pp, &class("off", Some("false")))
        .await
        .unwrap();
    let c = claims.create(&pp, &claim("none", None)).await.unwrap();
    assert_eq!(class_of(&c), None);

    // One default.
    classes
        .create(&pp, &class("standard", Some("true")))
        .await
        .unwrap();
    let c = claims.create(&pp, &claim("one", None)).await.unwrap();
    assert_eq!(class_of(&c), Some("standard"));

    // Several defaults: the newest (creation timestamps have whole seconds).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    classes
        .create(&pp, &class("fast", Some("true")))
        .await
        .unwrap();
    let c = claims.create(&pp, &claim("newest", None)).await.unwrap();
    assert_eq!(class_of(&c), Some("fast"));

    // A named class, or "" (no class), is kept.
    let c = claims
        .create(&pp, &claim("named", Some("plain")))
        .await
        .unwrap();
    assert_eq!(class_of(&c), Some("plain"));
    let c = claims.create(&pp, &claim("empty", Some(""))).await.unwrap();
    assert_eq!(class_of(&c), Some(""));

    // Only creates are defaulted: an existing claim without a class keeps
    // none through an update.
    let c = claims
        .patch(
            "none",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(class_of(&c), None);

    // kubectl's server-side dry run shows the same defaulting.
    let kubectl = support::Kubectl::new(support::KUBECTL_133, dir.path());
    let manifest = dir.path().join("claim.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: by-kubectl\nspec:\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: 1Gi\n",
    )
    .unwrap();
    let out = kubectl
        .ok(&[
            "create",
            "-f",
            manifest.to_str().unwrap(),
            "--dry-run=server",
            "-o",
            "jsonpath={.spec.storageClassName}",
        ])
        .await;
    assert_eq!(out, "fast");
    server.shutdown().await;
}

fn volume(name: &str) -> PersistentVolume {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "hostPath": {"path": "/tmp/pv"}},
    }))
    .unwrap()
}

fn transition(pv: &PersistentVolume) -> Option<String> {
    let v = serde_json::to_value(pv).unwrap();
    v.pointer("/status/lastPhaseTransitionTime")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn phase(pv: &PersistentVolume) -> Option<&str> {
    pv.status.as_ref().unwrap().phase.as_deref()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_volumes_record_their_phase_transitions() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = support::start(dir.path(), 0).await;
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pp = PatchParams::default();

    let created = pvs
        .create(&PostParams::default(), &volume("v1"))
        .await
        .unwrap();
    assert_eq!(phase(&created), Some("Pending"));
    let t0 = transition(&created).expect("stamped on create");
    assert!(t0.ends_with('Z') && t0.len() == 20, "{t0}");

    // A phase change through /status gets a new time (times have whole
    // seconds: wait for the next one).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let available = pvs
        .patch_status(
            "v1",
            &pp,
            &Patch::Merge(json!({"status": {"phase": "Available"}})),
        )
        .await
        .unwrap();
    assert_eq!(phase(&available), Some("Available"));
    let t1 = transition(&available).unwrap();
    assert!(t1 > t0, "{t1} after {t0}");

    // A status write that keeps the phase keeps the time, even when the
    // client drops the field.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut replaced = pvs.get_status("v1").await.unwrap();
    let mut status = serde_json::to_value(replaced.status.take().unwrap()).unwrap();
    status
        .as_object_mut()
        .unwrap()
        .remove("lastPhaseTransitionTime");
    status["message"] = json!("still available");
    replaced.status = Some(serde_json::from_value(status).unwrap());
    let same = pvs
        .replace_status("v1", &PostParams::default(), &replaced)
        .await
        .unwrap();
    assert_eq!(transition(&same), Some(t1.clone()));

    // A time the client sets on a phase change is kept.
    let chosen = "2020-01-01T00:00:00Z";
    let released = pvs
        .patch_status(
            "v1",
            &pp,
            &Patch::Merge(
                json!({"status": {"phase": "Released", "lastPhaseTransitionTime": chosen}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(transition(&released).as_deref(), Some(chosen));

    // Spec updates never touch status.
    let relabeled = pvs
        .patch(
            "v1",
            &pp,
            &Patch::Merge(
                json!({"metadata": {"labels": {"a": "b"}}, "status": {"phase": "Failed"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(phase(&relabeled), Some("Released"));
    assert_eq!(transition(&relabeled).as_deref(), Some(chosen));

    // Through kubectl (a status patch) the phase change is stamped too.
    let kubectl = support::Kubectl::new(support::KUBECTL_133, dir.path());
    kubectl
        .ok(&[
            "patch",
            "pv",
            "v1",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Failed"}}"#,
        ])
        .await;
    let t = kubectl
        .ok(&[
            "get",
            "pv",
            "v1",
            "-o",
            "jsonpath={.status.lastPhaseTransitionTime}",
        ])
        .await;
    assert!(t.as_str() > t1.as_str(), "{t} after {t1}");
    server.shutdown().await;
}
