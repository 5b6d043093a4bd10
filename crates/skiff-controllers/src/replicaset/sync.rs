//! One sync of a ReplicaSet / ReplicationController key (upstream's
//! `syncReplicaSet`, `manageReplicas`, `claimPods`, `updateReplicaSetStatus`).

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use kube::runtime::reflector::ObjectRef;
use skiff_api::selector::labels::Selector;

use super::ReplicaController;
use super::kind::{ReplicaKind, ReplicaStatus};
use super::ranking::pods_to_delete;
use super::status::calculate_status;
use crate::apierrors::api_message;
use crate::cached_pod::CachedPod;
use crate::controller::{Action, Reconciler, SyncError};
use crate::controllerref::ControllerRefManager;
use crate::podcontrol::{PodControl, pod_from_template, slow_start_batch};
use crate::podutil::{controller_of, is_pod_active, key_of};

/// A sync error carrying upstream's message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Failed(pub String);

impl<K: ReplicaKind> ReplicaController<K> {
    fn pod_control(&self) -> PodControl<'_> {
        PodControl::new(&self.client, self.events.as_ref())
    }

    /// The pods `owner` controls and the orphans of its namespace
    /// (upstream's `FilterPodsByOwner`), the only pods a claim by it can
    /// keep or adopt.
    fn owned_or_orphaned(&self, owner: &K) -> Vec<Arc<CachedPod>> {
        let m = owner.meta();
        self.pods.owned_or_orphaned(
            m.namespace.as_deref().unwrap_or(""),
            m.uid.as_deref().unwrap_or(""),
        )
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
        let active: Vec<Arc<CachedPod>> = self
            .owned_or_orphaned(&owner)
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
        owner: &K,
        selector: &Selector,
        pods: Vec<Arc<CachedPod>>,
    ) -> Result<Vec<Arc<CachedPod>>, Failed> {
        ControllerRefManager::new(&self.client, owner)
            .claim_by_selector(pods, selector)
            .await
            .map_err(Failed)
    }

    /// Creates or deletes pods towards `spec.replicas`, at most
    /// `burst_replicas` per call.
    async fn manage_replicas(
        &self,
        owner: &Arc<K>,
        key: &str,
        pods: &[Arc<CachedPod>],
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

    /// Pods of the owners that share our owner's controller (a
    /// Deployment's ReplicaSets), and orphans: they rank co-location on
    /// scale-down (upstream's `getIndirectlyRelatedPods`).
    fn indirectly_related_pods(&self, owner: &K) -> Vec<Arc<CachedPod>> {
        let Some(ctrl) = controller_of(owner.meta()) else {
            return Vec::new();
        };
        let ns = owner.meta().namespace.clone();
        let siblings = self.owners.state_filter(|o| {
            o.meta().namespace == ns && controller_of(o.meta()).is_some_and(|r| r.uid == ctrl.uid)
        });
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for s in siblings {
            for p in self.owned_or_orphaned(&s) {
                if seen.insert(p.metadata.uid.clone()) {
                    out.push(p);
                }
            }
        }
        out
    }

    async fn create_pod(&self, owner: &K) -> Result<(), Failed> {
        let template = owner.template().cloned().unwrap_or_default();
        let pod = pod_from_template(template, owner, None);
        self.pod_control()
            .create_pod(owner, &pod)
            .await
            .map_err(Failed)
    }

    async fn delete_pod(&self, owner: &K, key: &str, pod: &CachedPod) -> Result<(), Failed> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let name = pod.metadata.name.as_deref().unwrap_or("");
        match self.pod_control().delete_pod(owner, ns, name).await {
            Ok(true) => Ok(()),
            failed => {
                // It will not be observed going away through us.
                self.expectations
                    .deletion_observed(key, &key_of(&pod.metadata));
                failed.map(|_| ()).map_err(Failed)
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
