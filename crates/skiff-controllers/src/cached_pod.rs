//! The pod as the controller manager caches it.
//!
//! The shared pod informer holds every pod of the cluster. As
//! `k8s_openapi::api::core::v1::Pod` a typical pod costs about five times
//! its JSON size on the heap, because the generated structs carry every
//! field of the API inline and most are `None` (`Pod` is 2 KB before any
//! allocation, each `Container` another 2 KB). [`CachedPod`] keeps only
//! what the controllers read; everything else in the JSON is skipped when
//! decoding. It is a read model: a cached pod must never be written back
//! whole (that would drop every field it lacks), so writes starting from
//! one are patches carrying only what they change. Pods created from a
//! template are still full `Pod`s.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ContainerPort, ContainerState, EphemeralVolumeSource,
    PersistentVolumeClaimVolumeSource, PodCondition, PodIP, ResourceClaim, ResourceRequirements,
    Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{Deserialize, Serialize};

/// A pod with the fields the controllers read (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedPod {
    /// Without managedFields, and with only the annotations in
    /// [`READ_ANNOTATIONS`].
    #[serde(default, deserialize_with = "slim_metadata")]
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<CachedPodSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<CachedPodStatus>,
}

/// The pod annotations a controller reads; the cache keeps no others.
/// Pods often carry many (tooling, scrape configs, checksums, a rollout
/// restart's timestamp), and each map costs over 500 bytes.
pub const READ_ANNOTATIONS: &[&str] = &[
    crate::replicaset::ranking::POD_DELETION_COST,
    crate::job::indexed::COMPLETION_INDEX_ANNOTATION,
    crate::job::indexed::INDEX_FAILURE_COUNT_ANNOTATION,
    crate::job::indexed::INDEX_IGNORED_FAILURE_COUNT_ANNOTATION,
];

/// Drops what [`CachedPod::metadata`] does not keep.
fn slim(mut meta: ObjectMeta) -> ObjectMeta {
    meta.managed_fields = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.retain(|k, _| READ_ANNOTATIONS.contains(&k.as_str()));
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
    meta
}

fn slim_metadata<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    ObjectMeta::deserialize(d).map(slim)
}

/// The part of `PodSpec` the controllers read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedPodSpec {
    /// Read by the pod quota evaluator (the Terminating scope), as are
    /// `overhead` and `priorityClassName`: it reads the pod as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<i64>,
    /// Boxed: most pods have none, and it is large inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Box<Affinity>>,
    #[serde(default)]
    pub containers: Vec<CachedContainer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_containers: Option<Vec<CachedContainer>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overhead: Option<BTreeMap<String, Quantity>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdomain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<CachedVolume>>,
}

/// The part of `Container` the controllers read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedContainer {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<ContainerPort>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<CachedResources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<String>,
}

/// A container's `resources`, with requests and limits as [`QuantityMap`]s.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedResources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<Vec<ResourceClaim>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<QuantityMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<QuantityMap>,
}

/// Quantities by resource name, for the few entries a container's requests
/// or limits have: a sorted list, where a `BTreeMap` allocates a node with
/// room for eleven entries (over 500 bytes) for the first one. Reads and
/// writes as the same JSON object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuantityMap(Vec<(String, Quantity)>);

impl QuantityMap {
    /// The quantity of `name`.
    pub fn get(&self, name: &str) -> Option<&Quantity> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()
            .map(|i| &self.0[i].1)
    }

    /// The entries, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Quantity)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(String, Quantity)> for QuantityMap {
    /// A later entry for the same name replaces an earlier one, as
    /// inserting into a map does.
    fn from_iter<I: IntoIterator<Item = (String, Quantity)>>(iter: I) -> Self {
        let mut entries: Vec<(String, Quantity)> = Vec::new();
        for (k, v) in iter {
            match entries.binary_search_by(|(e, _)| e.as_str().cmp(&k)) {
                Ok(i) => entries[i].1 = v,
                Err(i) => entries.insert(i, (k, v)),
            }
        }
        entries.shrink_to_fit();
        QuantityMap(entries)
    }
}

impl Serialize for QuantityMap {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de> Deserialize<'de> for QuantityMap {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = QuantityMap;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of resource names to quantities")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<QuantityMap, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, Quantity>()? {
                    entries.push(entry);
                }
                Ok(entries.into_iter().collect())
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

impl From<ResourceRequirements> for CachedResources {
    fn from(r: ResourceRequirements) -> Self {
        CachedResources {
            claims: r.claims,
            limits: r.limits.map(|m| m.into_iter().collect()),
            requests: r.requests.map(|m| m.into_iter().collect()),
        }
    }
}

/// A volume's name and claim, the part of `Volume` the controllers read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedVolume {
    #[serde(default)]
    pub name: String,
    /// Boxed: rare, and large inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral: Option<Box<EphemeralVolumeSource>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<PersistentVolumeClaimVolumeSource>,
}

