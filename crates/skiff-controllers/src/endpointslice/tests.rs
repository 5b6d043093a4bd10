#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

use super::reconciler::{Plan, Settings, reconcile};
use super::util::{SliceTracker, TriggerTimeTracker, services_to_update_on_pod_change};
use crate::cached_pod::CachedPod;
use crate::endpoint::tests::{pod, service};

const CONTROLLER: &str = "endpointslice-controller.k8s.io";

fn settings(max: usize) -> Settings<'static> {
    Settings {
        max_endpoints_per_slice: max,
        controller: CONTROLLER,
    }
}

fn http() -> Service {
    service(
        json!([{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]),
        json!({"ipFamilies": ["IPv4"]}),
    )
}

fn pods(from: usize, to: usize) -> Vec<CachedPod> {
    (from..to)
        .map(|i| {
            pod(
                &format!("p{i:03}"),
                &format!("10.0.{}.{}", i / 200, i % 200),
                true,
                json!({}),
            )
        })
        .collect()
}

fn known_node(_: &str) -> Option<Option<String>> {
    Some(Some("zone-a".to_owned()))
}

fn run(svc: &Service, pods: &[CachedPod], existing: &[EndpointSlice], max: usize) -> Plan {
    let refs: Vec<&CachedPod> = pods.iter().collect();
    let ex: Vec<&EndpointSlice> = existing.iter().collect();
    reconcile(svc, &refs, &ex, &known_node, settings(max))
}

/// Writes `plan` to `slices` as the API server would (names, versions).
fn apply(slices: &mut Vec<EndpointSlice>, plan: Plan, next: &mut usize) {
    for d in &plan.delete {
        slices.retain(|s| s.metadata.name != d.metadata.name);
    }
    for u in plan.update {
        let i = slices
            .iter()
            .position(|s| s.metadata.name == u.metadata.name)
            .expect("updated slice exists");
        slices[i] = u;
    }
    for mut c in plan.create {
        *next += 1;
        c.metadata.name = Some(format!(
            "{}{next}",
            c.metadata.generate_name.clone().unwrap()
        ));
        slices.push(c);
    }
}

fn sizes(slices: &[EndpointSlice]) -> Vec<usize> {
    let mut v: Vec<usize> = slices.iter().map(|s| s.endpoints.len()).collect();
    v.sort_unstable();
    v
}

#[test]
fn new_service_gets_full_slices_with_labels_owner_and_endpoints() {
    let svc = http();
    let mut pods = pods(0, 3);
    pods.push(pod("nr", "10.9.0.1", false, json!({})));
    pods.push(pod(
        "term",
        "10.9.0.2",
        true,
        json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}),
    ));
    pods.push(pod("noip", "", true, json!({})));
    let plan = run(&svc, &pods, &[], 100);
    assert!(plan.update.is_empty() && plan.delete.is_empty() && plan.errors.is_empty());
    assert_eq!(plan.create.len(), 1);
    let s = &plan.create[0];
    assert_eq!(s.metadata.generate_name.as_deref(), Some("web-"));
    assert_eq!(s.address_type, "IPv4");
    let labels = s.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["kubernetes.io/service-name"], "web");
    assert_eq!(labels["endpointslice.kubernetes.io/managed-by"], CONTROLLER);
    assert!(!labels.contains_key("service.kubernetes.io/headless"));
    let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.uid.as_str(),
            owner.controller,
            owner.block_owner_deletion
        ),
        ("Service", "svc-uid", Some(true), Some(true))
    );
    let port = &s.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.port),
        (Some("http"), Some(8080))
    );
    // (name, ready, serving, terminating)
    let mut conds: Vec<(String, bool, bool, bool)> = s
        .endpoints
        .iter()
        .map(|e| {
            let c = e.conditions.as_ref().unwrap();
            (
                e.target_ref.as_ref().unwrap().name.clone().unwrap(),
                c.ready.unwrap(),
                c.serving.unwrap(),
                c.terminating.unwrap(),
            )
        })
        .collect();
    conds.sort();
    assert_eq!(
        conds,
        [
            ("nr".to_owned(), false, false, false),
            ("p000".to_owned(), true, true, false),
            ("p001".to_owned(), true, true, false),
            ("p002".to_owned(), true, true, false),
            ("term".to_owned(), false, true, true),
        ]
    );
    let e = &s.endpoints[0];
    assert_eq!(e.node_name.as_deref(), Some("n1"));
    assert_eq!(e.zone.as_deref(), Some("zone-a"));
}

