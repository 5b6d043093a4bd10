#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};

use super::util::*;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Affinity, Node, PodSpec, PodTemplateSpec};

use crate::cached_pod::CachedPod;

pub(super) fn ds_with(spec: Value) -> DaemonSet {
    serde_json::from_value(json!({
        "metadata": {"name": "ds", "namespace": "ns", "uid": "ds-uid",
                     "annotations": {TEMPLATE_GENERATION_ANNOTATION: "2"}},
        "spec": {
            "selector": {"matchLabels": {"app": "d"}},
            "template": {"metadata": {"labels": {"app": "d"}}, "spec": merge(json!({
                "containers": [{"name": "c", "image": "i"}]
            }), spec)},
        }
    }))
    .unwrap()
}

fn merge(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

pub(super) fn node(name: &str, labels: Value, taints: Value) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints},
    }))
    .unwrap()
}

#[test]
fn node_should_run_daemon_pod_table() {
    let plain = node(
        "n1",
        json!({"role": "edge", "zone": "a", "cores": "8"}),
        json!([]),
    );
    let taint =
        |key: &str, effect: &str| node("n1", json!({}), json!([{"key": key, "effect": effect}]));
    // (pod spec additions, node, (should_run, should_continue_running))
    let cases: Vec<(&str, Value, Node, (bool, bool))> = vec![
        ("no constraints", json!({}), plain.clone(), (true, true)),
        (
            "nodeName matches",
            json!({"nodeName": "n1"}),
            plain.clone(),
            (true, true),
        ),
        (
            "nodeName differs",
            json!({"nodeName": "n2"}),
            plain.clone(),
            (false, false),
        ),
        (
            "nodeSelector matches",
            json!({"nodeSelector": {"role": "edge"}}),
            plain.clone(),
            (true, true),
        ),
        (
            "nodeSelector misses",
            json!({"nodeSelector": {"role": "core"}}),
            plain.clone(),
            (false, false),
        ),
        (
            "nodeSelector on missing label",
            json!({"nodeSelector": {"gpu": "yes"}}),
            plain.clone(),
            (false, false),
        ),
        (
            "affinity In",
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]}}}}),
            plain.clone(),
            (true, true),
        ),
        (
            "affinity NotIn",
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}]}}}}),
            plain.clone(),
            (false, false),
        ),
        (
            "affinity terms are ORed",
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z"]}]},
                {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]}]}}}}),
            plain.clone(),
            (true, true),
        ),
        (
            "affinity Lt fails",
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["4"]}]}]}}}}),
            plain.clone(),
            (false, false),
        ),
        (
            "affinity DoesNotExist",
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}]}}}}),
            plain.clone(),
            (true, true),
        ),
        (
            "affinity matchFields name",
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]}}}}),
            plain.clone(),
            (false, false),
        ),
        (
            "empty term matches nothing",
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{}]}}}}),
            plain.clone(),
            (false, false),
        ),
        (
            "untolerated NoSchedule",
            json!({}),
            taint("dedicated", "NoSchedule"),
            (false, true),
        ),
        (
            "untolerated PreferNoSchedule is fine",
            json!({}),
            taint("dedicated", "PreferNoSchedule"),
            (true, true),
        ),
        (
            "untolerated NoExecute",
            json!({}),
            taint("dedicated", "NoExecute"),
            (false, false),
        ),
        (
            "tolerated NoExecute",
            json!({"tolerations": [{"key": "dedicated", "operator": "Exists"}]}),
            taint("dedicated", "NoExecute"),
            (true, true),
        ),
        (
            "default: not-ready NoExecute",
            json!({}),
            taint("node.kubernetes.io/not-ready", "NoExecute"),
            (true, true),
        ),
        (
            "default: unreachable NoExecute",
            json!({}),
            taint("node.kubernetes.io/unreachable", "NoExecute"),
            (true, true),
        ),
        (
            "default: unschedulable",
            json!({}),
            taint("node.kubernetes.io/unschedulable", "NoSchedule"),
            (true, true),
        ),
        (
            "default: disk-pressure",
            json!({}),
            taint("node.kubernetes.io/disk-pressure", "NoSchedule"),
            (true, true),
        ),
        (
            "default: memory-pressure",
            json!({}),
            taint("node.kubernetes.io/memory-pressure", "NoSchedule"),
            (true, true),
        ),
        (
            "default: pid-pressure",
            json!({}),
            taint("node.kubernetes.io/pid-pressure", "NoSchedule"),
            (true, true),
        ),
        (
            "network-unavailable without hostNetwork",
            json!({}),
            taint("node.kubernetes.io/network-unavailable", "NoSchedule"),
            (false, true),
        ),
        (
            "network-unavailable with hostNetwork",
            json!({"hostNetwork": true}),
            taint("node.kubernetes.io/network-unavailable", "NoSchedule"),
            (true, true),
        ),
    ];
    for (what, spec, n, want) in cases {
        assert_eq!(
            node_should_run_daemon_pod(&n, &ds_with(spec)),
            want,
            "{what}"
        );
    }
}

