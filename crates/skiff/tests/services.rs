//! End to end, two nodes on one machine (root only; see
//! `cluster::multinode`): Services through each node's proxy and cluster
//! DNS through the kube-dns Service, as pods and hosts use them.
//!
//! Backends `web-a` (node 1) and `web-b` (node 2) answer their hostname over
//! HTTP; a client pod on node 1 and the hosts call them through Services:
//! - load spread over endpoints on both nodes, by ClusterIP and by NodePort
//!   (from the host's namespace and from the other node's);
//! - hairpin: a backend calling a Service of its own lands on itself;
//! - sessionAffinity ClientIP: one client, one backend;
//! - a backend whose readiness probe fails leaves the rotation;
//! - a Service without endpoints refuses at once rather than hang;
//! - busybox nslookup through the kube-dns ClusterIP: Service FQDNs, short
//!   names through the search path, headless Services and their pods'
//!   hostname/subdomain records.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use cluster::container;
use cluster::multinode::{CLUSTER_DNS, MultiNode};
use serde_json::{Value, json};

/// The backends' HTTP port.
const PORT: u16 = 8080;

/// Serves `GET /cgi-bin/host` (the pod's hostname) while /tmp/ready exists
/// for the readiness probe.
const SERVE: &str = "mkdir -p /www/cgi-bin && \
     printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\nhostname\\n' \
       > /www/cgi-bin/host && chmod +x /www/cgi-bin/host && \
     touch /tmp/ready && exec httpd -f -p 8080 -h /www";

/// A backend pod on node `index`, labelled `tier: web`.
fn backend(mn: &MultiNode, index: usize, name: &str) -> Value {
    let mut c = container("httpd", SERVE);
    c["ports"] = json!([{"name": "http", "containerPort": PORT}]);
    c["readinessProbe"] = json!({"exec": {"command": ["cat", "/tmp/ready"]},
                                 "periodSeconds": 1, "failureThreshold": 1});
    let mut pod = mn.pod_on(index, name, json!({"containers": [c]}));
    pod["metadata"]["labels"]["tier"] = json!("web");
    pod
}

fn service(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": "default"},
           "spec": spec})
}

fn cluster_ip(mn: &MultiNode, svc: &str) -> Ipv4Addr {
    let s = mn.get_json(&["get", "service", svc]).unwrap();
    s["spec"]["clusterIP"].as_str().unwrap().parse().unwrap()
}

/// `n` requests from `pod` to `http://ADDR/cgi-bin/host`, one a line in the
/// reply: the hostname, or `FAIL` for a request that failed.
fn ask(mn: &MultiNode, pod: &str, addr: &str, n: u32) -> Vec<String> {
    let script = format!(
        "for i in $(seq {n}); do timeout 3 wget -qO- http://{addr}/cgi-bin/host || echo FAIL; done"
    );
    let (ok, out, err) = mn.exec(pod, &["sh", "-c", &script]);
    assert!(ok, "exec in {pod}: {err}");
    out.lines().map(|l| l.trim().to_owned()).collect()
}

/// How many times each answer came.
fn tally(answers: &[String]) -> BTreeMap<String, usize> {
    let mut t = BTreeMap::new();
    for a in answers {
        *t.entry(a.clone()).or_default() += 1;
    }
    t
}

