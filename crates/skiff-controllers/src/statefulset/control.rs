//! One pass of the StatefulSet update algorithm (upstream's
//! `defaultStatefulSetControl.updateStatefulSet`): the pure decisions
//! (which pod sits at which ordinal, what to delete on scale-down and on a
//! rolling update, the status counts) and the pass that acts on them.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::jiff::Timestamp;

use super::utils::{
    self, is_created, is_failed, is_healthy, is_running_and_available, is_running_and_ready,
    is_succeeded, is_terminating, ordinal_of, pod_revision,
};
use super::{Failed, StatefulSetController};

use crate::cached_pod::CachedPod;

/// Pods by ordinal slot `[start, start+replicas)`, and the condemned ones
/// outside it, highest ordinal first.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    pub replicas: Vec<Option<Arc<CachedPod>>>,
    pub condemned: Vec<Arc<CachedPod>>,
}

/// Places each pod at its ordinal's slot or among the condemned; pods
/// without an ordinal are ignored.
pub(crate) fn split_replicas(set: &StatefulSet, pods: &[Arc<CachedPod>]) -> Slots {
    let start = utils::start_ordinal(set);
    let n = usize::try_from(utils::replicas(set)).unwrap_or(0);
    let mut slots = Slots {
        replicas: vec![None; n],
        condemned: Vec::new(),
    };
    for pod in pods {
        let ord = ordinal_of(pod);
        if ord < 0 {
            continue;
        }
        if utils::in_ordinal_range(set, ord) {
            if let Some(slot) = usize::try_from(ord - start)
                .ok()
                .and_then(|i| slots.replicas.get_mut(i))
            {
                *slot = Some(pod.clone());
            }
        } else {
            slots.condemned.push(pod.clone());
        }
    }
    slots
        .condemned
        .sort_by_key(|p| std::cmp::Reverse(ordinal_of(p)));
    slots
}

/// The counting part of the status (upstream's `computeReplicaStatus`).
pub(crate) fn compute_replica_status(
    pods: &[Arc<CachedPod>],
    min_ready_seconds: i32,
    current_revision: &str,
    update_revision: &str,
    now: Timestamp,
) -> StatefulSetStatus {
    let mut s = StatefulSetStatus {
        ready_replicas: Some(0),
        available_replicas: Some(0),
        current_replicas: Some(0),
        updated_replicas: Some(0),
        ..StatefulSetStatus::default()
    };
    let inc = |v: &mut Option<i32>| *v = Some(v.unwrap_or(0) + 1);
    for pod in pods {
        if is_created(pod) {
            s.replicas += 1;
        }
        if is_running_and_ready(pod) {
            inc(&mut s.ready_replicas);
            if is_running_and_available(pod, min_ready_seconds, now) {
                inc(&mut s.available_replicas);
            }
        }
        if is_created(pod) && !is_terminating(pod) {
            let rev = pod_revision(pod);
            if rev == current_revision {
                inc(&mut s.current_replicas);
            }
            if rev == update_revision {
                inc(&mut s.updated_replicas);
            }
        }
    }
    s
}

/// What a condemned pod calls for (upstream's `processCondemned`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CondemnedStep {
    /// Delete it.
    Delete,
    /// Leave it (already terminating, Parallel).
    Skip,
    /// Leave it and stop the pass (OrderedReady waits).
    Block,
}

/// Decides for a condemned pod; `first_unhealthy` names the first unhealthy
/// pod of the set, the only unhealthy one OrderedReady may remove.
pub(crate) fn condemned_step(
    pod: &CachedPod,
    monotonic: bool,
    first_unhealthy: Option<&str>,
    min_ready_seconds: i32,
    now: Timestamp,
) -> CondemnedStep {
    if is_terminating(pod) {
        return if monotonic {
            CondemnedStep::Block
        } else {
            CondemnedStep::Skip
        };
    }
    let is_first_unhealthy = pod.metadata.name.as_deref() == first_unhealthy;
    if monotonic
        && !is_first_unhealthy
        && (!is_running_and_ready(pod) || !is_running_and_available(pod, min_ready_seconds, now))
    {
        return CondemnedStep::Block;
    }
    CondemnedStep::Delete
}

