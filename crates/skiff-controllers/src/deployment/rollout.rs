//! Rollout steps (upstream's `rolling.go`, `recreate.go`, `sync.go`
//! scaling, history clean-up and `syncRolloutStatus`).

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams};

use super::DeploymentController;
use super::status::{
    REPLICA_FAILURE, calculate_status, deployment_complete, remove_condition, set_condition,
    stuck_requeue_after, update_progressing,
};
use super::sync::Failed;
use super::util::{
    cleanup_unhealthy, desired_replicas_annotation, is_recreate, max_scaled_down, max_surge,
    new_rs_new_replicas, proportion, replicas, revision, rs_available, rs_replicas,
    scale_down_old_for_rolling, set_replicas_annotations, sort_by_creation,
};
use crate::controller::Action;
use crate::podutil::{controller_of, phase};

fn active(rss: &[ReplicaSet]) -> Vec<ReplicaSet> {
    rss.iter().filter(|r| rs_replicas(r) > 0).cloned().collect()
}

fn all_of<'a>(old: &'a [ReplicaSet], new_rs: Option<&'a ReplicaSet>) -> Vec<&'a ReplicaSet> {
    old.iter().chain(new_rs).collect()
}

fn replace_in(list: &mut [ReplicaSet], rs: ReplicaSet) {
    if let Some(slot) = list.iter_mut().find(|r| r.metadata.uid == rs.metadata.uid) {
        *slot = rs;
    }
}

impl DeploymentController {
    /// Scales `rs` to `scale` and refreshes its replica annotations; the
    /// ReplicaSet afterwards and whether its size changed.
    async fn scale_rs(
        &self,
        d: &Deployment,
        rs: &ReplicaSet,
        scale: i32,
    ) -> Result<(bool, ReplicaSet), Failed> {
        let cur = rs_replicas(rs);
        let size_changed = cur != scale;
        let mut copy = rs.clone();
        let r = replicas(d);
        let annotations_changed = set_replicas_annotations(&mut copy, r, r + max_surge(d));
        if !size_changed && !annotations_changed {
            return Ok((false, rs.clone()));
        }
        if let Some(s) = copy.spec.as_mut() {
            s.replicas = Some(scale);
        }
        let name = copy.metadata.name.clone().unwrap_or_default();
        let updated = self
            .rs_api(d)
            .replace(&name, &PostParams::default(), &copy)
            .await?;
        if size_changed {
            let op = if scale > cur { "up" } else { "down" };
            self.event(
                d,
                true,
                "ScalingReplicaSet",
                format!("Scaled {op} replica set {name} from {cur} to {scale}"),
            );
        }
        Ok((size_changed, updated))
    }

    /// Like [`Self::scale_rs`] but a no-op when the size is already right
    /// (upstream's `scaleReplicaSetAndRecordEvent`).
    async fn scale_rs_if_needed(
        &self,
        d: &Deployment,
        rs: &ReplicaSet,
        scale: i32,
    ) -> Result<(bool, ReplicaSet), Failed> {
        if rs_replicas(rs) == scale {
            return Ok((false, rs.clone()));
        }
        self.scale_rs(d, rs, scale).await
    }

    /// RollingUpdate: grow the new ReplicaSet within maxSurge, shrink old
    /// ones within maxUnavailable.
    pub(crate) async fn rollout_rolling(
        &self,
        d: &mut Deployment,
        rs_list: Vec<ReplicaSet>,
    ) -> Result<Action, Failed> {
        let (new_rs, mut old) = self.get_all_replica_sets(d, &rs_list, true).await?;
        if let Some(n) = &new_rs {
            let want = replicas(d);
            let cur = rs_replicas(n);
            let target = if cur > want {
                want
            } else {
                let all: Vec<ReplicaSet> = old.iter().chain(Some(n)).cloned().collect();
                new_rs_new_replicas(d, &all, n)
            };
            let (scaled, updated) = self.scale_rs_if_needed(d, n, target).await?;
            if scaled {
                return self.sync_rollout_status(d, &old, Some(&updated)).await;
            }
        }
        if self
            .reconcile_old_replica_sets(d, &mut old, new_rs.as_ref())
            .await?
        {
            return self.sync_rollout_status(d, &old, new_rs.as_ref()).await;
        }
        if deployment_complete(d, &d.status.clone().unwrap_or_default()) {
            self.cleanup_deployment(d, &old).await?;
        }
        self.sync_rollout_status(d, &old, new_rs.as_ref()).await
    }

