//! NetworkPolicy rules on the real kernel (root only, no cluster): a "node"
//! network namespace holds a bridge and the policy table; each "pod" is a
//! network namespace on that bridge, as the built-in pod network wires
//! them, so same-node pod traffic is bridged and seen through
//! bridge-nf-call-iptables. Traffic never leaves these namespaces; a guard
//! removes them even when an assertion fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{ErrorKind, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{Value, json};
use skiff_proxy::netpol::{Enforcer, NetpolConfig};
use skiff_sys::nft::NftCli;
use support::{have, in_netns, is_root, run, serve_tcp};

/// A node namespace with bridge `br0` at 10.251.N.1/24 and pod namespaces
/// on it (10.251.N.10, .11, …).
struct Node {
    ns: String,
    pods: Vec<String>,
    subnet: u8,
}

impl Node {
    fn create(pods: usize) -> Option<Node> {
        if !is_root() || !have("ip") || !have("nft") {
            eprintln!("skipping: needs root, ip and nft");
            return None;
        }
        let pid = std::process::id();
        let subnet = 100 + (pid % 100) as u8;
        let node = Node {
            ns: format!("sknp{pid}n"),
            pods: (0..pods).map(|i| format!("sknp{pid}p{i}")).collect(),
            subnet,
        };
        for ns in std::iter::once(&node.ns).chain(&node.pods) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .output();
            run("ip", &["netns", "add", ns]);
            run("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        let n = node.ns.as_str();
        run(
            "ip",
            &[
                "-n",
                n,
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "nf_call_iptables",
                "1",
            ],
        );
        run(
            "ip",
            &[
                "-n",
                n,
                "addr",
                "add",
                &format!("{}/24", node.gateway()),
                "dev",
                "br0",
            ],
        );
        run("ip", &["-n", n, "link", "set", "br0", "up"]);
        // Per namespace; absent without br_netfilter (the bridge option
        // above then still holds).
        let _ = in_netns(n, || {
            std::fs::write("/proc/sys/net/bridge/bridge-nf-call-iptables", "1")
        });
        for (i, pod) in node.pods.iter().enumerate() {
            let host_end = format!("v{i}");
            run(
                "ip",
                &[
                    "-n", n, "link", "add", &host_end, "type", "veth", "peer", "name", "eth0",
                    "netns", pod,
                ],
            );
            run("ip", &["-n", n, "link", "set", &host_end, "master", "br0"]);
            run("ip", &["-n", n, "link", "set", &host_end, "up"]);
            let ip = format!("{}/24", node.pod_ip(i));
            run("ip", &["-n", pod, "addr", "add", &ip, "dev", "eth0"]);
            run("ip", &["-n", pod, "link", "set", "eth0", "up"]);
        }
        Some(node)
    }

    fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 251, self.subnet, 1)
    }

    fn pod_ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 251, self.subnet, 10 + i as u8)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for ns in std::iter::once(&self.ns).chain(&self.pods) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .output();
        }
    }
}

/// Connects from namespace `ns` to `addr` and reads the listener's tag;
/// `None` when the connection times out (a policy dropped it).
fn fetch(ns: &str, addr: SocketAddr, timeout: Duration) -> Option<String> {
    in_netns(ns, move || {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(mut stream) => {
                stream
                    .set_read_timeout(Some(Duration::from_secs(3)))
                    .unwrap();
                let mut out = String::new();
                stream.read_to_string(&mut out).unwrap();
                Some(out)
            }
            Err(e) if e.kind() == ErrorKind::TimedOut => None,
            Err(e) => panic!("connect {addr} from {ns}: {e}"),
        }
    })
}

fn pod(ns: &str, name: &str, labels: Value, ip: Ipv4Addr) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name, "labels": labels},
        "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "busybox",
                 "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"phase": "Running", "podIP": ip.to_string()}
    }))
    .unwrap()
}

fn namespace(name: &str, team: &str) -> Namespace {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": {"team": team}}})).unwrap()
}

