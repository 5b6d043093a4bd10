//! Table-driven tests of the rule computation: API objects in, ruleset
//! fragments out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};

use crate::model;
use crate::rules::{self, ProxyConfig};
use crate::ruleset::Ruleset;

mod diff;
mod proxier;

pub(crate) fn config() -> ProxyConfig {
    ProxyConfig {
        table: "skiff-proxy".into(),
        node_name: "node-a".into(),
        nodeport_addresses: vec![
            "192.168.1.10".parse().unwrap(),
            "127.0.0.1".parse().unwrap(),
        ],
        cluster_cidr: Some("10.42.0.0/16".parse().unwrap()),
    }
}

/// A Service; `spec` is merged over a ClusterIP Service at 10.43.0.5.
pub(crate) fn service(name: &str, spec: Value) -> Service {
    let mut base = json!({"clusterIP": "10.43.0.5", "clusterIPs": ["10.43.0.5"], "type": "ClusterIP",
                          "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}]});
    for (k, v) in spec.as_object().unwrap() {
        base[k] = v.clone();
    }
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"}, "spec": base}))
    .unwrap()
}

/// An endpoint: (ip, node, ready, serving, terminating).
pub(crate) fn ep(ip: &str, node: &str, ready: bool, serving: bool, terminating: bool) -> Value {
    json!({"addresses": [ip], "nodeName": node,
           "conditions": {"ready": ready, "serving": serving, "terminating": terminating}})
}

pub(crate) fn ready(ip: &str, node: &str) -> Value {
    ep(ip, node, true, true, false)
}

pub(crate) fn slice(
    service: &str,
    suffix: &str,
    ports: Value,
    endpoints: Vec<Value>,
) -> EndpointSlice {
    serde_json::from_value(
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-{suffix}"), "namespace": "default",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4", "ports": ports, "endpoints": endpoints}),
    )
    .unwrap()
}

pub(crate) fn http(port: u16) -> Value {
    json!([{"name": "http", "port": port, "protocol": "TCP"}])
}

pub(crate) fn compute(services: &[Service], slices: &[EndpointSlice]) -> Ruleset {
    compute_with(&config(), services, slices)
}

fn compute_with(config: &ProxyConfig, services: &[Service], slices: &[EndpointSlice]) -> Ruleset {
    let s: Vec<&Service> = services.iter().collect();
    let e: Vec<&EndpointSlice> = slices.iter().collect();
    rules::compute(config, &model::build(&s, &e, &config.node_name))
}

/// `key : value` texts of a set or map.
pub(crate) fn elements(rs: &Ruleset, set: &str) -> Vec<String> {
    rs.sets[set]
        .elements
        .iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k} : {v}"),
            None => k.clone(),
        })
        .collect()
}

pub(crate) fn rules(rs: &Ruleset, chain: &str) -> Vec<String> {
    rs.chains
        .get(chain)
        .unwrap_or_else(|| {
            panic!(
                "no chain {chain}; have {:?}",
                rs.chains.keys().collect::<Vec<_>>()
            )
        })
        .rules
        .clone()
}

const SVC: &str = "service-default/web/tcp/80";
const EXT: &str = "external-default/web/tcp/80";
const LOCAL: &str = "local-default/web/tcp/80";

fn endpoint_chain(ip: &str, port: u16) -> String {
    format!("endpoint-default/web/tcp/80__{ip}/{port}")
}

/// Every DNAT target in the ruleset, as `ip:port`: from dnat rules and
/// from the ClusterIP pick map.
fn dnat_targets(rs: &Ruleset) -> Vec<String> {
    let mut out: Vec<String> = rs
        .chains
        .values()
        .flat_map(|c| &c.rules)
        .filter_map(|r| r.split_once(" dnat to ").map(|(_, t)| t.to_string()))
        .collect();
    out.extend(
        rs.sets
            .iter()
            .filter(|(name, _)| name.starts_with(rules::SERVICE_ENDPOINTS))
            .flat_map(|(_, set)| set.elements.values().flatten())
            .map(|v| v.replace(" . ", ":")),
    );
    out.sort();
    out
}

