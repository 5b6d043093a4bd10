#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;

use crate::kinds::core::util::messages;
use crate::kinds::{default, prepare_create, prepare_update, validate, validate_update};

const DISC: &str = "discovery.k8s.io";

#[test]
fn endpoint_slice_defaults_and_validation() {
    let mut slice = json!({
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.42.0.5"], "conditions": {"ready": true}}],
        "ports": [{"port": 80}],
    });
    default(DISC, "EndpointSlice", &mut slice);
    assert_eq!(
        slice["ports"][0],
        json!({"name": "", "port": 80, "protocol": "TCP"})
    );
    assert!(validate(DISC, "EndpointSlice", &slice).is_empty());

    let bad = json!({
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": []},
            {"addresses": ["fd00::1", "127.0.0.1"], "hostname": "Bad"},
        ],
        "ports": [{"name": "", "protocol": "TCP"}, {"name": "", "protocol": "ICMP"}],
    });
    assert_eq!(
        messages(&validate(DISC, "EndpointSlice", &bad)),
        vec![
            "endpoints[0].addresses: Required value: must contain at least 1 address",
            "endpoints[1].addresses[0]: Invalid value: \"fd00::1\": must be a valid IPv4 address",
            "endpoints[1].addresses[1]: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)",
            "endpoints[1].hostname: Invalid value: \"Bad\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            "ports[1].name: Duplicate value: \"\"",
            "ports[1].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
        ]
    );
    let fqdn = json!({"addressType": "FQDN", "endpoints": [{"addresses": ["db.example.com", "localhost"]}]});
    assert_eq!(
        messages(&validate(DISC, "EndpointSlice", &fqdn)),
        vec![
            "endpoints[0].addresses[1]: Invalid value: \"localhost\": should be a domain with at least two segments separated by dots"
        ]
    );
    let unknown = json!({"addressType": "IPX"});
    assert_eq!(
        messages(&validate(DISC, "EndpointSlice", &unknown)),
        vec![
            "addressType: Unsupported value: \"IPX\": supported values: \"FQDN\", \"IPv4\", \"IPv6\""
        ]
    );
    let many =
        json!({"addressType": "IPv4", "endpoints": vec![json!({"addresses": ["10.0.0.1"]}); 1001]});
    assert_eq!(
        messages(&validate(DISC, "EndpointSlice", &many)),
        vec!["endpoints: Too many: 1001: must have at most 1000 items"]
    );
}

#[test]
fn address_type_is_immutable() {
    let old = json!({"addressType": "IPv4"});
    let new = json!({"addressType": "IPv6"});
    assert_eq!(
        messages(&validate_update(DISC, "EndpointSlice", &new, &old)),
        vec!["addressType: Invalid value: \"IPv6\": field is immutable"]
    );
    assert!(validate_update(DISC, "EndpointSlice", &old, &old).is_empty());
}

#[test]
fn deprecated_topology_is_not_writable() {
    let mut created = json!({"addressType": "IPv4", "endpoints": [
        {"addresses": ["10.0.0.1"], "deprecatedTopology": {"kubernetes.io/hostname": "n1"}},
    ]});
    prepare_create(DISC, "EndpointSlice", &mut created);
    assert_eq!(created["endpoints"][0], json!({"addresses": ["10.0.0.1"]}));

    // Stored by an older API version: unchanged endpoints keep it; changed
    // ones move a known node name into nodeName.
    let old = json!({"addressType": "IPv4", "endpoints": [
        {"addresses": ["10.0.0.1"], "deprecatedTopology": {"kubernetes.io/hostname": "n1"}},
    ]});
    let mut same = old.clone();
    same["ports"] = json!([]);
    prepare_update(DISC, "EndpointSlice", &mut same, &old);
    assert_eq!(same["endpoints"], old["endpoints"]);
    let mut changed = json!({"addressType": "IPv4", "endpoints": [
        {"addresses": ["10.0.0.2"], "deprecatedTopology": {"kubernetes.io/hostname": "n1"}},
        {"addresses": ["10.0.0.3"], "deprecatedTopology": {"kubernetes.io/hostname": "n9"}},
    ]});
    prepare_update(DISC, "EndpointSlice", &mut changed, &old);
    assert_eq!(
        changed["endpoints"],
        json!([{"addresses": ["10.0.0.2"], "nodeName": "n1"}, {"addresses": ["10.0.0.3"]}])
    );
}
