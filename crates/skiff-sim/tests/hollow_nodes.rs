//! Hollow nodes against the real API server on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use skiff_apiserver::{ApiServer, ApiServerConfig};
use skiff_sim::{HollowNodeConfig, HollowNodes};
use skiff_store::AnyStore;

async fn start_server(dir: &Path) -> (ApiServer, kube::Client) {
    let store = AnyStore::open(&[], dir).await.unwrap();
    let server = ApiServer::start(ApiServerConfig::loopback(dir), store)
        .await
        .unwrap();
    let client = skiff_sim::bench::client_from(&dir.join("kubeconfig.yaml"))
        .await
        .unwrap();
    (server, client)
}

/// Polls `f` until it returns `Some`, for up to 20 s.
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..200 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hollow_nodes_register_renew_and_run_pods() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start_server(dir.path()).await;
    let hollow = HollowNodes::start(
        client.clone(),
        HollowNodeConfig {
            count: 20,
            lease_interval: Duration::from_secs(1),
            taints: vec![skiff_sim::hollow::parse_taint("sim=yes:NoExecute").unwrap()],
            ..HollowNodeConfig::default()
        },
    )
    .await
    .unwrap();

    // Nodes: labels, capacity, Ready, podCIDR.
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes
        .list(&ListParams::default().labels("type=hollow"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 20);
    let n3 = nodes.get("hollow-3").await.unwrap();
    let labels = n3.metadata.labels.clone().unwrap();
    assert_eq!(labels["kubernetes.io/hostname"], "hollow-3");
    assert_eq!(labels["topology.kubernetes.io/zone"], "zone-0");
    let spec = n3.spec.clone().unwrap();
    assert_eq!(
        spec.pod_cidr.as_deref(),
        Some(hollow.pod_cidr(3).to_string().as_str())
    );
    assert_eq!(spec.taints.unwrap()[0].effect, "NoExecute");
    let status = n3.status.unwrap();
    assert_eq!(status.allocatable.unwrap()["pods"].0, "110");
    let ready = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "True");

    // Leases exist and are renewed.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let first = leases.get("hollow-7").await.unwrap();
    assert_eq!(
        first.spec.as_ref().unwrap().holder_identity.as_deref(),
        Some("hollow-7")
    );
    let first_renew = first.spec.unwrap().renew_time.unwrap();
    eventually("a lease renewal", || {
        let (leases, first_renew) = (leases.clone(), first_renew.clone());
        async move {
            let l = leases.get("hollow-7").await.ok()?;
            (l.spec?.renew_time? > first_renew).then_some(())
        }
    })
    .await;
    assert_eq!(
        leases
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        20
    );

    // A pod bound to a hollow node runs and gets ready.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "nodeName": "hollow-5",
            "tolerations": [{"key": "sim", "operator": "Exists"}],
            "initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [{"name": "app", "image": "nginx",
                "resources": {"requests": {"cpu": "100m"}}}],
        },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let running = eventually("the pod to run", || {
        let pods = pods.clone();
        async move {
            let p = pods.get("web").await.ok()?;
            let s = p.status.clone()?;
            (s.phase.as_deref() == Some("Running")).then_some(p)
        }
    })
    .await;
    let s = running.status.unwrap();
    let conditions = s.conditions.unwrap();
    for t in [
        "Ready",
        "ContainersReady",
        "Initialized",
        "PodReadyToStartContainers",
        "PodScheduled",
    ] {
        let c = conditions
            .iter()
            .find(|c| c.type_ == t)
            .unwrap_or_else(|| panic!("{t}"));
        assert_eq!(c.status, "True", "{t}");
    }
    let ip: Ipv4Addr = s.pod_ip.unwrap().parse().unwrap();
    assert!(
        hollow.pod_cidr(5).contains(ip),
        "{ip} in {}",
        hollow.pod_cidr(5)
    );
    assert_eq!(s.qos_class.as_deref(), Some("Burstable"));
    assert!(s.host_ip.is_some());
    let init = &s.init_container_statuses.unwrap()[0];
    assert_eq!(
        init.state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("Completed")
    );
    assert!(s.container_statuses.unwrap()[0].ready);

    // A graceful deletion completes.
    pods.delete("web", &DeleteParams::default()).await.unwrap();
    eventually("the pod to disappear", || {
        let pods = pods.clone();
        async move {
            match pods.get_opt("web").await {
                Ok(None) => Some(()),
                _ => None,
            }
        }
    })
    .await;
    // The pod can vanish from the API a moment before the hollow node's
    // task counts its own deletion, so wait for the count as well.
    eventually("the hollow node to count the deletion", || {
        let deleted = hollow
            .stats()
            .pods_deleted
            .load(std::sync::atomic::Ordering::Relaxed);
        async move { (deleted >= 1).then_some(()) }
    })
    .await;

    // Cleanup removes the nodes and leases.
    hollow.cleanup().await.unwrap();
    let left = nodes
        .list(&ListParams::default().labels("type=hollow"))
        .await
        .unwrap();
    assert!(left.items.is_empty());
    assert!(
        leases
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    server.shutdown().await;
}

/// `cargo test -p skiff-sim --release -- --ignored --nocapture rss`: the
/// memory of 5,000 hollow nodes in this process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn rss_of_5000_hollow_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start_server(dir.path()).await;
    let before = skiff_sim::bench::proc_status_kib("/proc/self/status", "VmRSS").unwrap();
    let hollow = HollowNodes::start(
        client,
        HollowNodeConfig {
            count: 5_000,
            ..HollowNodeConfig::default()
        },
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(15)).await;
    let after = skiff_sim::bench::proc_status_kib("/proc/self/status", "VmRSS").unwrap();
    println!(
        "VmRSS with the API server in-process: {before} KiB before, {after} KiB after 5,000 hollow nodes ({} KiB for them); renewals {}",
        after - before,
        hollow
            .stats()
            .lease_renewals
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    hollow.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_hollow_nodes_leave_leases_and_bound_pods_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start_server(dir.path()).await;
    let hollow = HollowNodes::start(
        client.clone(),
        HollowNodeConfig {
            count: 2,
            kubelets: false,
            lease_interval: Duration::from_millis(200),
            ..HollowNodeConfig::default()
        },
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for name in ["stays", "goes"] {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"nodeName": "hollow-1", "containers": [{"name": "app", "image": "nginx"}]},
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    // A graceful deletion is still finished: the node's pod watch is live
    // and has seen both pods by the time the second one is gone.
    pods.delete("goes", &DeleteParams::default()).await.unwrap();
    eventually("the deleted pod to disappear", || {
        let pods = pods.clone();
        async move { matches!(pods.get_opt("goes").await, Ok(None)).then_some(()) }
    })
    .await;
    let stays = pods.get("stays").await.unwrap();
    let status = stays.status.unwrap_or_default();
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    assert_eq!(status.pod_ip, None);
    let stats = hollow.stats();
    assert_eq!(
        stats
            .pods_started
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    // The Lease exists but is never renewed (the interval is 200 ms).
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = leases.get("hollow-1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let later = leases.get("hollow-1").await.unwrap();
    assert_eq!(
        lease.metadata.resource_version,
        later.metadata.resource_version
    );
    assert_eq!(
        stats
            .lease_renewals
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    hollow.shutdown().await;
    server.shutdown().await;
}
