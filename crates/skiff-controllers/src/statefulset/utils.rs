//! Pure helpers of the StatefulSet controller (upstream's
//! `stateful_set_utils.go`): ordinals, pod identity and storage, claim
//! retention owner references, revisions and the spec's defaults.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;

use crate::cached_pod::CachedPod;
use crate::history::CONTROLLER_REVISION_HASH_LABEL;
use crate::podcontrol::pod_from_template;
use crate::podutil::{is_pod_available, is_pod_ready, phase};

/// The pod label holding the pod's own name (upstream's
/// `StatefulSetPodNameLabel`).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The pod label holding the pod's ordinal (upstream's `PodIndexLabel`).
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// The retention policy value that keeps claims.
pub const RETAIN: &str = "Retain";
/// The retention policy value that deletes claims.
pub const DELETE: &str = "Delete";

/// Splits `<parent>-<ordinal>` (upstream's `getParentNameAndOrdinal`); the
/// ordinal is the trailing run of digits after the last `-`.
pub fn parent_name_and_ordinal(name: &str) -> Option<(&str, i32)> {
    let (parent, ord) = name.rsplit_once('-')?;
    if ord.is_empty() || !ord.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, ord.parse().ok()?))
}

/// The pod's ordinal, -1 when its name has none (upstream's `getOrdinal`).
pub fn ordinal_of(pod: &CachedPod) -> i32 {
    ordinal_of_meta(&pod.metadata)
}

/// [`ordinal_of`] from the pod's metadata.
fn ordinal_of_meta(meta: &ObjectMeta) -> i32 {
    meta.name
        .as_deref()
        .and_then(parent_name_and_ordinal)
        .map_or(-1, |(_, o)| o)
}

/// Whether the pod's name says it belongs to `set` (upstream's
/// `isMemberOf`).
pub fn is_member_of(set: &StatefulSet, pod: &CachedPod) -> bool {
    pod.metadata
        .name
        .as_deref()
        .and_then(parent_name_and_ordinal)
        .is_some_and(|(p, _)| Some(p) == set.metadata.name.as_deref())
}

/// `spec.replicas` (default 1).
pub fn replicas(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// `spec.ordinals.start` (default 0).
pub fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
}

/// One past the last ordinal of the set (upstream's `getEndOrdinal`+1).
pub fn end_ordinal(set: &StatefulSet) -> i32 {
    start_ordinal(set) + replicas(set)
}

/// Whether `ordinal` is within `[start, start+replicas)`.
pub fn in_ordinal_range(set: &StatefulSet, ordinal: i32) -> bool {
    ordinal >= start_ordinal(set) && ordinal < end_ordinal(set)
}

/// `spec.minReadySeconds`.
pub fn min_ready_seconds(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

/// `spec.revisionHistoryLimit` (default 10).
pub fn revision_history_limit(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
}

/// Whether pods are managed one at a time in order (OrderedReady, the
/// default) rather than in Parallel (upstream's `allowsBurst` negated).
pub fn is_monotonic(set: &StatefulSet) -> bool {
    set.spec
        .as_ref()
        .and_then(|s| s.pod_management_policy.as_deref())
        != Some("Parallel")
}

/// Whether the update strategy is OnDelete (RollingUpdate is the default).
pub fn is_on_delete(set: &StatefulSet) -> bool {
    set.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        == Some("OnDelete")
}

/// The RollingUpdate partition, when a rollingUpdate block is set.
pub fn partition(set: &StatefulSet) -> Option<i32> {
    let u = set.spec.as_ref()?.update_strategy.as_ref()?;
    if u.type_.as_deref().is_some_and(|t| t != "RollingUpdate") {
        return None;
    }
    Some(u.rolling_update.as_ref()?.partition.unwrap_or(0))
}

/// `(whenDeleted, whenScaled)`, each Retain unless set to Delete.
pub fn retention_policy(set: &StatefulSet) -> (&str, &str) {
    let p = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let get = |v: Option<&String>| match v.map(String::as_str) {
        Some(DELETE) => DELETE,
        _ => RETAIN,
    };
    (
        get(p.and_then(|p| p.when_deleted.as_ref())),
        get(p.and_then(|p| p.when_scaled.as_ref())),
    )
}

/// The set's volume claim templates.
pub fn claim_templates(set: &StatefulSet) -> &[PersistentVolumeClaim] {
    set.spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_deref())
        .unwrap_or(&[])
}

