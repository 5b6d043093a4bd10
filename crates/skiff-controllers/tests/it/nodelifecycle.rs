//! The node lifecycle, taint eviction and pod GC controllers against the
//! real API server, with the real scheduler and hollow nodes, on short
//! test timeouts: a node whose heartbeats stop goes Unknown and tainted,
//! its pods are evicted after their tolerationSeconds and replaced on
//! other nodes, and it comes back when the heartbeats do; pods of nodes
//! that no longer exist and terminated pods over the threshold are
//! collected.

use crate::support;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use skiff_controllers::ControllerManagerOptions;
use skiff_controllers::cached_pod::CachedPod;
use skiff_sim::HollowNodeConfig;
use support::{Cluster, wait_for};

const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// A controller manager and a scheduler with test timings, and hollow
/// nodes renewing their Leases every 500 ms.
struct Env {
    cluster: Cluster,
}

impl Env {
    async fn start(nodes: usize, tune: impl FnOnce(&mut ControllerManagerOptions)) -> Env {
        let mut cluster = Cluster::start_bare_with(HollowNodeConfig {
            count: nodes,
            lease_interval: Duration::from_millis(500),
            ..HollowNodeConfig::default()
        })
        .await;
        let mut opts = ControllerManagerOptions::new("nodelifecycle-test".into());
        opts.leader_elect = false;
        opts.node_lifecycle.node_monitor_period = Duration::from_millis(500);
        // Renewals every 500 ms lag by seconds on a loaded machine; a node
        // wrongly seen down would take the test with it.
        opts.node_lifecycle.node_monitor_grace_period = Duration::from_secs(10);
        tune(&mut opts);
        cluster.start_manager_with(opts);
        cluster.start_scheduler("nodelifecycle-test");
        Env { cluster }
    }

    async fn stop(self) {
        self.cluster.stop().await;
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.cluster.client.clone())
    }
}

fn node_name(p: &Pod) -> String {
    p.spec
        .as_ref()
        .unwrap()
        .node_name
        .clone()
        .unwrap_or_default()
}

fn is_running_ready(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        && skiff_controllers::podutil::is_pod_ready(&CachedPod::from(p.clone()))
}

fn condition<'a>(n: &'a Node, t: &str) -> Option<&'a k8s_openapi::api::core::v1::NodeCondition> {
    n.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == t)
}