/// Chains and sets that are there whatever the Services are.
fn base_only(rs: &Ruleset) -> bool {
    let base = compute(&[], &[]);
    rs.chains.keys().eq(base.chains.keys())
        && rs.sets.keys().eq(base.sets.keys())
        && rs.element_count() == base.element_count()
}

#[test]
fn services_without_rules() {
    let slices = [slice(
        "web",
        "a",
        http(8080),
        vec![ready("10.42.0.7", "node-a")],
    )];
    let cases: Vec<(&str, Service)> = vec![
        (
            "headless",
            service("web", json!({"clusterIP": "None", "clusterIPs": ["None"]})),
        ),
        (
            "ExternalName",
            service(
                "web",
                json!({"type": "ExternalName", "externalName": "example.com",
                                  "clusterIP": null, "clusterIPs": null}),
            ),
        ),
        (
            "IPv6 only",
            service(
                "web",
                json!({"clusterIP": "fd00::5", "clusterIPs": ["fd00::5"]}),
            ),
        ),
        ("no ports", service("web", json!({"ports": []}))),
        (
            "unknown protocol",
            service("web", json!({"ports": [{"port": 80, "protocol": "QUIC"}]})),
        ),
        ("another proxy's", {
            let mut s = service("web", json!({}));
            s.metadata.labels = Some(
                [(
                    model::SERVICE_PROXY_NAME_LABEL.to_string(),
                    "other".to_string(),
                )]
                .into(),
            );
            s
        }),
    ];
    for (what, svc) in cases {
        let rs = compute(&[svc], &slices);
        assert!(
            base_only(&rs),
            "{what}: {:?}",
            rs.chains.keys().collect::<Vec<_>>()
        );
    }
}

#[test]
fn cluster_ip_balances_over_ready_endpoints_with_hairpin_and_dnat() {
    let rs = compute(
        &[service("web", json!({}))],
        &[slice(
            "web",
            "a",
            http(8080),
            vec![ready("10.42.0.7", "node-a"), ready("10.42.1.9", "node-b")],
        )],
    );
    // Reached only by its ClusterIP: the dispatch goes straight to the
    // shared pick chain, the Service has no chain of its own.
    assert_eq!(
        elements(&rs, rules::SERVICE_IPS),
        ["10.43.0.5 . tcp . 80 : goto pick-tcp-2"]
    );
    assert!(elements(&rs, rules::NO_ENDPOINT_SERVICES).is_empty());
    assert!(!rs.chains.contains_key(SVC));
    // The pick: off-pod-network sources are masqueraded, then a draw of 0
    // or 1 is looked up with the ClusterIP and port.
    assert_eq!(
        rules(&rs, "pick-tcp-2"),
        [
            "ip saddr != 10.42.0.0/16 jump mark-for-masquerade",
            "dnat ip to ip daddr . tcp dport . numgen random mod 2 map @service-endpoints-tcp"
        ]
    );
    assert_eq!(
        elements(&rs, "service-endpoints-tcp"),
        [
            "10.43.0.5 . 80 . 0 : 10.42.0.7 . 8080",
            "10.43.0.5 . 80 . 1 : 10.42.1.9 . 8080"
        ]
    );
    // Without affinity there is no chain per endpoint; hairpin is a lookup
    // of (source, destination) in postrouting, of this node's endpoints
    // only: node-b's pod reaching itself is translated on node-b.
    assert!(!rs.chains.keys().any(|c| c.starts_with("endpoint-")));
    assert_eq!(
        elements(&rs, rules::HAIRPIN_ENDPOINTS),
        ["10.42.0.7 . 10.42.0.7"]
    );
    // An endpoint whose node is not known may be here.
    let rs = compute(
        &[service("web", json!({}))],
        &[slice(
            "web",
            "a",
            http(8080),
            vec![json!({"addresses": ["10.42.1.9"]})],
        )],
    );
    assert_eq!(
        elements(&rs, rules::HAIRPIN_ENDPOINTS),
        ["10.42.1.9 . 10.42.1.9"]
    );
    assert_eq!(
        rules(&rs, rules::MASQUERADING)[0],
        "ct status dnat ip saddr . ip daddr @hairpin-endpoints jump mark-for-masquerade"
    );
    // No NodePort, no external chain.
    assert!(!rs.chains.contains_key(EXT));
    assert!(elements(&rs, rules::SERVICE_NODEPORTS).is_empty());
}

