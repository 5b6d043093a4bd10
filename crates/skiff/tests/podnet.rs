//! End to end, two nodes on one machine (root only; see
//! `cluster::multinode`): each node's agent routes the other's podCIDR via
//! its address, a pod on one node reaches a pod on the other by its pod IP
//! with its own source address, a stale route from an earlier run is
//! reconciled away, and `skiff agent --cleanup` removes the routes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;

use std::time::Duration;

use cluster::container;
use cluster::multinode::{MultiNode, Options};
use serde_json::json;

/// `ip route ... proto 83`: the agent's pod routes.
const PROTO: &str = "83";

#[test]
fn pods_reach_each_other_across_nodes_with_their_own_addresses() {
    // A route a previous run left: ours by protocol, for no node.
    let stale = "10.241.250.0/24";
    let plant = move |i: usize, netns: &str, node_ip: std::net::Ipv4Addr| {
        if i == 1 {
            let [a, b, c, _] = node_ip.octets();
            let via = format!("{a}.{b}.{c}.99");
            let out = std::process::Command::new("ip")
                .args([
                    "-n", netns, "route", "add", stale, "via", &via, "proto", PROTO,
                ])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        }
    };
    let Some(mn) = MultiNode::start_with(Options {
        nodes: 2,
        before_agent: Some(Box::new(plant)),
        ..Options::default()
    }) else {
        return;
    };
    let (a, b) = (&mn.nodes[0], &mn.nodes[1]);
    let cidr = |i: usize| {
        mn.wait_node_ready(i)["spec"]["podCIDR"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (cidr_a, cidr_b) = (cidr(0), cidr(1));
    assert_ne!(cidr_a, cidr_b);

    // Each node routes the other's podCIDR via the other's address, and
    // only that: the stale route is gone.
    mn.wait_for(
        "host-gw routes on both nodes",
        Duration::from_secs(30),
        || {
            let on_a = a.ip(&["route", "show", "proto", PROTO]);
            let on_b = b.ip(&["route", "show", "proto", PROTO]);
            let want_a = format!("{cidr_b} via {} dev eth0", b.ip);
            let want_b = format!("{cidr_a} via {} dev eth0", a.ip);
            let only = |routes: &str, want: &str| {
                let lines: Vec<&str> = routes.lines().collect();
                lines.len() == 1 && lines[0].starts_with(want)
            };
            (only(&on_a, &want_a) && only(&on_b, &want_b)).then_some(())
        },
    );

    // Pod B serves its client's address over HTTP (busybox httpd CGI).
    let serve = "mkdir -p /www/cgi-bin && \
                 printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' \
                   > /www/cgi-bin/peer && chmod +x /www/cgi-bin/peer && \
                 httpd -f -p 8080 -h /www";
    mn.apply(&mn.pod_on(
        1,
        "server",
        json!({"containers": [container("httpd", serve)]}),
    ));
    mn.apply(&mn.pod_on(
        0,
        "client",
        json!({"containers": [container("c", "sleep 3600")]}),
    ));
    let server_ip = mn.wait_running("server");
    let client_ip = mn.wait_running("client");
    assert!(cluster::multinode::CLUSTER_CIDR.starts_with("10.241."));
    assert!(
        server_ip
            .to_string()
            .starts_with(cidr_b.trim_end_matches("0/24")),
        "{server_ip} not in {cidr_b}"
    );
    assert!(
        client_ip
            .to_string()
            .starts_with(cidr_a.trim_end_matches("0/24")),
        "{client_ip} not in {cidr_a}"
    );

    // A → B across nodes; B sees A's pod address (no SNAT inside the cluster).
    let url = format!("http://{server_ip}:8080/cgi-bin/peer");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let seen = loop {
        // sh runs busybox applets the image has no links for (timeout).
        let fetch = format!("timeout 5 wget -qO- {url}");
        let (ok, out, err) = mn.exec("client", &["sh", "-c", &fetch]);
        if ok {
            break out.trim().to_owned();
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "client cannot reach {url}: {out} {err}\nroutes on A: {}\nroutes on B: {}\n\
                 server log: {}\nagent A:\n{}\nagent B:\n{}",
                a.ip(&["route"]),
                b.ip(&["route"]),
                mn.logs(&["server"]),
                mn.agent_log_tail(0),
                mn.agent_log_tail(1)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    // busybox httpd listens on IPv6 and reports IPv4 peers v4-mapped.
    let peer = seen
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_start_matches("::ffff:");
    assert_eq!(peer, client_ip.to_string(), "server saw {seen}");
    // (TCP needed both directions: B's node routed the answer to A's podCIDR.)

    // `skiff agent --cleanup` takes node A's routes away (its agent puts
    // them back later; this checks only the clean-up itself).
    let out = a.skiff(&[
        "agent",
        "--cleanup",
        "--node-name",
        &a.name,
        "--cluster-cidr",
        cluster::multinode::CLUSTER_CIDR,
        "--pod-bridge",
        "skmnunused0",
        "--pod-nat-table",
        "skmn-unused-nat",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(a.ip(&["route", "show", "proto", PROTO]).trim(), "");
}
