//! The Deployment controller (upstream's `pkg/controller/deployment`):
//! rolls a Deployment's pod template out through ReplicaSets, one per
//! template (named `<deployment>-<pod-template-hash>`), with the
//! RollingUpdate or Recreate strategy, and reports rollout status and
//! conditions.

mod rollout;
pub mod status;
mod sync;
pub mod util;

#[cfg(test)]
mod status_tests;
#[cfg(test)]
mod util_tests;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};
use skiff_api::selector::labels::from_label_selector;
use skiff_client::EventSink;

use crate::cached_pod::CachedPod;
use crate::informer::{ControllerIndex, InformerFactory, NamespaceIndex, ResourceEventHandler};
use crate::podutil::{controller_of, key_of};
use crate::workqueue::WorkQueue;

/// Workers (`--concurrent-deployment-syncs`).
pub const DEFAULT_WORKERS: usize = 5;

/// Upstream's controller name, for events.
pub const CONTROLLER_NAME: &str = "deployment-controller";

/// The Deployment controller.
pub struct DeploymentController {
    pub(crate) client: kube::Client,
    pub(crate) deployments: Store<Deployment>,
    pub(crate) replica_sets: Arc<NamespaceIndex<ReplicaSet>>,
    /// ReplicaSets by controller UID (orphans by namespace).
    pub(crate) rs_by_controller: Arc<ControllerIndex<ReplicaSet>>,
    pub(crate) pods: Arc<NamespaceIndex<CachedPod>>,
    pub(crate) queue: Arc<WorkQueue<String>>,
    pub(crate) events: Arc<dyn EventSink>,
}

impl std::fmt::Debug for DeploymentController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeploymentController")
            .finish_non_exhaustive()
    }
}

impl DeploymentController {
    /// A controller on `factory`'s Deployment, ReplicaSet and Pod
    /// informers, with its handlers registered.
    pub fn new(
        client: kube::Client,
        factory: &InformerFactory,
        events: Arc<dyn EventSink>,
    ) -> Arc<Self> {
        let d_inf = factory.informer::<Deployment>();
        let rs_inf = factory.informer::<ReplicaSet>();
        let pod_inf = factory.informer::<CachedPod>();
        let c = Arc::new(DeploymentController {
            client,
            deployments: d_inf.store(),
            replica_sets: rs_inf.namespace_index(),
            rs_by_controller: rs_inf.controller_index(),
            pods: pod_inf.namespace_index(),
            queue: Arc::new(factory.metrics().queue("deployment")),
            events,
        });
        d_inf.add_event_handler(Arc::new(DeploymentHandler(c.clone())));
        rs_inf.add_event_handler(Arc::new(ReplicaSetHandler(c.clone())));
        pod_inf.add_event_handler(Arc::new(PodHandler(c.clone())));
        c
    }

    /// The controller's work queue.
    pub fn queue(&self) -> Arc<WorkQueue<String>> {
        self.queue.clone()
    }

    fn enqueue(&self, d: &Deployment) {
        self.queue.add(key_of(&d.metadata));
    }

    /// The Deployment the ReplicaSet's controllerRef names, if the UID
    /// matches.
    fn resolve(&self, ns: Option<&str>, meta: &kube::api::ObjectMeta) -> Option<Arc<Deployment>> {
        let r = controller_of(meta)?;
        if r.kind != Deployment::kind(&()) {
            return None;
        }
        let d = self
            .deployments
            .get(&ObjectRef::new(&r.name).within(ns.unwrap_or("")))?;
        (d.metadata.uid.as_deref() == Some(r.uid.as_str())).then_some(d)
    }

    /// Deployments whose selector matches an orphan ReplicaSet's labels.
    fn deployments_selecting(&self, rs: &ReplicaSet) -> Vec<Arc<Deployment>> {
        let Some(labels) = rs.metadata.labels.as_ref().filter(|l| !l.is_empty()) else {
            return Vec::new();
        };
        let ns = rs.metadata.namespace.as_deref();
        self.deployments.state_filter(|d| {
            d.metadata.namespace.as_deref() == ns
                && from_label_selector(d.spec.as_ref().map(|s| &s.selector))
                    .is_ok_and(|s| !s.is_empty() && s.matches(labels))
        })
    }

    fn on_rs_change(&self, rs: &ReplicaSet) {
        let ns = rs.metadata.namespace.as_deref();
        if controller_of(&rs.metadata).is_some() {
            if let Some(d) = self.resolve(ns, &rs.metadata) {
                self.enqueue(&d);
            }
            return;
        }
        for d in self.deployments_selecting(rs) {
            self.enqueue(&d);
        }
    }
}

struct DeploymentHandler(Arc<DeploymentController>);

impl ResourceEventHandler<Deployment> for DeploymentHandler {
    fn on_add(&self, d: &Arc<Deployment>) {
        self.0.enqueue(d);
    }
    fn on_update(&self, _old: &Arc<Deployment>, d: &Arc<Deployment>) {
        self.0.enqueue(d);
    }
    fn on_delete(&self, d: &Arc<Deployment>) {
        self.0.enqueue(d);
    }
}

struct ReplicaSetHandler(Arc<DeploymentController>);

impl ResourceEventHandler<ReplicaSet> for ReplicaSetHandler {
    fn on_add(&self, rs: &Arc<ReplicaSet>) {
        self.0.on_rs_change(rs);
    }
    fn on_update(&self, old: &Arc<ReplicaSet>, cur: &Arc<ReplicaSet>) {
        if old.metadata.resource_version == cur.metadata.resource_version {
            return;
        }
        let c = &self.0;
        let ns = cur.metadata.namespace.as_deref();
        if controller_of(&old.metadata) != controller_of(&cur.metadata)
            && let Some(d) = c.resolve(ns, &old.metadata)
        {
            c.enqueue(&d);
        }
        if controller_of(&cur.metadata).is_none() && old.metadata.labels == cur.metadata.labels {
            return;
        }
        c.on_rs_change(cur);
    }
    fn on_delete(&self, rs: &Arc<ReplicaSet>) {
        if let Some(d) = self
            .0
            .resolve(rs.metadata.namespace.as_deref(), &rs.metadata)
        {
            self.0.enqueue(&d);
        }
    }
}

/// Pod deletions matter to Recreate only: the new ReplicaSet waits for
/// every old pod to be gone.
struct PodHandler(Arc<DeploymentController>);

impl PodHandler {
    fn owner_deployment(&self, pod: &CachedPod) -> Option<Arc<Deployment>> {
        let r = controller_of(&pod.metadata)?;
        if r.kind != "ReplicaSet" {
            return None;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let rs = self
            .0
            .replica_sets
            .get(&ns, &r.name)
            .filter(|rs| rs.metadata.uid.as_deref() == Some(r.uid.as_str()))?;
        let d = self.0.resolve(Some(&ns), &rs.metadata)?;
        util::is_recreate(&d).then_some(d)
    }
}

impl ResourceEventHandler<CachedPod> for PodHandler {
    fn on_add(&self, _pod: &Arc<CachedPod>) {}
    fn on_update(&self, old: &Arc<CachedPod>, cur: &Arc<CachedPod>) {
        // A pod reaching a terminal phase or terminating frees Recreate.
        let terminal = |p: &CachedPod| !crate::podutil::is_pod_active(p);
        if !terminal(old)
            && terminal(cur)
            && let Some(d) = self.owner_deployment(cur)
        {
            self.0.enqueue(&d);
        }
    }
    fn on_delete(&self, pod: &Arc<CachedPod>) {
        if let Some(d) = self.owner_deployment(pod) {
            self.0.enqueue(&d);
        }
    }
}
