//! The EndpointSlice controller (upstream's `pkg/controller/endpointslice`):
//! for each Service with a selector, EndpointSlices (per address family, at
//! most `--max-endpoints-per-slice` endpoints each) listing the matching
//! pods, owned by the Service so the garbage collector removes them with
//! it.

pub mod reconciler;
#[cfg(test)]
mod tests;
pub mod util;

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, ObjectReference, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use skiff_client::EventSink;
use skiff_client::events::PendingEvent;

use crate::apierrors::is_namespace_terminating;
use crate::cached_pod::CachedPod;
use crate::controller::{Action, Reconciler, SyncError};
use crate::endpoint::{PodHandler, ServiceHandler};
use crate::informer::{InformerFactory, NamespaceIndex, ResourceEventHandler};
use crate::workqueue::WorkQueue;
use util::{
    ANNOTATION_LAST_CHANGE_TRIGGER_TIME, LABEL_MANAGED_BY, LABEL_SERVICE_NAME, SliceTracker,
    TriggerTimeTracker, is_external_name, selector_matches, service_selector,
};

/// Workers (`--concurrent-service-endpoint-syncs`).
pub const DEFAULT_WORKERS: usize = 5;
/// `--max-endpoints-per-slice`.
pub const DEFAULT_MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// The managed-by label value of this controller's slices.
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// The reporting controller of its events.
pub const EVENT_SOURCE: &str = "endpoint-slice-controller";

/// The EndpointSlice controller.
pub struct EndpointSliceController {
    client: kube::Client,
    services: Store<Service>,
    pods: Arc<NamespaceIndex<CachedPod>>,
    slices: Arc<NamespaceIndex<EndpointSlice>>,
    nodes: Store<Node>,
    queue: Arc<WorkQueue<String>>,
    events: Arc<dyn EventSink>,
    triggers: TriggerTimeTracker,
    tracker: Arc<SliceTracker>,
    max_endpoints_per_slice: usize,
}

impl std::fmt::Debug for EndpointSliceController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointSliceController")
            .finish_non_exhaustive()
    }
}

/// The slice's `kubernetes.io/service-name` key, if `managed_by` manages it.
pub(crate) fn service_key_of(slice: &EndpointSlice, managed_by: &str) -> Option<String> {
    let labels = slice.metadata.labels.as_ref()?;
    if labels.get(LABEL_MANAGED_BY).map(String::as_str) != Some(managed_by) {
        return None;
    }
    let svc = labels.get(LABEL_SERVICE_NAME)?;
    Some(format!(
        "{}/{svc}",
        slice.metadata.namespace.as_deref().unwrap_or("")
    ))
}

/// The Service's slices managed by `managed_by`, none pending deletion.
pub(crate) fn managed_slices(
    slices: &NamespaceIndex<EndpointSlice>,
    ns: &str,
    name: &str,
    managed_by: &str,
) -> Vec<Arc<EndpointSlice>> {
    let key = format!("{ns}/{name}");
    let mut out: Vec<Arc<EndpointSlice>> = slices
        .list(ns)
        .into_iter()
        .filter(|s| service_key_of(s, managed_by).as_deref() == Some(key.as_str()))
        .filter(|s| s.metadata.deletion_timestamp.is_none())
        .collect();
    out.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    out
}

