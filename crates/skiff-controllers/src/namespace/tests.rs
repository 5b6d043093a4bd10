#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Namespace, NamespaceSpec, NamespaceStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIResource, APIResourceList, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::conditions::*;
use super::deleter::*;
use super::discovery::*;
use super::requeue_after;

fn at(secs: i64) -> Time {
    Time(Timestamp::from_second(secs).unwrap())
}

fn find<'a>(
    status: &'a NamespaceStatus,
    t: &str,
) -> &'a k8s_openapi::api::core::v1::NamespaceCondition {
    status
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == t)
        .unwrap()
}

fn summary(status: &NamespaceStatus) -> Vec<(String, String, String, String)> {
    status
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone().unwrap(),
                c.message.clone().unwrap(),
            )
        })
        .collect()
}

#[test]
fn all_clear_sets_every_ok_condition_once() {
    let mut status = NamespaceStatus::default();
    let u = ConditionUpdater::default();
    assert!(u.update(&mut status, &at(100)));
    let s = summary(&status);
    let want = [
        (
            DISCOVERY_FAILURE,
            "ResourcesDiscovered",
            "All resources successfully discovered",
        ),
        (
            GROUP_VERSION_PARSING_FAILURE,
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed",
        ),
        (
            CONTENT_FAILURE,
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization",
        ),
        (
            CONTENT_REMAINING,
            "ContentRemoved",
            "All content successfully removed",
        ),
        (
            FINALIZERS_REMAINING,
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished",
        ),
    ];
    assert_eq!(s.len(), 5);
    for ((t, st, r, m), (wt, wr, wm)) in s.iter().zip(want) {
        assert_eq!(
            (t.as_str(), st.as_str(), r.as_str(), m.as_str()),
            (wt, "False", wr, wm)
        );
    }
    // The same outcome again changes nothing (no status write).
    assert!(!ConditionUpdater::default().update(&mut status, &at(200)));
}

#[test]
fn remaining_content_and_finalizers_are_reported_sorted() {
    let mut totals = ContentTotals::default();
    totals
        .gvr_to_num_remaining
        .insert(Gvr::new("", "v1", "pods"), 3);
    totals
        .gvr_to_num_remaining
        .insert(Gvr::new("apps", "v1", "deployments"), 1);
    totals
        .gvr_to_num_remaining
        .insert(Gvr::new("", "v1", "secrets"), 0);
    totals
        .finalizers_to_num_remaining
        .insert("foo.io/x".into(), 2);
    totals
        .finalizers_to_num_remaining
        .insert("bar.io/y".into(), 1);
    let mut u = ConditionUpdater::default();
    u.process_content_totals(&totals, &at(10));
    let mut status = NamespaceStatus::default();
    assert!(u.update(&mut status, &at(10)));
    let c = find(&status, CONTENT_REMAINING);
    assert_eq!(c.status, "True");
    assert_eq!(c.reason.as_deref(), Some("SomeResourcesRemain"));
    assert_eq!(
        c.message.as_deref(),
        Some(
            "Some resources are remaining: deployments.apps has 1 resource instances, pods. has 3 resource instances"
        )
    );
    let c = find(&status, FINALIZERS_REMAINING);
    assert_eq!(c.reason.as_deref(), Some("SomeFinalizersRemain"));
    assert_eq!(
        c.message.as_deref(),
        Some(
            "Some content in the namespace has finalizers remaining: bar.io/y in 1 resource instances, foo.io/x in 2 resource instances"
        )
    );
    assert_eq!(find(&status, CONTENT_FAILURE).status, "False");
}