/// The part of `PodStatus` the controllers read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedPodStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<CachedPodCondition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_statuses: Option<Vec<CachedContainerStatus>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_container_statuses: Option<Vec<CachedContainerStatus>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_container_statuses: Option<Vec<CachedContainerStatus>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "podIP")]
    pub pod_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "podIPs")]
    pub pod_ips: Option<Vec<PodIP>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
}

/// The part of `PodCondition` the controllers read (not `message`,
/// `lastProbeTime` or `observedGeneration`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedPodCondition {
    #[serde(rename = "type", deserialize_with = "well_known")]
    pub type_: Cow<'static, str>,
    #[serde(deserialize_with = "well_known")]
    pub status: Cow<'static, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

impl From<PodCondition> for CachedPodCondition {
    fn from(c: PodCondition) -> Self {
        CachedPodCondition {
            type_: intern(c.type_.into()),
            status: intern(c.status.into()),
            reason: c.reason,
            last_transition_time: c.last_transition_time,
        }
    }
}

/// The condition types and statuses the kubelet and the control plane
/// set: every cached pod has several, so they are kept without a heap
/// allocation each.
const WELL_KNOWN: &[&str] = &[
    "ContainersReady",
    "DisruptionTarget",
    "False",
    "Initialized",
    "PodReadyToStartContainers",
    "PodResizeInProgress",
    "PodResizePending",
    "PodScheduled",
    "Ready",
    "True",
    "Unknown",
];

fn intern(s: Cow<'_, str>) -> Cow<'static, str> {
    match WELL_KNOWN.iter().find(|w| **w == s) {
        Some(w) => Cow::Borrowed(w),
        None => Cow::Owned(s.into_owned()),
    }
}

fn well_known<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Cow<'static, str>, D::Error> {
    <Cow<'de, str>>::deserialize(d).map(intern)
}

/// The part of `ContainerStatus` the controllers read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedContainerStatus {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub ready: bool,
    #[serde(default)]
    pub restart_count: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ContainerState>,
}

impl k8s_openapi::Resource for CachedPod {
    const API_VERSION: &'static str = "v1";
    const GROUP: &'static str = "";
    const KIND: &'static str = "Pod";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "pods";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for CachedPod {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Keeps the fields [`CachedPod`] has, drops the rest (used where a full
/// pod is at hand, as in tests building fixtures).
impl From<k8s_openapi::api::core::v1::Pod> for CachedPod {
    fn from(pod: k8s_openapi::api::core::v1::Pod) -> Self {
        CachedPod {
            metadata: slim(pod.metadata),
            spec: pod.spec.map(|s| CachedPodSpec {
                active_deadline_seconds: s.active_deadline_seconds,
                affinity: s.affinity.map(Box::new),
                containers: s
                    .containers
                    .into_iter()
                    .map(CachedContainer::from)
                    .collect(),
                hostname: s.hostname,
                init_containers: s
                    .init_containers
                    .map(|cs| cs.into_iter().map(CachedContainer::from).collect()),
                node_name: s.node_name,
                overhead: s.overhead,
                priority_class_name: s.priority_class_name,
                subdomain: s.subdomain,
                tolerations: s.tolerations,
                volumes: s.volumes.map(|vs| {
                    vs.into_iter()
                        .map(|v| CachedVolume {
                            name: v.name,
                            ephemeral: v.ephemeral.map(Box::new),
                            persistent_volume_claim: v.persistent_volume_claim,
                        })
                        .collect()
                }),
            }),
            status: pod.status.map(|s| CachedPodStatus {
                conditions: s
                    .conditions
                    .map(|cs| cs.into_iter().map(CachedPodCondition::from).collect()),
                container_statuses: s
                    .container_statuses
                    .map(|cs| cs.into_iter().map(CachedContainerStatus::from).collect()),
                ephemeral_container_statuses: s
                    .ephemeral_container_statuses
                    .map(|cs| cs.into_iter().map(CachedContainerStatus::from).collect()),
                init_container_statuses: s
                    .init_container_statuses
                    .map(|cs| cs.into_iter().map(CachedContainerStatus::from).collect()),
                phase: s.phase,
                pod_ip: s.pod_ip,
                pod_ips: s.pod_ips,
                reason: s.reason,
                start_time: s.start_time,
            }),
        }
    }
}

impl From<k8s_openapi::api::core::v1::Container> for CachedContainer {
    fn from(c: k8s_openapi::api::core::v1::Container) -> Self {
        CachedContainer {
            name: c.name,
            ports: c.ports,
            resources: c.resources.map(CachedResources::from),
            restart_policy: c.restart_policy,
        }
    }
}

impl From<k8s_openapi::api::core::v1::ContainerStatus> for CachedContainerStatus {
    fn from(c: k8s_openapi::api::core::v1::ContainerStatus) -> Self {
        CachedContainerStatus {
            name: c.name,
            ready: c.ready,
            restart_count: c.restart_count,
            state: c.state,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "cached_pod_tests.rs"]
mod tests;
