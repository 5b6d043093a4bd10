//! What the scheduler knows about a node and its pods (upstream's
//! `framework.NodeInfo` / `PodInfo` / `Resource`), precomputed so Filter and
//! Score do no parsing per node.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Node, Pod, PodAffinityTerm, Taint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use skiff_api::quantity::Quantity;
use skiff_api::selector::labels::{Selector, from_label_selector};

use super::topology::{LabelHashes, LabelIndex, hash_label};

/// Default CPU request (millicores) counted for scoring when a container has
/// none (upstream's `DefaultMilliCPURequest`).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Default memory request (bytes) counted for scoring when a container has
/// none (upstream's `DefaultMemoryRequest`, 200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Amounts of resources (upstream's `framework.Resource`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resource {
    /// CPU in millicores.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Ephemeral storage in bytes.
    pub ephemeral_storage: i64,
    /// Pod slots (`pods` in allocatable); unused for requests.
    pub allowed_pod_number: i64,
    /// Extended resources and hugepages, by resource name, in their base unit.
    pub scalar: BTreeMap<String, i64>,
}

impl Resource {
    /// From a resource list (`status.allocatable`, container requests).
    pub fn from_list(list: Option<&BTreeMap<String, ApiQuantity>>) -> Resource {
        let mut r = Resource::default();
        for (name, q) in list.into_iter().flatten() {
            r.add_named(name, q);
        }
        r
    }

    fn add_named(&mut self, name: &str, q: &ApiQuantity) {
        let Ok(q) = Quantity::parse(&q.0) else {
            return;
        };
        match name {
            "cpu" => self.milli_cpu += q.milli_value(),
            "memory" => self.memory += q.value(),
            "ephemeral-storage" => self.ephemeral_storage += q.value(),
            "pods" => self.allowed_pod_number += q.value(),
            n if is_scalar_resource_name(n) => {
                *self.scalar.entry(n.to_owned()).or_default() += q.value();
            }
            _ => {}
        }
    }

    /// Adds `other` to `self`.
    pub fn add(&mut self, other: &Resource) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.allowed_pod_number += other.allowed_pod_number;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    /// Subtracts `other` from `self`.
    pub fn sub(&mut self, other: &Resource) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.allowed_pod_number -= other.allowed_pod_number;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    /// Raises each amount of `self` to at least `other`'s.
    pub fn set_max(&mut self, other: &Resource) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        self.allowed_pod_number = self.allowed_pod_number.max(other.allowed_pod_number);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }

    /// The amount of the named resource (`cpu` in millicores).
    pub fn get(&self, name: &str) -> i64 {
        match name {
            "cpu" => self.milli_cpu,
            "memory" => self.memory,
            "ephemeral-storage" => self.ephemeral_storage,
            "pods" => self.allowed_pod_number,
            n => self.scalar.get(n).copied().unwrap_or(0),
        }
    }
}

/// Extended resources (`domain/name` outside `kubernetes.io`), hugepages and
/// attachable volumes are counted as scalar resources.
pub fn is_scalar_resource_name(name: &str) -> bool {
    name.starts_with("hugepages-")
        || name.starts_with("attachable-volumes-")
        || (name.contains('/') && !is_native_resource(name))
}

fn is_native_resource(name: &str) -> bool {
    match name.split_once('/') {
        None => true,
        Some((domain, _)) => domain == "kubernetes.io" || domain.ends_with(".kubernetes.io"),
    }
}

