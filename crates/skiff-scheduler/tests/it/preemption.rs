//! DefaultPreemption against the real API server, with the default plugins:
//! a high-priority pod evicts a lower-priority pod from a full node, is
//! nominated to it and lands there once the victim is gone; a pod with
//! `preemptionPolicy: Never` evicts nothing. The test plays the kubelet:
//! it finishes graceful deletions with a zero grace period.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use skiff_apiserver::{ApiServer, ApiServerConfig};
use skiff_scheduler::config::KubeSchedulerConfiguration;
use skiff_scheduler::{SchedulerOptions, run};
use skiff_store::AnyStore;
use tokio::sync::watch;

async fn start(dir: &Path) -> (ApiServer, kube::Client) {
    let store = AnyStore::open(&[], dir).await.unwrap();
    let server = ApiServer::start(ApiServerConfig::loopback(dir), store)
        .await
        .unwrap();
    let client = skiff_client::kubeconfig::client_from(&dir.join("kubeconfig.yaml"))
        .await
        .unwrap();
    (server, client)
}

fn options() -> SchedulerOptions {
    let mut opts = SchedulerOptions::new();
    let names = opts.registered();
    opts.config = KubeSchedulerConfiguration::parse(
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n\
         leaderElection:\n  leaderElect: false\n",
        &names,
    )
    .unwrap();
    opts.identity = "preemption-test".into();
    opts
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

async fn create_priority_class(client: &kube::Client, name: &str, value: i32, policy: &str) {
    let pcs: Api<PriorityClass> = Api::all(client.clone());
    let pc: PriorityClass = serde_json::from_value(json!({
        "metadata": {"name": name}, "value": value, "preemptionPolicy": policy
    }))
    .unwrap();
    pcs.create(&PostParams::default(), &pc).await.unwrap();
}

async fn create_pod(client: &kube::Client, name: &str, cpu: &str, class: Option<&str>) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut pod = json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox",
            "resources": {"requests": {"cpu": cpu}}}]}
    });
    if let Some(c) = class {
        pod["spec"]["priorityClassName"] = json!(c);
    }
    let pod: Pod = serde_json::from_value(pod).unwrap();
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

/// Finishes every graceful pod deletion at once, as a kubelet would once
/// the containers stopped.
fn fake_kubelet(client: kube::Client) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let pods: Api<Pod> = Api::namespaced(client, "default");
        loop {
            if let Ok(list) = pods.list(&ListParams::default()).await {
                for p in list.items {
                    if p.metadata.deletion_timestamp.is_some() {
                        let name = p.metadata.name.unwrap_or_default();
                        let _ = pods
                            .delete(&name, &DeleteParams::default().grace_period(0))
                            .await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_priority_pod_preempts_and_lands_on_the_freed_node() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start(dir.path()).await;
    let (stop_tx, stop_rx) = watch::channel(false);
    let sched = tokio::spawn(run(options(), client.clone(), stop_rx));
    let kubelet = fake_kubelet(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let node_of = async |name: &str| pods.get(name).await.ok()?.spec?.node_name;

    create_priority_class(&client, "high", 1000, "PreemptLowerPriority").await;
    create_priority_class(&client, "high-never", 1000, "Never").await;
    create_node(&client, "n1", "2").await;
    for name in ["low-1", "low-2"] {
        create_pod(&client, name, "1", None).await;
        let node = wait_for(name, async || node_of(name).await).await;
        assert_eq!(node, "n1");
    }

    // preemptionPolicy: Never: unschedulable, and nobody is evicted.
    create_pod(&client, "never", "1", Some("high-never")).await;
    let msg = wait_for("never's PodScheduled=False", async || {
        let p = pods.get("never").await.ok()?;
        p.status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")?
            .message
    })
    .await;
    assert_eq!(
        msg,
        "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never.."
    );
    for name in ["low-1", "low-2"] {
        let p = pods.get(name).await.unwrap();
        assert!(
            p.metadata.deletion_timestamp.is_none(),
            "{name} was evicted"
        );
    }

    // A preempting pod of the same priority evicts one low pod.
    create_pod(&client, "pre", "1", Some("high")).await;
    let nominated = wait_for("pre's nominatedNodeName", async || {
        pods.get("pre").await.ok()?.status?.nominated_node_name
    })
    .await;
    assert_eq!(nominated, "n1");
    let node = wait_for("pre to be bound", async || node_of("pre").await).await;
    assert_eq!(node, "n1");
    let left: Vec<String> = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .filter(|n| n.starts_with("low-"))
        .collect();
    assert_eq!(left.len(), 1, "exactly one victim: {left:?}");
    let victim = if left[0] == "low-1" { "low-2" } else { "low-1" };

    let pre_uid = pods.get("pre").await.unwrap().metadata.uid.unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let ev = wait_for("Preempted event", async || {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("Preempted"))
    })
    .await;
    assert_eq!(
        ev.regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some(victim)
    );
    assert_eq!(ev.type_.as_deref(), Some("Normal"));
    assert_eq!(
        ev.note.as_deref(),
        Some(format!("Preempted by pod {pre_uid} on node n1").as_str())
    );

    // The Never pod, equally important, did not take the freed room: the
    // nominated preemptor was counted there.
    assert_eq!(node_of("never").await, None);

    kubelet.abort();
    stop_tx.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), sched).await;
    drop(server);
}
