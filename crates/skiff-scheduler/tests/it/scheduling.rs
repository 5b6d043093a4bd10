//! The scheduler (default plugins and profile) against the real API server
//! with hollow nodes: resource fit, an unschedulable pod bound once a node
//! appears, the listers behind namespaceSelector and default spreading,
//! and leadership hand-over when the leader stops.

use crate::support;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, ReplicationController, Service};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use skiff_scheduler::framework::ClusterLister;
use skiff_scheduler::informers::{QueueSlot, start_listers};
use skiff_scheduler::run;
use support::{Cluster, cpu_request, options, wait_for};
use tokio::sync::watch;
use tokio::task::JoinSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_land_only_where_they_fit_and_the_rest_wait_for_a_node() {
    let mut c = Cluster::with_scheduler().await;
    c.hollow_nodes("small-", 3, "4", &[]).await;

    // Three pods of 3 cpu on three 4-cpu nodes: one per node.
    let names: Vec<String> = (0..3).map(|i| format!("fit-{i}")).collect();
    for n in &names {
        c.create_pod(
            "default",
            n,
            json!({}),
            json!({"containers": cpu_request("3")}),
        )
        .await;
    }
    let mut nodes = Vec::new();
    for n in &names {
        nodes.push(c.bound_node("default", n).await);
    }
    nodes.sort();
    assert_eq!(nodes, ["small-0", "small-1", "small-2"]);

    // A fourth fits nowhere.
    c.create_pod(
        "default",
        "extra",
        json!({}),
        json!({"containers": cpu_request("3")}),
    )
    .await;
    assert_eq!(
        c.unschedulable_message("default", "extra").await,
        "0/3 nodes are available: 3 Insufficient cpu. \
         preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.."
    );
    let ev = c.event("default", "extra", "FailedScheduling").await;
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    assert_eq!(
        ev.reporting_controller.as_deref(),
        Some("default-scheduler")
    );
    assert_eq!(ev.action.as_deref(), Some("Scheduling"));
    assert_eq!(
        ev.note.as_deref(),
        Some(
            "0/3 nodes are available: 3 Insufficient cpu. \
             preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.."
        )
    );

    // A node with room appears: the waiting pod is bound there.
    c.hollow_nodes("big-", 1, "8", &[]).await;
    assert_eq!(c.bound_node("default", "extra").await, "big-0");
    let scheduled = c.event("default", "extra", "Scheduled").await;
    assert_eq!(
        scheduled.note.as_deref(),
        Some("Successfully assigned default/extra to big-0")
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_selector_uses_the_namespaces_labels() {
    let mut c = Cluster::with_scheduler().await;
    c.hollow_nodes("n-", 3, "4", &[]).await;
    let namespaces: Api<Namespace> = Api::all(c.client.clone());
    for (ns, team) in [("db", "data"), ("web", "front")] {
        let n: Namespace =
            serde_json::from_value(json!({"metadata": {"name": ns, "labels": {"team": team}}}))
                .unwrap();
        namespaces.create(&PostParams::default(), &n).await.unwrap();
    }
    c.create_pod(
        "db",
        "db-0",
        json!({"app": "db"}),
        json!({"nodeName": "n-1"}),
    )
    .await;
    // Affinity to app=db pods in namespaces labelled team=data: only the
    // namespace's labels (from the namespace lister) say db-0 counts.
    let affinity = |team: &str| {
        json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchLabels": {"app": "db"}},
            "namespaceSelector": {"matchLabels": {"team": team}},
            "topologyKey": "kubernetes.io/hostname",
        }]}}})
    };
    for i in 0..3 {
        c.create_pod("web", &format!("near-db-{i}"), json!({}), affinity("data"))
            .await;
    }
    for i in 0..3 {
        assert_eq!(c.bound_node("web", &format!("near-db-{i}")).await, "n-1");
    }
    c.create_pod("web", "near-nothing", json!({}), affinity("front"))
        .await;
    assert_eq!(
        c.unschedulable_message("web", "near-nothing").await,
        "0/3 nodes are available: 3 node(s) didn't match pod affinity rules. \
         preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.."
    );
    c.stop().await;
}

