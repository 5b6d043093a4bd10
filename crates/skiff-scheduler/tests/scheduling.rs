//! The scheduler against the real API server: pods get bound, a pod that
//! fits nowhere gets PodScheduled=False and FailedScheduling and is bound
//! once a node appears, and leadership hands over when the leader stops.
//!
//! A minimal test registry (a cpu-fit filter plus the real DefaultBinder)
//! stands in for the default plugins.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use skiff_apiserver::{ApiServer, ApiServerConfig};
use skiff_scheduler::config::KubeSchedulerConfiguration;
use skiff_scheduler::framework::{
    ClusterEvent, CycleState, EventResource, FilterPlugin, Handle, NodeInfo, Plugin, PluginFactory,
    PodInfo, Status, action,
};
use skiff_scheduler::{SchedulerOptions, run};
use skiff_store::AnyStore;
use tokio::sync::watch;

struct CpuFit;

impl Plugin for CpuFit {
    fn name(&self) -> &'static str {
        "TestCpuFit"
    }
    fn events_to_register(&self) -> Vec<ClusterEvent> {
        vec![ClusterEvent {
            resource: EventResource::Node,
            action: action::ADD | action::UPDATE_NODE_ALLOCATABLE,
        }]
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
}

impl FilterPlugin for CpuFit {
    fn filter(&self, _s: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if node.requested.milli_cpu + pod.requests.milli_cpu > node.allocatable.milli_cpu {
            return Status::unschedulable("Insufficient cpu");
        }
        Status::success()
    }
}

fn cpu_fit(_a: Option<&serde_json::Value>, _h: &Handle) -> Result<Arc<dyn Plugin>, String> {
    Ok(Arc::new(CpuFit))
}

fn options(identity: &str, leader_elect: bool) -> SchedulerOptions {
    let mut registry = skiff_scheduler::plugins::registry();
    registry.push(("TestCpuFit", cpu_fit as PluginFactory));
    let names: BTreeSet<&str> = registry.iter().map(|(n, _)| *n).collect();
    let yaml = format!(
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n\
         leaderElection:\n  leaderElect: {leader_elect}\n\
         profiles:\n- schedulerName: default-scheduler\n  plugins:\n    multiPoint:\n      enabled:\n      - name: TestCpuFit\n"
    );
    SchedulerOptions {
        config: KubeSchedulerConfiguration::parse(&yaml, &names).unwrap(),
        registry,
        identity: identity.to_owned(),
    }
}

async fn start(dir: &Path) -> (ApiServer, kube::Client) {
    let store = AnyStore::open(&[], dir).await.unwrap();
    let mut config = ApiServerConfig::new(dir);
    config.bind_address = IpAddr::V4(Ipv4Addr::LOCALHOST);
    config.port = 0;
    let kubeconfig = dir.join("kubeconfig.yaml");
    config.write_kubeconfig = Some(kubeconfig.clone());
    let server = ApiServer::start(config, store).await.unwrap();
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    (server, kube::Client::try_from(cfg).unwrap())
}

async fn create_node(client: &kube::Client, name: &str, cpu: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let status = json!({"status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
        "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"}}});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
}

async fn create_pod(client: &kube::Client, name: &str, cpu: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox",
            "resources": {"requests": {"cpu": cpu}}}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
}

async fn wait_for<T, F: AsyncFnMut() -> Option<T>>(what: &str, mut f: F) -> T {
    for _ in 0..300 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn node_of(client: &kube::Client, pod: &str) -> Option<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.get(pod).await.ok()?.spec?.node_name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_bound_and_unschedulable_pods_wait_for_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start(dir.path()).await;
    let (stop_tx, stop_rx) = watch::channel(false);
    let sched = tokio::spawn(run(options("s1", false), client.clone(), stop_rx));

    create_node(&client, "n1", "2").await;
    create_pod(&client, "small", "1").await;
    let node = wait_for("small to be bound", async || {
        node_of(&client, "small").await
    })
    .await;
    assert_eq!(node, "n1");

    create_pod(&client, "big", "4").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let cond = wait_for("big's PodScheduled=False", async || {
        let p = pods.get("big").await.ok()?;
        p.status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")
    })
    .await;
    assert_eq!(cond.reason.as_deref(), Some("Unschedulable"));
    assert_eq!(
        cond.message.as_deref(),
        // DefaultPreemption is on: a pod larger than the node's
        // allocatable is unresolvable, so preemption cannot help.
        Some(
            "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: \
             1 Preemption is not helpful for scheduling.."
        )
    );
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let ev = wait_for("FailedScheduling event", async || {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("FailedScheduling")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("big")
            })
    })
    .await;
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    assert_eq!(
        ev.reporting_controller.as_deref(),
        Some("default-scheduler")
    );
    assert_eq!(ev.action.as_deref(), Some("Scheduling"));

    create_node(&client, "n2", "8").await;
    let node = wait_for("big to be bound", async || node_of(&client, "big").await).await;
    assert_eq!(node, "n2");
    let scheduled = wait_for("Scheduled event", async || {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("Scheduled")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("big")
            })
    })
    .await;
    assert_eq!(
        scheduled.note.as_deref(),
        Some("Successfully assigned default/big to n2")
    );

    stop_tx.send_replace(true);
    sched.await.unwrap().unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_hands_over_when_the_leader_stops() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start(dir.path()).await;
    create_node(&client, "n1", "8").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let holder = async || -> Option<String> {
        leases
            .get("kube-scheduler")
            .await
            .ok()?
            .spec?
            .holder_identity
            .filter(|h| !h.is_empty())
    };

    let (stop_a, rx_a) = watch::channel(false);
    let a = tokio::spawn(run(options("sched-a", true), client.clone(), rx_a));
    assert_eq!(wait_for("a to lead", holder).await, "sched-a");
    let (stop_b, rx_b) = watch::channel(false);
    let b = tokio::spawn(run(options("sched-b", true), client.clone(), rx_b));

    create_pod(&client, "first", "1").await;
    wait_for("first to be bound", async || {
        node_of(&client, "first").await
    })
    .await;
    assert_eq!(holder().await.as_deref(), Some("sched-a"));

    stop_a.send_replace(true);
    a.await.unwrap().unwrap();
    let h = wait_for("b to lead", async || {
        holder().await.filter(|h| h == "sched-b")
    })
    .await;
    assert_eq!(h, "sched-b");
    create_pod(&client, "second", "1").await;
    wait_for("second to be bound", async || {
        node_of(&client, "second").await
    })
    .await;
    let lease = leases.get("kube-scheduler").await.unwrap().spec.unwrap();
    assert_eq!(lease.lease_transitions, Some(1));

    stop_b.send_replace(true);
    b.await.unwrap().unwrap();
    server.shutdown().await;
}
