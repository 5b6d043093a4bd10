//! Volume helpers shared by the PersistentVolume controller and the
//! scheduler (upstream's `component-helpers/storage/volume` and the PV
//! controller's access-mode index): storage classes of claims and volumes,
//! pre-binding, and choosing the volume that best fits a claim.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod,
};
use k8s_openapi::api::storage::v1::StorageClass;

use crate::quantity::Quantity;
use crate::selector::SelectorError;
use crate::selector::labels::from_label_selector;

/// PVC: binding has been done once (set by the binder).
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// PV and PVC: the binding was made by the controller, not pre-bound.
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// PV: the provisioner (volume plugin or external) that created it.
pub const ANN_DYNAMICALLY_PROVISIONED: &str = "pv.kubernetes.io/provisioned-by";
/// PV and PVC: the CSI driver an in-tree volume migrated to.
pub const ANN_MIGRATED_TO: &str = "pv.kubernetes.io/migrated-to";
/// PVC: the provisioner asked to provision it.
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// PVC: the beta spelling of [`ANN_STORAGE_PROVISIONER`], still written.
pub const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// PVC: the node the scheduler chose for a delayed-binding claim.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// PV: the size a volume had before a resize that the node must finish.
pub const ANN_PRE_RESIZE_CAPACITY: &str = "volume.alpha.kubernetes.io/pre-resize-capacity";
/// PV and PVC: the deprecated class annotation, preferred over the field.
pub const ANN_BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

/// Access modes in upstream's canonical order (`GetAccessModesAsString`).
const ACCESS_MODE_ORDER: &[&str] = &[
    "ReadWriteOnce",
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOncePod",
];

fn annotation<'a>(annotations: Option<&'a BTreeMap<String, String>>, key: &str) -> Option<&'a str> {
    annotations.and_then(|a| a.get(key)).map(String::as_str)
}

/// The claim's class: the beta annotation, else `spec.storageClassName`,
/// else "" (`GetPersistentVolumeClaimClass`).
pub fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    if let Some(class) = annotation(claim.metadata.annotations.as_ref(), ANN_BETA_STORAGE_CLASS) {
        return class;
    }
    claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

/// Whether the claim names a class at all, "" included
/// (`PersistentVolumeClaimHasClass`).
pub fn claim_has_class(claim: &PersistentVolumeClaim) -> bool {
    annotation(claim.metadata.annotations.as_ref(), ANN_BETA_STORAGE_CLASS).is_some()
        || claim
            .spec
            .as_ref()
            .is_some_and(|s| s.storage_class_name.is_some())
}