/// `<set>-<ordinal>` (upstream's `getPodName`).
pub fn pod_name(set: &StatefulSet, ordinal: i32) -> String {
    format!("{}-{ordinal}", set.metadata.name.as_deref().unwrap_or(""))
}

/// `<template>-<set>-<ordinal>` (upstream's `getPersistentVolumeClaimName`).
pub fn claim_name(set: &StatefulSet, template: &PersistentVolumeClaim, ordinal: i32) -> String {
    format!(
        "{}-{}-{ordinal}",
        template.metadata.name.as_deref().unwrap_or(""),
        set.metadata.name.as_deref().unwrap_or("")
    )
}

/// The revision name a pod was made from (its `controller-revision-hash`
/// label, which for StatefulSets holds the revision's name).
pub fn pod_revision(pod: &CachedPod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(CONTROLLER_REVISION_HASH_LABEL))
        .map_or("", String::as_str)
}

/// Created: the pod has a phase (upstream's `isCreated`).
pub fn is_created(pod: &CachedPod) -> bool {
    !phase(pod).is_empty()
}

/// Has a deletion timestamp.
pub fn is_terminating(pod: &CachedPod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Failed phase.
pub fn is_failed(pod: &CachedPod) -> bool {
    phase(pod) == "Failed"
}

/// Succeeded phase.
pub fn is_succeeded(pod: &CachedPod) -> bool {
    phase(pod) == "Succeeded"
}

/// Running and Ready (upstream's `isRunningAndReady`).
pub fn is_running_and_ready(pod: &CachedPod) -> bool {
    phase(pod) == "Running" && is_pod_ready(pod)
}

/// Running, Ready and available for `min_ready_seconds`.
pub fn is_running_and_available(pod: &CachedPod, min_ready_seconds: i32, now: Timestamp) -> bool {
    phase(pod) == "Running" && is_pod_available(pod, min_ready_seconds, now)
}

/// Running, Ready and not terminating (upstream's `isHealthy`).
pub fn is_healthy(pod: &CachedPod) -> bool {
    is_running_and_ready(pod) && !is_terminating(pod)
}

/// The claims the pod at `ordinal` should mount, by template name: named
/// per ordinal, labelled with the template's labels plus the selector's
/// matchLabels (upstream's `getPersistentVolumeClaims`).
pub fn persistent_volume_claims(
    set: &StatefulSet,
    ordinal: i32,
) -> BTreeMap<String, PersistentVolumeClaim> {
    let match_labels = set
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    let mut out = BTreeMap::new();
    for t in claim_templates(set) {
        let mut claim = t.clone();
        claim.metadata = ObjectMeta {
            name: Some(claim_name(set, t, ordinal)),
            namespace: set.metadata.namespace.clone(),
            labels: {
                let mut l = t.metadata.labels.clone().unwrap_or_default();
                l.extend(match_labels.clone());
                (!l.is_empty()).then_some(l)
            },
            annotations: t.metadata.annotations.clone(),
            ..ObjectMeta::default()
        };
        claim.status = None;
        out.insert(t.metadata.name.clone().unwrap_or_default(), claim);
    }
    out
}

/// Whether the pod's name, namespace and labels fit its ordinal in `set`
/// (upstream's `identityMatches`).
pub fn identity_matches(set: &StatefulSet, pod: &CachedPod) -> bool {
    let Some(name) = pod.metadata.name.as_deref() else {
        return false;
    };
    let Some((parent, ord)) = parent_name_and_ordinal(name) else {
        return false;
    };
    let labels = pod.metadata.labels.as_ref();
    Some(parent) == set.metadata.name.as_deref()
        && ord >= 0
        && pod.metadata.namespace == set.metadata.namespace
        && labels
            .and_then(|l| l.get(POD_NAME_LABEL))
            .map(String::as_str)
            == Some(name)
}

/// Whether every claim template is mounted from the pod's own claim
/// (upstream's `storageMatches`).
pub fn storage_matches(set: &StatefulSet, pod: &CachedPod) -> bool {
    let ordinal = ordinal_of(pod);
    if ordinal < 0 {
        return false;
    }
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or(&[]);
    claim_templates(set).iter().all(|t| {
        let want = claim_name(set, t, ordinal);
        volumes.iter().any(|v| {
            v.name == t.metadata.name.as_deref().unwrap_or("")
                && v.persistent_volume_claim
                    .as_ref()
                    .is_some_and(|c| c.claim_name == want)
        })
    })
}

/// Mounts each template's claim under the template's name, replacing any
/// volume of that name (upstream's `updateStorage`).
pub fn update_storage(set: &StatefulSet, pod: &mut Pod) {
    let ordinal = ordinal_of_meta(&pod.metadata);
    let claims = persistent_volume_claims(set, ordinal);
    if claims.is_empty() {
        return;
    }
    let spec = pod.spec.get_or_insert_with(Default::default);
    let mut volumes: Vec<Volume> = claims
        .iter()
        .map(|(name, c)| Volume {
            name: name.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: c.metadata.name.clone().unwrap_or_default(),
                read_only: Some(false),
            }),
            ..Volume::default()
        })
        .collect();
    for v in spec.volumes.take().unwrap_or_default() {
        if !claims.contains_key(&v.name) {
            volumes.push(v);
        }
    }
    spec.volumes = Some(volumes);
}

