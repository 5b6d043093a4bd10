//! Queueing hints of the default plugins: which events may make a pod a
//! plugin rejected schedulable (upstream's `QueueingHintFn` tables).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};

use super::registry;
use super::testing::{handle, pod};
use crate::framework::{
    ClusterEvent, EventObjects, EventResource, Plugin, PodInfo, QueueingHint, action,
};

use QueueingHint::{Queue, Skip};

fn plugin(name: &str) -> Arc<dyn Plugin> {
    let (_, factory) = registry().into_iter().find(|(n, _)| *n == name).unwrap();
    factory(None, &handle()).unwrap()
}

fn node(v: Value) -> Arc<Node> {
    Arc::new(serde_json::from_value(v).unwrap())
}

fn other(v: Value) -> Arc<Pod> {
    Arc::new(serde_json::from_value(v).unwrap())
}

/// A node `n` with `cpu` cores, `pods` slots, labels and taints.
fn n(cpu: &str, pods: &str, labels: Value, spec: Value) -> Arc<Node> {
    node(json!({
        "metadata": {"name": "n", "labels": labels},
        "spec": spec,
        "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": pods}},
    }))
}

fn added(new: Arc<Node>) -> EventObjects {
    EventObjects::Node {
        old: None,
        new: Some(new),
    }
}

fn updated(old: Arc<Node>, new: Arc<Node>) -> EventObjects {
    EventObjects::Node {
        old: Some(old),
        new: Some(new),
    }
}

fn pod_added(p: Arc<Pod>) -> EventObjects {
    EventObjects::Pod {
        old: None,
        new: Some(p),
    }
}

fn pod_deleted(p: Arc<Pod>) -> EventObjects {
    EventObjects::Pod {
        old: Some(p),
        new: None,
    }
}

fn hint(pl: &dyn Plugin, target: &PodInfo, objects: &EventObjects) -> QueueingHint {
    // The event's kind does not matter to the hints; the objects do.
    let event = ClusterEvent {
        resource: EventResource::Wildcard,
        action: action::ALL,
    };
    pl.queueing_hint(target, &event, objects)
}

#[test]
fn node_resources_fit() {
    let pl = plugin("NodeResourcesFit");
    let target = pod(json!({"spec": {"containers": [
        {"name": "c", "resources": {"requests": {"cpu": "2"}}}]}}));
    let none = || json!({});
    let cases = [
        (
            "new node too small",
            added(n("1", "110", none(), none())),
            Skip,
        ),
        (
            "new node with room",
            added(n("4", "110", none(), none())),
            Queue,
        ),
        (
            "update without more room",
            updated(
                n("4", "110", none(), none()),
                n("4", "110", json!({"a": "b"}), none()),
            ),
            Skip,
        ),
        (
            "more cpu",
            updated(n("1", "110", none(), none()), n("4", "110", none(), none())),
            Queue,
        ),
        (
            "more pod slots",
            updated(n("4", "1", none(), none()), n("4", "110", none(), none())),
            Queue,
        ),
        (
            "scheduled pod deleted",
            pod_deleted(other(json!({"metadata": {"name": "o"}, "spec": {
                "nodeName": "n", "containers": []}}))),
            Queue,
        ),
        (
            "pending pod deleted",
            pod_deleted(other(
                json!({"metadata": {"name": "o"}, "spec": {"containers": []}}),
            )),
            Skip,
        ),
        ("unknown objects", EventObjects::Unknown, Queue),
    ];
    for (what, objects, want) in cases {
        assert_eq!(hint(&*pl, &target, &objects), want, "{what}");
    }
}

#[test]
fn taint_toleration_and_node_unschedulable() {
    let tt = plugin("TaintToleration");
    let nu = plugin("NodeUnschedulable");
    let target = pod(json!({"spec": {"containers": [], "tolerations": [
        {"key": "ok", "operator": "Exists"}]}}));
    let tainted = |key: &str, effect: &str| {
        n(
            "4",
            "110",
            json!({}),
            json!({"taints": [{"key": key, "effect": effect}]}),
        )
    };
    let clean = || n("4", "110", json!({}), json!({}));
    let cases = [
        (
            "new node with a bad taint",
            added(tainted("bad", "NoSchedule")),
            Skip,
        ),
        (
            "new tolerated node",
            added(tainted("ok", "NoSchedule")),
            Queue,
        ),
        (
            "taint removed",
            updated(tainted("bad", "NoSchedule"), clean()),
            Queue,
        ),
        (
            "a soft taint on a node already tolerated",
            updated(clean(), tainted("bad", "PreferNoSchedule")),
            Skip,
        ),
        (
            "node deleted",
            EventObjects::Node {
                old: Some(clean()),
                new: None,
            },
            Queue,
        ),
    ];
    for (what, objects, want) in cases {
        assert_eq!(
            hint(&*tt, &target, &objects),
            want,
            "TaintToleration: {what}"
        );
    }
    let cordoned = || n("4", "110", json!({}), json!({"unschedulable": true}));
    let cases = [
        ("new cordoned node", added(cordoned()), Skip),
        ("uncordoned", updated(cordoned(), clean()), Queue),
        (
            "relabelled, still schedulable",
            updated(clean(), n("4", "110", json!({"x": "y"}), json!({}))),
            Skip,
        ),
    ];
    for (what, objects, want) in cases {
        assert_eq!(
            hint(&*nu, &target, &objects),
            want,
            "NodeUnschedulable: {what}"
        );
    }
}

