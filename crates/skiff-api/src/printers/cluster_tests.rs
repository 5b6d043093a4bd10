//! Leases, PDBs, priority classes, RBAC, storage classes, CSRs, and the kinds
//! printed by the default convertor.

use serde_json::{Value, json};

use super::testutil::{ago, default_cells, header, res, wide_cells};
use crate::cells;

fn meta(name: &str) -> Value {
    json!({"name": name, "creationTimestamp": ago(86400 + 3 * 3600)})
}

#[test]
fn lease_and_pdb_rows() {
    let r = res("coordination.k8s.io", "Lease");
    assert_eq!(header(r, true), ["NAME", "HOLDER", "AGE"]);
    let lease = json!({"metadata": meta("node-a"), "spec": {"holderIdentity": "node-a",
        "leaseDurationSeconds": 40, "renewTime": "2025-06-01T11:59:58.000000Z"}});
    assert_eq!(wide_cells(r, &lease), cells!["node-a", "node-a", "27h"]);
    let free = json!({"metadata": meta("free"), "spec": {}});
    assert_eq!(wide_cells(r, &free), cells!["free", "", "27h"]);

    let r = res("policy", "PodDisruptionBudget");
    assert_eq!(
        header(r, true),
        [
            "NAME",
            "MIN AVAILABLE",
            "MAX UNAVAILABLE",
            "ALLOWED DISRUPTIONS",
            "AGE"
        ]
    );
    let pdb = |spec: Value| {
        json!({"metadata": meta("web"), "spec": spec, "status": {"disruptionsAllowed": 1,
            "currentHealthy": 3, "desiredHealthy": 2, "expectedPods": 3}})
    };
    assert_eq!(
        wide_cells(r, &pdb(json!({"minAvailable": 2}))),
        cells!["web", "2", "N/A", 1, "27h"]
    );
    assert_eq!(
        wide_cells(r, &pdb(json!({"maxUnavailable": "25%"}))),
        cells!["web", "N/A", "25%", 1, "27h"]
    );
}

#[test]
fn priority_class_rows() {
    let r = res("scheduling.k8s.io", "PriorityClass");
    assert_eq!(
        header(r, false),
        ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"]
    );
    let pc = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": meta("system-node-critical"), "value": 2000001000,
        "preemptionPolicy": "PreemptLowerPriority",
        "description": "Used for system critical pods that must not be moved from their current node."});
    assert_eq!(
        default_cells(r, &pc),
        cells![
            "system-node-critical",
            2_000_001_000,
            false,
            "27h",
            "PreemptLowerPriority"
        ]
    );
    let default_class = json!({"metadata": meta("low"), "value": -10, "globalDefault": true});
    assert_eq!(
        default_cells(r, &default_class),
        cells!["low", -10, true, "27h", ""]
    );
}

#[test]
fn role_binding_rows() {
    for r in [
        res("rbac.authorization.k8s.io", "RoleBinding"),
        res("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ] {
        assert_eq!(
            header(r, true),
            ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]
        );
        let rb = json!({"metadata": meta("admins"),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                "name": "cluster-admin"},
            "subjects": [
                {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"},
                {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "system:masters"},
                {"kind": "ServiceAccount", "name": "deployer", "namespace": "ci"},
                {"kind": "User", "name": "bob"},
                {"kind": "Robot", "name": "r2"}]});
        assert_eq!(
            wide_cells(r, &rb),
            cells![
                "admins",
                "ClusterRole/cluster-admin",
                "27h",
                "alice, bob",
                "system:masters",
                "ci/deployer"
            ]
        );
        assert_eq!(
            default_cells(r, &rb),
            cells!["admins", "ClusterRole/cluster-admin", "27h"]
        );
    }
}

