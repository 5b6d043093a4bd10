//! The reclaim policy of a released volume, without volume plugins:
//! Retain keeps it Released; Delete leaves a volume of an external
//! provisioner (or a CSI or migrated one) to that provisioner and fails
//! any other, as upstream does when no deleter plugin matches; Recycle
//! fails for want of a recycler plugin.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::Api;
use skiff_api::storage::{self, ANN_DYNAMICALLY_PROVISIONED, ANN_MIGRATED_TO};

use super::PersistentVolumeController;
use super::sync::reasons::{
    VOLUME_FAILED_DELETE, VOLUME_FAILED_RECYCLE, VOLUME_UNKNOWN_RECLAIM_POLICY,
};
use super::sync::reclaim_policy;
use crate::cached_pod::{CachedContainerStatus, CachedPod};
use crate::controller::SyncError;

/// Who deletes a released volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Deleter {
    /// An external provisioner or CSI driver: nothing to do here.
    External,
    /// No plugin can: the volume fails with this message.
    Missing(String),
}

/// Upstream's `findDeletablePlugin` with no plugins registered.
pub(crate) fn find_deleter(volume: &PersistentVolume) -> Deleter {
    let anns = volume.metadata.annotations.as_ref();
    if let Some(plugin) = anns
        .and_then(|a| a.get(ANN_DYNAMICALLY_PROVISIONED))
        .filter(|p| !p.is_empty())
    {
        return if plugin.starts_with("kubernetes.io/") {
            Deleter::Missing(format!("no volume plugin matched name: {plugin}"))
        } else {
            Deleter::External
        };
    }
    if anns.is_some_and(|a| a.contains_key(ANN_MIGRATED_TO))
        || volume.spec.as_ref().is_some_and(|s| s.csi.is_some())
    {
        return Deleter::External;
    }
    Deleter::Missing(format!(
        "error getting deleter volume plugin for volume {:?}: no volume plugin matched",
        volume.metadata.name.as_deref().unwrap_or("")
    ))
}

/// Upstream's `IsPodTerminated`: failed or succeeded, or deleted with no
/// container still running.
pub(crate) fn is_pod_terminated(pod: &CachedPod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return pod.metadata.deletion_timestamp.is_some();
    };
    if matches!(status.phase.as_deref(), Some("Failed" | "Succeeded")) {
        return true;
    }
    let not_running = |list: &Option<Vec<CachedContainerStatus>>| {
        list.iter().flatten().all(|c| {
            c.state
                .as_ref()
                .is_some_and(|s| s.terminated.is_some() || s.waiting.is_some())
        })
    };
    pod.metadata.deletion_timestamp.is_some()
        && not_running(&status.init_container_statuses)
        && not_running(&status.container_statuses)
        && not_running(&status.ephemeral_container_statuses)
}

/// `ns/name` of the pods not terminated that use the claim and pass
/// `filter`, sorted.
pub(crate) fn pods_using_claim(
    c: &PersistentVolumeController,
    claim: &PersistentVolumeClaim,
    filter: impl Fn(&CachedPod) -> bool,
) -> Vec<String> {
    let ns = claim.metadata.namespace.as_deref().unwrap_or("");
    let name = claim.metadata.name.as_deref().unwrap_or("");
    pods_using(c, ns, name, filter)
}

/// Whether a volume of the pod names the claim (as `storage::pod_claims`
/// would list it).
fn uses_claim(pod: &CachedPod, claim: &str) -> bool {
    let pod_name = pod.metadata.name.as_deref().unwrap_or("");
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            storage::volume_claim(
                pod_name,
                &v.name,
                v.persistent_volume_claim.as_ref(),
                v.ephemeral.is_some(),
            )
        })
        .any(|(n, _)| n == claim)
}

fn pods_using(
    c: &PersistentVolumeController,
    ns: &str,
    claim: &str,
    filter: impl Fn(&CachedPod) -> bool,
) -> Vec<String> {
    let mut names: Vec<String> = c
        .pods
        .list(ns)
        .iter()
        .map(|p| &**p)
        .filter(|p| uses_claim(p, claim))
        .filter(|p| !is_pod_terminated(p) && filter(p))
        .map(|p| p.metadata.name.clone().unwrap_or_default())
        .collect();
    names.sort();
    names
}