#[test]
fn endpoint_selection() {
    // (what, endpoints, expected DNAT targets; empty means reject)
    let cases: Vec<(&str, Vec<Value>, Vec<&str>)> = vec![
        (
            "not-ready endpoints are left out",
            vec![
                ready("10.42.0.7", "node-a"),
                ep("10.42.0.8", "node-a", false, false, false),
            ],
            vec!["10.42.0.7"],
        ),
        (
            "serving-and-terminating when none is ready",
            vec![
                ep("10.42.0.7", "node-a", false, true, true),
                ep("10.42.0.8", "node-a", false, false, true),
            ],
            vec!["10.42.0.7"],
        ),
        (
            "terminating ones are ignored while a ready one exists",
            vec![
                ep("10.42.0.7", "node-a", false, true, true),
                ready("10.42.0.9", "node-b"),
            ],
            vec!["10.42.0.9"],
        ),
        (
            "none usable rejects",
            vec![ep("10.42.0.7", "node-a", false, false, false)],
            vec![],
        ),
        ("no endpoints rejects", vec![], vec![]),
        (
            "absent conditions mean ready",
            vec![json!({"addresses": ["10.42.0.7"]})],
            vec!["10.42.0.7"],
        ),
        (
            "malformed and IPv6 addresses are skipped",
            vec![
                json!({"addresses": ["not-an-ip"]}),
                json!({"addresses": ["fd00::1"]}),
                ready("10.42.0.7", "node-a"),
            ],
            vec!["10.42.0.7"],
        ),
    ];
    for (what, endpoints, want) in cases {
        let rs = compute(
            &[service("web", json!({}))],
            &[slice("web", "a", http(8080), endpoints)],
        );
        let want_dnat: Vec<String> = want.iter().map(|ip| format!("{ip}:8080")).collect();
        assert_eq!(dnat_targets(&rs), want_dnat, "{what}");
        if want.is_empty() {
            assert_eq!(
                elements(&rs, rules::NO_ENDPOINT_SERVICES),
                ["10.43.0.5 . tcp . 80 : goto reject-chain"],
                "{what}"
            );
            assert!(elements(&rs, rules::SERVICE_IPS).is_empty(), "{what}");
            assert!(!rs.chains.contains_key(SVC), "{what}");
        } else {
            assert!(
                elements(&rs, rules::NO_ENDPOINT_SERVICES).is_empty(),
                "{what}"
            );
        }
    }
}

