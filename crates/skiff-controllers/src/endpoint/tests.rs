#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointSubset, Service};
use serde_json::{Value, json};

use super::subsets::{MAX_CAPACITY, compute_subsets, repack_subsets, truncate};

use crate::cached_pod::CachedPod;

/// A pod `name` on node `n1` with `ip` (none if empty), Ready as given,
/// container ports `http`=8080/TCP and `dns`=53/UDP; `extra` is merged
/// into the object.
pub(crate) fn pod(name: &str, ip: &str, ready: bool, extra: Value) -> CachedPod {
    let mut v = json!({
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
                     "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [
            {"name": "http", "containerPort": 8080, "protocol": "TCP"},
            {"name": "dns", "containerPort": 53, "protocol": "UDP"}]}]},
        "status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": if ready { "True" } else { "False" },
             "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
    });
    if !ip.is_empty() {
        v["status"]["podIP"] = json!(ip);
        v["status"]["podIPs"] = json!([{"ip": ip}]);
    }
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

pub(crate) fn merge(v: &mut Value, extra: Value) {
    if let (Value::Object(a), Value::Object(b)) = (v, extra) {
        for (k, val) in b {
            match a.get_mut(&k) {
                Some(existing) if existing.is_object() && val.is_object() => merge(existing, val),
                _ => {
                    a.insert(k, val);
                }
            }
        }
    }
}

/// A Service `web` selecting app=web with `ports`; `extra` merged into spec.
pub(crate) fn service(ports: Value, extra: Value) -> Service {
    let mut v = json!({
        "metadata": {"name": "web", "namespace": "ns", "uid": "svc-uid",
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"selector": {"app": "web"}, "clusterIP": "10.43.0.5", "ports": ports},
    });
    merge(&mut v["spec"], extra);
    serde_json::from_value(v).unwrap()
}

