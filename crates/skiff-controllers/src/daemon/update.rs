//! Updates and history of a DaemonSet (upstream's `daemon/update.go`): the
//! rolling update (delete-first under maxUnavailable, or create-first under
//! maxSurge), ControllerRevisions for the template, and their cleanup.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use skiff_api::selector::labels::Selector;

use super::DaemonSetsController;
use super::sync::{Failed, NodeToDaemonPods, nodes_by_name};
use super::util::{
    is_pod_updated, min_ready_seconds, node_should_run_daemon_pod, revision_history_limit,
    surge_count, template, template_generation, unavailable_count,
};
use crate::apierrors::api_message;
use crate::cached_pod::CachedPod;
use crate::controllerref::{ControllerRefManager, controller_ref};
use crate::deployment::util::compute_hash;
use crate::history::{
    CONTROLLER_REVISION_HASH_LABEL, max_revision, revision_hash, revisions_to_truncate,
    semantic_json_eq,
};
use crate::podutil::is_pod_available;

/// A node's (new, old) daemon pod.
pub(crate) type NewAndOld = (Option<Arc<CachedPod>>, Option<Arc<CachedPod>>);

/// The new and the old pod on a node; `None` when the node has more than
/// one of either, which the manage loop cleans up first (upstream's
/// `findUpdatedPodsOnNode`).
pub(crate) fn find_updated_pods_on_node(
    pods: &[Arc<CachedPod>],
    hash: &str,
    generation: Option<i64>,
) -> Option<NewAndOld> {
    let (mut new, mut old) = (None, None);
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let slot = if is_pod_updated(pod, hash, generation) {
            &mut new
        } else {
            &mut old
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(pod.clone());
    }
    Some((new, old))
}

/// What one rolling-update step does.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct UpdatePlan {
    /// Old pods to delete.
    pub delete: Vec<String>,
    /// Nodes to create a new pod on (surge only).
    pub create: Vec<String>,
}

fn name(p: &CachedPod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

/// `(maxSurge, maxUnavailable, desiredNumberScheduled)`, adding an empty
/// entry for every node that should run a pod (upstream's
/// `updatedDesiredNodeCounts`); neither surge nor unavailability allowed
/// means one may be unavailable.
pub(crate) fn updated_desired_node_counts(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    node_to_pods: &mut NodeToDaemonPods,
) -> Result<(i32, i32, i32), String> {
    let mut desired = 0;
    for node in nodes {
        if !node_should_run_daemon_pod(node, ds).0 {
            continue;
        }
        desired += 1;
        node_to_pods
            .entry(node.metadata.name.clone().unwrap_or_default())
            .or_default();
    }
    let mut max_unavailable = unavailable_count(ds, desired)
        .map_err(|e| format!("invalid value for MaxUnavailable: {e}"))?;
    let max_surge =
        surge_count(ds, desired).map_err(|e| format!("invalid value for MaxSurge: {e}"))?;
    if desired > 0 && max_unavailable == 0 && max_surge == 0 {
        max_unavailable = 1;
    }
    Ok((max_surge, max_unavailable, desired))
}

/// One step of the rolling update (upstream's `rollingUpdate`): without
/// surge, old pods are deleted while fewer than maxUnavailable nodes lack
/// an available pod (the manage loop then creates the new ones); with
/// surge, new pods are created next to old ones on up to maxSurge nodes
/// and an old pod goes once its node's new pod is available.
pub(crate) fn plan_rolling_update(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    mut node_to_pods: NodeToDaemonPods,
    hash: &str,
    now: Timestamp,
) -> Result<UpdatePlan, String> {
    let (max_surge, max_unavailable, desired) =
        updated_desired_node_counts(ds, nodes, &mut node_to_pods)?;
    let generation = template_generation(ds);
    let mrs = min_ready_seconds(ds);
    let available = |p: &CachedPod| is_pod_available(p, mrs, now);
    let mut plan = UpdatePlan::default();
    if max_surge == 0 {
        let mut num_unavailable = 0;
        let mut replacements = Vec::new();
        let mut candidates = Vec::new();
        for pods in node_to_pods.values() {
            let Some((new, old)) = find_updated_pods_on_node(pods, hash, generation) else {
                num_unavailable += 1;
                continue;
            };
            match (new, old) {
                (None, None) | (Some(_), Some(_)) => num_unavailable += 1,
                (Some(new), None) => {
                    if !available(&new) {
                        num_unavailable += 1;
                    }
                }
                (None, Some(old)) => {
                    if !available(&old) {
                        replacements.push(name(&old));
                        num_unavailable += 1;
                    } else if num_unavailable < max_unavailable {
                        candidates.push(name(&old));
                    }
                }
            }
        }
        let remaining = usize::try_from(max_unavailable - num_unavailable)
            .unwrap_or(0)
            .min(candidates.len());
        plan.delete = replacements;
        plan.delete.extend(candidates.into_iter().take(remaining));
        return Ok(plan);
    }
    let by_name = nodes_by_name(nodes);
    let should_run = |node: &str| {
        by_name
            .get(node)
            .is_some_and(|n| node_should_run_daemon_pod(n, ds).0)
    };
    let mut should_not_run_deletes = Vec::new();
    let mut candidates = Vec::new();
    let mut allowed = Vec::new();
    let (mut num_surge, mut num_available) = (0, 0);
    for (node, pods) in &node_to_pods {
        let Some((new, old)) = find_updated_pods_on_node(pods, hash, generation) else {
            num_surge += 1;
            continue;
        };
        // A node counts by its old pod while it has one.
        if old.as_ref().or(new.as_ref()).is_some_and(|p| available(p)) {
            num_available += 1;
        }
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) => {
                if !available(&old) {
                    if should_run(node) {
                        allowed.push(node.clone());
                    } else {
                        plan.delete.push(name(&old));
                    }
                } else if !should_run(node) {
                    should_not_run_deletes.push(name(&old));
                } else if num_surge < max_surge {
                    candidates.push(node.clone());
                }
            }
            (Some(new), Some(old)) => {
                if available(&new) {
                    plan.delete.push(name(&old));
                } else {
                    num_surge += 1;
                }
            }
        }
    }
    let remaining_surge = usize::try_from(max_surge - num_surge)
        .unwrap_or(0)
        .min(candidates.len());
    plan.create = allowed;
    plan.create
        .extend(candidates.into_iter().take(remaining_surge));
    // Old pods on nodes that should no longer run one go within
    // maxUnavailable.
    let remaining_unavailable = usize::try_from(max_unavailable - (desired - num_available))
        .unwrap_or(0)
        .min(should_not_run_deletes.len());
    plan.delete.extend(
        should_not_run_deletes
            .into_iter()
            .take(remaining_unavailable),
    );
    Ok(plan)
}