#[test]
fn named_target_ports_resolve_per_slice_and_bad_ports_do_not_fail() {
    let svc = service(
        "web",
        json!({"ports": [{"name": "http", "port": 80, "targetPort": "http"},
                         {"name": "metrics", "port": 9100, "protocol": "TCP"}]}),
    );
    let slices = [
        // Two pod templates name "http" differently.
        slice("web", "a", http(8080), vec![ready("10.42.0.7", "node-a")]),
        slice("web", "b", http(9090), vec![ready("10.42.1.9", "node-b")]),
        // The same endpoint again (a slice mid-move): counted once.
        slice(
            "web",
            "c",
            http(8080),
            vec![ep("10.42.0.7", "node-a", false, false, false)],
        ),
        // A port no Service port names, and ports without numbers.
        slice(
            "web",
            "d",
            json!([{"name": "other", "port": 7000}, {"name": "metrics"}, {"name": "metrics", "port": 70000}]),
            vec![ready("10.42.2.2", "node-c")],
        ),
        // Another Service's slice.
        slice("db", "a", http(5432), vec![ready("10.42.3.3", "node-a")]),
    ];
    let rs = compute(&[svc], &slices);
    assert_eq!(
        elements(&rs, rules::SERVICE_IPS),
        ["10.43.0.5 . tcp . 80 : goto pick-tcp-2"]
    );
    assert_eq!(
        elements(&rs, "service-endpoints-tcp"),
        [
            "10.43.0.5 . 80 . 0 : 10.42.0.7 . 8080",
            "10.43.0.5 . 80 . 1 : 10.42.1.9 . 9090"
        ]
    );
    // metrics has no usable endpoint: it rejects, http still works.
    assert_eq!(
        elements(&rs, rules::NO_ENDPOINT_SERVICES),
        ["10.43.0.5 . tcp . 9100 : goto reject-chain"]
    );
    assert!(
        !rs.chains
            .keys()
            .any(|c| c.contains("10.42.2.2") || c.contains("10.42.3.3"))
    );
}

#[test]
fn protocols_key_maps_and_dnat() {
    for (proto, nft) in [("TCP", "tcp"), ("UDP", "udp"), ("SCTP", "sctp")] {
        let svc = service(
            "dns",
            json!({"ports": [{"name": "p", "port": 53, "protocol": proto}]}),
        );
        let s = slice(
            "dns",
            "a",
            json!([{"name": "p", "port": 5353, "protocol": proto}]),
            vec![ready("10.42.0.7", "node-a")],
        );
        let rs = compute(&[svc], &[s]);
        assert_eq!(
            elements(&rs, rules::SERVICE_IPS),
            [format!("10.43.0.5 . {nft} . 53 : goto pick-{nft}-1")]
        );
        assert!(
            rules(&rs, &format!("pick-{nft}-1"))[1]
                .starts_with(&format!("dnat ip to ip daddr . {nft} dport . numgen random mod 1 map @service-endpoints-{nft}")),
        );
        assert_eq!(
            elements(&rs, &format!("service-endpoints-{nft}")),
            ["10.43.0.5 . 53 . 0 : 10.42.0.7 . 5353"]
        );
    }
    // A slice port of another protocol does not serve the Service port.
    let svc = service(
        "dns",
        json!({"ports": [{"name": "p", "port": 53, "protocol": "UDP"}]}),
    );
    let s = slice(
        "dns",
        "a",
        json!([{"name": "p", "port": 53, "protocol": "TCP"}]),
        vec![ready("10.42.0.7", "node-a")],
    );
    let rs = compute(&[svc], &[s]);
    assert_eq!(
        elements(&rs, rules::NO_ENDPOINT_SERVICES),
        ["10.43.0.5 . udp . 53 : goto reject-chain"]
    );
}

