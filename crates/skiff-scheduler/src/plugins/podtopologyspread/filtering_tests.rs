//! PodTopologySpread PreFilter/Filter tests, after upstream's
//! `TestSingleConstraint` / `TestMultipleConstraints` / `TestPreFilterStateAddPod`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use serde_json::{Value, json};

use super::filtering::{CriticalPaths, PRE_FILTER_STATE_KEY, PreFilterState};
use super::{
    ERR_REASON_CONSTRAINTS_NOT_MATCH, ERR_REASON_NODE_LABEL_NOT_MATCH, PodTopologySpread,
    PodTopologySpreadArgs,
};
use crate::framework::{
    Code, CycleState, FilterPlugin, PodInfo, PreFilterExtensions, PreFilterPlugin, Snapshot,
    StaticLister, Status,
};
use crate::plugins::test_util::{node, node_json, pod, snapshot};

fn plugin() -> PodTopologySpread {
    PodTopologySpread::new(
        PodTopologySpreadArgs::default(),
        Arc::new(StaticLister::default()),
    )
}

fn run(p: &PodInfo, snap: &Snapshot) -> Vec<Status> {
    let pl = plugin();
    let mut state = CycleState::new();
    let (_, st) = pl.pre_filter(&mut state, p, snap);
    if st.is_skip() {
        return snap.nodes.iter().map(|_| Status::success()).collect();
    }
    assert!(st.is_success(), "{st:?}");
    snap.nodes.iter().map(|n| pl.filter(&state, p, n)).collect()
}

fn ok() -> Status {
    Status::success()
}
fn skew() -> Status {
    Status::unschedulable(ERR_REASON_CONSTRAINTS_NOT_MATCH)
}
fn no_label() -> Status {
    Status::unresolvable(ERR_REASON_NODE_LABEL_NOT_MATCH)
}

/// A DoNotSchedule constraint on `key` selecting pods with label `foo`.
fn hard(key: &str, max_skew: i32, extra: Value) -> Value {
    let mut c = json!({
        "maxSkew": max_skew, "topologyKey": key, "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchExpressions": [{"key": "foo", "operator": "Exists"}]},
    });
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

fn spec(constraints: Vec<Value>) -> Value {
    json!({"topologySpreadConstraints": constraints})
}

fn foo(name: &str) -> PodInfo {
    pod(name, "default", &[("foo", "")], json!({}))
}

/// node-a, node-b in zone1; node-x, node-y in zone2; pods per node.
fn zones(pods: [Vec<PodInfo>; 4]) -> Snapshot {
    let names = [
        ("node-a", "zone1"),
        ("node-b", "zone1"),
        ("node-x", "zone2"),
        ("node-y", "zone2"),
    ];
    snapshot(
        names
            .iter()
            .zip(pods)
            .map(|((n, z), pods)| (node(n, &[("zone", z), ("node", n)]), pods))
            .collect(),
    )
}