impl PersistentVolumeController {
    /// Applies the volume's reclaim policy (`reclaimVolume`).
    pub(crate) async fn reclaim_volume(
        &self,
        volume: Arc<PersistentVolume>,
    ) -> Result<(), SyncError> {
        let migrated = volume
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANN_MIGRATED_TO))
            .is_some_and(|m| !m.is_empty());
        if migrated {
            return Ok(());
        }
        match reclaim_policy(&volume) {
            "Retain" => Ok(()),
            "Recycle" => self.recycle_volume(&volume).await,
            "Delete" => self.delete_volume(&volume).await,
            _ => {
                self.update_volume_phase_with_event(
                    &volume,
                    "Failed",
                    VOLUME_UNKNOWN_RECLAIM_POLICY,
                    "Reclaiming",
                    "Volume has unrecognized PersistentVolumeReclaimPolicy",
                )
                .await?;
                Ok(())
            }
        }
    }

    /// The newest volume, if it still needs reclaiming.
    async fn fresh_released(
        &self,
        volume: &PersistentVolume,
    ) -> Result<Option<Arc<PersistentVolume>>, SyncError> {
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        let name = volume.metadata.name.as_deref().unwrap_or("");
        let Some(fresh) = api.get_opt(name).await? else {
            return Ok(None);
        };
        Ok(self.is_volume_released(&fresh).then(|| Arc::new(fresh)))
    }

    /// Whether the volume's claim is gone, replaced or bound elsewhere
    /// (`isVolumeReleased`).
    fn is_volume_released(&self, volume: &PersistentVolume) -> bool {
        let Some((ns, name, uid)) = storage::claim_ref(volume) else {
            return false;
        };
        if uid.is_empty() {
            return false;
        }
        let Some(claim) = self.cached_claim(&format!("{ns}/{name}")) else {
            return true;
        };
        if claim.metadata.uid.as_deref() != Some(uid) {
            return true;
        }
        let bound_to = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .unwrap_or("");
        !bound_to.is_empty() && Some(bound_to) != volume.metadata.name.as_deref()
    }

    /// `deleteVolumeOperation` without plugins.
    async fn delete_volume(&self, volume: &PersistentVolume) -> Result<(), SyncError> {
        let Some(fresh) = self.fresh_released(volume).await? else {
            return Ok(());
        };
        match find_deleter(&fresh) {
            Deleter::External => Ok(()),
            Deleter::Missing(message) => {
                self.update_volume_phase_with_event(
                    &fresh,
                    "Failed",
                    VOLUME_FAILED_DELETE,
                    "Deleting",
                    &message,
                )
                .await?;
                // As upstream, deletion is tried again at every sync.
                Ok(())
            }
        }
    }

    /// `recycleVolumeOperation` without plugins.
    async fn recycle_volume(&self, volume: &PersistentVolume) -> Result<(), SyncError> {
        let Some(fresh) = self.fresh_released(volume).await? else {
            return Ok(());
        };
        if let Some((ns, name, _)) = storage::claim_ref(&fresh) {
            let used = pods_using(self, ns, name, |_| true);
            let claim_cached = self.cached_claim(&format!("{ns}/{name}")).is_some();
            if !used.is_empty() && !claim_cached {
                let pods: Vec<String> = used.iter().map(|p| format!("{ns}/{p}")).collect();
                let note = format!("Volume is used by pods: {}", pods.join(","));
                self.volume_event(&fresh, true, VOLUME_FAILED_RECYCLE, "Recycling", note);
                return Ok(());
            }
        }
        self.update_volume_phase_with_event(
            &fresh,
            "Failed",
            VOLUME_FAILED_RECYCLE,
            "Recycling",
            "No recycler plugin found for the volume!",
        )
        .await?;
        Ok(())
    }
}
