//! The disruption controller: keeps each PodDisruptionBudget's status
//! (healthy, desired and expected pods, disruptions allowed, the
//! `DisruptionAllowed` condition) current for the API server's
//! `pods/eviction`, expires its `disruptedPods` entries, and resets stale
//! `DisruptionTarget` pod conditions.

mod stale;
pub mod status;
mod sync;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::ReplicationController;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::Store;
use skiff_api::selector::labels::from_label_selector;
use skiff_client::EventSink;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cached_pod::CachedPod;
use crate::controller::run_workers;
use crate::informer::{InformerFactory, NamespaceIndex, ResourceEventHandler};
use crate::podutil::key_of;
use crate::workqueue::WorkQueue;

pub use stale::STALE_POD_DISRUPTION_TIMEOUT;

/// The `--controllers` name.
pub const NAME: &str = "disruption";
/// The events' reporting controller.
pub const CONTROLLER_NAME: &str = "controllermanager";

/// The disruption controller.
pub struct DisruptionController {
    pub(crate) client: kube::Client,
    pub(crate) pdbs: Store<PodDisruptionBudget>,
    pub(crate) pdbs_by_ns: Arc<NamespaceIndex<PodDisruptionBudget>>,
    pub(crate) pods: Arc<NamespaceIndex<CachedPod>>,
    pub(crate) pod_store: Store<CachedPod>,
    pub(crate) replica_sets: Store<ReplicaSet>,
    pub(crate) replication_controllers: Store<ReplicationController>,
    pub(crate) deployments: Store<Deployment>,
    pub(crate) stateful_sets: Store<StatefulSet>,
    pub(crate) queue: Arc<WorkQueue<String>>,
    /// Pods whose `DisruptionTarget` condition may go stale.
    pub(crate) stale_queue: Arc<WorkQueue<String>>,
    pub(crate) events: Arc<dyn EventSink>,
}

impl std::fmt::Debug for DisruptionController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DisruptionController")
            .finish_non_exhaustive()
    }
}

impl DisruptionController {
    /// A controller on `factory`'s informers, its handlers registered.
    pub fn new(
        client: kube::Client,
        factory: &InformerFactory,
        events: Arc<dyn EventSink>,
    ) -> Arc<Self> {
        let pdb_informer = factory.informer::<PodDisruptionBudget>();
        let pod_informer = factory.informer::<CachedPod>();
        let c = Arc::new(DisruptionController {
            client,
            pdbs: pdb_informer.store(),
            pdbs_by_ns: pdb_informer.namespace_index(),
            pods: pod_informer.namespace_index(),
            pod_store: pod_informer.store(),
            replica_sets: factory.informer::<ReplicaSet>().store(),
            replication_controllers: factory.informer::<ReplicationController>().store(),
            deployments: factory.informer::<Deployment>().store(),
            stateful_sets: factory.informer::<StatefulSet>().store(),
            queue: Arc::new(factory.metrics().queue("disruption")),
            stale_queue: Arc::new(factory.metrics().queue("stale_pod_disruption")),
            events,
        });
        pdb_informer.add_event_handler(Arc::new(PdbHandler(c.clone())));
        pod_informer.add_event_handler(Arc::new(PodHandler(c.clone())));
        c
    }

    /// The PDB work queue.
    pub fn queue(&self) -> Arc<WorkQueue<String>> {
        self.queue.clone()
    }

    /// Runs the PDB worker and the stale-condition worker (upstream runs
    /// one of each) until `stop`.
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let mut set = JoinSet::new();
        let stale = Arc::new(stale::StalePodDisruption(self.clone()));
        set.spawn(run_workers(
            stale,
            self.stale_queue.clone(),
            1,
            stop.clone(),
        ));
        let queue = self.queue.clone();
        set.spawn(run_workers(self, queue, 1, stop));
        while set.join_next().await.is_some() {}
    }

    /// The budgets in the pod's namespace whose selector matches it (in
    /// policy/v1 an empty selector matches every pod, a missing one none).
    pub(crate) fn pdbs_for_pod(&self, pod: &CachedPod) -> Vec<Arc<PodDisruptionBudget>> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let empty = BTreeMap::new();
        let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
        self.pdbs_by_ns
            .list(ns)
            .into_iter()
            .filter(|pdb| {
                from_label_selector(pdb.spec.as_ref().and_then(|s| s.selector.as_ref()))
                    .is_ok_and(|sel| sel.matches(labels))
            })
            .collect()
    }

    fn enqueue_pdbs_of(&self, pod: &CachedPod) {
        for pdb in self.pdbs_for_pod(pod) {
            self.queue.add(key_of(&pdb.metadata));
        }
    }

    fn check_stale_condition(&self, pod: &CachedPod) {
        if let Some(wait) = stale::stale_disruption_wait(pod, Timestamp::now()) {
            self.stale_queue.add_after(key_of(&pod.metadata), wait);
        }
    }
}

struct PdbHandler(Arc<DisruptionController>);

impl ResourceEventHandler<PodDisruptionBudget> for PdbHandler {
    fn on_add(&self, obj: &Arc<PodDisruptionBudget>) {
        self.0.queue.add(key_of(&obj.metadata));
    }
    fn on_update(&self, _old: &Arc<PodDisruptionBudget>, new: &Arc<PodDisruptionBudget>) {
        self.0.queue.add(key_of(&new.metadata));
    }
    fn on_delete(&self, obj: &Arc<PodDisruptionBudget>) {
        self.0.queue.add(key_of(&obj.metadata));
    }
}

struct PodHandler(Arc<DisruptionController>);

impl ResourceEventHandler<CachedPod> for PodHandler {
    fn on_add(&self, pod: &Arc<CachedPod>) {
        self.0.enqueue_pdbs_of(pod);
        self.0.check_stale_condition(pod);
    }
    fn on_update(&self, old: &Arc<CachedPod>, cur: &Arc<CachedPod>) {
        if old.metadata.labels != cur.metadata.labels {
            // A budget that selected the old labels loses the pod.
            self.0.enqueue_pdbs_of(old);
        }
        self.0.enqueue_pdbs_of(cur);
        self.0.check_stale_condition(cur);
    }
    fn on_delete(&self, pod: &Arc<CachedPod>) {
        self.0.enqueue_pdbs_of(pod);
    }
}

#[cfg(test)]
mod tests;
