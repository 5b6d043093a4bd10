//! Syncing claims and volumes, and the writes that bind them: the volume
//! first (`spec.claimRef`, then its phase), then the claim
//! (`spec.volumeName` and annotations, then its status), so that a crash
//! between two writes leaves a state the next sync completes.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::Api;
use kube::api::PostParams;
use skiff_api::storage::{
    self, ANN_BIND_COMPLETED, ANN_BOUND_BY_CONTROLLER, ANN_DYNAMICALLY_PROVISIONED,
    ANN_PRE_RESIZE_CAPACITY, ANN_SELECTED_NODE, has_annotation, is_volume_bound_to_claim,
};

use super::{PersistentVolumeController, claim_reference};
use crate::controller::SyncError;
use crate::podutil::key_of;

/// Event reasons (upstream's pkg/controller/volume/events).
pub(crate) mod reasons {
    pub const FAILED_BINDING: &str = "FailedBinding";
    pub const VOLUME_MISMATCH: &str = "VolumeMismatch";
    pub const WAIT_FOR_FIRST_CONSUMER: &str = "WaitForFirstConsumer";
    pub const WAIT_FOR_POD_SCHEDULED: &str = "WaitForPodScheduled";
    pub const EXTERNAL_PROVISIONING: &str = "ExternalProvisioning";
    pub const PROVISIONING_FAILED: &str = "ProvisioningFailed";
    pub const CLAIM_LOST: &str = "ClaimLost";
    pub const CLAIM_MISBOUND: &str = "ClaimMisbound";
    pub const VOLUME_FAILED_DELETE: &str = "VolumeFailedDelete";
    pub const VOLUME_FAILED_RECYCLE: &str = "VolumeFailedRecycle";
    pub const VOLUME_UNKNOWN_RECLAIM_POLICY: &str = "VolumeUnknownReclaimPolicy";
}

use reasons::*;

const BINDING: &str = "Binding";
const PROVISIONING: &str = "Provisioning";

fn name_of<K: kube::Resource>(obj: &K) -> &str {
    obj.meta().name.as_deref().unwrap_or("")
}

