//! One sync of a Deployment key (upstream's `syncDeployment`,
//! `getReplicaSetsForDeployment`, `getNewReplicaSet`, status writes).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use serde_json::json;
use skiff_api::selector::labels::{Selector, from_label_selector};

use super::DeploymentController;
use super::status::{
    FOUND_NEW_RS_REASON, NEW_RS_REASON, PAUSED_REASON, PROGRESSING, RESUMED_REASON,
    TIMED_OUT_REASON, calculate_status, get_condition, new_condition, progress_deadline,
    set_condition,
};
use super::util::{
    POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION, compute_hash, equal_ignore_hash,
    new_rs_new_replicas, revision, set_new_replica_set_annotations, sort_by_creation,
};
use crate::apierrors::{api_message, is_already_exists};
use crate::controller::{Action, Reconciler, SyncError};
use crate::controllerref::{ControllerRefManager, controller_ref};
use crate::podcontrol::record_event;
use crate::podutil::controller_of;

/// A sync error carrying upstream's message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Failed(pub String);

impl From<kube::Error> for Failed {
    fn from(e: kube::Error) -> Self {
        Failed(api_message(&e))
    }
}

/// The Deployment's selector, or why it cannot be used.
pub(crate) fn selector_of(d: &Deployment) -> Result<Selector, String> {
    from_label_selector(d.spec.as_ref().map(|s| &s.selector)).map_err(|e| e.0)
}

impl DeploymentController {
    pub(crate) fn event(&self, d: &Deployment, normal: bool, reason: &str, note: String) {
        let action = if reason == "ScalingReplicaSet" {
            "Scale"
        } else {
            "Sync"
        };
        record_event(self.events.as_ref(), d, normal, reason, action, note);
    }

    pub(crate) fn rs_api(&self, d: &Deployment) -> Api<ReplicaSet> {
        Api::namespaced(
            self.client.clone(),
            d.metadata.namespace.as_deref().unwrap_or(""),
        )
    }

    fn d_api(&self, d: &Deployment) -> Api<Deployment> {
        Api::namespaced(
            self.client.clone(),
            d.metadata.namespace.as_deref().unwrap_or(""),
        )
    }

    /// The controller's sync of `key`.
    pub(crate) async fn sync_key(&self, key: &str) -> Result<Action, SyncError> {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        let Some(cached) = self.deployments.get(&ObjectRef::new(name).within(ns)) else {
            tracing::debug!(key, "deployment has been deleted");
            return Ok(Action::Await);
        };
        let mut d = cached.as_ref().clone();
        let selector = match selector_of(&d) {
            Ok(s) => s,
            Err(err) => {
                tracing::warn!(key, error = %err, "invalid deployment selector");
                return Ok(Action::Await);
            }
        };
        if selector.is_empty() {
            self.event(
                &d,
                false,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.".into(),
            );
            let mut status = d.status.clone().unwrap_or_default();
            if status.observed_generation < d.metadata.generation {
                status.observed_generation = d.metadata.generation;
                self.write_status(&mut d, status).await?;
            }
            return Ok(Action::Await);
        }
        let rs_list = self.claim_replica_sets(&d, &selector).await?;
        if d.metadata.deletion_timestamp.is_some() {
            return Ok(self.sync_status_only(&mut d, rs_list).await?);
        }
        self.check_paused_conditions(&mut d).await?;
        let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        if paused || self.is_scaling_event(&mut d, &rs_list).await? {
            return Ok(self.sync_scale(&mut d, rs_list).await?);
        }
        let action = if super::util::is_recreate(&d) {
            self.rollout_recreate(&mut d, rs_list).await?
        } else {
            self.rollout_rolling(&mut d, rs_list).await?
        };
        Ok(action)
    }

    /// Adopts matching orphan ReplicaSets and releases owned ones that
    /// stopped matching; the ReplicaSets that are ours afterwards
    /// (upstream's `getReplicaSetsForDeployment`).
    async fn claim_replica_sets(
        &self,
        d: &Deployment,
        selector: &Selector,
    ) -> Result<Vec<ReplicaSet>, Failed> {
        let ns = d.metadata.namespace.as_deref().unwrap_or("");
        let uid = d.metadata.uid.as_deref().unwrap_or("");
        let candidates = self.rs_by_controller.owned_or_orphaned(ns, uid);
        let claimed = ControllerRefManager::new(&self.client, d)
            .claim_by_selector(candidates, selector)
            .await
            .map_err(Failed)?;
        Ok(claimed.into_iter().map(Arc::unwrap_or_clone).collect())
    }

    /// Writes `status` unless it is what the Deployment already has.
    pub(crate) async fn write_status(
        &self,
        d: &mut Deployment,
        status: DeploymentStatus,
    ) -> Result<(), Failed> {
        if d.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let mut obj = d.clone();
        obj.status = Some(status);
        let name = d.metadata.name.clone().unwrap_or_default();
        *d = self
            .d_api(d)
            .replace_status(&name, &PostParams::default(), &obj)
            .await?;
        Ok(())
    }

