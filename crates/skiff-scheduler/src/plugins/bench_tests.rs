//! Micro-benchmarks of the affinity and spreading plugins at 5,000 nodes
//! (upstream's `SchedulingPodAntiAffinity` / `TopologySpreading` shapes).
//! Ignored by default; run with
//! `cargo test -p skiff-scheduler --release --lib bench_ -- --ignored --nocapture`.
//! `SKIFF_BENCH_ROUNDS` sets the cycles per measurement (default 100).
//! Each cycle runs the plugin as the runtime would at 5,000 nodes (Filter
//! from a rotating start until 500 nodes pass, PreScore and Score on those)
//! and binds the pod to its chosen node before the next cycle, so counts
//! kept across cycles see one changed node per pod as in a real run; the
//! first pod of the workload, counted from scratch, is reported apart.
//! Times are this thread's CPU time. They print timings and assert nothing
//! about time.
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

/// Feasible nodes the runtime looks for at 5,000 nodes before it stops
/// filtering (upstream's adaptive percentageOfNodesToScore: 10%).
const NODES_TO_FIND: usize = 500;

/// This thread's CPU time so far (the first field of
/// `/proc/thread-self/schedstat`, in ns), so other load on the machine does
/// not count; None where unavailable.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU time (or wall time where CPU time is unavailable) of `f`, in ns.
fn timed<T>(acc: &mut u64, f: impl FnOnce() -> T) -> T {
    let (c, w) = (thread_cpu_ns(), Instant::now());
    let out = f();
    *acc += match (c, thread_cpu_ns()) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => u64::try_from(w.elapsed().as_nanos()).unwrap_or(u64::MAX),
    };
    out
}

/// What one cycle did: nodes filtered, nodes found feasible, the node
/// chosen (the best score, the first feasible node without scores).
struct CycleStats {
    filtered: usize,
    feasible: usize,
    chosen: Option<String>,
}

/// Runs one cycle of `pl` for `p` as the runtime does: PreFilter on the
/// snapshot, Filter from a rotating start node until [`NODES_TO_FIND`]
/// nodes pass (or every node was tried), PreScore and Score on those,
/// NormalizeScore. `t` accumulates ns per extension point.
fn cycle(
    pl: &dyn Plugin,
    p: &PodInfo,
    snap: &Snapshot,
    start: usize,
    t: &mut [u64; 4],
) -> CycleStats {
    let mut state = CycleState::new();
    let (_, st) = timed(&mut t[0], || {
        pl.as_pre_filter().unwrap().pre_filter(&mut state, p, snap)
    });
    let n = snap.nodes.len();
    let mut filtered = 0;
    let feasible: Vec<_> = timed(&mut t[1], || {
        let filter = pl.as_filter().unwrap();
        let mut out = Vec::with_capacity(NODES_TO_FIND);
        for k in 0..n {
            if out.len() == NODES_TO_FIND {
                break;
            }
            let node = &snap.nodes[(start + k) % n];
            filtered += 1;
            if st.is_skip() || filter.filter(&state, p, node).is_success() {
                out.push(node.clone());
            }
        }
        out
    });
    let st = timed(&mut t[2], || {
        pl.as_pre_score()
            .unwrap()
            .pre_score(&mut state, p, &feasible, snap)
    });
    let mut chosen = feasible.first().map(|n| n.name().to_owned());
    if !st.is_skip() {
        let scores = timed(&mut t[3], || {
            let score = pl.as_score().unwrap();
            let mut scores: Vec<NodeScore> = feasible
                .iter()
                .map(|n| NodeScore {
                    name: n.name(),
                    score: score.score(&state, p, n).0,
                })
                .collect();
            score.normalize_scores(&state, p, &mut scores);
            scores
        });
        let best = scores.iter().map(|s| s.score).max();
        chosen = scores
            .into_iter()
            .find(|s| Some(s.score) == best)
            .map(|s| s.name.to_owned());
    }
    CycleStats {
        filtered,
        feasible: feasible.len(),
        chosen,
    }
}

/// Schedules `SKIFF_BENCH_ROUNDS` pods made by `new_pod` one after the
/// other, binding each to its chosen node before the next cycle (as the
/// cache's assumed pods do), and prints CPU time per pod.
fn report(what: &str, pl: &dyn Plugin, new_pod: impl Fn(usize) -> PodInfo, snap: Snapshot) {
    let rounds: usize = std::env::var("SKIFF_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
        .max(1);
    let mut nodes = snap.nodes.clone();
    let mut snap = snap;
    let mut bind = |snap: &mut Snapshot, p: PodInfo, chosen: Option<String>| {
        let Some(i) = chosen.and_then(|name| snap.by_name.get(&name).copied()) else {
            return;
        };
        let mut n = (*nodes[i]).clone();
        n.add_pod(Arc::new(p));
        nodes[i] = Arc::new(n);
        *snap = Snapshot::from_nodes(nodes.clone());
    };
    // The workload's first pod counts every node.
    let mut first = [0u64; 4];
    let p = new_pod(0);
    let stats = cycle(pl, &p, &snap, 0, &mut first);
    bind(&mut snap, p, stats.chosen);
    let mut t = [0u64; 4];
    let (mut filtered, mut feasible) = (0, 0);
    for r in 1..=rounds {
        let p = new_pod(r);
        let stats = cycle(pl, &p, &snap, r * 997, &mut t);
        filtered += stats.filtered;
        feasible += stats.feasible;
        bind(&mut snap, p, stats.chosen);
    }
    let ms = |ns: u64, n: usize| ns as f64 / 1e6 / n as f64;
    let total = ms(t.iter().sum(), rounds);
    println!(
        "{what}: {total:.3} ms CPU per pod ({:.0} pods/s for this plugin alone); \
         prefilter {:.3} filter {:.3} prescore {:.3} score {:.3} ms; \
         {} nodes filtered, {} feasible per pod; the first pod {:.3} ms",
        1e3 / total,
        ms(t[0], rounds),
        ms(t[1], rounds),
        ms(t[2], rounds),
        ms(t[3], rounds),
        filtered / rounds,
        feasible / rounds,
        ms(first.iter().sum(), 1),
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
    let new_pod = |i: usize| {
        pod(
            &format!("new{i}"),
            "default",
            &[("color", "green")],
            anti.clone(),
        )
    };
    let pl = InterPodAffinity::new(
        InterPodAffinityArgs::default(),
        Arc::new(StaticLister::default()),
    );
    report("InterPodAffinity anti-affinity", &pl, new_pod, snap);
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
    let new_pod = |i: usize| {
        pod(
            &format!("new{i}"),
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
        )
    };
    let pl = PodTopologySpread::new(
        PodTopologySpreadArgs::default(),
        Arc::new(StaticLister::default()),
    );
    report("PodTopologySpread", &pl, new_pod, snap);
}
