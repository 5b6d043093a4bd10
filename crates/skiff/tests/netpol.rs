//! NetworkPolicy end to end, two nodes on one machine (root only; see
//! `cluster::multinode`): a server pod on node B, clients on node A in its
//! namespace and in another; deny-all ingress, then allow by pod label on a
//! named port, by namespace label; then an egress policy on the client.
//! Each node's agent enforces the policies of its own pods (ingress on B,
//! egress on A).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;

use std::time::Duration;

use cluster::container;
use cluster::multinode::MultiNode;
use serde_json::{Value, json};

fn policy(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

#[test]
fn network_policies_deny_then_allow_by_label_namespace_and_egress() {
    let Some(mn) = MultiNode::start(2) else {
        return;
    };
    mn.apply(&json!({"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": "other", "labels": {"team": "b"}}}));
    let serve = "mkdir -p /www && echo hello > /www/index.html && \
                 (httpd -f -p 9090 -h /www &) && httpd -f -p 8080 -h /www";
    let mut server = mn.pod_on(
        1,
        "server",
        json!({"containers": [container("httpd", serve)]}),
    );
    server["spec"]["containers"][0]["ports"] = json!([{"name": "http", "containerPort": 8080}]);
    mn.apply(&server);
    mn.apply(&mn.pod_on(
        0,
        "client",
        json!({"containers": [container("c", "sleep 3600")]}),
    ));
    let mut outsider = mn.pod_on(
        0,
        "outsider",
        json!({"containers": [container("c", "sleep 3600")]}),
    );
    outsider["metadata"]["namespace"] = json!("other");
    mn.apply(&outsider);
    let server_ip = mn.wait_running("server");
    mn.wait_running("client");
    mn.wait_for(
        "pod other/outsider running",
        Duration::from_secs(60),
        || {
            mn.get_json(&["get", "pod", "-n", "other", "outsider"])
                .filter(|p| p["status"]["phase"] == "Running")
        },
    );

    // Whether `pod` (in `ns`) gets the page at `port` within 3 s.
    let reaches = |ns: &str, pod: &str, port: u16| {
        let fetch = format!("timeout 3 wget -qO- http://{server_ip}:{port}/");
        let out = mn.kubectl(&["exec", "-n", ns, pod, "--", "sh", "-c", &fetch]);
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "hello"
    };
    let eventually = |what: &str, check: &dyn Fn() -> bool| {
        mn.wait_for(what, Duration::from_secs(45), || check().then_some(()));
    };

    // No policy: both clients reach both ports (across nodes).
    eventually("client reaches the server", &|| {
        reaches("default", "client", 8080)
    });
    assert!(reaches("other", "outsider", 9090));

    // Deny all ingress in default.
    mn.apply(&policy("deny-all", json!({"podSelector": {}})));
    eventually("deny-all in force", &|| !reaches("default", "client", 8080));
    assert!(!reaches("other", "outsider", 8080));

    // Allow app=client on the server's named port "http" (8080) only.
    mn.apply(&policy(
        "allow-client",
        json!({"podSelector": {"matchLabels": {"app": "server"}},
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                            "ports": [{"port": "http"}]}]}),
    ));
    eventually("client allowed by label", &|| {
        reaches("default", "client", 8080)
    });
    assert!(!reaches("default", "client", 9090));
    assert!(!reaches("other", "outsider", 8080));

    // Allow namespace team=b.
    mn.apply(&policy(
        "allow-team-b",
        json!({"podSelector": {"matchLabels": {"app": "server"}},
               "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}]}]}),
    ));
    eventually("outsider allowed by namespace", &|| {
        reaches("other", "outsider", 9090)
    });

    // Egress: the client may send nothing, then only to the server's 8080.
    mn.apply(&policy(
        "client-egress",
        json!({"podSelector": {"matchLabels": {"app": "client"}}, "policyTypes": ["Egress"]}),
    ));
    eventually("client egress denied", &|| {
        !reaches("default", "client", 8080)
    });
    mn.apply(&policy(
        "client-egress",
        json!({"podSelector": {"matchLabels": {"app": "client"}}, "policyTypes": ["Egress"],
               "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "server"}}}],
                           "ports": [{"port": 8080}]}]}),
    ));
    eventually("client egress allowed to the server", &|| {
        reaches("default", "client", 8080)
    });
    assert!(reaches("other", "outsider", 9090));

    // Policies gone: open again.
    let out = mn.kubectl(&["delete", "networkpolicy", "--all"]);
    assert!(out.status.success(), "{out:?}");
    eventually("policies removed", &|| reaches("default", "client", 9090));
}
