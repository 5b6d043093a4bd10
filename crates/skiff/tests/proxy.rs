//! End to end: the agent's Service proxy. A pod behind a Service is reached
//! from the host by ClusterIP and by NodePort on 127.0.0.1; a Service
//! without endpoints refuses at once; `skiff agent --cleanup-proxy` removes
//! the table. Skipped without root or busybox-static.
//!
//! A guard table drops anything to the service CIDR or this cluster's pod
//! CIDR that would leave through an interface other than the test's bridge
//! (in postrouting, where the interface is the final one), so a packet that
//! misses the proxy's rules never leaves the machine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cluster::{Cluster, Names, container, phase};
use serde_json::json;

const NAMES: Names = Names {
    node: "skiff-proxy-e2e",
    bridge: "skiffpx0",
    nat_table: "skiff-px-nat",
    cluster_cidr: "10.247.0.0/16",
    scheduler: false,
};
const GUARD: &str = "skiff-px-guard";

fn nft(script: &str) {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "{script}");
}

struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", GUARD])
            .status();
    }
}

fn fetch(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

#[test]
fn services_reach_pods_through_the_agents_proxy() {
    let Some(c) = Cluster::start(NAMES) else {
        return;
    };
    let _guard = Guard;
    nft(&format!(
        "table ip {GUARD} {{\n chain out {{\n  type filter hook postrouting priority 0; policy accept;\n  \
         ip daddr {{ 10.43.0.0/16, {} }} oifname != \"{}\" drop\n }}\n}}\n",
        NAMES.cluster_cidr, NAMES.bridge
    ));

    c.apply(&json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"nodeName": NAMES.node, "terminationGracePeriodSeconds": 1,
                 "containers": [merge_ports(container("c", "exec busybox nc -ll -p 8080 -e echo hi"))]}}));
    c.wait_pod("web", "Ready", |p| {
        phase(p) == "Running"
            && p["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
    });
    c.apply(&json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"type": "NodePort", "selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}));
    c.apply(&json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "nobody", "namespace": "default"},
        "spec": {"selector": {"app": "nobody"}, "ports": [{"port": 80}]}}));
    let svc = c.get_json(&["get", "service", "web"]).unwrap();
    let ip: std::net::Ipv4Addr = svc["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
    let node_port = svc["spec"]["ports"][0]["nodePort"].as_u64().unwrap() as u16;

    // The named targetPort resolves through the EndpointSlice; the host
    // reaches the pod by ClusterIP and by NodePort on 127.0.0.1.
    for addr in [
        SocketAddr::from((ip, 80)),
        SocketAddr::from(([127, 0, 0, 1], node_port)),
    ] {
        let got = c.wait_for(
            &format!("{addr} to answer"),
            Duration::from_secs(30),
            || fetch(addr).ok().filter(|s| s.trim() == "hi"),
        );
        assert_eq!(got.trim(), "hi");
    }

    // No endpoints: rejected (EPERM for the host's own connect, as the
    // reject happens in its output path), not a hang.
    let none = c.get_json(&["get", "service", "nobody"]).unwrap();
    let none_ip: std::net::Ipv4Addr = none["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
    let err = c.wait_for(
        "the endpoint-less Service to reject",
        Duration::from_secs(30),
        || {
            let started = Instant::now();
            fetch(SocketAddr::from((none_ip, 80)))
                .err()
                .filter(|e| {
                    matches!(
                        e.kind(),
                        ErrorKind::ConnectionRefused | ErrorKind::PermissionDenied
                    )
                })
                .map(|e| (e, started.elapsed()))
        },
    );
    assert!(err.1 < Duration::from_secs(1), "{err:?}");

    // The agent serves kube-proxy's sync metrics (and the policy
    // enforcer's) on --proxy-metrics-bind-address: both loops synced, none
    // failed.
    let metrics = scrape(c.proxy_metrics_port());
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
            .parse()
            .unwrap()
    };
    assert!(value("kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family=\"IPv4\"}") > 0.0);
    assert!(value("kubeproxy_sync_proxy_rules_duration_seconds_count{ip_family=\"IPv4\"}") >= 2.0);
    assert_eq!(
        value("kubeproxy_sync_proxy_rules_nftables_sync_failures_total{ip_family=\"IPv4\"}"),
        0.0
    );
    assert!(value("skiff_proxy_rules") > 0.0);
    assert!(value("skiff_network_policy_sync_last_timestamp_seconds") > 0.0);
    assert_eq!(value("skiff_network_policy_sync_failures_total"), 0.0);

    // Clean uninstall of the proxy's rules.
    let table = cluster::proxy_table(&NAMES);
    let listed = |t: &str| {
        Command::new("nft")
            .args(["list", "table", "ip", t])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(listed(&table));
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["agent", "--cleanup-proxy", "--proxy-table", &table])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!listed(&table));
}

/// `GET /metrics` from the agent's plain-HTTP metrics listener.
fn scrape(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

/// The container with a named port `http` (8080) for the Service's targetPort.
fn merge_ports(mut c: serde_json::Value) -> serde_json::Value {
    c["ports"] = json!([{"name": "http", "containerPort": 8080}]);
    c
}
