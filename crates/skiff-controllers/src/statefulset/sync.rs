//! One sync of a StatefulSet key (upstream's `StatefulSetController.sync`,
//! `defaultStatefulSetControl.performUpdate`, `getStatefulSetRevisions`,
//! `truncateHistory` and the status updater).

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use serde_json::json;
use skiff_api::selector::labels::{Selector, from_label_selector};

use super::control::{Revisions, complete_rolling_update};
use super::utils::{
    self, apply_revision, controller_ref, is_member_of, pod_revision, revision_patch,
};
use super::{Failed, StatefulSetController};
use crate::controller::{Action, Reconciler, SyncError};
use crate::history::{
    claim_controller_revisions, equal_revision, find_equal_revisions, max_revision,
    new_controller_revision, revisions_to_truncate, sort_controller_revisions,
};
use crate::podutil::controller_of;
use crate::replicaset::sync_api_message as api_message;

/// The StatefulSet's selector.
pub(crate) fn selector_of(set: &StatefulSet) -> Result<Selector, String> {
    from_label_selector(set.spec.as_ref().map(|s| &s.selector)).map_err(|e| e.to_string())
}

/// Which revision is the update revision and whether it must be written:
/// the latest revision when it already holds the template, an older equal
/// one renumbered to the top (a rollback), else a new one (upstream's
/// `getStatefulSetRevisions`).
#[derive(Debug, PartialEq)]
pub(crate) enum UpdateRevisionPlan {
    /// The latest revision is current.
    Latest(usize),
    /// Renumber this older equal revision to the next number.
    Renumber(usize),
    /// Create the new revision.
    Create,
}

/// Decides the update revision among `revisions` (sorted) for `candidate`.
pub(crate) fn plan_update_revision(
    revisions: &[Arc<ControllerRevision>],
    candidate: &ControllerRevision,
) -> UpdateRevisionPlan {
    let equal = find_equal_revisions(revisions, candidate);
    let Some(last_equal) = equal.last() else {
        return UpdateRevisionPlan::Create;
    };
    let idx = revisions
        .iter()
        .position(|r| r.metadata.name == last_equal.metadata.name)
        .unwrap_or(0);
    match revisions.last() {
        Some(latest) if equal_revision(latest, last_equal) => {
            UpdateRevisionPlan::Latest(revisions.len() - 1)
        }
        _ => UpdateRevisionPlan::Renumber(idx),
    }
}

/// Whether the stored status differs from `want` in anything the
/// controller writes (upstream's `inconsistentStatus`, plus the collision
/// count).
pub(crate) fn status_changed(set: &StatefulSet, want: &StatefulSetStatus) -> bool {
    let Some(have) = set.status.as_ref() else {
        return true;
    };
    let n = |v: Option<i32>| v.unwrap_or(0);
    have.observed_generation != want.observed_generation
        || have.replicas != want.replicas
        || n(have.ready_replicas) != n(want.ready_replicas)
        || n(have.current_replicas) != n(want.current_replicas)
        || n(have.updated_replicas) != n(want.updated_replicas)
        || n(have.available_replicas) != n(want.available_replicas)
        || have.current_revision != want.current_revision
        || have.update_revision != want.update_revision
        || n(have.collision_count) != n(want.collision_count)
}

impl StatefulSetController {
    fn set_api(&self, ns: &str) -> Api<StatefulSet> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// The fresh set must be the same object and not being deleted before
    /// anything is adopted (upstream's `RecheckDeletionTimestamp`).
    async fn recheck_owner(&self, set: &StatefulSet) -> Result<(), String> {
        let ns = set.metadata.namespace.as_deref().unwrap_or("");
        let name = set.metadata.name.as_deref().unwrap_or("");
        let fresh = self
            .set_api(ns)
            .get(name)
            .await
            .map_err(|e| api_message(&e))?;
        if fresh.metadata.uid != set.metadata.uid {
            return Err(format!(
                "original StatefulSet {ns}/{name} is gone: got uid {}, wanted {}",
                fresh.metadata.uid.as_deref().unwrap_or(""),
                set.metadata.uid.as_deref().unwrap_or("")
            ));
        }
        if let Some(ts) = &fresh.metadata.deletion_timestamp {
            return Err(format!("{ns}/{name} has just been deleted at {}", ts.0));
        }
        Ok(())
    }

