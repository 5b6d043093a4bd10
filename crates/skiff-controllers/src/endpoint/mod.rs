//! The Endpoints controller (upstream's `pkg/controller/endpoint`): keeps,
//! for each Service with a selector, an Endpoints object of the same name
//! listing the matching pods' addresses per port.

pub mod subsets;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Endpoints, ObjectReference, Service};
use kube::Api;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use skiff_client::EventSink;
use skiff_client::events::PendingEvent;

use crate::apierrors::{api_message, is_namespace_terminating};
use crate::cached_pod::CachedPod;
use crate::controller::{Action, Reconciler, SyncError};
use crate::endpointslice::util::{
    ANNOTATION_LAST_CHANGE_TRIGGER_TIME, ANNOTATION_LEADER, LABEL_HEADLESS, TriggerTimeTracker,
    is_external_name, is_service_ip_set, selector_matches, service_selector, services_selecting,
    services_to_update_on_pod_change,
};
use crate::informer::{InformerFactory, NamespaceIndex, ResourceEventHandler};
use crate::podutil::key_of;
use crate::workqueue::WorkQueue;

/// Workers (`--concurrent-endpoint-syncs`).
pub const DEFAULT_WORKERS: usize = 5;
/// Upstream's controller name, for events and the managed-by label.
pub const CONTROLLER_NAME: &str = "endpoint-controller";
/// The label marking Endpoints this controller manages.
pub const LABEL_MANAGED_BY: &str = "endpoints.kubernetes.io/managed-by";
/// Set to `truncated` when addresses were dropped over capacity.
pub const ANNOTATION_OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";

/// The Endpoints controller.
pub struct EndpointController {
    client: kube::Client,
    services: Store<Service>,
    services_by_ns: Arc<NamespaceIndex<Service>>,
    pods: Arc<NamespaceIndex<CachedPod>>,
    endpoints: Store<Endpoints>,
    queue: Arc<WorkQueue<String>>,
    events: Arc<dyn EventSink>,
    triggers: TriggerTimeTracker,
    /// Per key, the resourceVersion our last update replaced: a cache still
    /// showing it is behind.
    stale: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for EndpointController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointController").finish_non_exhaustive()
    }
}

impl EndpointController {
    /// A controller on `factory`'s Service, Pod and Endpoints informers.
    pub fn new(
        client: kube::Client,
        factory: &InformerFactory,
        events: Arc<dyn EventSink>,
    ) -> Arc<Self> {
        let svc_inf = factory.informer::<Service>();
        let pod_inf = factory.informer::<CachedPod>();
        let ep_inf = factory.informer::<Endpoints>();
        let c = Arc::new(EndpointController {
            client,
            services: svc_inf.store(),
            services_by_ns: svc_inf.namespace_index(),
            pods: pod_inf.namespace_index(),
            endpoints: ep_inf.store(),
            queue: Arc::new(factory.metrics().queue("endpoint")),
            events,
            triggers: TriggerTimeTracker::default(),
            stale: Mutex::new(HashMap::new()),
        });
        svc_inf.add_event_handler(Arc::new(ServiceHandler(c.queue.clone())));
        pod_inf.add_event_handler(Arc::new(PodHandler {
            services: c.services_by_ns.clone(),
            queue: c.queue.clone(),
        }));
        ep_inf.add_event_handler(Arc::new(EndpointsHandler(c.queue.clone())));
        c
    }

    /// The controller's work queue.
    pub fn queue(&self) -> Arc<WorkQueue<String>> {
        self.queue.clone()
    }

