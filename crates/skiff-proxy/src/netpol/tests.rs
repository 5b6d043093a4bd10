//! Table-driven tests of the policy rule computation: API objects in,
//! ruleset fragments out; and the enforcer against a recording nftables.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{Value, json};
use skiff_sys::nft::fake::RecordingNftables;

use super::rules::{EGRESS, EGRESS_ISOLATED, INGRESS, INGRESS_ISOLATED, NetpolConfig};
use super::{Enforcer, model, rules};
use crate::ruleset::Ruleset;
use crate::tests::{elements, rules as chain_rules};

const NODE: &str = "node-a";

fn config() -> NetpolConfig {
    NetpolConfig {
        table: "skiff-netpol".into(),
        node_name: NODE.into(),
    }
}

/// A running pod; `ports` are `(name, protocol, number)` container ports.
fn pod(ns: &str, name: &str, labels: Value, ip: &str, node: &str) -> Pod {
    pod_with_ports(ns, name, labels, ip, node, &[])
}

fn pod_with_ports(
    ns: &str,
    name: &str,
    labels: Value,
    ip: &str,
    node: &str,
    ports: &[(&str, &str, u16)],
) -> Pod {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, p, c)| json!({"name": n, "protocol": p, "containerPort": c}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox", "ports": ports}]},
        "status": {"phase": "Running", "podIP": ip}
    }))
    .unwrap()
}

fn namespace(name: &str, labels: Value) -> Namespace {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
}

fn policy(ns: &str, name: &str, spec: Value) -> NetworkPolicy {
    serde_json::from_value(json!({"metadata": {"namespace": ns, "name": name}, "spec": spec}))
        .unwrap()
}

/// The cluster most cases use: namespaces `prod` (team=a) and `dev`
/// (team=b); pods on this node and on node-b.
fn cluster() -> (Vec<Pod>, Vec<Namespace>) {
    let pods = vec![
        pod_with_ports(
            "prod",
            "web-1",
            json!({"app": "web"}),
            "10.42.0.10",
            NODE,
            &[("http", "TCP", 8080), ("dns", "UDP", 53)],
        ),
        pod_with_ports(
            "prod",
            "web-2",
            json!({"app": "web"}),
            "10.42.1.10",
            "node-b",
            &[("http", "TCP", 9090)],
        ),
        pod("prod", "db", json!({"app": "db"}), "10.42.0.11", NODE),
        pod(
            "prod",
            "client",
            json!({"role": "client"}),
            "10.42.1.12",
            "node-b",
        ),
        pod(
            "dev",
            "client",
            json!({"role": "client"}),
            "10.42.0.20",
            NODE,
        ),
        pod(
            "dev",
            "tool",
            json!({"app": "tool"}),
            "10.42.1.21",
            "node-b",
        ),
    ];
    let namespaces = vec![
        namespace(
            "prod",
            json!({"team": "a", "kubernetes.io/metadata.name": "prod"}),
        ),
        namespace(
            "dev",
            json!({"team": "b", "kubernetes.io/metadata.name": "dev"}),
        ),
    ];
    (pods, namespaces)
}

fn compute(policies: &[NetworkPolicy], pods: &[Pod], namespaces: &[Namespace]) -> Ruleset {
    let p: Vec<&NetworkPolicy> = policies.iter().collect();
    let pods: Vec<&Pod> = pods.iter().collect();
    let ns: Vec<&Namespace> = namespaces.iter().collect();
    rules::compute(
        &config(),
        &model::policies(&p),
        &model::pods(&pods),
        &model::namespaces(&ns),
    )
}

fn compute_one(spec: Value) -> Ruleset {
    let (pods, namespaces) = cluster();
    compute(&[policy("prod", "p", spec)], &pods, &namespaces)
}

/// The allow rules of a chain (without the fixed head and the final drop).
fn allow_rules(rs: &Ruleset, chain: &str) -> Vec<String> {
    let all = chain_rules(rs, chain);
    let head = if chain == INGRESS { 2 } else { 1 };
    assert_eq!(all.last().map(String::as_str), Some("drop"), "{all:?}");
    all[head..all.len() - 1].to_vec()
}

