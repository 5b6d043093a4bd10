#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};

use crate::kinds::core::util::messages;
use crate::kinds::{default, prepare_create, validate, validate_status_update, validate_update};

fn created(kind: &str, mut obj: Value) -> Value {
    default("", kind, &mut obj);
    prepare_create("", kind, &mut obj);
    obj
}

fn pv() -> Value {
    json!({"spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/data"}}})
}

fn pvc() -> Value {
    json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
}

#[test]
fn volume_defaults_and_create() {
    let v = created("PersistentVolume", pv());
    assert_eq!(v["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert_eq!(v["spec"]["volumeMode"], "Filesystem");
    assert_eq!(v["spec"]["hostPath"]["type"], "");
    assert_eq!(v["status"], json!({"phase": "Pending"}));
    let mut again = v.clone();
    default("", "PersistentVolume", &mut again);
    assert_eq!(again, v);
    assert!(
        validate("", "PersistentVolume", &v).is_empty(),
        "{:?}",
        messages(&validate("", "PersistentVolume", &v))
    );

    let rbd = created(
        "PersistentVolume",
        json!({"spec": {"rbd": {"monitors": ["m"], "image": "i"}}}),
    );
    assert_eq!(rbd["spec"]["rbd"]["pool"], "rbd");
    assert_eq!(rbd["spec"]["rbd"]["user"], "admin");

    let mut with_status = pvc();
    with_status["status"] = json!({"phase": "Bound", "capacity": {"storage": "1Gi"}});
    let c = created("PersistentVolumeClaim", with_status);
    assert_eq!(c["spec"]["volumeMode"], "Filesystem");
    assert_eq!(c["status"], json!({"phase": "Pending"}));
    assert!(validate("", "PersistentVolumeClaim", &c).is_empty());
}

#[test]
fn volume_validation_messages() {
    let v = json!({"spec": {"accessModes": ["ReadWriteOncePod", "ReadWriteMany", "Sometimes"], "persistentVolumeReclaimPolicy": "Keep"}});
    assert_eq!(
        messages(&validate("", "PersistentVolume", &v)),
        vec![
            "spec.accessModes: Unsupported value: \"Sometimes\": supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\"",
            "spec.accessModes: Forbidden: may not use ReadWriteOncePod with other access modes",
            "spec.capacity: Required value",
            "spec.capacity: Unsupported value: core.ResourceList(nil): supported values: \"storage\"",
            "spec.persistentVolumeReclaimPolicy: Unsupported value: \"Keep\": supported values: \"Delete\", \"Recycle\", \"Retain\"",
            "spec: Required value: must specify a volume type",
        ]
    );
    let mut two = pv();
    two["spec"]["nfs"] = json!({"server": "nfs", "path": "exports"});
    two["spec"]["capacity"]["storage"] = json!("0");
    assert_eq!(
        messages(&validate("", "PersistentVolume", &two)),
        vec![
            "spec.capacity[storage]: Invalid value: 0: must be greater than zero",
            "spec.nfs: Forbidden: may not specify more than 1 volume type",
        ]
    );
    let mut backstep = pv();
    backstep["spec"]["hostPath"]["path"] = json!("/data/../etc");
    assert_eq!(
        messages(&validate("", "PersistentVolume", &backstep)),
        vec!["spec.hostPath.path: Invalid value: \"/data/../etc\": must not contain '..'"]
    );
    let local = json!({"spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "local": {"path": "/mnt"}}});
    assert_eq!(
        messages(&validate("", "PersistentVolume", &local)),
        vec!["spec.nodeAffinity: Required value: Local volume requires node affinity"]
    );
    let mut pinned = local.clone();
    pinned["spec"]["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{
        "matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}, {"key": "k", "operator": "Near"}],
        "matchFields": [{"key": "metadata.uid", "operator": "In", "values": ["a", "b"]}],
    }]}});
    assert_eq!(
        messages(&validate("", "PersistentVolume", &pinned)),
        vec![
            "spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[1].operator: Invalid value: \"Near\": not a valid selector operator",
            "spec.nodeAffinity.required.nodeSelectorTerms[0].matchFields[0].values: Required value: must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
            "spec.nodeAffinity.required.nodeSelectorTerms[0].matchFields[0].key: Invalid value: \"metadata.uid\": not a valid field selector key",
        ]
    );
    pinned["spec"]["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": []}});
    assert_eq!(
        messages(&validate("", "PersistentVolume", &pinned)),
        vec![
            "spec.nodeAffinity.required.nodeSelectorTerms: Required value: must have at least one node selector term"
        ]
    );
}

