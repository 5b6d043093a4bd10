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

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ContainerPort, ContainerState, EphemeralVolumeSource,
    PersistentVolumeClaimVolumeSource, PodCondition, PodIP, ResourceRequirements, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{Deserialize, Serialize};

/// A pod with the fields the controllers read (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedPod {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<CachedPodSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<CachedPodStatus>,
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
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<String>,
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
    pub conditions: Option<Vec<PodCondition>>,
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
            metadata: pod.metadata,
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
                conditions: s.conditions,
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
            resources: c.resources,
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
