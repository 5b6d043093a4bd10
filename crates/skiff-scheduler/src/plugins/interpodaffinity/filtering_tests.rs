//! InterPodAffinity PreFilter/Filter tests, after upstream's
//! `TestRequiredAffinitySingleNode` / `TestRequiredAffinityMultipleNodes`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use serde_json::{Value, json};

use super::filtering::{
    ERR_REASON_AFFINITY_RULES_NOT_MATCH, ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH,
    ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH, PRE_FILTER_STATE_KEY, PreFilterState,
};
use super::{InterPodAffinity, InterPodAffinityArgs};
use crate::framework::{
    Code, CycleState, FilterPlugin, PodInfo, PreFilterExtensions, PreFilterPlugin, Snapshot,
    StaticLister, Status,
};
use crate::plugins::test_util::{lister, node, pod, required_term, snapshot};

fn plugin(lister: StaticLister) -> InterPodAffinity {
    InterPodAffinity::new(InterPodAffinityArgs::default(), Arc::new(lister))
}

/// Runs PreFilter then Filter on every node; a skipped PreFilter passes
/// every node.
fn run(pl: &InterPodAffinity, p: &PodInfo, snap: &Snapshot) -> Vec<Status> {
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
fn affinity_fail() -> Status {
    Status::unresolvable(ERR_REASON_AFFINITY_RULES_NOT_MATCH)
}
fn anti_fail() -> Status {
    Status::unschedulable(ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH)
}
fn existing_fail() -> Status {
    Status::unschedulable(ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH)
}

const NODE1: &[(&str, &str)] = &[("region", "r1"), ("zone", "z11"), ("hostname", "node1")];

fn sec(name: &str, ns: &str) -> PodInfo {
    pod(name, ns, &[("service", "securityscan")], json!({}))
}

#[test]
fn required_affinity_single_node() {
    let aff_sec = required_term("podAffinity", "service", &["securityscan"], "region");
    let anti_sec = required_term("podAntiAffinity", "service", &["securityscan"], "zone");
    let cases: Vec<(&str, PodInfo, Vec<PodInfo>, Status)> = vec![
        (
            "no affinity",
            pod("p", "default", &[], json!({})),
            vec![sec("e", "default")],
            ok(),
        ),
        (
            "affinity satisfied by a pod in the same region",
            pod("p", "default", &[], aff_sec.clone()),
            vec![sec("e", "default")],
            ok(),
        ),
        (
            "NotIn operator satisfied",
            pod(
                "p",
                "default",
                &[],
                json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                    "labelSelector": {"matchExpressions": [
                        {"key": "service", "operator": "NotIn", "values": ["securityscan3", "value3"]}]},
                    "topologyKey": "region"}]}}}),
            ),
            vec![sec("e", "default")],
            ok(),
        ),
        (
            "matching pod in another namespace does not count",
            pod("p", "default", &[], aff_sec.clone()),
            vec![sec("e", "other")],
            affinity_fail(),
        ),
        (
            "no pod matches and the pod does not match itself",
            pod("p", "default", &[], aff_sec.clone()),
            vec![pod("e", "default", &[("service", "other")], json!({}))],
            affinity_fail(),
        ),
        (
            "first pod of a group matching its own affinity term",
            pod(
                "p",
                "default",
                &[("service", "securityscan")],
                aff_sec.clone(),
            ),
            vec![],
            ok(),
        ),
        (
            "self match but the node lacks the topology key",
            pod(
                "p",
                "default",
                &[("service", "securityscan")],
                required_term("podAffinity", "service", &["securityscan"], "rack"),
            ),
            vec![],
            affinity_fail(),
        ),
        (
            "anti-affinity against a matching pod in the zone",
            pod("p", "default", &[], anti_sec.clone()),
            vec![sec("e", "default")],
            anti_fail(),
        ),
        (
            "anti-affinity with no matching pod",
            pod("p", "default", &[], anti_sec.clone()),
            vec![pod("e", "default", &[("service", "x")], json!({}))],
            ok(),
        ),
        (
            "existing pod's anti-affinity selects the incoming pod",
            pod("p", "default", &[("service", "securityscan")], json!({})),
            vec![pod("e", "default", &[], anti_sec.clone())],
            existing_fail(),
        ),
        (
            "existing pod's anti-affinity in another namespace ignores the pod",
            pod("p", "default", &[("service", "securityscan")], json!({})),
            vec![pod("e", "other", &[], anti_sec.clone())],
            ok(),
        ),
        (
            "affinity satisfied, anti-affinity violated",
            pod(
                "p",
                "default",
                &[],
                json!({"affinity": {
                    "podAffinity": aff_sec["affinity"]["podAffinity"].clone(),
                    "podAntiAffinity": required_term("podAntiAffinity", "app", &["db"], "hostname")
                        ["affinity"]["podAntiAffinity"].clone(),
                }}),
            ),
            vec![
                sec("e", "default"),
                pod("d", "default", &[("app", "db")], json!({})),
            ],
            anti_fail(),
        ),
    ];
    for (name, p, existing, want) in cases {
        let snap = snapshot(vec![(node("node1", NODE1), existing)]);
        let got = run(&plugin(StaticLister::default()), &p, &snap);
        assert_eq!(got, vec![want], "{name}");
    }
}