fn container_requests(c: &Container, non_zero: bool) -> Resource {
    let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    let mut r = Resource::from_list(requests);
    if non_zero {
        let has = |n: &str| requests.is_some_and(|m| m.contains_key(n));
        if !has("cpu") {
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if !has("memory") {
            r.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    r
}

/// The resources a pod asks for, as upstream's `PodRequests`: the sum of its
/// containers, raised to what init containers need while they run (restartable
/// "sidecar" init containers keep running and add up), plus `spec.overhead`.
/// With `non_zero`, containers without a cpu/memory request count the
/// defaults above (used for scoring spread, not for fit).
pub fn pod_requests(pod: &Pod, non_zero: bool) -> Resource {
    let Some(spec) = pod.spec.as_ref() else {
        return Resource::default();
    };
    let mut reqs = Resource::default();
    for c in &spec.containers {
        reqs.add(&container_requests(c, non_zero));
    }
    let mut sidecars = Resource::default();
    let mut init_max = Resource::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c, non_zero);
        if c.restart_policy.as_deref() == Some("Always") {
            reqs.add(&r);
            sidecars.add(&r);
            init_max.set_max(&sidecars);
        } else {
            let mut tmp = r;
            tmp.add(&sidecars);
            init_max.set_max(&tmp);
        }
    }
    reqs.set_max(&init_max);
    if let Some(overhead) = spec.overhead.as_ref() {
        reqs.add(&Resource::from_list(Some(overhead)));
    }
    reqs
}

/// One parsed pod (anti-)affinity term (upstream's `framework.AffinityTerm`).
#[derive(Debug, Clone, PartialEq)]
pub struct AffinityTerm {
    /// Namespaces the term applies to, explicit or the pod's own.
    pub namespaces: BTreeSet<String>,
    /// Pods the term selects.
    pub selector: Selector,
    /// The node label that defines a topology domain.
    pub topology_key: String,
    /// [`hash_label`] of `topology_key`, for [`NodeInfo::label_value_hashed`].
    pub topology_key_hash: u64,
    /// Namespaces selected by labels (None: only `namespaces`; an empty
    /// selector selects every namespace).
    pub namespace_selector: Option<Selector>,
}

impl AffinityTerm {
    fn parse(pod_namespace: &str, term: &PodAffinityTerm) -> AffinityTerm {
        let mut namespaces: BTreeSet<String> = term.namespaces.iter().flatten().cloned().collect();
        let namespace_selector = term
            .namespace_selector
            .as_ref()
            .map(|s| from_label_selector(Some(s)).unwrap_or_else(|_| Selector::nothing()));
        if namespaces.is_empty() && namespace_selector.is_none() {
            namespaces.insert(pod_namespace.to_owned());
        }
        AffinityTerm {
            namespaces,
            // An invalid selector (validation should have stopped it)
            // selects nothing rather than everything.
            selector: from_label_selector(term.label_selector.as_ref())
                .unwrap_or_else(|_| Selector::nothing()),
            topology_key: term.topology_key.clone(),
            topology_key_hash: hash_label(&term.topology_key),
            namespace_selector,
        }
    }
}

/// A preferred (weighted) affinity term.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedAffinityTerm {
    /// The term.
    pub term: AffinityTerm,
    /// Its weight (1-100).
    pub weight: i32,
}

/// A pod with what the plugins need precomputed (upstream's `PodInfo`).
#[derive(Debug, Clone)]
pub struct PodInfo {
    /// The pod as last seen.
    pub pod: Arc<Pod>,
    /// `namespace/name`.
    pub key: String,
    /// What it asks for ([`pod_requests`]).
    pub requests: Resource,
    /// What it asks for with the non-zero cpu/memory defaults.
    pub non_zero_requests: Resource,
    /// Required pod affinity terms.
    pub required_affinity_terms: Vec<AffinityTerm>,
    /// Required pod anti-affinity terms.
    pub required_anti_affinity_terms: Vec<AffinityTerm>,
    /// Preferred pod affinity terms.
    pub preferred_affinity_terms: Vec<WeightedAffinityTerm>,
    /// Preferred pod anti-affinity terms.
    pub preferred_anti_affinity_terms: Vec<WeightedAffinityTerm>,
    /// The pod's namespace (the index's prefix) and labels, packed so the
    /// affinity and spreading plugins can match thousands of pods per cycle
    /// cheaply.
    pub label_index: LabelIndex,
    /// The pod has a deletion timestamp.
    pub terminating: bool,
    /// Its host ports ([`host_ports`]), computed once: a node adds and
    /// removes the pod many times (assume, snapshot copies, preemption's
    /// what-ifs) and the pod's spec is cold by then.
    pub host_ports: Vec<HostPort>,
    /// The PVCs it mounts, `namespace/claim`, likewise computed once.
    pub pvc_keys: Vec<String>,
}