#[test]
fn storage_class_rows() {
    let r = res("storage.k8s.io", "StorageClass");
    assert_eq!(
        header(r, true),
        [
            "NAME",
            "PROVISIONER",
            "RECLAIMPOLICY",
            "VOLUMEBINDINGMODE",
            "ALLOWVOLUMEEXPANSION",
            "AGE"
        ]
    );
    let sc = json!({"metadata": {"name": "local-path", "creationTimestamp": ago(86400 + 3 * 3600),
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "rancher.io/local-path", "reclaimPolicy": "Retain",
        "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": true});
    assert_eq!(
        wide_cells(r, &sc),
        cells![
            "local-path (default)",
            "rancher.io/local-path",
            "Retain",
            "WaitForFirstConsumer",
            true,
            "27h"
        ]
    );
    let plain = json!({"metadata": {"name": "fast", "annotations": {
            "storageclass.beta.kubernetes.io/is-default-class": "false"}},
        "provisioner": "csi.example.com"});
    assert_eq!(
        wide_cells(r, &plain),
        cells![
            "fast",
            "csi.example.com",
            "Delete",
            "Immediate",
            false,
            "<unknown>"
        ]
    );
}

#[test]
fn csr_rows() {
    let r = res("certificates.k8s.io", "CertificateSigningRequest");
    assert_eq!(
        header(r, true),
        [
            "NAME",
            "AGE",
            "SIGNERNAME",
            "REQUESTOR",
            "REQUESTEDDURATION",
            "CONDITION"
        ]
    );
    let csr = |spec: Value, status: Value| {
        json!({"metadata": {"name": "csr-x", "creationTimestamp": ago(40)},
            "spec": spec, "status": status})
    };
    let kubelet = json!({"signerName": "kubernetes.io/kube-apiserver-client-kubelet",
        "username": "system:node:node-a", "request": "LS0t", "usages": ["client auth"]});
    let cases: Vec<(Value, Vec<Value>)> = vec![
        (
            csr(kubelet.clone(), json!({})),
            cells![
                "csr-x",
                "40s",
                "kubernetes.io/kube-apiserver-client-kubelet",
                "system:node:node-a",
                "<none>",
                "Pending"
            ],
        ),
        (
            csr(
                json!({"username": "alice", "expirationSeconds": 86400 * 30}),
                json!({"conditions": [{"type": "Approved", "status": "True"}],
                    "certificate": "LS0tLS1CRUdJTg=="}),
            ),
            cells!["csr-x", "40s", "<none>", "alice", "30d", "Approved,Issued"],
        ),
        (
            csr(
                json!({"username": "mallory", "expirationSeconds": 600}),
                json!({"conditions": [{"type": "Approved"}, {"type": "Denied"},
                    {"type": "Failed"}]}),
            ),
            cells!["csr-x", "40s", "<none>", "mallory", "10m", "Denied,Failed"],
        ),
    ];
    for (obj, want) in cases {
        assert_eq!(wide_cells(r, &obj), want);
    }
}

#[test]
fn kinds_without_printer_use_the_default_convertor() {
    for (group, kind) in [
        ("", "LimitRange"),
        ("rbac.authorization.k8s.io", "Role"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
    ] {
        let r = res(group, kind);
        assert!(!super::has_printer(r), "{kind}");
        let cols = super::columns(r);
        assert_eq!(
            cols.iter()
                .map(|c| (c.name, c.type_, c.format, c.priority))
                .collect::<Vec<_>>(),
            [("Name", "string", "name", 0), ("Created At", "date", "", 0)]
        );
        let obj = json!({"metadata": {"name": "limits",
            "creationTimestamp": "2025-05-30T08:09:10Z"}});
        assert_eq!(
            wide_cells(r, &obj),
            cells!["limits", "2025-05-30T08:09:10Z"]
        );
        // Offsets and fractions are normalised to UTC seconds.
        let odd = json!({"metadata": {"name": "x",
            "creationTimestamp": "2025-05-30T10:09:10.75+02:00"}});
        assert_eq!(wide_cells(r, &odd), cells!["x", "2025-05-30T08:09:10Z"]);
        let unset = json!({"metadata": {"name": "y"}});
        assert_eq!(wide_cells(r, &unset), cells!["y", "0001-01-01T00:00:00Z"]);
    }
}

#[test]
fn every_served_kind_has_its_columns() {
    for r in crate::resources::RESOURCES {
        let cols = super::columns(r);
        let names: Vec<&str> = cols.iter().map(|c| c.name).collect();
        let name_cols = cols.iter().filter(|c| c.format == "name").count();
        assert_eq!(name_cols, 1, "{}: one name column", r.kind);
        if r.kind != "Event" {
            assert_eq!(names[0], "Name", "{}: Name first", r.kind);
        }
        for c in &cols {
            assert!(!c.description.is_empty(), "{}.{}", r.kind, c.name);
            assert!(
                ["string", "integer", "boolean", "date", "number"].contains(&c.type_),
                "{}.{}",
                r.kind,
                c.name
            );
            assert!(c.priority == 0 || c.priority == 1);
        }
        let printed = super::has_printer(r);
        let expect_printer = !matches!(r.kind, "LimitRange" | "Role" | "ClusterRole");
        assert_eq!(printed, expect_printer, "{}", r.kind);
    }
}
