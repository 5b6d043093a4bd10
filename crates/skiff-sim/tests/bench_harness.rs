//! The scheduler benchmark's measurement, in-process against the real API
//! server: with a trivial round-robin binder standing in for a scheduler
//! every measured pod is counted with its latency; without one the
//! workload gives up cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use skiff_apiserver::{ApiServer, ApiServerConfig};
use skiff_sim::bench::{self, workloads};
use skiff_store::AnyStore;

async fn start_server(dir: &Path) -> (ApiServer, kube::Client) {
    let store = AnyStore::open(&[], dir).await.unwrap();
    let server = ApiServer::start(ApiServerConfig::loopback(dir), store)
        .await
        .unwrap();
    let client = bench::client_from(&dir.join("kubeconfig.yaml"))
        .await
        .unwrap();
    (server, client)
}

/// Binds every unbound pod to `hollow-<i % nodes>` through pods/binding.
async fn round_robin_binder(client: kube::Client, nodes: usize) {
    let all: Api<Pod> = Api::all(client.clone());
    let config = watcher::Config::default().fields("spec.nodeName=");
    let mut pods = watcher(all, config)
        .default_backoff()
        .applied_objects()
        .boxed();
    let mut next = 0usize;
    while let Some(Ok(pod)) = pods.next().await {
        let (Some(ns), Some(name)) = (pod.metadata.namespace, pod.metadata.name) else {
            continue;
        };
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let binding = json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name},
            "target": {"kind": "Node", "name": format!("hollow-{}", next % nodes)},
        });
        next += 1;
        let _ = api
            .create_subresource::<_, serde_json::Value>(
                "binding",
                &name,
                &PostParams::default(),
                &binding,
            )
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measures_every_bound_pod() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start_server(dir.path()).await;
    let binder = tokio::spawn(round_robin_binder(client.clone(), 10));
    let w = workloads::all(10, 60)
        .into_iter()
        .find(|w| w.name == "SchedulingBasic")
        .unwrap();
    let row = bench::run_workload_on(
        std::slice::from_ref(&client),
        &w,
        8,
        Duration::from_secs(10),
        true,
        None,
    )
    .await
    .unwrap();
    binder.abort();
    assert_eq!(row.note, "");
    // The server runs in this process: only the driver's CPU is told.
    assert!(row.driver_cpu_per_pod.is_some());
    assert_eq!(row.server_cpu_per_pod, None);
    assert_eq!((row.nodes, row.pods, row.scheduled), (10, 60, 60));
    assert!(row.pods_per_sec > 0.0);
    let (p50, p99) = (row.p50.unwrap(), row.p99.unwrap());
    assert!(
        p50 <= p99 && p99 < Duration::from_secs(10),
        "{p50:?} {p99:?}"
    );
    // The hollow nodes ran what was bound.
    let pods: Api<Pod> = Api::namespaced(client.clone(), workloads::MEASURED_NAMESPACE);
    let list = pods.list(&Default::default()).await.unwrap();
    assert_eq!(list.items.len(), 60);
    // Where they landed, read back: 6 init and 60 measured pods dealt round
    // robin over 10 nodes give 6 or 7 per node; each node got 6 measured
    // pods, so the zones (hollow-<i> is in zone-<i % 3>: 4, 3 and 3 nodes)
    // hold 24, 18 and 18.
    let p = row.placement.expect("placement read back");
    assert_eq!((p.min_per_node, p.max_per_node), (6, 7), "{p:?}");
    assert_eq!(p.zone_skew, 6, "{p:?}");
    assert_eq!(p.verdict(), "ok");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gives_up_cleanly_without_a_scheduler() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start_server(dir.path()).await;
    let w = workloads::all(5, 20)
        .into_iter()
        .find(|w| w.name == "TopologySpreading")
        .unwrap();
    let started = std::time::Instant::now();
    let row = bench::run_workload_on(&[client], &w, 8, Duration::from_secs(1), false, None)
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(row.scheduled, 0);
    assert!(
        row.note.starts_with("timed out: 0/5 init pods bound"),
        "{}",
        row.note
    );
    assert!(row.note.contains("is a scheduler running"), "{}", row.note);
    server.shutdown().await;
}
