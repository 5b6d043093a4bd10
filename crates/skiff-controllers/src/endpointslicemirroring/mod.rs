//! The EndpointSlice mirroring controller (upstream's
//! `pkg/controller/endpointslicemirroring`): Endpoints written by hand for
//! Services without a selector are mirrored into EndpointSlices, so
//! slice consumers (the proxy, DNS) see them too.

pub mod reconciler;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, ObjectReference, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{ObjectRef, Store};
use skiff_client::EventSink;
use skiff_client::events::PendingEvent;

use crate::controller::{Action, Reconciler, SyncError};
use crate::endpointslice::reconciler::Plan;
use crate::endpointslice::util::{
    ANNOTATION_LEADER, LABEL_SKIP_MIRROR, SliceTracker, is_external_name, service_selector,
};
use crate::endpointslice::{SliceHandler, apply_plan, managed_slices};
use crate::informer::{InformerFactory, NamespaceIndex, ResourceEventHandler};
use crate::podutil::key_of;
use crate::workqueue::WorkQueue;

/// Workers (`--mirroring-concurrent-service-endpoint-syncs`).
pub const DEFAULT_WORKERS: usize = 5;
/// `--mirroring-max-endpoints-per-subset`.
pub const DEFAULT_MAX_ENDPOINTS_PER_SUBSET: usize = 1000;
/// The managed-by label value of mirrored slices.
pub const CONTROLLER_NAME: &str = "endpointslicemirroring-controller.k8s.io";
/// The reporting controller of its events.
pub const EVENT_SOURCE: &str = "endpoint-slice-mirroring-controller";

/// The mirroring controller.
pub struct MirroringController {
    client: kube::Client,
    services: Store<Service>,
    endpoints: Store<Endpoints>,
    slices: Arc<NamespaceIndex<EndpointSlice>>,
    queue: Arc<WorkQueue<String>>,
    events: Arc<dyn EventSink>,
    tracker: Arc<SliceTracker>,
    max_endpoints_per_subset: usize,
}

impl std::fmt::Debug for MirroringController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirroringController")
            .finish_non_exhaustive()
    }
}

/// Upstream's `shouldMirror`: not labelled skip-mirror and not a
/// leader-election lock.
pub fn should_mirror(ep: &Endpoints) -> bool {
    let skip = ep
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_SKIP_MIRROR))
        .is_some_and(|v| v == "true");
    let leader = ep
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ANNOTATION_LEADER));
    !skip && !leader
}

impl MirroringController {
    /// A controller on `factory`'s Service, Endpoints and EndpointSlice
    /// informers.
    pub fn new(
        client: kube::Client,
        factory: &InformerFactory,
        events: Arc<dyn EventSink>,
        max_endpoints_per_subset: usize,
    ) -> Arc<Self> {
        let svc_inf = factory.informer::<Service>();
        let ep_inf = factory.informer::<Endpoints>();
        let slice_inf = factory.informer::<EndpointSlice>();
        let queue = Arc::new(factory.metrics().queue("endpoint_slice_mirroring"));
        let tracker = Arc::new(SliceTracker::default());
        let c = Arc::new(MirroringController {
            client,
            services: svc_inf.store(),
            endpoints: ep_inf.store(),
            slices: slice_inf.namespace_index(),
            queue: queue.clone(),
            events,
            tracker: tracker.clone(),
            max_endpoints_per_subset,
        });
        svc_inf.add_event_handler(Arc::new(ServiceHandler(queue.clone())));
        ep_inf.add_event_handler(Arc::new(EndpointsHandler(queue.clone())));
        slice_inf.add_event_handler(Arc::new(SliceHandler {
            queue,
            tracker,
            managed_by: CONTROLLER_NAME,
        }));
        c
    }

    /// The controller's work queue.
    pub fn queue(&self) -> Arc<WorkQueue<String>> {
        self.queue.clone()
    }

    /// Deletes the slices mirrored for `ns/name` (only those owned by an
    /// Endpoints, i.e. that this controller made).
    async fn delete_mirrored(&self, key: &str, ns: &str, name: &str) -> Result<(), SyncError> {
        let delete: Vec<EndpointSlice> = managed_slices(&self.slices, ns, name, CONTROLLER_NAME)
            .into_iter()
            .filter(|s| {
                crate::podutil::controller_of(&s.metadata).is_some_and(|r| r.kind == "Endpoints")
            })
            .map(|s| s.as_ref().clone())
            .collect();
        if delete.is_empty() {
            return Ok(());
        }
        let plan = Plan {
            delete,
            ..Plan::default()
        };
        apply_plan(
            &self.client,
            &self.tracker,
            key,
            Some(ns),
            plan,
            None,
            "Endpoints",
        )
        .await
    }

