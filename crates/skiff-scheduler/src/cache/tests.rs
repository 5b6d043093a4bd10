#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::json;

use super::*;

fn node(name: &str, cpu: &str, images: serde_json::Value) -> Arc<Node> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "status": {"allocatable": {"cpu": cpu}, "images": images}
        }))
        .unwrap(),
    )
}

fn pod(name: &str, node: Option<&str>, cpu: &str) -> Arc<Pod> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"nodeName": node, "containers": [{"name": "c",
                "resources": {"requests": {"cpu": cpu}}}]}
        }))
        .unwrap(),
    )
}

fn info(name: &str, node: &str, cpu: &str) -> Arc<PodInfo> {
    Arc::new(PodInfo::new(pod(name, Some(node), cpu)))
}

fn requested(snap: &CacheSnapshot, node: &str) -> i64 {
    snap.snapshot.get(node).unwrap().requested.milli_cpu
}

#[test]
fn assume_confirm_and_forget() {
    let c = Cache::new();
    c.add_or_update_node(node("n1", "4", json!([])));
    c.add_or_update_node(node("n2", "4", json!([])));
    let mut snap = CacheSnapshot::default();
    c.assume_pod(info("a", "n1", "1"), "n1").unwrap();
    assert!(c.is_assumed("ns/a"));
    assert_eq!(
        c.assume_pod(info("a", "n1", "1"), "n1"),
        Err(CacheError::AlreadyPresent("ns/a".into()))
    );
    c.update_snapshot(&mut snap);
    assert_eq!(requested(&snap, "n1"), 1000);
    // The informer sees the binding: confirmed, counted once.
    c.add_or_update_pod(pod("a", Some("n1"), "1"));
    assert!(!c.is_assumed("ns/a"));
    c.update_snapshot(&mut snap);
    assert_eq!(requested(&snap, "n1"), 1000);
    // Updates in place (a resize, and back) replace it: counted once, as
    // it is now.
    for (cpu, milli) in [("2", 2000), ("1", 1000)] {
        c.add_or_update_pod(pod("a", Some("n1"), cpu));
        c.update_snapshot(&mut snap);
        assert_eq!(requested(&snap, "n1"), milli);
        assert_eq!(snap.snapshot.get("n1").unwrap().pods.len(), 1);
    }
    assert_eq!(
        c.forget_pod("ns/a"),
        Err(CacheError::NotAssumed("ns/a".into()))
    );
    // A failed binding is forgotten and its room given back.
    c.assume_pod(info("b", "n2", "2"), "n2").unwrap();
    c.update_snapshot(&mut snap);
    assert_eq!(requested(&snap, "n2"), 2000);
    c.forget_pod("ns/b").unwrap();
    c.update_snapshot(&mut snap);
    assert_eq!(requested(&snap, "n2"), 0);
    // An assumed pod the informer shows bound elsewhere moves there.
    c.assume_pod(info("c", "n1", "1"), "n1").unwrap();
    c.add_or_update_pod(pod("c", Some("n2"), "1"));
    c.update_snapshot(&mut snap);
    assert_eq!(
        (requested(&snap, "n1"), requested(&snap, "n2")),
        (1000, 1000)
    );
    c.remove_pod("ns/c");
    c.update_snapshot(&mut snap);
    assert_eq!(requested(&snap, "n2"), 0);
}

#[test]
fn an_assumed_pod_is_the_queued_one_counted_on_its_node() {
    let queued: Arc<Pod> = Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": "q", "namespace": "ns", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c",
                "resources": {"requests": {"cpu": "250m", "memory": "1Gi"}}}],
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"topologyKey": "kubernetes.io/hostname",
                     "labelSelector": {"matchLabels": {"app": "web"}}}]}}}
        }))
        .unwrap(),
    );
    let info = Arc::new(PodInfo::new(queued.clone()));
    let c = Cache::new();
    c.add_or_update_node(node("n1", "4", json!([])));
    c.add_or_update_node(node("n2", "4", json!([])));
    // The queued PodInfo itself, with no node on its pod, counts on the node
    // it is assumed onto, affinity terms included.
    c.assume_pod(info.clone(), "n1").unwrap();
    assert_eq!(c.pod_node("ns/q").as_deref(), Some("n1"));
    let mut snap = CacheSnapshot::default();
    c.update_snapshot(&mut snap);
    assert_eq!(requested(&snap, "n1"), 250);
    assert_eq!(requested(&snap, "n2"), 0);
    let n1 = &snap.snapshot.nodes[snap.snapshot.by_name["n1"]];
    assert_eq!(n1.pods_with_required_anti_affinity.len(), 1);
    // The pod as bound, for handlers that tell scheduled pods by their node.
    let bound = info.bound_to("n1");
    assert_eq!(
        bound.spec.as_ref().unwrap().node_name.as_deref(),
        Some("n1")
    );
    let mut expected = (*queued).clone();
    expected.spec.as_mut().unwrap().node_name = Some("n1".into());
    assert_eq!(bound, expected);
    assert_eq!(queued.spec.as_ref().unwrap().node_name, None);
    // Confirmed by the informer's bound pod: counted once.
    c.add_or_update_pod(Arc::new(bound));
    c.update_snapshot(&mut snap);
    assert_eq!(requested(&snap, "n1"), 250);
}

