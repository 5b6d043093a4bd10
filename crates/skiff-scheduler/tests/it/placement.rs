//! Where the default plugins put pods, on the real API server with hollow
//! nodes: nodeSelector, required node affinity, taints and tolerations,
//! pod anti-affinity by hostname and by zone, topology spread over zones.

use crate::support;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use support::{Cluster, HOSTNAME, ZONE};

fn counts(values: &[String]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for v in values {
        *out.entry(v.clone()).or_default() += 1;
    }
    out
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

async fn label_node(c: &Cluster, node: &str, key: &str, value: &str) {
    let nodes: Api<Node> = Api::all(c.client.clone());
    nodes
        .patch(
            node,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {key: value}}})),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_selector_picks_labelled_nodes_and_waits_for_a_label() {
    let mut c = Cluster::with_scheduler().await;
    c.hollow_nodes("n-", 3, "4", &[]).await;
    label_node(&c, "n-2", "disktype", "ssd").await;

    let ssd = names("ssd", 3);
    for n in &ssd {
        c.create_pod(
            "default",
            n,
            json!({}),
            json!({"nodeSelector": {"disktype": "ssd"}}),
        )
        .await;
    }
    for n in &ssd {
        assert_eq!(c.bound_node("default", n).await, "n-2");
    }

    c.create_pod(
        "default",
        "hdd",
        json!({}),
        json!({"nodeSelector": {"disktype": "hdd"}}),
    )
    .await;
    assert_eq!(
        c.unschedulable_message("default", "hdd").await,
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. \
         preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.."
    );
    // A label change re-queues the pod; it lands on the relabelled node.
    label_node(&c, "n-0", "disktype", "hdd").await;
    assert_eq!(c.bound_node("default", "hdd").await, "n-0");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_node_affinity_keeps_pods_in_the_allowed_zones() {
    let mut c = Cluster::with_scheduler().await;
    c.hollow_nodes("n-", 6, "4", &[]).await;
    let pods = names("p", 8);
    for n in &pods {
        c.create_pod(
            "default",
            n,
            json!({}),
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": ZONE, "operator": "In", "values": ["zone-2"]}]},
                {"matchExpressions": [
                    {"key": ZONE, "operator": "NotIn", "values": ["zone-1", "zone-2"]},
                    {"key": HOSTNAME, "operator": "In", "values": ["n-0"]},
                ]},
            ]}}}}),
        )
        .await;
    }
    let zones = c.bound_label_values("default", &pods, ZONE).await;
    let hosts = c.bound_label_values("default", &pods, HOSTNAME).await;
    for (z, h) in zones.iter().zip(&hosts) {
        // Term 1: zone-2 (n-2, n-5); term 2: zone-0 and n-0 (n-3 is out).
        assert!(
            ["n-0", "n-2", "n-5"].contains(&h.as_str()),
            "{h} in {z} is not allowed"
        );
    }
    assert!(!zones.contains(&"zone-1".to_owned()), "{zones:?}");

    c.create_pod(
        "default",
        "nowhere",
        json!({}),
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": ZONE, "operator": "DoesNotExist"}]}]}}}}),
    )
    .await;
    assert_eq!(
        c.unschedulable_message("default", "nowhere").await,
        "0/6 nodes are available: 6 node(s) didn't match Pod's node affinity/selector. \
         preemption: 0/6 nodes are available: 6 Preemption is not helpful for scheduling.."
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taints_repel_pods_that_do_not_tolerate_them() {
    let mut c = Cluster::with_scheduler().await;
    c.hollow_nodes("infra-", 2, "4", &["dedicated=infra:NoSchedule"])
        .await;
    c.hollow_nodes("plain-", 1, "4", &[]).await;

    let plain = names("plain", 3);
    for n in &plain {
        c.create_pod("default", n, json!({}), json!({})).await;
    }
    for n in &plain {
        assert_eq!(c.bound_node("default", n).await, "plain-0");
    }

    let tolerating = names("tolerating", 2);
    for n in &tolerating {
        c.create_pod(
            "default",
            n,
            json!({}),
            json!({
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "infra",
                    "effect": "NoSchedule"}],
                "nodeSelector": {"dedicated-node": "yes"},
            }),
        )
        .await;
    }
    // Only the labelled tainted node is left for them once it exists.
    label_node(&c, "infra-1", "dedicated-node", "yes").await;
    for n in &tolerating {
        assert_eq!(c.bound_node("default", n).await, "infra-1");
    }

    // Not tolerating, and only infra-0 matches: each node fails its first
    // filter (TaintToleration runs before NodeAffinity).
    c.create_pod(
        "default",
        "intolerant",
        json!({}),
        json!({"nodeSelector": {HOSTNAME: "infra-0"}}),
    )
    .await;
    assert_eq!(
        c.unschedulable_message("default", "intolerant").await,
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
         2 node(s) had untolerated taint {dedicated: infra}. \
         preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.."
    );
    c.stop().await;
}

