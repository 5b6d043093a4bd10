//! One sync of a DaemonSet key (upstream's `syncDaemonSet`, `manage`,
//! `podsShouldBeOnNode`, `syncNodes`, `updateDaemonSetStatus`).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, PodTemplateSpec};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;
use skiff_api::selector::labels::{Selector, from_label_selector};

use super::DaemonSetsController;
use super::util::{
    self, allows_surge, create_pod_template, node_should_run_daemon_pod,
    pod_by_creation_timestamp_and_phase, replace_daemon_set_pod_node_name_node_affinity,
    target_node_name, template_generation,
};
use crate::apierrors::aggregate;
use crate::cached_pod::CachedPod;
use crate::controller::{Action, Reconciler, SyncError};
use crate::controllerref::ControllerRefManager;
use crate::history::CONTROLLER_REVISION_HASH_LABEL;
use crate::podcontrol::{PodControl, pod_from_template, record_event, slow_start_batch};
use crate::podutil::{controller_of, is_pod_available, is_pod_ready, phase};

/// Daemon pods by the node they are for.
pub(crate) type NodeToDaemonPods = BTreeMap<String, Vec<Arc<CachedPod>>>;

/// A sync error carrying upstream's message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Failed(pub String);

/// The DaemonSet's selector.
pub(crate) fn selector_of(ds: &DaemonSet) -> Result<Selector, String> {
    from_label_selector(ds.spec.as_ref().map(|s| &s.selector)).map_err(|e| e.to_string())
}

fn failed_pods_backoff_key(ds: &DaemonSet, node: &str) -> String {
    let generation = ds
        .status
        .as_ref()
        .and_then(|s| s.observed_generation)
        .unwrap_or(0);
    format!(
        "{}/{generation}/{node}",
        ds.metadata.uid.as_deref().unwrap_or("")
    )
}

/// What `pods_should_be_on_node` decided for one node.
#[derive(Debug, Default)]
pub(crate) struct NodePlan {
    /// The node needs a new daemon pod.
    pub create: bool,
    /// Names of pods to delete there.
    pub delete: Vec<String>,
    /// Failed pods found (deleted, or held back by the back-off).
    pub failed: Vec<Arc<CachedPod>>,
    /// Succeeded pods found (deleted).
    pub succeeded: Vec<Arc<CachedPod>>,
}

/// The pods on `node` to create and delete (upstream's
/// `podsShouldBeOnNode`), failed pods aside: `failed_pod_allowed` says
/// whether the back-off lets a failed pod be deleted now.
pub(crate) fn pods_should_be_on_node(
    ds: &DaemonSet,
    node: &Node,
    pods: Option<&Vec<Arc<CachedPod>>>,
    hash: &str,
    now: Timestamp,
    mut failed_pod_allowed: impl FnMut() -> bool,
) -> NodePlan {
    let (should_run, should_continue) = node_should_run_daemon_pod(node, ds);
    let mut plan = NodePlan::default();
    let exists = pods.is_some_and(|p| !p.is_empty());
    if should_run && !exists {
        plan.create = true;
        return plan;
    }
    let pods = pods.map(Vec::as_slice).unwrap_or(&[]);
    if !should_continue {
        plan.delete = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect();
        return plan;
    }
    let mut running: Vec<Arc<CachedPod>> = Vec::new();
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        match phase(pod) {
            "Failed" => {
                plan.failed.push(pod.clone());
                if failed_pod_allowed() {
                    plan.delete
                        .push(pod.metadata.name.clone().unwrap_or_default());
                }
            }
            "Succeeded" => {
                plan.succeeded.push(pod.clone());
                plan.delete
                    .push(pod.metadata.name.clone().unwrap_or_default());
            }
            _ => running.push(pod.clone()),
        }
    }
    running.sort_by(|a, b| pod_by_creation_timestamp_and_phase(a, b));
    if !allows_surge(ds) {
        // Keep the oldest; a failed pod's replacement comes next sync.
        for p in running.iter().skip(1) {
            plan.delete
                .push(p.metadata.name.clone().unwrap_or_default());
        }
        return plan;
    }
    if running.is_empty() {
        plan.create = should_run;
        return plan;
    }
    // Surging: an old and a new pod may share the node while the new one is
    // not yet available and the old one still ready.
    let is_new = |p: &CachedPod| {
        p.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(CONTROLLER_REVISION_HASH_LABEL))
            .is_some_and(|h| h == hash)
    };
    let (mut oldest_new, mut oldest_old): (Option<&Arc<CachedPod>>, Option<&Arc<CachedPod>>) =
        (None, None);
    for p in &running {
        let slot = if is_new(p) {
            &mut oldest_new
        } else {
            &mut oldest_old
        };
        if slot.is_none() {
            *slot = Some(p);
        } else {
            plan.delete
                .push(p.metadata.name.clone().unwrap_or_default());
        }
    }
    if let (Some(new), Some(old)) = (oldest_new, oldest_old)
        && (!is_pod_ready(old) || is_pod_available(new, util::min_ready_seconds(ds), now))
    {
        plan.delete
            .push(old.metadata.name.clone().unwrap_or_default());
    }
    plan
}