    async fn patch_pod(&self, pod: &Pod, patch: serde_json::Value) -> Result<(), kube::Error> {
        let api: Api<Pod> = Api::namespaced(
            self.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or(""),
        );
        api.patch(
            pod.metadata.name.as_deref().unwrap_or(""),
            &PatchParams::default(),
            &Patch::Strategic(patch),
        )
        .await
        .map(|_| ())
    }

    /// The set's pods after adopting matching orphans named like its
    /// members and releasing owned pods that stopped matching (upstream's
    /// `getPodsForStatefulSet`).
    async fn claim_pods(
        &self,
        set: &StatefulSet,
        selector: &Selector,
    ) -> Result<Vec<Arc<Pod>>, Failed> {
        let ns = set.metadata.namespace.clone().unwrap_or_default();
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let deleting = set.metadata.deletion_timestamp.is_some();
        let empty = BTreeMap::new();
        let (mut claimed, mut errors) = (Vec::new(), Vec::new());
        let mut can_adopt: Option<Result<(), String>> = None;
        for pod in self.pods.list(&ns) {
            let matches = selector.matches(pod.metadata.labels.as_ref().unwrap_or(&empty))
                && is_member_of(set, &pod);
            if let Some(r) = controller_of(&pod.metadata) {
                if r.uid != uid {
                    continue;
                }
                if matches {
                    claimed.push(pod);
                } else if !deleting {
                    let patch = json!({"metadata": {
                        "ownerReferences": [{"$patch": "delete", "uid": uid}],
                        "uid": pod.metadata.uid,
                    }});
                    match self.patch_pod(&pod, patch).await {
                        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 422 => {}
                        Err(e) => errors.push(api_message(&e)),
                        Ok(()) => {}
                    }
                }
                continue;
            }
            if deleting || !matches || pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            if can_adopt.is_none() {
                can_adopt = Some(self.recheck_owner(set).await);
            }
            if let Some(Err(e)) = &can_adopt {
                errors.push(format!(
                    "can't adopt Pod {ns}/{} ({}): {e}",
                    pod.metadata.name.as_deref().unwrap_or(""),
                    pod.metadata.uid.as_deref().unwrap_or("")
                ));
                continue;
            }
            let r = controller_ref(set);
            let patch = json!({"metadata": {
                "ownerReferences": [{
                    "apiVersion": r.api_version, "kind": r.kind, "name": r.name, "uid": r.uid,
                    "controller": true, "blockOwnerDeletion": true,
                }],
                "uid": pod.metadata.uid,
            }});
            match self.patch_pod(&pod, patch).await {
                Ok(()) => claimed.push(pod),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => errors.push(api_message(&e)),
            }
        }
        match errors.len() {
            0 => Ok(claimed),
            1 => Err(Failed(errors.remove(0))),
            _ => Err(Failed(format!("[{}]", errors.join(", ")))),
        }
    }

