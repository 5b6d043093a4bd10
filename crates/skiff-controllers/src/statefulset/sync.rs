//! One sync of a StatefulSet key (upstream's `StatefulSetController.sync`,
//! `defaultStatefulSetControl.performUpdate`, `getStatefulSetRevisions`,
//! `truncateHistory` and the status updater).

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use serde_json::json;
use skiff_api::selector::labels::{Selector, from_label_selector};

use super::control::{Revisions, complete_rolling_update};
use super::utils::{self, apply_revision, is_member_of, pod_revision, revision_patch};
use super::{Failed, StatefulSetController};
use crate::apierrors::api_message;
use crate::cached_pod::CachedPod;
use crate::controller::{Action, Reconciler, SyncError};
use crate::controllerref::{ControllerRefManager, controller_ref};
use crate::history::{
    equal_revision, find_equal_revisions, max_revision, new_controller_revision,
    revisions_to_truncate, sort_controller_revisions,
};

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

    /// The set's pods after adopting matching orphans named like its
    /// members and releasing owned pods that stopped matching (upstream's
    /// `getPodsForStatefulSet`).
    async fn claim_pods(
        &self,
        set: &StatefulSet,
        selector: &Selector,
    ) -> Result<Vec<Arc<CachedPod>>, Failed> {
        let ns = set.metadata.namespace.as_deref().unwrap_or("");
        let uid = set.metadata.uid.as_deref().unwrap_or("");
        let empty = BTreeMap::new();
        ControllerRefManager::new(&self.client, set)
            .claim(self.pods_by_controller.owned_or_orphaned(ns, uid), |p| {
                selector.matches(p.metadata.labels.as_ref().unwrap_or(&empty))
                    && is_member_of(set, p)
            })
            .await
            .map_err(Failed)
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
        pods: &[Arc<CachedPod>],
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
        let revisions = ControllerRefManager::new(&self.client, set.as_ref())
            .claim_by_selector(self.revisions.list(ns), &selector)
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