#[test]
fn volume_source_is_immutable() {
    let old = created("PersistentVolume", pv());
    let mut new = old.clone();
    new["spec"]["hostPath"]["path"] = json!("/other");
    new["spec"]["persistentVolumeReclaimPolicy"] = json!("Delete");
    assert_eq!(
        messages(&validate_update("", "PersistentVolume", &new, &old)),
        vec![
            "spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation"
        ]
    );
    // Upstream checks nothing but metadata on a volume's status update.
    let mut any_phase = old.clone();
    any_phase["status"]["phase"] = json!("Happy");
    assert!(validate_status_update("", "PersistentVolume", &any_phase, &old).is_empty());
}

#[test]
fn claim_data_sources_and_status() {
    let mut cloned = pvc();
    cloned["spec"]["dataSource"] = json!({"kind": "PersistentVolumeClaim", "name": "src"});
    let cloned = created("PersistentVolumeClaim", cloned);
    assert_eq!(
        cloned["spec"]["dataSourceRef"],
        json!({"kind": "PersistentVolumeClaim", "name": "src"})
    );
    assert!(validate("", "PersistentVolumeClaim", &cloned).is_empty());

    let mut snapshot = pvc();
    snapshot["spec"]["dataSource"] = json!({"kind": "VolumeSnapshot", "name": "snap"});
    snapshot["spec"]["dataSourceRef"] = json!({"kind": "PersistentVolumeClaim", "name": "other"});
    assert_eq!(
        messages(&validate("", "PersistentVolumeClaim", &snapshot)),
        vec![
            "spec.dataSource: Invalid value: \"VolumeSnapshot\": must be 'PersistentVolumeClaim' when referencing the default apiGroup",
            "spec: Invalid value: spec.dataSource: must match dataSourceRef",
        ]
    );

    let mut status = created("PersistentVolumeClaim", pvc());
    status["status"] = json!({"phase": "Bound", "capacity": {"storage": "-1Gi"}});
    assert_eq!(
        messages(&validate_status_update(
            "",
            "PersistentVolumeClaim",
            &status,
            &status
        )),
        vec![
            "status.capacity[storage]: Invalid value: -1073741824: must be a valid resource quantity"
        ]
    );
}

#[test]
fn claim_validation_messages() {
    let c = json!({"spec": {"resources": {}, "storageClassName": "Fast"}});
    assert_eq!(
        messages(&validate("", "PersistentVolumeClaim", &c)),
        vec![
            "spec.accessModes: Required value: at least 1 access mode is required",
            "spec.resources[storage]: Required value",
            "spec.storageClassName: Invalid value: \"Fast\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        ]
    );
    let zero = json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "0"}}}});
    assert_eq!(
        messages(&validate("", "PersistentVolumeClaim", &zero)),
        vec!["spec.resources[storage]: Invalid value: 0: must be greater than zero"]
    );
}

#[test]
fn claim_spec_is_immutable_except_growth_when_bound() {
    let old = created("PersistentVolumeClaim", pvc());
    // Binding: volumeName may be set once, the class from nothing.
    let mut bound = old.clone();
    bound["spec"]["volumeName"] = json!("pv-1");
    bound["spec"]["storageClassName"] = json!("standard");
    assert!(validate_update("", "PersistentVolumeClaim", &bound, &old).is_empty());
    bound["status"] = json!({"phase": "Bound", "capacity": {"storage": "1Gi"}});

    let mut grown = bound.clone();
    grown["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
    assert!(validate_update("", "PersistentVolumeClaim", &grown, &bound).is_empty());

    let mut modes = bound.clone();
    modes["spec"]["accessModes"] = json!(["ReadWriteMany"]);
    assert_eq!(
        messages(&validate_update(
            "",
            "PersistentVolumeClaim",
            &modes,
            &bound
        )),
        vec![
            "spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n  core.PersistentVolumeClaimSpec{\n- \tAccessModes: [\"ReadWriteOnce\"],\n+ \tAccessModes: [\"ReadWriteMany\"],\n  }\n"
        ]
    );
    // Growing an unbound claim is a spec change.
    let mut pending_growth = old.clone();
    pending_growth["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
    assert_eq!(
        validate_update("", "PersistentVolumeClaim", &pending_growth, &old).len(),
        1
    );

    let mut shrunk = grown.clone();
    shrunk["spec"]["resources"]["requests"]["storage"] = json!("512Mi");
    assert_eq!(
        messages(&validate_update(
            "",
            "PersistentVolumeClaim",
            &shrunk,
            &grown
        )),
        vec![
            "spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"
        ]
    );
}
