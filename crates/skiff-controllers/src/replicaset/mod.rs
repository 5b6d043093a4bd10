//! The ReplicaSet and ReplicationController controllers (one
//! implementation, as upstream's `replicaset` package serves both): keep
//! `spec.replicas` active pods matching the selector, adopting orphans and
//! releasing pods that stopped matching, and report status.

pub mod kind;
pub mod ranking;
mod status;
mod sync;

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::reflector::{ObjectRef, Store};
use skiff_client::EventSink;

use crate::cached_pod::CachedPod;
use crate::expectations::ControllerExpectations;
use crate::informer::{ControllerIndex, InformerFactory, ResourceEventHandler};
use crate::podutil::{controller_of, is_pod_ready, key_of};
use crate::workqueue::WorkQueue;

pub use kind::{ReplicaCondition, ReplicaKind, ReplicaStatus};

/// At most this many pods are created or deleted per sync (upstream's
/// `BurstReplicas`).
pub const BURST_REPLICAS: usize = 500;

/// Workers per controller (`--concurrent-replicaset-syncs`,
/// `--concurrent-rc-syncs`).
pub const DEFAULT_WORKERS: usize = 5;

/// The controller for owner kind `K`.
pub struct ReplicaController<K: ReplicaKind> {
    pub(crate) client: kube::Client,
    pub(crate) owners: Store<K>,
    /// Pods by controller UID (orphans by namespace): a sync reads the
    /// owner's pods and the orphans it may adopt, not the whole namespace.
    pub(crate) pods: Arc<ControllerIndex<CachedPod>>,
    pub(crate) queue: Arc<WorkQueue<String>>,
    pub(crate) expectations: Arc<ControllerExpectations>,
    pub(crate) events: Arc<dyn EventSink>,
    pub(crate) burst_replicas: usize,
}

impl<K: ReplicaKind> std::fmt::Debug for ReplicaController<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaController")
            .field("kind", &K::kind(&()))
            .finish_non_exhaustive()
    }
}

impl<K: ReplicaKind> ReplicaController<K> {
    /// A controller on `factory`'s informers for `K` and pods, with its
    /// handlers registered (start the factory afterwards).
    pub fn new(
        client: kube::Client,
        factory: &InformerFactory,
        events: Arc<dyn EventSink>,
    ) -> Arc<Self> {
        let owner_informer = factory.informer::<K>();
        let pod_informer = factory.informer::<CachedPod>();
        let c = Arc::new(ReplicaController {
            client,
            owners: owner_informer.store(),
            pods: pod_informer.controller_index(),
            queue: Arc::new(factory.metrics().queue(K::QUEUE_NAME)),
            expectations: Arc::new(ControllerExpectations::new()),
            events,
            burst_replicas: BURST_REPLICAS,
        });
        owner_informer.add_event_handler(Arc::new(OwnerHandler(c.clone())));
        pod_informer.add_event_handler(Arc::new(PodHandler(c.clone())));
        c
    }

    /// The controller's work queue.
    pub fn queue(&self) -> Arc<WorkQueue<String>> {
        self.queue.clone()
    }

    fn enqueue(&self, owner: &K) {
        self.queue.add(key_of(owner.meta()));
    }

