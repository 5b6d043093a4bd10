//! Objects come from users: no shape of JSON may panic a printer or break the
//! one-cell-per-column rule.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use serde_json::{Value, json};

use super::testutil::{ago, now};
use super::{IncludeObjectPolicy, columns, row, table};
use crate::resources::RESOURCES;

/// Values substituted at every position of the sample objects.
fn oddities() -> Vec<Value> {
    vec![
        Value::Null,
        json!(true),
        json!(0),
        json!(-1),
        json!(i64::MAX),
        json!(u64::MAX),
        json!(1.5e300),
        json!(""),
        json!("not-a-date"),
        json!("0001-01-01T00:00:00Z"),
        json!("9999-12-31T23:59:59Z"),
        json!("-0001-01-01T00:00:00Z"),
        json!([]),
        json!([null, 1, "x", {}]),
        json!({}),
        json!({"kind": 5, "name": [], "state": "x"}),
    ]
}

/// A kitchen-sink object with the fields every printer reads.
fn sample() -> Value {
    let mut obj = json!({
        "apiVersion": "v1", "kind": "Thing",
        "metadata": {"name": "x", "namespace": "ns", "creationTimestamp": ago(100),
            "deletionTimestamp": ago(-5), "labels": {"node-role.kubernetes.io/worker": "",
            "kubernetes.io/role": "db"},
            "annotations": {"volume.beta.kubernetes.io/storage-class": "s",
                "storageclass.kubernetes.io/is-default-class": "true"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "o",
                "controller": true}]},
    });
    obj["spec"] = json!({
            "replicas": 2, "completions": 3, "parallelism": 2, "schedule": "@hourly",
            "timeZone": "UTC", "suspend": true, "nodeName": "n", "unschedulable": true,
            "type": "LoadBalancer", "clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"],
            "externalIPs": ["1.2.3.4"], "externalName": "e",
            "ports": [{"port": 80, "nodePort": 30000, "protocol": "TCP"}],
            "selector": {"matchLabels": {"a": "b"},
                "matchExpressions": [{"key": "k", "operator": "In", "values": ["v"]}]},
            "podSelector": {"matchLabels": {"a": "b"}},
            "readinessGates": [{"conditionType": "g"}],
            "initContainers": [{"name": "i", "image": "busybox", "restartPolicy": "Always"}],
            "containers": [{"name": "c", "image": "nginx"}],
            "template": {"metadata": {"labels": {"a": "b"}},
                "spec": {"nodeSelector": {"os": "linux"}, "containers": [{"name": "c", "image": "i"}]}},
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}},
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "claimRef": {"namespace": "a", "name": "b"}, "volumeName": "pv",
            "volumeMode": "Block", "storageClassName": "sc",
            "minAvailable": "50%", "maxUnavailable": 1,
            "holderIdentity": "h", "signerName": "s", "username": "u", "expirationSeconds": 3600,
            "controller": "c", "parameters": {"kind": "K", "apiGroup": "g", "name": "n"},
            "ingressClassName": "i", "rules": [{"host": "h"}], "tls": [{}],
    });
    obj["status"] = json!({
            "phase": "Running", "reason": "NodeLost", "podIP": "1.1.1.1",
            "podIPs": [{"ip": "1.1.1.1"}], "nominatedNodeName": "m",
            "conditions": [{"type": "Ready", "status": "True"},
                {"type": "Initialized", "status": "True"},
                {"type": "Complete", "status": "True"}],
            "initContainerStatuses": [{"name": "i", "started": true, "ready": true,
                "restartCount": 1, "state": {"running": {}},
                "lastState": {"terminated": {"finishedAt": ago(50)}}}],
            "containerStatuses": [{"name": "c", "ready": true, "restartCount": 2,
                "state": {"terminated": {"exitCode": 1, "signal": 9}},
                "lastState": {"terminated": {"finishedAt": ago(10)}}}],
            "addresses": [{"type": "InternalIP", "address": "10.1.1.1"}],
            "nodeInfo": {"kubeletVersion": "v1.33.0"},
            "loadBalancer": {"ingress": [{"ip": "5.5.5.5"}, {"hostname": "h"}]},
            "hard": {"pods": "10", "limits.cpu": "2"}, "used": {"pods": "1"},
            "startTime": ago(60), "completionTime": ago(1), "succeeded": 1,
            "active": [{}], "lastScheduleTime": ago(30), "certificate": "x",
            "readyReplicas": 1, "disruptionsAllowed": 1,
    });
    let rest = json!({
        "subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 1}]}],
        "endpoints": [{"addresses": ["1.1.1.1"]}], "addressType": "IPv4",
        "data": {"a": "b"}, "binaryData": {"c": "d"}, "secrets": [{}], "type": "Opaque",
        "involvedObject": {"kind": "Pod", "name": "p"}, "regarding": {"kind": "Pod"},
        "series": {"count": 2, "lastObservedTime": ago(3)}, "eventTime": ago(9),
        "firstTimestamp": ago(9), "lastTimestamp": ago(2), "count": 4, "note": "n",
        "roleRef": {"kind": "Role", "name": "r"},
        "subjects": [{"kind": "ServiceAccount", "name": "s", "namespace": "n"}],
        "revision": 3, "value": 10, "globalDefault": true, "preemptionPolicy": "Never",
        "provisioner": "p", "reclaimPolicy": "Retain", "volumeBindingMode": "Immediate",
        "allowVolumeExpansion": true,
    });
    if let (Some(o), Value::Object(r)) = (obj.as_object_mut(), rest) {
        o.extend(r);
    }
    obj
}

/// Every path (object keys and array indices) inside `v`.
fn paths(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                prefix.push(k.clone());
                out.push(prefix.clone());
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                prefix.push(i.to_string());
                out.push(prefix.clone());
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn replace(v: &mut Value, path: &[String], with: Value) {
    let mut cur = v;
    for step in path {
        cur = match cur {
            Value::Object(m) => match m.get_mut(step) {
                Some(c) => c,
                None => return,
            },
            Value::Array(a) => match step.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                Some(c) => c,
                None => return,
            },
            _ => return,
        };
    }
    *cur = with;
}

fn check_all_printers(obj: &Value) {
    for r in RESOURCES {
        let cells = row(r, obj, now());
        assert_eq!(cells.len(), columns(r).len(), "{} on {obj}", r.kind);
    }
}

#[test]
fn odd_top_level_values() {
    for v in oddities() {
        check_all_printers(&v);
    }
}

#[test]
fn every_field_replaced_by_every_oddity() {
    let base = sample();
    let mut all = Vec::new();
    paths(&base, &mut Vec::new(), &mut all);
    assert!(all.len() > 150, "{} paths", all.len());
    for path in &all {
        for odd in oddities() {
            let mut obj = base.clone();
            replace(&mut obj, path, odd);
            check_all_printers(&obj);
        }
    }
}

#[test]
fn tables_of_odd_objects() {
    let objects: Vec<Value> = oddities().into_iter().chain([sample()]).collect();
    for r in RESOURCES {
        for include in [
            IncludeObjectPolicy::None,
            IncludeObjectPolicy::Metadata,
            IncludeObjectPolicy::Object,
        ] {
            let t = table(r, &objects, now(), include, &ListMeta::default());
            assert_eq!(
                t["rows"].as_array().map(Vec::len),
                Some(objects.len()),
                "{}",
                r.kind
            );
        }
    }
}
