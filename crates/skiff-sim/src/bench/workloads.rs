//! The workloads of upstream's `scheduler_perf` performance config, as pod
//! templates: init pods placed first, then the measured pods.

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::placement::Rule;

/// One workload.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Upstream's name.
    pub name: &'static str,
    /// Hollow nodes.
    pub nodes: usize,
    /// Pods created (and scheduled) before measuring.
    pub init_pods: usize,
    /// Template of the init pods.
    pub init_template: fn(usize) -> Value,
    /// Measured pods.
    pub pods: usize,
    /// Template of the measured pods.
    pub template: fn(usize) -> Value,
    /// PriorityClasses to create first: (name, value).
    pub priority_classes: &'static [(&'static str, i32)],
    /// What the pods ask of their placement, checked after the run.
    pub rule: Rule,
}

/// Namespace of init pods.
pub const INIT_NAMESPACE: &str = "sched-0";
/// Namespace of measured pods.
pub const MEASURED_NAMESPACE: &str = "sched-1";

fn pod(name: String, labels: Value, extra_spec: Value, cpu: &str, memory: &str) -> Value {
    let mut spec = json!({
        "containers": [{
            "name": "pause",
            "image": "registry.k8s.io/pause:3.10",
            "ports": [{"containerPort": 80}],
            "resources": {
                "requests": {"cpu": cpu, "memory": memory},
                "limits": {"cpu": cpu, "memory": memory},
            },
        }],
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    })
}

/// `pod-default.yaml`: one pause container, 100m / 500Mi.
pub fn default_pod(i: usize) -> Value {
    pod(format!("pod-{i}"), json!({}), json!({}), "100m", "500Mi")
}

/// The zones [`node_affinity_pod`] allows.
const AFFINITY_ZONES: &[&str] = &["zone-0", "zone-1", "zone-2"];

/// `pod-with-node-affinity.yaml`: required zone affinity. Upstream puts
/// every node in the first zone it names; hollow nodes spread over
/// `zone-0`…`zone-2`, so all three are named and every node stays
/// feasible, as upstream's are.
pub fn node_affinity_pod(i: usize) -> Value {
    pod(
        format!("affinity-pod-{i}"),
        json!({}),
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{
            "key": "topology.kubernetes.io/zone",
            "operator": "In",
            "values": AFFINITY_ZONES,
        }]}]}}}}),
        "100m",
        "500Mi",
    )
}

/// The maxSkew of [`topology_spreading_pod`]'s zone constraint.
const MAX_ZONE_SKEW: usize = 5;

/// `pod-with-topology-spreading.yaml`: spread over zones, maxSkew 5.
pub fn topology_spreading_pod(i: usize) -> Value {
    pod(
        format!("spreading-pod-{i}"),
        json!({"color": "blue"}),
        json!({"topologySpreadConstraints": [{
            "maxSkew": MAX_ZONE_SKEW,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"color": "blue"}},
        }]}),
        "100m",
        "500Mi",
    )
}

/// `pod-with-pod-anti-affinity.yaml`: at most one per node, across the
/// init and measured namespaces.
pub fn anti_affinity_pod(i: usize) -> Value {
    pod(
        format!("anti-affinity-pod-{i}"),
        json!({"color": "green"}),
        json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchLabels": {"color": "green"}},
            "topologyKey": "kubernetes.io/hostname",
            "namespaces": [MEASURED_NAMESPACE, INIT_NAMESPACE],
        }]}}}),
        "100m",
        "500Mi",
    )
}

/// `pod-low-priority.yaml`: 900m / 500Mi at the default priority (0).
pub fn low_priority_pod(i: usize) -> Value {
    pod(
        format!("low-{i}"),
        json!({}),
        json!({"terminationGracePeriodSeconds": 0}),
        "900m",
        "500Mi",
    )
}

/// `pod-high-priority.yaml`: 900m / 500Mi at priority 10. Upstream sets
/// `spec.priority` directly (its test server has no Priority admission);
/// here a PriorityClass of value 10 carries it.
pub fn high_priority_pod(i: usize) -> Value {
    pod(
        format!("high-{i}"),
        json!({}),
        json!({"priorityClassName": "sim-high", "terminationGracePeriodSeconds": 0}),
        "900m",
        "500Mi",
    )
}

/// The workloads at `nodes` / `pods` (SchedulingBasic's sizes), shaped as
/// upstream's 5000Nodes variants (500Nodes for Preemption) scale:
/// - SchedulingBasic: init pods a tenth of the measured;
/// - NodeAffinity, TopologySpreading: one init pod per node;
/// - PodAntiAffinity: a fifth of the nodes as init and as measured pods
///   (one per node at most over both);
/// - Preemption: a tenth of the nodes, four low-priority 900m pods filling
///   each 4-CPU node, then one high-priority pod per node.
pub fn all(nodes: usize, pods: usize) -> Vec<Workload> {
    let preemption_nodes = (nodes / 10).max(1);
    let anti = (nodes / 5).max(1);
    let basic = |name, template: fn(usize) -> Value, init_pods, rule| Workload {
        name,
        nodes,
        init_pods,
        init_template: default_pod,
        pods,
        template,
        priority_classes: &[],
        rule,
    };
    vec![
        basic("SchedulingBasic", default_pod, pods / 10, Rule::Fit),
        basic(
            "NodeAffinity",
            node_affinity_pod,
            nodes,
            Rule::InZones(AFFINITY_ZONES),
        ),
        basic(
            "TopologySpreading",
            topology_spreading_pod,
            nodes,
            Rule::MaxZoneSkew(MAX_ZONE_SKEW),
        ),
        Workload {
            name: "PodAntiAffinity",
            nodes,
            init_pods: anti,
            init_template: anti_affinity_pod,
            pods: anti.min(pods),
            template: anti_affinity_pod,
            priority_classes: &[],
            rule: Rule::OnePerNode,
        },
        Workload {
            name: "Preemption",
            nodes: preemption_nodes,
            init_pods: preemption_nodes * 4,
            init_template: low_priority_pod,
            pods: preemption_nodes,
            template: high_priority_pod,
            priority_classes: &[("sim-high", 10)],
            rule: Rule::Fit,
        },
    ]
}

/// A template as a typed Pod (to check it decodes).
pub fn typed(v: Value) -> Result<Pod, serde_json::Error> {
    serde_json::from_value(v)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_pods_with_distinct_names() {
        for w in all(100, 200) {
            let a = typed((w.template)(0)).unwrap();
            let b = typed((w.template)(1)).unwrap();
            assert_ne!(a.metadata.name, b.metadata.name, "{}", w.name);
            typed((w.init_template)(0)).unwrap();
            assert!(w.pods > 0 && w.nodes > 0, "{}", w.name);
        }
        let anti = all(50, 1000)
            .into_iter()
            .find(|w| w.name == "PodAntiAffinity")
            .unwrap();
        assert!(
            anti.pods + anti.init_pods <= anti.nodes,
            "one anti-affinity pod per node at most"
        );
        let pre = all(500, 1000)
            .into_iter()
            .find(|w| w.name == "Preemption")
            .unwrap();
        // Four 900m pods fill a 4-CPU node; the high-priority ones must preempt.
        assert_eq!((pre.nodes, pre.init_pods, pre.pods), (50, 200, 50));
    }
}
