//! Controller references (upstream's `controller_ref_manager.go`): the
//! owner reference a controller puts on what it makes, and the claim of
//! objects by selector, which adopts matching orphans and releases owned
//! objects that stopped matching. One implementation for every owner kind
//! (ReplicaSet, ReplicationController, Deployment, DaemonSet, StatefulSet)
//! and every owned kind (Pods, ReplicaSets, ControllerRevisions).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use serde_json::json;
use skiff_api::selector::labels::Selector;

use crate::apierrors::{api_message, is_invalid, is_not_found};
use crate::podutil::controller_of;

/// What the claim reads and writes: a namespaced kind of the API.
pub trait Namespaced:
    Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug
{
}

impl<T> Namespaced for T where
    T: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
{
}

/// The reference with `controller` and `blockOwnerDeletion` set that
/// `owner` puts on the objects it makes (upstream's `NewControllerRef`).
pub fn controller_ref<O: Resource<DynamicType = ()>>(owner: &O) -> OwnerReference {
    let m = owner.meta();
    OwnerReference {
        api_version: O::api_version(&()).into_owned(),
        kind: O::kind(&()).into_owned(),
        name: m.name.clone().unwrap_or_default(),
        uid: m.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The reference an event about `obj` points at.
pub fn object_reference<O: Resource<DynamicType = ()>>(obj: &O) -> ObjectReference {
    let m = obj.meta();
    ObjectReference {
        api_version: Some(O::api_version(&()).into_owned()),
        kind: Some(O::kind(&()).into_owned()),
        name: m.name.clone(),
        namespace: m.namespace.clone(),
        uid: m.uid.clone(),
        resource_version: m.resource_version.clone(),
        ..ObjectReference::default()
    }
}

/// Claims objects for one owner (upstream's `BaseControllerRefManager` with
/// the per-kind `Claim*` functions and `RecheckDeletionTimestamp`).
pub struct ControllerRefManager<'a, O> {
    client: kube::Client,
    owner: &'a O,
}

impl<O: Namespaced> std::fmt::Debug for ControllerRefManager<'_, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerRefManager")
            .field("owner", &self.owner.meta().name)
            .finish_non_exhaustive()
    }
}

impl<'a, O: Namespaced> ControllerRefManager<'a, O> {
    /// A manager claiming for `owner`, writing through `client`.
    pub fn new(client: &kube::Client, owner: &'a O) -> Self {
        ControllerRefManager {
            client: client.clone(),
            owner,
        }
    }

    /// The objects the owner controls after adopting the orphans `matches`
    /// accepts and releasing its objects `matches` no longer accepts
    /// (upstream's `ClaimObject` over each object). An owner being deleted
    /// neither adopts nor releases. Before the first adoption the owner is
    /// read fresh from the API server, once: it must be the same object
    /// and not being deleted. An adopted object is returned as the patch
    /// left it. The error joins every failure's message.
    pub async fn claim<K: Namespaced>(
        &self,
        objects: impl IntoIterator<Item = Arc<K>>,
        matches: impl Fn(&K) -> bool,
    ) -> Result<Vec<Arc<K>>, String> {
        let m = self.owner.meta();
        let uid = m.uid.as_deref().unwrap_or("");
        let deleting = m.deletion_timestamp.is_some();
        let mut claimed = Vec::new();
        let mut errors = Vec::new();
        let mut can_adopt: Option<Result<(), String>> = None;
        for obj in objects {
            let om = obj.meta();
            let ok = matches(obj.as_ref());
            if let Some(r) = controller_of(om) {
                if r.uid != uid {
                    continue;
                }
                if ok {
                    claimed.push(obj);
                } else if !deleting && let Err(e) = self.release(obj.as_ref()).await {
                    errors.push(api_message(&e));
                }
                continue;
            }
            if deleting || !ok || om.deletion_timestamp.is_some() || om.namespace != m.namespace {
                continue;
            }
            if can_adopt.is_none() {
                can_adopt = Some(self.recheck_owner().await);
            }
            if let Some(Err(e)) = &can_adopt {
                errors.push(format!(
                    "can't adopt {} {}/{} ({}): {e}",
                    K::kind(&()),
                    om.namespace.as_deref().unwrap_or(""),
                    om.name.as_deref().unwrap_or(""),
                    om.uid.as_deref().unwrap_or("")
                ));
                continue;
            }
            match self.adopt(obj.as_ref()).await {
                Ok(adopted) => claimed.push(Arc::new(adopted)),
                // Gone: nothing to claim.
                Err(e) if is_not_found(&e) => {}
                Err(e) => errors.push(api_message(&e)),
            }
        }
        crate::apierrors::aggregate(errors).map(|()| claimed)
    }