    async fn sync_key(&self, key: &str) -> Result<Action, SyncError> {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        let Some(svc) = self.services.get(&ObjectRef::new(name).within(ns)) else {
            // Mirrored slices go with their Endpoints (owner reference).
            self.tracker.delete_service(key);
            return Ok(Action::Await);
        };
        if is_external_name(&svc) {
            return Ok(Action::Await);
        }
        if service_selector(&svc).is_some() {
            self.delete_mirrored(key, ns, name).await?;
            return Ok(Action::Await);
        }
        let Some(ep) = self
            .endpoints
            .get(&ObjectRef::new(name).within(ns))
            .filter(|e| should_mirror(e))
        else {
            self.delete_mirrored(key, ns, name).await?;
            return Ok(Action::Await);
        };
        let slices = managed_slices(&self.slices, ns, name, CONTROLLER_NAME);
        if self.tracker.stale(key, &slices) {
            return Err("EndpointSlice informer cache is out of date".into());
        }
        let existing: Vec<&EndpointSlice> = slices.iter().map(AsRef::as_ref).collect();
        let out = reconciler::reconcile(
            &ep,
            &existing,
            self.max_endpoints_per_subset,
            CONTROLLER_NAME,
        );
        if out.invalid > 0 {
            self.event(
                &ep,
                "InvalidIPAddress",
                format!(
                    "Skipped {} invalid IP addresses when mirroring to EndpointSlices",
                    out.invalid
                ),
            );
        }
        if out.skipped > out.invalid {
            self.event(
                &ep,
                "TooManyAddressesToMirror",
                format!(
                    "A max of {} addresses can be mirrored to EndpointSlices per Endpoints subset. {} addresses were skipped",
                    self.max_endpoints_per_subset,
                    out.skipped - out.invalid
                ),
            );
        }
        apply_plan(
            &self.client,
            &self.tracker,
            key,
            Some(ns),
            out.plan,
            None,
            "Endpoints",
        )
        .await?;
        Ok(Action::Await)
    }

    fn event(&self, ep: &Endpoints, reason: &str, note: String) {
        self.events.record(PendingEvent {
            regarding: ObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Endpoints".to_owned()),
                name: ep.metadata.name.clone(),
                namespace: ep.metadata.namespace.clone(),
                uid: ep.metadata.uid.clone(),
                ..ObjectReference::default()
            },
            normal: false,
            reason: reason.to_owned(),
            action: "Mirror".to_owned(),
            note,
        });
    }
}

impl Reconciler for MirroringController {
    fn name(&self) -> &str {
        "endpointslice-mirroring"
    }
    async fn sync(&self, key: &str) -> Result<Action, SyncError> {
        self.sync_key(key).await
    }
}

/// Services matter when they appear, go, or gain or lose a selector or the
/// ExternalName type.
struct ServiceHandler(Arc<WorkQueue<String>>);

impl ResourceEventHandler<Service> for ServiceHandler {
    fn on_add(&self, s: &Arc<Service>) {
        self.0.add(key_of(&s.metadata));
    }
    fn on_update(&self, old: &Arc<Service>, s: &Arc<Service>) {
        let view = |s: &Service| (service_selector(s).is_some(), is_external_name(s));
        if view(old) != view(s) {
            self.0.add(key_of(&s.metadata));
        }
    }
    fn on_delete(&self, s: &Arc<Service>) {
        self.0.add(key_of(&s.metadata));
    }
}

struct EndpointsHandler(Arc<WorkQueue<String>>);

impl ResourceEventHandler<Endpoints> for EndpointsHandler {
    fn on_add(&self, e: &Arc<Endpoints>) {
        if should_mirror(e) {
            self.0.add(key_of(&e.metadata));
        }
    }
    fn on_update(&self, old: &Arc<Endpoints>, e: &Arc<Endpoints>) {
        if old.metadata.resource_version != e.metadata.resource_version
            && (should_mirror(old) || should_mirror(e))
        {
            self.0.add(key_of(&e.metadata));
        }
    }
    fn on_delete(&self, e: &Arc<Endpoints>) {
        self.0.add(key_of(&e.metadata));
    }
}
