//! One sync of a ReplicaSet / ReplicationController key (upstream's
//! `syncReplicaSet`, `manageReplicas`, `claimPods`, `updateReplicaSetStatus`).

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use serde_json::json;
use skiff_api::selector::labels::Selector;
use skiff_client::events::PendingEvent;

use super::ReplicaController;
use super::kind::{ReplicaKind, ReplicaStatus};
use super::ranking::pods_to_delete;
use super::status::calculate_status;
use crate::controller::{Action, Reconciler, SyncError};
use crate::podutil::{controller_of, is_pod_active, key_of};

/// Runs `count` calls of `f` in batches of 1, 2, 4, ... (starting at
/// `initial`), each batch concurrently, stopping after the first batch with
/// a failure: the number of successes and the first error. A call that
/// fails fast (quota, admission) so costs one request, not `count`.
pub async fn slow_start_batch<F, Fut, E>(count: usize, initial: usize, f: F) -> (usize, Option<E>)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut remaining = count;
    let mut successes = 0;
    let mut batch = remaining.min(initial.max(1));
    while batch > 0 {
        let results = futures::future::join_all((0..batch).map(|_| f())).await;
        let mut first_err = None;
        for r in results {
            match r {
                Ok(()) => successes += 1,
                Err(e) => {
                    if first_err.is_none() {
                        first_err = Some(e);
                    }
                }
            }
        }
        if first_err.is_some() {
            return (successes, first_err);
        }
        remaining -= batch;
        batch = remaining.min(2 * batch);
    }
    (successes, None)
}

/// The message of an API error as upstream prints it (the Status message).
pub(crate) fn api_message(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 404)
}

fn is_namespace_terminating(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.details.as_ref().is_some_and(|d| {
        d.causes.iter().any(|c| c.reason == "NamespaceTerminating")
    }))
}

/// A sync error carrying upstream's message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Failed(pub String);

/// `<name>-`, or the bare name when the dash would make it too long.
fn pods_prefix(name: &str) -> String {
    if name.len() < 253 {
        format!("{name}-")
    } else {
        name.to_owned()
    }
}

impl<K: ReplicaKind> ReplicaController<K> {
    fn reference(owner: &K) -> ObjectReference {
        let m = owner.meta();
        ObjectReference {
            api_version: Some(K::api_version(&()).into_owned()),
            kind: Some(K::kind(&()).into_owned()),
            name: m.name.clone(),
            namespace: m.namespace.clone(),
            uid: m.uid.clone(),
            resource_version: m.resource_version.clone(),
            ..ObjectReference::default()
        }
    }

    fn event(&self, owner: &K, normal: bool, reason: &str, action: &str, note: String) {
        self.events.record(PendingEvent {
            regarding: Self::reference(owner),
            normal,
            reason: reason.to_owned(),
            action: action.to_owned(),
            note,
        });
    }