fn policy(ns: &str, name: &str, spec: Value) -> NetworkPolicy {
    serde_json::from_value(json!({"metadata": {"namespace": ns, "name": name}, "spec": spec}))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_policies_filter_bridged_pod_traffic() {
    let Some(node) = Node::create(4) else {
        return;
    };
    // Pods: 0 web (prod, app=web; "http" is 8080), 1 client (prod,
    // role=client), 2 client (dev, role=client), 3 other (dev, no labels).
    let (web, prod_client, dev_client, other) = (0, 1, 2, 3);
    let pods = [
        pod("prod", "web", json!({"app": "web"}), node.pod_ip(web)),
        pod(
            "prod",
            "client",
            json!({"role": "client"}),
            node.pod_ip(prod_client),
        ),
        pod(
            "dev",
            "client",
            json!({"role": "client"}),
            node.pod_ip(dev_client),
        ),
        pod("dev", "other", json!({}), node.pod_ip(other)),
    ];
    let namespaces = [namespace("prod", "a"), namespace("dev", "b")];
    let pod_refs: Vec<&Pod> = pods.iter().collect();
    let ns_refs: Vec<&Namespace> = namespaces.iter().collect();
    let _http = serve_tcp(
        &node.pods[web],
        SocketAddr::from((node.pod_ip(web), 8080)),
        "web-8080",
    );
    let _alt = serve_tcp(
        &node.pods[web],
        SocketAddr::from((node.pod_ip(web), 9090)),
        "web-9090",
    );
    let _dev = serve_tcp(
        &node.pods[dev_client],
        SocketAddr::from((node.pod_ip(dev_client), 8080)),
        "dev-8080",
    );

    let mut enforcer = Enforcer::new(
        NetpolConfig {
            table: "skiff-netpol-test".into(),
            node_name: "node-a".into(),
        },
        NftCli::new().in_netns(&node.ns),
    )
    .unwrap();
    let mut apply = async |policies: &[NetworkPolicy]| {
        let refs: Vec<&NetworkPolicy> = policies.iter().collect();
        enforcer.sync(&refs, &pod_refs, &ns_refs).await.unwrap();
    };
    let http = SocketAddr::from((node.pod_ip(web), 8080));
    let alt = SocketAddr::from((node.pod_ip(web), 9090));
    let dev_http = SocketAddr::from((node.pod_ip(dev_client), 8080));
    let host = SocketAddr::from((node.gateway(), 7070));
    let allowed =
        |from: usize, to: SocketAddr| fetch(&node.pods[from], to, Duration::from_secs(3)).is_some();
    let denied = |from: usize, to: SocketAddr| {
        fetch(&node.pods[from], to, Duration::from_millis(800)).is_none()
    };

    // No policy: everything flows.
    apply(&[]).await;
    assert!(allowed(prod_client, http));
    assert!(allowed(other, alt));

    // Deny all ingress in prod; the node itself still reaches the pod.
    let deny_all = policy("prod", "deny-all", json!({"podSelector": {}}));
    apply(std::slice::from_ref(&deny_all)).await;
    assert!(denied(prod_client, http));
    assert!(denied(dev_client, http));
    assert_eq!(
        fetch(&node.ns, http, Duration::from_secs(3)).as_deref(),
        Some("web-8080")
    );
    // dev is not isolated.
    assert!(allowed(prod_client, dev_http));

    // Allow by pod label on the named port: 8080 only, from prod's clients.
    let by_label = policy(
        "prod",
        "by-label",
        json!({"podSelector": {"matchLabels": {"app": "web"}},
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                            "ports": [{"port": "http"}]}]}),
    );
    apply(&[deny_all.clone(), by_label.clone()]).await;
    assert!(allowed(prod_client, http));
    assert!(denied(prod_client, alt));
    assert!(denied(dev_client, http));

    // Allow by namespace label.
    let by_ns = policy(
        "prod",
        "by-ns",
        json!({"podSelector": {"matchLabels": {"app": "web"}},
               "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}]}]}),
    );
    apply(&[deny_all.clone(), by_ns]).await;
    assert!(allowed(dev_client, alt));
    assert!(allowed(other, http));
    assert!(denied(prod_client, http));

    // ipBlock with a hole.
    let subnet = format!("10.251.{}.0/24", node.subnet);
    let hole = format!("{}/32", node.pod_ip(other));
    let by_block = policy(
        "prod",
        "by-block",
        json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": subnet, "except": [hole]}}]}]}),
    );
    apply(&[by_block]).await;
    assert!(allowed(prod_client, http));
    assert!(allowed(dev_client, alt));
    assert!(denied(other, http));

    // Egress: dev's client may send nowhere, then only to web's "http".
    let egress_deny = policy(
        "dev",
        "egress-deny",
        json!({"podSelector": {"matchLabels": {"role": "client"}}, "policyTypes": ["Egress"]}),
    );
    apply(std::slice::from_ref(&egress_deny)).await;
    assert!(denied(dev_client, http));
    assert!(allowed(other, http));
    // Egress to the node itself (the input hook) is policed too.
    let _host = serve_tcp(&node.ns, host, "host");
    assert!(denied(dev_client, host));
    assert!(allowed(other, host));
    // Its ingress is not isolated, and replies to it are return traffic.
    assert!(allowed(other, dev_http));
    let egress_web = policy(
        "dev",
        "egress-web",
        json!({"podSelector": {"matchLabels": {"role": "client"}},
               "egress": [{"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}],
                           "ports": [{"port": "http"}]}]}),
    );
    apply(&[egress_deny.clone(), egress_web]).await;
    assert!(allowed(dev_client, http));
    assert!(denied(dev_client, alt));
    assert!(denied(
        dev_client,
        SocketAddr::from((node.pod_ip(other), 8080))
    ));

    // Return traffic: web may send nothing on its own (egress deny-all) nor
    // take connections from anyone but prod's client; the reply to that
    // client still gets back.
    let web_locked = policy(
        "prod",
        "web-locked",
        json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress", "Egress"],
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]}),
    );
    apply(std::slice::from_ref(&web_locked)).await;
    assert_eq!(
        fetch(&node.pods[prod_client], http, Duration::from_secs(3)).as_deref(),
        Some("web-8080")
    );
    assert!(denied(web, dev_http));

    // Policies gone: open again.
    apply(&[]).await;
    assert!(allowed(other, http));
    assert!(allowed(web, dev_http));
}
