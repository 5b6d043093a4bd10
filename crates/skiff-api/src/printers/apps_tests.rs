//! Workload controllers: columns, default and wide rows.

use serde_json::{Value, json};

use super::testutil::{ago, default_cells, header, res, wide_cells};
use crate::cells;

fn template() -> Value {
    json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
        {"name": "app", "image": "nginx:1.27"}, {"name": "sidecar", "image": "envoy:v1.30"}]}})
}

#[test]
fn deployment_rows() {
    let r = res("apps", "Deployment");
    assert_eq!(
        header(r, false),
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    );
    assert_eq!(
        header(r, true),
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "creationTimestamp": ago(3 * 86400)},
        "spec": {"replicas": 3,
            "selector": {"matchLabels": {"app": "web", "tier": "front"},
                "matchExpressions": [
                    {"key": "env", "operator": "In", "values": ["prod", "canary"]},
                    {"key": "legacy", "operator": "DoesNotExist"}]},
            "template": template()},
        "status": {"replicas": 3, "updatedReplicas": 2, "readyReplicas": 1,
            "availableReplicas": 1}});
    assert_eq!(
        wide_cells(r, &d),
        cells![
            "web",
            "1/3",
            2,
            1,
            "3d",
            "app,sidecar",
            "nginx:1.27,envoy:v1.30",
            "app=web,env in (canary,prod),!legacy,tier=front"
        ]
    );
    // A fresh deployment: no status yet; replicas defaulted to 1.
    let fresh = json!({"metadata": {"name": "new", "creationTimestamp": ago(1)},
        "spec": {"selector": {"matchLabels": {"app": "new"}}, "template": template()}});
    assert_eq!(default_cells(r, &fresh), cells!["new", "0/1", 0, 0, "1s"]);
    // Invalid and empty selectors.
    let bad = json!({"metadata": {"name": "bad"}, "spec": {"replicas": 0,
        "selector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}}});
    assert_eq!(wide_cells(r, &bad)[7], "<invalid>");
    let empty = json!({"metadata": {"name": "e"}, "spec": {"selector": {}}});
    assert_eq!(wide_cells(r, &empty)[7], "");
}

#[test]
fn replica_set_and_replication_controller_rows() {
    for r in [res("apps", "ReplicaSet"), res("", "ReplicationController")] {
        assert_eq!(
            header(r, true),
            [
                "NAME",
                "DESIRED",
                "CURRENT",
                "READY",
                "AGE",
                "CONTAINERS",
                "IMAGES",
                "SELECTOR"
            ]
        );
        assert_eq!(super::columns(r)[1].type_, "integer");
    }
    let rs = json!({"metadata": {"name": "web-5d4f", "creationTimestamp": ago(7200)},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web",
            "pod-template-hash": "5d4f"}}, "template": template()},
        "status": {"replicas": 3, "readyReplicas": 2, "availableReplicas": 2}});
    assert_eq!(
        wide_cells(res("apps", "ReplicaSet"), &rs),
        cells![
            "web-5d4f",
            3,
            3,
            2,
            "120m",
            "app,sidecar",
            "nginx:1.27,envoy:v1.30",
            "app=web,pod-template-hash=5d4f"
        ]
    );
    let rc = json!({"metadata": {"name": "legacy", "creationTimestamp": ago(4 * 3600)},
        "spec": {"replicas": 2, "selector": {"app": "legacy"}, "template": template()},
        "status": {"replicas": 2}});
    assert_eq!(
        wide_cells(res("", "ReplicationController"), &rc),
        cells![
            "legacy",
            2,
            2,
            0,
            "4h",
            "app,sidecar",
            "nginx:1.27,envoy:v1.30",
            "app=legacy"
        ]
    );
}

#[test]
fn stateful_set_rows() {
    let r = res("apps", "StatefulSet");
    assert_eq!(
        header(r, true),
        ["NAME", "READY", "AGE", "CONTAINERS", "IMAGES"]
    );
    let sts = json!({"metadata": {"name": "db", "creationTimestamp": ago(9 * 60 + 5)},
        "spec": {"replicas": 3, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
            "template": {"spec": {"containers": [{"name": "pg", "image": "postgres:16"}]}}},
        "status": {"replicas": 3, "readyReplicas": 2}});
    assert_eq!(
        wide_cells(r, &sts),
        cells!["db", "2/3", "9m5s", "pg", "postgres:16"]
    );
}

#[test]
fn daemon_set_rows() {
    let r = res("apps", "DaemonSet");
    assert_eq!(
        header(r, false),
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "NODE SELECTOR",
            "AGE"
        ]
    );
    let ds = json!({"metadata": {"name": "proxy", "creationTimestamp": ago(5 * 3600 + 30 * 60)},
        "spec": {"selector": {"matchLabels": {"k8s-app": "proxy"}},
            "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"},
                "containers": [{"name": "proxy", "image": "skiff/proxy:0.1"}]}}},
        "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
            "updatedNumberScheduled": 3, "numberAvailable": 2}});
    assert_eq!(
        wide_cells(r, &ds),
        cells![
            "proxy",
            3,
            3,
            2,
            3,
            2,
            "kubernetes.io/os=linux",
            "5h30m",
            "proxy",
            "skiff/proxy:0.1",
            "k8s-app=proxy"
        ]
    );
    let nothing = json!({"metadata": {"name": "n"}});
    assert_eq!(
        wide_cells(r, &nothing),
        cells!["n", 0, 0, 0, 0, 0, "<none>", "<unknown>", "", "", "<none>"]
    );
}

#[test]
fn controller_revision_rows() {
    let r = res("apps", "ControllerRevision");
    assert_eq!(header(r, true), ["NAME", "CONTROLLER", "REVISION", "AGE"]);
    let owned = |api_version: &str, kind: &str| {
        json!({"metadata": {"name": "web-7c9d", "creationTimestamp": ago(50),
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Pod", "name": "other", "uid": "1"},
                {"apiVersion": api_version, "kind": kind, "name": "web", "uid": "2",
                 "controller": true, "blockOwnerDeletion": true}]},
            "revision": 4, "data": {}})
    };
    let cases: Vec<(Value, Value)> = vec![
        (
            owned("apps/v1", "StatefulSet"),
            "statefulset.apps/web".into(),
        ),
        (
            owned("v1", "ReplicationController"),
            "replicationcontroller/web".into(),
        ),
        (owned("", ""), "web".into()),
        (owned("a/b/c", "Odd"), "web".into()),
        (
            json!({"metadata": {"name": "x"}, "revision": 1}),
            "<none>".into(),
        ),
    ];
    for (obj, want) in cases {
        assert_eq!(wide_cells(r, &obj)[1], want, "{obj}");
    }
    assert_eq!(
        default_cells(r, &owned("apps/v1", "DaemonSet")),
        cells!["web-7c9d", "daemonset.apps/web", 4, "50s"]
    );
}