#[test]
fn single_constraint() {
    let zone1 = || spec(vec![hard("zone", 1, json!({}))]);
    type Case = (&'static str, PodInfo, [Vec<PodInfo>; 4], Vec<Status>);
    let cases: Vec<Case> = vec![
        (
            "no existing pods",
            pod("p", "default", &[("foo", "")], zone1()),
            [vec![], vec![], vec![], vec![]],
            vec![ok(), ok(), ok(), ok()],
        ),
        (
            "incoming pod does not match its own selector",
            pod("p", "default", &[("bar", "")], zone1()),
            [vec![foo("a1"), foo("a2")], vec![], vec![], vec![]],
            vec![skew(), skew(), ok(), ok()],
        ),
        (
            "pods in another namespace are not counted",
            pod("p", "default", &[("foo", "")], zone1()),
            [
                vec![pod("a1", "other", &[("foo", "")], json!({}))],
                vec![],
                vec![],
                vec![],
            ],
            vec![ok(), ok(), ok(), ok()],
        ),
        (
            "zones 2/1: only zone2 stays within maxSkew",
            pod("p", "default", &[("foo", "")], zone1()),
            [vec![foo("a1")], vec![foo("b1")], vec![foo("x1")], vec![]],
            vec![skew(), skew(), ok(), ok()],
        ),
        (
            "maxSkew 2 tolerates zones 2/1",
            pod(
                "p",
                "default",
                &[("foo", "")],
                spec(vec![hard("zone", 2, json!({}))]),
            ),
            [vec![foo("a1")], vec![foo("b1")], vec![foo("x1")], vec![]],
            vec![ok(), ok(), ok(), ok()],
        ),
        (
            "hostname spreading",
            pod(
                "p",
                "default",
                &[("foo", "")],
                spec(vec![hard("node", 1, json!({}))]),
            ),
            [vec![foo("a1"), foo("a2")], vec![foo("b1")], vec![], vec![]],
            vec![skew(), skew(), ok(), ok()],
        ),
        (
            "terminating pods are not counted",
            pod("p", "default", &[("foo", "")], zone1()),
            [
                vec![{
                    let mut p = (*foo("a1").pod).clone();
                    p.metadata.deletion_timestamp =
                        serde_json::from_value(json!("2024-01-01T00:00:00Z")).unwrap();
                    PodInfo::new(Arc::new(p))
                }],
                vec![],
                vec![],
                vec![],
            ],
            vec![ok(), ok(), ok(), ok()],
        ),
        (
            "minDomains above the domain count makes the global minimum 0",
            pod(
                "p",
                "default",
                &[("foo", "")],
                spec(vec![hard("zone", 1, json!({"minDomains": 3}))]),
            ),
            [vec![foo("a1")], vec![], vec![foo("x1")], vec![]],
            vec![skew(), skew(), skew(), skew()],
        ),
        (
            "minDomains met",
            pod(
                "p",
                "default",
                &[("foo", "")],
                spec(vec![hard("zone", 1, json!({"minDomains": 2}))]),
            ),
            [vec![foo("a1")], vec![], vec![foo("x1")], vec![]],
            vec![ok(), ok(), ok(), ok()],
        ),
        (
            "matchLabelKeys narrows the selector to the pod's version",
            pod(
                "p",
                "default",
                &[("foo", ""), ("version", "v2")],
                spec(vec![hard(
                    "zone",
                    1,
                    json!({"matchLabelKeys": ["version"]}),
                )]),
            ),
            [
                vec![pod(
                    "a1",
                    "default",
                    &[("foo", ""), ("version", "v1")],
                    json!({}),
                )],
                vec![pod(
                    "b1",
                    "default",
                    &[("foo", ""), ("version", "v1")],
                    json!({}),
                )],
                vec![pod(
                    "x1",
                    "default",
                    &[("foo", ""), ("version", "v2")],
                    json!({}),
                )],
                vec![],
            ],
            vec![ok(), ok(), skew(), skew()],
        ),
        (
            "two constraints: zone and node",
            pod(
                "p",
                "default",
                &[("foo", "")],
                spec(vec![hard("zone", 1, json!({})), hard("node", 1, json!({}))]),
            ),
            [vec![foo("a1")], vec![], vec![foo("x1")], vec![foo("y1")]],
            // zones 1/2: zone1 only; nodes 1/0/1/1: node-b only.
            vec![skew(), ok(), skew(), skew()],
        ),
    ];
    for (name, p, pods, want) in cases {
        assert_eq!(run(&p, &zones(pods)), want, "{name}");
    }
}

#[test]
fn nodes_without_the_topology_key_are_unresolvable() {
    let snap = snapshot(vec![
        (node("node-a", &[("zone", "zone1")]), vec![]),
        (node("node-c", &[("node", "node-c")]), vec![]),
    ]);
    let p = pod(
        "p",
        "default",
        &[("foo", "")],
        spec(vec![hard("zone", 1, json!({}))]),
    );
    assert_eq!(run(&p, &snap), vec![ok(), no_label()]);
}

#[test]
fn node_inclusion_policies() {
    let affinity = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "zone", "operator": "In", "values": ["zone1"]}]}]}}});
    let tainted = |name: &str| {
        node_json(json!({
            "metadata": {"name": name, "labels": {"zone": "zone2", "node": name}},
            "spec": {"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]},
        }))
    };
    let taint_snap = || {
        snapshot(vec![
            (
                node("node-a", &[("zone", "zone1"), ("node", "node-a")]),
                vec![foo("a1")],
            ),
            (tainted("node-x"), vec![]),
        ])
    };
    let cases: Vec<(&str, Value, Snapshot, Vec<Status>)> = vec![
        (
            "nodeAffinityPolicy Honor leaves zone2 out of the domains",
            json!({"affinity": affinity.clone(), "topologySpreadConstraints": [hard("zone", 1, json!({}))]}),
            zones([vec![foo("a1")], vec![], vec![], vec![]]),
            vec![ok(), ok(), ok(), ok()],
        ),
        (
            "nodeAffinityPolicy Ignore counts zone2",
            json!({"affinity": affinity.clone(), "topologySpreadConstraints": [
                hard("zone", 1, json!({"nodeAffinityPolicy": "Ignore"}))]}),
            zones([vec![foo("a1")], vec![], vec![], vec![]]),
            vec![skew(), skew(), ok(), ok()],
        ),
        (
            "nodeSelector is honoured like node affinity",
            json!({"nodeSelector": {"zone": "zone1"}, "topologySpreadConstraints": [hard("zone", 1, json!({}))]}),
            zones([vec![foo("a1")], vec![], vec![], vec![]]),
            vec![ok(), ok(), ok(), ok()],
        ),
        (
            "nodeTaintsPolicy Ignore (default) counts tainted nodes",
            spec(vec![hard("zone", 1, json!({}))]),
            taint_snap(),
            vec![skew(), ok()],
        ),
        (
            "nodeTaintsPolicy Honor leaves untolerated tainted nodes out",
            spec(vec![hard("zone", 1, json!({"nodeTaintsPolicy": "Honor"}))]),
            taint_snap(),
            vec![ok(), ok()],
        ),
        (
            "nodeTaintsPolicy Honor counts tolerated tainted nodes",
            json!({
                "tolerations": [{"key": "k", "operator": "Exists"}],
                "topologySpreadConstraints": [hard("zone", 1, json!({"nodeTaintsPolicy": "Honor"}))],
            }),
            taint_snap(),
            vec![skew(), ok()],
        ),
    ];
    for (name, s, snap, want) in cases {
        let p = pod("p", "default", &[("foo", "")], s);
        assert_eq!(run(&p, &snap), want, "{name}");
    }
}