#[test]
fn node_affinity() {
    let pl = plugin("NodeAffinity");
    let target = pod(json!({"spec": {"containers": [], "nodeSelector": {"zone": "a"}}}));
    let zone = |z: &str| n("4", "110", json!({"zone": z}), json!({}));
    let cases = [
        ("new node elsewhere", added(zone("b")), Skip),
        ("new node in the zone", added(zone("a")), Queue),
        ("moved into the zone", updated(zone("b"), zone("a")), Queue),
        (
            "already matched",
            updated(
                zone("a"),
                n("4", "110", json!({"zone": "a", "x": "y"}), json!({})),
            ),
            Skip,
        ),
    ];
    for (what, objects, want) in cases {
        assert_eq!(hint(&*pl, &target, &objects), want, "{what}");
    }
}

#[test]
fn node_ports() {
    let pl = plugin("NodePorts");
    let target = pod(json!({"spec": {"containers": [{"name": "c",
        "ports": [{"containerPort": 80, "hostPort": 8080}]}]}}));
    let holder = |port: i32, node: Option<&str>| {
        other(
            json!({"metadata": {"name": "o"}, "spec": {"nodeName": node, "containers": [
            {"name": "c", "ports": [{"containerPort": 80, "hostPort": port}]}]}}),
        )
    };
    let cases = [
        (
            "the port's holder left",
            pod_deleted(holder(8080, Some("n"))),
            Queue,
        ),
        (
            "another port freed",
            pod_deleted(holder(9090, Some("n"))),
            Skip,
        ),
        ("a pending pod left", pod_deleted(holder(8080, None)), Skip),
    ];
    for (what, objects, want) in cases {
        assert_eq!(hint(&*pl, &target, &objects), want, "{what}");
    }
}

#[test]
fn inter_pod_affinity() {
    let pl = plugin("InterPodAffinity");
    let target = pod(json!({"spec": {"containers": [], "affinity": {
        "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}]},
        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "noisy"}}, "topologyKey": "zone"}]},
    }}}));
    let scheduled = |app: &str| {
        other(
            json!({"metadata": {"name": "o", "namespace": "default", "labels": {"app": app}},
            "spec": {"nodeName": "n", "containers": []}}),
        )
    };
    let pending = other(json!({"metadata": {"name": "o", "namespace": "default",
        "labels": {"app": "db"}}, "spec": {"containers": []}}));
    let repeller = other(json!({"metadata": {"name": "r", "namespace": "default"},
        "spec": {"nodeName": "n", "containers": [], "affinity": {"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"x": "y"}}, "topologyKey": "zone"}]}}}}));
    let zone = |z: &str, extra: &str| n("4", "110", json!({"zone": z, "extra": extra}), json!({}));
    let cases = [
        ("a wanted pod arrived", pod_added(scheduled("db")), Queue),
        (
            "an unrelated pod arrived",
            pod_added(scheduled("web")),
            Skip,
        ),
        ("a pending wanted pod", pod_added(pending), Skip),
        (
            "a repelling pod left",
            pod_deleted(scheduled("noisy")),
            Queue,
        ),
        ("an unrelated pod left", pod_deleted(scheduled("web")), Skip),
        (
            "a pod with its own anti-affinity left",
            pod_deleted(repeller),
            Queue,
        ),
        (
            "relabelled into the affinity",
            EventObjects::Pod {
                old: Some(scheduled("web")),
                new: Some(scheduled("db")),
            },
            Queue,
        ),
        (
            "a node changed zone",
            updated(zone("a", "1"), zone("b", "1")),
            Queue,
        ),
        (
            "a node changed another label",
            updated(zone("a", "1"), zone("a", "2")),
            Skip,
        ),
    ];
    for (what, objects, want) in cases {
        assert_eq!(hint(&*pl, &target, &objects), want, "{what}");
    }
}

#[test]
fn pod_topology_spread() {
    let pl = plugin("PodTopologySpread");
    let target = pod(json!({"metadata": {"labels": {"app": "web"}}, "spec": {
        "containers": [],
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "web"}}}],
    }}));
    let scheduled = |ns: &str, app: &str| {
        other(
            json!({"metadata": {"name": "o", "namespace": ns, "labels": {"app": app}},
            "spec": {"nodeName": "n", "containers": []}}),
        )
    };
    let labelled = |labels: Value| n("4", "110", labels, json!({}));
    let cases = [
        (
            "a counted pod arrived",
            pod_added(scheduled("default", "web")),
            Queue,
        ),
        (
            "a counted pod left",
            pod_deleted(scheduled("default", "web")),
            Queue,
        ),
        (
            "same labels, other namespace",
            pod_added(scheduled("other", "web")),
            Skip,
        ),
        (
            "an uncounted pod",
            pod_added(scheduled("default", "db")),
            Skip,
        ),
        (
            "a new node without the key",
            added(labelled(json!({}))),
            Skip,
        ),
        (
            "a new node in a zone",
            added(labelled(json!({"zone": "a"}))),
            Queue,
        ),
        (
            "a node changed zone",
            updated(
                labelled(json!({"zone": "a"})),
                labelled(json!({"zone": "b"})),
            ),
            Queue,
        ),
        (
            "a node changed another label",
            updated(
                labelled(json!({"zone": "a"})),
                labelled(json!({"zone": "a", "x": "y"})),
            ),
            Skip,
        ),
    ];
    for (what, objects, want) in cases {
        assert_eq!(hint(&*pl, &target, &objects), want, "{what}");
    }
}
