//! The controller manager's leader election on the real API server.

use crate::support;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use support::{Cluster, wait_for};

fn rs(replicas: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": "le"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "le"}},
            "template": {"metadata": {"labels": {"app": "le"}},
                         "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
        },
    }))
    .unwrap()
}

async fn holder(c: &Cluster) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), "kube-system");
    leases
        .get("kube-controller-manager")
        .await
        .ok()?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_at_a_time_and_hand_over_on_stop() {
    let mut c = Cluster::start_bare(0).await;
    c.start_manager("first", true);
    wait_for("first to lead", async || {
        (holder(&c).await.as_deref() == Some("first")).then_some(())
    })
    .await;
    c.start_manager("second", true);
    let api: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    api.create(&PostParams::default(), &rs(2)).await.unwrap();
    wait_for("2 pods", async || {
        (c.active_pods("default", "app=le").await.len() == 2).then_some(())
    })
    .await;
    assert_eq!(holder(&c).await.as_deref(), Some("first"));

    // The leader stops cleanly: the standby takes over without waiting out
    // the lease, and reconciles.
    c.stop_manager(0).await;
    wait_for("second to lead", async || {
        (holder(&c).await.as_deref() == Some("second")).then_some(())
    })
    .await;
    api.patch(
        "le",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 3}})),
    )
    .await
    .unwrap();
    wait_for("3 pods under the new leader", async || {
        (c.active_pods("default", "app=le").await.len() == 3).then_some(())
    })
    .await;
    c.stop().await;
}