#[test]
fn session_affinity_uses_a_dynamic_set_per_endpoint() {
    let svc = service(
        "web",
        json!({"sessionAffinity": "ClientIP",
               "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}}}),
    );
    let rs = compute(
        &[svc],
        &[slice(
            "web",
            "a",
            http(8080),
            vec![ready("10.42.0.7", "node-a"), ready("10.42.1.9", "node-b")],
        )],
    );
    let set = "affinity-default/web/tcp/80__10.42.0.7/8080";
    assert_eq!(
        rs.sets[set].decl,
        "type ipv4_addr; flags dynamic,timeout; timeout 600s;"
    );
    assert!(rs.sets[set].dynamic);
    let e1 = endpoint_chain("10.42.0.7", 8080);
    assert_eq!(
        rules(&rs, &e1),
        [
            format!("update @{set} {{ ip saddr }}"),
            "meta l4proto tcp dnat to 10.42.0.7:8080".to_string(),
        ]
    );
    let svc_rules = rules(&rs, SVC);
    assert_eq!(svc_rules[1], format!("ip saddr @{set} goto {e1}"));
    assert!(svc_rules[2].starts_with("ip saddr @affinity-default/web/tcp/80__10.42.1.9/8080 goto"));
    assert!(svc_rules[3].starts_with("numgen random mod 2 == 0 goto"));
    assert_eq!(svc_rules.len(), 5);

    // Without a config the upstream default timeout applies.
    let rs = compute(
        &[service("web", json!({"sessionAffinity": "ClientIP"}))],
        &[slice(
            "web",
            "a",
            http(8080),
            vec![ready("10.42.0.7", "node-a")],
        )],
    );
    assert!(rs.sets[set].decl.contains("timeout 10800s"));
}

fn nodeport_service(policy: &str) -> Service {
    service(
        "web",
        json!({"type": "LoadBalancer", "externalTrafficPolicy": policy,
               "externalIPs": ["203.0.113.7"],
               "ports": [{"name": "http", "port": 80, "nodePort": 30080, "targetPort": "http"}]}),
    )
    .tap(|s| {
        s.status = Some(
            serde_json::from_value(json!({"loadBalancer": {"ingress": [
                {"ip": "198.51.100.1"}, {"ip": "198.51.100.2", "ipMode": "Proxy"}, {"hostname": "lb.example"}]}}))
            .unwrap(),
        )
    })
}

trait Tap: Sized {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}
impl Tap for Service {}

#[test]
fn external_traffic_policy_cluster() {
    let rs = compute(
        &[nodeport_service("Cluster")],
        &[slice(
            "web",
            "a",
            http(8080),
            vec![ready("10.42.0.7", "node-a"), ready("10.42.1.9", "node-b")],
        )],
    );
    assert_eq!(
        elements(&rs, rules::SERVICE_IPS),
        [
            format!("10.43.0.5 . tcp . 80 : goto {SVC}"),
            // LB ingress with ipMode Proxy or a hostname only is not ours.
            format!("198.51.100.1 . tcp . 80 : goto {EXT}"),
            format!("203.0.113.7 . tcp . 80 : goto {EXT}"),
        ]
    );
    assert_eq!(
        elements(&rs, rules::SERVICE_NODEPORTS),
        [format!("tcp . 30080 : goto {EXT}")]
    );
    assert_eq!(
        elements(&rs, rules::NODEPORT_IPS),
        ["127.0.0.1", "192.168.1.10"]
    );
    assert_eq!(
        rules(&rs, EXT),
        [
            "ip saddr != 10.42.0.0/16 jump mark-for-masquerade".to_string(),
            format!("goto {SVC}"),
        ]
    );
    // Without a cluster CIDR every external packet is masqueraded.
    let mut config = config();
    config.cluster_cidr = None;
    let rs = compute_with(
        &config,
        &[nodeport_service("Cluster")],
        &[slice(
            "web",
            "a",
            http(8080),
            vec![ready("10.42.0.7", "node-a")],
        )],
    );
    assert_eq!(
        rules(&rs, EXT),
        [
            "jump mark-for-masquerade".to_string(),
            format!("goto {SVC}")
        ]
    );
    assert_eq!(
        rules(&rs, SVC).len(),
        1,
        "no off-cluster masquerade rule without a CIDR"
    );
}

#[test]
fn external_traffic_policy_local() {
    let rs = compute(
        &[nodeport_service("Local")],
        &[slice(
            "web",
            "a",
            http(8080),
            vec![ready("10.42.0.7", "node-a"), ready("10.42.1.9", "node-b")],
        )],
    );
    assert_eq!(
        rules(&rs, EXT),
        [
            format!("ip saddr 10.42.0.0/16 goto {SVC}"),
            "fib saddr type local jump mark-for-masquerade".to_string(),
            format!("fib saddr type local goto {SVC}"),
            format!("goto {LOCAL}"),
        ]
    );
    assert_eq!(
        rules(&rs, LOCAL),
        ["meta l4proto tcp dnat to 10.42.0.7:8080"]
    );
    assert_eq!(
        rules(&rs, SVC).len(),
        3,
        "masquerade rule and a pick of two"
    );

    // Endpoints only on other nodes: external destinations drop (the
    // client should try a node with endpoints); the ClusterIP still works.
    let rs = compute(
        &[nodeport_service("Local")],
        &[slice(
            "web",
            "a",
            http(8080),
            vec![ready("10.42.1.9", "node-b")],
        )],
    );
    assert_eq!(
        elements(&rs, rules::NO_ENDPOINT_SERVICES),
        [
            "198.51.100.1 . tcp . 80 : drop",
            "203.0.113.7 . tcp . 80 : drop"
        ]
    );
    assert_eq!(
        elements(&rs, rules::NO_ENDPOINT_NODEPORTS),
        ["tcp . 30080 : drop"]
    );
    assert_eq!(
        elements(&rs, rules::SERVICE_IPS),
        [format!("10.43.0.5 . tcp . 80 : goto {SVC}")]
    );
    assert!(!rs.chains.contains_key(EXT) && !rs.chains.contains_key(LOCAL));

    // No endpoints anywhere: everything rejects.
    let rs = compute(&[nodeport_service("Local")], &[]);
    assert_eq!(
        elements(&rs, rules::NO_ENDPOINT_NODEPORTS),
        ["tcp . 30080 : goto reject-chain"]
    );
    assert_eq!(elements(&rs, rules::NO_ENDPOINT_SERVICES).len(), 3);
}

#[test]
fn internal_traffic_policy_local() {
    let svc = service("web", json!({"internalTrafficPolicy": "Local"}));
    let rs = compute(
        std::slice::from_ref(&svc),
        &[slice(
            "web",
            "a",
            http(8080),
            vec![ready("10.42.0.7", "node-a"), ready("10.42.1.9", "node-b")],
        )],
    );
    // The pick draws among this node's endpoints only.
    assert_eq!(
        elements(&rs, rules::SERVICE_IPS),
        ["10.43.0.5 . tcp . 80 : goto pick-tcp-1"]
    );
    assert!(!rs.chains.contains_key(LOCAL));
    // The other node's endpoint is not used at all.
    assert_eq!(dnat_targets(&rs), ["10.42.0.7:8080"]);
    assert_eq!(
        elements(&rs, rules::HAIRPIN_ENDPOINTS),
        ["10.42.0.7 . 10.42.0.7"]
    );
    assert!(
        !rs.chains
            .values()
            .flat_map(|c| &c.rules)
            .any(|r| r.contains("10.42.1.9"))
    );
    let rs = compute(
        &[svc],
        &[slice(
            "web",
            "a",
            http(8080),
            vec![ready("10.42.1.9", "node-b")],
        )],
    );
    assert_eq!(
        elements(&rs, rules::NO_ENDPOINT_SERVICES),
        ["10.43.0.5 . tcp . 80 : drop"]
    );
}

#[test]
fn node_addresses_join_the_configured_nodeport_addresses() {
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "node-a"},
        "status": {"addresses": [{"type": "InternalIP", "address": "192.168.1.20"},
                                 {"type": "Hostname", "address": "node-a"},
                                 {"type": "InternalIP", "address": "fd00::20"}]}}))
    .unwrap();
    let proxier = crate::Proxier::new(
        config(),
        skiff_sys::nft::fake::RecordingNftables::new(),
        skiff_sys::conntrack::fake::RecordingConntrack::new(),
    )
    .unwrap();
    let (rs, _) = proxier.compute(&[], &[], Some(&node));
    assert_eq!(
        elements(&rs, rules::NODEPORT_IPS),
        ["127.0.0.1", "192.168.1.10", "192.168.1.20"]
    );
}

