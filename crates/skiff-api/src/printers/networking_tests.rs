//! Endpoints, endpoint slices, ingresses, ingress classes, network policies.

use serde_json::{Value, json};

use super::testutil::{ago, header, res, wide_cells};
use crate::cells;

fn meta(name: &str) -> Value {
    json!({"name": name, "namespace": "default", "creationTimestamp": ago(3600)})
}

#[test]
fn endpoints_rows() {
    let r = res("", "Endpoints");
    assert_eq!(header(r, true), ["NAME", "ENDPOINTS", "AGE"]);
    let addrs = |ips: &[&str]| -> Value { ips.iter().map(|ip| json!({"ip": ip})).collect() };
    let cases: Vec<(Value, &str)> = vec![
        (json!({"metadata": meta("none")}), "<none>"),
        (
            json!({"metadata": meta("kubernetes"), "subsets": [
                {"addresses": addrs(&["192.168.1.10"]),
                 "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}]}),
            "192.168.1.10:6443",
        ),
        (
            json!({"metadata": meta("web"), "subsets": [
                {"addresses": addrs(&["10.42.0.5", "10.42.0.6"]),
                 "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]}]}),
            "10.42.0.5:80,10.42.0.6:80,10.42.0.5:443 + 1 more...",
        ),
        (
            json!({"metadata": meta("headless"), "subsets": [
                {"addresses": addrs(&["10.42.0.5", "10.42.0.6"])},
                {"addresses": addrs(&["fd00::1"]), "ports": [{"port": 53}]}]}),
            "10.42.0.5,10.42.0.6,[fd00::1]:53",
        ),
        (
            json!({"metadata": meta("many"), "subsets": [
                {"addresses": addrs(&["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"])}]}),
            "10.0.0.1,10.0.0.2,10.0.0.3 + 2 more...",
        ),
        (
            json!({"metadata": meta("notready"), "subsets": [
                {"notReadyAddresses": addrs(&["10.0.0.9"]), "ports": [{"port": 80}]}]}),
            "",
        ),
    ];
    for (ep, want) in cases {
        assert_eq!(
            wide_cells(r, &ep),
            cells![ep["metadata"]["name"].clone(), want, "60m"]
        );
    }
}

#[test]
fn endpoint_slice_rows() {
    let r = res("discovery.k8s.io", "EndpointSlice");
    assert_eq!(
        header(r, true),
        ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    );
    let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": meta("web-abc12"), "addressType": "IPv4",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "metrics"}, {},
                  {"port": 9000}],
        "endpoints": [
            {"addresses": ["10.42.0.5"], "conditions": {"ready": true}},
            {"addresses": ["10.42.0.6", "10.42.0.7"], "conditions": {"ready": false}},
            {"addresses": ["10.42.0.8"]}]});
    assert_eq!(
        wide_cells(r, &slice),
        cells![
            "web-abc12",
            "IPv4",
            "80,metrics,* + 1 more...",
            "10.42.0.5,10.42.0.6,10.42.0.7 + 1 more...",
            "60m"
        ]
    );
    let empty = json!({"metadata": meta("e"), "addressType": "IPv6", "endpoints": []});
    assert_eq!(
        wide_cells(r, &empty),
        cells!["e", "IPv6", "<unset>", "<unset>", "60m"]
    );
}

#[test]
fn ingress_rows() {
    let r = res("networking.k8s.io", "Ingress");
    assert_eq!(
        header(r, true),
        ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
    );
    let ing = |spec: Value, status: Value| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta("web"),
            "spec": spec, "status": status})
    };
    let rule = |host: &str| json!({"host": host, "http": {"paths": []}});
    let cases: Vec<(Value, Vec<Value>)> = vec![
        (
            ing(
                json!({"ingressClassName": "traefik", "rules": [rule("a.example.com")],
                "tls": [{"hosts": ["a.example.com"], "secretName": "a-tls"}]}),
                json!({"loadBalancer": {"ingress": [{"ip": "192.168.1.10"}, {"ip": "192.168.1.9"}]}}),
            ),
            cells![
                "web",
                "traefik",
                "a.example.com",
                "192.168.1.10,192.168.1.9",
                "80, 443",
                "60m"
            ],
        ),
        (
            ing(
                json!({"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}}),
                json!({}),
            ),
            cells!["web", "<none>", "*", "", "80", "60m"],
        ),
        (
            ing(
                json!({"rules": [rule("a"), {"http": {}}, rule("b"), rule("c"), rule("d"), rule("")]}),
                json!({}),
            ),
            cells!["web", "<none>", "a,b,c + 3 more...", "", "80", "60m"],
        ),
    ];
    for (obj, want) in cases {
        assert_eq!(wide_cells(r, &obj), want);
    }
}

#[test]
fn ingress_class_and_network_policy_rows() {
    let r = res("networking.k8s.io", "IngressClass");
    assert_eq!(header(r, true), ["NAME", "CONTROLLER", "PARAMETERS", "AGE"]);
    let ic = json!({"metadata": meta("nginx"), "spec": {"controller": "k8s.io/ingress-nginx",
        "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters",
            "name": "external-lb", "scope": "Cluster"}}});
    assert_eq!(
        wide_cells(r, &ic),
        cells![
            "nginx",
            "k8s.io/ingress-nginx",
            "IngressParameters.k8s.example.com/external-lb",
            "60m"
        ]
    );
    let core_params = json!({"metadata": meta("c"), "spec": {"controller": "x",
        "parameters": {"kind": "ConfigMap", "name": "cfg"}}});
    assert_eq!(wide_cells(r, &core_params)[2], "ConfigMap/cfg");
    let none = json!({"metadata": meta("n"), "spec": {"controller": "x"}});
    assert_eq!(wide_cells(r, &none)[2], "<none>");

    let r = res("networking.k8s.io", "NetworkPolicy");
    assert_eq!(header(r, true), ["NAME", "POD-SELECTOR", "AGE"]);
    let np = |sel: Value| json!({"metadata": meta("deny"), "spec": {"podSelector": sel}});
    assert_eq!(
        wide_cells(r, &np(json!({}))),
        cells!["deny", "<none>", "60m"]
    );
    assert_eq!(
        wide_cells(
            r,
            &np(json!({"matchLabels": {"role": "db"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["b", "a"]}]}))
        )[1],
        "role=db,tier notin (a,b)"
    );
    assert_eq!(
        wide_cells(
            r,
            &np(json!({"matchExpressions": [{"key": "bad key!", "operator": "Exists"}]}))
        )[1],
        "<error>"
    );
    assert_eq!(
        wide_cells(r, &json!({"metadata": meta("x"), "spec": {}}))[1],
        "<none>"
    );
}
