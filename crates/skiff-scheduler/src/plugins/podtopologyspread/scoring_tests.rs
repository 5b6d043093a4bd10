//! PodTopologySpread PreScore/Score/NormalizeScore tests on small examples
//! computed by hand, default constraints and args validation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ReplicationController, Service};
use serde_json::{Value, json};

use super::common::SCHEDULE_ANYWAY;
use super::{DefaultingType, PodTopologySpread, PodTopologySpreadArgs};
use crate::framework::{
    CycleState, NodeScore, PodInfo, PreScorePlugin, ScorePlugin, Snapshot, StaticLister,
};
use crate::plugins::test_util::{node, pod, snapshot};

/// Raw and normalised scores of every node, or None when PreScore skipped.
fn run(pl: &PodTopologySpread, p: &PodInfo, snap: &Snapshot) -> Option<(Vec<i64>, Vec<i64>)> {
    let mut state = CycleState::new();
    let st = pl.pre_score(&mut state, p, &snap.nodes, snap);
    if st.is_skip() {
        return None;
    }
    assert!(st.is_success(), "{st:?}");
    let mut scores: Vec<NodeScore> = snap
        .nodes
        .iter()
        .map(|n| NodeScore {
            name: n.name(),
            score: pl.score(&state, p, n).0,
        })
        .collect();
    let raw = scores.iter().map(|s| s.score).collect();
    assert!(pl.normalize_scores(&state, p, &mut scores).is_success());
    Some((raw, scores.iter().map(|s| s.score).collect()))
}

fn soft(key: &str, max_skew: i32) -> Value {
    json!({
        "maxSkew": max_skew, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": {"foo": ""}},
    })
}

fn foo(name: &str) -> PodInfo {
    pod(name, "default", &[("foo", "")], json!({}))
}

const HOST: &str = "kubernetes.io/hostname";
const ZONE: &str = "topology.kubernetes.io/zone";

fn nodes(pods: Vec<Vec<PodInfo>>, with_zoneless: bool) -> Snapshot {
    let mut list = vec![
        node("a", &[(ZONE, "zone1"), (HOST, "a")]),
        node("b", &[(ZONE, "zone1"), (HOST, "b")]),
        node("x", &[(ZONE, "zone2"), (HOST, "x")]),
    ];
    if with_zoneless {
        list.push(node("c", &[(HOST, "c")]));
    }
    let mut pods = pods.into_iter();
    snapshot(
        list.into_iter()
            .map(|n| (n, pods.next().unwrap_or_default()))
            .collect(),
    )
}

fn plugin(lister: StaticLister) -> PodTopologySpread {
    PodTopologySpread::new(PodTopologySpreadArgs::default(), Arc::new(lister))
}

#[test]
fn scores_computed_by_hand() {
    let existing = || vec![vec![foo("a1"), foo("a2")], vec![foo("b1")], vec![]];
    type Case = (&'static str, Vec<Value>, bool, Option<(Vec<i64>, Vec<i64>)>);
    let cases: Vec<Case> = vec![
        (
            // 2 zones: weight ln 4; zone1 has 3 pods: 3 ln 4 = 4.16.
            "zone constraint",
            vec![soft(ZONE, 1)],
            false,
            Some((vec![4, 4, 0], vec![0, 0, 100])),
        ),
        (
            // + hostname maxSkew 2, weight ln 5: a 2 ln 5 + 1, b ln 5 + 1, x 1;
            // raw 8.38, 6.77, 1 → 8, 7, 1; (8 + 1 - s) * 100 / 8.
            "zone and hostname constraints",
            vec![soft(ZONE, 1), soft(HOST, 2)],
            false,
            Some((vec![8, 7, 1], vec![12, 25, 100])),
        ),
        (
            "a node without the zone label is ignored",
            vec![soft(ZONE, 1)],
            true,
            Some((vec![4, 4, 0, 0], vec![0, 0, 100, 0])),
        ),
        (
            "hard constraints are not scored",
            vec![
                json!({"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"foo": ""}}}),
            ],
            false,
            None,
        ),
    ];
    for (name, constraints, zoneless, want) in cases {
        let p = pod(
            "p",
            "default",
            &[("foo", "")],
            json!({"topologySpreadConstraints": constraints}),
        );
        let snap = nodes(existing(), zoneless);
        assert_eq!(
            run(&plugin(StaticLister::default()), &p, &snap),
            want,
            "{name}"
        );
    }
}

#[test]
fn equal_scores_normalise_to_max() {
    let p = pod(
        "p",
        "default",
        &[("foo", "")],
        json!({"topologySpreadConstraints": [soft(HOST, 1)]}),
    );
    let snap = nodes(vec![], false);
    assert_eq!(
        run(&plugin(StaticLister::default()), &p, &snap),
        Some((vec![0, 0, 0], vec![100, 100, 100]))
    );
}

fn service(ns: &str, selector: Value) -> Arc<Service> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": "svc", "namespace": ns},
            "spec": {"selector": selector},
        }))
        .unwrap(),
    )
}