#[test]
fn without_policies_nothing_is_isolated() {
    let (pods, namespaces) = cluster();
    let rs = compute(&[], &pods, &namespaces);
    assert!(elements(&rs, INGRESS_ISOLATED).is_empty());
    assert!(elements(&rs, EGRESS_ISOLATED).is_empty());
    assert_eq!(
        chain_rules(&rs, "forward"),
        [
            "ct state established,related accept",
            "jump egress",
            "jump ingress"
        ]
    );
    assert_eq!(
        chain_rules(&rs, "input"),
        ["ct state established,related accept", "jump egress"]
    );
    assert_eq!(
        chain_rules(&rs, INGRESS),
        [
            "ip daddr != @ingress-isolated return",
            "fib saddr type local return",
            "drop"
        ]
    );
    assert_eq!(
        chain_rules(&rs, EGRESS),
        ["ip saddr != @egress-isolated return", "drop"]
    );
    assert_eq!(
        rs.chains["forward"].hook.as_deref(),
        Some("type filter hook forward priority 0; policy accept;")
    );
}

#[test]
fn pod_selection_and_policy_types() {
    // (spec, ingress-isolated, egress-isolated)
    let cases: Vec<(Value, Vec<&str>, Vec<&str>)> = vec![
        // Empty podSelector: every pod of the namespace on this node;
        // default types: Ingress only.
        (
            json!({"podSelector": {}}),
            vec!["10.42.0.10", "10.42.0.11"],
            vec![],
        ),
        // Absent podSelector is the same; so is an absent spec.
        (json!(null), vec!["10.42.0.10", "10.42.0.11"], vec![]),
        (json!({}), vec!["10.42.0.10", "10.42.0.11"], vec![]),
        // By label; pods on node-b are another agent's business.
        (
            json!({"podSelector": {"matchLabels": {"app": "web"}}}),
            vec!["10.42.0.10"],
            vec![],
        ),
        (
            json!({"podSelector": {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}}),
            vec!["10.42.0.11"],
            vec![],
        ),
        // Egress rules present: Egress too.
        (
            json!({"podSelector": {"matchLabels": {"app": "db"}}, "egress": [{}]}),
            vec!["10.42.0.11"],
            vec!["10.42.0.11"],
        ),
        // Explicit types win: Egress only (ingress rules ignored), and an
        // Egress type with no rules is deny-all egress.
        (
            json!({"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Egress"], "ingress": [{}]}),
            vec![],
            vec!["10.42.0.11"],
        ),
        (
            json!({"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress", "Egress"]}),
            vec!["10.42.0.11"],
            vec!["10.42.0.11"],
        ),
        // Selects nothing here.
        (
            json!({"podSelector": {"matchLabels": {"app": "none"}}}),
            vec![],
            vec![],
        ),
        // An unreadable selector selects nothing.
        (
            json!({"podSelector": {"matchExpressions": [{"key": "app", "operator": "Near"}]}}),
            vec![],
            vec![],
        ),
    ];
    for (spec, ingress, egress) in cases {
        let rs = compute_one(spec.clone());
        assert_eq!(elements(&rs, INGRESS_ISOLATED), ingress, "{spec}");
        assert_eq!(elements(&rs, EGRESS_ISOLATED), egress, "{spec}");
        // Isolated without rules: no allow rule at all (default deny).
        if !ingress.is_empty() && spec.get("ingress").is_none() {
            assert!(allow_rules(&rs, INGRESS).is_empty(), "{spec}");
        }
    }
}

