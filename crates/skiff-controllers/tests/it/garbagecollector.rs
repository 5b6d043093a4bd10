//! The garbage collector against the real API server: background,
//! foreground and orphan propagation, and dangling owner references.

use crate::support;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{DeleteParams, PostParams, PropagationPolicy};
use serde_json::json;
use support::{Cluster, NODE, wait_for};

fn cm(name: &str, owners: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": owners}})).unwrap()
}

fn owner_ref(o: &ConfigMap, block: bool) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "name": o.metadata.name,
           "uid": o.metadata.uid, "blockOwnerDeletion": block})
}

async fn gone(api: &Api<ConfigMap>, name: &str) {
    wait_for(&format!("{name} to be deleted"), async || {
        api.get_opt(name).await.unwrap().is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_deletes_dependents_and_dangling_references() {
    let c = Cluster::start(0).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let owner = cms
        .create(&PostParams::default(), &cm("owner", json!([])))
        .await
        .unwrap();
    let dep = cm("dep", json!([owner_ref(&owner, false)]));
    cms.create(&PostParams::default(), &dep).await.unwrap();
    // Two owners, one of which never existed: only that reference goes.
    let both = cm(
        "both",
        json!([owner_ref(&owner, false),
               {"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": "0000-ghost"}]),
    );
    cms.create(&PostParams::default(), &both).await.unwrap();
    wait_for("the dangling reference to be dropped", async || {
        let b = cms.get("both").await.unwrap();
        (b.metadata.owner_references.unwrap_or_default().len() == 1).then_some(())
    })
    .await;
    // A dependent of a never-existing owner is deleted.
    let orphan = cm(
        "lost",
        json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": "0000-ghost"}]),
    );
    cms.create(&PostParams::default(), &orphan).await.unwrap();
    gone(&cms, "lost").await;

    cms.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    gone(&cms, "dep").await;
    gone(&cms, "both").await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_in_another_namespace_does_not_count() {
    let c = Cluster::start(0).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let owner = cms
        .create(&PostParams::default(), &cm("owner", json!([])))
        .await
        .unwrap();
    let other: Api<ConfigMap> = Api::namespaced(c.client.clone(), "kube-system");
    other
        .create(
            &PostParams::default(),
            &cm("elsewhere", json!([owner_ref(&owner, false)])),
        )
        .await
        .unwrap();
    cms.create(
        &PostParams::default(),
        &cm("here", json!([owner_ref(&owner, false)])),
    )
    .await
    .unwrap();
    gone(&other, "elsewhere").await;
    assert!(cms.get_opt("here").await.unwrap().is_some());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_keeps_dependents_without_the_reference() {
    let c = Cluster::start(0).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let owner = cms
        .create(&PostParams::default(), &cm("owner", json!([])))
        .await
        .unwrap();
    cms.create(
        &PostParams::default(),
        &cm("dep", json!([owner_ref(&owner, true)])),
    )
    .await
    .unwrap();
    cms.delete("owner", &DeleteParams::orphan()).await.unwrap();
    gone(&cms, "owner").await;
    let dep = cms.get("dep").await.unwrap();
    assert!(dep.metadata.owner_references.unwrap_or_default().is_empty());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_deletes_dependents_first() {
    let c = Cluster::start(1).await;
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "fg"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "fg"}},
                 "template": {"metadata": {"labels": {"app": "fg"}},
                              "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "busybox"}]}}},
    }))
    .unwrap();
    rss.create(&PostParams::default(), &rs).await.unwrap();
    wait_for("2 pods", async || {
        (c.active_pods("default", "app=fg").await.len() == 2).then_some(())
    })
    .await;
    rss.delete("fg", &DeleteParams::foreground()).await.unwrap();
    // While pods remain, the RS is still there, held by the finalizer.
    let held = rss.get("fg").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    wait_for("the RS to go after its pods", async || {
        if rss.get_opt("fg").await.unwrap().is_some() {
            return None;
        }
        let left = c
            .pods("default")
            .list(&Default::default())
            .await
            .unwrap()
            .items;
        assert!(left.is_empty(), "the RS went before its pods");
        Some(())
    })
    .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_replica_set_in_the_background_deletes_its_pods() {
    let c = Cluster::start(1).await;
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "bg"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "bg"}},
                 "template": {"metadata": {"labels": {"app": "bg"}},
                              "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "busybox"}]}}},
    }))
    .unwrap();
    rss.create(&PostParams::default(), &rs).await.unwrap();
    wait_for("3 pods", async || {
        (c.active_pods("default", "app=bg").await.len() == 3).then_some(())
    })
    .await;
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    rss.delete("bg", &dp).await.unwrap();
    wait_for("the pods to be deleted", async || {
        c.pods("default")
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
            .then_some(())
    })
    .await;
    c.stop().await;
}
