//! The collector's two workers: attempt-to-delete (upstream's
//! `attemptToDeleteItem` and `processDeletingDependentsItem`) and
//! attempt-to-orphan (`orphanDependents` then the finalizer's removal).

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Api;
use kube::api::{
    DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::core::PartialObjectMeta;
use serde_json::json;

use super::graph::{Identity, ObjectMetaView};
use super::{FOREGROUND_FINALIZER, ORPHAN_FINALIZER, Shared};
use crate::apierrors::api_message;
use crate::controller::{Action, Reconciler, SyncError};

fn api(shared: &Shared, id: &Identity) -> Api<DynamicObject> {
    match &id.namespace {
        Some(ns) if id.resource.namespaced => {
            Api::namespaced_with(shared.client.clone(), ns, &id.resource.api)
        }
        _ => Api::all_with(shared.client.clone(), &id.resource.api),
    }
}

fn is_status(err: &kube::Error, code: u16) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == code)
}

/// The object's metadata now (all the collector reads), or None when it
/// is gone or was replaced.
async fn latest(
    shared: &Shared,
    id: &Identity,
) -> Result<Option<PartialObjectMeta<DynamicObject>>, SyncError> {
    match api(shared, id).get_metadata(&id.name).await {
        Ok(o) if o.metadata.uid.as_deref() == Some(id.uid.as_str()) => Ok(Some(o)),
        Ok(_) => Ok(None),
        Err(e) if is_status(&e, 404) => Ok(None),
        Err(e) => Err(api_message(&e).into()),
    }
}

/// Rewrites `id`'s owner references and finalizers with `edit`, guarded by
/// its resourceVersion (a conflict retries the whole item).
async fn patch_meta(
    shared: &Shared,
    id: &Identity,
    edit: impl FnOnce(&mut Vec<OwnerReference>, &mut Vec<String>) -> bool,
) -> Result<(), SyncError> {
    let Some(obj) = latest(shared, id).await? else {
        return Ok(());
    };
    let mut owners = obj.metadata.owner_references.clone().unwrap_or_default();
    let mut finalizers = obj.metadata.finalizers.clone().unwrap_or_default();
    if !edit(&mut owners, &mut finalizers) {
        return Ok(());
    }
    let patch = json!({"metadata": {
        "ownerReferences": owners,
        "finalizers": finalizers,
        "resourceVersion": obj.metadata.resource_version,
        "uid": id.uid,
    }});
    match api(shared, id)
        .patch(&id.name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 404) => Ok(()),
        Err(e) => Err(api_message(&e).into()),
    }
}

async fn remove_finalizer(
    shared: &Shared,
    id: &Identity,
    finalizer: &str,
) -> Result<(), SyncError> {
    patch_meta(shared, id, |_, f| {
        let before = f.len();
        f.retain(|x| x != finalizer);
        f.len() != before
    })
    .await
}

/// How a dependent's owner stands.
#[derive(Debug, PartialEq)]
enum OwnerState {
    Solid,
    Dangling,
    WaitingForDependents,
}

async fn owner_state(
    shared: &Shared,
    dep: &Identity,
    r: &OwnerReference,
) -> Result<OwnerState, SyncError> {
    if let Some(node) = shared.graph().get(&r.uid) {
        // An owner in another namespace does not own this object: the
        // lookup below, in the dependent's namespace, finds it absent.
        let same_scope =
            !node.identity.resource.namespaced || node.identity.namespace == dep.namespace;
        if same_scope {
            return Ok(if node.deleting_dependents() {
                OwnerState::WaitingForDependents
            } else {
                OwnerState::Solid
            });
        }
    }
    // Not observed: ask the API server before calling it gone.
    let Some(resource) = shared.resolve(&r.api_version, &r.kind) else {
        return Err(format!(
            "unable to get REST mapping for {}/{}",
            r.api_version, r.kind
        )
        .into());
    };
    if resource.namespaced && dep.namespace.is_none() {
        // A cluster-scoped dependent cannot have a namespaced owner.
        return Ok(OwnerState::Dangling);
    }
    let owner = Identity {
        resource: Arc::new(resource.clone()),
        namespace: if resource.namespaced {
            dep.namespace.clone()
        } else {
            None
        },
        name: r.name.clone(),
        uid: r.uid.clone(),
    };
    Ok(match latest(shared, &owner).await? {
        None => OwnerState::Dangling,
        Some(o) => {
            let waiting = o.metadata.deletion_timestamp.is_some()
                && o.metadata
                    .finalizers
                    .iter()
                    .flatten()
                    .any(|f| f == FOREGROUND_FINALIZER);
            if waiting {
                OwnerState::WaitingForDependents
            } else {
                OwnerState::Solid
            }
        }
    })
}

/// Deletes objects whose owners are gone; finishes foreground deletions.
#[derive(Debug)]
pub(crate) struct AttemptToDelete(pub Arc<Shared>);