    /// Upstream's `checkLeftoverEndpoints`: once caches are synced, every
    /// Endpoints is looked at, so those of Services deleted while the
    /// controller was down go too.
    pub fn enqueue_leftovers(&self) {
        for ep in self.endpoints.state() {
            let leader = ep
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(ANNOTATION_LEADER));
            if !leader {
                self.queue.add(key_of(&ep.metadata));
            }
        }
    }

    fn api(&self, ns: &str) -> Api<Endpoints> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Deletes the Endpoints `ns/name` if this controller manages it.
    async fn delete_managed(&self, ns: &str, name: &str) -> Result<(), SyncError> {
        let Some(ep) = self.endpoints.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(());
        };
        if !is_managed(&ep) {
            return Ok(());
        }
        match self.api(ns).delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn sync_key(&self, key: &str) -> Result<Action, SyncError> {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        let Some(svc) = self.services.get(&ObjectRef::new(name).within(ns)) else {
            self.delete_managed(ns, name).await?;
            self.triggers.delete(key);
            self.lock_stale().remove(key);
            return Ok(Action::Await);
        };
        if is_external_name(&svc) {
            return Ok(Action::Await);
        }
        let Some(selector) = service_selector(&svc) else {
            // Selector-less Services get hand-written Endpoints; drop only
            // those this controller wrote while the selector was there.
            self.delete_managed(ns, name).await?;
            return Ok(Action::Await);
        };
        let all = self.pods.list(ns);
        let pods: Vec<&CachedPod> = all
            .iter()
            .map(AsRef::as_ref)
            .filter(|p| selector_matches(selector, p.metadata.labels.as_ref()))
            .collect();
        let trigger = self.triggers.compute(key, &svc, &pods);
        let mut subsets = subsets::compute_subsets(&svc, &pods);
        let truncated = subsets::truncate(&mut subsets);

        let current = self.endpoints.get(&ObjectRef::new(name).within(ns));
        if let Some(cur) = &current
            && self.lock_stale().get(key) == cur.metadata.resource_version.as_ref()
        {
            return Err(format!(
                "endpoints informer cache is out of date, resource version {} already processed for endpoints {key}",
                cur.metadata.resource_version.as_deref().unwrap_or("")
            )
            .into());
        }
        let svc_labels = svc.metadata.labels.clone().unwrap_or_default();
        if let Some(cur) = &current {
            let mut compare = cur.metadata.labels.clone().unwrap_or_default();
            compare.remove(LABEL_HEADLESS);
            compare.remove(LABEL_MANAGED_BY);
            let annotations = cur.metadata.annotations.as_ref();
            let over = annotations.and_then(|a| a.get(ANNOTATION_OVER_CAPACITY));
            if cur.subsets.clone().unwrap_or_default() == subsets
                && compare == svc_labels
                && is_managed(cur)
                && over.is_some() == truncated
            {
                return Ok(Action::Await);
            }
        }

        let mut labels = svc_labels;
        labels.insert(LABEL_MANAGED_BY.to_owned(), CONTROLLER_NAME.to_owned());
        if !is_service_ip_set(&svc) {
            labels.insert(LABEL_HEADLESS.to_owned(), String::new());
        }
        let mut annotations: BTreeMap<String, String> = current
            .as_ref()
            .and_then(|c| c.metadata.annotations.clone())
            .unwrap_or_default();
        match trigger {
            Some(t) => annotations.insert(
                ANNOTATION_LAST_CHANGE_TRIGGER_TIME.to_owned(),
                t.to_string(),
            ),
            None => annotations.remove(ANNOTATION_LAST_CHANGE_TRIGGER_TIME),
        };
        if truncated {
            annotations.insert(ANNOTATION_OVER_CAPACITY.to_owned(), "truncated".to_owned());
        } else {
            annotations.remove(ANNOTATION_OVER_CAPACITY);
        }
        let mut desired = current.as_deref().cloned().unwrap_or_else(|| Endpoints {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(ns.to_owned()),
                ..ObjectMeta::default()
            },
            subsets: None,
        });
        desired.metadata.labels = Some(labels);
        desired.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
        desired.subsets = (!subsets.is_empty()).then_some(subsets);
        self.write(key, &svc, current.as_deref(), desired).await
    }

    async fn write(
        &self,
        key: &str,
        svc: &Service,
        current: Option<&Endpoints>,
        desired: Endpoints,
    ) -> Result<Action, SyncError> {
        let ns = svc.metadata.namespace.as_deref().unwrap_or("");
        let name = svc.metadata.name.as_deref().unwrap_or("");
        let api = self.api(ns);
        let result = match current {
            None => api.create(&PostParams::default(), &desired).await,
            Some(_) => api.replace(name, &PostParams::default(), &desired).await,
        };
        match result {
            Ok(written) => {
                if let Some(cur) = current
                    && cur.metadata.resource_version != written.metadata.resource_version
                    && let Some(rv) = cur.metadata.resource_version.clone()
                {
                    self.lock_stale().insert(key.to_owned(), rv);
                }
                Ok(Action::Await)
            }
            Err(err) => {
                if current.is_none() && is_namespace_terminating(&err) {
                    return Ok(Action::Await);
                }
                let msg = api_message(&err);
                let (reason, note) = match current {
                    None => (
                        "FailedToCreateEndpoint",
                        format!("Failed to create endpoint for service {ns}/{name}: {msg}"),
                    ),
                    Some(_) => (
                        "FailedToUpdateEndpoint",
                        format!("Failed to update endpoint {ns}/{name}: {msg}"),
                    ),
                };
                self.events.record(PendingEvent {
                    regarding: ObjectReference {
                        api_version: Some("v1".to_owned()),
                        kind: Some("Endpoints".to_owned()),
                        name: Some(name.to_owned()),
                        namespace: Some(ns.to_owned()),
                        uid: current.and_then(|c| c.metadata.uid.clone()),
                        ..ObjectReference::default()
                    },
                    normal: false,
                    reason: reason.to_owned(),
                    action: "Sync".to_owned(),
                    note,
                });
                Err(err.into())
            }
        }
    }

    fn lock_stale(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.stale.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn is_managed(ep: &Endpoints) -> bool {
    ep.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_MANAGED_BY))
        .is_some_and(|v| v == CONTROLLER_NAME)
}