/// Sets the pod's name, hostname, subdomain and identity labels from its
/// ordinal (upstream's `updateIdentity` and `initIdentity`).
pub fn update_identity(set: &StatefulSet, pod: &mut Pod, ordinal: i32) {
    let name = pod_name(set, ordinal);
    pod.metadata.name = Some(name.clone());
    pod.metadata.namespace = set.metadata.namespace.clone();
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_NAME_LABEL.to_owned(), name.clone());
    labels.insert(POD_INDEX_LABEL.to_owned(), ordinal.to_string());
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.hostname = Some(name);
    spec.subdomain = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty());
}

/// The strategic merge patch that brings a live pod's identity (labels,
/// hostname, subdomain) and storage (its claims' volumes, merged by name)
/// to what [`update_identity`] and [`update_storage`] would make of it,
/// guarded by the pod's resourceVersion as the update upstream sends is.
pub fn identity_and_storage_patch(
    set: &StatefulSet,
    pod: &CachedPod,
    identity: bool,
    storage: bool,
) -> serde_json::Value {
    let mut wanted = Pod {
        metadata: ObjectMeta {
            name: pod.metadata.name.clone(),
            ..ObjectMeta::default()
        },
        ..Pod::default()
    };
    let mut patch = serde_json::json!({
        "metadata": {"resourceVersion": pod.metadata.resource_version},
    });
    if identity {
        update_identity(set, &mut wanted, ordinal_of(pod));
        let spec = wanted.spec.take().unwrap_or_default();
        patch["metadata"]["labels"] = serde_json::json!(wanted.metadata.labels);
        patch["spec"]["hostname"] = serde_json::json!(spec.hostname);
        patch["spec"]["subdomain"] = serde_json::json!(spec.subdomain);
    }
    if storage {
        update_storage(set, &mut wanted);
        let volumes = wanted.spec.and_then(|s| s.volumes).unwrap_or_default();
        patch["spec"]["volumes"] = serde_json::json!(volumes);
    }
    patch
}

/// The pod at `ordinal` from `set`'s template (upstream's
/// `newStatefulSetPod`: `GetPodFromTemplate`, so also `generateName`, then
/// the ordinal's identity and storage).
pub fn new_stateful_set_pod(set: &StatefulSet, ordinal: i32) -> Pod {
    let template: PodTemplateSpec = set
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut pod = pod_from_template(template, set, None);
    update_identity(set, &mut pod, ordinal);
    update_storage(set, &mut pod);
    pod
}

/// Labels the pod with the revision it was made from.
pub fn set_pod_revision(pod: &mut Pod, revision: &str) {
    pod.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(
            CONTROLLER_REVISION_HASH_LABEL.to_owned(),
            revision.to_owned(),
        );
}

/// The pod at `ordinal` at the current revision when a rolling update
/// keeps it there (below the partition), else at the update revision
/// (upstream's `newVersionedStatefulSetPod`).
pub fn new_versioned_stateful_set_pod(
    current_set: &StatefulSet,
    update_set: &StatefulSet,
    current_revision: &str,
    update_revision: &str,
    ordinal: i32,
) -> Pod {
    let start = start_ordinal(current_set);
    let keep_current = !is_on_delete(current_set)
        && match partition(current_set) {
            None => {
                let cur = current_set
                    .status
                    .as_ref()
                    .and_then(|s| s.current_replicas)
                    .unwrap_or(0);
                ordinal < start + cur
            }
            Some(p) => ordinal < start + p,
        };
    let (set, rev) = if keep_current {
        (current_set, current_revision)
    } else {
        (update_set, update_revision)
    };
    let mut pod = new_stateful_set_pod(set, ordinal);
    set_pod_revision(&mut pod, rev);
    pod
}