    fn controller_ref(owner: &K) -> OwnerReference {
        let m = owner.meta();
        OwnerReference {
            api_version: K::api_version(&()).into_owned(),
            kind: K::kind(&()).into_owned(),
            name: m.name.clone().unwrap_or_default(),
            uid: m.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn pods_in(&self, ns: &str) -> Vec<Arc<Pod>> {
        self.pods.list(ns)
    }

    /// The controller's sync of `key`.
    pub(crate) async fn sync_key(&self, key: &str) -> Result<Action, SyncError> {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        let Some(owner) = self.owners.get(&ObjectRef::new(name).within(ns)) else {
            tracing::debug!(kind = %K::kind(&()), key, "deleted");
            self.expectations.delete_expectations(key);
            return Ok(Action::Await);
        };
        let needs_sync = self.expectations.satisfied_expectations(key);
        let selector = match owner.selector() {
            Ok(s) => s,
            Err(err) => {
                // Nothing to do until the object changes.
                tracing::warn!(key, error = %err, "error converting pod selector");
                return Ok(Action::Await);
            }
        };
        let active: Vec<Arc<Pod>> = self
            .pods_in(ns)
            .into_iter()
            .filter(|p| is_pod_active(p))
            .collect();
        let claimed = self.claim_pods(&owner, &selector, active).await?;
        let manage_err = if needs_sync && owner.meta().deletion_timestamp.is_none() {
            self.manage_replicas(&owner, key, &claimed).await.err()
        } else {
            None
        };
        let status = calculate_status(
            owner.as_ref(),
            &claimed,
            manage_err.as_ref().map(|e| e.0.as_str()),
            Timestamp::now(),
        );
        let updated = self
            .update_status(&owner, status)
            .await
            .map_err(|e| Failed(api_message(&e)))?;
        if let Some(err) = manage_err {
            return Err(err.into());
        }
        let st = updated.replica_status();
        let mrs = updated.min_ready_seconds();
        if mrs > 0
            && st.ready_replicas == updated.replicas()
            && st.available_replicas != updated.replicas()
        {
            let secs = u64::try_from(mrs).unwrap_or(0);
            return Ok(Action::RequeueAfter(std::time::Duration::from_secs(secs)));
        }
        Ok(Action::Await)
    }

    /// Adopts matching orphans and releases owned pods that stopped
    /// matching; the pods that are ours afterwards.
    async fn claim_pods(
        &self,
        owner: &Arc<K>,
        selector: &Selector,
        pods: Vec<Arc<Pod>>,
    ) -> Result<Vec<Arc<Pod>>, Failed> {
        let uid = owner.meta().uid.clone().unwrap_or_default();
        let deleting = owner.meta().deletion_timestamp.is_some();
        let ns = owner.meta().namespace.clone().unwrap_or_default();
        let mut claimed = Vec::new();
        let mut errors = Vec::new();
        let mut can_adopt: Option<Result<(), String>> = None;
        let empty = BTreeMap::new();
        for pod in pods {
            let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
            let matches = selector.matches(labels);
            if let Some(r) = controller_of(&pod.metadata) {
                if r.uid != uid {
                    continue;
                }
                if matches {
                    claimed.push(pod);
                } else if !deleting && let Err(e) = self.release_pod(owner, &pod).await {
                    errors.push(e);
                }
                continue;
            }
            if deleting || !matches || pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            if pod.metadata.namespace.as_deref() != Some(ns.as_str()) {
                continue;
            }
            let check = match &can_adopt {
                Some(c) => c.clone(),
                None => {
                    let c = self.recheck_owner(owner).await;
                    can_adopt = Some(c.clone());
                    c
                }
            };
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
            if let Err(e) = check {
                errors.push(format!("can't adopt Pod {ns}/{pod_name} ({pod_uid}): {e}"));
                continue;
            }
            match self.adopt_pod(owner, &pod).await {
                Ok(true) => claimed.push(pod),
                Ok(false) => {}
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(claimed)
        } else {
            Err(Failed(if errors.len() == 1 {
                errors.remove(0)
            } else {
                format!("[{}]", errors.join(", "))
            }))
        }
    }

    /// Upstream's adoption re-check: the owner read fresh from the API
    /// server must be the same object and not being deleted.
    async fn recheck_owner(&self, owner: &K) -> Result<(), String> {
        let m = owner.meta();
        let ns = m.namespace.as_deref().unwrap_or("");
        let name = m.name.as_deref().unwrap_or("");
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        let fresh = api.get(name).await.map_err(|e| api_message(&e))?;
        if fresh.meta().uid != m.uid {
            return Err(format!(
                "original {} {ns}/{name} is gone: got uid {}, wanted {}",
                K::kind(&()),
                fresh.meta().uid.as_deref().unwrap_or(""),
                m.uid.as_deref().unwrap_or("")
            ));
        }
        if let Some(ts) = &fresh.meta().deletion_timestamp {
            return Err(format!("{ns}/{name} has just been deleted at {}", ts.0));
        }
        Ok(())
    }

    /// Sets us as the pod's controller; Ok(false) when the pod is gone.
    async fn adopt_pod(&self, owner: &K, pod: &Pod) -> Result<bool, String> {
        let r = Self::controller_ref(owner);
        let patch = json!({"metadata": {
            "ownerReferences": [{
                "apiVersion": r.api_version, "kind": r.kind, "name": r.name, "uid": r.uid,
                "controller": true, "blockOwnerDeletion": true,
            }],
            "uid": pod.metadata.uid,
        }});
        self.patch_pod(pod, patch).await
    }

    /// Drops our owner reference from a pod that no longer matches.
    async fn release_pod(&self, owner: &K, pod: &Pod) -> Result<(), String> {
        let uid = owner.meta().uid.clone().unwrap_or_default();
        let patch = json!({"metadata": {
            "ownerReferences": [{"$patch": "delete", "uid": uid}],
            "uid": pod.metadata.uid,
        }});
        match self.patch_pod(pod, patch).await {
            Ok(_) => Ok(()),
            // Gone or being deleted: nothing left to release.
            Err(e) if e.starts_with("invalid:") => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn patch_pod(&self, pod: &Pod, patch: serde_json::Value) -> Result<bool, String> {
        let api: Api<Pod> = Api::namespaced(
            self.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or(""),
        );
        let name = pod.metadata.name.as_deref().unwrap_or("");
        match api
            .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(kube::Error::Api(s)) if s.code == 422 => Err(format!("invalid: {}", s.message)),
            Err(e) => Err(api_message(&e)),
        }
    }

    /// Creates or deletes pods towards `spec.replicas`, at most
    /// `burst_replicas` per call.
    async fn manage_replicas(
        &self,
        owner: &Arc<K>,
        key: &str,
        pods: &[Arc<Pod>],
    ) -> Result<(), Failed> {
        let want = usize::try_from(owner.replicas()).unwrap_or(0);
        if pods.len() < want {
            let diff = (want - pods.len()).min(self.burst_replicas);
            self.expectations.expect_creations(key, diff);
            tracing::debug!(key, need = want, creating = diff, "too few replicas");
            let (successes, err) = slow_start_batch(diff, 1, || self.create_pod(owner)).await;
            // Pods never attempted (or failed) will not be observed.
            for _ in successes..diff {
                self.expectations.creation_observed(key);
            }
            return err.map_or(Ok(()), Err);
        }
        if pods.len() > want {
            let diff = (pods.len() - want).min(self.burst_replicas);
            let related = self.indirectly_related_pods(owner);
            let victims = pods_to_delete(pods, &related, diff, Timestamp::now());
            let keys: Vec<String> = victims.iter().map(|p| key_of(&p.metadata)).collect();
            self.expectations.expect_deletions(key, keys);
            tracing::debug!(key, need = want, deleting = diff, "too many replicas");
            let results =
                futures::future::join_all(victims.iter().map(|p| self.delete_pod(owner, key, p)))
                    .await;
            if let Some(err) = results.into_iter().find_map(Result::err) {
                return Err(err);
            }
        }
        Ok(())
    }

    /// Pods selected by the owners that share our owner's controller (a
    /// Deployment's ReplicaSets): they rank co-location on scale-down.
    fn indirectly_related_pods(&self, owner: &K) -> Vec<Arc<Pod>> {
        let Some(ctrl) = controller_of(owner.meta()) else {
            return Vec::new();
        };
        let ns = owner.meta().namespace.clone();
        let siblings = self.owners.state_filter(|o| {
            o.meta().namespace == ns && controller_of(o.meta()).is_some_and(|r| r.uid == ctrl.uid)
        });
        let pods = self.pods_in(ns.as_deref().unwrap_or(""));
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for s in siblings {
            let Ok(sel) = s.selector() else { continue };
            for p in &pods {
                let labels = p.metadata.labels.clone().unwrap_or_default();
                if sel.matches(&labels) && seen.insert(p.metadata.uid.clone()) {
                    out.push(p.clone());
                }
            }
        }
        out
    }

    async fn create_pod(&self, owner: &K) -> Result<(), Failed> {
        let m = owner.meta();
        let ns = m.namespace.clone().unwrap_or_default();
        let template = owner.template().cloned().unwrap_or_default();
        let tmeta = template.metadata.unwrap_or_default();
        if tmeta.labels.as_ref().is_none_or(BTreeMap::is_empty) {
            return Err(Failed("unable to create pods, no labels".to_owned()));
        }
        let pod = Pod {
            metadata: ObjectMeta {
                generate_name: Some(pods_prefix(m.name.as_deref().unwrap_or(""))),
                namespace: Some(ns.clone()),
                labels: tmeta.labels,
                annotations: tmeta.annotations,
                finalizers: tmeta.finalizers,
                owner_references: Some(vec![Self::controller_ref(owner)]),
                ..ObjectMeta::default()
            },
            spec: template.spec,
            status: None,
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        match api.create(&PostParams::default(), &pod).await {
            Ok(created) => {
                let name = created.metadata.name.unwrap_or_default();
                self.event(
                    owner,
                    true,
                    "SuccessfulCreate",
                    "Create",
                    format!("Created pod: {name}"),
                );
                Ok(())
            }
            // The namespace is going away: no point retrying.
            Err(e) if is_namespace_terminating(&e) => Ok(()),
            Err(e) => {
                let msg = api_message(&e);
                self.event(
                    owner,
                    false,
                    "FailedCreate",
                    "Create",
                    format!("Error creating: {msg}"),
                );
                Err(Failed(msg))
            }
        }
    }

    async fn delete_pod(&self, owner: &K, key: &str, pod: &Pod) -> Result<(), Failed> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let name = pod.metadata.name.as_deref().unwrap_or("");
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {
                self.event(
                    owner,
                    true,
                    "SuccessfulDelete",
                    "Delete",
                    format!("Deleted pod: {name}"),
                );
                Ok(())
            }
            Err(e) => {
                // It will not be observed going away through us.
                self.expectations
                    .deletion_observed(key, &key_of(&pod.metadata));
                if is_not_found(&e) {
                    return Ok(());
                }
                let msg = api_message(&e);
                self.event(
                    owner,
                    false,
                    "FailedDelete",
                    "Delete",
                    format!("Error deleting: {msg}"),
                );
                Err(Failed(format!("unable to delete pods: {msg}")))
            }
        }
    }

    /// Writes `status` through the status subresource unless nothing
    /// changed; one retry on a fresh copy after a failure.
    async fn update_status(
        &self,
        owner: &Arc<K>,
        mut status: ReplicaStatus,
    ) -> Result<Arc<K>, kube::Error> {
        let current = owner.replica_status();
        let generation = owner.meta().generation;
        if status.replicas == current.replicas
            && status.fully_labeled_replicas == current.fully_labeled_replicas
            && status.ready_replicas == current.ready_replicas
            && status.available_replicas == current.available_replicas
            && generation == current.observed_generation
            && status.conditions == current.conditions
        {
            return Ok(owner.clone());
        }
        status.observed_generation = generation;
        let m = owner.meta();
        let api: Api<K> =
            Api::namespaced(self.client.clone(), m.namespace.as_deref().unwrap_or(""));
        let name = m.name.clone().unwrap_or_default();
        let mut target = owner.as_ref().clone();
        for attempt in 0..2 {
            let obj = target.with_replica_status(&status);
            match api
                .replace_status(&name, &PostParams::default(), &obj)
                .await
            {
                Ok(updated) => return Ok(Arc::new(updated)),
                Err(e) if attempt == 0 => {
                    tracing::debug!(error = %e, name, "status update failed; retrying on a fresh copy");
                    target = api.get(&name).await?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(owner.clone())
    }
}

impl<K: ReplicaKind> Reconciler for ReplicaController<K> {
    fn name(&self) -> &str {
        K::NAME
    }

    fn sync(&self, key: &str) -> impl Future<Output = Result<Action, SyncError>> + Send {
        self.sync_key(key)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Calls succeed until call number `fail_from` (0-based), then fail.
    async fn run(count: usize, fail_from: Option<usize>) -> (usize, Option<String>, Vec<usize>) {
        let calls = Mutex::new(0usize);
        let batches = Mutex::new(Vec::<usize>::new());
        let in_batch = Mutex::new(0usize);
        let (ok, err) = slow_start_batch(count, 1, || {
            let n = {
                let mut c = calls.lock().unwrap();
                *c += 1;
                *c - 1
            };
            *in_batch.lock().unwrap() += 1;
            let batches = &batches;
            let in_batch = &in_batch;
            async move {
                // Record each batch's size when its last call finishes.
                tokio::task::yield_now().await;
                let mut b = in_batch.lock().unwrap();
                if *b > 0 {
                    batches.lock().unwrap().push(*b);
                    *b = 0;
                }
                match fail_from {
                    Some(f) if n >= f => Err(format!("call {n} failed")),
                    _ => Ok(()),
                }
            }
        })
        .await;
        let b = batches.lock().unwrap().clone();
        (ok, err, b)
    }

    #[tokio::test]
    async fn batches_double_up_to_the_count() {
        let (ok, err, batches) = run(10, None).await;
        assert_eq!(ok, 10);
        assert!(err.is_none());
        assert_eq!(batches, [1, 2, 4, 3]);
        let (ok, _, batches) = run(0, None).await;
        assert_eq!((ok, batches.len()), (0, 0));
    }

    #[tokio::test]
    async fn a_failing_batch_stops_the_rest() {
        // Calls 0..=2 succeed (batches 1 and 2); the batch of 4 has failures.
        let (ok, err, batches) = run(20, Some(4)).await;
        assert_eq!(batches, [1, 2, 4]);
        assert_eq!(ok, 4, "calls 0-3 succeeded");
        assert_eq!(err.as_deref(), Some("call 4 failed"));
        // A first call failing stops everything after one call.
        let (ok, err, batches) = run(500, Some(0)).await;
        assert_eq!((ok, batches), (0, vec![1]));
        assert!(err.is_some());
    }

    #[test]
    fn pod_prefix_is_name_dash() {
        assert_eq!(pods_prefix("web"), "web-");
        let long = "a".repeat(253);
        assert_eq!(pods_prefix(&long), long);
    }
}
