//! The pod garbage collector (upstream's `pod-garbage-collector`): every
//! pass it force-deletes terminated pods over `--terminated-pod-gc-threshold`
//! (oldest first), pods bound to nodes that no longer exist (after a
//! quarantine, confirmed with the API server), terminating pods that were
//! never scheduled, and terminating pods on NotReady nodes tainted
//! out-of-service. Pods not yet terminal are marked Failed first.

mod select;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::Store;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cached_pod::CachedPod;
use crate::informer::InformerFactory;
pub use select::{
    is_pod_terminated, orphaned_pods, out_of_service_terminating, terminated_to_delete,
    unscheduled_terminating,
};

/// The controller's name in `--controllers`.
pub const CONTROLLER_NAME: &str = "pod-garbage-collector";
/// Upstream's default `--terminated-pod-gc-threshold`.
pub const DEFAULT_TERMINATED_POD_GC_THRESHOLD: usize = 12_500;
/// How often the collector runs (upstream's `gcCheckPeriod`).
pub const DEFAULT_GC_CHECK_PERIOD: Duration = Duration::from_secs(20);
/// How long a node must be missing before its pods are orphans (upstream's
/// `quarantineTime`).
pub const DEFAULT_QUARANTINE_TIME: Duration = Duration::from_secs(40);

/// The collector's settings.
#[derive(Debug, Clone)]
pub struct PodGcOptions {
    /// `--terminated-pod-gc-threshold` (0 turns that part off).
    pub terminated_pod_gc_threshold: usize,
    /// Time between passes.
    pub gc_check_period: Duration,
    /// Quarantine of a missing node.
    pub quarantine_time: Duration,
}

impl Default for PodGcOptions {
    fn default() -> Self {
        PodGcOptions {
            terminated_pod_gc_threshold: DEFAULT_TERMINATED_POD_GC_THRESHOLD,
            gc_check_period: DEFAULT_GC_CHECK_PERIOD,
            quarantine_time: DEFAULT_QUARANTINE_TIME,
        }
    }
}

/// The collector.
pub struct PodGc {
    client: kube::Client,
    pods: Store<CachedPod>,
    nodes: Store<Node>,
    opts: PodGcOptions,
}

impl std::fmt::Debug for PodGc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodGc")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// A pod condition to add when marking a pod Failed.
fn disruption_condition() -> serde_json::Value {
    serde_json::json!({
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "DeletionByPodGC",
        "message": "PodGC: node no longer exists",
        "lastTransitionTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now()),
    })
}

impl PodGc {
    /// A collector on `factory`'s Pod and Node informers.
    pub fn new(client: kube::Client, factory: &InformerFactory, opts: PodGcOptions) -> Self {
        PodGc {
            client,
            pods: factory.informer::<CachedPod>().store(),
            nodes: factory.informer::<Node>().store(),
            opts,
        }
    }

    /// Runs a pass every period until `stop`.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.opts.gc_check_period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Missing node → when it was first found missing.
        let mut quarantine: HashMap<String, Instant> = HashMap::new();
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tick.tick() => {}
            }
            self.gc(&mut quarantine).await;
        }
    }

    /// One pass (upstream's `gc`).
    pub async fn gc(&self, quarantine: &mut HashMap<String, Instant>) {
        let pods = self.pods.state();
        let nodes = self.nodes.state();
        if self.opts.terminated_pod_gc_threshold > 0 {
            for p in terminated_to_delete(&pods, self.opts.terminated_pod_gc_threshold) {
                self.mark_failed_and_delete(&p, None).await;
            }
        }
        for p in out_of_service_terminating(&pods, &nodes) {
            self.mark_failed_and_delete(&p, None).await;
        }
        self.gc_orphaned(&pods, &nodes, quarantine).await;
        for p in unscheduled_terminating(&pods) {
            self.mark_failed_and_delete(&p, None).await;
        }
    }

    async fn gc_orphaned(
        &self,
        pods: &[Arc<CachedPod>],
        nodes: &[Arc<Node>],
        quarantine: &mut HashMap<String, Instant>,
    ) {
        let known: HashSet<&str> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.as_deref())
            .collect();
        let now = Instant::now();
        let mut missing: HashSet<String> = HashSet::new();
        for p in pods {
            if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.as_deref())
                && !n.is_empty()
                && !known.contains(n)
            {
                missing.insert(n.to_owned());
            }
        }
        quarantine.retain(|n, _| missing.contains(n));
        let mut deleted_nodes: HashSet<String> = HashSet::new();
        for n in missing {
            let since = *quarantine.entry(n.clone()).or_insert(now);
            if now < since + self.opts.quarantine_time {
                continue;
            }
            // The cache may lag: ask the API server before deleting.
            let api: Api<Node> = Api::all(self.client.clone());
            match api.get_opt(&n).await {
                Ok(None) => {
                    deleted_nodes.insert(n.clone());
                    quarantine.remove(&n);
                }
                Ok(Some(_)) => {
                    quarantine.remove(&n);
                }
                Err(e) => tracing::info!(node = %n, error = %e, "cannot check node; will retry"),
            }
        }
        for p in orphaned_pods(pods, &deleted_nodes) {
            tracing::info!(pod = %crate::podutil::key_of(&p.metadata), "Found orphaned Pod assigned to the Node, deleting");
            self.mark_failed_and_delete(&p, Some(disruption_condition()))
                .await;
        }
    }

    /// Marks a pod not yet terminal Failed (with `condition`) and deletes
    /// it with no grace period (upstream's
    /// `markFailedAndDeletePodWithCondition`).
    async fn mark_failed_and_delete(&self, pod: &CachedPod, condition: Option<serde_json::Value>) {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<CachedPod> = Api::namespaced(self.client.clone(), &ns);
        if !is_pod_terminated(pod) {
            let mut status = serde_json::json!({"phase": "Failed"});
            if let Some(c) = condition {
                status["conditions"] = serde_json::json!([c]);
            }
            let patch = serde_json::json!({"status": status});
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
            {
                tracing::info!(pod = %format!("{ns}/{name}"), error = %e, "cannot mark pod Failed");
                return;
            }
        }
        let opts = DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        };
        match api.delete(&name, &opts).await {
            Ok(_) => tracing::info!(pod = %format!("{ns}/{name}"), "PodGC is force deleting Pod"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                tracing::info!(pod = %format!("{ns}/{name}"), error = %e, "cannot delete pod")
            }
        }
    }
}

#[cfg(test)]
mod tests;