    /// Scales old ReplicaSets down: unhealthy pods first, then available
    /// ones while the minimum stays available. Whether any was scaled.
    async fn reconcile_old_replica_sets(
        &self,
        d: &Deployment,
        old: &mut [ReplicaSet],
        new_rs: Option<&ReplicaSet>,
    ) -> Result<bool, Failed> {
        let mut olds = active(old);
        if olds.iter().map(rs_replicas).sum::<i32>() == 0 {
            return Ok(false);
        }
        let all: Vec<ReplicaSet> = old.iter().chain(new_rs).cloned().collect();
        let max = max_scaled_down(d, &all, new_rs);
        if max <= 0 {
            return Ok(false);
        }
        sort_by_creation(&mut olds);
        let mut scaled = 0;
        for (i, size) in cleanup_unhealthy(&olds, max) {
            let (_, updated) = self.scale_rs_if_needed(d, &olds[i], size).await?;
            scaled += rs_replicas(&olds[i]) - size;
            olds[i] = updated;
        }
        let all: Vec<ReplicaSet> = olds.iter().chain(new_rs).cloned().collect();
        for (i, size) in scale_down_old_for_rolling(d, &all, &olds) {
            let (_, updated) = self.scale_rs_if_needed(d, &olds[i], size).await?;
            scaled += rs_replicas(&olds[i]) - size;
            olds[i] = updated;
        }
        for rs in olds {
            replace_in(old, rs);
        }
        Ok(scaled > 0)
    }

    /// Recreate: every old pod gone before the new ReplicaSet scales up.
    pub(crate) async fn rollout_recreate(
        &self,
        d: &mut Deployment,
        rs_list: Vec<ReplicaSet>,
    ) -> Result<Action, Failed> {
        let (mut new_rs, mut old) = self.get_all_replica_sets(d, &rs_list, false).await?;
        let mut scaled_down = false;
        for rs in active(&old) {
            let (scaled, updated) = self.scale_rs_if_needed(d, &rs, 0).await?;
            scaled_down |= scaled;
            replace_in(&mut old, updated);
        }
        if scaled_down || self.old_pods_running(d, new_rs.as_ref(), &old) {
            return self.sync_rollout_status(d, &old, new_rs.as_ref()).await;
        }
        if new_rs.is_none() {
            (new_rs, old) = self.get_all_replica_sets(d, &rs_list, true).await?;
        }
        if let Some(n) = new_rs.take() {
            let (_, updated) = self.scale_rs_if_needed(d, &n, replicas(d)).await?;
            new_rs = Some(updated);
        }
        if deployment_complete(d, &d.status.clone().unwrap_or_default()) {
            self.cleanup_deployment(d, &old).await?;
        }
        self.sync_rollout_status(d, &old, new_rs.as_ref()).await
    }

    /// Old ReplicaSets still report pods, or pods they own are not yet in
    /// a terminal phase or gone.
    fn old_pods_running(
        &self,
        d: &Deployment,
        new_rs: Option<&ReplicaSet>,
        old: &[ReplicaSet],
    ) -> bool {
        let reported: i32 = old
            .iter()
            .map(|r| r.status.as_ref().map_or(0, |s| s.replicas))
            .sum();
        if reported > 0 {
            return true;
        }
        let old_uids: Vec<&str> = old
            .iter()
            .filter(|r| r.metadata.uid != new_rs.and_then(|n| n.metadata.uid.clone()))
            .filter_map(|r| r.metadata.uid.as_deref())
            .collect();
        let ns = d.metadata.namespace.as_deref().unwrap_or("");
        self.pods.list(ns).iter().any(|p| {
            controller_of(&p.metadata).is_some_and(|r| old_uids.contains(&r.uid.as_str()))
                && !matches!(phase(p), "Failed" | "Succeeded")
        })
    }

    /// Scaling without a rollout (paused, or `spec.replicas` changed):
    /// upstream's `sync`.
    pub(crate) async fn sync_scale(
        &self,
        d: &mut Deployment,
        rs_list: Vec<ReplicaSet>,
    ) -> Result<Action, Failed> {
        let (new_rs, old) = self.get_all_replica_sets(d, &rs_list, false).await?;
        let (new_rs, old) = self.scale(d, new_rs, old).await?;
        let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        if paused {
            self.cleanup_deployment(d, &old).await?;
        }
        let all = all_of(&old, new_rs.as_ref());
        let status = calculate_status(d, &all, new_rs.as_ref(), Timestamp::now());
        self.write_status(d, status).await?;
        Ok(Action::Await)
    }

