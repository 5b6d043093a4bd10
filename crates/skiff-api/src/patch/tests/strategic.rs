//! Strategic merge patch: merging lists by key, ordering, nested templates.

use serde_json::{Value, json};

use super::super::*;

pub(super) enum Want {
    Ok(Value),
    /// HTTP code and a piece of the detailed message.
    Err(u16, &'static str),
}

pub(super) struct Case {
    pub name: &'static str,
    pub kind: (&'static str, &'static str),
    pub original: Value,
    pub patch: Value,
    pub want: Want,
}

pub(super) fn run(cases: Vec<Case>) {
    for c in cases {
        let schema = PatchSchema::for_kind(c.kind.0, "v1", c.kind.1).expect("kind");
        let got = apply_strategic_merge_patch(&c.original, c.patch.to_string().as_bytes(), &schema);
        match (got, c.want) {
            (Ok(got), Want::Ok(want)) => assert_eq!(got, want, "{}", c.name),
            (Err(e), Want::Err(code, msg)) => {
                assert_eq!(e.code(), code, "{}: {e}", c.name);
                assert!(
                    e.to_string().contains(msg),
                    "{}: {e:?} lacks {msg:?}",
                    c.name
                );
            }
            (got, _) => panic!("{}: unexpected {got:?}", c.name),
        }
    }
}

pub(super) const POD: (&str, &str) = ("", "Pod");

pub(super) fn container(name: &str, extra: Value) -> Value {
    let mut c = json!({"name": name, "image": format!("{name}:1")});
    if let (Some(c), Value::Object(extra)) = (c.as_object_mut(), extra) {
        c.extend(extra);
    }
    c
}

/// A pod whose spec has the given containers.
pub(super) fn pod(containers: Vec<Value>) -> Value {
    json!({"metadata": {"name": "p"}, "spec": {"containers": containers}})
}

fn names(v: &Value) -> Vec<String> {
    v["spec"]["containers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| c["name"].as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn containers_merge_by_name() {
    let a = container(
        "a",
        json!({"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}),
    );
    let b = container("b", json!({}));
    run(vec![
        Case {
            name: "change one container, keep the other",
            kind: POD,
            original: pod(vec![a.clone(), b.clone()]),
            patch: json!({"spec": {"containers": [{"name": "b", "image": "b:2"}]}}),
            want: Want::Ok(pod(vec![a.clone(), json!({"name": "b", "image": "b:2"})])),
        },
        Case {
            name: "a new container goes before the server's (upstream's order)",
            kind: POD,
            original: pod(vec![a.clone(), b.clone()]),
            patch: json!({"spec": {"containers": [{"name": "c", "image": "c:1"}]}}),
            want: Want::Ok(pod(vec![container("c", json!({})), a.clone(), b.clone()])),
        },
        Case {
            name: "$patch: delete removes one container",
            kind: POD,
            original: pod(vec![a.clone(), b.clone()]),
            patch: json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
            want: Want::Ok(pod(vec![b.clone()])),
        },
        Case {
            name: "delete of a missing container is a no-op",
            kind: POD,
            original: pod(vec![b.clone()]),
            patch: json!({"spec": {"containers": [{"name": "zz", "$patch": "delete"}]}}),
            want: Want::Ok(pod(vec![b.clone()])),
        },
        Case {
            name: "env merges by name inside the container",
            kind: POD,
            original: pod(vec![a.clone(), b.clone()]),
            patch: json!({"spec": {"containers": [{"name": "a", "env": [
                {"name": "B", "value": "3"}, {"name": "C", "value": "4"}
            ]}]}}),
            want: Want::Ok(pod(vec![
                container(
                    "a",
                    json!({"env": [
                        {"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}
                    ]}),
                ),
                b.clone(),
            ])),
        },
        Case {
            name: "env var deleted by null field and by directive",
            kind: POD,
            original: pod(vec![a.clone()]),
            patch: json!({"spec": {"containers": [{"name": "a", "env": [
                {"name": "A", "value": null}, {"name": "B", "$patch": "delete"}
            ]}]}}),
            want: Want::Ok(pod(vec![container("a", json!({"env": [{"name": "A"}]}))])),
        },
        Case {
            name: "ports merge by containerPort",
            kind: POD,
            original: pod(vec![container(
                "a",
                json!({"ports": [{"containerPort": 80, "protocol": "TCP"}]}),
            )]),
            patch: json!({"spec": {"containers": [{"name": "a", "ports": [
                {"containerPort": 80, "name": "http"}, {"containerPort": 443, "name": "https"}
            ]}]}}),
            want: Want::Ok(pod(vec![container(
                "a",
                json!({"ports": [
                    {"containerPort": 80, "protocol": "TCP", "name": "http"},
                    {"containerPort": 443, "name": "https"}
                ]}),
            )])),
        },
        Case {
            name: "volumeMounts merge by mountPath",
            kind: POD,
            original: pod(vec![container(
                "a",
                json!({"volumeMounts": [{"name": "v", "mountPath": "/d"}]}),
            )]),
            patch: json!({"spec": {"containers": [{"name": "a", "volumeMounts": [
                {"mountPath": "/d", "readOnly": true}
            ]}]}}),
            want: Want::Ok(pod(vec![container(
                "a",
                json!({"volumeMounts": [
                    {"name": "v", "mountPath": "/d", "readOnly": true}
                ]}),
            )])),
        },
        Case {
            name: "lists without a strategy are replaced (args, tolerations)",
            kind: POD,
            original: json!({"spec": {
                "containers": [container("a", json!({"args": ["x", "y"]}))],
                "tolerations": [{"key": "k1", "operator": "Exists"}, {"key": "k2", "operator": "Exists"}]
            }}),
            patch: json!({"spec": {
                "containers": [{"name": "a", "args": ["z"]}],
                "tolerations": [{"key": "k3", "operator": "Exists"}]
            }}),
            want: Want::Ok(json!({"spec": {
                "containers": [container("a", json!({"args": ["z"]}))],
                "tolerations": [{"key": "k3", "operator": "Exists"}]
            }})),
        },
        Case {
            name: "imagePullSecrets by name, hostAliases by ip",
            kind: POD,
            original: json!({"spec": {
                "imagePullSecrets": [{"name": "s1"}],
                "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["a"]}]
            }}),
            patch: json!({"spec": {
                "imagePullSecrets": [{"name": "s1"}],
                "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["b"]}, {"ip": "10.0.0.2", "hostnames": ["c"]}]
            }}),
            want: Want::Ok(json!({"spec": {
                "imagePullSecrets": [{"name": "s1"}],
                "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["b"]}, {"ip": "10.0.0.2", "hostnames": ["c"]}]
            }})),
        },
        Case {
            name: "pod conditions merge by type",
            kind: POD,
            original: json!({"status": {"conditions": [
                {"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}
            ]}}),
            patch: json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
            want: Want::Ok(json!({"status": {"conditions": [
                {"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}
            ]}})),
        },
    ]);
}

#[test]
fn order_follows_upstream() {
    // Upstream's "preserve the order from the patch in a merging list 2":
    // patch items keep the patch's order, server-only items stay before the
    // items they preceded.
    let original = pod(vec![
        container("one", json!({})),
        container("two", json!({"args": ["b"]})),
        container("three", json!({})),
    ]);
    let patch = json!({"spec": {"containers": [
        {"name": "three", "args": ["c"]}, {"name": "one", "args": ["a"]}
    ]}});
    let schema = PatchSchema::for_kind("", "v1", "Pod").expect("pod");
    let got =
        apply_strategic_merge_patch(&original, patch.to_string().as_bytes(), &schema).unwrap();
    assert_eq!(names(&got), ["two", "three", "one"]);
    assert_eq!(got["spec"]["containers"][2]["args"], json!(["a"]));

    // "set elements order in a list with server-only items 2".
    let original = pod(["1", "2", "9", "3", "4"]
        .iter()
        .map(|n| container(n, json!({})))
        .collect());
    let patch = json!({"spec": {"$setElementOrder/containers": [
        {"name": "2"}, {"name": "1"}, {"name": "4"}, {"name": "3"}
    ]}});
    let got =
        apply_strategic_merge_patch(&original, patch.to_string().as_bytes(), &schema).unwrap();
    assert_eq!(names(&got), ["2", "1", "9", "4", "3"]);

    // "... with server-only items 3".
    let original = pod(["1", "2", "7", "9", "8", "3", "4"]
        .iter()
        .map(|n| container(n, json!({})))
        .collect());
    let got =
        apply_strategic_merge_patch(&original, patch.to_string().as_bytes(), &schema).unwrap();
    assert_eq!(names(&got), ["2", "1", "7", "9", "8", "4", "3"]);

    // "behavior of set element order for a merging list with duplicate".
    let original = pod(vec![
        container("1", json!({})),
        container("2", json!({"args": ["dup1"]})),
        container("3", json!({})),
        container("2", json!({"args": ["dup2"]})),
        container("4", json!({})),
    ]);
    let patch = json!({"spec": {"$setElementOrder/containers": [
        {"name": "2"}, {"name": "1"}, {"name": "4"}, {"name": "3"}, {"name": "2"}
    ]}});
    let got =
        apply_strategic_merge_patch(&original, patch.to_string().as_bytes(), &schema).unwrap();
    assert_eq!(names(&got), ["2", "2", "1", "4", "3"]);
    assert_eq!(got["spec"]["containers"][1]["args"], json!(["dup2"]));

    // kubectl apply: a new container placed by $setElementOrder.
    let original = pod(vec![container("a", json!({})), container("b", json!({}))]);
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "b"}, {"name": "c"}, {"name": "a"}],
        "containers": [{"name": "c", "image": "c:1"}]
    }});
    let got =
        apply_strategic_merge_patch(&original, patch.to_string().as_bytes(), &schema).unwrap();
    assert_eq!(names(&got), ["b", "c", "a"]);
}

#[test]
fn primitive_lists() {
    let meta = |f: Value| json!({"metadata": {"name": "cm", "finalizers": f}});
    let cm = ("", "ConfigMap");
    run(vec![
        Case {
            name: "finalizers merge as a set",
            kind: cm,
            original: meta(json!(["a", "b"])),
            patch: json!({"metadata": {"finalizers": ["a", "c"]}}),
            want: Want::Ok(meta(json!(["a", "c", "b"]))),
        },
        Case {
            name: "a new finalizer goes first (upstream's order)",
            kind: cm,
            original: meta(json!(["a", "b"])),
            patch: json!({"metadata": {"finalizers": ["c"]}}),
            want: Want::Ok(meta(json!(["c", "a", "b"]))),
        },
        Case {
            name: "duplicates collapse",
            kind: cm,
            original: meta(json!(["a", "a", "b"])),
            patch: json!({"metadata": {"finalizers": ["b", "b"]}}),
            want: Want::Ok(meta(json!(["a", "b"]))),
        },
        Case {
            name: "$deleteFromPrimitiveList",
            kind: cm,
            original: meta(json!(["a", "b", "c"])),
            patch: json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "zz"]}}),
            want: Want::Ok(meta(json!(["a", "c"]))),
        },
        Case {
            name: "$deleteFromPrimitiveList with $setElementOrder",
            kind: cm,
            original: meta(json!(["a", "b", "c"])),
            patch: json!({"metadata": {
                "$setElementOrder/finalizers": ["c", "a"],
                "$deleteFromPrimitiveList/finalizers": ["b"]
            }}),
            want: Want::Ok(meta(json!(["c", "a"]))),
        },
        Case {
            name: "$deleteFromPrimitiveList of a missing list adds nothing",
            kind: cm,
            original: json!({"metadata": {"name": "cm"}}),
            patch: json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
            want: Want::Ok(json!({"metadata": {"name": "cm"}})),
        },
        Case {
            name: "$deleteFromPrimitiveList works on lists without merge strategy too",
            kind: POD,
            original: pod(vec![container("a", json!({"args": ["x", "y"]}))]),
            patch: json!({"spec": {"containers": [{"name": "a", "$deleteFromPrimitiveList/args": ["x"]}]}}),
            want: Want::Ok(pod(vec![container("a", json!({"args": ["y"]}))])),
        },
        Case {
            name: "node podCIDRs merge as a set",
            kind: ("", "Node"),
            original: json!({"spec": {"podCIDRs": ["10.0.0.0/24"]}}),
            patch: json!({"spec": {"podCIDRs": ["10.0.0.0/24", "fd00::/64"]}}),
            want: Want::Ok(json!({"spec": {"podCIDRs": ["10.0.0.0/24", "fd00::/64"]}})),
        },
        Case {
            name: "mixed element types",
            kind: cm,
            original: meta(json!(["a"])),
            patch: json!({"metadata": {"finalizers": [1]}}),
            want: Want::Err(422, "list element types are not identical: [[a] [1]]"),
        },
        Case {
            name: "lists of lists",
            kind: cm,
            original: meta(json!([])),
            patch: json!({"metadata": {"finalizers": [["x"]]}}),
            want: Want::Err(422, "lists of lists are not supported"),
        },
    ]);
}