impl EndpointSliceController {
    /// A controller on `factory`'s Service, Pod, Node and EndpointSlice
    /// informers.
    pub fn new(
        client: kube::Client,
        factory: &InformerFactory,
        events: Arc<dyn EventSink>,
        max_endpoints_per_slice: usize,
    ) -> Arc<Self> {
        let svc_inf = factory.informer::<Service>();
        let pod_inf = factory.informer::<CachedPod>();
        let slice_inf = factory.informer::<EndpointSlice>();
        let node_inf = factory.informer::<Node>();
        let queue = Arc::new(factory.metrics().queue("endpoint_slice"));
        let tracker = Arc::new(SliceTracker::default());
        let c = Arc::new(EndpointSliceController {
            client,
            services: svc_inf.store(),
            pods: pod_inf.namespace_index(),
            slices: slice_inf.namespace_index(),
            nodes: node_inf.store(),
            queue: queue.clone(),
            events,
            triggers: TriggerTimeTracker::default(),
            tracker: tracker.clone(),
            max_endpoints_per_slice,
        });
        svc_inf.add_event_handler(Arc::new(ServiceHandler(queue.clone())));
        pod_inf.add_event_handler(Arc::new(PodHandler {
            services: svc_inf.namespace_index(),
            queue: queue.clone(),
        }));
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

    fn zone_of(&self, node: &str) -> Option<Option<String>> {
        let n = self.nodes.get(&ObjectRef::new(node))?;
        Some(
            n.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("topology.kubernetes.io/zone").cloned()),
        )
    }

    async fn sync_key(&self, key: &str) -> Result<Action, SyncError> {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        let Some(svc) = self.services.get(&ObjectRef::new(name).within(ns)) else {
            // Its slices go with it through their owner reference.
            self.triggers.delete(key);
            self.tracker.delete_service(key);
            return Ok(Action::Await);
        };
        if is_external_name(&svc) {
            return Ok(Action::Await);
        }
        // Selector-less Services get slices by mirroring their Endpoints.
        let Some(selector) = service_selector(&svc) else {
            return Ok(Action::Await);
        };
        let all = self.pods.list(ns);
        let pods: Vec<&CachedPod> = all
            .iter()
            .map(AsRef::as_ref)
            .filter(|p| selector_matches(selector, p.metadata.labels.as_ref()))
            .collect();
        let slices = managed_slices(&self.slices, ns, name, CONTROLLER_NAME);
        if self.tracker.stale(key, &slices) {
            return Err("EndpointSlice informer cache is out of date".into());
        }
        let trigger = self.triggers.compute(key, &svc, &pods);
        let existing: Vec<&EndpointSlice> = slices.iter().map(AsRef::as_ref).collect();
        let settings = reconciler::Settings {
            max_endpoints_per_slice: self.max_endpoints_per_slice,
            controller: CONTROLLER_NAME,
        };
        let zone_of = |n: &str| self.zone_of(n);
        let plan = reconciler::reconcile(&svc, &pods, &existing, &zone_of, settings);
        if let Err(err) = self.apply(key, &svc, plan.clone(), trigger).await {
            let note = format!("Error updating Endpoint Slices for Service {key}: {err}");
            self.events.record(PendingEvent {
                regarding: ObjectReference {
                    api_version: Some("v1".to_owned()),
                    kind: Some("Service".to_owned()),
                    name: Some(name.to_owned()),
                    namespace: Some(ns.to_owned()),
                    uid: svc.metadata.uid.clone(),
                    ..ObjectReference::default()
                },
                normal: false,
                reason: "FailedToUpdateEndpointSlices".to_owned(),
                action: "Sync".to_owned(),
                note,
            });
            return Err(err);
        }
        if !plan.errors.is_empty() {
            return Err(plan.errors.join("; ").into());
        }
        Ok(Action::Await)
    }

    async fn apply(
        &self,
        key: &str,
        svc: &Service,
        plan: reconciler::Plan,
        trigger: Option<k8s_openapi::jiff::Timestamp>,
    ) -> Result<(), SyncError> {
        apply_plan(
            &self.client,
            &self.tracker,
            key,
            svc.metadata.namespace.as_deref(),
            plan,
            trigger,
            "Service",
        )
        .await
    }
}

