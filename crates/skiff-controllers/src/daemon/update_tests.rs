#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)]

use std::sync::Arc;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::status::calculate_status;
use super::sync::{NodeToDaemonPods, pods_should_be_on_node};
use super::update::{find_updated_pods_on_node, get_patch, matches_template, plan_rolling_update};
use super::util_tests::{ds_with, node};

use crate::cached_pod::CachedPod;

const NEW: &str = "new";
const OLD: &str = "old";

fn now() -> Timestamp {
    "2025-01-01T00:10:00Z".parse().unwrap()
}

/// A pod of revision `hash` on `node`, created at minute `created`,
/// `ready` (since minute 0) or not, optionally failed or terminating.
fn pod(name: &str, node: &str, hash: &str, created: u32, ready: bool) -> Arc<CachedPod> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns",
                         "creationTimestamp": format!("2025-01-01T00:0{created}:00Z"),
                         "labels": {"app": "d", "controller-revision-hash": hash}},
            "spec": {"containers": [], "nodeName": node},
            "status": {"phase": "Running", "conditions": [{"type": "Ready",
                "status": if ready { "True" } else { "False" },
                "lastTransitionTime": "2025-01-01T00:00:00Z"}]},
        }))
        .unwrap(),
    )
}

fn with(p: &Arc<CachedPod>, f: impl FnOnce(&mut CachedPod)) -> Arc<CachedPod> {
    let mut p = (**p).clone();
    f(&mut p);
    Arc::new(p)
}

fn nodes(n: usize) -> Vec<Arc<Node>> {
    (0..n)
        .map(|i| Arc::new(node(&format!("n{i}"), json!({}), json!([]))))
        .collect()
}

fn rolling(strategy: Value) -> DaemonSet {
    let mut d = ds_with(json!({}));
    // No generation annotation: only the hash decides what is updated.
    d.metadata.annotations = None;
    d.spec.as_mut().unwrap().update_strategy = Some(serde_json::from_value(strategy).unwrap());
    d
}

fn map(pods: Vec<Arc<CachedPod>>) -> NodeToDaemonPods {
    let mut m = NodeToDaemonPods::new();
    for p in pods {
        let n = p.spec.as_ref().unwrap().node_name.clone().unwrap();
        m.entry(n).or_default().push(p);
    }
    m
}

#[test]
fn unavailable_mode_deletes_old_pods_within_max_unavailable() {
    let ds = rolling(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}}));
    let all_old: Vec<_> = (0..5)
        .map(|i| pod(&format!("p{i}"), &format!("n{i}"), OLD, 1, true))
        .collect();
    // (pods, deleted)
    let cases: Vec<(Vec<Arc<CachedPod>>, Vec<&str>)> = vec![
        // Everything old and available: two go.
        (all_old.clone(), vec!["p0", "p1"]),
        // One node already lacks a pod: only one more may go.
        (all_old[1..].to_vec(), vec!["p1"]),
        // A new pod not yet ready counts against the budget.
        (
            [vec![pod("q0", "n0", NEW, 2, false)], all_old[1..].to_vec()].concat(),
            vec!["p1"],
        ),
        // Two updated but unready: nothing more.
        (
            [
                vec![
                    pod("q0", "n0", NEW, 2, false),
                    pod("q1", "n1", NEW, 2, false),
                ],
                all_old[2..].to_vec(),
            ]
            .concat(),
            vec![],
        ),
        // An unavailable old pod is replaced regardless of the budget.
        (
            vec![
                pod("q0", "n0", NEW, 2, false),
                pod("q1", "n1", NEW, 2, false),
                pod("p2", "n2", OLD, 1, false),
                all_old[3].clone(),
                all_old[4].clone(),
            ],
            vec!["p2"],
        ),
        // Everything updated and ready: nothing to do.
        (
            (0..5)
                .map(|i| pod(&format!("q{i}"), &format!("n{i}"), NEW, 2, true))
                .collect(),
            vec![],
        ),
        // Two pods on a node: unavailable until the manage loop prunes it.
        (
            [vec![pod("x", "n0", OLD, 2, true)], all_old.clone()].concat(),
            vec!["p1"],
        ),
        // Terminating pods are not counted as present.
        (
            [
                vec![with(&all_old[0], |p| {
                    p.metadata.deletion_timestamp =
                        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()))
                })],
                all_old[1..].to_vec(),
            ]
            .concat(),
            vec!["p1"],
        ),
    ];
    for (i, (pods, want)) in cases.into_iter().enumerate() {
        let plan = plan_rolling_update(&ds, &nodes(5), map(pods), NEW, now()).unwrap();
        assert_eq!(plan.delete, want, "case {i}");
        assert!(plan.create.is_empty(), "case {i}");
    }
}

