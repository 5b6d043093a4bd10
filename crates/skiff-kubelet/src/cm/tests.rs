#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use skiff_sys::cgroups::{FakeCgroups, ResourceConfig};

use super::pod_config::{CgroupLayout, node_config, pod_uid_of};
use super::{PodCgroups, resource_config_for_pod};

fn container(name: &str, requests: Value, limits: Value) -> Value {
    json!({"name": name, "image": "busybox",
           "resources": {"requests": requests, "limits": limits}})
}

fn pod(uid: &str, containers: Vec<Value>, extra: Value) -> Pod {
    let mut spec = json!({"containers": containers});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    serde_json::from_value(
        json!({"metadata": {"name": "p", "namespace": "default", "uid": uid},
                                  "spec": spec}),
    )
    .unwrap()
}

#[test]
fn layout_places_pods_by_qos_class() {
    let l = CgroupLayout::new("/");
    assert_eq!(l.node(), "/kubepods");
    assert_eq!(l.pod("Guaranteed", "u1"), "/kubepods/podu1");
    assert_eq!(l.pod("Burstable", "u2"), "/kubepods/burstable/podu2");
    assert_eq!(l.pod("BestEffort", "u3"), "/kubepods/besteffort/podu3");
    let l = CgroupLayout::new("/skiff-e2e/");
    assert_eq!(l.node(), "/skiff-e2e/kubepods");
    assert_eq!(l.qos("Burstable"), "/skiff-e2e/kubepods/burstable");
    assert_eq!(CgroupLayout::new("").node(), "/kubepods");
    assert_eq!(pod_uid_of("podabc"), Some("abc"));
    assert_eq!(pod_uid_of("burstable"), None);
    assert_eq!(pod_uid_of("pod"), None);
}

#[test]
fn resource_config_for_pod_table() {
    let mi = 1024 * 1024;
    let cfg = |shares: u64, quota: Option<i64>, memory: Option<i64>| ResourceConfig {
        cpu_shares: Some(shares),
        cpu_quota: quota,
        cpu_period: quota.map(|_| 100_000),
        memory_limit: memory,
        pids_limit: None,
    };
    let both = json!({"cpu": "500m", "memory": "64Mi"});
    let cases: Vec<(&str, Pod, ResourceConfig)> = vec![
        (
            "guaranteed",
            pod(
                "g",
                vec![container("a", both.clone(), both.clone())],
                json!({}),
            ),
            cfg(512, Some(50_000), Some(64 * mi)),
        ),
        (
            "guaranteed, two containers and overhead",
            pod(
                "g2",
                vec![
                    container("a", both.clone(), both.clone()),
                    container(
                        "b",
                        json!({"cpu": "250m", "memory": "32Mi"}),
                        json!({"cpu": "250m", "memory": "32Mi"}),
                    ),
                ],
                json!({"overhead": {"cpu": "100m", "memory": "16Mi"}}),
            ),
            cfg(870, Some(85_000), Some(112 * mi)),
        ),
        (
            "burstable with every limit",
            pod(
                "b1",
                vec![container(
                    "a",
                    json!({"cpu": "100m", "memory": "16Mi"}),
                    both.clone(),
                )],
                json!({}),
            ),
            cfg(102, Some(50_000), Some(64 * mi)),
        ),
        (
            "burstable, one container without a memory limit",
            pod(
                "b2",
                vec![
                    container("a", json!({"cpu": "100m"}), both.clone()),
                    container("b", json!({"cpu": "200m"}), json!({"cpu": "1"})),
                ],
                json!({}),
            ),
            cfg(307, Some(150_000), None),
        ),
        (
            "burstable, requests only",
            pod(
                "b3",
                vec![container("a", json!({"cpu": "250m"}), json!({}))],
                json!({}),
            ),
            cfg(256, None, None),
        ),
        (
            "burstable, an init container without limits",
            pod(
                "b4",
                vec![container("a", both.clone(), both.clone())],
                json!({"initContainers": [container("i", json!({"cpu": "1"}), json!({}))]}),
            ),
            // The init container's request is the larger: the pod asks for 1 CPU.
            cfg(1024, None, None),
        ),
        (
            "best effort",
            pod("e", vec![container("a", json!({}), json!({}))], json!({})),
            cfg(2, None, None),
        ),
    ];
    for (what, pod, want) in cases {
        assert_eq!(resource_config_for_pod(&pod, None), want, "{what}");
    }
    let be = pod("e", vec![container("a", json!({}), json!({}))], json!({}));
    assert_eq!(resource_config_for_pod(&be, Some(64)).pids_limit, Some(64));
    assert_eq!(resource_config_for_pod(&be, Some(-1)).pids_limit, None);
}