impl PodInfo {
    /// Precomputes `pod`.
    pub fn new(pod: Arc<Pod>) -> PodInfo {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let key = format!("{ns}/{}", pod.metadata.name.as_deref().unwrap_or(""));
        let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        let pa = affinity.and_then(|a| a.pod_affinity.as_ref());
        let paa = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let required = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            terms
                .into_iter()
                .flatten()
                .map(|t| AffinityTerm::parse(ns, t))
                .collect()
        };
        let preferred =
            |terms: Option<&Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
                terms
                    .into_iter()
                    .flatten()
                    .map(|w| WeightedAffinityTerm {
                        term: AffinityTerm::parse(ns, &w.pod_affinity_term),
                        weight: w.weight,
                    })
                    .collect::<Vec<_>>()
            };
        PodInfo {
            host_ports: host_ports(&pod),
            pvc_keys: pvc_keys(&pod),
            label_index: LabelIndex::new(ns, pod.metadata.labels.iter().flatten()),
            terminating: pod.metadata.deletion_timestamp.is_some(),
            requests: pod_requests(&pod, false),
            non_zero_requests: pod_requests(&pod, true),
            required_affinity_terms: required(pa.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            required_anti_affinity_terms: required(paa.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_affinity_terms: preferred(pa.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_anti_affinity_terms: preferred(paa.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            key,
            pod,
        }
    }

    /// A copy of the pod with `spec.nodeName` set to `node`: the pod as
    /// bound there. The cache counts an assumed pod by the node it is
    /// assumed onto, so it needs no such copy; event handlers that tell a
    /// scheduled pod by its node (a failed binding reports the pod deleted
    /// from its node) do.
    pub fn bound_to(&self, node: &str) -> Pod {
        let mut pod = (*self.pod).clone();
        if let Some(spec) = pod.spec.as_mut() {
            spec.node_name = Some(node.to_owned());
        }
        pod
    }

    /// True when the pod has any pod affinity or anti-affinity.
    pub fn has_affinity(&self) -> bool {
        !self.required_affinity_terms.is_empty()
            || !self.required_anti_affinity_terms.is_empty()
            || !self.preferred_affinity_terms.is_empty()
            || !self.preferred_anti_affinity_terms.is_empty()
    }

    /// The pod's namespace.
    pub fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("")
    }

    /// The pod's labels (empty when it has none).
    pub fn labels(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.pod.metadata.labels.as_ref().unwrap_or(&EMPTY)
    }
}

/// The pods nominated to one node, shared: the scheduling queue hands out
/// its own list rather than a copy, as a cycle asks for it on every node it
/// filters while any pod is nominated.
pub type NominatedPods = Arc<[Arc<PodInfo>]>;

/// A host port in use: (host IP, protocol, port). IP `0.0.0.0` means every
/// address.
pub type HostPort = (String, String, i32);

/// An image on a node, with how many nodes have it (for ImageLocality).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageStateSummary {
    /// Size in bytes.
    pub size: i64,
    /// Number of nodes in the cluster that have the image.
    pub num_nodes: usize,
}

