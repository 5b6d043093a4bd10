//! Builders for plugin unit tests: nodes, pods and snapshots from JSON.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};

use crate::framework::{NodeInfo, PodInfo, Snapshot, StaticLister};

/// Labels from pairs.
pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A node named `name` with `labels`.
pub fn node(name: &str, node_labels: &[(&str, &str)]) -> Arc<Node> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels(node_labels)},
        }))
        .unwrap(),
    )
}

/// A node from JSON (taints etc.).
#[allow(dead_code)]
pub fn node_json(v: Value) -> Arc<Node> {
    Arc::new(serde_json::from_value(v).unwrap())
}

/// A pod `namespace/name` with `labels` and the given `spec` (merged into a
/// spec with one container).
pub fn pod(name: &str, namespace: &str, pod_labels: &[(&str, &str)], spec: Value) -> PodInfo {
    let mut spec_obj = json!({"containers": [{"name": "c"}]});
    if let (Some(base), Some(extra)) = (spec_obj.as_object_mut(), spec.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": namespace, "labels": labels(pod_labels)},
        "spec": spec_obj,
    }))
    .unwrap();
    PodInfo::new(Arc::new(p))
}

/// A snapshot of nodes with their pods.
pub fn snapshot(nodes: Vec<(Arc<Node>, Vec<PodInfo>)>) -> Snapshot {
    Snapshot::from_nodes(
        nodes
            .into_iter()
            .map(|(n, pods)| node_info(n, pods))
            .collect(),
    )
}

/// One node info with pods.
pub fn node_info(node: Arc<Node>, pods: Vec<PodInfo>) -> Arc<NodeInfo> {
    let mut info = NodeInfo::new(node);
    for p in pods {
        info.add_pod(Arc::new(p));
    }
    Arc::new(info)
}

/// A lister that knows these namespaces.
pub fn lister(namespaces: &[(&str, &[(&str, &str)])]) -> StaticLister {
    StaticLister {
        namespaces: namespaces
            .iter()
            .map(|(n, l)| ((*n).to_owned(), labels(l)))
            .collect(),
        ..StaticLister::default()
    }
}

/// A required pod affinity (`kind` = "podAffinity" or "podAntiAffinity")
/// spec with one term selecting `key in values` on `topology_key`.
pub fn required_term(kind: &str, key: &str, values: &[&str], topology_key: &str) -> Value {
    json!({"affinity": {kind: {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "labelSelector": {"matchExpressions": [{"key": key, "operator": "In", "values": values}]},
        "topologyKey": topology_key,
    }]}}})
}

/// A preferred term spec.
pub fn preferred_term(
    kind: &str,
    weight: i32,
    key: &str,
    values: &[&str],
    topology_key: &str,
) -> Value {
    json!({"affinity": {kind: {"preferredDuringSchedulingIgnoredDuringExecution": [{
        "weight": weight,
        "podAffinityTerm": {
            "labelSelector": {"matchExpressions": [{"key": key, "operator": "In", "values": values}]},
            "topologyKey": topology_key,
        },
    }]}}})
}