/// The volume's class, as [`claim_class`] (`GetPersistentVolumeClass`).
pub fn volume_class(volume: &PersistentVolume) -> &str {
    if let Some(class) = annotation(volume.metadata.annotations.as_ref(), ANN_BETA_STORAGE_CLASS) {
        return class;
    }
    volume
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

/// Whether the object carries annotation `key` (any value).
pub fn has_annotation(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> bool {
    annotation(meta.annotations.as_ref(), key).is_some()
}

/// The volume's `spec.claimRef` as (namespace, name, uid).
pub fn claim_ref(volume: &PersistentVolume) -> Option<(&str, &str, &str)> {
    let r = volume.spec.as_ref()?.claim_ref.as_ref()?;
    Some((
        r.namespace.as_deref().unwrap_or(""),
        r.name.as_deref().unwrap_or(""),
        r.uid.as_deref().unwrap_or(""),
    ))
}

/// Whether the volume is pre-bound or bound to this claim: same name and
/// namespace, and the same uid if the reference has one
/// (`IsVolumeBoundToClaim`).
pub fn is_volume_bound_to_claim(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some((ns, name, uid)) = claim_ref(volume) else {
        return false;
    };
    let m = &claim.metadata;
    if m.name.as_deref().unwrap_or("") != name || m.namespace.as_deref().unwrap_or("") != ns {
        return false;
    }
    uid.is_empty() || m.uid.as_deref().unwrap_or("") == uid
}

/// The volume's `spec.capacity.storage` (zero when missing or malformed).
pub fn volume_capacity(volume: &PersistentVolume) -> Quantity {
    quantity(
        volume
            .spec
            .as_ref()
            .and_then(|s| s.capacity.as_ref())
            .and_then(|c| c.get("storage")),
    )
}

/// The claim's `spec.resources.requests.storage` (zero when missing).
pub fn claim_request(claim: &PersistentVolumeClaim) -> Quantity {
    quantity(
        claim
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage")),
    )
}

fn quantity(q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> Quantity {
    q.and_then(|q| Quantity::parse(&q.0).ok())
        .unwrap_or_else(|| Quantity::from_int(0))
}

/// Whether the claim's volume mode differs from the volume's, both
/// defaulting to `Filesystem` (`CheckVolumeModeMismatches`).
pub fn volume_mode_mismatch(claim: &PersistentVolumeClaim, volume: &PersistentVolume) -> bool {
    let requested = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_mode.as_deref())
        .unwrap_or("Filesystem");
    let offered = volume
        .spec
        .as_ref()
        .and_then(|s| s.volume_mode.as_deref())
        .unwrap_or("Filesystem");
    requested != offered
}

fn claim_modes(claim: &PersistentVolumeClaim) -> &[String] {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or(&[])
}

fn volume_modes(volume: &PersistentVolume) -> &[String] {
    volume
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or(&[])
}

/// Whether the volume offers every access mode the claim asks for
/// (`CheckAccessModes`).
pub fn check_access_modes(claim: &PersistentVolumeClaim, volume: &PersistentVolume) -> bool {
    let offered = volume_modes(volume);
    claim_modes(claim).iter().all(|m| offered.contains(m))
}

/// A volume's access modes as upstream's index key: known modes in
/// canonical order, each once.
fn access_modes_key(volume: &PersistentVolume) -> Vec<&'static str> {
    let modes = volume_modes(volume);
    ACCESS_MODE_ORDER
        .iter()
        .copied()
        .filter(|m| modes.iter().any(|x| x.as_str() == *m))
        .collect()
}

/// Upstream's `FindMatchingVolume` on the controller's path (no node):
/// a volume pre-bound to the claim wins at once if it is large enough and
/// of the right volume mode; otherwise the smallest Available volume of the
/// claim's class whose labels match the claim's selector and whose size
/// covers the request. Volumes bound to other claims or being deleted never
/// match. With `delay_binding` only pre-bound volumes are considered.
pub fn find_matching_volume<'a, V: AsRef<PersistentVolume>>(
    claim: &PersistentVolumeClaim,
    volumes: &'a [V],
    delay_binding: bool,
) -> Result<Option<&'a V>, SelectorError> {
    let requested = claim_request(claim);
    let requested_class = claim_class(claim);
    let selector = match claim.spec.as_ref().and_then(|s| s.selector.as_ref()) {
        Some(s) => Some(from_label_selector(Some(s)).map_err(|e| {
            SelectorError(format!(
                "error creating internal label selector for claim: {}/{}: {}",
                claim.metadata.namespace.as_deref().unwrap_or(""),
                claim.metadata.name.as_deref().unwrap_or(""),
                e.0
            ))
        })?),
        None => None,
    };
    let empty = BTreeMap::new();
    let mut smallest: Option<(&'a V, Quantity)> = None;
    for v in volumes {
        let volume = v.as_ref();
        let bound_here = is_volume_bound_to_claim(volume, claim);
        if claim_ref(volume).is_some() && !bound_here {
            continue;
        }
        let size = volume_capacity(volume);
        if size < requested || volume_mode_mismatch(claim, volume) {
            continue;
        }
        if volume.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if bound_here {
            return Ok(Some(v));
        }
        if delay_binding {
            continue;
        }
        let phase = volume.status.as_ref().and_then(|s| s.phase.as_deref());
        if phase != Some("Available") {
            continue;
        }
        let labels = volume.metadata.labels.as_ref().unwrap_or(&empty);
        if selector.as_ref().is_some_and(|s| !s.matches(labels)) {
            continue;
        }
        if volume_class(volume) != requested_class {
            continue;
        }
        if smallest.as_ref().is_none_or(|(_, q)| *q > size) {
            smallest = Some((v, size));
        }
    }
    Ok(smallest.map(|(v, _)| v))
}

