//! The StatefulSet controller (upstream's `pkg/controller/statefulset`):
//! pods with stable names `<set>-<ordinal>`, hostnames and claims, created
//! in order (OrderedReady) or all at once (Parallel), removed from the
//! highest ordinal; RollingUpdate (with partition) and OnDelete updates
//! between ControllerRevisions; status.

mod control;
mod pod_control;
mod sync;
pub mod utils;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::runtime::reflector::{ObjectRef, Store};
use skiff_client::EventSink;

use crate::cached_pod::CachedPod;
use crate::history::History;
use crate::informer::{ControllerIndex, InformerFactory, NamespaceIndex, ResourceEventHandler};
use crate::podcontrol::record_event;
use crate::podutil::{controller_of, is_pod_ready, key_of};
use crate::workqueue::WorkQueue;

/// The controller's name (`--controllers`).
pub const CONTROLLER_NAME: &str = "statefulset";

/// Workers (`--concurrent-statefulset-syncs`).
pub const DEFAULT_WORKERS: usize = 5;

/// A sync error carrying upstream's message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Failed(pub String);

/// The StatefulSet controller.
pub struct StatefulSetController {
    pub(crate) client: kube::Client,
    pub(crate) sets: Store<StatefulSet>,
    /// Pods by controller UID (orphans by namespace): what a claim reads.
    pub(crate) pods_by_controller: Arc<ControllerIndex<CachedPod>>,
    pub(crate) claims: Store<PersistentVolumeClaim>,
    pub(crate) revisions: Arc<NamespaceIndex<ControllerRevision>>,
    pub(crate) history: History,
    pub(crate) queue: Arc<WorkQueue<String>>,
    pub(crate) events: Arc<dyn EventSink>,
}

impl std::fmt::Debug for StatefulSetController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatefulSetController")
            .finish_non_exhaustive()
    }
}

impl StatefulSetController {
    /// A controller on `factory`'s informers (StatefulSets, pods, claims,
    /// ControllerRevisions) with its handlers registered.
    pub fn new(
        client: kube::Client,
        factory: &InformerFactory,
        events: Arc<dyn EventSink>,
    ) -> Arc<Self> {
        let set_informer = factory.informer::<StatefulSet>();
        let pod_informer = factory.informer::<CachedPod>();
        let claim_informer = factory.informer::<PersistentVolumeClaim>();
        let rev_informer = factory.informer::<ControllerRevision>();
        let c = Arc::new(StatefulSetController {
            history: History::new(client.clone()),
            client,
            sets: set_informer.store(),
            pods_by_controller: pod_informer.controller_index(),
            claims: claim_informer.store(),
            revisions: rev_informer.namespace_index(),
            queue: Arc::new(factory.metrics().queue("statefulset")),
            events,
        });
        set_informer.add_event_handler(Arc::new(SetHandler(c.clone())));
        pod_informer.add_event_handler(Arc::new(PodHandler(c.clone())));
        rev_informer.add_event_handler(Arc::new(RevisionHandler(c.clone())));
        c
    }

    /// The controller's work queue.
    pub fn queue(&self) -> Arc<WorkQueue<String>> {
        self.queue.clone()
    }

    fn enqueue(&self, set: &StatefulSet) {
        self.queue.add(key_of(&set.metadata));
    }

    pub(crate) fn event(
        &self,
        set: &StatefulSet,
        normal: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        record_event(self.events.as_ref(), set, normal, reason, action, note);
    }

    /// The StatefulSet a controllerRef names, if it exists with that UID.
    fn resolve_controller_ref(
        &self,
        ns: Option<&str>,
        r: &OwnerReference,
    ) -> Option<Arc<StatefulSet>> {
        if r.kind != "StatefulSet" {
            return None;
        }
        let set = self
            .sets
            .get(&ObjectRef::new(&r.name).within(ns.unwrap_or("")))?;
        (set.metadata.uid.as_deref() == Some(r.uid.as_str())).then_some(set)
    }