#[test]
fn publish_not_ready_marks_every_endpoint_ready() {
    let svc = service(
        json!([{"name": "http", "port": 80, "targetPort": "http"}]),
        json!({"publishNotReadyAddresses": true, "clusterIP": "None"}),
    );
    let p = pod("nr", "10.9.0.1", false, json!({}));
    let plan = run(&svc, &[p], &[], 100);
    let s = &plan.create[0];
    let c = s.endpoints[0].conditions.as_ref().unwrap();
    assert_eq!((c.ready, c.serving), (Some(true), Some(false)));
    let labels = s.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["service.kubernetes.io/headless"], "");
}

#[test]
fn slices_fill_reuse_and_shrink() {
    let svc = http();
    let mut slices = Vec::new();
    let mut next = 0;
    // Scale to 250: three slices of at most 100.
    let plan = run(&svc, &pods(0, 250), &slices, 100);
    assert_eq!(plan.create.len(), 3);
    apply(&mut slices, plan, &mut next);
    assert_eq!(sizes(&slices), [50, 100, 100]);
    // Nothing changed: nothing to write.
    let plan = run(&svc, &pods(0, 250), &slices, 100);
    assert!(plan.create.is_empty() && plan.update.is_empty() && plan.delete.is_empty());
    // 30 more fit in the half-full slice: one update, no create.
    let plan = run(&svc, &pods(0, 280), &slices, 100);
    assert_eq!(
        (plan.create.len(), plan.update.len(), plan.delete.len()),
        (0, 1, 0)
    );
    apply(&mut slices, plan, &mut next);
    assert_eq!(sizes(&slices), [80, 100, 100]);
    // 30 more do not fit anywhere: a new slice.
    let plan = run(&svc, &pods(0, 310), &slices, 100);
    assert_eq!((plan.create.len(), plan.update.len()), (1, 0));
    apply(&mut slices, plan, &mut next);
    assert_eq!(sizes(&slices), [30, 80, 100, 100]);
    // Remove 5 pods from the first slice and add 3 new ones: the changed
    // slice is updated and takes the new ones; others are untouched.
    let first: Vec<String> = slices[0]
        .endpoints
        .iter()
        .take(5)
        .map(|e| e.target_ref.as_ref().unwrap().name.clone().unwrap())
        .collect();
    let mut now: Vec<CachedPod> = pods(0, 310)
        .into_iter()
        .filter(|p| !first.contains(p.metadata.name.as_ref().unwrap()))
        .collect();
    now.extend(pods(400, 403));
    let plan = run(&svc, &now, &slices, 100);
    assert_eq!(
        (plan.create.len(), plan.update.len(), plan.delete.len()),
        (0, 1, 0)
    );
    assert_eq!(plan.update[0].metadata.name, slices[0].metadata.name);
    apply(&mut slices, plan, &mut next);
    assert_eq!(sizes(&slices), [30, 80, 98, 100]);
    // Scale to 0: all slices go but one placeholder (a recycled slice).
    let plan = run(&svc, &[], &slices, 100);
    assert!(plan.create.is_empty(), "placeholder reuses a deleted slice");
    assert_eq!((plan.update.len(), plan.delete.len()), (1, 3));
    apply(&mut slices, plan, &mut next);
    assert_eq!(sizes(&slices), [0]);
    assert!(slices[0].ports.as_ref().unwrap().is_empty());
    // The placeholder is kept as is.
    let plan = run(&svc, &[], &slices, 100);
    assert!(plan.create.is_empty() && plan.update.is_empty() && plan.delete.is_empty());
}

