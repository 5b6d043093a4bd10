#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;

use crate::kinds::core::util::messages;
use crate::kinds::{default, normalize, validate, validate_status_update, validate_update};

#[test]
fn pod_cidr_fields_are_synced() {
    let mut node = json!({"spec": {"podCIDR": "10.42.0.0/24"}});
    normalize("", "Node", &mut node).unwrap();
    assert_eq!(node["spec"]["podCIDRs"], json!(["10.42.0.0/24"]));
    let mut node = json!({"spec": {"podCIDR": "", "podCIDRs": ["10.42.1.0/24", "fd00::/64"]}});
    normalize("", "Node", &mut node).unwrap();
    assert_eq!(node["spec"]["podCIDR"], "10.42.1.0/24");
    let mut none = json!({"spec": {}});
    normalize("", "Node", &mut none).unwrap();
    assert_eq!(none, json!({"spec": {}}));
}

#[test]
fn allocatable_defaults_to_capacity() {
    let mut node = json!({"status": {"capacity": {"cpu": "4", "memory": "8Gi"}}});
    default("", "Node", &mut node);
    assert_eq!(
        node["status"]["allocatable"],
        json!({"cpu": "4", "memory": "8Gi"})
    );
    let mut set = json!({"status": {"capacity": {"cpu": "4"}, "allocatable": {"cpu": "3"}}});
    default("", "Node", &mut set);
    assert_eq!(set["status"]["allocatable"], json!({"cpu": "3"}));
}

#[test]
fn node_validation_messages() {
    let node = json!({
        "spec": {
            "podCIDRs": ["10.42.0.0/24", "10.43.0.0/24", "bad"],
            "taints": [
                {"key": "a", "effect": "NoSchedule"},
                {"key": "a", "value": "x", "effect": "NoSchedule"},
                {"key": "b", "effect": "Sometimes"},
                {"key": "c"},
            ],
        },
        "status": {"capacity": {"cpu": "lots", "memory": "-1Gi", "widgets": "1"}},
    });
    assert_eq!(
        messages(&validate("", "Node", &node)),
        vec![
            "metadata.taints[1]: Duplicate value: core.Taint{Key:\"a\", Value:\"x\", Effect:\"NoSchedule\", TimeAdded:(*v1.Time)(nil)}: taints must be unique by key and effect pair",
            "metadata.taints[2].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"",
            "metadata.taints[3].effect: Required value",
            "status.capacity.cpu: Invalid value: \"lots\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
            "status.capacity.memory: Invalid value: -1Gi: must be greater than or equal to 0",
            "spec.podCIDRs[2]: Invalid value: \"bad\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            "spec.podCIDRs: Invalid value: []string{\"10.42.0.0/24\", \"10.43.0.0/24\", \"bad\"}: may specify no more than one CIDR for each IP family",
        ]
    );
    let dual = json!({"spec": {"podCIDRs": ["10.42.0.0/24", "fd00::/64"]}, "status": {"capacity": {"cpu": "4", "memory": "8Gi", "example.com/gpu": "1"}}});
    assert!(
        validate("", "Node", &dual).is_empty(),
        "{:?}",
        messages(&validate("", "Node", &dual))
    );
}

#[test]
fn pod_cidr_and_provider_id_are_set_once() {
    let unset = json!({"spec": {}});
    let set = json!({"spec": {"podCIDRs": ["10.42.0.0/24"], "providerID": "skiff://n1"}});
    assert!(validate_update("", "Node", &set, &unset).is_empty());
    let changed = json!({"spec": {"podCIDRs": ["10.42.1.0/24"], "providerID": "skiff://n2"}});
    assert_eq!(
        messages(&validate_update("", "Node", &changed, &set)),
        vec![
            "spec.podCIDRs: Forbidden: node updates may not change podCIDR except from \"\" to valid",
            "spec.providerID: Forbidden: node updates may not change providerID except from \"\" to valid",
        ]
    );
    let dup = json!({"status": {"addresses": [
        {"type": "InternalIP", "address": "10.0.0.1"},
        {"type": "InternalIP", "address": "10.0.0.1"},
    ]}});
    assert_eq!(
        messages(&validate_status_update("", "Node", &dup, &unset)),
        vec![
            "status.addresses[1]: Duplicate value: core.NodeAddress{Type:\"InternalIP\", Address:\"10.0.0.1\"}"
        ]
    );
}

#[test]
fn namespace_finalizers_and_phase() {
    let ns = json!({"spec": {"finalizers": ["kubernetes", "example.com/cleanup", "custom"]}});
    assert_eq!(
        messages(&validate("", "Namespace", &ns)),
        vec![
            "spec.finalizers: Invalid value: \"custom\": name is neither a standard finalizer name nor is it fully qualified"
        ]
    );
    let active = json!({"status": {"phase": "Active"}});
    assert!(validate_status_update("", "Namespace", &active, &active).is_empty());
    let terminating = json!({"status": {"phase": "Terminating"}});
    assert_eq!(
        messages(&validate_status_update(
            "",
            "Namespace",
            &terminating,
            &active
        )),
        vec![
            "status.Phase: Invalid value: \"Terminating\": may only be 'Active' if `deletionTimestamp` is empty"
        ]
    );
    let deleting = json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}, "status": {"phase": "Terminating"}});
    assert!(validate_status_update("", "Namespace", &deleting, &active).is_empty());
}