    /// The current and update revisions, creating or renumbering the update
    /// revision as needed; also returns every owned revision and the
    /// collision count.
    async fn stateful_set_revisions(
        &self,
        set: &StatefulSet,
        mut revisions: Vec<Arc<ControllerRevision>>,
    ) -> Result<(ControllerRevision, ControllerRevision, i32), Failed> {
        sort_controller_revisions(&mut revisions);
        let mut collision_count = set
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0);
        let candidate = new_controller_revision(
            &set.metadata,
            controller_ref(set),
            set.spec
                .as_ref()
                .and_then(|s| s.template.metadata.as_ref())
                .and_then(|m| m.labels.as_ref()),
            revision_patch(set),
            max_revision(&revisions) + 1,
            Some(collision_count),
        );
        let mut candidate = candidate;
        candidate.metadata.annotations = set.metadata.annotations.clone();
        let update = match plan_update_revision(&revisions, &candidate) {
            UpdateRevisionPlan::Latest(i) => (*revisions[i]).clone(),
            UpdateRevisionPlan::Renumber(i) => self
                .history
                .update_controller_revision(&revisions[i], candidate.revision)
                .await
                .map_err(|e| Failed(api_message(&e)))?,
            UpdateRevisionPlan::Create => self
                .history
                .create_controller_revision(
                    set.metadata.name.as_deref().unwrap_or(""),
                    set.metadata.uid.as_deref().unwrap_or(""),
                    &candidate,
                    &mut collision_count,
                )
                .await
                .map_err(|e| Failed(api_message(&e)))?,
        };
        let current_name = set
            .status
            .as_ref()
            .and_then(|s| s.current_revision.as_ref());
        let current = revisions
            .iter()
            .find(|r| r.metadata.name.as_ref() == current_name && current_name.is_some())
            .map(|r| (**r).clone())
            .unwrap_or_else(|| update.clone());
        Ok((current, update, collision_count))
    }

    /// Deletes revisions beyond `revisionHistoryLimit` that no pod and
    /// neither the current nor the update revision uses (upstream's
    /// `truncateHistory`).
    async fn truncate_history(
        &self,
        set: &StatefulSet,
        pods: &[Arc<Pod>],
        revisions: &[Arc<ControllerRevision>],
        current: &str,
        update: &str,
    ) -> Result<(), Failed> {
        let mut live: HashSet<&str> = pods.iter().map(|p| pod_revision(p)).collect();
        live.insert(current);
        live.insert(update);
        let history: Vec<Arc<ControllerRevision>> = revisions
            .iter()
            .filter(|r| !live.contains(r.metadata.name.as_deref().unwrap_or("")))
            .cloned()
            .collect();
        for name in revisions_to_truncate(&history, utils::revision_history_limit(set), |_| false) {
            if let Some(r) = history
                .iter()
                .find(|r| r.metadata.name.as_deref() == Some(&name))
            {
                self.history
                    .delete_controller_revision(r)
                    .await
                    .map_err(|e| Failed(api_message(&e)))?;
            }
        }
        Ok(())
    }

    async fn store_status(
        &self,
        set: &StatefulSet,
        status: &StatefulSetStatus,
    ) -> Result<(), Failed> {
        if !status_changed(set, status) {
            return Ok(());
        }
        let mut status = status.clone();
        status.conditions = set.status.as_ref().and_then(|s| s.conditions.clone());
        let patch = json!({ "status": status });
        self.set_api(set.metadata.namespace.as_deref().unwrap_or(""))
            .patch_status(
                set.metadata.name.as_deref().unwrap_or(""),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
            .map(|_| ())
            .map_err(|e| Failed(format!("error updating status: {}", api_message(&e))))
    }

    /// The controller's sync of `key`.
    pub(crate) async fn sync_key(&self, key: &str) -> Result<Action, SyncError> {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        let Some(set) = self.sets.get(&ObjectRef::new(name).within(ns)) else {
            tracing::debug!(key, "StatefulSet has been deleted");
            return Ok(Action::Await);
        };
        let selector = match selector_of(&set) {
            Ok(s) => s,
            Err(err) => {
                tracing::warn!(key, error = %err, "error converting StatefulSet selector");
                return Ok(Action::Await);
            }
        };
        let revisions = claim_controller_revisions(
            &self.history,
            &set.metadata,
            &controller_ref(&set),
            &selector,
            self.revisions.list(ns),
            || self.recheck_owner(&set),
        )
        .await
        .map_err(Failed)?;
        let pods = self.claim_pods(&set, &selector).await?;
        let (current, update, collision_count) =
            self.stateful_set_revisions(&set, revisions.clone()).await?;
        let current_set = apply_revision(&set, &current);
        let update_set = apply_revision(&set, &update);
        let current_name = current.metadata.name.clone().unwrap_or_default();
        let update_name = update.metadata.name.clone().unwrap_or_default();
        let revs = Revisions {
            current_set: &current_set,
            update_set: &update_set,
            current: &current_name,
            update: &update_name,
        };
        let mut status = self.update_stateful_set(&set, &revs, &pods).await?;
        status.collision_count = Some(collision_count);
        complete_rolling_update(&set, &mut status);
        self.store_status(&set, &status).await?;
        let mut all = revisions;
        if !all.iter().any(|r| r.metadata.name == update.metadata.name) {
            all.push(Arc::new(update.clone()));
        }
        self.truncate_history(&set, &pods, &all, &current_name, &update_name)
            .await?;
        let mrs = utils::min_ready_seconds(&set);
        if mrs > 0 && status.available_replicas != Some(status.replicas) {
            let secs = u64::try_from(mrs).unwrap_or(0);
            return Ok(Action::RequeueAfter(Duration::from_secs(secs)));
        }
        Ok(Action::Await)
    }
}

impl Reconciler for StatefulSetController {
    fn name(&self) -> &str {
        super::CONTROLLER_NAME
    }

    fn sync(&self, key: &str) -> impl Future<Output = Result<Action, SyncError>> + Send {
        self.sync_key(key)
    }
}