#[test]
fn every_affinity_term_must_be_matched_by_one_pod() {
    let two_terms = json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"service": "securityscan"}}, "topologyKey": "region"},
        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"},
    ]}}});
    let cases: Vec<(&str, Vec<PodInfo>, Status)> = vec![
        (
            "each term matched by a different pod",
            vec![
                sec("e1", "default"),
                pod("e2", "default", &[("app", "db")], json!({})),
            ],
            affinity_fail(),
        ),
        (
            "one pod matches both terms",
            vec![pod(
                "e",
                "default",
                &[("service", "securityscan"), ("app", "db")],
                json!({}),
            )],
            ok(),
        ),
    ];
    for (name, existing, want) in cases {
        let p = pod("p", "default", &[], two_terms.clone());
        let snap = snapshot(vec![(node("node1", NODE1), existing)]);
        assert_eq!(
            run(&plugin(StaticLister::default()), &p, &snap),
            vec![want],
            "{name}"
        );
    }
}

#[test]
fn affinity_and_anti_affinity_across_zones() {
    let nodes = || {
        vec![
            node("n1", &[("zone", "a"), ("hostname", "n1")]),
            node("n2", &[("zone", "a"), ("hostname", "n2")]),
            node("n3", &[("zone", "b"), ("hostname", "n3")]),
            node("n4", &[("hostname", "n4")]),
        ]
    };
    let web = || pod("w", "default", &[("app", "web")], json!({}));
    let snap = |pods_on_n1: Vec<PodInfo>| {
        let mut pods = vec![pods_on_n1, vec![], vec![], vec![]].into_iter();
        snapshot(
            nodes()
                .into_iter()
                .map(|n| (n, pods.next().unwrap_or_default()))
                .collect(),
        )
    };
    let cases: Vec<(&str, Value, Vec<PodInfo>, Vec<Status>)> = vec![
        (
            "zone affinity keeps the pod in zone a",
            required_term("podAffinity", "app", &["web"], "zone"),
            vec![web()],
            vec![ok(), ok(), affinity_fail(), affinity_fail()],
        ),
        (
            "zone anti-affinity keeps the pod out of zone a",
            required_term("podAntiAffinity", "app", &["web"], "zone"),
            vec![web()],
            vec![anti_fail(), anti_fail(), ok(), ok()],
        ),
        (
            "hostname anti-affinity keeps replicas on distinct nodes",
            required_term("podAntiAffinity", "app", &["web"], "hostname"),
            vec![web()],
            vec![anti_fail(), ok(), ok(), ok()],
        ),
        (
            "symmetry: an existing pod's zone anti-affinity repels the pod",
            json!({}),
            vec![pod(
                "e",
                "default",
                &[],
                required_term("podAntiAffinity", "app", &["web"], "zone"),
            )],
            vec![existing_fail(), existing_fail(), ok(), ok()],
        ),
    ];
    for (name, spec, existing, want) in cases {
        let p = pod("p", "default", &[("app", "web")], spec);
        let got = run(&plugin(StaticLister::default()), &p, &snap(existing));
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn namespace_selector() {
    let ns = lister(&[
        ("default", &[("team", "a")]),
        ("team-a", &[("team", "a")]),
        ("team-b", &[("team", "b")]),
    ]);
    let term = |ns_sel: Value| {
        json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchLabels": {"app": "db"}},
            "namespaceSelector": ns_sel,
            "topologyKey": "zone"}]}}})
    };
    let n = || node("n1", &[("zone", "a")]);
    let db = |namespace: &str| pod("db", namespace, &[("app", "db")], json!({}));
    let cases: Vec<(&str, Value, &str, Status)> = vec![
        (
            "selected namespace",
            json!({"matchLabels": {"team": "a"}}),
            "team-a",
            ok(),
        ),
        (
            "unselected namespace",
            json!({"matchLabels": {"team": "a"}}),
            "team-b",
            affinity_fail(),
        ),
        ("empty selector selects all", json!({}), "team-b", ok()),
    ];
    for (name, sel, db_ns, want) in cases {
        let p = pod("p", "default", &[], term(sel));
        let snap = snapshot(vec![(n(), vec![db(db_ns)])]);
        assert_eq!(run(&plugin(ns.clone()), &p, &snap), vec![want], "{name}");
    }

    // An existing pod's anti-affinity selects the incoming pod by the labels
    // of the incoming pod's namespace.
    let existing = pod(
        "e",
        "team-b",
        &[],
        json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchLabels": {"app": "web"}},
            "namespaceSelector": {"matchLabels": {"team": "a"}},
            "topologyKey": "zone"}]}}}),
    );
    let snap = snapshot(vec![(n(), vec![existing])]);
    let in_a = pod("p", "team-a", &[("app", "web")], json!({}));
    let in_b = pod("p", "team-b", &[("app", "web")], json!({}));
    assert_eq!(
        run(&plugin(ns.clone()), &in_a, &snap),
        vec![existing_fail()]
    );
    assert_eq!(run(&plugin(ns), &in_b, &snap), vec![ok()]);
}

