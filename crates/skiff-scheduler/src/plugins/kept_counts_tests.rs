//! PreFilter counts kept across cycles (`incremental`) must equal counts
//! from scratch: InterPodAffinity and PodTopologySpread run over a sequence
//! of snapshots that share unchanged NodeInfos, as the scheduler's cache
//! builds them (bindings, relabelled, removed and added nodes), and every
//! step is compared with a fresh plugin.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use serde_json::json;

use crate::framework::{
    CycleState, FilterPlugin, NodeInfo, PodInfo, PreFilterPlugin, Snapshot, StaticLister,
};
use crate::plugins::interpodaffinity::{self, InterPodAffinity, InterPodAffinityArgs};
use crate::plugins::podtopologyspread::{self, PodTopologySpread, PodTopologySpreadArgs};
use crate::plugins::test_util::{node, node_info, pod, required_term};

/// A step of cluster changes.
enum Change {
    Bind(usize, Box<PodInfo>),
    Relabel(usize, &'static str),
    Remove(usize),
    Add(&'static str, &'static str),
}

fn labelled(name: &str, zone: &str) -> Arc<k8s_openapi::api::core::v1::Node> {
    node(name, &[("zone", zone), ("node", name), ("hostname", name)])
}

fn apply(nodes: &mut Vec<Arc<NodeInfo>>, change: Change) {
    match change {
        Change::Bind(i, p) => {
            let mut n = (*nodes[i]).clone();
            n.add_pod(Arc::new(*p));
            nodes[i] = Arc::new(n);
        }
        Change::Relabel(i, zone) => {
            let mut n = (*nodes[i]).clone();
            let name = n.name().to_owned();
            n.set_node(labelled(&name, zone));
            nodes[i] = Arc::new(n);
        }
        Change::Remove(i) => {
            nodes.remove(i);
        }
        Change::Add(name, zone) => nodes.push(node_info(labelled(name, zone), vec![])),
    }
}

fn changes(green: impl Fn(&str) -> PodInfo) -> Vec<Change> {
    vec![
        Change::Bind(4, Box::new(green("b1"))),
        Change::Bind(1, Box::new(green("b2"))),
        Change::Bind(1, Box::new(green("b3"))),
        Change::Relabel(4, "z0"),
        Change::Relabel(5, "z0"),
        Change::Remove(3),
        Change::Add("n6", "z3"),
        Change::Bind(5, Box::new(green("b4"))),
        Change::Remove(0),
    ]
}

fn initial(green: impl Fn(&str) -> PodInfo, other: PodInfo) -> Vec<Arc<NodeInfo>> {
    let zones = ["z0", "z0", "z1", "z1", "z2", "z2"];
    zones
        .iter()
        .enumerate()
        .map(|(i, z)| {
            let pods = match i {
                0 => vec![green("a0")],
                2 => vec![green("a2"), other.clone()],
                _ => vec![],
            };
            node_info(labelled(&format!("n{i}"), z), pods)
        })
        .collect()
}

/// PreFilter's status and Filter's status on every node.
fn filter_all(
    pl: &dyn FilterPlugin,
    pf: &dyn PreFilterPlugin,
    p: &PodInfo,
    snap: &Snapshot,
) -> (CycleState, Vec<String>) {
    let mut state = CycleState::new();
    let (_, st) = pf.pre_filter(&mut state, p, snap);
    let mut out = vec![format!("{st:?}")];
    if st.is_success() {
        out.extend(
            snap.nodes
                .iter()
                .map(|n| format!("{:?}", pl.filter(&state, p, n))),
        );
    }
    (state, out)
}

#[test]
fn inter_pod_affinity_kept_counts_equal_fresh_counts() {
    let anti = required_term("podAntiAffinity", "color", &["green"], "hostname");
    let green = |name: &str| pod(name, "default", &[("color", "green")], anti.clone());
    let db = pod("db", "default", &[("app", "db")], json!({}));
    // Two workloads take turns: anti-affinity replicas, and pods with
    // affinity to the db's zone.
    let with_affinity = pod(
        "w",
        "default",
        &[("app", "web")],
        required_term("podAffinity", "app", &["db"], "zone"),
    );
    let incoming = [green("new"), with_affinity];
    let new_plugin = || {
        InterPodAffinity::new(
            InterPodAffinityArgs::default(),
            Arc::new(StaticLister::default()),
        )
    };
    // One plugin per workload keeps its counts; a shared one starts afresh
    // whenever the workload changes.
    let kept = [new_plugin(), new_plugin()];
    let shared = new_plugin();
    let mut nodes = initial(green, db);
    let mut steps = changes(green);
    steps.insert(0, Change::Bind(3, Box::new(green("c0"))));
    for (step, change) in steps.into_iter().enumerate() {
        apply(&mut nodes, change);
        let snap = Snapshot::from_nodes(nodes.clone());
        for (p, kept) in incoming.iter().zip(&kept) {
            let fresh = new_plugin();
            let (s2, want) = filter_all(&fresh, &fresh, p, &snap);
            for pl in [kept, &shared] {
                let (s1, got) = filter_all(pl, pl, p, &snap);
                assert_eq!(got, want, "step {step}, pod {}", p.key);
                assert_eq!(
                    interpodaffinity::prefilter_counts_for_test(&s1),
                    interpodaffinity::prefilter_counts_for_test(&s2),
                    "step {step}, pod {}",
                    p.key
                );
            }
        }
    }
}

#[test]
fn pod_topology_spread_kept_counts_equal_fresh_counts() {
    let green = |name: &str| pod(name, "default", &[("color", "green")], json!({}));
    let hard = |key: &str, extra: serde_json::Value| {
        let mut c = json!({"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"color": "green"}}});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        c
    };
    let spread = pod(
        "new",
        "default",
        &[("color", "green")],
        json!({"topologySpreadConstraints": [
            hard("zone", json!({"minDomains": 3})),
            hard("node", json!({})),
        ]}),
    );
    let zone_only = pod(
        "z",
        "default",
        &[("color", "green")],
        json!({"topologySpreadConstraints": [hard("zone", json!({}))]}),
    );
    let incoming = [spread, zone_only];
    let new_plugin = || {
        PodTopologySpread::new(
            PodTopologySpreadArgs::default(),
            Arc::new(StaticLister::default()),
        )
    };
    let kept = [new_plugin(), new_plugin()];
    let shared = new_plugin();
    let mut nodes = initial(green, pod("o", "other", &[("color", "green")], json!({})));
    for (step, change) in changes(green).into_iter().enumerate() {
        apply(&mut nodes, change);
        let snap = Snapshot::from_nodes(nodes.clone());
        for (p, kept) in incoming.iter().zip(&kept) {
            let fresh = new_plugin();
            let (s2, want) = filter_all(&fresh, &fresh, p, &snap);
            for pl in [kept, &shared] {
                let (s1, got) = filter_all(pl, pl, p, &snap);
                assert_eq!(got, want, "step {step}, pod {}", p.key);
                assert_eq!(
                    podtopologyspread::prefilter_counts_for_test(&s1),
                    podtopologyspread::prefilter_counts_for_test(&s2),
                    "step {step}, pod {}",
                    p.key
                );
            }
        }
    }
}

/// PreScore's status, then each node's normalised score.
fn scores(pl: &InterPodAffinity, p: &PodInfo, snap: &Snapshot) -> Vec<String> {
    use crate::framework::{NodeScore, PreScorePlugin, ScorePlugin};
    let mut state = CycleState::new();
    let st = pl.pre_score(&mut state, p, &snap.nodes, snap);
    let mut out = vec![format!("{st:?}")];
    if st.is_success() {
        let mut scores: Vec<NodeScore> = snap
            .nodes
            .iter()
            .map(|n| NodeScore {
                name: n.name(),
                score: pl.score(&state, p, n).0,
            })
            .collect();
        let st = pl.normalize_scores(&state, p, &mut scores);
        out.push(format!("{st:?}"));
        out.extend(scores.iter().map(|s| format!("{}={}", s.name, s.score)));
    }
    out
}

#[test]
fn inter_pod_affinity_kept_scores_equal_fresh_scores() {
    use crate::plugins::test_util::preferred_term;
    // Existing pods: required affinity to green pods by zone (hard weight)
    // and a preferred anti-affinity to them by hostname.
    let mut spec = required_term("podAffinity", "color", &["green"], "zone");
    spec["affinity"]["podAntiAffinity"] = preferred_term(
        "podAntiAffinity",
        7,
        "color",
        &["green"],
        "hostname",
    )["affinity"]["podAntiAffinity"]
        .clone();
    let green = |name: &str| pod(name, "default", &[("color", "green")], spec.clone());
    let incoming = [
        // No preferred terms: only existing pods' terms score.
        pod("plain", "default", &[("color", "green")], json!({})),
        pod(
            "pref",
            "default",
            &[("color", "green")],
            preferred_term("podAffinity", 3, "color", &["green"], "zone"),
        ),
    ];
    let new_plugin = || {
        InterPodAffinity::new(
            InterPodAffinityArgs::default(),
            Arc::new(StaticLister::default()),
        )
    };
    let kept = [new_plugin(), new_plugin()];
    let shared = new_plugin();
    let mut nodes = initial(green, pod("o", "other", &[("color", "green")], json!({})));
    for (step, change) in changes(green).into_iter().enumerate() {
        apply(&mut nodes, change);
        let snap = Snapshot::from_nodes(nodes.clone());
        for (p, kept) in incoming.iter().zip(&kept) {
            let want = scores(&new_plugin(), p, &snap);
            assert!(want.len() > 2, "step {step}: something scores");
            for pl in [kept, &shared] {
                assert_eq!(scores(pl, p, &snap), want, "step {step}, pod {}", p.key);
            }
        }
    }
}