fn claim_phase(claim: &PersistentVolumeClaim) -> &str {
    claim
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

pub(crate) fn volume_phase(volume: &PersistentVolume) -> &str {
    volume
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn volume_name_of(claim: &PersistentVolumeClaim) -> &str {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or("")
}

pub(crate) fn reclaim_policy(volume: &PersistentVolume) -> &str {
    volume
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("")
}

fn set_annotation(
    meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) {
    meta.annotations
        .get_or_insert_default()
        .insert(key.to_owned(), "yes".to_owned());
}

impl PersistentVolumeController {
    fn volumes_api(&self) -> Api<PersistentVolume> {
        Api::all(self.client.clone())
    }

    fn claims_api(&self, claim: &PersistentVolumeClaim) -> Api<PersistentVolumeClaim> {
        Api::namespaced(
            self.client.clone(),
            claim.metadata.namespace.as_deref().unwrap_or(""),
        )
    }

    /// Upstream's `syncClaim`.
    pub(crate) async fn sync_claim(
        &self,
        claim: Arc<PersistentVolumeClaim>,
    ) -> Result<(), SyncError> {
        if has_annotation(&claim.metadata, ANN_BIND_COMPLETED) {
            self.sync_bound_claim(claim).await
        } else {
            self.sync_unbound_claim(claim).await
        }
    }

    /// Whether the claim's class binds only once a pod uses it
    /// (`IsDelayBindingMode`).
    fn is_delay_binding(&self, claim: &PersistentVolumeClaim) -> Result<bool, SyncError> {
        let class = storage::claim_class(claim);
        if class.is_empty() {
            return Ok(false);
        }
        let Some(sc) = self
            .classes
            .get(&kube::runtime::reflector::ObjectRef::new(class))
        else {
            return Ok(false);
        };
        match sc.volume_binding_mode.as_deref() {
            None => Err(format!("VolumeBindingMode not set for StorageClass {class:?}").into()),
            Some(mode) => Ok(mode == "WaitForFirstConsumer"),
        }
    }

    async fn sync_unbound_claim(&self, claim: Arc<PersistentVolumeClaim>) -> Result<(), SyncError> {
        let wanted = volume_name_of(&claim).to_owned();
        if wanted.is_empty() {
            return self.sync_unbound_claim_any_volume(claim).await;
        }
        // The user asked for this volume.
        let Some(volume) = self.cached_volume(&wanted) else {
            self.update_claim_status(&claim, "Pending", None).await?;
            return Ok(());
        };
        if storage::claim_ref(&volume).is_none() {
            if let Err(why) = storage::check_volume_satisfies_claim(&volume, &claim) {
                let note = format!("Cannot bind to requested volume {wanted:?}: {why}");
                self.claim_event(&claim, false, VOLUME_MISMATCH, BINDING, note);
                self.update_claim_status(&claim, "Pending", None).await?;
                return Ok(());
            }
            return self.bind(volume, claim).await;
        }
        if is_volume_bound_to_claim(&volume, &claim) {
            // Pre-bound to this claim: finish the binding (adds the uid).
            return self.bind(volume, claim).await;
        }
        let note = format!("volume {wanted:?} already bound to a different claim.");
        self.claim_event(&claim, false, FAILED_BINDING, BINDING, note);
        if has_annotation(&claim.metadata, ANN_BOUND_BY_CONTROLLER) {
            let (ns, name, _) = storage::claim_ref(&volume).unwrap_or_default();
            return Err(format!(
                "invalid binding of claim {:?} to volume {wanted:?}: volume already claimed by \"{ns}/{name}\"",
                key_of(&claim.metadata)
            )
            .into());
        }
        self.update_claim_status(&claim, "Pending", None).await?;
        Ok(())
    }

    async fn sync_unbound_claim_any_volume(
        &self,
        claim: Arc<PersistentVolumeClaim>,
    ) -> Result<(), SyncError> {
        let delay_binding = self.is_delay_binding(&claim)?;
        let volumes = self.cached_volumes();
        let found = storage::find_best_match(&claim, &volumes, delay_binding).map_err(|e| {
            format!(
                "error finding PV for claim {:?}: {}",
                key_of(&claim.metadata),
                e.0
            )
        })?;
        if let Some(volume) = found {
            return self.bind(volume.clone(), claim).await;
        }
        if self.assign_default_storage_class(&claim).await? {
            // The update brings the claim back with its class.
            return Ok(());
        }
        if delay_binding && !has_annotation(&claim.metadata, ANN_SELECTED_NODE) {
            self.emit_delay_binding_event(&claim);
        } else if !storage::claim_class(&claim).is_empty() {
            // Provisioning writes what it needs; the binding happens in a
            // later sync, once a volume exists.
            return self.provision_claim(&claim).await;
        } else {
            self.claim_event(
                &claim,
                true,
                FAILED_BINDING,
                BINDING,
                "no persistent volumes available for this claim and no storage class is set"
                    .to_owned(),
            );
        }
        self.update_claim_status(&claim, "Pending", None).await?;
        Ok(())
    }

    /// Upstream's `emitEventForUnboundDelayBindingClaim`.
    fn emit_delay_binding_event(&self, claim: &PersistentVolumeClaim) {
        let pods = super::reclaim::pods_using_claim(self, claim, |pod| {
            pod.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_none_or(str::is_empty)
        });
        let (reason, note) = match pods.as_slice() {
            [] => (
                WAIT_FOR_FIRST_CONSUMER,
                "waiting for first consumer to be created before binding".to_owned(),
            ),
            [one] => (
                WAIT_FOR_POD_SCHEDULED,
                format!("waiting for pod {one} to be scheduled"),
            ),
            many => (
                WAIT_FOR_POD_SCHEDULED,
                format!("waiting for pods {} to be scheduled", many.join(",")),
            ),
        };
        self.claim_event(claim, true, reason, BINDING, note);
    }

    /// Gives a claim without a class the default StorageClass, if there is
    /// one (upstream's retroactive default class assignment).
    async fn assign_default_storage_class(
        &self,
        claim: &PersistentVolumeClaim,
    ) -> Result<bool, SyncError> {
        if storage::claim_has_class(claim) {
            return Ok(false);
        }
        let classes = self.classes.state();
        let Some(default) = storage::default_class(classes.iter().map(AsRef::as_ref)) else {
            return Ok(false);
        };
        let mut updated = claim.clone();
        updated.spec.get_or_insert_default().storage_class_name = default.metadata.name.clone();
        self.claims_api(claim)
            .replace(name_of(claim), &PostParams::default(), &updated)
            .await?;
        Ok(true)
    }

    /// Upstream's `provisionClaim` without in-tree plugins: an external
    /// provisioner is asked through the claim's annotations; a class that
    /// names an in-tree (`kubernetes.io/`) provisioner or does not exist
    /// fails with an event.
    async fn provision_claim(&self, claim: &PersistentVolumeClaim) -> Result<(), SyncError> {
        let class_name = storage::claim_class(claim);
        let Some(class) = self
            .classes
            .get(&kube::runtime::reflector::ObjectRef::new(class_name))
        else {
            let note = format!("storageclass.storage.k8s.io {class_name:?} not found");
            self.claim_event(claim, false, PROVISIONING_FAILED, PROVISIONING, note);
            return Ok(());
        };
        let provisioner = class.provisioner.as_str();
        if provisioner.starts_with("kubernetes.io/") {
            let note = format!("no volume plugin matched name: {provisioner}");
            self.claim_event(claim, false, PROVISIONING_FAILED, PROVISIONING, note);
            return Ok(());
        }
        let claim = match self.set_claim_provisioner(claim, provisioner).await {
            Ok(c) => c,
            Err(err) => {
                let note = format!("Error saving claim: {err}");
                self.claim_event(claim, false, PROVISIONING_FAILED, PROVISIONING, note);
                return Err(err);
            }
        };
        let note = format!(
            "Waiting for a volume to be created either by the external provisioner '{provisioner}' \
             or manually by the system administrator. If volume creation is delayed, please verify \
             that the provisioner is running and correctly registered."
        );
        self.claim_event(&claim, true, EXTERNAL_PROVISIONING, PROVISIONING, note);
        Ok(())
    }

    /// Sets both storage-provisioner annotations of the claim.
    async fn set_claim_provisioner(
        &self,
        claim: &PersistentVolumeClaim,
        provisioner: &str,
    ) -> Result<PersistentVolumeClaim, SyncError> {
        let anns = claim.metadata.annotations.as_ref();
        if anns
            .and_then(|a| a.get(storage::ANN_STORAGE_PROVISIONER))
            .is_some_and(|p| p == provisioner)
        {
            return Ok(claim.clone());
        }
        let mut updated = claim.clone();
        let anns = updated.metadata.annotations.get_or_insert_default();
        for key in [
            storage::ANN_BETA_STORAGE_PROVISIONER,
            storage::ANN_STORAGE_PROVISIONER,
        ] {
            anns.insert(key.to_owned(), provisioner.to_owned());
        }
        let saved = self
            .claims_api(claim)
            .replace(name_of(claim), &PostParams::default(), &updated)
            .await?;
        let saved = Arc::new(saved);
        self.store_claim(&saved)?;
        Ok(Arc::unwrap_or_clone(saved))
    }

    async fn sync_bound_claim(&self, claim: Arc<PersistentVolumeClaim>) -> Result<(), SyncError> {
        let volume_name = volume_name_of(&claim).to_owned();
        if volume_name.is_empty() {
            self.update_claim_status_with_event(
                &claim,
                "Lost",
                CLAIM_LOST,
                "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
            )
            .await?;
            return Ok(());
        }
        let Some(volume) = self.cached_volume(&volume_name) else {
            self.update_claim_status_with_event(
                &claim,
                "Lost",
                CLAIM_LOST,
                "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
            )
            .await?;
            return Ok(());
        };
        match storage::claim_ref(&volume) {
            // Unbound volume (or our write not seen yet): bind again.
            None => self.bind(volume, claim).await,
            Some((_, _, uid)) if uid == claim.metadata.uid.as_deref().unwrap_or("") => {
                self.bind(volume, claim).await
            }
            Some(_) => {
                self.update_claim_status_with_event(
                    &claim,
                    "Lost",
                    CLAIM_MISBOUND,
                    "Two claims are bound to the same volume, this one is bound incorrectly",
                )
                .await?;
                Ok(())
            }
        }
    }

    /// Upstream's `syncVolume`.
    pub(crate) async fn sync_volume(&self, volume: Arc<PersistentVolume>) -> Result<(), SyncError> {
        let Some((ns, claim_name, uid)) = storage::claim_ref(&volume) else {
            self.update_volume_phase(&volume, "Available", "").await?;
            return Ok(());
        };
        if uid.is_empty() {
            // Pre-bound to a claim that is not bound yet: the claim's sync
            // does that.
            self.update_volume_phase(&volume, "Available", "").await?;
            return Ok(());
        }
        let (ns, claim_name, uid) = (ns.to_owned(), claim_name.to_owned(), uid.to_owned());
        let key = format!("{ns}/{claim_name}");
        let mut claim = self.cached_claim(&key);
        let phase = volume_phase(&volume);
        if claim.is_none() && phase != "Released" && phase != "Failed" {
            // Under load the claim may not have reached the caches yet:
            // ask the informer, then the API server, before releasing.
            claim = match self.informer_claim(&ns, &claim_name) {
                Some(c) => Some(c),
                None => self.get_claim(&ns, &claim_name).await?,
            };
        }
        if claim
            .as_ref()
            .is_some_and(|c| c.metadata.uid.as_deref() != Some(uid.as_str()))
        {
            // The cache may predate a newer claim: check the API server.
            claim = self
                .get_claim(&ns, &claim_name)
                .await?
                .filter(|c| c.metadata.uid.as_deref() == Some(uid.as_str()));
        }
        let Some(claim) = claim else {
            // The claim is gone: release the volume, apply its policy.
            let mut volume = volume;
            let phase = volume_phase(&volume);
            if phase != "Released" && phase != "Failed" {
                tracing::info!(
                    volume = name_of(volume.as_ref()),
                    policy = reclaim_policy(&volume),
                    "volume is released"
                );
                volume = self.update_volume_phase(&volume, "Released", "").await?;
            }
            return self.reclaim_volume(volume).await;
        };
        let bound_to = volume_name_of(&claim);
        if bound_to.is_empty() {
            if storage::volume_mode_mismatch(&claim, &volume) {
                let note = format!(
                    "Cannot bind PersistentVolume to requested PersistentVolumeClaim {:?} due to incompatible volumeMode.",
                    name_of(claim.as_ref())
                );
                self.volume_event(&volume, false, VOLUME_MISMATCH, BINDING, note);
                let note = format!(
                    "Cannot bind PersistentVolume {:?} to requested PersistentVolumeClaim due to incompatible volumeMode.",
                    name_of(volume.as_ref())
                );
                self.claim_event(&claim, false, VOLUME_MISMATCH, BINDING, note);
                return Ok(());
            }
            // Bound on the volume's side only: the claim's sync finishes it.
            self.claim_queue.add(key);
            return Ok(());
        }
        if bound_to == name_of(volume.as_ref()) {
            self.update_volume_phase(&volume, "Bound", "").await?;
            return Ok(());
        }
        // The claim is bound to another volume.
        if has_annotation(&volume.metadata, ANN_DYNAMICALLY_PROVISIONED)
            && reclaim_policy(&volume) == "Delete"
        {
            let mut volume = volume;
            let phase = volume_phase(&volume);
            if phase != "Released" && phase != "Failed" {
                volume = self.update_volume_phase(&volume, "Released", "").await?;
            }
            return self.reclaim_volume(volume).await;
        }
        // Bound by us: undo it. Pre-bound by the user: keep the claimRef,
        // drop its uid, and wait for the claim to come free.
        self.unbind_volume(&volume).await
    }

    async fn get_claim(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<Arc<PersistentVolumeClaim>>, SyncError> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        Ok(api.get_opt(name).await?.map(Arc::new))
    }

    /// Saves the claim's phase and, from `volume`, its access modes and
    /// (when it becomes bound) capacity (`updateClaimStatus`).
    pub(crate) async fn update_claim_status(
        &self,
        claim: &Arc<PersistentVolumeClaim>,
        phase: &str,
        volume: Option<&PersistentVolume>,
    ) -> Result<Arc<PersistentVolumeClaim>, SyncError> {
        let mut updated = PersistentVolumeClaim::clone(claim);
        let old_phase = claim_phase(claim);
        let status = updated.status.get_or_insert_default();
        let mut dirty = false;
        if old_phase != phase {
            status.phase = Some(phase.to_owned());
            dirty = true;
        }
        match volume {
            None => {
                if status.access_modes.take().is_some() {
                    dirty = true;
                }
                if status.capacity.take().is_some() {
                    dirty = true;
                }
            }
            Some(volume) => {
                let spec = volume.spec.as_ref();
                let modes = spec.and_then(|s| s.access_modes.clone());
                if status.access_modes != modes {
                    status.access_modes = modes;
                    dirty = true;
                }
                // Capacity only as the claim becomes bound: a difference
                // later may be a resize in progress.
                if old_phase != phase {
                    let Some(cap) = spec
                        .and_then(|s| s.capacity.as_ref())
                        .and_then(|c| c.get("storage"))
                    else {
                        return Err(format!(
                            "PersistentVolume {:?} is without a storage capacity",
                            name_of(volume)
                        )
                        .into());
                    };
                    let pre_resize = volume
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(ANN_PRE_RESIZE_CAPACITY));
                    if let Some(pre) = pre_resize {
                        let q = if skiff_api::quantity::Quantity::parse(pre).is_ok() {
                            pre.clone()
                        } else {
                            cap.0.clone()
                        };
                        status.capacity.get_or_insert_default().insert(
                            "storage".to_owned(),
                            k8s_openapi::apimachinery::pkg::api::resource::Quantity(q),
                        );
                        dirty = true;
                    } else if status.capacity.as_ref().and_then(|c| c.get("storage")) != Some(cap) {
                        status.capacity = spec.and_then(|s| s.capacity.clone());
                        dirty = true;
                    }
                }
            }
        }
        if !dirty {
            return Ok(claim.clone());
        }
        let saved = self
            .claims_api(claim)
            .replace_status(name_of(claim.as_ref()), &PostParams::default(), &updated)
            .await?;
        let saved = Arc::new(saved);
        self.store_claim(&saved)?;
        tracing::debug!(claim = %key_of(&claim.metadata), phase, "claim entered phase");
        Ok(saved)
    }

    /// As [`Self::update_claim_status`] with no volume, and an event (a
    /// Warning) only when the phase changes.
    async fn update_claim_status_with_event(
        &self,
        claim: &Arc<PersistentVolumeClaim>,
        phase: &str,
        reason: &str,
        note: &str,
    ) -> Result<(), SyncError> {
        if claim_phase(claim) == phase {
            return Ok(());
        }
        let saved = self.update_claim_status(claim, phase, None).await?;
        self.claim_event(&saved, false, reason, BINDING, note.to_owned());
        Ok(())
    }

    /// Saves the volume's phase and message (`updateVolumePhase`).
    pub(crate) async fn update_volume_phase(
        &self,
        volume: &Arc<PersistentVolume>,
        phase: &str,
        message: &str,
    ) -> Result<Arc<PersistentVolume>, SyncError> {
        if volume_phase(volume) == phase {
            return Ok(volume.clone());
        }
        let mut updated = PersistentVolume::clone(volume);
        let status = updated.status.get_or_insert_default();
        status.phase = Some(phase.to_owned());
        status.message = (!message.is_empty()).then(|| message.to_owned());
        let saved = self
            .volumes_api()
            .replace_status(name_of(volume.as_ref()), &PostParams::default(), &updated)
            .await?;
        let saved = Arc::new(saved);
        self.store_volume(&saved)?;
        tracing::debug!(
            volume = name_of(volume.as_ref()),
            phase,
            "volume entered phase"
        );
        Ok(saved)
    }

    /// As [`Self::update_volume_phase`], with an event (a Warning) when the
    /// phase changes.
    pub(crate) async fn update_volume_phase_with_event(
        &self,
        volume: &Arc<PersistentVolume>,
        phase: &str,
        reason: &str,
        action: &str,
        message: &str,
    ) -> Result<Arc<PersistentVolume>, SyncError> {
        if volume_phase(volume) == phase {
            return Ok(volume.clone());
        }
        let saved = self.update_volume_phase(volume, phase, message).await?;
        self.volume_event(&saved, false, reason, action, message.to_owned());
        Ok(saved)
    }

    /// Points the volume at the claim (`bindVolumeToClaim`).
    async fn bind_volume_to_claim(
        &self,
        volume: &Arc<PersistentVolume>,
        claim: &PersistentVolumeClaim,
    ) -> Result<Arc<PersistentVolume>, SyncError> {
        let bound_by_user = is_volume_bound_to_claim(volume, claim);
        let mut updated = PersistentVolume::clone(volume);
        let mut dirty = false;
        let current = storage::claim_ref(volume);
        let m = &claim.metadata;
        let same = current.is_some_and(|(ns, name, uid)| {
            Some(ns) == m.namespace.as_deref()
                && Some(name) == m.name.as_deref()
                && Some(uid) == m.uid.as_deref()
        });
        if !same {
            updated.spec.get_or_insert_default().claim_ref = Some(claim_reference(claim));
            dirty = true;
        }
        if !bound_by_user && !has_annotation(&updated.metadata, ANN_BOUND_BY_CONTROLLER) {
            set_annotation(&mut updated.metadata, ANN_BOUND_BY_CONTROLLER);
            dirty = true;
        }
        if !dirty {
            return Ok(volume.clone());
        }
        let saved = self
            .volumes_api()
            .replace(name_of(volume.as_ref()), &PostParams::default(), &updated)
            .await?;
        let saved = Arc::new(saved);
        self.store_volume(&saved)?;
        tracing::info!(volume = name_of(volume.as_ref()), claim = %key_of(m), "claim bound to volume");
        Ok(saved)
    }

    /// Points the claim at the volume and marks the binding done
    /// (`bindClaimToVolume`).
    async fn bind_claim_to_volume(
        &self,
        claim: &Arc<PersistentVolumeClaim>,
        volume: &PersistentVolume,
    ) -> Result<Arc<PersistentVolumeClaim>, SyncError> {
        let mut updated = PersistentVolumeClaim::clone(claim);
        let mut dirty = false;
        let name = name_of(volume);
        if volume_name_of(claim) != name {
            updated.spec.get_or_insert_default().volume_name = Some(name.to_owned());
            if !has_annotation(&updated.metadata, ANN_BOUND_BY_CONTROLLER) {
                set_annotation(&mut updated.metadata, ANN_BOUND_BY_CONTROLLER);
            }
            dirty = true;
        }
        if !has_annotation(&updated.metadata, ANN_BIND_COMPLETED) {
            set_annotation(&mut updated.metadata, ANN_BIND_COMPLETED);
            dirty = true;
        }
        if !dirty {
            return Ok(claim.clone());
        }
        let saved = self
            .claims_api(claim)
            .replace(name_of(claim.as_ref()), &PostParams::default(), &updated)
            .await?;
        let saved = Arc::new(saved);
        self.store_claim(&saved)?;
        tracing::info!(volume = name, claim = %key_of(&claim.metadata), "volume bound to claim");
        Ok(saved)
    }

    /// Binds both sides and marks both Bound, volume first; stops at the
    /// first failed write, which a later sync repairs (`bind`).
    pub(crate) async fn bind(
        &self,
        volume: Arc<PersistentVolume>,
        claim: Arc<PersistentVolumeClaim>,
    ) -> Result<(), SyncError> {
        let volume = self.bind_volume_to_claim(&volume, &claim).await?;
        let volume = self.update_volume_phase(&volume, "Bound", "").await?;
        let claim = self.bind_claim_to_volume(&claim, &volume).await?;
        self.update_claim_status(&claim, "Bound", Some(volume.as_ref()))
            .await?;
        Ok(())
    }

    /// Undoes a binding of the volume: all of it if the controller made
    /// it, only the claim's uid if the user pre-bound the volume; then the
    /// volume is Available (`unbindVolume`).
    pub(crate) async fn unbind_volume(
        &self,
        volume: &Arc<PersistentVolume>,
    ) -> Result<(), SyncError> {
        let mut updated = PersistentVolume::clone(volume);
        if has_annotation(&volume.metadata, ANN_BOUND_BY_CONTROLLER) {
            if let Some(spec) = updated.spec.as_mut() {
                spec.claim_ref = None;
            }
            if let Some(anns) = updated.metadata.annotations.as_mut() {
                anns.remove(ANN_BOUND_BY_CONTROLLER);
                if anns.is_empty() {
                    updated.metadata.annotations = None;
                }
            }
        } else if let Some(r) = updated.spec.as_mut().and_then(|s| s.claim_ref.as_mut()) {
            r.uid = None;
        }
        let saved = self
            .volumes_api()
            .replace(name_of(volume.as_ref()), &PostParams::default(), &updated)
            .await?;
        let saved = Arc::new(saved);
        self.store_volume(&saved)?;
        self.update_volume_phase(&saved, "Available", "").await?;
        Ok(())
    }
}