#[test]
fn percentages_round_up_and_zero_means_one() {
    let all_old: Vec<_> = (0..5)
        .map(|i| pod(&format!("p{i}"), &format!("n{i}"), OLD, 1, true))
        .collect();
    let cases = vec![
        (json!({"maxUnavailable": "30%"}), 2), // 1.5 rounds up
        (json!({"maxUnavailable": "100%"}), 5),
        (json!({"maxUnavailable": 0, "maxSurge": 0}), 1),
        (json!({"maxUnavailable": 9}), 5),
    ];
    for (ru, want) in cases {
        let ds = rolling(json!({"type": "RollingUpdate", "rollingUpdate": ru}));
        let plan = plan_rolling_update(&ds, &nodes(5), map(all_old.clone()), NEW, now()).unwrap();
        assert_eq!(plan.delete.len(), want, "{ru}");
    }
}

#[test]
fn surge_mode_creates_first_and_deletes_once_new_is_available() {
    let ds = rolling(
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 2}}),
    );
    let old = |i: usize| pod(&format!("p{i}"), &format!("n{i}"), OLD, 1, true);
    let new = |i: usize, ready| pod(&format!("q{i}"), &format!("n{i}"), NEW, 2, ready);
    // (pods, deleted, created on)
    let cases: Vec<(Vec<Arc<CachedPod>>, Vec<&str>, Vec<&str>)> = vec![
        ((0..4).map(old).collect(), vec![], vec!["n0", "n1"]),
        // Two surging, not ready: no more surge.
        (
            vec![old(0), new(0, false), old(1), new(1, false), old(2), old(3)],
            vec![],
            vec![],
        ),
        // One new pod available: its old pod goes, one more node surges.
        (
            vec![old(0), new(0, true), old(1), new(1, false), old(2), old(3)],
            vec!["p0"],
            vec!["n2"],
        ),
        // An unavailable old pod gets its replacement beyond the budget.
        (
            vec![
                old(0),
                new(0, false),
                old(1),
                new(1, false),
                pod("p2", "n2", OLD, 1, false),
                old(3),
            ],
            vec![],
            vec!["n2"],
        ),
        // Done.
        ((0..4).map(|i| new(i, true)).collect(), vec![], vec![]),
    ];
    for (i, (pods, del, create)) in cases.into_iter().enumerate() {
        let plan = plan_rolling_update(&ds, &nodes(4), map(pods), NEW, now()).unwrap();
        assert_eq!(plan.delete, del, "case {i}");
        assert_eq!(plan.create, create, "case {i}");
    }
}

#[test]
fn surge_mode_removes_pods_from_nodes_that_no_longer_qualify_within_max_unavailable() {
    let mut ds = rolling(
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}}),
    );
    ds.spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .node_selector = Some([("run".to_owned(), "yes".to_owned())].into());
    let ns: Vec<Arc<Node>> = vec![
        Arc::new(node("n0", json!({"run": "yes"}), json!([]))),
        Arc::new(node("n1", json!({}), json!([]))),
        Arc::new(node("n2", json!({}), json!([]))),
        Arc::new(node("n3", json!({"run": "yes"}), json!([]))),
    ];
    let pods = vec![
        pod("q0", "n0", NEW, 2, false),
        pod("p1", "n1", OLD, 1, true),
        pod("p2", "n2", OLD, 1, true),
    ];
    // desired 2 with 2 available (counted on every node): one may go.
    let plan = plan_rolling_update(&ds, &ns, map(pods.clone()), NEW, now()).unwrap();
    assert_eq!(plan.delete, vec!["p1"]);
    // With both desired nodes' pods available, both extra pods may go.
    let mut ready = pods;
    ready[0] = pod("q0", "n0", NEW, 2, true);
    let plan = plan_rolling_update(&ds, &ns, map(ready), NEW, now()).unwrap();
    assert_eq!(plan.delete, vec!["p1", "p2"]);
    assert!(plan.create.is_empty());
}

#[test]
fn find_updated_pods_needs_at_most_one_of_each() {
    let a = pod("a", "n0", NEW, 1, true);
    let b = pod("b", "n0", OLD, 1, true);
    let c = pod("c", "n0", NEW, 2, true);
    let r = find_updated_pods_on_node(&[a.clone(), b.clone()], NEW, None).unwrap();
    assert_eq!(r.0.unwrap().metadata.name.as_deref(), Some("a"));
    assert_eq!(r.1.unwrap().metadata.name.as_deref(), Some("b"));
    assert!(find_updated_pods_on_node(&[a.clone(), c.clone()], NEW, None).is_none());
    let gone = with(&c, |p| {
        p.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()))
    });
    assert!(find_updated_pods_on_node(&[a, gone], NEW, None).is_some());
    assert_eq!(
        find_updated_pods_on_node(&[], NEW, None),
        Some((None, None))
    );
}