fn state_counts(state: &CycleState) -> PreFilterState {
    state
        .read::<PreFilterState>(PRE_FILTER_STATE_KEY)
        .unwrap()
        .clone()
}

fn assert_same_counts(a: &PreFilterState, b: &PreFilterState, what: &str) {
    assert_eq!(
        a.existing_anti_affinity_counts, b.existing_anti_affinity_counts,
        "{what}: existing"
    );
    assert_eq!(a.affinity_counts, b.affinity_counts, "{what}: affinity");
    assert_eq!(
        a.anti_affinity_counts, b.anti_affinity_counts,
        "{what}: anti-affinity"
    );
}

#[test]
fn add_pod_then_remove_pod_restores_the_state() {
    let pl = plugin(StaticLister::default());
    let n1 = node("n1", &[("zone", "a"), ("hostname", "n1")]);
    let n2 = node("n2", &[("zone", "b"), ("hostname", "n2")]);
    let incoming = pod(
        "p",
        "default",
        &[("app", "web")],
        json!({"affinity": {
            "podAffinity": required_term("podAffinity", "app", &["db"], "zone")
                ["affinity"]["podAffinity"].clone(),
            "podAntiAffinity": required_term("podAntiAffinity", "app", &["web"], "hostname")
                ["affinity"]["podAntiAffinity"].clone(),
        }}),
    );
    let base = vec![pod("db", "default", &[("app", "db")], json!({}))];
    // The pod added: a web replica that also repels web pods per zone.
    let added = pod(
        "w2",
        "default",
        &[("app", "web")],
        required_term("podAntiAffinity", "app", &["web"], "zone"),
    );
    let without = snapshot(vec![(n1.clone(), base.clone()), (n2.clone(), vec![])]);
    let mut with_pods = base.clone();
    with_pods.push(added.clone());
    let with = snapshot(vec![(n1.clone(), with_pods), (n2, vec![])]);

    let mut s_without = CycleState::new();
    assert!(
        pl.pre_filter(&mut s_without, &incoming, &without)
            .1
            .is_success()
    );
    let mut s_with = CycleState::new();
    assert!(pl.pre_filter(&mut s_with, &incoming, &with).1.is_success());
    let original = state_counts(&s_without);
    assert_ne!(
        original.existing_anti_affinity_counts,
        state_counts(&s_with).existing_anti_affinity_counts
    );

    let node1 = &without.nodes[0];
    assert!(
        pl.add_pod(&mut s_without, &incoming, &added, node1)
            .is_success()
    );
    assert_same_counts(
        &state_counts(&s_without),
        &state_counts(&s_with),
        "after add",
    );
    // Filter sees the added pod: its zone anti-affinity now rejects n1,
    // and the web replica rejects n1 by hostname.
    assert_eq!(
        pl.filter(&s_without, &incoming, node1).code(),
        Code::Unschedulable
    );

    assert!(
        pl.remove_pod(&mut s_without, &incoming, &added, node1)
            .is_success()
    );
    assert_same_counts(&state_counts(&s_without), &original, "after remove");
    assert!(pl.filter(&s_without, &incoming, node1).is_success());
}