#[test]
fn nested_pod_templates() {
    let template = |containers: Vec<Value>| json!({"spec": {"containers": containers}});
    let a = container("a", json!({"env": [{"name": "X", "value": "1"}]}));
    // A new variable goes before the server's ones, as upstream orders it.
    let patched_a = container(
        "a",
        json!({"env": [{"name": "Y", "value": "2"}, {"name": "X", "value": "1"}]}),
    );
    let patch_a = json!([{"name": "a", "env": [{"name": "Y", "value": "2"}]}]);
    let b = container("b", json!({}));
    let wrap = |kind: &str, t: Value| match kind {
        "PodTemplate" => json!({"template": t}),
        "CronJob" => json!({"spec": {"jobTemplate": {"spec": {"template": t}}}}),
        _ => json!({"spec": {"template": t}}),
    };
    for (group, kind) in [
        ("", "PodTemplate"),
        ("", "ReplicationController"),
        ("apps", "Deployment"),
        ("apps", "ReplicaSet"),
        ("apps", "StatefulSet"),
        ("apps", "DaemonSet"),
        ("batch", "Job"),
        ("batch", "CronJob"),
    ] {
        run(vec![Case {
            name: kind,
            kind: (group, kind),
            original: wrap(kind, template(vec![a.clone(), b.clone()])),
            patch: wrap(kind, json!({"spec": {"containers": patch_a.clone()}})),
            want: Want::Ok(wrap(kind, template(vec![patched_a.clone(), b.clone()]))),
        }]);
    }
}

