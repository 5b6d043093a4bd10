//! The StatefulSet's writes to pods and claims (upstream's
//! `StatefulPodControl`): create a pod after its claims, delete, fix
//! identity and storage, and keep claim owner references in line with the
//! retention policy; each write recorded as an event.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};

use super::utils::{self, claim_owner_matches_set_and_pod, update_claim_owner_ref_for_set_and_pod};
use super::{Failed, StatefulSetController};
use crate::apierrors::{api_message, is_already_exists, is_not_found};
use crate::cached_pod::CachedPod;

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

fn title(verb: &str) -> String {
    let mut c = verb.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

impl StatefulSetController {
    fn pod_api(&self, set: &StatefulSet) -> Api<CachedPod> {
        Api::namespaced(
            self.client.clone(),
            set.metadata.namespace.as_deref().unwrap_or(""),
        )
    }

    fn claim_api(&self, set: &StatefulSet) -> Api<PersistentVolumeClaim> {
        Api::namespaced(
            self.client.clone(),
            set.metadata.namespace.as_deref().unwrap_or(""),
        )
    }

    /// Upstream's `recordPodEvent`: `<verb> Pod <pod> in StatefulSet <set>
    /// successful|failed error: <err>`.
    fn record_pod_event(&self, verb: &str, set: &StatefulSet, pod: &CachedPod, err: Option<&str>) {
        let (p, s) = (name_of(&pod.metadata), name_of(&set.metadata));
        match err {
            None => self.event(
                set,
                true,
                &format!("Successful{}", title(verb)),
                &title(verb),
                format!("{verb} Pod {p} in StatefulSet {s} successful"),
            ),
            Some(e) => self.event(
                set,
                false,
                &format!("Failed{}", title(verb)),
                &title(verb),
                format!("{verb} Pod {p} in StatefulSet {s} failed error: {e}"),
            ),
        }
    }

    /// Upstream's `recordClaimEvent`. The action names the claim so the
    /// recorder's series (keyed by reason and action, not note) keep claim
    /// and pod events apart.
    fn record_claim_event(
        &self,
        verb: &str,
        set: &StatefulSet,
        pod: &CachedPod,
        claim: &PersistentVolumeClaim,
        err: Option<&str>,
    ) {
        let (p, s, c) = (
            name_of(&pod.metadata),
            name_of(&set.metadata),
            name_of(&claim.metadata),
        );
        match err {
            None => self.event(
                set,
                true,
                &format!("Successful{}", title(verb)),
                &format!("{}Claim", title(verb)),
                format!("{verb} Claim {c} Pod {p} in StatefulSet {s} success"),
            ),
            Some(e) => self.event(
                set,
                false,
                &format!("Failed{}", title(verb)),
                &format!("{}Claim", title(verb)),
                format!("{verb} Claim {c} for Pod {p} in StatefulSet {s} failed error: {e}"),
            ),
        }
    }

    /// Creates the pod's missing claims (upstream's
    /// `createPersistentVolumeClaims`); a claim being deleted is an error,
    /// as the pod must not start on it.
    pub(crate) async fn create_persistent_volume_claims(
        &self,
        set: &StatefulSet,
        pod: &CachedPod,
    ) -> Result<(), Failed> {
        let api = self.claim_api(set);
        let mut errors = Vec::new();
        for (_, mut claim) in utils::persistent_volume_claims(set, utils::ordinal_of(pod)) {
            let name = claim.metadata.name.clone().unwrap_or_default();
            match api.get_opt(&name).await {
                Ok(Some(existing)) => {
                    if existing.metadata.deletion_timestamp.is_some() {
                        errors.push(format!("pvc {name} is being deleted"));
                    }
                }
                Ok(None) => {
                    // The set's ownership is known at creation; the pod's
                    // (scale-down) ownership needs the pod's UID.
                    update_claim_owner_ref_for_set_and_pod(&mut claim, set, pod);
                    match api.create(&PostParams::default(), &claim).await {
                        Ok(_) => self.record_claim_event("create", set, pod, &claim, None),
                        Err(e) if is_already_exists(&e) => {}
                        Err(e) => {
                            let msg = api_message(&e);
                            self.record_claim_event("create", set, pod, &claim, Some(&msg));
                            errors.push(format!("failed to create PVC {name}: {msg}"));
                        }
                    }
                }
                Err(e) => errors.push(format!(
                    "failed to retrieve PVC {name}: {}",
                    api_message(&e)
                )),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Failed(errors.join(", ")))
        }
    }

    /// Creates the pod's claims, then the pod (upstream's
    /// `CreateStatefulPod`).
    pub(crate) async fn create_stateful_pod(
        &self,
        set: &StatefulSet,
        pod: &Pod,
    ) -> Result<(), Failed> {
        let cached = CachedPod::from(pod.clone());
        self.create_persistent_volume_claims(set, &cached).await?;
        let api: Api<Pod> = Api::namespaced(
            self.client.clone(),
            set.metadata.namespace.as_deref().unwrap_or(""),
        );
        match api.create(&PostParams::default(), pod).await {
            Ok(_) => {
                self.record_pod_event("create", set, &cached, None);
                Ok(())
            }
            Err(e) => {
                let msg = api_message(&e);
                if !is_already_exists(&e) {
                    self.record_pod_event("create", set, &cached, Some(&msg));
                }
                Err(Failed(msg))
            }
        }
    }

    /// Deletes the pod (upstream's `DeleteStatefulPod`).
    pub(crate) async fn delete_stateful_pod(
        &self,
        set: &StatefulSet,
        pod: &CachedPod,
    ) -> Result<(), Failed> {
        match self
            .pod_api(set)
            .delete(name_of(&pod.metadata), &DeleteParams::default())
            .await
        {
            Ok(_) => {
                self.record_pod_event("delete", set, pod, None);
                Ok(())
            }
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => {
                let msg = api_message(&e);
                self.record_pod_event("delete", set, pod, Some(&msg));
                Err(Failed(msg))
            }
        }
    }

    /// Brings the claims of `pod` to the owner references the retention
    /// policy wants (upstream's `UpdatePodClaimForRetentionPolicy`).
    pub(crate) async fn fix_claim_owners(
        &self,
        set: &StatefulSet,
        pod: &CachedPod,
    ) -> Result<(), Failed> {
        let api = self.claim_api(set);
        let ns = set.metadata.namespace.as_deref().unwrap_or("");
        for (_, template) in utils::persistent_volume_claims(set, utils::ordinal_of(pod)) {
            let name = template.metadata.name.clone().unwrap_or_default();
            let Some(claim) = self
                .claims
                .get(&kube::runtime::reflector::ObjectRef::new(&name).within(ns))
            else {
                continue;
            };
            if claim_owner_matches_set_and_pod(&claim, set, pod) {
                continue;
            }
            let mut updated = (*claim).clone();
            update_claim_owner_ref_for_set_and_pod(&mut updated, set, pod);
            match api.replace(&name, &PostParams::default(), &updated).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    let msg = api_message(&e);
                    self.record_claim_event("update", set, pod, &updated, Some(&msg));
                    return Err(Failed(format!(
                        "could not update claim {name} for delete policy ownerRefs: {msg}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Restores a live pod's identity and storage and its claims' owners
    /// when they drifted (upstream's `UpdateStatefulPod`).
    pub(crate) async fn fix_pod(&self, set: &StatefulSet, pod: &CachedPod) -> Result<(), Failed> {
        self.fix_claim_owners(set, pod).await?;
        let identity = utils::identity_matches(set, pod);
        let storage = utils::storage_matches(set, pod);
        if identity && storage {
            return Ok(());
        }
        if !storage {
            self.create_persistent_volume_claims(set, pod).await?;
        }
        // A patch of what changes, not the cached pod written back (it
        // lacks most of the pod); the resourceVersion keeps the update's
        // optimistic concurrency.
        let patch = utils::identity_and_storage_patch(set, pod, !identity, !storage);
        match self
            .pod_api(set)
            .patch(
                name_of(&pod.metadata),
                &PatchParams::default(),
                &Patch::Strategic(patch),
            )
            .await
        {
            Ok(_) => {
                self.record_pod_event("update", set, pod, None);
                Ok(())
            }
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => {
                let msg = api_message(&e);
                self.record_pod_event("update", set, pod, Some(&msg));
                Err(Failed(format!(
                    "error updating pod {}: {msg}",
                    name_of(&pod.metadata)
                )))
            }
        }
    }
}