async fn create<K>(api: Api<K>, body: serde_json::Value)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    let obj: K = serde_json::from_value(body).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listers_serve_services_controllers_and_namespaces() {
    let c = Cluster::start().await;
    let client = &c.client;
    let template = json!({"metadata": {"labels": {"app": "a"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    create(
        Api::<Namespace>::all(client.clone()),
        json!({"metadata": {"name": "team-a", "labels": {"team": "a"}}}),
    )
    .await;
    create(
        Api::<Service>::namespaced(client.clone(), "team-a"),
        json!({"metadata": {"name": "web", "namespace": "team-a"},
            "spec": {"selector": {"app": "a"}, "ports": [{"port": 80}]}}),
    )
    .await;
    create(
        Api::<ReplicationController>::namespaced(client.clone(), "team-a"),
        json!({"metadata": {"name": "rc", "namespace": "team-a"},
            "spec": {"selector": {"app": "a"}, "template": template}}),
    )
    .await;
    create(
        Api::<ReplicaSet>::namespaced(client.clone(), "team-a"),
        json!({"metadata": {"name": "rs", "namespace": "team-a"},
            "spec": {"selector": {"matchLabels": {"app": "a"}}, "template": template}}),
    )
    .await;
    create(
        Api::<StatefulSet>::namespaced(client.clone(), "team-a"),
        json!({"metadata": {"name": "ss", "namespace": "team-a"},
            "spec": {"selector": {"matchLabels": {"app": "a"}}, "serviceName": "web",
                "template": template}}),
    )
    .await;

    let mut tasks = JoinSet::new();
    let lister = start_listers(client, &QueueSlot::default(), &mut tasks);
    lister.wait_until_ready().await;
    let lister: Arc<dyn ClusterLister> = Arc::new(lister);
    let svcs = lister.services("team-a");
    assert_eq!(svcs.len(), 1);
    assert_eq!(svcs[0].metadata.name.as_deref(), Some("web"));
    // Other namespaces' Services stay out.
    assert!(lister.services("kube-public").is_empty());
    assert!(lister.replication_controller("team-a", "rc").is_some());
    assert!(lister.replication_controller("default", "rc").is_none());
    assert!(lister.replica_set("team-a", "rs").is_some());
    assert!(lister.replica_set("team-a", "other").is_none());
    assert!(lister.stateful_set("team-a", "ss").is_some());
    assert_eq!(
        lister.namespace_labels("team-a"),
        Some(BTreeMap::from([
            ("team".to_owned(), "a".to_owned()),
            (
                "kubernetes.io/metadata.name".to_owned(),
                "team-a".to_owned()
            )
        ]))
    );
    assert_eq!(lister.namespace_labels("nope"), None);

    // Later changes reach the listers through their watches.
    create(
        Api::<Service>::namespaced(client.clone(), "team-a"),
        json!({"metadata": {"name": "second", "namespace": "team-a"},
            "spec": {"selector": {"app": "b"}, "ports": [{"port": 80}]}}),
    )
    .await;
    wait_for("the second Service", async || {
        (lister.services("team-a").len() == 2).then_some(())
    })
    .await;
    tasks.abort_all();
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_hands_over_when_the_leader_stops() {
    let mut c = Cluster::start().await;
    c.hollow_nodes("n-", 1, "8", &[]).await;
    let client = c.client.clone();
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

    // leader_election_master_status of an instance, as it would serve it.
    let status = |text: String| {
        text.lines().find_map(|l| {
            l.strip_prefix(r#"leader_election_master_status{name="kube-scheduler"} "#)
                .map(str::to_owned)
        })
    };
    let (opts_a, opts_b) = (options("sched-a", true), options("sched-b", true));
    let (metrics_a, metrics_b) = (opts_a.metrics.clone(), opts_b.metrics.clone());
    let (stop_a, rx_a) = watch::channel(false);
    let a = tokio::spawn(run(opts_a, client.clone(), rx_a));
    assert_eq!(wait_for("a to lead", holder).await, "sched-a");
    wait_for("a to report leading", async || {
        status(metrics_a.encode_text()).filter(|v| v == "1")
    })
    .await;
    let (stop_b, rx_b) = watch::channel(false);
    let b = tokio::spawn(run(opts_b, client.clone(), rx_b));

    c.create_pod("default", "first", json!({}), json!({})).await;
    c.bound_node("default", "first").await;
    assert_eq!(holder().await.as_deref(), Some("sched-a"));
    assert_eq!(status(metrics_b.encode_text()).as_deref(), Some("0"));

    stop_a.send_replace(true);
    a.await.unwrap().unwrap();
    let h = wait_for("b to lead", async || {
        holder().await.filter(|h| h == "sched-b")
    })
    .await;
    assert_eq!(h, "sched-b");
    c.create_pod("default", "second", json!({}), json!({}))
        .await;
    c.bound_node("default", "second").await;
    let lease = leases.get("kube-scheduler").await.unwrap().spec.unwrap();
    assert_eq!(lease.lease_transitions, Some(1));
    assert_eq!(status(metrics_b.encode_text()).as_deref(), Some("1"));
    assert_eq!(status(metrics_a.encode_text()).as_deref(), Some("0"));

    stop_b.send_replace(true);
    b.await.unwrap().unwrap();
    c.stop().await;
}
