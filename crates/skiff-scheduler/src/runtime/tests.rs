#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::json;

use super::*;
use crate::config::{KubeSchedulerConfiguration, Profile};
use crate::framework::{
    CycleState, FilterPlugin, Handle, NodeInfo, NodeScore, PodInfo, PreFilterPlugin,
    PreFilterResult, ScorePlugin, Snapshot, StaticLister, Status,
};

fn idx(node: &NodeInfo) -> i64 {
    node.name().trim_start_matches('n').parse().unwrap_or(0)
}

struct FilterOdd;
impl Plugin for FilterOdd {
    fn name(&self) -> &'static str {
        "FilterOdd"
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
}
impl FilterPlugin for FilterOdd {
    fn filter(&self, _: &CycleState, _: &PodInfo, n: &NodeInfo) -> Status {
        if idx(n) % 2 == 1 {
            Status::unschedulable("node is odd")
        } else {
            Status::success()
        }
    }
}

struct FilterTaint;
impl Plugin for FilterTaint {
    fn name(&self) -> &'static str {
        "FilterTaint"
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
}
impl FilterPlugin for FilterTaint {
    fn filter(&self, _: &CycleState, _: &PodInfo, n: &NodeInfo) -> Status {
        if n.labels().contains_key("tainted") {
            Status::unresolvable("node(s) had untolerated taint {k: v}")
        } else {
            Status::success()
        }
    }
}

/// PreFilter says Skip, so its Filter (which rejects everything) never runs.
struct SkipPre;
impl Plugin for SkipPre {
    fn name(&self) -> &'static str {
        "SkipPre"
    }
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        Some(self)
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
}
impl PreFilterPlugin for SkipPre {
    fn pre_filter(
        &self,
        _: &mut CycleState,
        _: &PodInfo,
        _: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        (None, Status::skip())
    }
}
impl FilterPlugin for SkipPre {
    fn filter(&self, _: &CycleState, _: &PodInfo, _: &NodeInfo) -> Status {
        Status::unschedulable("should have been skipped")
    }
}