    /// Upstream's `scale`: the only active ReplicaSet takes the new size;
    /// a saturated new one lets old ones go; otherwise sizes change in
    /// proportion (RollingUpdate only).
    async fn scale(
        &self,
        d: &Deployment,
        mut new_rs: Option<ReplicaSet>,
        mut old: Vec<ReplicaSet>,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), Failed> {
        let want = replicas(d);
        let mut by_age = old.clone();
        sort_by_creation(&mut by_age);
        by_age.reverse();
        let actives: Vec<ReplicaSet> = new_rs
            .iter()
            .chain(by_age.iter())
            .filter(|r| rs_replicas(r) > 0)
            .cloned()
            .collect();
        let target = match actives.len() {
            0 => new_rs.clone().or_else(|| by_age.first().cloned()),
            1 => actives.first().cloned(),
            _ => None,
        };
        if let Some(t) = target {
            if rs_replicas(&t) != want {
                let (_, updated) = self.scale_rs(d, &t, want).await?;
                if new_rs
                    .as_ref()
                    .is_some_and(|n| n.metadata.uid == updated.metadata.uid)
                {
                    new_rs = Some(updated);
                } else {
                    replace_in(&mut old, updated);
                }
            }
            return Ok((new_rs, old));
        }
        let saturated = new_rs.as_ref().is_some_and(|n| {
            rs_replicas(n) == want
                && desired_replicas_annotation(n) == Some(want)
                && rs_available(n) == want
        });
        if saturated {
            for rs in active(&old) {
                let (_, updated) = self.scale_rs_if_needed(d, &rs, 0).await?;
                replace_in(&mut old, updated);
            }
            return Ok((new_rs, old));
        }
        if is_recreate(d) {
            return Ok((new_rs, old));
        }
        let mut all = active(&old);
        all.extend(new_rs.iter().filter(|r| rs_replicas(r) > 0).cloned());
        let current: i32 = all.iter().map(rs_replicas).sum();
        let allowed = if want > 0 { want + max_surge(d) } else { 0 };
        let to_add = allowed - current;
        let created = |r: &ReplicaSet| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
        // Larger first; ties go to newer ones when growing, older when
        // shrinking.
        all.sort_by(|a, b| {
            rs_replicas(b).cmp(&rs_replicas(a)).then_with(|| {
                if to_add > 0 {
                    created(b).cmp(&created(a))
                } else {
                    created(a).cmp(&created(b))
                }
            })
        });
        let mut sizes: Vec<i32> = Vec::with_capacity(all.len());
        let mut added = 0;
        for rs in &all {
            let p = proportion(d, rs, to_add, added);
            added += p;
            sizes.push(rs_replicas(rs) + p);
        }
        if to_add != 0
            && let Some(first) = sizes.first_mut()
        {
            *first = (*first + to_add - added).max(0);
        }
        for (rs, size) in all.iter().zip(sizes) {
            let (_, updated) = self.scale_rs(d, rs, size).await?;
            if new_rs
                .as_ref()
                .is_some_and(|n| n.metadata.uid == updated.metadata.uid)
            {
                new_rs = Some(updated);
            } else {
                replace_in(&mut old, updated);
            }
        }
        Ok((new_rs, old))
    }

    /// Deletes the oldest fully scaled-down ReplicaSets beyond
    /// revisionHistoryLimit.
    async fn cleanup_deployment(&self, d: &Deployment, old: &[ReplicaSet]) -> Result<(), Failed> {
        let Some(limit) = d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return Ok(());
        };
        let mut cleanable: Vec<&ReplicaSet> = old
            .iter()
            .filter(|r| r.metadata.deletion_timestamp.is_none())
            .collect();
        let excess = cleanable
            .len()
            .saturating_sub(usize::try_from(limit).unwrap_or(0));
        if excess == 0 {
            return Ok(());
        }
        cleanable.sort_by_key(|r| {
            (
                revision(r),
                r.metadata.creation_timestamp.as_ref().map(|t| t.0),
            )
        });
        for rs in cleanable.into_iter().take(excess) {
            let st = rs.status.clone().unwrap_or_default();
            if st.replicas != 0
                || rs_replicas(rs) != 0
                || rs.metadata.generation > st.observed_generation
            {
                continue;
            }
            let name = rs.metadata.name.clone().unwrap_or_default();
            match self.rs_api(d).delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Writes the rollout's status with its Progressing condition; a
    /// rollout that may time out is looked at again at its deadline.
    pub(crate) async fn sync_rollout_status(
        &self,
        d: &mut Deployment,
        old: &[ReplicaSet],
        new_rs: Option<&ReplicaSet>,
    ) -> Result<Action, Failed> {
        let now = Timestamp::now();
        let all = all_of(old, new_rs);
        let mut status = calculate_status(d, &all, new_rs, now);
        update_progressing(d, &mut status, new_rs, now);
        // The new ReplicaSet's ReplicaFailure surfaces on the Deployment.
        let failure = new_rs
            .and_then(|n| n.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c.type_ == REPLICA_FAILURE && c.status == "True")
            });
        match failure {
            Some(f) => set_condition(
                &mut status,
                super::status::new_condition(
                    REPLICA_FAILURE,
                    "True",
                    f.reason.as_deref().unwrap_or(""),
                    f.message.clone().unwrap_or_default(),
                    now,
                ),
            ),
            None => remove_condition(&mut status, REPLICA_FAILURE),
        }
        if d.status.as_ref() == Some(&status) {
            return Ok(
                stuck_requeue_after(d, &status, now).map_or(Action::Await, Action::RequeueAfter)
            );
        }
        self.write_status(d, status).await?;
        Ok(Action::Await)
    }
}