#[test]
fn pods_without_hard_constraints_skip() {
    let pl = plugin();
    let snap = zones([vec![], vec![], vec![], vec![]]);
    // No constraints: the system defaults are ScheduleAnyway only.
    let p = pod("p", "default", &[("foo", "")], json!({}));
    assert!(pl.pre_filter(&mut CycleState::new(), &p, &snap).1.is_skip());
    let soft = pod(
        "p",
        "default",
        &[("foo", "")],
        spec(vec![hard(
            "zone",
            1,
            json!({"whenUnsatisfiable": "ScheduleAnyway"}),
        )]),
    );
    assert!(
        pl.pre_filter(&mut CycleState::new(), &soft, &snap)
            .1
            .is_skip()
    );
    assert_eq!(
        pl.filter(&CycleState::new(), &p, &snap.nodes[0]).code(),
        Code::Error
    );
}

#[test]
fn critical_paths_keep_the_two_smallest() {
    // (updates, expected minimum domain and count)
    type Case = (Vec<(&'static str, i64)>, (&'static str, i64));
    let cases: Vec<Case> = vec![
        (vec![("a", 3), ("b", 1), ("c", 2)], ("b", 1)),
        (vec![("a", 1), ("b", 2), ("a", 3)], ("b", 2)),
        (vec![("a", 1), ("b", 2), ("c", 0), ("c", 5)], ("a", 1)),
        (vec![("a", 0)], ("a", 0)),
    ];
    // Domain ids stand for the letters.
    let id = |v: &str| u32::from(v.as_bytes()[0]);
    for (updates, (value, min)) in cases {
        let mut counts = std::collections::HashMap::new();
        let mut p = CriticalPaths::new();
        for (v, n) in &updates {
            counts.insert(*v, *n);
            p.update(id(v), *n);
        }
        assert_eq!(p.first(), (id(value), min), "{updates:?}");
        assert_eq!(min, *counts.values().min().unwrap(), "{updates:?}");
    }
}

fn counts(state: &CycleState) -> (Vec<Vec<(String, i64)>>, Vec<i64>) {
    let s = state.read::<PreFilterState>(PRE_FILTER_STATE_KEY).unwrap();
    let counts = s
        .tp_value_to_match_num
        .iter()
        .map(|m| {
            let mut v: Vec<_> = m
                .iter()
                .filter(|(_, n)| *n != 0)
                .map(|(k, n)| (k.to_owned(), n))
                .collect();
            v.sort();
            v
        })
        .collect();
    let mins = s.critical_paths.iter().map(|p| p.first().1).collect();
    (counts, mins)
}

#[test]
fn add_pod_then_remove_pod_restores_the_state() {
    let pl = plugin();
    let p = pod(
        "p",
        "default",
        &[("foo", "")],
        spec(vec![hard("zone", 1, json!({})), hard("node", 1, json!({}))]),
    );
    let without = zones([vec![foo("a1")], vec![], vec![foo("x1")], vec![foo("y1")]]);
    let with = zones([
        vec![foo("a1")],
        vec![foo("b1")],
        vec![foo("x1")],
        vec![foo("y1")],
    ]);
    let mut s = CycleState::new();
    assert!(pl.pre_filter(&mut s, &p, &without).1.is_success());
    let mut s_with = CycleState::new();
    assert!(pl.pre_filter(&mut s_with, &p, &with).1.is_success());
    let original = counts(&s);
    assert_eq!(pl.filter(&s, &p, &without.nodes[1]), ok());

    let b1 = foo("b1");
    assert!(pl.add_pod(&mut s, &p, &b1, &without.nodes[1]).is_success());
    assert_eq!(counts(&s), counts(&s_with));
    // Zones now 2/2, nodes 1/1/1/1: every node fits again.
    assert_eq!(pl.filter(&s, &p, &without.nodes[0]), ok());
    // A pod in another namespace changes nothing.
    let other = pod("o", "other", &[("foo", "")], json!({}));
    assert!(
        pl.add_pod(&mut s, &p, &other, &without.nodes[1])
            .is_success()
    );
    assert_eq!(counts(&s), counts(&s_with));

    assert!(
        pl.remove_pod(&mut s, &p, &b1, &without.nodes[1])
            .is_success()
    );
    assert_eq!(counts(&s), original);
    assert_eq!(pl.filter(&s, &p, &without.nodes[0]), skew());
}
