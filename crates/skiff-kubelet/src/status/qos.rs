//! The QoS class (upstream's `GetPodQOS` / `ComputePodQOS`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use skiff_api::quantity::Quantity;

/// The pod's QoS class: the one already in its status (it never changes),
/// else computed from its containers.
pub fn pod_qos(pod: &Pod) -> &'static str {
    match pod.status.as_ref().and_then(|s| s.qos_class.as_deref()) {
        Some("Guaranteed") => "Guaranteed",
        Some("Burstable") => "Burstable",
        Some("BestEffort") => "BestEffort",
        _ => compute_pod_qos(pod),
    }
}

/// `Guaranteed` when every container limits cpu and memory and requests
/// equal limits, `BestEffort` when nothing requests or limits cpu or
/// memory, else `Burstable`.
pub fn compute_pod_qos(pod: &Pod) -> &'static str {
    let Some(spec) = pod.spec.as_ref() else {
        return "BestEffort";
    };
    let zero = Quantity::from_int(0);
    let mut requests: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut limits: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut guaranteed = true;
    let positive = |list: Option<&BTreeMap<String, ApiQuantity>>| -> Vec<(&'static str, Quantity)> {
        let mut out = Vec::new();
        for name in ["cpu", "memory"] {
            let q = list
                .and_then(|l| l.get(name))
                .and_then(|q| Quantity::parse(&q.0).ok());
            if let Some(q) = q.filter(|q| *q > zero) {
                out.push((name, q));
            }
        }
        out
    };
    let add = |into: &mut BTreeMap<&'static str, Quantity>, name: &'static str, q: Quantity| {
        let sum = match into.get(name) {
            Some(prev) => prev.checked_add(&q).unwrap_or(q),
            None => q,
        };
        into.insert(name, sum);
    };
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for c in containers {
        let resources = c.resources.as_ref();
        for (name, q) in positive(resources.and_then(|r| r.requests.as_ref())) {
            add(&mut requests, name, q);
        }
        let found = positive(resources.and_then(|r| r.limits.as_ref()));
        if found.len() != 2 {
            guaranteed = false;
        }
        for (name, q) in found {
            add(&mut limits, name, q);
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed
        && requests.len() == limits.len()
        && requests.iter().all(|(n, r)| limits.get(n) == Some(r))
    {
        return "Guaranteed";
    }
    "Burstable"
}