#[test]
fn endpoint_changes_update_in_place_and_labels_follow_the_service() {
    let svc = http();
    let mut slices = Vec::new();
    let mut next = 0;
    let plan = run(&svc, &pods(0, 3), &slices, 100);
    apply(&mut slices, plan, &mut next);
    let mut now = pods(0, 3);
    now[1] = pod("p001", "10.0.0.1", false, json!({}));
    let plan = run(&svc, &now, &slices, 100);
    assert_eq!((plan.create.len(), plan.update.len()), (0, 1));
    let ep = plan.update[0]
        .endpoints
        .iter()
        .find(|e| e.target_ref.as_ref().unwrap().name.as_deref() == Some("p001"))
        .unwrap();
    assert_eq!(ep.conditions.as_ref().unwrap().ready, Some(false));
    apply(&mut slices, plan, &mut next);
    let mut relabelled = svc.clone();
    relabelled.metadata.labels = Some([("tier".to_owned(), "fe".to_owned())].into());
    let plan = run(&relabelled, &now, &slices, 100);
    assert_eq!(plan.update.len(), 1);
    assert_eq!(
        plan.update[0].metadata.labels.as_ref().unwrap()["tier"],
        "fe"
    );
}

#[test]
fn one_slice_set_per_port_set_and_per_family() {
    let svc = service(
        json!([{"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"}]),
        json!({"ipFamilies": ["IPv4", "IPv6"]}),
    );
    let mut p = pods(0, 2);
    // p000 has no dns port: it lands in a port-less slice.
    p[0] = pod(
        "p000",
        "10.0.0.0",
        true,
        json!({"spec": {"containers": [{"name": "c"}]}}),
    );
    let plan = run(&svc, &p, &[], 100);
    let mut got: Vec<(String, usize, usize)> = plan
        .create
        .iter()
        .map(|s| {
            (
                s.address_type.clone(),
                s.ports.as_ref().unwrap().len(),
                s.endpoints.len(),
            )
        })
        .collect();
    got.sort();
    // No IPv6 pod addresses: an IPv6 placeholder.
    assert_eq!(
        got,
        [
            ("IPv4".to_owned(), 0, 1),
            ("IPv4".to_owned(), 1, 1),
            ("IPv6".to_owned(), 0, 0)
        ]
    );
}

#[test]
fn slices_of_other_owners_or_families_are_deleted() {
    let svc = http();
    let mut next = 0;
    let mut slices = Vec::new();
    let plan = run(&svc, &pods(0, 2), &slices, 100);
    apply(&mut slices, plan, &mut next);
    let mut foreign = slices[0].clone();
    foreign.metadata.name = Some("web-old".to_owned());
    foreign.metadata.owner_references.as_mut().unwrap()[0].uid = "old-uid".to_owned();
    let mut v6 = slices[0].clone();
    v6.metadata.name = Some("web-v6".to_owned());
    v6.address_type = "IPv6".to_owned();
    slices.push(foreign);
    slices.push(v6);
    let plan = run(&svc, &pods(0, 2), &slices, 100);
    let mut deleted: Vec<String> = plan
        .delete
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    deleted.sort();
    assert_eq!(deleted, ["web-old", "web-v6"]);
    assert!(plan.create.is_empty() && plan.update.is_empty());
}

#[test]
fn pods_on_unknown_nodes_are_skipped_with_an_error() {
    let svc = http();
    let refs_pods = pods(0, 2);
    let refs: Vec<&CachedPod> = refs_pods.iter().collect();
    let unknown = |n: &str| (n != "n1").then_some(None);
    let plan = reconcile(&svc, &refs, &[], &unknown, settings(100));
    assert_eq!(plan.errors.len(), 2);
    assert!(plan.create[0].endpoints.is_empty(), "placeholder only");
}