/// Only n1 and n2 (and a node that does not exist).
struct RestrictPre;
impl Plugin for RestrictPre {
    fn name(&self) -> &'static str {
        "RestrictPre"
    }
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        Some(self)
    }
}
impl PreFilterPlugin for RestrictPre {
    fn pre_filter(
        &self,
        _: &mut CycleState,
        _: &PodInfo,
        _: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        let names: BTreeSet<String> = ["n1", "n2", "ghost"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        (
            Some(PreFilterResult {
                node_names: Some(names),
            }),
            Status::success(),
        )
    }
}

/// Raw score = node index, normalised to 0..=100 by the maximum.
struct ScoreIndex;
impl Plugin for ScoreIndex {
    fn name(&self) -> &'static str {
        "ScoreIndex"
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
}
impl ScorePlugin for ScoreIndex {
    fn score(&self, _: &CycleState, _: &PodInfo, n: &NodeInfo) -> (i64, Status) {
        (idx(n) * 1000, Status::success())
    }
    fn normalize_scores(
        &self,
        _: &CycleState,
        _: &PodInfo,
        scores: &mut [NodeScore<'_>],
    ) -> Status {
        let max = scores.iter().map(|s| s.score).max().unwrap_or(0).max(1);
        for s in scores {
            s.score = s.score * 100 / max;
        }
        Status::success()
    }
}

/// Prefers low indexes: 100 - 10 * index.
struct ScoreLow;
impl Plugin for ScoreLow {
    fn name(&self) -> &'static str {
        "ScoreLow"
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
}
impl ScorePlugin for ScoreLow {
    fn score(&self, _: &CycleState, _: &PodInfo, n: &NodeInfo) -> (i64, Status) {
        (100 - 10 * idx(n), Status::success())
    }
}

/// Returns a score out of range.
struct ScoreBad;
impl Plugin for ScoreBad {
    fn name(&self) -> &'static str {
        "ScoreBad"
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
}
impl ScorePlugin for ScoreBad {
    fn score(&self, _: &CycleState, _: &PodInfo, _: &NodeInfo) -> (i64, Status) {
        (101, Status::success())
    }
}

macro_rules! factory {
    ($t:expr) => {
        (|_: Option<&serde_json::Value>, _: &Handle| -> Result<Arc<dyn Plugin>, String> {
            Ok(Arc::new($t))
        }) as PluginFactory
    };
}

fn registry() -> Vec<(&'static str, PluginFactory)> {
    vec![
        ("FilterOdd", factory!(FilterOdd)),
        ("FilterTaint", factory!(FilterTaint)),
        ("SkipPre", factory!(SkipPre)),
        ("RestrictPre", factory!(RestrictPre)),
        ("ScoreIndex", factory!(ScoreIndex)),
        ("ScoreLow", factory!(ScoreLow)),
        ("ScoreBad", factory!(ScoreBad)),
    ]
}

fn profile(yaml_plugins: &str) -> Profile {
    let names: BTreeSet<&str> = registry().iter().map(|(n, _)| *n).collect();
    let text = format!(
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nprofiles:\n- schedulerName: default-scheduler\n  plugins:\n{yaml_plugins}"
    );
    KubeSchedulerConfiguration::parse(&text, &names)
        .unwrap()
        .profiles
        .remove(0)
}

fn framework(yaml_plugins: &str, percentage: Option<i32>) -> Framework {
    let handle = Handle {
        lister: Arc::new(StaticLister::default()),
    };
    let f = Framework::new(
        0,
        &profile(yaml_plugins),
        &registry(),
        &handle,
        1,
        percentage,
    )
    .unwrap();
    f.set_seed(7);
    f
}

fn node(i: usize, tainted: bool) -> Arc<NodeInfo> {
    let mut labels = serde_json::Map::new();
    if tainted {
        labels.insert("tainted".into(), json!("yes"));
    }
    let n: Node =
        serde_json::from_value(json!({"metadata": {"name": format!("n{i}"), "labels": labels}}))
            .unwrap();
    Arc::new(NodeInfo::new(Arc::new(n)))
}

fn snapshot(n: usize, tainted: &[usize]) -> Snapshot {
    Snapshot::from_nodes((0..n).map(|i| node(i, tainted.contains(&i))).collect())
}

fn pod() -> PodInfo {
    let p: Pod = serde_json::from_value(
        json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": []}}),
    )
    .unwrap();
    PodInfo::new(Arc::new(p))
}

fn schedule(f: &Framework, snap: &Snapshot) -> Result<ScheduleResult, ScheduleError> {
    f.schedule_pod(&mut CycleState::new(), &pod(), snap, None)
}

#[test]
fn filters_run_in_configured_order_and_the_first_rejection_counts() {
    let snap = snapshot(4, &[1, 2]);
    let odd_first =
        "    filter:\n      enabled:\n      - name: FilterOdd\n      - name: FilterTaint\n";
    let Err(ScheduleError::Fit(e)) = schedule(&framework(odd_first, None), &snapshot(2, &[0, 1]))
    else {
        panic!("expected a fit error")
    };
    // n1 is odd and tainted: FilterOdd runs first and decides.
    assert_eq!(
        e.to_string(),
        "0/2 nodes are available: 1 node is odd, 1 node(s) had untolerated taint {k: v}."
    );
    assert_eq!(
        e.diagnosis.unschedulable_plugins,
        BTreeSet::from(["FilterOdd", "FilterTaint"])
    );
    let taint_first =
        "    filter:\n      enabled:\n      - name: FilterTaint\n      - name: FilterOdd\n";
    let Err(ScheduleError::Fit(e)) = schedule(&framework(taint_first, None), &snapshot(2, &[0, 1]))
    else {
        panic!("expected a fit error")
    };
    assert_eq!(
        e.to_string(),
        "0/2 nodes are available: 2 node(s) had untolerated taint {k: v}."
    );
    // n0 fits alone among 4 (n1 odd, n2 tainted, n3 odd).
    let r = schedule(&framework(odd_first, None), &snap).unwrap();
    assert_eq!(
        (
            r.suggested_host.as_str(),
            r.feasible_nodes,
            r.evaluated_nodes
        ),
        ("n0", 1, 4)
    );
}

#[test]
fn pre_filter_skip_skips_that_plugins_filter() {
    let f = framework(
        "    multiPoint:\n      enabled:\n      - name: SkipPre\n",
        None,
    );
    assert!(schedule(&f, &snapshot(3, &[])).is_ok());
}

#[test]
fn pre_filter_result_restricts_nodes_and_explains_the_others() {
    let f = framework(
        "    multiPoint:\n      enabled:\n      - name: RestrictPre\n      - name: FilterOdd\n",
        None,
    );
    let r = schedule(&f, &snapshot(5, &[])).unwrap();
    assert_eq!(r.suggested_host, "n2");
    assert_eq!(r.evaluated_nodes, 2);
    let f = framework(
        "    multiPoint:\n      enabled:\n      - name: RestrictPre\n      - name: FilterTaint\n",
        None,
    );
    let Err(ScheduleError::Fit(e)) = schedule(&f, &snapshot(4, &[1, 2])) else {
        panic!("expected a fit error")
    };
    assert_eq!(
        e.to_string(),
        "0/4 nodes are available: 2 node(s) didn't satisfy plugin(s) [RestrictPre], 2 node(s) had untolerated taint {k: v}."
    );
}

#[test]
fn scores_are_normalised_weighted_and_summed() {
    // ScoreIndex normalised: n0 0, n1 33, n2 66, n3 100; ScoreLow: 100, 90, 80, 70.
    let f = framework(
        "    score:\n      enabled:\n      - name: ScoreIndex\n        weight: 1\n      - name: ScoreLow\n        weight: 1\n",
        None,
    );
    let nodes = snapshot(4, &[]).nodes;
    let totals = f
        .prioritize_nodes(&mut CycleState::new(), &pod(), &nodes, &snapshot(4, &[]))
        .unwrap();
    let got: Vec<i64> = totals.iter().map(|t| t.score).collect();
    assert_eq!(got, vec![100, 123, 146, 170]);
    assert_eq!(f.select_host(&totals), "n3");
    // Weight 5 on ScoreLow turns it round: 500, 483, 466, 450.
    let f = framework(
        "    score:\n      enabled:\n      - name: ScoreIndex\n      - name: ScoreLow\n        weight: 5\n",
        None,
    );
    assert_eq!(f.score_weights(), vec![("ScoreIndex", 1), ("ScoreLow", 5)]);
    assert_eq!(
        schedule(&f, &snapshot(4, &[])).unwrap().suggested_host,
        "n0"
    );
}

#[test]
fn out_of_range_scores_are_errors() {
    let f = framework("    score:\n      enabled:\n      - name: ScoreBad\n", None);
    let Err(ScheduleError::Error(s)) = schedule(&f, &snapshot(2, &[])) else {
        panic!("expected an error")
    };
    assert!(
        s.to_string().contains("returns an invalid score 101"),
        "{s}"
    );
}

#[test]
fn ties_are_broken_at_random() {
    let f = framework("", None);
    let totals: Vec<NodeScore> = ["n0", "n1", "n2"]
        .into_iter()
        .map(|name| NodeScore { name, score: 10 })
        .chain([NodeScore {
            name: "low",
            score: 9,
        }])
        .collect();
    let mut seen = BTreeSet::new();
    for seed in 0..64 {
        f.set_seed(seed);
        seen.insert(f.select_host(&totals));
    }
    assert_eq!(
        seen,
        BTreeSet::from(["n0".to_owned(), "n1".into(), "n2".into()])
    );
}

#[test]
fn num_feasible_nodes_follows_upstreams_adaptive_rule() {
    for (pct, nodes, want) in [
        (None, 50, 50),
        (None, 100, 100),
        (None, 199, 100),
        (None, 1000, 420),
        (None, 5000, 500),
        (None, 6000, 300),
        (Some(0), 1000, 420),
        (Some(1), 1000, 100),
        (Some(30), 1000, 300),
        (Some(100), 5000, 5000),
    ] {
        assert_eq!(
            num_feasible_nodes_to_find(pct, nodes),
            want,
            "{pct:?} {nodes}"
        );
    }
}

#[test]
fn filtering_stops_at_the_target_and_rotates_the_start() {
    let f = framework("", Some(50));
    let snap = snapshot(300, &[]);
    let r = schedule(&f, &snap).unwrap();
    assert_eq!((r.feasible_nodes, r.evaluated_nodes), (150, 150));
    let mut state = CycleState::new();
    let (feasible, _) = f
        .find_nodes_that_fit(&mut state, &pod(), &snap, None)
        .unwrap();
    // The second search starts where the first stopped.
    assert_eq!(feasible[0].name(), "n300".replace("300", "150"));
    let (feasible, _) = f
        .find_nodes_that_fit(&mut state, &pod(), &snap, None)
        .unwrap();
    assert_eq!(feasible[0].name(), "n0");
}

#[test]
fn parallel_filtering_finds_the_same_nodes() {
    let handle = Handle {
        lister: Arc::new(StaticLister::default()),
    };
    let p = profile("    filter:\n      enabled:\n      - name: FilterOdd\n");
    let seq = Framework::new(0, &p, &registry(), &handle, 1, Some(100)).unwrap();
    let par = Framework::new(0, &p, &registry(), &handle, 4, Some(100)).unwrap();
    let snap = snapshot(3000, &[]);
    let (a, da) = seq
        .find_nodes_that_fit(&mut CycleState::new(), &pod(), &snap, None)
        .unwrap();
    let (b, db) = par
        .find_nodes_that_fit(&mut CycleState::new(), &pod(), &snap, None)
        .unwrap();
    let names = |v: &[Arc<NodeInfo>]| v.iter().map(|n| n.name().to_owned()).collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b));
    assert_eq!(a.len(), 1500);
    assert_eq!(da.node_to_status.len(), db.node_to_status.len());
}