/// What a rolling update does next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum UpdateStep {
    /// Delete this pod so it is recreated at the update revision.
    Delete(String),
    /// An updated pod is not healthy yet.
    Wait,
    /// Nothing to update at or above the partition.
    Done,
}

/// The rolling update's next step: from the highest slot down to the
/// partition, delete the first pod not at `update_revision`, waiting on an
/// unhealthy one (upstream's update loop at the end of `updateStatefulSet`).
pub(crate) fn rolling_update_step(
    replicas: &[Option<Arc<CachedPod>>],
    partition: i32,
    update_revision: &str,
) -> UpdateStep {
    let min = usize::try_from(partition).unwrap_or(0);
    for target in (min..replicas.len()).rev() {
        let Some(Some(pod)) = replicas.get(target) else {
            // Not created yet this pass: the next pass sees it.
            return UpdateStep::Wait;
        };
        if pod_revision(pod) != update_revision && !is_terminating(pod) {
            return UpdateStep::Delete(pod.metadata.name.clone().unwrap_or_default());
        }
        if !is_healthy(pod) {
            return UpdateStep::Wait;
        }
    }
    UpdateStep::Done
}

/// The first pod, replicas in order then condemned, that is not running,
/// ready and available (upstream's `firstUnhealthyPod`).
pub(crate) fn first_unhealthy(
    slots: &Slots,
    min_ready_seconds: i32,
    now: Timestamp,
) -> Option<String> {
    let unhealthy = |p: &CachedPod| {
        !is_running_and_ready(p)
            || !is_running_and_available(p, min_ready_seconds, now)
            || is_terminating(p)
    };
    slots
        .replicas
        .iter()
        .flatten()
        .chain(slots.condemned.iter())
        .find(|p| unhealthy(p))
        .and_then(|p| p.metadata.name.clone())
}

/// The revisions a pass works between.
pub(crate) struct Revisions<'a> {
    pub current_set: &'a StatefulSet,
    pub update_set: &'a StatefulSet,
    pub current: &'a str,
    pub update: &'a str,
}