    /// Sets the Deployment's revision annotation (upstream's
    /// `SetDeploymentRevision`).
    async fn set_deployment_revision(
        &self,
        d: &mut Deployment,
        rev: Option<String>,
    ) -> Result<(), Failed> {
        let Some(rev) = rev else { return Ok(()) };
        let cur = d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION_ANNOTATION));
        if cur == Some(&rev) {
            return Ok(());
        }
        let name = d.metadata.name.clone().unwrap_or_default();
        let patch = json!({"metadata": {"annotations": {REVISION_ANNOTATION: rev}}});
        *d = self
            .d_api(d)
            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        Ok(())
    }

    /// The new ReplicaSet (its template equals the Deployment's, ignoring
    /// the hash; the oldest if several) and the others.
    pub(crate) async fn get_all_replica_sets(
        &self,
        d: &mut Deployment,
        rs_list: &[ReplicaSet],
        create: bool,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), Failed> {
        let mut sorted = rs_list.to_vec();
        sort_by_creation(&mut sorted);
        let template = d
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let new_idx = sorted.iter().position(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| equal_ignore_hash(t, &template))
        });
        let existing = new_idx.map(|i| sorted.remove(i));
        let new_rs = self.get_new_rs(d, existing, &sorted, create).await?;
        Ok((new_rs, sorted))
    }

    async fn get_new_rs(
        &self,
        d: &mut Deployment,
        existing: Option<ReplicaSet>,
        old: &[ReplicaSet],
        create: bool,
    ) -> Result<Option<ReplicaSet>, Failed> {
        let new_revision = old.iter().map(revision).max().unwrap_or(0) + 1;
        let min_ready = d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        if let Some(rs) = existing {
            let mut copy = rs.clone();
            let changed = set_new_replica_set_annotations(d, &mut copy, new_revision, true);
            let spec = copy.spec.get_or_insert_with(ReplicaSetSpec::default);
            let mrs_changed = spec.min_ready_seconds.unwrap_or(0) != min_ready.unwrap_or(0);
            if changed || mrs_changed {
                spec.min_ready_seconds = min_ready;
                let name = copy.metadata.name.clone().unwrap_or_default();
                copy = self
                    .rs_api(d)
                    .replace(&name, &PostParams::default(), &copy)
                    .await?;
            }
            let rev = copy
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION_ANNOTATION).cloned());
            self.set_deployment_revision(d, rev).await?;
            let mut status = d.status.clone().unwrap_or_default();
            if progress_deadline(d).is_some() && get_condition(&status, PROGRESSING).is_none() {
                let msg = format!(
                    "Found new replica set {:?}",
                    copy.metadata.name.as_deref().unwrap_or("")
                );
                let c = new_condition(
                    PROGRESSING,
                    "True",
                    FOUND_NEW_RS_REASON,
                    msg,
                    Timestamp::now(),
                );
                set_condition(&mut status, c);
                self.write_status(d, status).await?;
            }
            return Ok(Some(copy));
        }
        if !create {
            return Ok(None);
        }
        self.create_new_rs(d, old, new_revision).await.map(Some)
    }

    async fn create_new_rs(
        &self,
        d: &mut Deployment,
        old: &[ReplicaSet],
        new_revision: i64,
    ) -> Result<ReplicaSet, Failed> {
        let spec = d.spec.clone().unwrap_or_default();
        let collision = d.status.as_ref().and_then(|s| s.collision_count);
        let mut template = spec.template.clone();
        let hash = compute_hash(&template, collision);
        let labels = {
            let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
            let l = meta.labels.get_or_insert_with(BTreeMap::new);
            l.insert(POD_TEMPLATE_HASH_LABEL.to_owned(), hash.clone());
            l.clone()
        };
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH_LABEL.to_owned(), hash.clone());
        let dname = d.metadata.name.clone().unwrap_or_default();
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("{dname}-{hash}")),
                namespace: d.metadata.namespace.clone(),
                owner_references: Some(vec![controller_ref(d)]),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        set_new_replica_set_annotations(d, &mut rs, new_revision, false);
        let count = new_rs_new_replicas(d, old, &rs);
        if let Some(s) = rs.spec.as_mut() {
            s.replicas = Some(count);
        }
        let rs_name = rs.metadata.name.clone().unwrap_or_default();
        let created = match self.rs_api(d).create(&PostParams::default(), &rs).await {
            Ok(c) => c,
            Err(e) if is_already_exists(&e) => {
                return self.on_already_exists(d, &rs_name, collision).await;
            }
            Err(e) => {
                let msg = format!(
                    "Failed to create new replica set {rs_name:?}: {}",
                    api_message(&e)
                );
                if progress_deadline(d).is_some() {
                    let mut status = d.status.clone().unwrap_or_default();
                    let c = new_condition(
                        PROGRESSING,
                        "False",
                        "ReplicaSetCreateError",
                        msg.clone(),
                        Timestamp::now(),
                    );
                    set_condition(&mut status, c);
                    self.write_status(d, status).await?;
                }
                self.event(d, false, "FailedCreate", msg);
                return Err(e.into());
            }
        };
        if count > 0 {
            self.event(
                d,
                true,
                "ScalingReplicaSet",
                format!("Scaled up replica set {rs_name} from 0 to {count}"),
            );
        }
        self.set_deployment_revision(d, Some(new_revision.to_string()))
            .await?;
        if progress_deadline(d).is_some() {
            let mut status = d.status.clone().unwrap_or_default();
            let c = new_condition(
                PROGRESSING,
                "True",
                NEW_RS_REASON,
                format!("Created new replica set {rs_name:?}"),
                Timestamp::now(),
            );
            set_condition(&mut status, c);
            self.write_status(d, status).await?;
        }
        Ok(created)
    }

    /// A ReplicaSet of that name exists: ours with our template (a stale
    /// cache) is the new one; anything else is a hash collision, resolved
    /// by bumping collisionCount.
    async fn on_already_exists(
        &self,
        d: &mut Deployment,
        rs_name: &str,
        collision: Option<i32>,
    ) -> Result<ReplicaSet, Failed> {
        let rs = self.rs_api(d).get(rs_name).await?;
        let ours =
            controller_of(&rs.metadata).is_some_and(|r| Some(&r.uid) == d.metadata.uid.as_ref());
        let template = d
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let same = rs
            .spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .is_some_and(|t| equal_ignore_hash(t, &template));
        if ours && same {
            return Ok(rs);
        }
        let old = collision.unwrap_or(0);
        let mut status = d.status.clone().unwrap_or_default();
        status.collision_count = Some(old.saturating_add(1));
        self.write_status(d, status).await?;
        Err(Failed(format!(
            "found a hash collision for deployment {:?} - bumping collisionCount ({old}->{}) to resolve it",
            d.metadata.name.as_deref().unwrap_or(""),
            old.saturating_add(1)
        )))
    }

    /// Sets Progressing to DeploymentPaused / DeploymentResumed when the
    /// paused flag changes (never over a timed-out rollout).
    async fn check_paused_conditions(&self, d: &mut Deployment) -> Result<(), Failed> {
        if progress_deadline(d).is_none() {
            return Ok(());
        }
        let mut status = d.status.clone().unwrap_or_default();
        let reason = get_condition(&status, PROGRESSING).and_then(|c| c.reason.clone());
        if reason.as_deref() == Some(TIMED_OUT_REASON) {
            return Ok(());
        }
        let paused_cond = reason.as_deref() == Some(PAUSED_REASON);
        let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        let c = if paused && !paused_cond {
            new_condition(
                PROGRESSING,
                "Unknown",
                PAUSED_REASON,
                "Deployment is paused".into(),
                Timestamp::now(),
            )
        } else if !paused && paused_cond {
            new_condition(
                PROGRESSING,
                "Unknown",
                RESUMED_REASON,
                "Deployment is resumed".into(),
                Timestamp::now(),
            )
        } else {
            return Ok(());
        };
        set_condition(&mut status, c);
        self.write_status(d, status).await
    }

    /// A ReplicaSet's desired-replicas annotation disagrees with the
    /// Deployment's replicas: the Deployment was scaled.
    async fn is_scaling_event(
        &self,
        d: &mut Deployment,
        rs_list: &[ReplicaSet],
    ) -> Result<bool, Failed> {
        let (new_rs, old) = self.get_all_replica_sets(d, rs_list, false).await?;
        let want = super::util::replicas(d);
        Ok(new_rs
            .iter()
            .chain(old.iter())
            .filter(|rs| super::util::rs_replicas(rs) > 0)
            .any(|rs| super::util::desired_replicas_annotation(rs).is_some_and(|v| v != want)))
    }

    /// Status only, for a Deployment being deleted.
    async fn sync_status_only(
        &self,
        d: &mut Deployment,
        rs_list: Vec<ReplicaSet>,
    ) -> Result<Action, Failed> {
        let (new_rs, old) = self.get_all_replica_sets(d, &rs_list, false).await?;
        let all: Vec<&ReplicaSet> = old.iter().chain(new_rs.iter()).collect();
        let status = calculate_status(d, &all, new_rs.as_ref(), Timestamp::now());
        self.write_status(d, status).await?;
        Ok(Action::Await)
    }
}

impl Reconciler for DeploymentController {
    fn name(&self) -> &str {
        "deployment"
    }

    fn sync(&self, key: &str) -> impl Future<Output = Result<Action, SyncError>> + Send {
        self.sync_key(key)
    }
}