impl DaemonSetsController {
    pub(crate) fn event(
        &self,
        ds: &DaemonSet,
        normal: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        record_event(self.events.as_ref(), ds, normal, reason, action, note);
    }

    fn pod_control(&self) -> PodControl<'_> {
        PodControl::new(&self.client, self.events.as_ref())
    }

    fn node_list(&self) -> Vec<Arc<Node>> {
        let mut nodes = self.nodes.state();
        nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        nodes
    }

    /// The DaemonSet's pods (any phase) after adopting matching orphans and
    /// releasing owned pods that stopped matching (upstream's
    /// `getDaemonPods` with `ClaimPods`).
    async fn claim_pods(
        &self,
        ds: &DaemonSet,
        selector: &Selector,
    ) -> Result<Vec<Arc<CachedPod>>, Failed> {
        let ns = ds.metadata.namespace.as_deref().unwrap_or("");
        let uid = ds.metadata.uid.as_deref().unwrap_or("");
        ControllerRefManager::new(&self.client, ds)
            .claim_by_selector(self.pods_by_controller.owned_or_orphaned(ns, uid), selector)
            .await
            .map_err(Failed)
    }

    /// Groups pods by the node they are for (upstream's
    /// `getNodesToDaemonPods`).
    pub(crate) fn group_by_node(pods: Vec<Arc<CachedPod>>) -> NodeToDaemonPods {
        let mut out = NodeToDaemonPods::new();
        for pod in pods {
            if let Some(node) = target_node_name(&pod) {
                out.entry(node).or_default().push(pod);
            }
        }
        out
    }

    /// The DaemonSet's pods from the cache without claiming (for status).
    pub(crate) fn owned_pods(&self, ds: &DaemonSet, selector: &Selector) -> NodeToDaemonPods {
        let ns = ds.metadata.namespace.as_deref().unwrap_or("");
        let uid = ds.metadata.uid.as_deref().unwrap_or("");
        let empty = BTreeMap::new();
        let pods = self
            .pods
            .list(ns)
            .into_iter()
            .filter(|p| {
                controller_of(&p.metadata).is_some_and(|r| r.uid == uid)
                    && selector.matches(p.metadata.labels.as_ref().unwrap_or(&empty))
            })
            .collect();
        Self::group_by_node(pods)
    }

    /// The controller's sync of `key`.
    pub(crate) async fn sync_key(&self, key: &str) -> Result<Action, SyncError> {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        let Some(ds) = self.daemon_sets.get(&ObjectRef::new(name).within(ns)) else {
            tracing::debug!(key, "daemon set has been deleted");
            self.expectations.delete_expectations(key);
            return Ok(Action::Await);
        };
        let selector = match selector_of(&ds) {
            Ok(s) => s,
            Err(err) => {
                tracing::warn!(key, error = %err, "invalid selector");
                return Ok(Action::Await);
            }
        };
        if selector.is_empty() {
            self.event(
                &ds,
                false,
                "SelectingAll",
                "Sync",
                "This daemon set is selecting all pods. A non-empty selector is required."
                    .to_owned(),
            );
            return Ok(Action::Await);
        }
        // Status cannot be trusted while the history may be going away.
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(Action::Await);
        }
        let nodes = self.node_list();
        let (cur, old) = self.construct_history(&ds, &selector).await.map_err(|e| {
            Failed(format!(
                "failed to construct revisions of DaemonSet: {}",
                e.0
            ))
        })?;
        let hash = cur
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(CONTROLLER_REVISION_HASH_LABEL))
            .cloned()
            .unwrap_or_default();
        let mut requeue: Option<Duration> = None;
        if !self.expectations.satisfied_expectations(key) {
            // Only status; the generation was not acted on.
            let status_requeue = self
                .update_status(&ds, &selector, &nodes, &hash, false)
                .await?;
            return Ok(action(status_requeue));
        }
        let result = self
            .update_daemon_set(&ds, &selector, &nodes, &hash, key, &old, &mut requeue)
            .await;
        let status = self
            .update_status(&ds, &selector, &nodes, &hash, true)
            .await;
        result?;
        let status_requeue = status?;
        Ok(action(match (requeue, status_requeue) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }))
    }

    #[allow(clippy::too_many_arguments)]
    async fn update_daemon_set(
        &self,
        ds: &Arc<DaemonSet>,
        selector: &Selector,
        nodes: &[Arc<Node>],
        hash: &str,
        key: &str,
        old: &[Arc<k8s_openapi::api::apps::v1::ControllerRevision>],
        requeue: &mut Option<Duration>,
    ) -> Result<(), Failed> {
        let claimed = self.claim_pods(ds, selector).await.map_err(|e| {
            Failed(format!(
                "couldn't get node to daemon pod mapping for daemon set {:?}: {}",
                ds.metadata.name.as_deref().unwrap_or(""),
                e.0
            ))
        })?;
        let node_to_pods = Self::group_by_node(claimed);
        self.manage(ds, nodes, &node_to_pods, hash, key, requeue)
            .await?;
        if self.expectations.satisfied_expectations(key) && util::is_rolling_update(ds) {
            self.rolling_update(ds, nodes, node_to_pods.clone(), hash, key)
                .await?;
        }
        self.cleanup_history(ds, &node_to_pods, old)
            .await
            .map_err(|e| {
                Failed(format!(
                    "failed to clean up revisions of DaemonSet: {}",
                    e.0
                ))
            })
    }

    async fn manage(
        &self,
        ds: &DaemonSet,
        nodes: &[Arc<Node>],
        node_to_pods: &NodeToDaemonPods,
        hash: &str,
        key: &str,
        requeue: &mut Option<Duration>,
    ) -> Result<(), Failed> {
        let now = Timestamp::now();
        let clock = tokio::time::Instant::now();
        let mut needing = Vec::new();
        let mut to_delete = Vec::new();
        for node in nodes {
            let name = node.metadata.name.clone().unwrap_or_default();
            let backoff_key = failed_pods_backoff_key(ds, &name);
            let plan = pods_should_be_on_node(ds, node, node_to_pods.get(&name), hash, now, || {
                if self
                    .failed_pods_backoff
                    .is_in_back_off_since_update(&backoff_key, clock)
                {
                    let delay = self.failed_pods_backoff.get(&backoff_key);
                    *requeue = Some(requeue.map_or(delay, |r| r.min(delay)));
                    false
                } else {
                    self.failed_pods_backoff.next(&backoff_key, clock);
                    true
                }
            });
            for p in &plan.failed {
                let pname = p.metadata.name.as_deref().unwrap_or("");
                if plan.delete.iter().any(|d| d == pname) {
                    let msg = format!(
                        "Found failed daemon pod {}/{pname} on node {name}, will try to kill it",
                        p.metadata.namespace.as_deref().unwrap_or("")
                    );
                    self.event(ds, false, "FailedDaemonPod", "Delete", msg);
                }
            }
            for p in &plan.succeeded {
                let msg = format!(
                    "Found succeeded daemon pod {}/{} on node {name}, will try to delete it",
                    p.metadata.namespace.as_deref().unwrap_or(""),
                    p.metadata.name.as_deref().unwrap_or("")
                );
                self.event(ds, true, "SucceededDaemonPod", "Delete", msg);
            }
            if plan.create {
                needing.push(name);
            }
            to_delete.extend(plan.delete);
        }
        // Pods for nodes that no longer exist, never scheduled: no pod GC
        // would ever remove them.
        let existing: std::collections::HashSet<&str> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.as_deref())
            .collect();
        for (node, pods) in node_to_pods {
            if existing.contains(node.as_str()) {
                continue;
            }
            for p in pods {
                let unscheduled = p
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_none_or(str::is_empty);
                if unscheduled {
                    to_delete.push(p.metadata.name.clone().unwrap_or_default());
                }
            }
        }
        self.sync_nodes(ds, key, to_delete, needing, hash).await
    }

    /// Deletes `to_delete` and creates a pod on each of `needing` (at most
    /// `burst_replicas` each), creations in slow-start batches.
    pub(crate) async fn sync_nodes(
        &self,
        ds: &DaemonSet,
        key: &str,
        mut to_delete: Vec<String>,
        mut needing: Vec<String>,
        hash: &str,
    ) -> Result<(), Failed> {
        needing.truncate(self.burst_replicas);
        to_delete.truncate(self.burst_replicas);
        let ns = ds.metadata.namespace.clone().unwrap_or_default();
        let delete_keys = to_delete.iter().map(|n| format!("{ns}/{n}")).collect();
        self.expectations
            .set_expectations(key, needing.len(), delete_keys);
        let template = create_pod_template(&util::template(ds), template_generation(ds), hash);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let (created, create_err) = slow_start_batch(needing.len(), 1, || {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let node = needing.get(i).cloned().unwrap_or_default();
            self.create_pod(ds, &template, node)
        })
        .await;
        // Pods never attempted or failed will not be observed.
        for _ in created..needing.len() {
            self.expectations.creation_observed(key);
        }
        let results = futures::future::join_all(
            to_delete
                .iter()
                .map(|name| self.delete_pod(ds, key, &ns, name)),
        )
        .await;
        let mut errors: Vec<String> = create_err.into_iter().map(|e| e.0).collect();
        errors.extend(results.into_iter().filter_map(Result::err).map(|e| e.0));
        aggregate(errors).map_err(Failed)
    }

    async fn create_pod(
        &self,
        ds: &DaemonSet,
        template: &PodTemplateSpec,
        node: String,
    ) -> Result<(), Failed> {
        let mut template = template.clone();
        let spec = template.spec.get_or_insert_with(Default::default);
        spec.affinity = Some(replace_daemon_set_pod_node_name_node_affinity(
            spec.affinity.take(),
            &node,
        ));
        let pod = pod_from_template(template, ds, None);
        self.pod_control()
            .create_pod(ds, &pod)
            .await
            .map_err(Failed)
    }

    async fn delete_pod(
        &self,
        ds: &DaemonSet,
        key: &str,
        ns: &str,
        name: &str,
    ) -> Result<(), Failed> {
        match self.pod_control().delete_pod(ds, ns, name).await {
            Ok(true) => Ok(()),
            failed => {
                self.expectations
                    .deletion_observed(key, &format!("{ns}/{name}"));
                failed.map(|_| ()).map_err(Failed)
            }
        }
    }
}

fn action(requeue: Option<Duration>) -> Action {
    requeue.map_or(Action::Await, Action::RequeueAfter)
}

/// Per-node lookups for the rolling update.
pub(crate) fn nodes_by_name(nodes: &[Arc<Node>]) -> HashMap<String, Arc<Node>> {
    nodes
        .iter()
        .map(|n| (n.metadata.name.clone().unwrap_or_default(), n.clone()))
        .collect()
}

impl Reconciler for DaemonSetsController {
    fn name(&self) -> &str {
        super::CONTROLLER_NAME
    }

    fn sync(&self, key: &str) -> impl Future<Output = Result<Action, SyncError>> + Send {
        self.sync_key(key)
    }
}