#[test]
fn peers() {
    // (ingress rule, peer set elements); the policy selects app=web in prod.
    let cases: Vec<(Value, Vec<&str>)> = vec![
        // podSelector: pods of the policy's namespace, on every node.
        (
            json!({"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}),
            vec!["10.42.1.12"],
        ),
        // namespaceSelector: every pod of the matching namespaces.
        (
            json!({"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}]}),
            vec!["10.42.0.20", "10.42.1.21"],
        ),
        (
            json!({"from": [{"namespaceSelector": {}}]}),
            vec![
                "10.42.0.10-10.42.0.11",
                "10.42.0.20",
                "10.42.1.10",
                "10.42.1.12",
                "10.42.1.21",
            ],
        ),
        // Both in one peer: AND.
        (
            json!({"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}},
                             "podSelector": {"matchLabels": {"role": "client"}}}]}),
            vec!["10.42.0.20"],
        ),
        // Two peers: OR.
        (
            json!({"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}},
                            {"podSelector": {"matchLabels": {"role": "client"}}}]}),
            vec!["10.42.0.20", "10.42.1.12", "10.42.1.21"],
        ),
        // ipBlock with holes.
        (
            json!({"from": [{"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.1.0/24", "192.168.255.0/24"]}}]}),
            vec!["192.168.0.0-192.168.0.255", "192.168.2.0-192.168.254.255"],
        ),
        // Peers add up: a pod peer fills the hole, overlaps merge.
        (
            json!({"from": [{"ipBlock": {"cidr": "10.42.0.0/24", "except": ["10.42.0.10/32"]}}]}),
            vec!["10.42.0.0-10.42.0.9", "10.42.0.11-10.42.0.255"],
        ),
        (
            json!({"from": [{"ipBlock": {"cidr": "10.42.0.0/24", "except": ["10.42.0.10/32"]}},
                            {"podSelector": {}}]}),
            vec!["10.42.0.0-10.42.0.255", "10.42.1.10", "10.42.1.12"],
        ),
        // Unreadable peers match nothing: the rule allows nobody.
        (
            json!({"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}),
            vec![],
        ),
        (
            json!({"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["bad"]}}]}),
            vec![],
        ),
        (json!({"from": [{"ipBlock": {"cidr": "fd00::/8"}}]}), vec![]),
        (json!({"from": [{}]}), vec![]),
    ];
    for (rule, want) in cases {
        let rs =
            compute_one(json!({"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [rule]}));
        assert_eq!(elements(&rs, "in-prod/p__0"), want, "{rule}");
        assert_eq!(
            allow_rules(&rs, INGRESS),
            ["ip daddr @pods-prod/p ip saddr @in-prod/p__0 return"],
            "{rule}"
        );
        assert_eq!(
            rs.sets["in-prod/p__0"].decl,
            "type ipv4_addr; flags interval;"
        );
        assert_eq!(elements(&rs, "pods-prod/p"), ["10.42.0.10"]);
    }
}

#[test]
fn rules_without_peers_or_ports_allow_everyone() {
    for rule in [
        json!({}),
        json!({"from": []}),
        json!({"from": [], "ports": []}),
    ] {
        let rs =
            compute_one(json!({"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [rule]}));
        assert_eq!(
            allow_rules(&rs, INGRESS),
            ["ip daddr @pods-prod/p return"],
            "{rule}"
        );
        assert!(!rs.sets.contains_key("in-prod/p__0"));
    }
}

#[test]
fn ports() {
    // (ports, allow rules, named-port set elements)
    type Case = (Value, Vec<String>, Option<Vec<&'static str>>);
    let p = "ip daddr @pods-prod/p";
    let cases: Vec<Case> = vec![
        (
            json!([{"port": 80}]),
            vec![format!("{p} meta l4proto tcp th dport 80 return")],
            None,
        ),
        (
            json!([{"protocol": "UDP", "port": 53}, {"protocol": "SCTP"}]),
            vec![
                format!("{p} meta l4proto udp th dport 53 return"),
                format!("{p} meta l4proto sctp return"),
            ],
            None,
        ),
        (
            json!([{"port": 32000, "endPort": 32768}]),
            vec![format!("{p} meta l4proto tcp th dport 32000-32768 return")],
            None,
        ),
        // A named port resolves per selected (destination) pod; the UDP
        // "http" does not exist.
        (
            json!([{"port": "http"}, {"port": "dns", "protocol": "UDP"}, {"port": "http", "protocol": "UDP"}]),
            vec![format!(
                "{p} ip daddr . meta l4proto . th dport @in-prod/p__0-ports return"
            )],
            Some(vec!["10.42.0.10 . tcp . 8080", "10.42.0.10 . udp . 53"]),
        ),
        // Entries that cannot be read drop out; none left matches nothing.
        (json!([{"protocol": "ICMP", "port": 1}]), vec![], None),
        (json!([{"port": 100, "endPort": 99}]), vec![], None),
        (json!([{"port": "Not_A_Name"}]), vec![], None),
    ];
    for (ports, want, named) in cases {
        let rs = compute_one(json!({
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"ports": ports}]
        }));
        assert_eq!(allow_rules(&rs, INGRESS), want, "{ports}");
        match named {
            Some(named) => assert_eq!(elements(&rs, "in-prod/p__0-ports"), named),
            None => assert!(!rs.sets.contains_key("in-prod/p__0-ports")),
        }
    }
}

#[test]
fn egress_matches_destinations_and_resolves_named_ports_per_destination() {
    let rs = compute_one(json!({
        "podSelector": {"matchLabels": {"app": "db"}},
        "egress": [
            {"to": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": "http"}]},
            {"to": [{"ipBlock": {"cidr": "10.43.0.10/32"}}], "ports": [{"port": 53, "protocol": "UDP"}]}
        ]
    }));
    assert_eq!(elements(&rs, EGRESS_ISOLATED), ["10.42.0.11"]);
    // No policyTypes: Ingress is implied, so ingress is denied too.
    assert_eq!(elements(&rs, INGRESS_ISOLATED), ["10.42.0.11"]);
    assert!(allow_rules(&rs, INGRESS).is_empty());
    assert_eq!(
        allow_rules(&rs, EGRESS),
        [
            "ip saddr @pods-prod/p ip daddr @out-prod/p__0 ip daddr . meta l4proto . th dport @out-prod/p__0-ports return",
            "ip saddr @pods-prod/p ip daddr @out-prod/p__1 meta l4proto udp th dport 53 return",
        ]
    );
    assert_eq!(elements(&rs, "out-prod/p__0"), ["10.42.0.10", "10.42.1.10"]);
    // web-1 names 8080 "http", web-2 (on the other node) 9090.
    assert_eq!(
        elements(&rs, "out-prod/p__0-ports"),
        ["10.42.0.10 . tcp . 8080", "10.42.1.10 . tcp . 9090"]
    );
    assert_eq!(elements(&rs, "out-prod/p__1"), ["10.43.0.10"]);
}

#[test]
fn several_policies_add_up_and_rules_follow_policies_not_pods() {
    let (mut pods, namespaces) = cluster();
    let policies = [
        policy("prod", "deny-all", json!({"podSelector": {}})),
        policy(
            "prod",
            "allow-dev",
            json!({"podSelector": {"matchLabels": {"app": "web"}},
                   "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}]}]}),
        ),
        policy(
            "dev",
            "other-ns",
            json!({"podSelector": {}, "policyTypes": ["Egress"]}),
        ),
    ];
    let rs = compute(&policies, &pods, &namespaces);
    assert_eq!(
        elements(&rs, INGRESS_ISOLATED),
        ["10.42.0.10", "10.42.0.11"]
    );
    assert_eq!(elements(&rs, EGRESS_ISOLATED), ["10.42.0.20"]);
    assert_eq!(
        allow_rules(&rs, INGRESS),
        ["ip daddr @pods-prod/allow-dev ip saddr @in-prod/allow-dev__0 return"]
    );
    let rules_before = rs.rule_count();
    // Fifty more client pods in dev: more set elements, not more rules.
    for i in 0..50 {
        pods.push(pod(
            "dev",
            &format!("c{i}"),
            json!({"role": "client"}),
            &format!("10.42.2.{i}"),
            if i % 2 == 0 { NODE } else { "node-b" },
        ));
    }
    let rs = compute(&policies, &pods, &namespaces);
    assert_eq!(rs.rule_count(), rules_before);
    assert_eq!(
        elements(&rs, "in-prod/allow-dev__0"),
        ["10.42.0.20", "10.42.1.21", "10.42.2.0-10.42.2.49"]
    );
    assert_eq!(elements(&rs, EGRESS_ISOLATED).len(), 26);
}

#[test]
fn pods_off_the_pod_network_are_left_out() {
    let (_, namespaces) = cluster();
    let mut host: Value =
        serde_json::to_value(pod("prod", "host", json!({}), "192.168.1.10", NODE)).unwrap();
    host["spec"]["hostNetwork"] = json!(true);
    let mut done: Value =
        serde_json::to_value(pod("prod", "done", json!({}), "10.42.0.30", NODE)).unwrap();
    done["status"]["phase"] = json!("Succeeded");
    let mut pending: Value =
        serde_json::to_value(pod("prod", "pending", json!({}), "", NODE)).unwrap();
    pending["status"].as_object_mut().unwrap().remove("podIP");
    let v6 = pod("prod", "v6", json!({}), "fd00::1", NODE);
    let pods = vec![
        serde_json::from_value(host).unwrap(),
        serde_json::from_value(done).unwrap(),
        serde_json::from_value(pending).unwrap(),
        v6,
        pod("prod", "ok", json!({}), "10.42.0.31", NODE),
    ];
    let rs = compute(
        &[policy("prod", "p", json!({"podSelector": {}}))],
        &pods,
        &namespaces,
    );
    assert_eq!(elements(&rs, INGRESS_ISOLATED), ["10.42.0.31"]);
}

#[test]
fn range_arithmetic() {
    let rs = compute_one(json!({
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [
            {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["0.0.0.0/1", "255.255.255.255/32"]}},
            {"ipBlock": {"cidr": "128.0.0.0/31", "except": ["128.0.0.0/30"]}},
            {"ipBlock": {"cidr": "10.0.0.5/30"}}
        ]}]
    }));
    // The /30 is normalised to its block; the second block is all hole.
    assert_eq!(
        elements(&rs, "in-prod/p__0"),
        ["10.0.0.4-10.0.0.7", "128.0.0.0-255.255.255.254"]
    );
}

fn refs<T>(v: &[T]) -> Vec<&T> {
    v.iter().collect()
}

#[tokio::test]
async fn enforcer_replaces_then_diffs_and_recovers_with_a_full_sync() {
    let (pods, namespaces) = cluster();
    let mut enforcer = Enforcer::new(config(), RecordingNftables::new()).unwrap();
    let deny = [policy("prod", "deny", json!({"podSelector": {}}))];
    let out = enforcer
        .sync(&refs(&deny), &refs(&pods), &refs(&namespaces))
        .await
        .unwrap();
    assert!(out.applied && out.full);
    let script = enforcer.nft().scripts().pop().unwrap();
    assert!(script.starts_with("add table ip skiff-netpol\ndelete table ip skiff-netpol\n"));
    assert!(
        script.contains("add element ip skiff-netpol ingress-isolated { 10.42.0.10, 10.42.0.11 }")
    );

    // Nothing changed: nothing applied.
    let out = enforcer
        .sync(&refs(&deny), &refs(&pods), &refs(&namespaces))
        .await
        .unwrap();
    assert!(!out.applied);
    assert_eq!(enforcer.nft().scripts().len(), 1);

    // A new pod: one element, no table replacement.
    let mut more = pods.clone();
    more.push(pod("prod", "new", json!({}), "10.42.0.12", NODE));
    let out = enforcer
        .sync(&refs(&deny), &refs(&more), &refs(&namespaces))
        .await
        .unwrap();
    assert!(out.applied && !out.full);
    let script = enforcer.nft().scripts().pop().unwrap();
    assert!(!script.contains("delete table"), "{script}");
    assert!(
        script.contains("add element ip skiff-netpol ingress-isolated { 10.42.0.12 }"),
        "{script}"
    );

    // A failed sync: reported, counted, and the next one starts over.
    enforcer.nft().reject(Some("Error: boom"));
    let err = enforcer
        .sync(&[], &refs(&more), &refs(&namespaces))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "nft -f - failed: Error: boom");
    assert_eq!(
        enforcer
            .stats()
            .sync
            .sync_errors
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    enforcer.nft().reject(None);
    let out = enforcer
        .sync(&[], &refs(&more), &refs(&namespaces))
        .await
        .unwrap();
    assert!(out.applied && out.full);
}

#[test]
fn bad_table_names_are_refused() {
    let mut config = config();
    config.table = "no spaces; flush ruleset".into();
    assert!(Enforcer::new(config, RecordingNftables::new()).is_err());
}