/// A subset rendered compactly: "ready=[ips] notReady=[ips] ports=[name:port/proto]".
fn show(subsets: &[EndpointSubset]) -> Vec<String> {
    let ips = |a: &Option<Vec<EndpointAddress>>| -> String {
        a.iter()
            .flatten()
            .map(|a| match &a.hostname {
                Some(h) => format!("{}({h})", a.ip),
                None => a.ip.clone(),
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    subsets
        .iter()
        .map(|s| {
            let ports: Vec<String> = s
                .ports
                .iter()
                .flatten()
                .map(|p| {
                    format!(
                        "{}:{}/{}",
                        p.name.as_deref().unwrap_or(""),
                        p.port,
                        p.protocol.as_deref().unwrap_or("")
                    )
                })
                .collect();
            format!(
                "ready=[{}] notReady=[{}] ports=[{}]",
                ips(&s.addresses),
                ips(&s.not_ready_addresses),
                ports.join(",")
            )
        })
        .collect()
}

#[test]
fn subsets_from_pods() {
    let http = json!([{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]);
    let two = json!([
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
        {"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"},
    ]);
    let no_dns_port = json!({"spec": {"containers": [{"name": "c", "ports": [
        {"name": "http", "containerPort": 9090, "protocol": "TCP"}]}]}});
    let terminating = json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}});
    let cases: Vec<(&str, Service, Vec<CachedPod>, Vec<&str>)> = vec![
        (
            "ready and not-ready pods",
            service(http.clone(), json!({})),
            vec![
                pod("b", "10.0.0.2", true, json!({})),
                pod("a", "10.0.0.1", true, json!({})),
                pod("c", "10.0.0.3", false, json!({})),
            ],
            vec!["ready=[10.0.0.1,10.0.0.2] notReady=[10.0.0.3] ports=[http:8080/TCP]"],
        ),
        (
            "pods without an IP or in a terminal phase are left out",
            service(http.clone(), json!({})),
            vec![
                pod("a", "", true, json!({})),
                pod(
                    "b",
                    "10.0.0.2",
                    true,
                    json!({"status": {"phase": "Succeeded"}}),
                ),
                pod("c", "10.0.0.3", true, json!({})),
            ],
            vec!["ready=[10.0.0.3] notReady=[] ports=[http:8080/TCP]"],
        ),
        (
            "terminating pods dropped",
            service(http.clone(), json!({})),
            vec![
                pod("a", "10.0.0.1", true, terminating.clone()),
                pod("b", "10.0.0.2", true, json!({})),
            ],
            vec!["ready=[10.0.0.2] notReady=[] ports=[http:8080/TCP]"],
        ),
        (
            "publishNotReadyAddresses keeps not-ready and terminating pods as ready",
            service(http.clone(), json!({"publishNotReadyAddresses": true})),
            vec![
                pod("a", "10.0.0.1", true, terminating),
                pod("b", "10.0.0.2", false, json!({})),
            ],
            vec!["ready=[10.0.0.1,10.0.0.2] notReady=[] ports=[http:8080/TCP]"],
        ),
        (
            "named ports resolve per pod; a pod without the port is skipped for it",
            service(two.clone(), json!({})),
            vec![
                pod("a", "10.0.0.1", true, json!({})),
                pod("b", "10.0.0.2", true, no_dns_port),
            ],
            vec![
                "ready=[10.0.0.1] notReady=[] ports=[dns:53/UDP,http:8080/TCP]",
                "ready=[10.0.0.2] notReady=[] ports=[http:9090/TCP]",
            ],
        ),
        (
            "same addresses for every port pack into one subset",
            service(two, json!({})),
            vec![
                pod("a", "10.0.0.1", true, json!({})),
                pod("b", "10.0.0.2", false, json!({})),
            ],
            vec!["ready=[10.0.0.1] notReady=[10.0.0.2] ports=[dns:53/UDP,http:8080/TCP]"],
        ),
        (
            "numeric and defaulted target ports",
            service(
                json!([{"name": "a", "port": 80, "targetPort": 8000, "protocol": "TCP"},
                       {"name": "b", "port": 81, "protocol": "TCP"}]),
                json!({}),
            ),
            vec![pod("a", "10.0.0.1", true, json!({}))],
            vec!["ready=[10.0.0.1] notReady=[] ports=[a:8000/TCP,b:81/TCP]"],
        ),
        (
            "hostname published when the subdomain is the service",
            service(http.clone(), json!({})),
            vec![
                pod(
                    "a",
                    "10.0.0.1",
                    true,
                    json!({"spec": {"hostname": "h1", "subdomain": "web"}}),
                ),
                pod(
                    "b",
                    "10.0.0.2",
                    true,
                    json!({"spec": {"hostname": "h2", "subdomain": "other"}}),
                ),
            ],
            vec!["ready=[10.0.0.1(h1),10.0.0.2] notReady=[] ports=[http:8080/TCP]"],
        ),
        (
            "headless service without ports",
            service(json!([]), json!({"clusterIP": "None"})),
            vec![pod("a", "10.0.0.1", true, json!({}))],
            vec!["ready=[10.0.0.1] notReady=[] ports=[]"],
        ),
        (
            "a service with a cluster IP and no ports gets nothing",
            service(json!([]), json!({})),
            vec![pod("a", "10.0.0.1", true, json!({}))],
            vec![],
        ),
    ];
    for (name, svc, pods, want) in cases {
        let refs: Vec<&CachedPod> = pods.iter().collect();
        let got = compute_subsets(&svc, &refs);
        assert_eq!(show(&got), want, "{name}");
        // Input order does not matter: the result is canonical.
        let reversed: Vec<&CachedPod> = pods.iter().rev().collect();
        assert_eq!(compute_subsets(&svc, &reversed), got, "{name}: order");
    }
}

#[test]
fn addresses_carry_node_and_target() {
    let svc = service(
        json!([{"name": "http", "port": 80, "targetPort": "http"}]),
        json!({}),
    );
    let p = pod("a", "10.0.0.1", true, json!({}));
    let got = compute_subsets(&svc, &[&p]);
    let a = &got[0].addresses.as_ref().unwrap()[0];
    assert_eq!(a.node_name.as_deref(), Some("n1"));
    let t = a.target_ref.as_ref().unwrap();
    assert_eq!(
        (
            t.kind.as_deref(),
            t.name.as_deref(),
            t.namespace.as_deref(),
            t.uid.as_deref()
        ),
        (Some("Pod"), Some("a"), Some("ns"), Some("uid-a"))
    );
}

fn addrs(prefix: &str, n: usize) -> Vec<EndpointAddress> {
    (0..n)
        .map(|i| EndpointAddress {
            ip: format!("{prefix}.{}.{}", i / 250, i % 250),
            ..EndpointAddress::default()
        })
        .collect()
}

#[test]
fn repack_merges_ports_and_not_ready_wins() {
    let a = |ip: &str| EndpointAddress {
        ip: ip.to_owned(),
        ..EndpointAddress::default()
    };
    let port = |name: &str, n: i32| k8s_openapi::api::core::v1::EndpointPort {
        name: Some(name.to_owned()),
        port: n,
        protocol: Some("TCP".to_owned()),
        ..Default::default()
    };
    let input = vec![
        EndpointSubset {
            addresses: Some(vec![a("1.1.1.1"), a("1.1.1.2")]),
            ports: Some(vec![port("p", 1)]),
            ..Default::default()
        },
        EndpointSubset {
            addresses: Some(vec![a("1.1.1.2")]),
            not_ready_addresses: Some(vec![a("1.1.1.1")]),
            ports: Some(vec![port("p", 1), port("q", 2)]),
        },
    ];
    assert_eq!(
        show(&repack_subsets(&input)),
        ["ready=[1.1.1.2] notReady=[1.1.1.1] ports=[p:1/TCP,q:2/TCP]",]
    );
}

#[test]
fn truncation_keeps_ready_first_in_proportion() {
    // (ready per subset, not-ready per subset) → kept (ready, not-ready).
    type Case = (Vec<(usize, usize)>, Vec<(usize, usize)>, bool);
    let cases: Vec<Case> = vec![
        (vec![(500, 500)], vec![(500, 500)], false),
        (vec![(600, 600)], vec![(600, 400)], true),
        (vec![(1200, 10)], vec![(1000, 0)], true),
        // 300:900 of 1000 ready slots → 250 and 750.
        (vec![(300, 0), (900, 0)], vec![(250, 0), (750, 0)], true),
        // 800 ready kept, 200 not-ready slots split 1:3 → 50 and 150.
        (
            vec![(400, 100), (400, 300)],
            vec![(400, 50), (400, 150)],
            true,
        ),
    ];
    for (input, want, cut) in cases {
        let mut subsets: Vec<EndpointSubset> = input
            .iter()
            .enumerate()
            .map(|(i, (r, n))| EndpointSubset {
                addresses: Some(addrs(&format!("10.{i}"), *r)),
                not_ready_addresses: Some(addrs(&format!("11.{i}"), *n)),
                ports: None,
            })
            .collect();
        assert_eq!(truncate(&mut subsets), cut, "{input:?}");
        let got: Vec<(usize, usize)> = subsets
            .iter()
            .map(|s| {
                (
                    s.addresses.as_ref().map_or(0, Vec::len),
                    s.not_ready_addresses.as_ref().map_or(0, Vec::len),
                )
            })
            .collect();
        assert_eq!(got, want, "{input:?}");
        let total: usize = got.iter().map(|(r, n)| r + n).sum();
        assert!(total <= MAX_CAPACITY);
    }
}