#[test]
fn many_services_do_not_collide() {
    let mut services = Vec::new();
    let mut slices = Vec::new();
    for i in 0..20u8 {
        let name = format!("s{i}");
        services.push(service(
            &name,
            json!({"clusterIP": format!("10.43.1.{i}"), "clusterIPs": [format!("10.43.1.{i}")]}),
        ));
        slices.push(slice(
            &name,
            "a",
            http(8080),
            vec![ready(&format!("10.42.0.{i}"), "node-a")],
        ));
    }
    let rs = compute(&services, &slices);
    assert_eq!(rs.sets[rules::SERVICE_IPS].elements.len(), 20);
    assert!(!rs.chains.keys().any(|c| c.starts_with("service-default/")));
    assert_eq!(rs.sets[rules::HAIRPIN_ENDPOINTS].elements.len(), 20);
    assert_eq!(rs.sets["service-endpoints-tcp"].elements.len(), 20);
    assert_eq!(
        rs.chains.keys().filter(|c| c.starts_with("pick-")).count(),
        1,
        "one shared pick chain per protocol and endpoint count"
    );
}

#[test]
fn random_pick_is_uniform() {
    for n in 1..=12u32 {
        let endpoints: Vec<Value> = (0..n)
            .map(|i| ready(&format!("10.42.0.{}", i + 1), "node-b"))
            .collect();
        let mut all: Vec<String> = (0..n).map(|i| format!("10.42.0.{}:8080", i + 1)).collect();
        all.sort();

        // ClusterIP only: draws 0..n each map to one endpoint, every
        // endpoint once.
        let rs = compute(
            &[service("web", json!({}))],
            &[slice("web", "a", http(8080), endpoints.clone())],
        );
        let pick = format!("pick-tcp-{n}");
        assert_eq!(
            elements(&rs, rules::SERVICE_IPS),
            [format!("10.43.0.5 . tcp . 80 : goto {pick}")]
        );
        assert!(rules(&rs, &pick)[1].contains(&format!("numgen random mod {n} map")));
        let keys: Vec<String> = rs.sets["service-endpoints-tcp"]
            .elements
            .keys()
            .cloned()
            .collect();
        let mut want_keys: Vec<String> = (0..n).map(|i| format!("10.43.0.5 . 80 . {i}")).collect();
        want_keys.sort();
        assert_eq!(keys, want_keys, "n={n}");
        assert_eq!(dnat_targets(&rs), all, "n={n}");

        // Reached from outside too: a cascade of rules.
        let rs = compute(
            &[service(
                "web",
                json!({"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
            )],
            &[slice("web", "a", http(8080), endpoints)],
        );
        // Probability of reaching each rule, times the chance it fires.
        let mut reach = 1.0f64;
        let mut picks = Vec::new();
        for rule in rules(&rs, SVC).iter().skip(1) {
            let p = match rule.strip_prefix("numgen random mod ") {
                Some(rest) => 1.0 / rest.split(' ').next().unwrap().parse::<f64>().unwrap(),
                None => {
                    assert!(rule.starts_with("meta l4proto tcp dnat to "), "{rule}");
                    1.0
                }
            };
            picks.push(reach * p);
            reach *= 1.0 - p;
        }
        assert_eq!(picks.len(), n as usize);
        for p in picks {
            assert!((p - 1.0 / f64::from(n)).abs() < 1e-9, "n={n}: {p}");
        }
        assert_eq!(dnat_targets(&rs), all, "n={n}");
    }
}

#[test]
fn localhost_nodeports_come_with_a_martian_guard() {
    let guard = "ip daddr 127.0.0.0/8 ip saddr != 127.0.0.0/8 ct state != { established, related } ct status & dnat == 0 drop";
    let rs = compute(&[], &[]);
    assert_eq!(rules(&rs, rules::FILTER_INPUT)[0], guard);
    let mut without = config();
    without.nodeport_addresses.retain(|ip| !ip.is_loopback());
    let rs = compute_with(&without, &[], &[]);
    assert!(!rules(&rs, rules::FILTER_INPUT).iter().any(|r| r == guard));
}