/// A node and the pods on it, with aggregates kept in step by
/// [`NodeInfo::add_pod`] / [`NodeInfo::remove_pod`].
///
/// Laid out in declaration order (`repr(C)`), with what Filter and Score
/// read for every node of a cycle first: at 5,000 nodes a cycle visits
/// hundreds of nodes whose data is cold, and each cache line the plugins
/// touch per node is a memory load the cycle waits for.
#[derive(Debug, Clone, Default)]
#[repr(C)]
pub struct NodeInfo {
    /// `metadata.name` of `node` ("" while the Node is unknown), copied so
    /// ranking nodes need not read the Node object.
    pub name: String,
    /// `spec.unschedulable` (cordoned), copied so the first filter of
    /// every node need not read the Node object.
    pub unschedulable: bool,
    /// The node's taints (copied out of `spec.taints`).
    pub taints: Vec<Taint>,
    /// Pods on (or assumed onto) the node (NodeResourcesFit counts them).
    pub pods: Vec<Arc<PodInfo>>,
    /// `status.allocatable`.
    pub allocatable: Resource,
    /// Sum of the pods' requests.
    pub requested: Resource,
    /// Sum of the pods' requests with non-zero defaults.
    pub non_zero_requested: Resource,
    /// Images on the node, by every name they are known by.
    pub image_states: HashMap<String, ImageStateSummary>,
    /// Host ports in use.
    pub used_ports: BTreeSet<HostPort>,
    /// The Node object (None while only its pods are known).
    pub node: Option<Arc<Node>>,
    /// Those of `pods` with any pod affinity or anti-affinity.
    pub pods_with_affinity: Vec<Arc<PodInfo>>,
    /// Those of `pods` with required anti-affinity.
    pub pods_with_required_anti_affinity: Vec<Arc<PodInfo>>,
    /// PVCs used by pods on the node, `namespace/claim` → number of pods.
    pub pvc_ref_counts: HashMap<String, usize>,
    /// Bumped on every change, so snapshots copy only changed nodes.
    pub generation: u64,
    /// Hashes of the node's labels (filled by [`NodeInfo::set_node`]), for
    /// [`NodeInfo::topology_value`].
    pub label_hashes: LabelHashes,
}

impl NodeInfo {
    /// A node with no pods.
    pub fn new(node: Arc<Node>) -> NodeInfo {
        let mut info = NodeInfo::default();
        info.set_node(node);
        info
    }

    /// Replaces the Node object (pods and aggregates stay).
    pub fn set_node(&mut self, node: Arc<Node>) {
        self.allocatable =
            Resource::from_list(node.status.as_ref().and_then(|s| s.allocatable.as_ref()));
        self.taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        self.unschedulable = crate::plugins::node_unschedulable::is_unschedulable(&node);
        self.label_hashes = LabelHashes::new(&node);
        node.metadata
            .name
            .as_deref()
            .unwrap_or("")
            .clone_into(&mut self.name);
        self.node = Some(node);
    }

    /// Forgets the Node object (its pods and their aggregates stay).
    pub fn clear_node(&mut self) {
        self.node = None;
        self.name.clear();
    }

    /// The node's name ("" while the Node is unknown).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node's labels (empty when it has none).
    pub fn labels(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.node
            .as_ref()
            .and_then(|n| n.metadata.labels.as_ref())
            .unwrap_or(&EMPTY)
    }

    /// Adds a pod and its requests, ports and claims.
    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.non_zero_requested.add(&pod.non_zero_requests);
        for port in &pod.host_ports {
            self.used_ports.insert(port.clone());
        }
        for claim in &pod.pvc_keys {
            *self.pvc_ref_counts.entry(claim.clone()).or_default() += 1;
        }
        if pod.has_affinity() {
            self.pods_with_affinity.push(pod.clone());
        }
        if !pod.required_anti_affinity_terms.is_empty() {
            self.pods_with_required_anti_affinity.push(pod.clone());
        }
        self.pods.push(pod);
        self.generation += 1;
    }

    /// Removes the pod with `key` (`namespace/name`); false when absent.
    pub fn remove_pod(&mut self, key: &str) -> bool {
        let Some(i) = self.pods.iter().position(|p| p.key == key) else {
            return false;
        };
        let pod = self.pods.swap_remove(i);
        self.pods_with_affinity.retain(|p| p.key != key);
        self.pods_with_required_anti_affinity
            .retain(|p| p.key != key);
        self.requested.sub(&pod.requests);
        self.non_zero_requested.sub(&pod.non_zero_requests);
        // Ports may be shared by several pods only across distinct IPs or
        // protocols, so removing this pod's entries is exact.
        for port in &pod.host_ports {
            self.used_ports.remove(port);
        }
        for claim in &pod.pvc_keys {
            if let Some(n) = self.pvc_ref_counts.get_mut(claim) {
                *n -= 1;
                if *n == 0 {
                    self.pvc_ref_counts.remove(claim);
                }
            }
        }
        self.generation += 1;
        true
    }
}

