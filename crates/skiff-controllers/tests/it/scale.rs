//! A larger ReplicaSet: more than one burst (500) of creations and
//! deletions. Ignored by default (it takes a while in debug builds); run
//! with `cargo test -p skiff-controllers --test it -- --ignored scale::`.

use crate::support;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use skiff_controllers::cached_pod::CachedPod;
use support::{Cluster, NODE};

/// Waits until the status shows `n` replicas, `ready` of them ready.
async fn wait_ready(
    api: &Api<ReplicaSet>,
    n: i32,
    ready: Option<i32>,
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        let s = api.get("big").await.unwrap().status.unwrap_or_default();
        if s.replicas == n && (ready.is_none() || s.ready_replicas == ready) {
            return start.elapsed();
        }
        if start.elapsed() > limit {
            let pods: Api<CachedPod> = Api::namespaced(api.clone().into_client(), "default");
            let all = pods.list(&Default::default()).await.unwrap().items;
            let ready = all
                .iter()
                .filter(|p| skiff_controllers::podutil::is_pod_ready(p))
                .count();
            let running = all
                .iter()
                .filter(|p| skiff_controllers::podutil::phase(p) == "Running")
                .count();
            panic!(
                "stuck at {s:?}; pods {} ready {ready} running {running}",
                all.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow in debug builds"]
async fn more_than_a_burst_of_replicas() {
    let c = Cluster::start(1).await;
    let api: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "big"},
        "spec": {"replicas": 700, "selector": {"matchLabels": {"app": "big"}},
                 "template": {"metadata": {"labels": {"app": "big"}},
                              "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "busybox"}]}}},
    }))
    .unwrap();
    api.create(&PostParams::default(), &rs).await.unwrap();
    // A hollow node has addresses for 253 pods: the rest stay Pending.
    let up = wait_ready(&api, 700, None, Duration::from_secs(120)).await;
    let running = wait_ready(&api, 700, Some(253), Duration::from_secs(120)).await;
    api.patch(
        "big",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 200}})),
    )
    .await
    .unwrap();
    // Pending pods go first: every one left is running and ready.
    let down = wait_ready(&api, 200, Some(200), Duration::from_secs(120)).await;
    let left = c.active_pods("default", "app=big").await;
    assert_eq!(left.len(), 200);
    assert!(
        left.iter()
            .all(|p| skiff_controllers::podutil::is_pod_ready(&CachedPod::from(p.clone())))
    );
    println!(
        "| step | time |\n|---|---|\n| 0 -> 700 created | {up:?} |\n| 253 running | {running:?} |\n| 700 -> 200 | {down:?} |"
    );
    c.stop().await;
}