    /// [`Self::claim`] of the objects whose labels `selector` matches.
    pub async fn claim_by_selector<K: Namespaced>(
        &self,
        objects: impl IntoIterator<Item = Arc<K>>,
        selector: &Selector,
    ) -> Result<Vec<Arc<K>>, String> {
        let empty = BTreeMap::new();
        self.claim(objects, |o| {
            selector.matches(o.meta().labels.as_ref().unwrap_or(&empty))
        })
        .await
    }

    /// The owner read fresh (a quorum read) must be the same object and
    /// not being deleted before anything is adopted.
    async fn recheck_owner(&self) -> Result<(), String> {
        let m = self.owner.meta();
        let ns = m.namespace.as_deref().unwrap_or("");
        let name = m.name.as_deref().unwrap_or("");
        let api: Api<O> = Api::namespaced(self.client.clone(), ns);
        let fresh = api.get(name).await.map_err(|e| api_message(&e))?;
        if fresh.meta().uid != m.uid {
            return Err(format!(
                "original {} {ns}/{name} is gone: got uid {}, wanted {}",
                O::kind(&()),
                fresh.meta().uid.as_deref().unwrap_or(""),
                m.uid.as_deref().unwrap_or("")
            ));
        }
        if let Some(ts) = &fresh.meta().deletion_timestamp {
            return Err(format!("{ns}/{name} has just been deleted at {}", ts.0));
        }
        Ok(())
    }

    /// Makes the owner the controller of `obj`: a strategic merge patch
    /// guarded by the object's UID, so a recreated object is not adopted.
    async fn adopt<K: Namespaced>(&self, obj: &K) -> Result<K, kube::Error> {
        let r = controller_ref(self.owner);
        let patch = json!({"metadata": {
            "ownerReferences": [{
                "apiVersion": r.api_version, "kind": r.kind, "name": r.name, "uid": r.uid,
                "controller": true, "blockOwnerDeletion": true,
            }],
            "uid": obj.meta().uid,
        }});
        self.patch(obj, patch).await
    }

    /// Drops the owner's reference from `obj`. Gone, or invalid (no such
    /// reference left, or another object by that name) counts as released.
    async fn release<K: Namespaced>(&self, obj: &K) -> Result<(), kube::Error> {
        let patch = json!({"metadata": {
            "ownerReferences": [{"$patch": "delete", "uid": self.owner.meta().uid}],
            "uid": obj.meta().uid,
        }});
        match self.patch(obj, patch).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) || is_invalid(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn patch<K: Namespaced>(
        &self,
        obj: &K,
        patch: serde_json::Value,
    ) -> Result<K, kube::Error> {
        let m = obj.meta();
        let api: Api<K> =
            Api::namespaced(self.client.clone(), m.namespace.as_deref().unwrap_or(""));
        api.patch(
            m.name.as_deref().unwrap_or(""),
            &PatchParams::default(),
            &Patch::Strategic(patch),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
    use k8s_openapi::api::core::v1::{Pod, ReplicationController};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn meta(name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            uid: Some(format!("uid-{name}")),
            resource_version: Some("7".into()),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn controller_ref_names_the_owner_kind() {
        let ds = DaemonSet {
            metadata: meta("d"),
            ..DaemonSet::default()
        };
        let r = controller_ref(&ds);
        assert_eq!(
            (
                r.api_version.as_str(),
                r.kind.as_str(),
                r.name.as_str(),
                r.uid.as_str()
            ),
            ("apps/v1", "DaemonSet", "d", "uid-d")
        );
        assert_eq!(
            (r.controller, r.block_owner_deletion),
            (Some(true), Some(true))
        );
        let rc = ReplicationController {
            metadata: meta("r"),
            ..ReplicationController::default()
        };
        let r = controller_ref(&rc);
        assert_eq!(
            (r.api_version.as_str(), r.kind.as_str()),
            ("v1", "ReplicationController")
        );
    }

    #[test]
    fn object_reference_points_at_the_object() {
        let set = StatefulSet {
            metadata: meta("s"),
            ..StatefulSet::default()
        };
        let r = object_reference(&set);
        assert_eq!(r.kind.as_deref(), Some("StatefulSet"));
        assert_eq!(r.api_version.as_deref(), Some("apps/v1"));
        assert_eq!(r.namespace.as_deref(), Some("ns"));
        assert_eq!(r.resource_version.as_deref(), Some("7"));
        let pod = Pod {
            metadata: meta("p"),
            ..Pod::default()
        };
        assert_eq!(object_reference(&pod).api_version.as_deref(), Some("v1"));
    }
}