#[test]
fn failures_become_true_conditions_and_transitions_keep_times() {
    let mut status = NamespaceStatus::default();
    ConditionUpdater::default().update(&mut status, &at(1));
    let mut u = ConditionUpdater::default();
    u.process_discovery_error(
        "unable to retrieve the complete list of server APIs: metrics.k8s.io/v1beta1: boom",
        Some(1),
        &at(2),
    );
    u.process_group_version_error("unexpected GroupVersion string: a/b/c", &at(2));
    u.process_delete_content_error("zeta failed");
    u.process_delete_content_error("alpha failed");
    assert!(u.update(&mut status, &at(2)));
    let d = find(&status, DISCOVERY_FAILURE);
    assert_eq!(
        (d.status.as_str(), d.reason.as_deref()),
        ("True", Some("DiscoveryFailed"))
    );
    assert_eq!(
        d.message.as_deref(),
        Some(
            "Discovery failed for some groups, 1 failing: unable to retrieve the complete list of server APIs: metrics.k8s.io/v1beta1: boom"
        )
    );
    assert_eq!(d.last_transition_time, Some(at(2)));
    let g = find(&status, GROUP_VERSION_PARSING_FAILURE);
    assert_eq!(g.reason.as_deref(), Some("GroupVersionParsingFailed"));
    let c = find(&status, CONTENT_FAILURE);
    assert_eq!(c.reason.as_deref(), Some("ContentDeletionFailed"));
    assert_eq!(
        c.message.as_deref(),
        Some("Failed to delete all resource types, 2 remaining: alpha failed, zeta failed")
    );
    // Unchanged conditions keep their time; a changed message with the same
    // status keeps the transition time too.
    assert_eq!(
        find(&status, CONTENT_REMAINING).last_transition_time,
        Some(at(1))
    );
    let mut u = ConditionUpdater::default();
    u.process_discovery_error("other", None, &at(3));
    u.process_group_version_error("unexpected GroupVersion string: a/b/c", &at(3));
    u.process_delete_content_error("alpha failed");
    u.process_delete_content_error("zeta failed");
    assert!(u.update(&mut status, &at(3)));
    let d = find(&status, DISCOVERY_FAILURE);
    assert_eq!(d.message.as_deref(), Some("other"));
    assert_eq!(d.last_transition_time, Some(at(2)));
    // Back to ok: a transition.
    assert!(ConditionUpdater::default().update(&mut status, &at(4)));
    assert_eq!(
        find(&status, DISCOVERY_FAILURE).last_transition_time,
        Some(at(4))
    );
    assert_eq!(find(&status, DISCOVERY_FAILURE).status, "False");
}

fn resource(name: &str, kind: &str, namespaced: bool, verbs: &[&str]) -> APIResource {
    APIResource {
        name: name.into(),
        kind: kind.into(),
        namespaced,
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        ..APIResource::default()
    }
}

const ALL: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

#[test]
fn resources_are_namespaced_deletable_at_the_preferred_version() {
    let groups = vec![
        GroupVersions {
            name: String::new(),
            versions: vec!["v1".into()],
            preferred: "v1".into(),
        },
        GroupVersions {
            name: "example.com".into(),
            versions: vec!["v2".into(), "v1".into()],
            preferred: "v2".into(),
        },
        GroupVersions {
            name: "old.io".into(),
            versions: vec!["v1beta1".into(), "v1".into()],
            preferred: "v1".into(),
        },
    ];
    let mut lists = HashMap::new();
    lists.insert(
        "v1".to_owned(),
        APIResourceList {
            group_version: "v1".into(),
            resources: vec![
                resource("pods", "Pod", true, ALL),
                resource("pods/status", "Pod", true, &["get", "update"]),
                resource("namespaces", "Namespace", false, &["delete", "list"]),
                resource("bindings", "Binding", true, &["create"]),
                resource("events", "Event", true, &["delete", "list"]),
            ],
        },
    );
    lists.insert(
        "example.com/v2".to_owned(),
        APIResourceList {
            group_version: "example.com/v2".into(),
            resources: vec![resource("widgets", "Widget", true, ALL)],
        },
    );
    lists.insert(
        "example.com/v1".to_owned(),
        APIResourceList {
            group_version: "example.com/v1".into(),
            resources: vec![
                resource("widgets", "Widget", true, ALL),
                // Only served by the older version: still deleted there.
                resource("gadgets", "Gadget", true, ALL),
            ],
        },
    );
    // The preferred version comes later and wins; it cannot be deleted
    // there, so the resource is left out.
    lists.insert(
        "old.io/v1beta1".to_owned(),
        APIResourceList {
            group_version: "old.io/v1beta1".into(),
            resources: vec![resource("things", "Thing", true, ALL)],
        },
    );
    lists.insert(
        "old.io/v1".to_owned(),
        APIResourceList {
            group_version: "old.io/v1".into(),
            resources: vec![resource("things", "Thing", true, &["get", "list"])],
        },
    );
    let (resources, errors) = select_resources(&groups, &lists);
    assert!(errors.is_empty());
    let got: Vec<(String, bool, bool)> = resources
        .iter()
        .map(|r| (r.gvr.to_string(), r.list, r.delete_collection))
        .collect();
    assert_eq!(
        got,
        [
            ("/v1, Resource=events".to_owned(), true, false),
            ("/v1, Resource=pods".to_owned(), true, true),
            ("example.com/v1, Resource=gadgets".to_owned(), true, true),
            ("example.com/v2, Resource=widgets".to_owned(), true, true),
        ]
    );
}