#[test]
fn multi_point_expands_into_implemented_points_honouring_disables() {
    let f = framework(
        "    multiPoint:\n      enabled:\n      - name: SkipPre\n      - name: ScoreLow\n        weight: 4\n      - name: FilterOdd\n    filter:\n      enabled:\n      - name: FilterTaint\n      disabled:\n      - name: SkipPre\n",
        None,
    );
    let list: std::collections::HashMap<_, _> = f.list_plugins().into_iter().collect();
    assert_eq!(list["preFilter"], vec!["SkipPre"]);
    // Explicit filter plugins first, then multiPoint ones not disabled here.
    assert_eq!(list["filter"], vec!["FilterTaint", "FilterOdd"]);
    assert_eq!(f.score_weights(), vec![("ScoreLow", 4)]);
    let handle = Handle {
        lister: Arc::new(StaticLister::default()),
    };
    let err = Framework::new(
        0,
        &profile("    filter:\n      enabled:\n      - name: ScoreLow\n"),
        &registry(),
        &handle,
        1,
        None,
    )
    .unwrap_err();
    assert_eq!(
        err.0,
        "profiles[0].plugins.filter.enabled[0].name: Invalid value: \"ScoreLow\": plugin \"ScoreLow\" does not extend filter plugin"
    );
}

#[test]
fn a_nominated_node_that_fits_is_taken_without_evaluating_others() {
    let f = framework(
        "    filter:\n      enabled:\n      - name: FilterOdd\n",
        None,
    );
    let snap = snapshot(10, &[]);
    let nominated = |node: &str| {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": []},
            "status": {"nominatedNodeName": node}
        }))
        .unwrap();
        PodInfo::new(Arc::new(p))
    };
    let r = f
        .schedule_pod(&mut CycleState::new(), &nominated("n4"), &snap, None)
        .unwrap();
    assert_eq!(
        (
            r.suggested_host.as_str(),
            r.evaluated_nodes,
            r.feasible_nodes
        ),
        ("n4", 1, 1)
    );
    // A nominated node that no longer fits (odd), or is gone: every node
    // is evaluated as usual.
    for node in ["n3", "gone"] {
        let r = f
            .schedule_pod(&mut CycleState::new(), &nominated(node), &snap, None)
            .unwrap();
        assert_eq!((r.evaluated_nodes, r.feasible_nodes), (10, 5), "{node}");
    }
}