    /// StatefulSets in `ns` whose (non-empty) selector matches `labels`
    /// (upstream's `getPodStatefulSets`, for orphans).
    fn sets_selecting(
        &self,
        ns: Option<&str>,
        labels: Option<&std::collections::BTreeMap<String, String>>,
    ) -> Vec<Arc<StatefulSet>> {
        let Some(labels) = labels.filter(|l| !l.is_empty()) else {
            return Vec::new();
        };
        self.sets.state_filter(|s| {
            s.metadata.namespace.as_deref() == ns
                && sync::selector_of(s).is_ok_and(|sel| !sel.is_empty() && sel.matches(labels))
        })
    }

    fn enqueue_owner(&self, meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) {
        if let Some(r) = controller_of(meta)
            && let Some(set) = self.resolve_controller_ref(meta.namespace.as_deref(), r)
        {
            self.enqueue(&set);
        }
    }
}

struct SetHandler(Arc<StatefulSetController>);

impl ResourceEventHandler<StatefulSet> for SetHandler {
    fn on_add(&self, set: &Arc<StatefulSet>) {
        self.0.enqueue(set);
    }
    fn on_update(&self, _old: &Arc<StatefulSet>, cur: &Arc<StatefulSet>) {
        self.0.enqueue(cur);
    }
    fn on_delete(&self, set: &Arc<StatefulSet>) {
        self.0.enqueue(set);
    }
}

struct PodHandler(Arc<StatefulSetController>);

impl ResourceEventHandler<CachedPod> for PodHandler {
    fn on_add(&self, pod: &Arc<CachedPod>) {
        let c = &self.0;
        if pod.metadata.deletion_timestamp.is_some() {
            c.enqueue_owner(&pod.metadata);
            return;
        }
        if controller_of(&pod.metadata).is_some() {
            c.enqueue_owner(&pod.metadata);
            return;
        }
        for set in c.sets_selecting(
            pod.metadata.namespace.as_deref(),
            pod.metadata.labels.as_ref(),
        ) {
            c.enqueue(&set);
        }
    }

    fn on_update(&self, old: &Arc<CachedPod>, cur: &Arc<CachedPod>) {
        let c = &self.0;
        if old.metadata.resource_version == cur.metadata.resource_version {
            return;
        }
        let labels_changed = old.metadata.labels != cur.metadata.labels;
        let (old_ref, cur_ref) = (controller_of(&old.metadata), controller_of(&cur.metadata));
        if old_ref != cur_ref {
            c.enqueue_owner(&old.metadata);
        }
        if cur_ref.is_some() {
            if let Some(r) = cur_ref
                && let Some(set) = c.resolve_controller_ref(cur.metadata.namespace.as_deref(), r)
            {
                c.enqueue(&set);
                let mrs = utils::min_ready_seconds(&set);
                if !is_pod_ready(old) && is_pod_ready(cur) && mrs > 0 {
                    // Availability is due once minReadySeconds have passed.
                    let secs = u64::try_from(mrs).unwrap_or(0) + 1;
                    c.queue
                        .add_after(key_of(&set.metadata), Duration::from_secs(secs));
                }
            }
            return;
        }
        if labels_changed || old_ref != cur_ref {
            for set in c.sets_selecting(
                cur.metadata.namespace.as_deref(),
                cur.metadata.labels.as_ref(),
            ) {
                c.enqueue(&set);
            }
        }
    }

    fn on_delete(&self, pod: &Arc<CachedPod>) {
        self.0.enqueue_owner(&pod.metadata);
    }
}

struct RevisionHandler(Arc<StatefulSetController>);

impl ResourceEventHandler<ControllerRevision> for RevisionHandler {
    fn on_add(&self, cr: &Arc<ControllerRevision>) {
        self.0.enqueue_owner(&cr.metadata);
    }
    fn on_update(&self, old: &Arc<ControllerRevision>, cur: &Arc<ControllerRevision>) {
        if old.metadata.resource_version == cur.metadata.resource_version {
            return;
        }
        if controller_of(&old.metadata) != controller_of(&cur.metadata) {
            self.0.enqueue_owner(&old.metadata);
        }
        self.0.enqueue_owner(&cur.metadata);
    }
    fn on_delete(&self, cr: &Arc<ControllerRevision>) {
        self.0.enqueue_owner(&cr.metadata);
    }
}