#[test]
fn other_kinds_merge_keys() {
    run(vec![
        Case {
            name: "service ports by port",
            kind: ("", "Service"),
            original: json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}}),
            patch: json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
            want: Want::Ok(
                json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}]}}),
            ),
        },
        Case {
            name: "node addresses by type",
            kind: ("", "Node"),
            original: json!({"status": {"addresses": [
                {"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "n"}
            ]}}),
            patch: json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.2"}]}}),
            want: Want::Ok(json!({"status": {"addresses": [
                {"type": "InternalIP", "address": "10.0.0.2"}, {"type": "Hostname", "address": "n"}
            ]}})),
        },
        Case {
            name: "node taints are replaced",
            kind: ("", "Node"),
            original: json!({"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}}),
            patch: json!({"spec": {"taints": [{"key": "b", "effect": "NoSchedule"}]}}),
            want: Want::Ok(json!({"spec": {"taints": [{"key": "b", "effect": "NoSchedule"}]}})),
        },
        Case {
            name: "ownerReferences by uid",
            kind: ("apps", "ReplicaSet"),
            original: json!({"metadata": {"ownerReferences": [{"uid": "u1", "name": "d", "controller": true}]}}),
            patch: json!({"metadata": {"ownerReferences": [{"uid": "u1", "controller": false}]}}),
            want: Want::Ok(
                json!({"metadata": {"ownerReferences": [{"uid": "u1", "name": "d", "controller": false}]}}),
            ),
        },
        Case {
            name: "service account secrets by name",
            kind: ("", "ServiceAccount"),
            original: json!({"secrets": [{"name": "s1"}]}),
            patch: json!({"secrets": [{"name": "s2"}]}),
            want: Want::Ok(json!({"secrets": [{"name": "s2"}, {"name": "s1"}]})),
        },
        Case {
            name: "endpoints subsets are replaced",
            kind: ("", "Endpoints"),
            original: json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}]}]}),
            patch: json!({"subsets": [{"addresses": [{"ip": "10.0.0.2"}]}]}),
            want: Want::Ok(json!({"subsets": [{"addresses": [{"ip": "10.0.0.2"}]}]})),
        },
        Case {
            name: "role rules are replaced",
            kind: ("rbac.authorization.k8s.io", "Role"),
            original: json!({"rules": [{"verbs": ["get"], "resources": ["pods"]}]}),
            patch: json!({"rules": [{"verbs": ["list"], "resources": ["pods"]}]}),
            want: Want::Ok(json!({"rules": [{"verbs": ["list"], "resources": ["pods"]}]})),
        },
        Case {
            name: "deployment conditions by type",
            kind: ("apps", "Deployment"),
            original: json!({"status": {"conditions": [{"type": "Available", "status": "False"}]}}),
            patch: json!({"status": {"conditions": [{"type": "Progressing", "status": "True"}]}}),
            want: Want::Ok(json!({"status": {"conditions": [
                {"type": "Progressing", "status": "True"}, {"type": "Available", "status": "False"}
            ]}})),
        },
        Case {
            name: "PDB selector is replaced whole (patchStrategy=replace)",
            kind: ("policy", "PodDisruptionBudget"),
            original: json!({"spec": {"selector": {"matchLabels": {"a": "1"}}}}),
            patch: json!({"spec": {"selector": {"matchExpressions": [{"key": "b", "operator": "Exists"}]}}}),
            want: Want::Ok(
                json!({"spec": {"selector": {"matchExpressions": [{"key": "b", "operator": "Exists"}]}}}),
            ),
        },
        Case {
            name: "labels merge like any map",
            kind: ("apps", "Deployment"),
            original: json!({"spec": {"selector": {"matchLabels": {"a": "1"}}}}),
            patch: json!({"spec": {"selector": {"matchLabels": {"b": "2"}}}}),
            want: Want::Ok(json!({"spec": {"selector": {"matchLabels": {"a": "1", "b": "2"}}}})),
        },
    ]);
}