/// The revision data for a DaemonSet: a strategic-merge patch replacing
/// `spec.template` (upstream's `getPatch`, what `kubectl rollout undo`
/// applies).
pub(crate) fn get_patch(ds: &DaemonSet) -> serde_json::Value {
    let mut t = serde_json::to_value(template(ds)).unwrap_or_else(|_| json!({}));
    if let Some(m) = t.as_object_mut() {
        m.insert("$patch".to_owned(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// Whether `history` holds the DaemonSet's current template (upstream's
/// `Match`).
pub(crate) fn matches_template(ds: &DaemonSet, history: &ControllerRevision) -> bool {
    history
        .data
        .as_ref()
        .is_some_and(|d| semantic_json_eq(&d.0, &get_patch(ds)))
}

impl DaemonSetsController {
    pub(crate) async fn rolling_update(
        &self,
        ds: &DaemonSet,
        nodes: &[Arc<Node>],
        node_to_pods: NodeToDaemonPods,
        hash: &str,
        key: &str,
    ) -> Result<(), Failed> {
        let plan =
            plan_rolling_update(ds, nodes, node_to_pods, hash, Timestamp::now()).map_err(Failed)?;
        if plan.delete.is_empty() && plan.create.is_empty() {
            return Ok(());
        }
        tracing::debug!(key, delete = ?plan.delete, create = ?plan.create, "rolling update");
        self.sync_nodes(ds, key, plan.delete, plan.create, hash)
            .await
    }

    /// The current revision (created or renumbered as needed) and the old
    /// ones (upstream's `constructHistory`).
    pub(crate) async fn construct_history(
        &self,
        ds: &Arc<DaemonSet>,
        selector: &Selector,
    ) -> Result<(ControllerRevision, Vec<Arc<ControllerRevision>>), Failed> {
        let ns = ds.metadata.namespace.clone().unwrap_or_default();
        let all = self.revisions.list(&ns);
        let histories = ControllerRefManager::new(&self.client, ds.as_ref())
            .claim_by_selector(all, selector)
            .await
            .map_err(Failed)?;
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &ns);
        let (mut current, mut old) = (Vec::new(), Vec::new());
        for mut h in histories {
            if revision_hash(&h).is_none() {
                // Older revisions lack the label: their name is unique.
                let mut to_update = (*h).clone();
                let name = to_update.metadata.name.clone().unwrap_or_default();
                to_update
                    .metadata
                    .labels
                    .get_or_insert_with(Default::default)
                    .insert(CONTROLLER_REVISION_HASH_LABEL.to_owned(), name.clone());
                h = Arc::new(
                    api.replace(&name, &PostParams::default(), &to_update)
                        .await
                        .map_err(|e| Failed(api_message(&e)))?,
                );
            }
            if matches_template(ds, &h) {
                current.push(h);
            } else {
                old.push(h);
            }
        }
        let curr_revision = max_revision(&old) + 1;
        let cur = if current.is_empty() {
            self.snapshot(ds, curr_revision).await?
        } else {
            let keep = self.dedup_cur_histories(ds, selector, current).await?;
            if keep.revision < curr_revision {
                self.history
                    .update_controller_revision(&keep, curr_revision)
                    .await
                    .map_err(|e| Failed(api_message(&e)))?
            } else {
                keep
            }
        };
        Ok((cur, old))
    }

    /// Keeps the highest-numbered of several revisions equal to the
    /// template: pods of the others are relabelled, the others deleted.
    async fn dedup_cur_histories(
        &self,
        ds: &DaemonSet,
        selector: &Selector,
        mut current: Vec<Arc<ControllerRevision>>,
    ) -> Result<ControllerRevision, Failed> {
        current.sort_by_key(|r| r.revision);
        let Some(keep) = current.pop() else {
            return Err(Failed("no current revision".to_owned()));
        };
        if current.is_empty() {
            return Ok((*keep).clone());
        }
        let keep_hash = revision_hash(&keep).unwrap_or("").to_owned();
        let ns = ds.metadata.namespace.clone().unwrap_or_default();
        let pods: Api<CachedPod> = Api::namespaced(self.client.clone(), &ns);
        let empty = Default::default();
        for dup in current {
            for pod in self.pods.list(&ns) {
                let owned = crate::podutil::controller_of(&pod.metadata)
                    .is_some_and(|r| Some(&r.uid) == ds.metadata.uid.as_ref());
                let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
                if !owned
                    || !selector.matches(labels)
                    || labels.get(CONTROLLER_REVISION_HASH_LABEL) == Some(&keep_hash)
                {
                    continue;
                }
                let patch =
                    json!({"metadata": {"labels": {CONTROLLER_REVISION_HASH_LABEL: keep_hash}}});
                pods.patch(
                    pod.metadata.name.as_deref().unwrap_or(""),
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(patch),
                )
                .await
                .map_err(|e| Failed(api_message(&e)))?;
            }
            self.history
                .delete_controller_revision(&dup)
                .await
                .map_err(|e| Failed(api_message(&e)))?;
        }
        Ok((*keep).clone())
    }

    /// Creates the revision for the current template, named by its hash;
    /// a name taken by another template bumps `status.collisionCount` and
    /// fails the sync so the next one uses a new name (upstream's
    /// `snapshot`).
    async fn snapshot(&self, ds: &DaemonSet, revision: i64) -> Result<ControllerRevision, Failed> {
        let collision_count = ds.status.as_ref().and_then(|s| s.collision_count);
        let hash = compute_hash(&template(ds), collision_count);
        let ds_name = ds.metadata.name.clone().unwrap_or_default();
        let name = format!("{ds_name}-{hash}");
        let mut labels = template(ds)
            .metadata
            .and_then(|m| m.labels)
            .unwrap_or_default();
        labels.insert(CONTROLLER_REVISION_HASH_LABEL.to_owned(), hash);
        let ns = ds.metadata.namespace.clone().unwrap_or_default();
        let history = ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                labels: Some(labels),
                annotations: ds.metadata.annotations.clone(),
                owner_references: Some(vec![controller_ref(ds)]),
                ..ObjectMeta::default()
            },
            data: Some(RawExtension(get_patch(ds))),
            revision,
        };
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &ns);
        match api.create(&PostParams::default(), &history).await {
            Ok(created) => Ok(created),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let existing = api.get(&name).await.map_err(|e| Failed(api_message(&e)))?;
                if matches_template(ds, &existing) {
                    return Ok(existing);
                }
                let ds_api: Api<DaemonSet> = Api::namespaced(self.client.clone(), &ns);
                let mut fresh = ds_api
                    .get(&ds_name)
                    .await
                    .map_err(|e| Failed(api_message(&e)))?;
                let status = fresh.status.get_or_insert_with(Default::default);
                let count = status.collision_count.unwrap_or(0).saturating_add(1);
                status.collision_count = Some(count);
                ds_api
                    .replace_status(&ds_name, &PostParams::default(), &fresh)
                    .await
                    .map_err(|e| Failed(api_message(&e)))?;
                tracing::info!(daemonset = %ds_name, collision_count = count, "hash collision: bumped collisionCount");
                Err(Failed(s.message))
            }
            Err(e) => Err(Failed(api_message(&e))),
        }
    }

    /// Deletes old revisions beyond revisionHistoryLimit, oldest first,
    /// keeping any a live pod still uses (upstream's `cleanupHistory`).
    pub(crate) async fn cleanup_history(
        &self,
        ds: &DaemonSet,
        node_to_pods: &NodeToDaemonPods,
        old: &[Arc<ControllerRevision>],
    ) -> Result<(), Failed> {
        let live: HashSet<&str> = node_to_pods
            .values()
            .flatten()
            .filter_map(|p| {
                p.metadata
                    .labels
                    .as_ref()?
                    .get(CONTROLLER_REVISION_HASH_LABEL)
                    .map(String::as_str)
                    .filter(|h| !h.is_empty())
            })
            .collect();
        let doomed = revisions_to_truncate(old, revision_history_limit(ds), |r| {
            revision_hash(r).is_some_and(|h| live.contains(h))
        });
        for name in doomed {
            if let Some(r) = old
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
}