    /// The owner `pod`'s controllerRef names, if it is of our kind and the
    /// UID matches.
    fn resolve_controller_ref(&self, pod: &CachedPod) -> Option<Arc<K>> {
        let r = controller_of(&pod.metadata)?;
        if r.kind != K::kind(&()) {
            return None;
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let owner = self.owners.get(&ObjectRef::new(&r.name).within(ns))?;
        (owner.meta().uid.as_deref() == Some(r.uid.as_str())).then_some(owner)
    }

    /// Owners in the pod's namespace whose (non-empty) selector matches it.
    fn owners_selecting(&self, pod: &CachedPod) -> Vec<Arc<K>> {
        let Some(labels) = pod.metadata.labels.as_ref().filter(|l| !l.is_empty()) else {
            return Vec::new();
        };
        let ns = pod.metadata.namespace.as_deref();
        self.owners.state_filter(|o| {
            o.meta().namespace.as_deref() == ns
                && o.selector()
                    .is_ok_and(|s| !s.is_empty() && s.matches(labels))
        })
    }

    fn on_pod_delete(&self, pod: &CachedPod) {
        if controller_of(&pod.metadata).is_none() {
            return;
        }
        let Some(owner) = self.resolve_controller_ref(pod) else {
            return;
        };
        let key = key_of(owner.meta());
        self.expectations
            .deletion_observed(&key, &key_of(&pod.metadata));
        self.queue.add(key);
    }
}

struct OwnerHandler<K: ReplicaKind>(Arc<ReplicaController<K>>);

impl<K: ReplicaKind> ResourceEventHandler<K> for OwnerHandler<K> {
    fn on_add(&self, obj: &Arc<K>) {
        self.0.enqueue(obj);
    }
    fn on_update(&self, old: &Arc<K>, new: &Arc<K>) {
        if old.meta().uid != new.meta().uid {
            // Deleted and recreated under the same name while unobserved.
            self.on_delete(old);
        }
        self.0.enqueue(new);
    }
    fn on_delete(&self, obj: &Arc<K>) {
        let key = key_of(obj.meta());
        self.0.expectations.delete_expectations(&key);
        self.0.queue.add(key);
    }
}

struct PodHandler<K: ReplicaKind>(Arc<ReplicaController<K>>);

impl<K: ReplicaKind> ResourceEventHandler<CachedPod> for PodHandler<K> {
    fn on_add(&self, pod: &Arc<CachedPod>) {
        let c = &self.0;
        if pod.metadata.deletion_timestamp.is_some() {
            // Restarted controller: a pod being deleted must not count as
            // a creation.
            c.on_pod_delete(pod);
            return;
        }
        if controller_of(&pod.metadata).is_some() {
            if let Some(owner) = c.resolve_controller_ref(pod) {
                let key = key_of(owner.meta());
                c.expectations.creation_observed(&key);
                c.queue.add(key);
            }
            return;
        }
        // An orphan: every matching owner may want to adopt it.
        for owner in c.owners_selecting(pod) {
            c.enqueue(&owner);
        }
    }

    fn on_update(&self, old: &Arc<CachedPod>, cur: &Arc<CachedPod>) {
        let c = &self.0;
        if old.metadata.resource_version == cur.metadata.resource_version {
            // A relist: nothing changed.
            return;
        }
        let label_changed = old.metadata.labels != cur.metadata.labels;
        if cur.metadata.deletion_timestamp.is_some() {
            // Terminating pods count as gone at once, so a replacement
            // starts without waiting for the grace period.
            c.on_pod_delete(cur);
            if label_changed {
                c.on_pod_delete(old);
            }
            return;
        }
        let cur_ref = controller_of(&cur.metadata);
        let old_ref = controller_of(&old.metadata);
        let ref_changed = cur_ref != old_ref;
        if ref_changed
            && old_ref.is_some()
            && let Some(owner) = c.resolve_controller_ref(old)
        {
            c.enqueue(&owner);
        }
        if cur_ref.is_some() {
            if let Some(owner) = c.resolve_controller_ref(cur) {
                c.enqueue(&owner);
                let mrs = owner.min_ready_seconds();
                if !is_pod_ready(old) && is_pod_ready(cur) && mrs > 0 {
                    // Check availability once minReadySeconds have passed.
                    let secs = u64::try_from(mrs).unwrap_or(0) + 1;
                    c.queue
                        .add_after(key_of(owner.meta()), Duration::from_secs(secs));
                }
            }
            return;
        }
        if label_changed || ref_changed {
            for owner in c.owners_selecting(cur) {
                c.enqueue(&owner);
            }
        }
    }

    fn on_delete(&self, pod: &Arc<CachedPod>) {
        self.0.on_pod_delete(pod);
    }
}