fn names(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn pods_should_be_on_node_table() {
    let ds = rolling(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}));
    let surge = rolling(
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}),
    );
    let n = node("n0", json!({}), json!([]));
    let tainted = node(
        "n0",
        json!({}),
        json!([{"key": "k", "effect": "NoExecute"}]),
    );
    let no_sched = node(
        "n0",
        json!({}),
        json!([{"key": "k", "effect": "NoSchedule"}]),
    );
    let failed = with(&pod("f", "n0", NEW, 1, false), |p| {
        p.status.as_mut().unwrap().phase = Some("Failed".into())
    });
    let succeeded = with(&pod("s", "n0", NEW, 1, false), |p| {
        p.status.as_mut().unwrap().phase = Some("Succeeded".into())
    });
    // (ds, node, pods, backoff allows, create, deleted)
    let cases: Vec<(
        &DaemonSet,
        &Node,
        Vec<Arc<CachedPod>>,
        bool,
        bool,
        Vec<&str>,
    )> = vec![
        (&ds, &n, vec![], true, true, vec![]),
        (
            &ds,
            &n,
            vec![pod("a", "n0", NEW, 1, true)],
            true,
            false,
            vec![],
        ),
        // Duplicates: the oldest stays.
        (
            &ds,
            &n,
            vec![
                pod("b", "n0", NEW, 3, true),
                pod("a", "n0", NEW, 1, true),
                pod("c", "n0", OLD, 2, true),
            ],
            true,
            false,
            vec!["c", "b"],
        ),
        // Untolerated NoExecute: everything goes.
        (
            &ds,
            &tainted,
            vec![pod("a", "n0", NEW, 1, true), pod("b", "n0", NEW, 2, true)],
            true,
            false,
            vec!["a", "b"],
        ),
        // NoSchedule: no new pod, the running one stays.
        (&ds, &no_sched, vec![], true, false, vec![]),
        (
            &ds,
            &no_sched,
            vec![pod("a", "n0", NEW, 1, true)],
            true,
            false,
            vec![],
        ),
        // Failed: deleted unless backing off; replaced next sync.
        (&ds, &n, vec![failed.clone()], true, false, vec!["f"]),
        (&ds, &n, vec![failed.clone()], false, false, vec![]),
        (&ds, &n, vec![succeeded.clone()], true, false, vec!["s"]),
        // Surge: old ready and new not available: both stay.
        (
            &surge,
            &n,
            vec![pod("o", "n0", OLD, 1, true), pod("w", "n0", NEW, 2, false)],
            true,
            false,
            vec![],
        ),
        // New available: the old one goes.
        (
            &surge,
            &n,
            vec![pod("o", "n0", OLD, 1, true), pod("w", "n0", NEW, 2, true)],
            true,
            false,
            vec!["o"],
        ),
        // Old no longer ready: it goes.
        (
            &surge,
            &n,
            vec![pod("o", "n0", OLD, 1, false), pod("w", "n0", NEW, 2, false)],
            true,
            false,
            vec!["o"],
        ),
        // Surge with only a failed pod: it goes and a new one is made.
        (&surge, &n, vec![failed.clone()], true, true, vec!["f"]),
    ];
    for (i, (d, node, pods, allow, create, del)) in cases.into_iter().enumerate() {
        let plan = pods_should_be_on_node(d, node, Some(&pods), NEW, now(), || allow);
        assert_eq!(plan.create, create, "case {i}");
        assert_eq!(names(&plan.delete), del, "case {i}");
    }
}

#[test]
fn status_counts_per_node() {
    let mut ds = rolling(json!({"type": "RollingUpdate"}));
    ds.spec.as_mut().unwrap().min_ready_seconds = Some(300);
    ds.spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .node_selector = Some([("run".to_owned(), "yes".to_owned())].into());
    let yes = |n: &str| Arc::new(node(n, json!({"run": "yes"}), json!([])));
    let ns = vec![
        yes("n0"),
        yes("n1"),
        yes("n2"),
        yes("n3"),
        Arc::new(node("n4", json!({}), json!([]))),
    ];
    let recent = |p: &Arc<CachedPod>| {
        with(p, |p| {
            p.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].last_transition_time =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()))
        })
    };
    let pods = vec![
        pod("a", "n0", NEW, 1, true),
        recent(&pod("b", "n1", OLD, 1, true)),
        pod("c", "n2", NEW, 1, false),
        pod("e", "n4", NEW, 1, true),
    ];
    let s = calculate_status(&ds, &ns, &map(pods), NEW, now());
    assert_eq!(s.desired, 4);
    assert_eq!(s.current, 3);
    assert_eq!(s.misscheduled, 1);
    assert_eq!(s.ready, 2);
    assert_eq!(s.available, 1, "b is ready for less than minReadySeconds");
    assert_eq!(s.updated, 2);
    assert_eq!(s.unavailable, 3);
}

#[test]
fn revision_data_replaces_the_template() {
    let ds = ds_with(json!({}));
    let patch = get_patch(&ds);
    assert_eq!(patch["spec"]["template"]["$patch"], "replace");
    assert_eq!(patch["spec"]["template"]["metadata"]["labels"]["app"], "d");
    assert_eq!(patch.as_object().unwrap().len(), 1);
    let rev = |data: Value| k8s_openapi::api::apps::v1::ControllerRevision {
        data: Some(k8s_openapi::apimachinery::pkg::runtime::RawExtension(data)),
        ..Default::default()
    };
    assert!(matches_template(&ds, &rev(patch.clone())));
    let other = ds_with(json!({"hostNetwork": true}));
    assert!(!matches_template(&other, &rev(patch)));
}
