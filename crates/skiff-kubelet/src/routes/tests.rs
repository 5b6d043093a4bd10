//! Route computation from Nodes, and reconciling against the recording fake.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::core::v1::{NodeAddress, NodeSpec, NodeStatus};
use skiff_sys::net::fake::{FailOp, NetCall, RecordingNetOps};

use super::*;

fn cidr(s: &str) -> Ipv4Cidr {
    s.parse().unwrap()
}

fn node(name: &str, pod_cidrs: &[&str], addresses: &[(&str, &str)]) -> Node {
    Node {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: pod_cidrs.first().map(|c| (*c).to_owned()),
            pod_cidrs: Some(pod_cidrs.iter().map(|c| (*c).to_owned()).collect()),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            addresses: Some(
                addresses
                    .iter()
                    .map(|(t, a)| NodeAddress {
                        type_: (*t).to_owned(),
                        address: (*a).to_owned(),
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
    }
}

fn config() -> PodRoutesConfig {
    PodRoutesConfig::new("self", cidr("10.42.0.0/16"))
}

fn route(dest: &str, gw: &str) -> RouteSpec {
    RouteSpec {
        destination: cidr(dest),
        gateway: gw.parse().unwrap(),
        protocol: ROUTE_PROTOCOL,
    }
}

#[test]
fn routes_every_other_node_via_its_internal_ip() {
    let nodes = vec![
        node("self", &["10.42.0.0/24"], &[("InternalIP", "192.168.1.1")]),
        node(
            "b",
            &["10.42.1.0/24"],
            &[
                ("Hostname", "b"),
                ("ExternalIP", "203.0.113.9"),
                ("InternalIP", "fd00::2"),
                ("InternalIP", "192.168.1.2"),
            ],
        ),
        // Dual stack: only the IPv4 podCIDR is routed.
        node(
            "c",
            &["10.42.2.0/24", "fd42::/64"],
            &[("InternalIP", "192.168.1.3")],
        ),
        // No podCIDR yet, no address yet, a podCIDR outside the cluster.
        node("d", &[], &[("InternalIP", "192.168.1.4")]),
        node("e", &["10.42.4.0/24"], &[("Hostname", "e")]),
        node("f", &["10.99.0.0/24"], &[("InternalIP", "192.168.1.6")]),
    ];
    let got: Vec<RouteSpec> = desired_routes(&nodes, &config()).into_values().collect();
    assert_eq!(
        got,
        vec![
            route("10.42.1.0/24", "192.168.1.2"),
            route("10.42.2.0/24", "192.168.1.3"),
        ]
    );
}

#[test]
fn only_the_legacy_pod_cidr_field_is_enough() {
    let mut n = node("b", &[], &[("InternalIP", "192.168.1.2")]);
    n.spec.as_mut().unwrap().pod_cidr = Some("10.42.7.0/24".to_owned());
    let got: Vec<RouteSpec> = desired_routes([&n], &config()).into_values().collect();
    assert_eq!(got, vec![route("10.42.7.0/24", "192.168.1.2")]);
}

#[test]
fn a_pod_cidr_claimed_twice_goes_to_the_first_node_by_name() {
    let nodes = [
        node("zeta", &["10.42.1.0/24"], &[("InternalIP", "192.168.1.26")]),
        node("alpha", &["10.42.1.0/24"], &[("InternalIP", "192.168.1.1")]),
    ];
    let got: Vec<RouteSpec> = desired_routes(&nodes, &config()).into_values().collect();
    assert_eq!(got, vec![route("10.42.1.0/24", "192.168.1.1")]);
}

fn desired(routes: &[RouteSpec]) -> BTreeMap<Ipv4Cidr, RouteSpec> {
    routes.iter().map(|r| (r.destination, *r)).collect()
}

#[tokio::test]
async fn reconcile_adds_changes_and_removes_only_its_own_routes() {
    let ops = RecordingNetOps::new();
    // Left by a previous run: one still wanted, one changed, one stale.
    ops.insert_route(route("10.42.1.0/24", "192.168.1.2"));
    ops.insert_route(route("10.42.2.0/24", "192.168.1.3"));
    ops.insert_route(route("10.42.9.0/24", "192.168.1.9"));
    // Not ours: another protocol inside the cluster, ours outside it.
    let foreign = RouteSpec {
        protocol: 4,
        ..route("10.42.5.0/24", "192.168.1.5")
    };
    let outside = route("10.50.0.0/24", "192.168.1.50");
    ops.insert_route(foreign);
    ops.insert_route(outside);

    let want = desired(&[
        route("10.42.1.0/24", "192.168.1.2"),
        route("10.42.2.0/24", "192.168.1.33"),
        route("10.42.3.0/24", "192.168.1.4"),
    ]);
    let sync = reconcile(&ops, &want, &config()).await.unwrap();
    assert!(sync.failed.is_empty(), "{:?}", sync.failed);
    assert_eq!(sync.deleted, vec![route("10.42.9.0/24", "192.168.1.9")]);
    assert_eq!(
        sync.replaced,
        vec![
            route("10.42.2.0/24", "192.168.1.33"),
            route("10.42.3.0/24", "192.168.1.4"),
        ]
    );
    let mut all = want.values().copied().collect::<Vec<_>>();
    all.extend([foreign, outside]);
    all.sort();
    let mut have = ops.routes();
    have.sort();
    assert_eq!(have, all);

    // In step: a second pass changes nothing.
    ops.clear_calls();
    let again = reconcile(&ops, &want, &config()).await.unwrap();
    assert!(again.replaced.is_empty() && again.deleted.is_empty());
    assert_eq!(ops.calls(), Vec::<NetCall>::new());

    // A node leaves: its route goes, the others stay.
    let fewer = desired(&[route("10.42.1.0/24", "192.168.1.2")]);
    let sync = reconcile(&ops, &fewer, &config()).await.unwrap();
    assert_eq!(
        ops.calls(),
        vec![
            NetCall::DeleteRoute(route("10.42.2.0/24", "192.168.1.33")),
            NetCall::DeleteRoute(route("10.42.3.0/24", "192.168.1.4")),
        ]
    );
    assert_eq!(sync.deleted.len(), 2);
}

#[tokio::test]
async fn a_refused_route_is_reported_and_the_rest_still_applied() {
    let ops = RecordingNetOps::new();
    ops.fail(Some(FailOp::ReplaceRoute));
    let want = desired(&[
        route("10.42.1.0/24", "192.168.1.2"),
        route("10.42.2.0/24", "192.168.1.3"),
    ]);
    let sync = reconcile(&ops, &want, &config()).await.unwrap();
    assert_eq!(sync.failed.len(), 2);
    assert!(
        sync.failed[0].1.to_string().contains("injected failure"),
        "{}",
        sync.failed[0].1
    );
    assert!(ops.routes().is_empty());
    ops.fail(None);
    let sync = reconcile(&ops, &want, &config()).await.unwrap();
    assert!(sync.failed.is_empty());
    assert_eq!(ops.routes().len(), 2);
}

#[tokio::test]
async fn remove_routes_takes_away_every_route_of_ours_in_the_cluster() {
    let ops = RecordingNetOps::new();
    ops.insert_route(route("10.42.1.0/24", "192.168.1.2"));
    ops.insert_route(route("10.42.2.0/24", "192.168.1.3"));
    let outside = route("10.50.0.0/24", "192.168.1.50");
    ops.insert_route(outside);
    assert_eq!(remove_routes(&ops, &config()).await.unwrap(), 2);
    assert_eq!(ops.routes(), vec![outside]);
    assert_eq!(remove_routes(&ops, &config()).await.unwrap(), 0);
}