#[test]
fn system_default_constraints_use_the_services_selector() {
    let lister = StaticLister {
        services: vec![service("default", json!({"app": "web"}))],
        ..StaticLister::default()
    };
    let web = |name: &str| pod(name, "default", &[("app", "web")], json!({}));
    let snap = nodes(vec![vec![web("a1")], vec![], vec![], vec![]], true);
    let p = web("p");
    // Hostname maxSkew 3 over 4 nodes (ln 6), zone maxSkew 5 over zone1,
    // zone2 and "" (ln 5); the zoneless node is scored on hostname only:
    // a 1.79 + 2 + 1.61 + 4, b 2 + 5.61, x 2 + 4, c 2 → 9, 8, 6, 2.
    assert_eq!(
        run(&plugin(lister.clone()), &p, &snap),
        Some((vec![9, 8, 6, 2], vec![22, 33, 55, 100]))
    );
    // Without a selecting Service there is nothing to spread.
    assert_eq!(run(&plugin(StaticLister::default()), &p, &snap), None);
    // Nor for a pod the Service does not select.
    let other = pod("p", "default", &[("app", "db")], json!({}));
    assert_eq!(run(&plugin(lister), &other, &snap), None);
}

#[test]
fn default_selector_merges_services_and_controller() {
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "rs", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "web", "hash": "h1"}}},
    }))
    .unwrap();
    let rc: ReplicationController = serde_json::from_value(json!({
        "metadata": {"name": "rc", "namespace": "default"},
        "spec": {"selector": {"rc": "yes"}},
    }))
    .unwrap();
    let mut lister = StaticLister {
        services: vec![
            service("default", json!({"tier": "fe"})),
            service("other", json!({"app": "web"})),
        ],
        ..StaticLister::default()
    };
    lister
        .replica_sets
        .insert("default/rs".into(), Arc::new(rs));
    lister
        .replication_controllers
        .insert("default/rc".into(), Arc::new(rc));
    let pl = plugin(lister);
    let owned = |api_version: &str, kind: &str, name: &str| {
        let labels = [
            ("app", "web"),
            ("hash", "h1"),
            ("tier", "fe"),
            ("rc", "yes"),
        ];
        let mut p = (*pod("p", "default", &labels, json!({})).pod).clone();
        p.metadata.owner_references = Some(vec![
            serde_json::from_value(json!({"apiVersion": api_version, "kind": kind,
                "name": name, "uid": "u", "controller": true}))
            .unwrap(),
        ]);
        PodInfo::new(Arc::new(p))
    };
    let selector = |p: &PodInfo| {
        pl.constraints(p, SCHEDULE_ANYWAY)
            .unwrap()
            .first()
            .map(|c| c.selector.to_string())
    };
    let cases = [
        ("apps/v1", "ReplicaSet", "rs", "app=web,hash=h1,tier=fe"),
        ("v1", "ReplicationController", "rc", "rc=yes,tier=fe"),
        ("apps/v1", "ReplicaSet", "missing", "tier=fe"),
        ("apps/v1beta1", "ReplicaSet", "rs", "tier=fe"),
    ];
    for (api_version, kind, name, want) in cases {
        assert_eq!(
            selector(&owned(api_version, kind, name)).as_deref(),
            Some(want),
            "{api_version} {kind} {name}"
        );
    }
}

#[test]
fn args_are_defaulted_and_validated() {
    let args = |v: Value| PodTopologySpreadArgs::from_json(Some(&v));
    assert_eq!(
        args(json!({})).unwrap().defaulting_type,
        DefaultingType::System
    );
    let list = args(json!({"defaultingType": "List", "defaultConstraints": [
        {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]}))
    .unwrap();
    assert_eq!(list.defaulting_type, DefaultingType::List);
    assert_eq!(list.default_constraints.len(), 1);
    let cases = [
        (
            json!({"defaultingType": "Foo"}),
            r#"defaultingType: Unsupported value: "Foo": supported values: "System", "List""#,
        ),
        (
            json!({"defaultConstraints": [
                {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]}),
            r#"defaultingType: Invalid value: "System": when .defaultConstraints are not empty"#,
        ),
        (
            json!({"defaultingType": "List", "defaultConstraints": [
                {"maxSkew": 0, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]}),
            "defaultConstraints[0].maxSkew: Invalid value: 0: not in valid range (0, inf)",
        ),
        (
            json!({"defaultingType": "List", "defaultConstraints": [
                {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
                 "labelSelector": {}}]}),
            "defaultConstraints[0].labelSelector: Forbidden: constraint must not define a selector, as they deduced for each pod",
        ),
        (
            json!({"defaultingType": "List", "defaultConstraints": [
                {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"},
                {"maxSkew": 2, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]}),
            r#"defaultConstraints[1]: Duplicate value: "{zone, DoNotSchedule}""#,
        ),
        (
            json!({"defaultingType": "List", "defaultConstraints": [
                {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "Sometimes"}]}),
            r#"defaultConstraints[0].whenUnsatisfiable: Unsupported value: "Sometimes": supported values: "DoNotSchedule", "ScheduleAnyway""#,
        ),
    ];
    for (v, want) in cases {
        assert_eq!(args(v.clone()).unwrap_err(), want, "{v}");
    }
}

#[test]
fn list_defaulting_applies_hard_default_constraints_to_filter() {
    use crate::framework::{FilterPlugin, PreFilterPlugin};
    let args = PodTopologySpreadArgs::from_json(Some(&json!({
        "defaultingType": "List",
        "defaultConstraints": [{"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule"}],
    })))
    .unwrap();
    let lister = StaticLister {
        services: vec![service("default", json!({"foo": ""}))],
        ..StaticLister::default()
    };
    let pl = PodTopologySpread::new(args, Arc::new(lister));
    let snap = nodes(vec![vec![foo("a1")], vec![foo("b1")], vec![]], false);
    let p = foo("p");
    let mut state = CycleState::new();
    assert!(pl.pre_filter(&mut state, &p, &snap).1.is_success());
    let got: Vec<bool> = snap
        .nodes
        .iter()
        .map(|n| pl.filter(&state, &p, n).is_success())
        .collect();
    assert_eq!(got, vec![false, false, true]);
}
