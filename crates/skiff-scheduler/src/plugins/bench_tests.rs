//! Micro-benchmarks of the affinity and spreading plugins at 5,000 nodes
//! (upstream's `SchedulingPodAntiAffinity` / `TopologySpreading` shapes).
//! Ignored by default; run with
//! `cargo test -p skiff-scheduler --release --lib bench_ -- --ignored --nocapture`.
//! `SKIFF_BENCH_ROUNDS` sets the cycles per measurement (default 100).
//! They print timings and assert nothing about time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use crate::framework::{CycleState, NodeScore, Plugin, PodInfo, Snapshot, StaticLister};
use crate::plugins::interpodaffinity::{InterPodAffinity, InterPodAffinityArgs};
use crate::plugins::podtopologyspread::{PodTopologySpread, PodTopologySpreadArgs};
use crate::plugins::test_util::{node, pod, required_term, snapshot};

const NODES: usize = 5000;

/// 5,000 nodes in 10 zones, `pods_per_node(i)` existing pods on node `i`.
fn cluster(pods: impl Fn(usize) -> Vec<PodInfo>) -> Snapshot {
    snapshot(
        (0..NODES)
            .map(|i| {
                let name = format!("node-{i}");
                let zone = format!("zone-{}", i % 10);
                (
                    node(
                        &name,
                        &[
                            ("kubernetes.io/hostname", name.as_str()),
                            ("topology.kubernetes.io/zone", zone.as_str()),
                        ],
                    ),
                    pods(i),
                )
            })
            .collect(),
    )
}

/// Runs one full cycle of `pl` for `p`: PreFilter, Filter on every node,
/// PreScore, Score on the feasible nodes, NormalizeScore.
fn cycle(pl: &dyn Plugin, p: &PodInfo, snap: &Snapshot) -> usize {
    let mut state = CycleState::new();
    let pre_filter = pl.as_pre_filter().unwrap();
    let (_, st) = pre_filter.pre_filter(&mut state, p, snap);
    let feasible: Vec<_> = if st.is_skip() {
        snap.nodes.clone()
    } else {
        let filter = pl.as_filter().unwrap();
        snap.nodes
            .iter()
            .filter(|n| filter.filter(&state, p, n).is_success())
            .cloned()
            .collect()
    };
    let st = pl
        .as_pre_score()
        .unwrap()
        .pre_score(&mut state, p, &feasible, snap);
    if !st.is_skip() {
        let score = pl.as_score().unwrap();
        let mut scores: Vec<NodeScore> = feasible
            .iter()
            .map(|n| NodeScore {
                name: n.name().to_owned(),
                score: score.score(&state, p, n).0,
            })
            .collect();
        score.normalize_scores(&state, p, &mut scores);
    }
    feasible.len()
}

fn report(what: &str, pl: &dyn Plugin, p: &PodInfo, snap: &Snapshot) {
    let rounds: u32 = std::env::var("SKIFF_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
        .max(1);
    let start = Instant::now();
    let mut feasible = 0;
    for _ in 0..rounds {
        feasible = cycle(pl, p, snap);
    }
    let per = start.elapsed() / rounds;
    println!(
        "{what}: {per:?} per pod ({:.0} pods/s for this plugin alone), {feasible} feasible nodes",
        1.0 / per.as_secs_f64()
    );
    // Per extension point.
    let mut t = [std::time::Duration::ZERO; 4];
    for _ in 0..rounds {
        let mut state = CycleState::new();
        let s = Instant::now();
        let (_, st) = pl.as_pre_filter().unwrap().pre_filter(&mut state, p, snap);
        t[0] += s.elapsed();
        let s = Instant::now();
        let feasible: Vec<_> = if st.is_skip() {
            snap.nodes.clone()
        } else {
            snap.nodes
                .iter()
                .filter(|n| pl.as_filter().unwrap().filter(&state, p, n).is_success())
                .cloned()
                .collect()
        };
        t[1] += s.elapsed();
        let s = Instant::now();
        let st = pl
            .as_pre_score()
            .unwrap()
            .pre_score(&mut state, p, &feasible, snap);
        t[2] += s.elapsed();
        let s = Instant::now();
        if !st.is_skip() {
            for n in &feasible {
                pl.as_score().unwrap().score(&state, p, n);
            }
        }
        t[3] += s.elapsed();
    }
    println!(
        "  prefilter {:?} filter {:?} prescore {:?} score {:?}",
        t[0] / rounds,
        t[1] / rounds,
        t[2] / rounds,
        t[3] / rounds
    );
}

#[test]
#[ignore]
fn bench_pod_anti_affinity() {
    let anti = required_term(
        "podAntiAffinity",
        "color",
        &["green"],
        "kubernetes.io/hostname",
    );
    // 4,000 nodes already hold one replica each.
    let snap = cluster(|i| {
        if i < 4000 {
            vec![pod(
                &format!("p{i}"),
                "default",
                &[("color", "green")],
                anti.clone(),
            )]
        } else {
            vec![]
        }
    });
    let p = pod("new", "default", &[("color", "green")], anti.clone());
    let pl = InterPodAffinity::new(
        InterPodAffinityArgs::default(),
        Arc::new(StaticLister::default()),
    );
    report("InterPodAffinity anti-affinity", &pl, &p, &snap);
}

#[test]
#[ignore]
fn bench_topology_spreading() {
    let snap = cluster(|i| {
        if i < 4000 {
            vec![pod(
                &format!("p{i}"),
                "default",
                &[("app", "spread")],
                json!({}),
            )]
        } else {
            vec![]
        }
    });
    let p = pod(
        "new",
        "default",
        &[("app", "spread")],
        json!({"topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
             "whenUnsatisfiable": "DoNotSchedule",
             "labelSelector": {"matchLabels": {"app": "spread"}}},
            {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
             "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": {"matchLabels": {"app": "spread"}}},
        ]}),
    );
    let pl = PodTopologySpread::new(
        PodTopologySpreadArgs::default(),
        Arc::new(StaticLister::default()),
    );
    report("PodTopologySpread", &pl, &p, &snap);
}