#[test]
fn filter_without_pre_filter_state_is_an_error() {
    let pl = plugin(StaticLister::default());
    let snap = snapshot(vec![(node("n1", NODE1), vec![])]);
    let p = pod("p", "default", &[], json!({}));
    assert_eq!(
        pl.filter(&CycleState::new(), &p, &snap.nodes[0]).code(),
        Code::Error
    );
}

#[test]
fn pre_filter_skips_pods_without_required_terms_and_no_repelling_pods() {
    let pl = plugin(StaticLister::default());
    let snap = snapshot(vec![(
        node("n1", NODE1),
        vec![pod(
            "e",
            "default",
            &[],
            required_term("podAntiAffinity", "app", &["x"], "zone"),
        )],
    )]);
    let mut state = CycleState::new();
    let p = pod("p", "default", &[("app", "web")], json!({}));
    assert!(pl.pre_filter(&mut state, &p, &snap).1.is_skip());
    let x = pod("p", "default", &[("app", "x")], json!({}));
    assert!(pl.pre_filter(&mut state, &x, &snap).1.is_success());
}

#[test]
fn args_are_validated() {
    let args = |v: Value| InterPodAffinityArgs::from_json(Some(&v));
    assert_eq!(args(json!({})).unwrap(), InterPodAffinityArgs::default());
    assert_eq!(InterPodAffinityArgs::default().hard_pod_affinity_weight, 1);
    let a = args(json!({"hardPodAffinityWeight": 0, "ignorePreferredTermsOfExistingPods": true}))
        .unwrap();
    assert_eq!(a.hard_pod_affinity_weight, 0);
    assert!(a.ignore_preferred_terms_of_existing_pods);
    assert_eq!(
        args(json!({"hardPodAffinityWeight": 101})).unwrap_err(),
        "hardPodAffinityWeight: Invalid value: 101: not in valid range [0-100]"
    );
    assert!(
        args(json!({"hardPodAffinityWeight": -1}))
            .unwrap_err()
            .starts_with("hardPodAffinityWeight: ")
    );
}
