//! The scheduler benchmark's workloads, small, on the real API server with
//! the real scheduler: every pod is bound, and where they land passes the
//! benchmark's placement check (no node over its allocatable, nothing
//! against the workload's rule), with SchedulingBasic's pods spread evenly.

use crate::support::Cluster;

use std::time::Duration;

use skiff_sim::bench::{self, workloads};

async fn run(name: &str, nodes: usize, pods: usize) -> bench::Row {
    let c = Cluster::with_scheduler().await;
    let w = workloads::all(nodes, pods)
        .into_iter()
        .find(|w| w.name == name)
        .unwrap();
    let row = bench::run_workload_on(
        std::slice::from_ref(&c.client),
        &w,
        8,
        Duration::from_secs(30),
        true,
        None,
    )
    .await
    .unwrap();
    assert_eq!(row.note, "", "{name}");
    assert_eq!(row.scheduled, w.pods, "{name}");
    let p = row.placement.clone().expect("placement read back");
    assert_eq!(p.verdict(), "ok", "{name}: {p:?}");
    row
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduling_basic_spreads_pods_evenly() {
    // 6 init + 60 measured pods of 100m/500Mi on 12 identical nodes: least
    // allocated puts each on one of the emptiest nodes.
    let row = run("SchedulingBasic", 12, 60).await;
    let p = row.placement.unwrap();
    assert!(p.max_per_node - p.min_per_node <= 1, "{p:?}");
    assert_eq!(p.min_per_node, 66 / 12, "{p:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_spreading_keeps_zones_within_the_skew() {
    // 30 measured pods over 3 zones with maxSkew 5, after 30 init pods.
    let row = run("TopologySpreading", 30, 30).await;
    assert!(row.placement.unwrap().zone_skew <= 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_anti_affinity_leaves_one_pod_per_node() {
    // A fifth of 40 nodes as init pods and as measured pods.
    let row = run("PodAntiAffinity", 40, 40).await;
    assert_eq!(row.placement.unwrap().max_per_node, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_affinity_and_preemption_place_within_their_rules() {
    run("NodeAffinity", 12, 24).await;
    // 3 full nodes of four 900m pods; each high-priority pod evicts one.
    let row = run("Preemption", 30, 10).await;
    assert_eq!(row.evicted, Some(3));
}