/// Sets or clears the last-change trigger time annotation.
fn set_trigger_time(slice: &mut EndpointSlice, trigger: Option<k8s_openapi::jiff::Timestamp>) {
    let annotations = slice.metadata.annotations.get_or_insert_default();
    match trigger {
        Some(t) => {
            annotations.insert(
                ANNOTATION_LAST_CHANGE_TRIGGER_TIME.to_owned(),
                t.to_string(),
            );
        }
        None => {
            annotations.remove(ANNOTATION_LAST_CHANGE_TRIGGER_TIME);
        }
    }
    if annotations.is_empty() {
        slice.metadata.annotations = None;
    }
}

/// Writes a plan: creates, then updates, then deletes (upstream's
/// `finalize`); `owner_kind` words the errors.
pub(crate) async fn apply_plan(
    client: &kube::Client,
    tracker: &SliceTracker,
    key: &str,
    ns: Option<&str>,
    plan: reconciler::Plan,
    trigger: Option<k8s_openapi::jiff::Timestamp>,
    owner_kind: &str,
) -> Result<(), SyncError> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), ns.unwrap_or(""));
    let pp = PostParams::default();
    for mut s in plan.create {
        if owner_kind == "Service" {
            set_trigger_time(&mut s, trigger);
        }
        match api.create(&pp, &s).await {
            Ok(created) => tracker.created(key, &created),
            // Creates keep failing in a terminating namespace: drop the key.
            Err(e) if is_namespace_terminating(&e) => return Ok(()),
            Err(e) => {
                return Err(
                    format!("failed to create EndpointSlice for {owner_kind} {key}: {e}").into(),
                );
            }
        }
    }
    for mut s in plan.update {
        if owner_kind == "Service" {
            set_trigger_time(&mut s, trigger);
        }
        let name = s.metadata.name.clone().unwrap_or_default();
        match api.replace(&name, &pp, &s).await {
            Ok(updated) => tracker.updated(key, &s, &updated),
            Err(e) => {
                return Err(format!(
                    "failed to update {name} EndpointSlice for {owner_kind} {key}: {e}"
                )
                .into());
            }
        }
    }
    for s in plan.delete {
        let name = s.metadata.name.clone().unwrap_or_default();
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => tracker.deleted(key, &s),
            Err(kube::Error::Api(st)) if st.code == 404 => {}
            Err(e) => {
                return Err(format!(
                    "failed to delete {name} EndpointSlice for {owner_kind} {key}: {e}"
                )
                .into());
            }
        }
    }
    Ok(())
}

impl Reconciler for EndpointSliceController {
    fn name(&self) -> &str {
        "endpointslice"
    }
    async fn sync(&self, key: &str) -> Result<Action, SyncError> {
        self.sync_key(key).await
    }
}

/// Requeues a slice's Service when someone else changed the slice.
pub(crate) struct SliceHandler {
    pub(crate) queue: Arc<WorkQueue<String>>,
    pub(crate) tracker: Arc<SliceTracker>,
    pub(crate) managed_by: &'static str,
}

impl SliceHandler {
    fn handle(&self, s: &EndpointSlice, deleted: bool) {
        if let Some(key) = service_key_of(s, self.managed_by)
            && self.tracker.should_sync(&key, s, deleted)
        {
            self.queue.add(key);
        }
    }
}

impl ResourceEventHandler<EndpointSlice> for SliceHandler {
    fn on_add(&self, s: &Arc<EndpointSlice>) {
        self.handle(s, false);
    }
    fn on_update(&self, old: &Arc<EndpointSlice>, cur: &Arc<EndpointSlice>) {
        if old.metadata.resource_version == cur.metadata.resource_version {
            return;
        }
        let (a, b) = (
            service_key_of(old, self.managed_by),
            service_key_of(cur, self.managed_by),
        );
        // A slice relabelled away from its Service: both need a look.
        if a.is_some() && a != b {
            if let Some(k) = a {
                self.queue.add(k);
            }
            if let Some(k) = b {
                self.queue.add(k);
            }
            return;
        }
        self.handle(cur, false);
    }
    fn on_delete(&self, s: &Arc<EndpointSlice>) {
        self.handle(s, true);
    }
}