#[test]
fn group_versions_parse_as_upstream() {
    assert_eq!(
        parse_group_version("v1").unwrap(),
        (String::new(), "v1".into())
    );
    assert_eq!(
        parse_group_version("apps/v1").unwrap(),
        ("apps".into(), "v1".into())
    );
    assert_eq!(
        parse_group_version("").unwrap(),
        (String::new(), String::new())
    );
    assert_eq!(
        parse_group_version("a/b/c").unwrap_err(),
        "unexpected GroupVersion string: a/b/c"
    );
    let groups = vec![GroupVersions {
        name: "a".into(),
        versions: vec!["b".into()],
        preferred: "b".into(),
    }];
    let mut lists = HashMap::new();
    lists.insert(
        "a/b".to_owned(),
        APIResourceList {
            group_version: "a/b/c".into(),
            resources: vec![resource("x", "X", true, ALL)],
        },
    );
    let (resources, errors) = select_resources(&groups, &lists);
    assert!(resources.is_empty());
    assert_eq!(errors, ["unexpected GroupVersion string: a/b/c"]);
}

fn pod(grace: Option<i64>, phase: &str) -> PodGrace {
    serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [], "terminationGracePeriodSeconds": grace},
        "status": {"phase": phase},
    }))
    .unwrap()
}

#[test]
fn pod_estimate_is_the_longest_grace_period_still_running() {
    let pods = [
        pod(Some(30), "Running"),
        pod(Some(90), "Succeeded"),
        pod(Some(45), "Pending"),
        pod(None, "Running"),
    ];
    assert_eq!(estimate_pods(&pods, 0), 45);
    assert_eq!(estimate_pods(&pods, 44), 45);
    assert_eq!(
        estimate_pods(&pods, 45),
        0,
        "the namespace has waited long enough"
    );
    assert_eq!(estimate_pods(&[pod(Some(90), "Failed")], 0), 0);
    assert_eq!(estimate_pods(&[], 0), 0);
    assert_eq!(requeue_after(45), std::time::Duration::from_secs(23));
    assert_eq!(requeue_after(15), std::time::Duration::from_secs(8));
    assert_eq!(requeue_after(0), std::time::Duration::from_secs(1));
}

#[test]
fn what_remains_is_judged_by_estimate_and_finalizers() {
    let gvr = Gvr::new("", "v1", "configmaps");
    let (m, e) = remaining_metadata(0, &[], "ns", &gvr);
    assert_eq!((m, e), (GvrDeletionMetadata::default(), None));
    // Pods still terminating within their grace period: expected.
    let (m, e) = remaining_metadata(30, &[vec![], vec![]], "ns", &gvr);
    assert_eq!(
        (m.finalizer_estimate_seconds, m.num_remaining, e),
        (30, 2, None)
    );
    // Finalizers: wait the default estimate.
    let held = [
        vec!["foo.io/x".to_owned()],
        vec!["foo.io/x".to_owned(), "b".to_owned()],
        vec![],
    ];
    let (m, e) = remaining_metadata(0, &held, "ns", &gvr);
    assert_eq!(m.finalizer_estimate_seconds, FINALIZER_ESTIMATE_SECONDS);
    assert_eq!(m.num_remaining, 3);
    assert_eq!(m.finalizers_to_num_remaining.get("foo.io/x"), Some(&2));
    assert_eq!(m.finalizers_to_num_remaining.get("b"), Some(&1));
    assert!(e.is_none());
    // Neither: should have been deleted.
    let (m, e) = remaining_metadata(0, &[vec![]], "ns", &gvr);
    assert_eq!(m.num_remaining, 1);
    assert_eq!(
        e.as_deref(),
        Some("unexpected items still remain in namespace: ns for gvr: /v1, Resource=configmaps")
    );
}

#[test]
fn finalize_drops_only_the_kubernetes_finalizer() {
    let ns = Namespace {
        spec: Some(NamespaceSpec {
            finalizers: Some(vec![
                "z.io/keep".into(),
                "kubernetes".into(),
                "a.io/keep".into(),
            ]),
        }),
        ..Namespace::default()
    };
    assert_eq!(finalized_spec_finalizers(&ns), ["a.io/keep", "z.io/keep"]);
    assert!(finalized_spec_finalizers(&Namespace::default()).is_empty());
}