#[test]
fn pod_changes_concern_old_and_new_services() {
    let mk = |name: &str, sel: &str| {
        let mut s = http();
        s.metadata.name = Some(name.to_owned());
        s.spec.as_mut().unwrap().selector = Some([("app".to_owned(), sel.to_owned())].into());
        std::sync::Arc::new(s)
    };
    let svcs = vec![mk("a", "web"), mk("b", "db")];
    let mut old = pod(
        "p",
        "10.0.0.1",
        true,
        json!({"metadata": {"resourceVersion": "1"}}),
    );
    let mut cur = old.clone();
    cur.metadata.resource_version = Some("2".to_owned());
    // Nothing relevant changed.
    assert!(services_to_update_on_pod_change(&svcs, &old, &cur).is_empty());
    // Readiness changed: the selecting service.
    cur = pod(
        "p",
        "10.0.0.1",
        false,
        json!({"metadata": {"resourceVersion": "2"}}),
    );
    let got = services_to_update_on_pod_change(&svcs, &old, &cur);
    assert_eq!(got, ["ns/a".to_owned()].into());
    // Labels moved from a to b: both.
    cur.metadata.labels = Some([("app".to_owned(), "db".to_owned())].into());
    old = pod(
        "p",
        "10.0.0.1",
        false,
        json!({"metadata": {"resourceVersion": "1"}}),
    );
    let got = services_to_update_on_pod_change(&svcs, &old, &cur);
    assert_eq!(got, ["ns/a".to_owned(), "ns/b".to_owned()].into());
}

#[test]
fn trigger_time_is_the_earliest_change_since_the_last_sync() {
    let svc = http();
    let t = TriggerTimeTracker::default();
    let at = |p: &str, ts: &str| {
        pod(
            p,
            "10.0.0.1",
            true,
            json!({"status": {"conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": ts}]}}),
        )
    };
    let a1 = at("a", "2026-01-01T00:00:05Z");
    // First sight of a service: no trigger time.
    assert_eq!(t.compute("ns/web", &svc, &[&a1]), None);
    assert_eq!(t.compute("ns/web", &svc, &[&a1]), None, "nothing changed");
    let a2 = at("a", "2026-01-01T00:00:09Z");
    let b = at("b", "2026-01-01T00:00:07Z");
    let got = t.compute("ns/web", &svc, &[&a2, &b]).unwrap();
    assert_eq!(got.to_string(), "2026-01-01T00:00:07Z");
}

#[test]
fn slice_tracker_detects_a_lagging_cache_and_own_echoes() {
    let mk = |name: &str, rv: &str, uid: &str| {
        std::sync::Arc::new(
            serde_json::from_value::<EndpointSlice>(json!({
                "metadata": {"name": name, "resourceVersion": rv, "uid": uid},
                "addressType": "IPv4", "endpoints": []
            }))
            .unwrap(),
        )
    };
    let t = SliceTracker::default();
    let (a1, a2) = (mk("a", "1", "ua"), mk("a", "2", "ua"));
    assert!(!t.stale("k", std::slice::from_ref(&a1)));
    t.updated("k", &a1, &a2);
    assert!(
        t.stale("k", std::slice::from_ref(&a1)),
        "cache shows the replaced version"
    );
    assert!(!t.should_sync("k", &a2, false), "our own write");
    assert!(!t.stale("k", std::slice::from_ref(&a2)));
    assert!(
        t.should_sync("k", &mk("a", "3", "ua"), false),
        "someone else's write"
    );
    let b = mk("b", "4", "ub");
    t.created("k", &b);
    assert!(
        t.stale("k", std::slice::from_ref(&a2)),
        "created slice not seen yet"
    );
    assert!(!t.stale("k", &[a2.clone(), b.clone()]));
    t.deleted("k", &b);
    assert!(
        t.stale("k", &[a2.clone(), b.clone()]),
        "deleted slice still cached"
    );
    assert!(!t.should_sync("k", &b, true), "our own deletion");
    assert!(!t.stale("k", std::slice::from_ref(&a2)));
}