/// The revision data: the template, replacing the whole of it when
/// applied (upstream's `getPatch`).
pub fn revision_patch(set: &StatefulSet) -> serde_json::Value {
    let mut template = serde_json::to_value(
        set.spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default(),
    )
    .unwrap_or_default();
    if let Some(m) = template.as_object_mut() {
        m.insert("$patch".to_owned(), "replace".into());
    }
    serde_json::json!({ "spec": { "template": template } })
}

/// `set` with the template of `revision` (upstream's `ApplyRevision`).
pub fn apply_revision(set: &StatefulSet, revision: &ControllerRevision) -> StatefulSet {
    let mut out = set.clone();
    let template = revision
        .data
        .as_ref()
        .and_then(|d| d.0.get("spec"))
        .and_then(|s| s.get("template"))
        .cloned()
        .map(|mut t| {
            if let Some(m) = t.as_object_mut() {
                m.remove("$patch");
            }
            t
        })
        .and_then(|t| serde_json::from_value::<PodTemplateSpec>(t).ok());
    if let (Some(t), Some(spec)) = (template, out.spec.as_mut()) {
        spec.template = t;
    }
    out
}

fn matches_ref(r: &OwnerReference, meta: &ObjectMeta, kind: &str) -> bool {
    r.kind == kind && Some(&r.uid) == meta.uid.as_ref() && Some(&r.name) == meta.name.as_ref()
}

fn has_ref(claim: &PersistentVolumeClaim, meta: &ObjectMeta, kind: &str) -> bool {
    claim
        .metadata
        .owner_references
        .as_ref()
        .is_some_and(|rs| rs.iter().any(|r| matches_ref(r, meta, kind)))
}

fn set_owner_ref(
    claim: &mut PersistentVolumeClaim,
    meta: &ObjectMeta,
    api: &str,
    kind: &str,
) -> bool {
    if has_ref(claim, meta, kind) {
        return false;
    }
    claim
        .metadata
        .owner_references
        .get_or_insert_with(Vec::new)
        .push(OwnerReference {
            api_version: api.to_owned(),
            kind: kind.to_owned(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            ..OwnerReference::default()
        });
    true
}

fn remove_refs(claim: &mut PersistentVolumeClaim, meta: &ObjectMeta, kind: &str) -> bool {
    let Some(rs) = claim.metadata.owner_references.as_mut() else {
        return false;
    };
    let before = rs.len();
    rs.retain(|r| !matches_ref(r, meta, kind));
    let changed = rs.len() != before;
    if rs.is_empty() {
        claim.metadata.owner_references = None;
    }
    changed
}

/// Puts the owner references the retention policy asks for on a claim of
/// `pod`: the set owns it when whenDeleted=Delete and the pod is in range,
/// the pod owns it when whenScaled=Delete and the pod was scaled away
/// (upstream's `updateClaimOwnerRefForSetAndPod`). True when it changed.
pub fn update_claim_owner_ref_for_set_and_pod(
    claim: &mut PersistentVolumeClaim,
    set: &StatefulSet,
    pod: &CachedPod,
) -> bool {
    let (when_deleted, when_scaled) = retention_policy(set);
    let scaled_down = !in_ordinal_range(set, ordinal_of(pod));
    let (s, p) = (&set.metadata, &pod.metadata);
    let mut changed = false;
    let want_set = when_deleted == DELETE && !(when_scaled == DELETE && scaled_down);
    let want_pod = when_scaled == DELETE && scaled_down;
    if want_set {
        changed |= set_owner_ref(claim, s, "apps/v1", "StatefulSet");
    } else {
        changed |= remove_refs(claim, s, "StatefulSet");
    }
    if want_pod {
        changed |= set_owner_ref(claim, p, "v1", "Pod");
    } else {
        changed |= remove_refs(claim, p, "Pod");
    }
    changed
}

/// Whether the claim already carries what the retention policy asks for
/// (upstream's `claimOwnerMatchesSetAndPod`).
pub fn claim_owner_matches_set_and_pod(
    claim: &PersistentVolumeClaim,
    set: &StatefulSet,
    pod: &CachedPod,
) -> bool {
    let mut c = claim.clone();
    !update_claim_owner_ref_for_set_and_pod(&mut c, set, pod)
}

/// Pending phase.
pub fn phase_is_pending(pod: &CachedPod) -> bool {
    phase(pod) == "Pending"
}