#[test]
fn daemon_tolerations_are_added_once_and_replace_equal_keys() {
    let mut spec: PodSpec = serde_json::from_value(json!({
        "containers": [],
        "tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30},
            {"key": "mine", "operator": "Exists"},
        ]
    }))
    .unwrap();
    add_or_update_daemon_pod_tolerations(&mut spec);
    add_or_update_daemon_pod_tolerations(&mut spec);
    let t = spec.tolerations.as_ref().unwrap();
    assert_eq!(t.len(), 7, "{t:?}");
    // The user's not-ready toleration lost its tolerationSeconds.
    assert_eq!(t[0].key.as_deref(), Some("node.kubernetes.io/not-ready"));
    assert_eq!(t[0].toleration_seconds, None);
    assert_eq!(t[1].key.as_deref(), Some("mine"));
    assert!(
        !t.iter()
            .any(|t| t.key.as_deref() == Some("node.kubernetes.io/network-unavailable"))
    );
    spec.host_network = Some(true);
    add_or_update_daemon_pod_tolerations(&mut spec);
    assert_eq!(spec.tolerations.as_ref().unwrap().len(), 8);
}

#[test]
fn pod_template_gets_labels_and_tolerations() {
    let ds = ds_with(json!({}));
    let t = create_pod_template(&template(&ds), template_generation(&ds), "abc");
    let labels = t.metadata.as_ref().unwrap().labels.as_ref().unwrap();
    assert_eq!(labels["app"], "d");
    assert_eq!(labels[POD_TEMPLATE_GENERATION_LABEL], "2");
    assert_eq!(labels["controller-revision-hash"], "abc");
    assert_eq!(
        t.spec.as_ref().unwrap().tolerations.as_ref().unwrap().len(),
        6
    );
    // No generation, no hash: no such labels.
    let t = create_pod_template(&PodTemplateSpec::default(), None, "");
    assert_eq!(t.metadata.unwrap().labels.unwrap().len(), 0);
}

