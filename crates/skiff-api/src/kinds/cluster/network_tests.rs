#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;

use crate::kinds::core::util::messages;
use crate::kinds::{default, prepare_create, validate, validate_update};

const NET: &str = "networking.k8s.io";

#[test]
fn network_policy_defaults() {
    let mut np = json!({"spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]}});
    default(NET, "NetworkPolicy", &mut np);
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress"]));
    assert_eq!(np["spec"]["ingress"][0]["ports"][0]["protocol"], "TCP");
    let mut egress = json!({"spec": {"podSelector": {}, "egress": [{}]}});
    default(NET, "NetworkPolicy", &mut egress);
    assert_eq!(egress["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    let again = egress.clone();
    default(NET, "NetworkPolicy", &mut egress);
    assert_eq!(egress, again);
    let mut explicit =
        json!({"spec": {"podSelector": {}, "egress": [{}], "policyTypes": ["Egress"]}});
    default(NET, "NetworkPolicy", &mut explicit);
    assert_eq!(explicit["spec"]["policyTypes"], json!(["Egress"]));
}

#[test]
fn network_policy_validation() {
    let np = json!({"spec": {
        "podSelector": {"matchExpressions": [{"key": "app", "operator": "In"}]},
        "ingress": [{
            "ports": [{"port": 80, "endPort": 70}, {"port": "http", "endPort": 90}, {"protocol": "ICMP"}],
            "from": [
                {},
                {"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.1.0.0/24", "10.0.1.0/24", "nope"]}, "podSelector": {}},
            ],
        }],
        "policyTypes": ["Ingress", "Sideways"],
    }});
    assert_eq!(
        messages(&validate(NET, "NetworkPolicy", &np)),
        vec![
            "spec.podSelector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
            "spec.ingress[0].ports[0].endPort: Invalid value: 80: must be greater than or equal to `port`",
            "spec.ingress[0].ports[1].endPort: Invalid value: 90: may not be specified when `port` is non-numeric",
            "spec.ingress[0].ports[2].protocol: Unsupported value: \"ICMP\": supported values: \"TCP\", \"UDP\", \"SCTP\"",
            "spec.ingress[0].from[0]: Required value: must specify a peer",
            "spec.ingress[0].from[1].ipBlock.except[0]: Invalid value: \"10.1.0.0/24\": must be a strict subset of `cidr`",
            "spec.ingress[0].from[1].ipBlock.except[2]: Invalid value: \"nope\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            "spec.ingress[0].from[1]: Forbidden: may not specify both ipBlock and another peer",
            "spec.policyTypes[1]: Unsupported value: \"Sideways\": supported values: \"Ingress\", \"Egress\"",
        ]
    );
}

fn backend(name: &str, port: serde_json::Value) -> serde_json::Value {
    json!({"service": {"name": name, "port": port}})
}

#[test]
fn ingress_validation() {
    let good = json!({"spec": {"rules": [{"host": "*.example.com", "http": {"paths": [
        {"path": "/", "pathType": "Prefix", "backend": backend("web", json!({"number": 80}))},
    ]}}]}});
    assert!(
        validate(NET, "Ingress", &good).is_empty(),
        "{:?}",
        messages(&validate(NET, "Ingress", &good))
    );
    let bad = json!({"spec": {"rules": [
        {"host": "10.0.0.1", "http": {"paths": [
            {"path": "api", "backend": backend("web", json!({"number": 80}))},
            {"path": "api", "pathType": "Exact", "backend": backend("web", json!({"number": 80, "name": "http"}))},
            {"path": "/a//b", "pathType": "Regex", "backend": backend("Web", json!({}))},
        ]}},
        {"host": "foo.*.com", "http": {"paths": []}},
    ]}});
    assert_eq!(
        messages(&validate(NET, "Ingress", &bad)),
        vec![
            "spec.rules[0].host: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address",
            "spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified",
            "spec.rules[0].http.paths[1].path: Invalid value: \"api\": must be an absolute path",
            "spec.rules[0].http.paths[1].backend: Invalid value: \"\": cannot set both port name & port number",
            "spec.rules[0].http.paths[2].pathType: Unsupported value: \"Regex\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\"",
            "spec.rules[0].http.paths[2].backend.service.name: Invalid value: \"Web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
            "spec.rules[0].http.paths[2].backend: Required value: port name or number is required",
            "spec.rules[1].host: Invalid value: \"foo.*.com\": a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            "spec.rules[1].http.paths: Required value",
        ]
    );
    let tls = json!({"spec": {"defaultBackend": backend("web", json!({"number": 80})), "tls": [{"hosts": ["*.example.com", "Bad"], "secretName": "tls_secret"}]}});
    let msgs = messages(&validate(NET, "Ingress", &tls));
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(msgs[0].starts_with(
        "spec.tls[0].hosts[1]: Invalid value: \"Bad\": a lowercase RFC 1123 subdomain"
    ));
    assert!(msgs[1].starts_with(
        "spec.tls[0].secretName: Invalid value: \"tls_secret\": a lowercase RFC 1123 subdomain"
    ));
    assert_eq!(
        messages(&validate(NET, "Ingress", &json!({"spec": {}}))),
        vec![
            "spec: Invalid value: []networking.IngressRule(nil): either `defaultBackend` or `rules` must be specified"
        ]
    );
    let annotated = json!({
        "metadata": {"annotations": {"kubernetes.io/ingress.class": "nginx"}},
        "spec": {"ingressClassName": "traefik", "defaultBackend": backend("web", json!({"number": 80}))},
    });
    assert_eq!(
        messages(&validate(NET, "Ingress", &annotated)),
        vec![
            "annotations.kubernetes.io/ingress.class: Invalid value: \"nginx\": must match `ingressClassName` when both are specified"
        ]
    );
    assert!(validate_update(NET, "Ingress", &annotated, &annotated).is_empty());
    let mut created = json!({"spec": {"defaultBackend": backend("web", json!({"name": "http"}))}, "status": {"loadBalancer": {"ingress": [{"ip": "1.1.1.1"}]}}});
    prepare_create(NET, "Ingress", &mut created);
    assert_eq!(created["status"], json!({"loadBalancer": {}}));
    assert!(validate(NET, "Ingress", &created).is_empty());
}

#[test]
fn ingress_class_controller() {
    let mut class = json!({"spec": {"controller": "example.com/ingress", "parameters": {"kind": "Config", "name": "c"}}});
    default(NET, "IngressClass", &mut class);
    assert_eq!(class["spec"]["parameters"]["scope"], "Cluster");
    assert!(validate(NET, "IngressClass", &class).is_empty());
    let bad = json!({"spec": {"controller": "nginx"}});
    assert_eq!(
        messages(&validate(NET, "IngressClass", &bad)),
        vec![
            "spec.controller: Invalid value: \"nginx\": must be a domain-prefixed path (such as \"acme.io/foo\")"
        ]
    );
    assert_eq!(
        messages(&validate(NET, "IngressClass", &json!({"spec": {}}))),
        vec!["spec.controller: Required value"]
    );
    let mut moved = class.clone();
    moved["spec"]["controller"] = json!("example.com/other");
    assert_eq!(
        messages(&validate_update(NET, "IngressClass", &moved, &class)),
        vec!["spec.controller: Invalid value: \"example.com/other\": field is immutable"]
    );
}