/// The host ports a pod's containers ask for, and those of its restartable
/// ("sidecar") init containers, which keep running (upstream's
/// `GetHostPorts`); ordinary init containers have exited by then.
pub fn host_ports(pod: &Pod) -> Vec<HostPort> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    for c in sidecars.chain(spec.containers.iter()) {
        for p in c.ports.iter().flatten() {
            let Some(hp) = p.host_port.filter(|&hp| hp > 0) else {
                continue;
            };
            let ip = p
                .host_ip
                .clone()
                .filter(|ip| !ip.is_empty())
                .unwrap_or_else(|| "0.0.0.0".to_owned());
            let proto = p.protocol.clone().unwrap_or_else(|| "TCP".to_owned());
            out.push((ip, proto, hp));
        }
    }
    out
}

fn pvc_keys(pod: &Pod) -> Vec<String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| format!("{ns}/{}", c.claim_name))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Arc<Pod> {
        Arc::new(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn requests_take_init_containers_and_sidecars_into_account() {
        let p = pod(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {
                "initContainers": [
                    {"name": "i1", "resources": {"requests": {"cpu": "2", "memory": "1Gi"}}},
                    {"name": "s1", "restartPolicy": "Always",
                     "resources": {"requests": {"cpu": "500m"}}},
                    {"name": "i2", "resources": {"requests": {"cpu": "1"}}}
                ],
                "containers": [
                    {"name": "c1", "resources": {"requests": {"cpu": "100m", "memory": "100Mi",
                        "example.com/gpu": "1"}}},
                    {"name": "c2"}
                ],
                "overhead": {"cpu": "10m"}
            }
        }));
        let r = pod_requests(&p, false);
        // containers 100m + sidecar 500m = 600m < init max(2000, 1000+500) = 2000; + overhead.
        assert_eq!(r.milli_cpu, 2010);
        assert_eq!(r.memory, 1 << 30);
        assert_eq!(r.scalar.get("example.com/gpu"), Some(&1));
        let nz = pod_requests(&p, true);
        // c2 counts 100m / 200Mi; the sidecar counts the memory default too.
        assert_eq!(
            nz.memory,
            (1 << 30).max(100 * 1024 * 1024 + 2 * DEFAULT_MEMORY_REQUEST)
        );
    }

    #[test]
    fn node_info_tracks_pods() {
        let node: Arc<Node> = Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "n1", "labels": {"zone": "a"}},
                "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]},
                "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}
            }))
            .unwrap(),
        );
        let mut info = NodeInfo::new(node);
        assert_eq!(info.name(), "n1");
        assert_eq!(info.allocatable.milli_cpu, 4000);
        assert_eq!(info.allocatable.allowed_pod_number, 110);
        assert_eq!(info.taints.len(), 1);
        let p = Arc::new(PodInfo::new(pod(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {
                "containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}],
                    "resources": {"requests": {"cpu": "1"}}}],
                "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}],
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"topologyKey": "zone", "labelSelector": {"matchLabels": {"app": "x"}}}]}}
            }
        }))));
        assert_eq!(p.required_anti_affinity_terms.len(), 1);
        assert!(p.required_anti_affinity_terms[0].namespaces.contains("ns"));
        let g = info.generation;
        info.add_pod(p);
        assert!(info.generation > g);
        assert_eq!(info.requested.milli_cpu, 1000);
        assert!(
            info.used_ports
                .contains(&("0.0.0.0".into(), "TCP".into(), 8080))
        );
        assert_eq!(info.pvc_ref_counts.get("ns/data"), Some(&1));
        assert_eq!(info.pods_with_required_anti_affinity.len(), 1);
        assert!(info.remove_pod("ns/p"));
        assert!(!info.remove_pod("ns/p"));
        assert_eq!(info.requested, Resource::default());
        assert!(info.used_ports.is_empty() && info.pvc_ref_counts.is_empty());
        assert!(info.pods_with_affinity.is_empty());
    }
}
