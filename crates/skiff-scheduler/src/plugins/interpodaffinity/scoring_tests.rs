//! InterPodAffinity PreScore/Score/NormalizeScore tests on small examples
//! computed by hand.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use serde_json::{Value, json};

use super::{InterPodAffinity, InterPodAffinityArgs};
use crate::framework::{
    CycleState, NodeScore, PodInfo, PreScorePlugin, ScorePlugin, Snapshot, StaticLister,
};
use crate::plugins::test_util::{node, pod, preferred_term, required_term, snapshot};

/// Raw and normalised scores per node, or None when PreScore skipped.
fn run(args: InterPodAffinityArgs, p: &PodInfo, snap: &Snapshot) -> Option<(Vec<i64>, Vec<i64>)> {
    let pl = InterPodAffinity::new(args, Arc::new(StaticLister::default()));
    let mut state = CycleState::new();
    let st = pl.pre_score(&mut state, p, &snap.nodes, snap);
    if st.is_skip() {
        return None;
    }
    assert!(st.is_success(), "{st:?}");
    let mut scores: Vec<NodeScore> = snap
        .nodes
        .iter()
        .map(|n| {
            let (score, st) = pl.score(&state, p, n);
            assert!(st.is_success());
            NodeScore {
                name: n.name(),
                score,
            }
        })
        .collect();
    let raw = scores.iter().map(|s| s.score).collect();
    assert!(pl.normalize_scores(&state, p, &mut scores).is_success());
    Some((raw, scores.iter().map(|s| s.score).collect()))
}

fn four_zones(existing: Vec<(usize, PodInfo)>) -> Snapshot {
    let nodes = [
        node("n1", &[("zone", "a"), ("hostname", "n1")]),
        node("n2", &[("zone", "a"), ("hostname", "n2")]),
        node("n3", &[("zone", "b"), ("hostname", "n3")]),
        node("n4", &[("zone", "c"), ("hostname", "n4")]),
    ];
    let mut pods: Vec<Vec<PodInfo>> = vec![vec![]; 4];
    for (i, p) in existing {
        pods[i].push(p);
    }
    snapshot(nodes.into_iter().zip(pods).collect())
}

fn merge_affinity(a: Value, b: Value) -> Value {
    let mut out = a;
    for (k, v) in b["affinity"].as_object().unwrap() {
        out["affinity"][k] = v.clone();
    }
    out
}

#[test]
fn scores() {
    let db = || pod("db", "default", &[("app", "db")], json!({}));
    let cache = || pod("cache", "default", &[("app", "cache")], json!({}));
    let default = InterPodAffinityArgs::default;
    type Case = (
        &'static str,
        InterPodAffinityArgs,
        Value,
        Vec<(usize, PodInfo)>,
        Option<(Vec<i64>, Vec<i64>)>,
    );
    let cases: Vec<Case> = vec![
        (
            // zone a +5, zone b -3: min -3, max 5; n4 = 100 * 3 / 8.
            "preferred affinity and anti-affinity of the incoming pod",
            default(),
            merge_affinity(
                preferred_term("podAffinity", 5, "app", &["db"], "zone"),
                preferred_term("podAntiAffinity", 3, "app", &["cache"], "zone"),
            ),
            vec![(0, db()), (2, cache())],
            Some((vec![5, 5, -3, 0], vec![100, 100, 0, 37])),
        ),
        (
            "pods in other namespaces do not count for the incoming pod's terms",
            default(),
            preferred_term("podAffinity", 5, "app", &["db"], "zone"),
            vec![(0, pod("db", "other", &[("app", "db")], json!({})))],
            None,
        ),
        (
            "existing pod's required affinity scores hardPodAffinityWeight",
            InterPodAffinityArgs {
                hard_pod_affinity_weight: 7,
                ..default()
            },
            json!({}),
            vec![(
                2,
                pod(
                    "e",
                    "default",
                    &[],
                    required_term("podAffinity", "app", &["web"], "hostname"),
                ),
            )],
            Some((vec![0, 0, 7, 0], vec![0, 0, 100, 0])),
        ),
        (
            "hardPodAffinityWeight 0 ignores existing required affinity",
            InterPodAffinityArgs {
                hard_pod_affinity_weight: 0,
                ..default()
            },
            json!({}),
            vec![(
                2,
                pod(
                    "e",
                    "default",
                    &[],
                    required_term("podAffinity", "app", &["web"], "hostname"),
                ),
            )],
            None,
        ),
        (
            "existing pod's preferred anti-affinity repels the incoming pod",
            default(),
            json!({}),
            vec![(
                1,
                pod(
                    "e",
                    "default",
                    &[],
                    preferred_term("podAntiAffinity", 10, "app", &["web"], "zone"),
                ),
            )],
            Some((vec![-10, -10, 0, 0], vec![0, 0, 100, 100])),
        ),
        (
            "existing pods' terms are ignored when asked and the pod has none",
            InterPodAffinityArgs {
                ignore_preferred_terms_of_existing_pods: true,
                ..default()
            },
            json!({}),
            vec![(
                1,
                pod(
                    "e",
                    "default",
                    &[],
                    preferred_term("podAntiAffinity", 10, "app", &["web"], "zone"),
                ),
            )],
            None,
        ),
        (
            "a topology key no node has scores nothing",
            default(),
            preferred_term("podAffinity", 5, "app", &["db"], "region"),
            vec![(0, db())],
            None,
        ),
        (
            "matches on every node give equal scores",
            default(),
            preferred_term("podAffinity", 4, "app", &["db"], "zone"),
            vec![(0, db()), (2, db()), (3, db())],
            Some((vec![4, 4, 4, 4], vec![0, 0, 0, 0])),
        ),
    ];
    for (name, args, spec, existing, want) in cases {
        let p = pod("p", "default", &[("app", "web")], spec);
        assert_eq!(run(args, &p, &four_zones(existing)), want, "{name}");
    }
}

#[test]
fn pre_score_skips_without_nodes() {
    let pl = InterPodAffinity::new(
        InterPodAffinityArgs::default(),
        Arc::new(StaticLister::default()),
    );
    let p = pod(
        "p",
        "default",
        &[],
        preferred_term("podAffinity", 5, "app", &["db"], "zone"),
    );
    let snap = four_zones(vec![]);
    assert!(
        pl.pre_score(&mut CycleState::new(), &p, &[], &snap)
            .is_skip()
    );
}

#[test]
fn pre_score_skips_a_plain_pod_when_no_pod_has_affinity() {
    let args = InterPodAffinityArgs {
        hard_pod_affinity_weight: 1,
        ..InterPodAffinityArgs::default()
    };
    let plain = pod("p", "default", &[("app", "web")], json!({}));
    // Existing pods without any affinity: nothing can score.
    let existing = vec![
        (0, pod("a", "default", &[("app", "web")], json!({}))),
        (2, pod("b", "default", &[("app", "db")], json!({}))),
    ];
    assert_eq!(run(args.clone(), &plain, &four_zones(existing)), None);
    // One existing pod whose required affinity selects the plain pod scores
    // its zone (hard weight) even though the plain pod has no terms.
    let existing = vec![(
        2,
        pod(
            "b",
            "default",
            &[("app", "db")],
            required_term("podAffinity", "app", &["web"], "zone"),
        ),
    )];
    let (raw, _) = run(args, &plain, &four_zones(existing)).expect("scored");
    assert_eq!(raw, vec![0, 0, 1, 0]);
}