impl StatefulSetController {
    /// One pass over the set's pods: recreate failed pods, create missing
    /// ones (with their claims), fix identity and storage, remove condemned
    /// pods, then roll one pod forward. Returns the counts it leaves behind.
    pub(crate) async fn update_stateful_set(
        &self,
        set: &StatefulSet,
        revs: &Revisions<'_>,
        pods: &[Arc<CachedPod>],
    ) -> Result<StatefulSetStatus, Failed> {
        let now = Timestamp::now();
        let mrs = utils::min_ready_seconds(set);
        let monotonic = utils::is_monotonic(set);
        let mut status = compute_replica_status(pods, mrs, revs.current, revs.update, now);
        status.observed_generation = set.metadata.generation;
        status.current_revision = Some(revs.current.to_owned());
        status.update_revision = Some(revs.update.to_owned());
        let mut slots = split_replicas(set, pods);
        let unhealthy = first_unhealthy(&slots, mrs, now);
        if set.metadata.deletion_timestamp.is_some() {
            return Ok(status);
        }
        let start = utils::start_ordinal(set);
        let inc = |v: &mut Option<i32>| *v = Some(v.unwrap_or(0) + 1);
        let mut errors = Vec::new();
        for i in 0..slots.replicas.len() {
            let ordinal = start + i32::try_from(i).unwrap_or(0);
            let mut pod = slots.replicas[i].clone();
            if let Some(p) = pod.as_ref().filter(|p| is_failed(p) || is_succeeded(p)) {
                let name = p.metadata.name.clone().unwrap_or_default();
                if !is_terminating(p) {
                    let (normal, reason, what) = if is_failed(p) {
                        (false, "RecreatingFailedPod", "failed")
                    } else {
                        (true, "RecreatingTerminatedPod", "terminated")
                    };
                    self.event(
                        set,
                        normal,
                        reason,
                        "Recreate",
                        format!(
                            "StatefulSet {}/{} is recreating {what} Pod {name}",
                            set.metadata.namespace.as_deref().unwrap_or(""),
                            set.metadata.name.as_deref().unwrap_or("")
                        ),
                    );
                    if let Err(e) = self.delete_stateful_pod(set, p).await {
                        errors.push(e.0);
                        if monotonic {
                            break;
                        }
                        continue;
                    }
                    status.replicas -= 1;
                    if pod_revision(p) == revs.current {
                        status.current_replicas = status.current_replicas.map(|c| c - 1);
                    }
                    if pod_revision(p) == revs.update {
                        status.updated_replicas = status.updated_replicas.map(|c| c - 1);
                    }
                }
                // Its replacement comes once the old pod is gone from the cache.
                if monotonic {
                    return Ok(status);
                }
                continue;
            }
            let Some(existing) = pod.take() else {
                let new_pod = utils::new_versioned_stateful_set_pod(
                    revs.current_set,
                    revs.update_set,
                    revs.current,
                    revs.update,
                    ordinal,
                );
                match self.create_stateful_pod(set, &new_pod).await {
                    Ok(()) => {
                        let new_pod = CachedPod::from(new_pod);
                        status.replicas += 1;
                        let rev = pod_revision(&new_pod);
                        if rev == revs.current {
                            inc(&mut status.current_replicas);
                        }
                        if rev == revs.update {
                            inc(&mut status.updated_replicas);
                        }
                        slots.replicas[i] = Some(Arc::new(new_pod));
                    }
                    Err(e) => errors.push(e.0),
                }
                if monotonic {
                    return finish(status, errors);
                }
                continue;
            };
            if utils::phase_is_pending(&existing)
                && let Err(e) = self.create_persistent_volume_claims(set, &existing).await
            {
                errors.push(e.0);
            }
            if monotonic
                && (is_terminating(&existing)
                    || !is_running_and_ready(&existing)
                    || !is_running_and_available(&existing, mrs, now))
            {
                return finish(status, errors);
            }
            if let Err(e) = self.fix_pod(revs.update_set, &existing).await {
                errors.push(e.0);
                if monotonic {
                    return finish(status, errors);
                }
            }
        }
        if !errors.is_empty() {
            return finish(status, errors);
        }
        // Claims of condemned pods get their scale-down owners first.
        for pod in &slots.condemned {
            if let Err(e) = self.fix_claim_owners(revs.update_set, pod).await {
                return finish(status, vec![e.0]);
            }
        }
        for pod in &slots.condemned {
            match condemned_step(pod, monotonic, unhealthy.as_deref(), mrs, now) {
                CondemnedStep::Block => return Ok(status),
                CondemnedStep::Skip => {}
                CondemnedStep::Delete => {
                    if let Err(e) = self.delete_stateful_pod(set, pod).await {
                        errors.push(e.0);
                    }
                    if monotonic {
                        return finish(status, errors);
                    }
                }
            }
        }
        if !errors.is_empty() || utils::is_on_delete(set) {
            return finish(status, errors);
        }
        let partition = utils::partition(set).unwrap_or(0);
        if let UpdateStep::Delete(name) =
            rolling_update_step(&slots.replicas, partition, revs.update)
            && let Some(pod) = slots
                .replicas
                .iter()
                .flatten()
                .find(|p| p.metadata.name.as_deref() == Some(name.as_str()))
        {
            self.delete_stateful_pod(set, pod).await?;
            if pod_revision(pod) == revs.current {
                status.current_replicas = status.current_replicas.map(|c| c - 1);
            }
        }
        Ok(status)
    }
}

fn finish(status: StatefulSetStatus, mut errors: Vec<String>) -> Result<StatefulSetStatus, Failed> {
    match errors.len() {
        0 => Ok(status),
        1 => Err(Failed(errors.remove(0))),
        _ => Err(Failed(format!("[{}]", errors.join(", ")))),
    }
}

/// Marks the rollout complete once every replica is updated and ready
/// (upstream's `completeRollingUpdate`).
pub(crate) fn complete_rolling_update(set: &StatefulSet, status: &mut StatefulSetStatus) {
    let want = utils::replicas(set);
    if !utils::is_on_delete(set)
        && status.updated_replicas == Some(want)
        && status.ready_replicas == Some(want)
        && status.replicas == want
    {
        status.current_replicas = status.updated_replicas;
        status.current_revision = status.update_revision.clone();
    }
}
