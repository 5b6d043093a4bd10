//! VolumeBinding (lite): checks a pod's PersistentVolumeClaims before
//! scheduling. Missing or deleting claims and unbound claims of
//! Immediate-binding classes reject the pod in PreFilter; claims bound to a
//! PersistentVolume with required node affinity restrict the nodes in
//! Filter. WaitForFirstConsumer claims pass (no provisioning or PV matching
//! here yet).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use skiff_api::storage::{claim_class, pod_claims};

use super::helper::node_selector::NodeSelector;
use crate::framework::{
    ClusterEvent, ClusterLister, CycleState, EventResource, FilterPlugin, Handle, NodeInfo, Plugin,
    PodInfo, PreFilterPlugin, PreFilterResult, Snapshot, Status, action,
};

/// The plugin's name.
pub const NAME: &str = "VolumeBinding";
/// Unbound claims whose class binds immediately (the PV controller's job).
pub const ERR_REASON_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
/// A bound PV's node affinity excludes the node.
pub const ERR_REASON_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
/// A claim is bound to a PV that does not exist.
pub const ERR_REASON_PV_NOT_EXIST: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";
const STATE_KEY: &str = "VolumeBinding";

/// The plugin, reading claims, volumes and classes through the lister.
pub struct VolumeBinding {
    lister: Arc<dyn ClusterLister>,
}

impl std::fmt::Debug for VolumeBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeBinding").finish_non_exhaustive()
    }
}

/// What Filter checks on every node.
#[derive(Debug, Clone, Default)]
struct StateData {
    /// Required node affinity of each bound PV that has one.
    bound_node_affinities: Vec<NodeSelector>,
    /// Some claim is bound to a PV that is gone.
    pv_missing: bool,
}

/// The factory (no args are used in this lite version).
pub fn new(_args: Option<&serde_json::Value>, handle: &Handle) -> Result<Arc<dyn Plugin>, String> {
    Ok(Arc::new(VolumeBinding {
        lister: handle.lister.clone(),
    }))
}

fn is_controlled_by(pvc: &PersistentVolumeClaim, pod: &Pod) -> bool {
    let Some(uid) = pod.metadata.uid.as_deref() else {
        return false;
    };
    pvc.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

impl VolumeBinding {
    /// Upstream's `podHasPVCs`: every claim must exist, not be deleting or
    /// lost, and an ephemeral volume's claim must belong to the pod.
    fn fetch_claims(
        &self,
        pod: &Pod,
        claims: &[(String, bool)],
    ) -> Result<Vec<Arc<PersistentVolumeClaim>>, Status> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let mut out = Vec::with_capacity(claims.len());
        for (name, ephemeral) in claims {
            let Some(pvc) = self.lister.pvc(ns, name) else {
                return Err(Status::unresolvable(if *ephemeral {
                    format!(
                        "waiting for ephemeral volume controller to create the persistentvolumeclaim {name:?}"
                    )
                } else {
                    format!("persistentvolumeclaim {name:?} not found")
                }));
            };
            if pvc.metadata.deletion_timestamp.is_some() {
                return Err(Status::unresolvable(format!(
                    "persistentvolumeclaim {name:?} is being deleted"
                )));
            }
            if *ephemeral && !is_controlled_by(&pvc, pod) {
                return Err(Status::unresolvable(format!(
                    "PVC {ns}/{name} was not created for pod {ns}/{} (pod is not owner)",
                    pod.metadata.name.as_deref().unwrap_or("")
                )));
            }
            if pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Lost") {
                let volume = pvc
                    .spec
                    .as_ref()
                    .and_then(|s| s.volume_name.as_deref())
                    .unwrap_or("");
                return Err(Status::unresolvable(format!(
                    "persistentvolumeclaim {name:?} bound to non-existent persistentvolume {volume:?}"
                )));
            }
            out.push(pvc);
        }
        Ok(out)
    }

    /// True when an unbound claim waits for the pod's node
    /// (WaitForFirstConsumer); an error when its class is unusable.
    fn is_delay_binding(&self, pvc: &PersistentVolumeClaim) -> Result<bool, Status> {
        let class = claim_class(pvc);
        if class.is_empty() {
            return Ok(false);
        }
        let Some(sc) = self.lister.storage_class(class) else {
            return Err(Status::error(format!(
                "storageclass.storage.k8s.io {class:?} not found"
            )));
        };
        match sc.volume_binding_mode.as_deref() {
            None => Err(Status::error(format!(
                "VolumeBindingMode not set for StorageClass {class:?}"
            ))),
            Some(mode) => Ok(mode == "WaitForFirstConsumer"),
        }
    }
}

impl Plugin for VolumeBinding {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events_to_register(&self) -> Vec<ClusterEvent> {
        let add_or_update = action::ADD | action::UPDATE;
        vec![
            ClusterEvent {
                resource: EventResource::PersistentVolumeClaim,
                action: add_or_update,
            },
            ClusterEvent {
                resource: EventResource::PersistentVolume,
                action: add_or_update,
            },
            ClusterEvent {
                resource: EventResource::StorageClass,
                action: add_or_update,
            },
            ClusterEvent {
                resource: EventResource::Node,
                action: action::ADD | action::UPDATE_NODE_LABEL | action::UPDATE_NODE_TAINT,
            },
        ]
    }
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        Some(self)
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
}

impl PreFilterPlugin for VolumeBinding {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        let claims = pod_claims(&pod.pod);
        if claims.is_empty() {
            state.write(STATE_KEY, StateData::default());
            return (None, Status::skip());
        }
        let pvcs = match self.fetch_claims(&pod.pod, &claims) {
            Ok(p) => p,
            Err(s) => return (None, s),
        };
        let mut data = StateData::default();
        let mut unbound_immediate = false;
        for pvc in &pvcs {
            let volume = pvc
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.as_deref())
                .filter(|v| !v.is_empty());
            match volume {
                Some(pv_name) => match self.lister.pv(pv_name) {
                    None => data.pv_missing = true,
                    Some(pv) => {
                        if let Some(required) = pv
                            .spec
                            .as_ref()
                            .and_then(|s| s.node_affinity.as_ref())
                            .and_then(|a| a.required.as_ref())
                        {
                            data.bound_node_affinities
                                .push(NodeSelector::new_lazy(required));
                        }
                    }
                },
                None => match self.is_delay_binding(pvc) {
                    Ok(true) => {}
                    Ok(false) => unbound_immediate = true,
                    Err(s) => return (None, s),
                },
            }
        }
        if unbound_immediate {
            return (None, Status::unresolvable(ERR_REASON_UNBOUND_IMMEDIATE));
        }
        state.write(STATE_KEY, data);
        (None, Status::success())
    }
}

impl FilterPlugin for VolumeBinding {
    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(data) = state.read::<StateData>(STATE_KEY) else {
            return Status::error(format!("reading {STATE_KEY:?} from cycleState: not found"));
        };
        if data.pv_missing {
            return Status::unresolvable(ERR_REASON_PV_NOT_EXIST);
        }
        // A PV's node affinity is matched on labels only, as upstream's
        // CheckNodeAffinity does.
        let labels = node.label_set();
        if data
            .bound_node_affinities
            .iter()
            .any(|ns| !ns.matches(&labels, ""))
        {
            return Status::unresolvable(ERR_REASON_NODE_CONFLICT);
        }
        Status::success()
    }
}

#[cfg(test)]
#[path = "volume_binding_tests.rs"]
mod tests;