fn has_taint(n: &Node, key: &str, effect: &str) -> bool {
    n.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| ts.iter().any(|t| t.key == key && t.effect == effect))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_node_is_tainted_its_pods_evicted_and_replaced_then_it_recovers() {
    let env = Env::start(3, |_| {}).await;
    let c = &env.cluster;
    let hollow = env.cluster.hollow().unwrap();
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 6,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{"name": "c", "image": "busybox"}],
                    // Tolerate an unreachable node briefly; not-ready gets
                    // DefaultTolerationSeconds' 300 s.
                    "tolerations": [{"key": UNREACHABLE, "operator": "Exists",
                                     "effect": "NoExecute", "tolerationSeconds": 2}],
                },
            },
        },
    }))
    .unwrap();
    let rs_api: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    rs_api.create(&PostParams::default(), &rs).await.unwrap();
    let pods = wait_for("6 running pods", async || {
        let pods = c.active_pods("default", "app=web").await;
        (pods.len() == 6 && pods.iter().all(is_running_ready)).then_some(pods)
    })
    .await;
    // Admission added the other default toleration, not a second unreachable one.
    let tols = pods[0].spec.as_ref().unwrap().tolerations.clone().unwrap();
    let secs = |key: &str| {
        tols.iter()
            .filter(|t| t.key.as_deref() == Some(key))
            .map(|t| t.toleration_seconds)
            .collect::<Vec<_>>()
    };
    assert_eq!(secs(UNREACHABLE), [Some(2)]);
    assert_eq!(secs("node.kubernetes.io/not-ready"), [Some(300)]);

    let victim = node_name(&pods[0]);
    let index: usize = victim.strip_prefix("hollow-").unwrap().parse().unwrap();
    let on_victim = pods.iter().filter(|p| node_name(p) == victim).count();
    hollow.stop_heartbeats(index);

    let node = wait_for("the node to be Unknown and tainted", async || {
        let n = env.nodes().get(&victim).await.unwrap();
        (has_taint(&n, UNREACHABLE, "NoExecute") && has_taint(&n, UNREACHABLE, "NoSchedule"))
            .then_some(n)
    })
    .await;
    for t in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        let cond = condition(&node, t).unwrap();
        assert_eq!(cond.status, "Unknown", "{t}");
        assert_eq!(cond.reason.as_deref(), Some("NodeStatusUnknown"), "{t}");
        assert_eq!(
            cond.message.as_deref(),
            Some("Kubelet stopped posting node status."),
            "{t}"
        );
    }
    // Its pods were evicted and replaced elsewhere.
    let replaced = wait_for("the pods to be replaced on other nodes", async || {
        let pods = c.active_pods("default", "app=web").await;
        (pods.len() == 6
            && pods.iter().all(is_running_ready)
            && pods.iter().all(|p| node_name(p) != victim))
        .then_some(pods)
    })
    .await;
    let before: Vec<_> = pods.iter().map(|p| p.metadata.uid.clone()).collect();
    let new = replaced
        .iter()
        .filter(|p| !before.contains(&p.metadata.uid))
        .count();
    assert_eq!(new, on_victim, "exactly the victim's pods were replaced");
    let evictions = wait_for("TaintManagerEviction events", async || {
        let e = c.events("default", "TaintManagerEviction").await;
        (e.len() >= on_victim).then_some(e)
    })
    .await;
    assert!(
        evictions.iter().all(|e| e
            .note
            .as_deref()
            .unwrap_or("")
            .starts_with("Marking for deletion Pod default/")),
        "{evictions:?}"
    );
    // MarkPodsNotReady told each pod.
    let not_ready = c.events("default", "NodeNotReady").await;
    let (on_pods, on_node): (Vec<_>, Vec<_>) = not_ready
        .iter()
        .partition(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("Pod"));
    assert_eq!(on_pods.len(), on_victim, "{not_ready:?}");
    assert!(
        on_pods
            .iter()
            .all(|e| e.note.as_deref() == Some("Node is not ready"))
    );
    assert_eq!(on_node.len(), 1, "{not_ready:?}");
    assert_eq!(
        on_node[0].note.as_deref(),
        Some(format!("Node {victim} status is now: NodeNotReady").as_str())
    );

    hollow.resume_heartbeats(index).await.unwrap();
    wait_for("the node to recover", async || {
        let n = env.nodes().get(&victim).await.unwrap();
        let taints = n
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        (condition(&n, "Ready").unwrap().status == "True" && taints.is_empty()).then_some(())
    })
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_deleted_nodes_and_terminated_pods_over_the_threshold_are_collected() {
    let env = Env::start(1, |o| {
        o.pod_gc.gc_check_period = Duration::from_millis(200);
        o.pod_gc.quarantine_time = Duration::from_secs(1);
        o.pod_gc.terminated_pod_gc_threshold = 2;
    })
    .await;
    let c = &env.cluster;
    let pods = c.pods("default");
    let pod = |name: &str, node: Option<&str>| -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": "gc"}},
            "spec": {"nodeName": node, "schedulerName": "none",
                     "containers": [{"name": "c", "image": "busybox"}]},
        }))
        .unwrap()
    };
    // Bound to a node that never existed: an orphan after the quarantine.
    pods.create(&PostParams::default(), &pod("orphan", Some("gone-node")))
        .await
        .unwrap();
    // Three terminated pods: the oldest one goes (creation times tie
    // within a second, so by name).
    for name in ["done-0", "done-1", "done-2"] {
        pods.create(&PostParams::default(), &pod(name, None))
            .await
            .unwrap();
        let status = json!({"status": {"phase": "Succeeded"}});
        pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
    }
    // A live pod on the hollow node stays.
    pods.create(&PostParams::default(), &pod("live", Some("hollow-0")))
        .await
        .unwrap();
    wait_for("orphan and done-0 to be collected", async || {
        let names: Vec<String> = pods
            .list(&ListParams::default().labels("app=gc"))
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|p| p.metadata.name.unwrap())
            .collect();
        let mut names = names;
        names.sort();
        (names == ["done-1", "done-2", "live"]).then_some(())
    })
    .await;
    // The hollow node's Node goes: its pod is collected too.
    env.nodes()
        .delete("hollow-0", &Default::default())
        .await
        .unwrap();
    wait_for("the deleted node's pod to be collected", async || {
        pods.get_opt("live").await.unwrap().is_none().then_some(())
    })
    .await;
    env.stop().await;
}

