#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};

use super::reconciler::reconcile;
use super::{CONTROLLER_NAME, should_mirror};

fn endpoints(subsets: Value, meta: Value) -> Endpoints {
    let mut v = json!({
        "metadata": {"name": "ext", "namespace": "ns", "uid": "ep-uid",
                     "labels": {"team": "a"},
                     "annotations": {"note": "x",
                                     "endpoints.kubernetes.io/last-change-trigger-time": "t"}},
        "subsets": subsets,
    });
    crate::endpoint::tests::merge(&mut v["metadata"], meta);
    serde_json::from_value(v).unwrap()
}

fn addrs(ips: &[&str]) -> Value {
    Value::Array(ips.iter().map(|ip| json!({"ip": ip})).collect())
}

fn mirror(ep: &Endpoints, existing: &[EndpointSlice], max: usize) -> super::reconciler::MirrorPlan {
    let refs: Vec<&EndpointSlice> = existing.iter().collect();
    reconcile(ep, &refs, max, CONTROLLER_NAME)
}

#[test]
fn subsets_become_one_slice_per_port_set_and_family() {
    let ep = endpoints(
        json!([
            {"addresses": addrs(&["10.0.0.1", "fd00::1"]), "notReadyAddresses": addrs(&["10.0.0.2"]),
             "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
            {"addresses": addrs(&["10.0.0.3", "not-an-ip"]),
             "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]},
        ]),
        json!({}),
    );
    let out = mirror(&ep, &[], 1000);
    assert_eq!((out.invalid, out.skipped), (1, 1));
    type Mirrored = (String, String, Vec<(String, bool)>);
    let mut got: Vec<Mirrored> = out
        .plan
        .create
        .iter()
        .map(|s| {
            let port = s.ports.as_ref().unwrap()[0].name.clone().unwrap();
            let eps = s
                .endpoints
                .iter()
                .map(|e| {
                    (
                        e.addresses[0].clone(),
                        e.conditions.as_ref().unwrap().ready.unwrap(),
                    )
                })
                .collect();
            (s.address_type.clone(), port, eps)
        })
        .collect();
    got.sort();
    let s = |a: &str, b: bool| (a.to_owned(), b);
    assert_eq!(
        got,
        [
            ("IPv4".into(), "dns".into(), vec![s("10.0.0.3", true)]),
            (
                "IPv4".into(),
                "http".into(),
                vec![s("10.0.0.1", true), s("10.0.0.2", false)]
            ),
            ("IPv6".into(), "http".into(), vec![s("fd00::1", true)]),
        ]
    );
    let slice = &out.plan.create[0];
    let labels = slice.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["kubernetes.io/service-name"], "ext");
    assert_eq!(
        labels["endpointslice.kubernetes.io/managed-by"],
        CONTROLLER_NAME
    );
    assert_eq!(labels["team"], "a");
    let annotations = slice.metadata.annotations.as_ref().unwrap();
    assert_eq!(annotations.len(), 1, "trigger time not mirrored");
    assert_eq!(annotations["note"], "x");
    let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("Endpoints", "ep-uid")
    );
}

#[test]
fn addresses_over_the_subset_cap_are_skipped() {
    let ips: Vec<String> = (0..5).map(|i| format!("10.0.0.{i}")).collect();
    let refs: Vec<&str> = ips.iter().map(String::as_str).collect();
    let ep = endpoints(
        json!([{"addresses": addrs(&refs), "ports": [{"port": 80}]}]),
        json!({}),
    );
    let out = mirror(&ep, &[], 3);
    assert_eq!((out.invalid, out.skipped), (0, 2));
    assert_eq!(out.plan.create[0].endpoints.len(), 3);
}

#[test]
fn unchanged_mirrors_are_left_alone_and_changes_update_in_place() {
    let ep = endpoints(
        json!([{"addresses": addrs(&["10.0.0.1"]), "ports": [{"name": "p", "port": 80}]}]),
        json!({}),
    );
    let mut slice = mirror(&ep, &[], 1000).plan.create.remove(0);
    slice.metadata.name = Some("ext-abc".to_owned());
    slice.metadata.resource_version = Some("7".to_owned());
    let out = mirror(&ep, std::slice::from_ref(&slice), 1000);
    assert!(out.plan.create.is_empty() && out.plan.update.is_empty() && out.plan.delete.is_empty());
    // A new address and a label: the same slice is updated.
    let ep2 = endpoints(
        json!([{"addresses": addrs(&["10.0.0.1", "10.0.0.2"]), "ports": [{"name": "p", "port": 80}]}]),
        json!({"labels": {"team": "b"}}),
    );
    let out = mirror(&ep2, std::slice::from_ref(&slice), 1000);
    assert_eq!(out.plan.update.len(), 1);
    let u = &out.plan.update[0];
    assert_eq!(u.metadata.name.as_deref(), Some("ext-abc"));
    assert_eq!(u.metadata.resource_version.as_deref(), Some("7"));
    assert_eq!(u.endpoints.len(), 2);
    assert_eq!(u.metadata.labels.as_ref().unwrap()["team"], "b");
    // A port change: the old slice is recycled for the new port set.
    let ep3 = endpoints(
        json!([{"addresses": addrs(&["10.0.0.1"]), "ports": [{"name": "q", "port": 81}]}]),
        json!({}),
    );
    let out = mirror(&ep3, std::slice::from_ref(&slice), 1000);
    assert!(out.plan.create.is_empty() && out.plan.delete.is_empty());
    assert_eq!(out.plan.update[0].metadata.name.as_deref(), Some("ext-abc"));
    // No addresses: the slice goes.
    let empty = endpoints(json!([]), json!({}));
    let out = mirror(&empty, std::slice::from_ref(&slice), 1000);
    assert_eq!(out.plan.delete.len(), 1);
    assert!(out.plan.create.is_empty());
}

#[test]
fn skip_mirror_and_leader_locks_are_not_mirrored() {
    let plain = endpoints(json!([]), json!({}));
    assert!(should_mirror(&plain));
    let skip = endpoints(
        json!([]),
        json!({"labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}}),
    );
    assert!(!should_mirror(&skip));
    let leader = endpoints(
        json!([]),
        json!({"annotations": {"control-plane.alpha.kubernetes.io/leader": "{}"}}),
    );
    assert!(!should_mirror(&leader));
}