#[test]
fn node_affinity_is_replaced_by_the_node_name() {
    let want = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}});
    let cases: Vec<(Option<Value>, Value)> = vec![
        (None, want.clone()),
        (Some(json!({})), want.clone()),
        (Some(json!({"nodeAffinity": {}})), want.clone()),
        (
            Some(
                json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "a", "operator": "Exists"}]}]}}}),
            ),
            want.clone(),
        ),
        // Preferred terms and pod affinity stay.
        (
            Some(
                json!({"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 1, "podAffinityTerm": {"topologyKey": "k"}}]}}),
            ),
            json!({"nodeAffinity": want["nodeAffinity"].clone(),
                   "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 1, "podAffinityTerm": {"topologyKey": "k"}}]}}),
        ),
    ];
    for (input, want) in cases {
        let input: Option<Affinity> = input.map(|v| serde_json::from_value(v).unwrap());
        let got = replace_daemon_set_pod_node_name_node_affinity(input.clone(), "n1");
        assert_eq!(serde_json::to_value(&got).unwrap(), want, "{input:?}");
    }
}

fn pod(v: Value) -> CachedPod {
    serde_json::from_value(v).unwrap()
}

#[test]
fn target_node_name_from_node_name_or_affinity() {
    let aff = |field: Value| {
        json!({"containers": [], "affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchFields": [field]}]}}}})
    };
    let cases = vec![
        (json!({"containers": [], "nodeName": "n9"}), Some("n9")),
        (
            aff(json!({"key": "metadata.name", "operator": "In", "values": ["n1"]})),
            Some("n1"),
        ),
        (
            aff(json!({"key": "metadata.name", "operator": "In", "values": ["n1", "n2"]})),
            None,
        ),
        (
            aff(json!({"key": "metadata.name", "operator": "NotIn", "values": ["n1"]})),
            None,
        ),
        (
            aff(json!({"key": "other", "operator": "In", "values": ["n1"]})),
            None,
        ),
        (json!({"containers": []}), None),
    ];
    for (spec, want) in cases {
        let p = pod(json!({"metadata": {"name": "p"}, "spec": spec}));
        assert_eq!(target_node_name(&p).as_deref(), want, "{spec}");
    }
}

#[test]
fn pods_are_updated_by_hash_or_generation() {
    let p = |labels: Value| pod(json!({"metadata": {"name": "p", "labels": labels}}));
    let cases = vec![
        (
            json!({"controller-revision-hash": "h1"}),
            "h1",
            Some(1),
            true,
        ),
        (
            json!({"controller-revision-hash": "h0"}),
            "h1",
            Some(1),
            false,
        ),
        (
            json!({"controller-revision-hash": "h0", "pod-template-generation": "1"}),
            "h1",
            Some(1),
            true,
        ),
        (
            json!({"pod-template-generation": "2"}),
            "h1",
            Some(1),
            false,
        ),
        (json!({"pod-template-generation": "1"}), "h1", None, false),
        (json!({"controller-revision-hash": ""}), "", None, false),
    ];
    for (labels, hash, generation, want) in cases {
        assert_eq!(
            is_pod_updated(&p(labels.clone()), hash, generation),
            want,
            "{labels} {hash} {generation:?}"
        );
    }
}

#[test]
fn surge_and_unavailable_counts() {
    let ds = |strategy: Value| {
        let mut d = ds_with(json!({}));
        d.spec.as_mut().unwrap().update_strategy = Some(serde_json::from_value(strategy).unwrap());
        d
    };
    // (strategy, nodes, (surge, unavailable))
    let cases = vec![
        (
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}),
            10,
            (0, 1),
        ),
        (
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%"}}),
            10,
            (0, 3),
        ),
        (
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}}),
            3,
            (0, 1),
        ),
        (
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "20%"}}),
            7,
            (2, 0),
        ),
        (
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 3}}),
            7,
            (3, 0),
        ),
        (json!({"type": "RollingUpdate"}), 7, (0, 0)),
        (
            json!({"type": "OnDelete", "rollingUpdate": {"maxUnavailable": 2}}),
            7,
            (0, 0),
        ),
    ];
    for (strategy, n, (surge, unavailable)) in cases {
        let d = ds(strategy.clone());
        assert_eq!(surge_count(&d, n).unwrap(), surge, "{strategy}");
        assert_eq!(unavailable_count(&d, n).unwrap(), unavailable, "{strategy}");
        assert_eq!(
            allows_surge(&d),
            surge_count(&d, 1).unwrap() > 0,
            "{strategy}"
        );
    }
    let bad = ds(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "x"}}));
    assert!(unavailable_count(&bad, 3).is_err());
}
