//! DaemonSet status (upstream's `updateDaemonSetStatus` and
//! `storeDaemonSetStatus`): per node, whether a pod should run there and
//! how its oldest pod is doing.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use skiff_api::selector::labels::Selector;

use super::DaemonSetsController;
use super::sync::{Failed, NodeToDaemonPods};
use super::util::{
    self, is_pod_updated, node_should_run_daemon_pod, pod_by_creation_timestamp_and_phase,
    template_generation,
};
use crate::apierrors::api_message;
use crate::podutil::{is_pod_available, is_pod_ready};

/// Status numbers of the DaemonSet (upstream's `updateDaemonSetStatus`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StatusNumbers {
    pub desired: i32,
    pub current: i32,
    pub misscheduled: i32,
    pub ready: i32,
    pub updated: i32,
    pub available: i32,
    pub unavailable: i32,
}

pub(crate) fn calculate_status(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    node_to_pods: &NodeToDaemonPods,
    hash: &str,
    now: Timestamp,
) -> StatusNumbers {
    let mut s = StatusNumbers::default();
    let generation = template_generation(ds);
    let mrs = util::min_ready_seconds(ds);
    for node in nodes {
        let name = node.metadata.name.as_deref().unwrap_or("");
        let pods = node_to_pods.get(name).filter(|p| !p.is_empty());
        let (should_run, _) = node_should_run_daemon_pod(node, ds);
        if !should_run {
            if pods.is_some() {
                s.misscheduled += 1;
            }
            continue;
        }
        s.desired += 1;
        let Some(pods) = pods else { continue };
        s.current += 1;
        let mut sorted = pods.clone();
        sorted.sort_by(|a, b| pod_by_creation_timestamp_and_phase(a, b));
        let pod = &sorted[0];
        if is_pod_ready(pod) {
            s.ready += 1;
            if is_pod_available(pod, mrs, now) {
                s.available += 1;
            }
        }
        if is_pod_updated(pod, hash, generation) {
            s.updated += 1;
        }
    }
    s.unavailable = s.desired - s.available;
    s
}

impl DaemonSetsController {
    /// Writes the status numbers when they changed; the delay after which
    /// availability should be checked again, if any.
    pub(crate) async fn update_status(
        &self,
        ds: &DaemonSet,
        selector: &Selector,
        nodes: &[Arc<Node>],
        hash: &str,
        update_observed_generation: bool,
    ) -> Result<Option<Duration>, Failed> {
        let node_to_pods = self.owned_pods(ds, selector);
        let s = calculate_status(ds, nodes, &node_to_pods, hash, Timestamp::now());
        let cur = ds.status.clone().unwrap_or_default();
        let generation = ds.metadata.generation.unwrap_or(0);
        let unchanged = cur.desired_number_scheduled == s.desired
            && cur.current_number_scheduled == s.current
            && cur.number_misscheduled == s.misscheduled
            && cur.number_ready == s.ready
            && cur.updated_number_scheduled.unwrap_or(0) == s.updated
            && cur.number_available.unwrap_or(0) == s.available
            && cur.number_unavailable.unwrap_or(0) == s.unavailable
            && cur.observed_generation.unwrap_or(0) >= generation;
        if !unchanged {
            self.store_status(ds, &s, update_observed_generation)
                .await
                .map_err(|e| {
                    Failed(format!(
                        "error storing status for daemon set {:?}: {}",
                        ds.metadata.name.as_deref().unwrap_or(""),
                        api_message(&e)
                    ))
                })?;
        }
        let mrs = util::min_ready_seconds(ds);
        Ok((mrs > 0 && s.ready != s.available)
            .then(|| Duration::from_secs(u64::try_from(mrs).unwrap_or(0))))
    }

    async fn store_status(
        &self,
        ds: &DaemonSet,
        s: &StatusNumbers,
        update_observed_generation: bool,
    ) -> Result<(), kube::Error> {
        let ns = ds.metadata.namespace.as_deref().unwrap_or("");
        let name = ds.metadata.name.clone().unwrap_or_default();
        let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), ns);
        let mut target = ds.clone();
        // One retry on a fresh copy (upstream's StatusUpdateRetries).
        for attempt in 0..2 {
            let status = target.status.get_or_insert_with(Default::default);
            if update_observed_generation {
                status.observed_generation = ds.metadata.generation;
            }
            status.desired_number_scheduled = s.desired;
            status.current_number_scheduled = s.current;
            status.number_misscheduled = s.misscheduled;
            status.number_ready = s.ready;
            status.updated_number_scheduled = Some(s.updated);
            status.number_available = Some(s.available);
            status.number_unavailable = Some(s.unavailable);
            match api
                .replace_status(&name, &PostParams::default(), &target)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if attempt == 0 => {
                    tracing::debug!(error = %e, name, "status update failed; retrying on a fresh copy");
                    target = api.get(&name).await?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