fn anti_affinity(key: &str) -> serde_json::Value {
    json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "labelSelector": {"matchLabels": {"app": "web"}},
        "topologyKey": key,
    }]}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_affinity_keeps_replicas_on_distinct_nodes_and_zones() {
    let mut c = Cluster::with_scheduler().await;
    c.hollow_nodes("n-", 6, "4", &[]).await;

    // By hostname: six replicas, six nodes, created at once (each decision
    // must see the previous, still assumed, ones).
    let web = names("web", 6);
    for n in &web {
        c.create_pod("default", n, json!({"app": "web"}), anti_affinity(HOSTNAME))
            .await;
    }
    let hosts = c.bound_label_values("default", &web, HOSTNAME).await;
    assert_eq!(counts(&hosts).len(), 6, "{hosts:?}");
    c.create_pod(
        "default",
        "web-extra",
        json!({"app": "web"}),
        anti_affinity(HOSTNAME),
    )
    .await;
    assert_eq!(
        c.unschedulable_message("default", "web-extra").await,
        "0/6 nodes are available: 6 node(s) didn't match pod anti-affinity rules. \
         preemption: 0/6 nodes are available: 6 No preemption victims found for incoming pod.."
    );

    // By zone, in another namespace (the selector sees its own namespace):
    // three replicas in three zones, the fourth waits.
    let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(c.client.clone());
    ns.create(
        &Default::default(),
        &serde_json::from_value(json!({"metadata": {"name": "zonal"}})).unwrap(),
    )
    .await
    .unwrap();
    let zonal = names("zonal", 3);
    for n in &zonal {
        c.create_pod("zonal", n, json!({"app": "web"}), anti_affinity(ZONE))
            .await;
    }
    let zones = c.bound_label_values("zonal", &zonal, ZONE).await;
    assert_eq!(
        counts(&zones),
        BTreeMap::from([
            ("zone-0".to_owned(), 1),
            ("zone-1".to_owned(), 1),
            ("zone-2".to_owned(), 1)
        ])
    );
    c.create_pod(
        "zonal",
        "zonal-extra",
        json!({"app": "web"}),
        anti_affinity(ZONE),
    )
    .await;
    assert_eq!(
        c.unschedulable_message("zonal", "zonal-extra").await,
        "0/6 nodes are available: 6 node(s) didn't match pod anti-affinity rules. \
         preemption: 0/6 nodes are available: 6 No preemption victims found for incoming pod.."
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_spread_evens_out_zones() {
    let mut c = Cluster::with_scheduler().await;
    c.hollow_nodes("n-", 6, "8", &[]).await;
    // Two pods already in zone-0 (bound directly, not by the scheduler).
    for (i, node) in ["n-0", "n-3"].iter().enumerate() {
        c.create_pod(
            "default",
            &format!("pinned-{i}"),
            json!({"app": "spread"}),
            json!({"nodeName": node}),
        )
        .await;
    }
    let spread = json!({"topologySpreadConstraints": [{
        "maxSkew": 1,
        "topologyKey": ZONE,
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "spread"}},
    }]});
    // With maxSkew 1 zone-0 takes nothing until the others hold two each.
    let first = names("first", 4);
    for n in &first {
        c.create_pod("default", n, json!({"app": "spread"}), spread.clone())
            .await;
    }
    let zones = c.bound_label_values("default", &first, ZONE).await;
    assert_eq!(
        counts(&zones),
        BTreeMap::from([("zone-1".to_owned(), 2), ("zone-2".to_owned(), 2)])
    );
    // Then round after round, every zone stays within one of the others.
    let more = names("more", 6);
    for n in &more {
        c.create_pod("default", n, json!({"app": "spread"}), spread.clone())
            .await;
    }
    let zones = c.bound_label_values("default", &more, ZONE).await;
    assert_eq!(
        counts(&zones),
        BTreeMap::from([
            ("zone-0".to_owned(), 2),
            ("zone-1".to_owned(), 2),
            ("zone-2".to_owned(), 2)
        ])
    );
    c.stop().await;
}
