//! Malformed objects (wrong JSON types anywhere) must never panic any of
//! the entry points; decoding errors and field errors are the only outcomes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};

use crate::kinds::{
    default, normalize, prepare_create, prepare_update, validate, validate_status_update,
    validate_update,
};

const KINDS: &[(&str, &str)] = &[
    ("", "Namespace"),
    ("", "Node"),
    ("", "Service"),
    ("", "Endpoints"),
    ("", "ConfigMap"),
    ("", "Secret"),
    ("", "ServiceAccount"),
    ("", "Event"),
    ("", "LimitRange"),
    ("", "ResourceQuota"),
    ("", "PersistentVolume"),
    ("", "PersistentVolumeClaim"),
    ("coordination.k8s.io", "Lease"),
    ("discovery.k8s.io", "EndpointSlice"),
    ("events.k8s.io", "Event"),
    ("policy", "PodDisruptionBudget"),
    ("scheduling.k8s.io", "PriorityClass"),
    ("rbac.authorization.k8s.io", "Role"),
    ("rbac.authorization.k8s.io", "RoleBinding"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("storage.k8s.io", "StorageClass"),
    ("networking.k8s.io", "NetworkPolicy"),
    ("networking.k8s.io", "Ingress"),
    ("networking.k8s.io", "IngressClass"),
    ("certificates.k8s.io", "CertificateSigningRequest"),
];

/// Replaces every value of `v` in turn by each scalar and container, one
/// position at a time, collecting the variants.
fn mutations(v: &Value) -> Vec<Value> {
    let replacements = [
        json!(null),
        json!(7),
        json!("x"),
        json!([1, "a"]),
        json!({"k": 1}),
        json!(-1.5),
    ];
    let mut out = Vec::new();
    let mut paths = Vec::new();
    collect_paths(v, String::new(), &mut paths);
    for p in paths {
        for r in &replacements {
            let mut m = v.clone();
            if let Some(slot) = m.pointer_mut(&p) {
                *slot = r.clone();
                out.push(m);
            }
        }
    }
    out
}

fn collect_paths(v: &Value, prefix: String, out: &mut Vec<String>) {
    out.push(prefix.clone());
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                collect_paths(child, format!("{prefix}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                collect_paths(child, format!("{prefix}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// One object with most fields any of the kinds reads, to mutate.
fn kitchen_sink() -> Value {
    json!({
        "metadata": {"name": "n", "namespace": "ns", "annotations": {"kubernetes.io/service-account.name": "a"}},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": "eA==", "tls.key": "eA=="},
        "stringData": {"a": "b"},
        "binaryData": {"b": "eA=="},
        "immutable": true,
        "spec": {
            "type": "LoadBalancer", "clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"],
            "ports": [{"name": "a", "port": 80, "targetPort": "http", "nodePort": 30000, "protocol": "TCP"}],
            "selector": {"matchLabels": {"a": "b"}, "matchExpressions": [{"key": "a", "operator": "In", "values": ["b"]}]},
            "podCIDR": "10.1.0.0/24", "podCIDRs": ["10.1.0.0/24"], "taints": [{"key": "k", "effect": "NoSchedule"}],
            "limits": [{"type": "Container", "max": {"cpu": "1"}, "min": {"cpu": "1m"}, "default": {"cpu": "1"}}],
            "hard": {"pods": "1"}, "scopes": ["BestEffort"],
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/"},
            "resources": {"requests": {"storage": "1Gi"}},
            "podSelector": {}, "ingress": [{"ports": [{"port": 80, "endPort": 90}], "from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]}],
            "egress": [{"to": [{"podSelector": {}}]}],
            "rules": [{"host": "a.b", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "s", "port": {"number": 80}}}}]}}],
            "tls": [{"hosts": ["a.b"]}], "defaultBackend": {"resource": {"kind": "K", "name": "n"}},
            "controller": "a.b/c", "parameters": {"kind": "K", "name": "n", "scope": "Namespace"},
            "leaseDurationSeconds": 10, "minAvailable": "50%",
            "request": "eA==", "signerName": "a.b/c", "usages": ["any"],
            "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 1}},
        },
        "status": {"capacity": {"cpu": "1"}, "loadBalancer": {"ingress": [{"ip": "1.1.1.1"}]}, "conditions": [{"type": "Approved"}], "addresses": [{"type": "a"}]},
        "subsets": [{"addresses": [{"ip": "1.2.3.4"}], "ports": [{"port": 1}]}],
        "addressType": "IPv4", "endpoints": [{"addresses": ["1.2.3.4"], "hostname": "h"}],
        "roleRef": {"kind": "Role", "name": "r"}, "subjects": [{"kind": "User", "name": "u"}],
        "aggregationRule": {"clusterRoleSelectors": [{}]},
        "involvedObject": {"namespace": "ns"}, "regarding": {"namespace": "ns"}, "eventTime": "t", "series": {"count": 1},
        "value": 1, "preemptionPolicy": "Never", "provisioner": "a", "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate",
    })
}

#[test]
fn malformed_objects_never_panic() {
    let base = kitchen_sink();
    let mut objects = mutations(&base);
    objects.extend([json!(null), json!([]), json!("s"), json!(1), json!({})]);
    for (group, kind) in KINDS {
        for obj in &objects {
            let mut o = obj.clone();
            let _ = normalize(group, kind, &mut o);
            default(group, kind, &mut o);
            prepare_create(group, kind, &mut o);
            let _ = validate(group, kind, &o);
            let mut n = obj.clone();
            default(group, kind, &mut n);
            prepare_update(group, kind, &mut n, &base);
            let _ = validate_update(group, kind, &n, &base);
            let _ = validate_update(group, kind, &base, obj);
            let _ = validate_status_update(group, kind, &n, obj);
        }
    }
}

#[test]
fn defaults_are_idempotent_for_every_kind() {
    let base = kitchen_sink();
    for (group, kind) in KINDS {
        let mut once = base.clone();
        default(group, kind, &mut once);
        let mut twice = once.clone();
        default(group, kind, &mut twice);
        assert_eq!(once, twice, "{group}/{kind}");
    }
}
