//! The two kinds the replica controller serves, ReplicaSet (apps/v1) and
//! ReplicationController (v1), seen through one shape (upstream converts
//! RCs to ReplicaSets for the same purpose).

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{
    PodTemplateSpec, ReplicationController, ReplicationControllerCondition,
    ReplicationControllerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Serialize;
use skiff_api::selector::labels::{Selector, from_label_selector, from_map};

use crate::informer::Informable;

/// A ReplicaFailure-style condition common to both kinds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReplicaCondition {
    /// Condition type, e.g. `ReplicaFailure`.
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// When the status last changed.
    pub last_transition_time: Option<Time>,
    /// Machine-readable reason.
    pub reason: Option<String>,
    /// Human message.
    pub message: Option<String>,
}

/// The status fields both kinds share.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReplicaStatus {
    /// Active pods owned.
    pub replicas: i32,
    /// Owned pods whose labels match the template's.
    pub fully_labeled_replicas: i32,
    /// Owned pods that are ready.
    pub ready_replicas: i32,
    /// Owned pods ready for at least minReadySeconds.
    pub available_replicas: i32,
    /// The generation this status is about.
    pub observed_generation: Option<i64>,
    /// Conditions.
    pub conditions: Vec<ReplicaCondition>,
}

/// What the replica controller needs of an owner kind.
pub trait ReplicaKind:
    Informable + Serialize + kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
{
    /// Upstream's controller name, used for events.
    const CONTROLLER_NAME: &'static str;
    /// The `--controllers` name, for logs and metrics.
    const NAME: &'static str;
    /// Upstream's work queue name.
    const QUEUE_NAME: &'static str;
    /// Desired replicas (defaulted to 1 by the API server).
    fn replicas(&self) -> i32;
    /// Seconds a ready pod must stay ready to count as available.
    fn min_ready_seconds(&self) -> i32;
    /// The pod selector, or why it is invalid.
    fn selector(&self) -> Result<Selector, String>;
    /// The pod template.
    fn template(&self) -> Option<&PodTemplateSpec>;
    /// The current status.
    fn replica_status(&self) -> ReplicaStatus;
    /// A copy with `status` set.
    fn with_replica_status(&self, status: &ReplicaStatus) -> Self;
}

impl ReplicaKind for ReplicaSet {
    const CONTROLLER_NAME: &'static str = "replicaset-controller";
    const NAME: &'static str = "replicaset";
    const QUEUE_NAME: &'static str = "replicaset";

    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn selector(&self) -> Result<Selector, String> {
        from_label_selector(self.spec.as_ref().map(|s| &s.selector)).map_err(|e| e.0)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().and_then(|s| s.template.as_ref())
    }
    fn replica_status(&self) -> ReplicaStatus {
        let s = self.status.clone().unwrap_or_default();
        ReplicaStatus {
            replicas: s.replicas,
            fully_labeled_replicas: s.fully_labeled_replicas.unwrap_or(0),
            ready_replicas: s.ready_replicas.unwrap_or(0),
            available_replicas: s.available_replicas.unwrap_or(0),
            observed_generation: s.observed_generation,
            conditions: s
                .conditions
                .unwrap_or_default()
                .into_iter()
                .map(|c| ReplicaCondition {
                    type_: c.type_,
                    status: c.status,
                    last_transition_time: c.last_transition_time,
                    reason: c.reason,
                    message: c.message,
                })
                .collect(),
        }
    }
    fn with_replica_status(&self, st: &ReplicaStatus) -> Self {
        let mut out = self.clone();
        let old = out.status.take().unwrap_or_default();
        out.status = Some(ReplicaSetStatus {
            replicas: st.replicas,
            fully_labeled_replicas: Some(st.fully_labeled_replicas),
            ready_replicas: Some(st.ready_replicas),
            available_replicas: Some(st.available_replicas),
            observed_generation: st.observed_generation,
            conditions: (!st.conditions.is_empty()).then(|| {
                st.conditions
                    .iter()
                    .map(|c| ReplicaSetCondition {
                        type_: c.type_.clone(),
                        status: c.status.clone(),
                        last_transition_time: c.last_transition_time.clone(),
                        reason: c.reason.clone(),
                        message: c.message.clone(),
                    })
                    .collect()
            }),
            ..old
        });
        out
    }
}

impl ReplicaKind for ReplicationController {
    const CONTROLLER_NAME: &'static str = "replication-controller";
    const NAME: &'static str = "replicationcontroller";
    const QUEUE_NAME: &'static str = "replicationmanager";

    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn selector(&self) -> Result<Selector, String> {
        // A map selector; an empty one selects everything, as upstream's
        // conversion to a ReplicaSet's matchLabels.
        Ok(self
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .map_or_else(Selector::everything, from_map))
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().and_then(|s| s.template.as_ref())
    }
    fn replica_status(&self) -> ReplicaStatus {
        let s = self.status.clone().unwrap_or_default();
        ReplicaStatus {
            replicas: s.replicas,
            fully_labeled_replicas: s.fully_labeled_replicas.unwrap_or(0),
            ready_replicas: s.ready_replicas.unwrap_or(0),
            available_replicas: s.available_replicas.unwrap_or(0),
            observed_generation: s.observed_generation,
            conditions: s
                .conditions
                .unwrap_or_default()
                .into_iter()
                .map(|c| ReplicaCondition {
                    type_: c.type_,
                    status: c.status,
                    last_transition_time: c.last_transition_time,
                    reason: c.reason,
                    message: c.message,
                })
                .collect(),
        }
    }
    fn with_replica_status(&self, st: &ReplicaStatus) -> Self {
        let mut out = self.clone();
        out.status = Some(ReplicationControllerStatus {
            replicas: st.replicas,
            fully_labeled_replicas: Some(st.fully_labeled_replicas),
            ready_replicas: Some(st.ready_replicas),
            available_replicas: Some(st.available_replicas),
            observed_generation: st.observed_generation,
            conditions: (!st.conditions.is_empty()).then(|| {
                st.conditions
                    .iter()
                    .map(|c| ReplicationControllerCondition {
                        type_: c.type_.clone(),
                        status: c.status.clone(),
                        last_transition_time: c.last_transition_time.clone(),
                        reason: c.reason.clone(),
                        message: c.message.clone(),
                    })
                    .collect()
            }),
        });
        out
    }
}