impl AttemptToDelete {
    async fn process(&self, uid: &str) -> Result<Action, SyncError> {
        let shared = &self.0;
        let Some(node) = shared.graph().get(uid).cloned() else {
            return Ok(Action::Await);
        };
        if node.deleting_dependents() {
            return self.process_deleting_dependents(&node).await;
        }
        if node.owners.is_empty() || node.deleting {
            return Ok(Action::Await);
        }
        let Some(obj) = latest(shared, &node.identity).await? else {
            return Ok(Action::Await);
        };
        if obj.metadata.deletion_timestamp.is_some() {
            return Ok(Action::Await);
        }
        let owners = obj.metadata.owner_references.clone().unwrap_or_default();
        let mut solid = Vec::new();
        let mut dangling = Vec::new();
        let mut waiting = Vec::new();
        for r in &owners {
            match owner_state(shared, &node.identity, r).await? {
                OwnerState::Solid => solid.push(r.uid.clone()),
                OwnerState::Dangling => dangling.push(r.uid.clone()),
                OwnerState::WaitingForDependents => waiting.push(r.uid.clone()),
            }
        }
        if owners.is_empty() {
            return Ok(Action::Await);
        }
        if !solid.is_empty() {
            if dangling.is_empty() && waiting.is_empty() {
                return Ok(Action::Await);
            }
            // Keep the live owners; drop the gone; stop blocking the waiting.
            patch_meta(shared, &node.identity, |refs, _| {
                refs.retain(|r| !dangling.contains(&r.uid));
                for r in refs.iter_mut() {
                    if waiting.contains(&r.uid) {
                        r.block_owner_deletion = Some(false);
                    }
                }
                true
            })
            .await?;
            return Ok(Action::Await);
        }
        let has_dependents = !shared.graph().dependents(uid).is_empty();
        let policy = if !waiting.is_empty() && has_dependents {
            // Our owners wait for us; we must wait for ours, without
            // blocking them on references we no longer need to hold.
            patch_meta(shared, &node.identity, |refs, _| {
                let mut changed = false;
                for r in refs.iter_mut() {
                    if waiting.contains(&r.uid) && r.block_owner_deletion == Some(true) {
                        r.block_owner_deletion = Some(false);
                        changed = true;
                    }
                }
                changed
            })
            .await?;
            PropagationPolicy::Foreground
        } else {
            let f = obj.metadata.finalizers.clone().unwrap_or_default();
            if f.iter().any(|x| x == ORPHAN_FINALIZER) {
                PropagationPolicy::Orphan
            } else if f.iter().any(|x| x == FOREGROUND_FINALIZER) {
                PropagationPolicy::Foreground
            } else {
                PropagationPolicy::Background
            }
        };
        tracing::debug!(uid, name = %node.identity.name, ?policy, "deleting object whose owners are gone");
        let dp = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_owned()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api(shared, &node.identity)
            .delete(&node.identity.name, &dp)
            .await
        {
            Ok(_) => Ok(Action::Await),
            Err(e) if is_status(&e, 404) || is_status(&e, 409) => Ok(Action::Await),
            Err(e) => Err(api_message(&e).into()),
        }
    }

    async fn process_deleting_dependents(
        &self,
        node: &ObjectMetaView,
    ) -> Result<Action, SyncError> {
        let shared = &self.0;
        let uid = &node.identity.uid;
        let blocking: Vec<ObjectMetaView> = shared
            .graph()
            .dependents(uid)
            .into_iter()
            .filter(|d| {
                d.owners
                    .iter()
                    .any(|r| &r.uid == uid && r.block_owner_deletion == Some(true))
            })
            .collect();
        if blocking.is_empty() {
            remove_finalizer(shared, &node.identity, FOREGROUND_FINALIZER).await?;
            return Ok(Action::Await);
        }
        for d in blocking {
            if !d.deleting {
                shared.attempt_to_delete.add(d.identity.uid.clone());
            }
        }
        Ok(Action::Await)
    }
}

impl Reconciler for AttemptToDelete {
    fn name(&self) -> &str {
        "garbagecollector"
    }
    fn sync(&self, key: &str) -> impl Future<Output = Result<Action, SyncError>> + Send {
        self.process(key)
    }
}

/// Orphans the dependents of owners deleted with the orphan policy.
#[derive(Debug)]
pub(crate) struct AttemptToOrphan(pub Arc<Shared>);

impl AttemptToOrphan {
    async fn process(&self, uid: &str) -> Result<Action, SyncError> {
        let shared = &self.0;
        let Some(node) = shared.graph().get(uid).cloned() else {
            return Ok(Action::Await);
        };
        if !node.orphaning() {
            return Ok(Action::Await);
        }
        let dependents = shared.graph().dependents(uid);
        for d in dependents {
            patch_meta(shared, &d.identity, |refs, _| {
                let before = refs.len();
                refs.retain(|r| r.uid != uid);
                refs.len() != before
            })
            .await?;
        }
        remove_finalizer(shared, &node.identity, ORPHAN_FINALIZER).await?;
        Ok(Action::Await)
    }
}

impl Reconciler for AttemptToOrphan {
    fn name(&self) -> &str {
        "garbagecollector-orphan"
    }
    fn sync(&self, key: &str) -> impl Future<Output = Result<Action, SyncError>> + Send {
        self.process(key)
    }
}