#[test]
fn snapshots_copy_only_changed_nodes() {
    let c = Cache::new();
    for i in 0..5 {
        c.add_or_update_node(node(&format!("n{i}"), "4", json!([])));
    }
    let mut snap = CacheSnapshot::default();
    c.update_snapshot(&mut snap);
    assert_eq!(snap.snapshot.nodes.len(), 5);
    let before: Vec<Arc<NodeInfo>> = snap.snapshot.nodes.clone();
    c.add_or_update_pod(pod("p", Some("n3"), "1"));
    c.update_snapshot(&mut snap);
    for (old, new) in before.iter().zip(&snap.snapshot.nodes) {
        let same = Arc::ptr_eq(old, new);
        assert_eq!(same, new.name() != "n3", "{}", new.name());
    }
    assert!(snap.snapshot.get("n3").unwrap().generation > before[3].generation);
    // Nothing changed: nothing copied.
    let before = snap.snapshot.nodes.clone();
    c.update_snapshot(&mut snap);
    assert!(
        before
            .iter()
            .zip(&snap.snapshot.nodes)
            .all(|(a, b)| Arc::ptr_eq(a, b))
    );
    // Added and removed nodes show up.
    c.add_or_update_node(node("n9", "4", json!([])));
    c.remove_node("n0");
    c.update_snapshot(&mut snap);
    let mut names: Vec<&str> = snap.snapshot.nodes.iter().map(|n| n.name()).collect();
    names.sort();
    assert_eq!(names, vec!["n1", "n2", "n3", "n4", "n9"]);
    assert_eq!(snap.snapshot.get("n3").unwrap().requested.milli_cpu, 1000);
}

#[test]
fn image_states_count_nodes() {
    let c = Cache::new();
    let img = |n: &str| json!([{"names": [n], "sizeBytes": 100}]);
    c.add_or_update_node(node("n1", "1", img("nginx")));
    c.add_or_update_node(node("n2", "1", img("nginx")));
    c.add_or_update_node(node("n3", "1", img("redis")));
    let mut snap = CacheSnapshot::default();
    c.update_snapshot(&mut snap);
    let st = &snap.snapshot.get("n2").unwrap().image_states["nginx"];
    assert_eq!((st.size, st.num_nodes), (100, 2));
    assert_eq!(
        snap.snapshot.get("n3").unwrap().image_states["redis"].num_nodes,
        1
    );
}

fn anti_affinity_pod(name: &str, node: &str) -> Arc<Pod> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "labels": {"app": "x"}},
            "spec": {
                "nodeName": node,
                "containers": [{"name": "c"}],
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                    "labelSelector": {"matchLabels": {"app": "x"}},
                    "topologyKey": "kubernetes.io/hostname"
                }]}}
            }
        }))
        .unwrap(),
    )
}

fn subset(nodes: &[Arc<NodeInfo>]) -> Vec<&str> {
    let mut names: Vec<&str> = nodes.iter().map(|n| n.name()).collect();
    names.sort();
    names
}

#[test]
fn affinity_subsets_follow_each_changed_node() {
    let c = Cache::new();
    for i in 0..4 {
        c.add_or_update_node(node(&format!("n{i}"), "4", json!([])));
    }
    let mut snap = CacheSnapshot::default();
    c.update_snapshot(&mut snap);
    assert!(
        snap.snapshot
            .have_pods_with_required_anti_affinity
            .is_empty()
    );

    c.assume_pod(Arc::new(PodInfo::new(anti_affinity_pod("a", "n2"))), "n2")
        .unwrap();
    c.add_or_update_pod(anti_affinity_pod("b", "n0"));
    c.add_or_update_pod(pod("plain", Some("n3"), "1"));
    c.update_snapshot(&mut snap);
    let s = &snap.snapshot;
    assert_eq!(
        subset(&s.have_pods_with_required_anti_affinity),
        ["n0", "n2"]
    );
    assert_eq!(subset(&s.have_pods_with_affinity), ["n0", "n2"]);
    // The subsets hold the snapshot's current node infos, and every node is
    // still found by name at its position.
    for n in &s.have_pods_with_affinity {
        assert!(Arc::ptr_eq(n, s.get(n.name()).unwrap()));
    }
    for (i, n) in s.nodes.iter().enumerate() {
        assert_eq!(s.by_name[n.name()], i);
    }
    assert_eq!(requested(&snap, "n3"), 1000);

    // A member node that changes again stays a member, as its new info.
    c.add_or_update_pod(pod("plain2", Some("n0"), "1"));
    c.update_snapshot(&mut snap);
    let s = &snap.snapshot;
    assert_eq!(
        subset(&s.have_pods_with_required_anti_affinity),
        ["n0", "n2"]
    );
    for n in s
        .have_pods_with_affinity
        .iter()
        .chain(&s.have_pods_with_required_anti_affinity)
    {
        assert!(Arc::ptr_eq(n, s.get(n.name()).unwrap()), "{}", n.name());
    }
    assert_eq!(requested(&snap, "n0"), 1000);

    c.forget_pod("ns/a").unwrap();
    c.remove_pod("ns/b");
    c.update_snapshot(&mut snap);
    assert!(
        snap.snapshot
            .have_pods_with_required_anti_affinity
            .is_empty()
    );
    assert!(snap.snapshot.have_pods_with_affinity.is_empty());
    assert_eq!(snap.snapshot.nodes.len(), 4);
}