/// MarkPodsNotReady patches only the Ready condition: the controller
/// caches slim pods, and everything they lack (env, probes, annotations,
/// the other conditions) must survive on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marking_a_pod_not_ready_keeps_the_rest_of_the_pod() {
    let env = Env::start(1, |_| {}).await;
    let c = &env.cluster;
    let pods = c.pods("default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "keep", "annotations": {"note": "kept"}},
        "spec": {
            "containers": [{"name": "c", "image": "busybox",
                            "env": [{"name": "MODE", "value": "prod"}],
                            "readinessProbe": {"exec": {"command": ["true"]},
                                               "periodSeconds": 7}}],
            // Stays bound while its node is down, so it can be looked at.
            "tolerations": [{"operator": "Exists", "effect": "NoExecute"}],
        },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let ready = wait_for("the pod running and ready", async || {
        let p = pods.get("keep").await.unwrap();
        is_running_ready(&p).then_some(p)
    })
    .await;
    let hollow = c.hollow().unwrap();
    let index: usize = node_name(&ready)
        .strip_prefix("hollow-")
        .unwrap()
        .parse()
        .unwrap();
    // The hollow node keeps serving its pods and puts Ready back at once:
    // catch the pod as the controller's patch left it.
    let wp = WatchParams::default().fields("metadata.name=keep");
    let mut stream = pods
        .watch(&wp, ready.metadata.resource_version.as_deref().unwrap())
        .await
        .unwrap()
        .boxed();
    hollow.stop_heartbeats(index);
    let marked = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(ev) = stream.next().await {
            if let WatchEvent::Modified(p) = ev.unwrap()
                && !skiff_controllers::podutil::is_pod_ready(&CachedPod::from(p.clone()))
            {
                return p;
            }
        }
        panic!("the watch ended");
    })
    .await
    .expect("timed out waiting for the pod marked not ready");
    // By the node lifecycle controller, which tells the pod so.
    wait_for("a NodeNotReady event on the pod", async || {
        let events = c.events("default", "NodeNotReady").await;
        events
            .iter()
            .any(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("keep"))
            .then_some(())
    })
    .await;
    assert_eq!(marked.spec, ready.spec);
    assert_eq!(marked.metadata.annotations, ready.metadata.annotations);
    assert_eq!(marked.metadata.labels, ready.metadata.labels);
    let (before, after) = (ready.status.unwrap(), marked.status.unwrap());
    assert_eq!(after.phase, before.phase);
    assert_eq!(after.pod_ip, before.pod_ip);
    assert_eq!(after.host_ip, before.host_ip);
    assert_eq!(after.qos_class, before.qos_class);
    assert_eq!(after.container_statuses, before.container_statuses);
    let conds = |s: &k8s_openapi::api::core::v1::PodStatus| {
        let mut v = s.conditions.clone().unwrap();
        v.sort_by(|a, b| a.type_.cmp(&b.type_));
        v
    };
    let (before, after) = (conds(&before), conds(&after));
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        if a.type_ == "Ready" {
            assert_eq!((a.status.as_str(), b.status.as_str()), ("False", "True"));
            assert_eq!(a.reason, b.reason);
        } else {
            assert_eq!(a, b);
        }
    }
    hollow.resume_heartbeats(index).await.unwrap();
    env.stop().await;
}
