//! A micro-benchmark of whole scheduling cycles with the default profile:
//! SchedulingBasic's shape (5,000 nodes of 4 cpu / 32Gi / 110 pods, pods
//! requesting 100m / 500Mi), cache → snapshot → schedule_pod → assume, as
//! the loop does, without the API server. Ignored by default; run with
//! `cargo test -p skiff-scheduler --release --lib cycle_bench -- --ignored --nocapture`.
//! `SKIFF_BENCH_NODES` / `SKIFF_BENCH_PODS` size it. Prints timings and
//! asserts only that every pod was placed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::json;

use crate::cache::{Cache, CacheSnapshot};
use crate::config::{DEFAULT_SCHEDULER_NAME, KubeSchedulerConfiguration, Profile};
use crate::framework::{CycleState, Handle, PodInfo, StaticLister};
use crate::runtime::Framework;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn node(i: usize) -> Arc<Node> {
    let name = format!("node-{i}");
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {
                "kubernetes.io/hostname": name,
                "topology.kubernetes.io/zone": format!("zone-{}", i % 3),
            }},
            "status": {
                "allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"},
                "capacity": {"cpu": "4", "memory": "32Gi", "pods": "110"},
            }
        }))
        .unwrap(),
    )
}

fn pod(i: usize) -> Arc<Pod> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": format!("pod-{i}"), "namespace": "bench",
                "uid": format!("uid-{i}")},
            "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}}}],
                "schedulerName": DEFAULT_SCHEDULER_NAME, "priority": 0}
        }))
        .unwrap(),
    )
}

#[test]
#[ignore = "benchmark; run with --release --ignored"]
fn cycle_bench_scheduling_basic() {
    let nodes = env("SKIFF_BENCH_NODES", 5000);
    let pods = env("SKIFF_BENCH_PODS", 10_000);
    let config = KubeSchedulerConfiguration::default();
    let handle = Handle {
        lister: Arc::new(StaticLister::default()),
    };
    let fwk = Framework::new(
        0,
        &Profile::default_named(DEFAULT_SCHEDULER_NAME),
        &crate::plugins::registry(),
        &handle,
        config.parallelism,
        config.percentage_of_nodes_to_score,
    )
    .unwrap();
    let cache = Cache::new();
    for i in 0..nodes {
        cache.add_or_update_node(node(i));
    }
    let pods: Vec<Arc<Pod>> = (0..pods).map(pod).collect();
    let mut snap = CacheSnapshot::default();
    let (mut t_snap, mut t_sched) = (0.0, 0.0);
    let start = Instant::now();
    for p in &pods {
        let t0 = Instant::now();
        cache.update_snapshot(&mut snap);
        let t1 = Instant::now();
        let info = PodInfo::new(p.clone());
        let mut state = CycleState::new();
        let r = fwk
            .schedule_pod(&mut state, &info, &snap.snapshot, None)
            .unwrap();
        t_sched += t1.elapsed().as_secs_f64();
        t_snap += (t1 - t0).as_secs_f64();
        let mut assumed = (**p).clone();
        assumed.spec.as_mut().unwrap().node_name = Some(r.suggested_host.clone());
        cache
            .assume_pod(Arc::new(PodInfo::new(Arc::new(assumed))), &r.suggested_host)
            .unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let n = pods.len() as f64;
    println!(
        "{nodes} nodes, {} pods: {:.0} pods/s; per pod: snapshot {:.1} µs, schedule {:.1} µs, total {:.1} µs",
        pods.len(),
        n / secs,
        t_snap / n * 1e6,
        t_sched / n * 1e6,
        secs / n * 1e6
    );
    snap = CacheSnapshot::default();
    cache.update_snapshot(&mut snap);
    let placed: usize = snap.snapshot.nodes.iter().map(|n| n.pods.len()).sum();
    assert_eq!(placed, pods.len());
}