#[test]
fn node_cgroup_gets_the_node_capacity() {
    let c = node_config(2, 4 << 30);
    assert_eq!(c.cpu_shares, Some(2048));
    assert_eq!(c.memory_limit, Some(4 << 30));
    assert_eq!(c.cpu_quota, None);
}

#[tokio::test]
async fn pod_cgroups_follow_pods_and_burstable_shares_their_sum() {
    let fake = Arc::new(FakeCgroups::default());
    let pcs = PodCgroups::new(fake.clone(), "/node-a", Some(100));
    pcs.setup_node(2, 1 << 30).unwrap();
    let shares = |path: &str| fake.config(path).and_then(|c| c.cpu_shares);
    assert_eq!(shares("/node-a/kubepods"), Some(2048));
    assert_eq!(shares("/node-a/kubepods/burstable"), Some(2));
    assert_eq!(shares("/node-a/kubepods/besteffort"), Some(2));

    let b1 = pod(
        "b1",
        vec![container("a", json!({"cpu": "300m"}), json!({}))],
        json!({}),
    );
    let b2 = pod(
        "b2",
        vec![container("a", json!({"cpu": "200m"}), json!({}))],
        json!({}),
    );
    let g = pod(
        "g",
        vec![container(
            "a",
            json!({"cpu": "1", "memory": "8Mi"}),
            json!({"cpu": "1", "memory": "8Mi"}),
        )],
        json!({}),
    );
    assert_eq!(
        pcs.ensure_pod(&b1).unwrap(),
        "/node-a/kubepods/burstable/podb1"
    );
    assert_eq!(shares("/node-a/kubepods/burstable"), Some(307));
    pcs.ensure_pod(&b2).unwrap();
    // Syncing a pod again does not count it twice.
    pcs.ensure_pod(&b2).unwrap();
    assert_eq!(shares("/node-a/kubepods/burstable"), Some(512));
    assert_eq!(pcs.ensure_pod(&g).unwrap(), "/node-a/kubepods/podg");
    let gc = fake.config("/node-a/kubepods/podg").unwrap();
    assert_eq!(
        (gc.cpu_quota, gc.memory_limit, gc.pids_limit),
        (Some(100_000), Some(8 << 20), Some(100))
    );
    assert_eq!(shares("/node-a/kubepods/burstable"), Some(512));
    let mut on_host = pcs.pods_on_host().unwrap();
    on_host.sort();
    assert_eq!(on_host, ["b1", "b2", "g"]);

    pcs.destroy_pod("b1").await.unwrap();
    assert!(!fake.exists_path("/node-a/kubepods/burstable/podb1"));
    assert_eq!(fake.killed(), ["/node-a/kubepods/burstable/podb1"]);
    assert_eq!(shares("/node-a/kubepods/burstable"), Some(204));

    // Orphans: cgroups of pods the kubelet does not know.
    let known: HashSet<String> = ["g".to_owned()].into();
    assert_eq!(pcs.remove_orphans(&known).await, ["b2"]);
    assert_eq!(pcs.pods_on_host().unwrap(), ["g"]);
    assert_eq!(shares("/node-a/kubepods/burstable"), Some(2));
    // The QoS cgroups stay.
    assert!(fake.exists_path("/node-a/kubepods/besteffort"));
}