impl Reconciler for EndpointController {
    fn name(&self) -> &str {
        "endpoint"
    }
    async fn sync(&self, key: &str) -> Result<Action, SyncError> {
        self.sync_key(key).await
    }
}

/// Enqueues a Service's key on every change.
pub(crate) struct ServiceHandler(pub(crate) Arc<WorkQueue<String>>);

impl ResourceEventHandler<Service> for ServiceHandler {
    fn on_add(&self, s: &Arc<Service>) {
        self.0.add(key_of(&s.metadata));
    }
    fn on_update(&self, _old: &Arc<Service>, s: &Arc<Service>) {
        self.0.add(key_of(&s.metadata));
    }
    fn on_delete(&self, s: &Arc<Service>) {
        self.0.add(key_of(&s.metadata));
    }
}

/// Enqueues the Services a pod change concerns.
pub(crate) struct PodHandler {
    pub(crate) services: Arc<NamespaceIndex<Service>>,
    pub(crate) queue: Arc<WorkQueue<String>>,
}

impl PodHandler {
    fn services(&self, pod: &CachedPod) -> Vec<Arc<Service>> {
        self.services
            .list(pod.metadata.namespace.as_deref().unwrap_or(""))
    }
}

impl ResourceEventHandler<CachedPod> for PodHandler {
    fn on_add(&self, pod: &Arc<CachedPod>) {
        for k in services_selecting(&self.services(pod), pod) {
            self.queue.add(k);
        }
    }
    fn on_update(&self, old: &Arc<CachedPod>, cur: &Arc<CachedPod>) {
        for k in services_to_update_on_pod_change(&self.services(cur), old, cur) {
            self.queue.add(k);
        }
    }
    fn on_delete(&self, pod: &Arc<CachedPod>) {
        self.on_add(pod);
    }
}

/// A deleted Endpoints is recreated if its Service still wants one.
struct EndpointsHandler(Arc<WorkQueue<String>>);

impl ResourceEventHandler<Endpoints> for EndpointsHandler {
    fn on_add(&self, _e: &Arc<Endpoints>) {}
    fn on_update(&self, _old: &Arc<Endpoints>, _e: &Arc<Endpoints>) {}
    fn on_delete(&self, e: &Arc<Endpoints>) {
        self.0.add(key_of(&e.metadata));
    }
}