/// The PV controller's `findBestMatchForClaim`: volumes are grouped by
/// their set of access modes; the groups offering every mode the claim asks
/// for are searched with [`find_matching_volume`] from the fewest modes up,
/// and the first group with a match gives the answer.
pub fn find_best_match<'a, V: AsRef<PersistentVolume>>(
    claim: &PersistentVolumeClaim,
    volumes: &'a [V],
    delay_binding: bool,
) -> Result<Option<&'a V>, SelectorError> {
    let mut groups: BTreeMap<Vec<&'static str>, Vec<&'a V>> = BTreeMap::new();
    for v in volumes {
        groups
            .entry(access_modes_key(v.as_ref()))
            .or_default()
            .push(v);
    }
    let requested = claim_modes(claim);
    let mut candidates: Vec<(&Vec<&'static str>, &Vec<&'a V>)> = groups
        .iter()
        .filter(|(modes, _)| requested.iter().all(|m| modes.contains(&m.as_str())))
        .collect();
    // Fewest modes first; equal sizes in a fixed order (upstream leaves
    // that order to a map).
    candidates.sort_by_key(|(modes, _)| modes.len());
    for (_, group) in candidates {
        if let Some(found) = find_matching_volume(claim, group, delay_binding)? {
            return Ok(Some(*found));
        }
    }
    Ok(None)
}

/// Why a volume the claim names cannot be bound to it, as upstream's
/// `checkVolumeSatisfyClaim`.
pub fn check_volume_satisfies_claim(
    volume: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> Result<(), String> {
    if volume.metadata.deletion_timestamp.is_some() {
        return Err(format!(
            "the volume is marked for deletion {:?}",
            volume.metadata.name.as_deref().unwrap_or("")
        ));
    }
    if volume_capacity(volume).value() < claim_request(claim).value() {
        return Err("requested PV is too small".to_owned());
    }
    if volume_class(volume) != claim_class(claim) {
        return Err("storageClassName does not match".to_owned());
    }
    if volume_mode_mismatch(claim, volume) {
        return Err("incompatible volumeMode".to_owned());
    }
    if !check_access_modes(claim, volume) {
        return Err("incompatible accessMode".to_owned());
    }
    Ok(())
}

/// The annotation that marks the default StorageClass.
pub const ANN_IS_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
/// Its beta spelling, still honoured.
pub const ANN_BETA_IS_DEFAULT_CLASS: &str = "storageclass.beta.kubernetes.io/is-default-class";

/// Whether the class is marked default (either annotation `"true"`).
pub fn is_default_class(class: &StorageClass) -> bool {
    let anns = class.metadata.annotations.as_ref();
    [ANN_IS_DEFAULT_CLASS, ANN_BETA_IS_DEFAULT_CLASS]
        .iter()
        .any(|k| annotation(anns, k) == Some("true"))
}

/// The default class: the newest of those marked default, the first by
/// name among equally new ones (`GetDefaultClass`).
pub fn default_class<'a>(
    classes: impl IntoIterator<Item = &'a StorageClass>,
) -> Option<&'a StorageClass> {
    classes
        .into_iter()
        .filter(|c| is_default_class(c))
        .max_by(|a, b| {
            let created = |c: &StorageClass| c.metadata.creation_timestamp.as_ref().map(|t| t.0);
            created(a)
                .cmp(&created(b))
                .then_with(|| b.metadata.name.cmp(&a.metadata.name))
        })
}

/// The claims a pod's volumes name: (claim name, whether it comes from a
/// generic ephemeral volume, whose claim is `<pod>-<volume>`).
pub fn pod_claims(pod: &Pod) -> Vec<(String, bool)> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or("");
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            volume_claim(
                pod_name,
                &v.name,
                v.persistent_volume_claim.as_ref(),
                v.ephemeral.is_some(),
            )
        })
        .collect()
}

/// The claim one volume of pod `pod_name` names, as [`pod_claims`] lists
/// it, from the volume's name, its `persistentVolumeClaim` source and
/// whether it is a generic ephemeral volume.
pub fn volume_claim(
    pod_name: &str,
    volume_name: &str,
    claim: Option<&PersistentVolumeClaimVolumeSource>,
    ephemeral: bool,
) -> Option<(String, bool)> {
    match claim {
        Some(c) => Some((c.claim_name.clone(), false)),
        None if ephemeral => Some((format!("{pod_name}-{volume_name}"), true)),
        None => None,
    }
}

#[cfg(test)]
#[path = "storage_tests.rs"]
mod tests;