/// One HTTP/1.0 request from this (the host's) namespace; the body's last line.
fn host_get(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(b"GET /cgi-bin/host HTTP/1.0\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out.lines().last().unwrap_or_default().trim().to_owned())
}

/// Retries `f` until one round of its answers holds every one of `want`
/// (hostnames), for up to 30 s; returns that round's tally.
fn until_all_seen(
    mn: &MultiNode,
    what: &str,
    want: &[&str],
    mut f: impl FnMut() -> Vec<String>,
) -> BTreeMap<String, usize> {
    mn.wait_for(what, Duration::from_secs(30), || {
        let t = tally(&f());
        want.iter().all(|w| t.contains_key(*w)).then_some(t)
    })
}

#[test]
fn services_balance_across_nodes_and_follow_readiness() {
    let Some(mn) = MultiNode::start(2) else {
        return;
    };
    mn.apply(&backend(&mn, 0, "web-a"));
    mn.apply(&backend(&mn, 1, "web-b"));
    mn.apply(&mn.pod_on(
        0,
        "client",
        json!({"containers": [container("c", "sleep 3600")]}),
    ));
    let ports = json!([{"name": "http", "port": 80, "targetPort": "http"}]);
    mn.apply(&service(
        "web",
        json!({"type": "NodePort", "selector": {"tier": "web"}, "ports": ports}),
    ));
    mn.apply(&service(
        "sticky",
        json!({"selector": {"tier": "web"}, "ports": ports,
               "sessionAffinity": "ClientIP"}),
    ));
    mn.apply(&service(
        "only-a",
        json!({"selector": {"app": "web-a"}, "ports": ports}),
    ));
    mn.apply(&service(
        "nobody",
        json!({"selector": {"app": "nobody"}, "ports": ports}),
    ));
    mn.wait_running("web-a");
    mn.wait_running("web-b");
    mn.wait_running("client");
    let web = cluster_ip(&mn, "web");

    // Pod → ClusterIP: the client (node 1) reaches both backends, one of
    // them on the other node.
    let seen = until_all_seen(
        &mn,
        "both backends by ClusterIP",
        &["web-a", "web-b"],
        || ask(&mn, "client", &web.to_string(), 20),
    );
    assert!(!seen.contains_key("FAIL"), "{seen:?}");

    // NodePort from the host's namespace to node 1's address: both
    // backends, the one on node 2 forwarded (and masqueraded) by node 1.
    let svc = mn.get_json(&["get", "service", "web"]).unwrap();
    let node_port = u16::try_from(svc["spec"]["ports"][0]["nodePort"].as_u64().unwrap()).unwrap();
    let (n1, n2) = (&mn.nodes[0], &mn.nodes[1]);
    let to_n1 = SocketAddr::from((n1.ip, node_port));
    let seen = until_all_seen(
        &mn,
        "both backends by NodePort from the host",
        &["web-a", "web-b"],
        || {
            (0..20)
                .map(|_| host_get(to_n1).unwrap_or_else(|e| format!("FAIL {e}")))
                .collect()
        },
    );
    assert!(seen.keys().all(|k| !k.starts_with("FAIL")), "{seen:?}");

    // NodePort from the other node's namespace (its host, not a pod).
    let url = format!("http://{}:{node_port}/cgi-bin/host", n1.ip);
    let seen = until_all_seen(&mn, "NodePort from node 2", &["web-a", "web-b"], || {
        (0..10)
            .map(|_| {
                let out = n2
                    .command("timeout")
                    .args(["3", "busybox", "wget", "-qO-", &url])
                    .output()
                    .unwrap();
                if out.status.success() {
                    String::from_utf8_lossy(&out.stdout).trim().to_owned()
                } else {
                    format!("FAIL {}", String::from_utf8_lossy(&out.stderr).trim())
                }
            })
            .collect()
    });
    assert!(seen.keys().all(|k| !k.starts_with("FAIL")), "{seen:?}");

    // Hairpin: web-a calling a Service whose one endpoint is itself.
    let only_a = cluster_ip(&mn, "only-a").to_string();
    let answers = ask(&mn, "web-a", &only_a, 5);
    assert_eq!(tally(&answers), BTreeMap::from([("web-a".to_owned(), 5)]));

    // sessionAffinity ClientIP: every request of one client to one backend.
    let sticky = cluster_ip(&mn, "sticky").to_string();
    let answers = ask(&mn, "client", &sticky, 20);
    let t = tally(&answers);
    assert_eq!(t.len(), 1, "one backend for one client: {t:?}");
    assert!(t.contains_key("web-a") || t.contains_key("web-b"), "{t:?}");

    // No endpoints: refused at once (TCP reset), not a hang until timeout.
    let nobody = cluster_ip(&mn, "nobody");
    let (ok, out, err) = mn.exec(
        "client",
        &[
            "sh",
            "-c",
            &format!("timeout 10 wget -qO- http://{nobody}/; echo rc=$?"),
        ],
    );
    assert!(ok, "{err}");
    assert!(
        err.contains("Connection refused") && out.trim() == "rc=1",
        "expected a refusal: {out} {err}"
    );

    // web-b's readiness probe fails: it leaves the EndpointSlice's ready
    // endpoints and then the rotation; web-a alone answers.
    let b_ip = mn.wait_running("web-b").to_string();
    let (ok, _, err) = mn.exec("web-b", &["busybox", "rm", "/tmp/ready"]);
    assert!(ok, "{err}");
    mn.wait_for(
        "web-b not ready in the slice",
        Duration::from_secs(30),
        || {
            let slices = mn.get_json(&[
                "get",
                "endpointslices",
                "-l",
                "kubernetes.io/service-name=web",
            ])?;
            let not_ready = slices["items"].as_array()?.iter().any(|s| {
                s["endpoints"].as_array().is_some_and(|eps| {
                    eps.iter().any(|e| {
                        e["addresses"][0] == b_ip.as_str() && e["conditions"]["ready"] == false
                    })
                })
            });
            not_ready.then_some(())
        },
    );
    mn.wait_for("web-b out of rotation", Duration::from_secs(30), || {
        let t = tally(&ask(&mn, "client", &web.to_string(), 10));
        (t.len() == 1 && t.contains_key("web-a")).then_some(())
    });
    let t = tally(&ask(&mn, "client", &web.to_string(), 30));
    assert_eq!(t, BTreeMap::from([("web-a".to_owned(), 30)]));
}

/// What busybox nslookup found for `name`: each answered name with its
/// addresses, sorted (busybox asks for the name under every search domain at
/// once and prints every answer), and its whole output.
fn nslookup(mn: &MultiNode, pod: &str, name: &str) -> (Vec<(String, Vec<String>)>, String) {
    let (_, out, err) = mn.exec(pod, &["busybox", "nslookup", "-type=a", name]);
    let mut found: Vec<(String, Vec<String>)> = Vec::new();
    // Blocks after the server's own: "Name:\tN" then "Address: A" lines.
    for block in out.split("\n\n").skip(1) {
        let mut name = None;
        let mut addresses = Vec::new();
        for line in block.lines() {
            if let Some(n) = line.strip_prefix("Name:") {
                name = Some(n.trim().to_owned());
            } else if let Some(a) = line.strip_prefix("Address:") {
                addresses.push(a.trim().to_owned());
            }
        }
        if let Some(name) = name {
            addresses.sort();
            found.push((name, addresses));
        }
    }
    found.sort();
    (found, format!("{out}{err}"))
}

/// `[(name, [addresses])]`, as [`nslookup`] returns it.
fn answer(name: &str, addresses: &[&str]) -> Vec<(String, Vec<String>)> {
    let mut addresses: Vec<String> = addresses.iter().map(|a| (*a).to_owned()).collect();
    addresses.sort();
    vec![(name.to_owned(), addresses)]
}

#[test]
fn pods_resolve_services_and_headless_pods_through_cluster_dns() {
    let Some(mn) = MultiNode::start(2) else {
        return;
    };
    // A headless Service over pods with hostname/subdomain on both nodes.
    let member = |index: usize, name: &str, host: &str| {
        let mut pod = mn.pod_on(
            index,
            name,
            json!({"hostname": host, "subdomain": "db",
                   "containers": [container("c", "sleep 3600")]}),
        );
        pod["metadata"]["labels"]["tier"] = json!("db");
        pod
    };
    mn.apply(&member(0, "db-0", "h0"));
    mn.apply(&member(1, "db-1", "h1"));
    mn.apply(&service(
        "db",
        json!({"clusterIP": "None", "selector": {"tier": "db"},
               "ports": [{"port": 5432}]}),
    ));
    mn.apply(&service(
        "web",
        json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}),
    ));
    mn.apply(&mn.pod_on(
        1,
        "client",
        json!({"containers": [container("c", "sleep 3600")]}),
    ));
    let ip0 = mn.wait_running("db-0").to_string();
    let ip1 = mn.wait_running("db-1").to_string();
    mn.wait_running("client");
    let web = cluster_ip(&mn, "web").to_string();
    let kubernetes = cluster_ip(&mn, "kubernetes").to_string();

    // The pod's resolver is the kube-dns ClusterIP with the search path.
    let (ok, resolv, err) = mn.exec("client", &["cat", "/etc/resolv.conf"]);
    assert!(ok, "{err}");
    assert!(
        resolv.contains(&format!("nameserver {CLUSTER_DNS}")),
        "{resolv}"
    );
    assert!(
        resolv.contains("search default.svc.cluster.local"),
        "{resolv}"
    );

    // A Service by its FQDN (the first answer waits for the kube-dns
    // Service, its endpoint and the nodes' proxies).
    let fqdn = "web.default.svc.cluster.local";
    let mut last = String::new();
    let resolved = (0..90).find_map(|_| {
        let (found, out) = nslookup(&mn, "client", fqdn);
        last = out;
        if found.is_empty() {
            std::thread::sleep(Duration::from_millis(500));
            return None;
        }
        Some(found)
    });
    let got = resolved.unwrap_or_else(|| {
        panic!(
            "{fqdn} did not resolve: {last}\nkube-dns: {:?}\nagent 2:\n{}",
            mn.get_json(&["-n", "kube-system", "get", "endpointslices"]),
            mn.agent_log_tail(1)
        )
    });
    assert_eq!(got, answer(fqdn, &[&web]));
    // Short names through the search path (busybox searches only names
    // without a dot): each found under the one search domain that has it.
    let db = "db.default.svc.cluster.local";
    let both = answer(db, &[&ip0, &ip1]);
    // (The headless Service's EndpointSlice may trail its pods' readiness.)
    mn.wait_for(
        "the headless Service's pods",
        Duration::from_secs(30),
        || (nslookup(&mn, "client", db).0 == both).then_some(()),
    );
    for (name, want) in [
        ("web", answer(fqdn, &[&web])),
        (
            "kubernetes",
            answer("kubernetes.default.svc.cluster.local", &[&kubernetes]),
        ),
        // A headless Service: every ready pod.
        ("db", both.clone()),
    ] {
        let (found, out) = nslookup(&mn, "client", name);
        assert_eq!(found, want, "{name}: {out}");
    }
    // Each pod of the headless Service by hostname.subdomain.
    for (host, ip) in [("h0", &ip0), ("h1", &ip1)] {
        let name = format!("{host}.db.default.svc.cluster.local");
        let (found, out) = nslookup(&mn, "client", &name);
        assert_eq!(found, answer(&name, &[ip]), "{out}");
    }
    // An unknown name: NXDOMAIN, no address.
    let (found, out) = nslookup(&mn, "client", "nope.default.svc.cluster.local");
    assert!(found.is_empty() && out.contains("NXDOMAIN"), "{out}");
}
