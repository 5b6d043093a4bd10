//! Test fixtures for the plugin unit tests: pods and nodes from JSON, and
//! small drivers that run a plugin's extension points as the framework does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::Value;

use crate::framework::{
    CycleState, Handle, NodeInfo, NodeScore, Plugin, PodInfo, PreFilterResult, Snapshot,
    StaticLister, Status,
};

/// A pod from JSON (namespace defaults to `default`, name to `p`).
pub fn pod(mut v: Value) -> PodInfo {
    let meta = v
        .as_object_mut()
        .unwrap()
        .entry("metadata")
        .or_insert_with(|| serde_json::json!({}));
    let meta = meta.as_object_mut().unwrap();
    meta.entry("name").or_insert_with(|| "p".into());
    meta.entry("namespace").or_insert_with(|| "default".into());
    let pod: Pod = serde_json::from_value(v).unwrap();
    PodInfo::new(Arc::new(pod))
}

/// A node from JSON.
pub fn node(v: Value) -> NodeInfo {
    let node: Node = serde_json::from_value(v).unwrap();
    NodeInfo::new(Arc::new(node))
}

/// A node with pods on it.
pub fn node_with_pods(v: Value, pods: Vec<PodInfo>) -> NodeInfo {
    let mut n = node(v);
    for p in pods {
        n.add_pod(Arc::new(p));
    }
    n
}

/// A handle over an empty lister.
pub fn handle() -> Handle {
    Handle {
        lister: Arc::new(StaticLister::default()),
    }
}

/// Builds a snapshot.
pub fn snapshot(nodes: Vec<NodeInfo>) -> Snapshot {
    Snapshot::from_nodes(nodes.into_iter().map(Arc::new).collect())
}

/// Runs PreFilter (when the plugin has one) and then Filter on every node,
/// as the framework would: a PreFilter rejection or Skip short-circuits.
pub fn run_filter(
    plugin: &dyn Plugin,
    pod: &PodInfo,
    snap: &Snapshot,
) -> (Option<PreFilterResult>, Status, Vec<Status>) {
    let mut state = CycleState::new();
    let mut result = None;
    if let Some(pf) = plugin.as_pre_filter() {
        let (r, s) = pf.pre_filter(&mut state, pod, snap);
        result = r;
        if s.is_skip() {
            return (result, s, vec![Status::success(); snap.nodes.len()]);
        }
        if !s.is_success() {
            return (result, s, Vec::new());
        }
    }
    let filter = plugin.as_filter().expect("a filter plugin");
    let statuses = snap
        .nodes
        .iter()
        .map(|n| filter.filter(&state, pod, n))
        .collect();
    (result, Status::success(), statuses)
}

/// Runs PreScore (when present), Score on every node and NormalizeScore;
/// returns the normalised scores (empty when PreScore skipped).
pub fn run_score(plugin: &dyn Plugin, pod: &PodInfo, snap: &Snapshot) -> Vec<i64> {
    let mut state = CycleState::new();
    if let Some(pf) = plugin.as_pre_filter() {
        let (_, s) = pf.pre_filter(&mut state, pod, snap);
        assert!(s.is_success() || s.is_skip(), "prefilter: {s:?}");
    }
    if let Some(ps) = plugin.as_pre_score() {
        let s = ps.pre_score(&mut state, pod, &snap.nodes, snap);
        if s.is_skip() {
            return Vec::new();
        }
        assert!(s.is_success(), "prescore: {s:?}");
    }
    let scorer = plugin.as_score().expect("a score plugin");
    let mut scores: Vec<NodeScore> = snap
        .nodes
        .iter()
        .map(|n| {
            let (score, s) = scorer.score(&state, pod, n);
            assert!(s.is_success(), "score: {s:?}");
            NodeScore {
                name: n.name(),
                score,
            }
        })
        .collect();
    // Scoring all nodes at once (as the runtime does) gives the same.
    let mut batch = Vec::new();
    let s = scorer.score_nodes(&state, pod, &snap.nodes, &mut batch);
    assert!(s.is_success(), "score_nodes: {s:?}");
    assert_eq!(batch, scores, "score_nodes against score per node");
    assert!(
        scorer
            .normalize_scores(&state, pod, &mut scores)
            .is_success()
    );
    scores.into_iter().map(|s| s.score).collect()
}

/// The code and reasons of a status, for compact assertions.
pub fn verdict(s: &Status) -> (crate::framework::Code, Vec<String>) {
    (s.code(), s.reasons().to_vec())
}
