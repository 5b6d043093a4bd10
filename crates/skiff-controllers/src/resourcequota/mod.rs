//! The resource quota controller (upstream's `resourcequota-controller`):
//! keeps each ResourceQuota's `status.hard` equal to `spec.hard` and
//! recomputes `status.used` from the namespace's objects, when a quota is
//! added or its spec changes, when a tracked object is deleted or its usage
//! changes (a pod finishing), and every `--resource-quota-sync-period`, so
//! usage released by deletions comes back. The evaluation is shared with
//! the API server's quota admission (`skiff_api::quota`).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, ReplicationController, ResourceQuota, ResourceQuotaStatus,
    Secret, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, ListParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use serde::Serialize;
use serde_json::Value;
use skiff_api::quota::{self, Evaluator, ResourceList};
use tokio::sync::watch;

use crate::cached_pod::CachedPod;
use crate::controller::{Action, Reconciler, SyncError, run_workers};
use crate::informer::{Informable, InformerFactory, NamespaceIndex, ResourceEventHandler};
use crate::podutil::key_of;
use crate::workqueue::WorkQueue;

#[cfg(test)]
mod tests;

/// The controller's name for `--controllers`.
pub const NAME: &str = "resourcequota";
/// `--concurrent-resource-quota-syncs` default.
pub const DEFAULT_WORKERS: usize = 5;
/// `--resource-quota-sync-period` default: a full recount of every quota.
pub const DEFAULT_SYNC_PERIOD: Duration = Duration::from_secs(5 * 60);

/// A namespace's objects of one kind, as JSON for the shared evaluators.
type Lister = Box<dyn Fn(&str) -> Vec<Value> + Send + Sync>;

/// The controller.
pub struct ResourceQuotaController {
    client: kube::Client,
    quotas: Store<ResourceQuota>,
    /// The evaluators backed by an informer, with their listers.
    evaluators: Vec<(Evaluator, Lister)>,
    queue: Arc<WorkQueue<String>>,
}

impl std::fmt::Debug for ResourceQuotaController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceQuotaController")
            .finish_non_exhaustive()
    }
}

/// `obj` as JSON (an object that does not serialize counts as empty).
fn to_value<K: Serialize>(obj: &K) -> Value {
    serde_json::to_value(obj).unwrap_or(Value::Null)
}

impl ResourceQuotaController {
    /// A controller on `factory`'s informers.
    pub fn new(client: kube::Client, factory: &InformerFactory) -> Arc<Self> {
        let quota_informer = factory.informer::<ResourceQuota>();
        let queue = Arc::new(factory.metrics().queue("resourcequota_primary"));
        let mut evaluators: Vec<(Evaluator, Lister)> = Vec::new();
        let quota_index = quota_informer.namespace_index();
        track::<CachedPod>(factory, "pods", &quota_index, &queue, &mut evaluators);
        track::<Service>(factory, "services", &quota_index, &queue, &mut evaluators);
        track::<PersistentVolumeClaim>(
            factory,
            "persistentvolumeclaims",
            &quota_index,
            &queue,
            &mut evaluators,
        );
        track::<ConfigMap>(factory, "configmaps", &quota_index, &queue, &mut evaluators);
        track::<Secret>(factory, "secrets", &quota_index, &queue, &mut evaluators);
        track::<ReplicationController>(
            factory,
            "replicationcontrollers",
            &quota_index,
            &queue,
            &mut evaluators,
        );
        let quota_lister = quota_index.clone();
        evaluators.push((
            Evaluator::for_resource("", "resourcequotas"),
            Box::new(move |ns| {
                quota_lister
                    .list(ns)
                    .iter()
                    .map(|o| to_value(&**o))
                    .collect()
            }),
        ));
        let c = Arc::new(ResourceQuotaController {
            client,
            quotas: quota_informer.store(),
            evaluators,
            queue,
        });
        quota_informer.add_event_handler(Arc::new(QuotaHandler(c.queue.clone())));
        c
    }

    /// The controller's work queue.
    pub fn queue(&self) -> Arc<WorkQueue<String>> {
        self.queue.clone()
    }

    /// Runs `workers` workers and the full resync every `sync_period` until
    /// `stop`.
    pub async fn run(
        self: Arc<Self>,
        workers: usize,
        sync_period: Duration,
        stop: watch::Receiver<bool>,
    ) {
        let resync = {
            let c = self.clone();
            let mut stop = stop.clone();
            async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(sync_period) => c.enqueue_all(),
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            }
        };
        let queue = self.queue.clone();
        tokio::join!(run_workers(self, queue, workers, stop), resync);
    }

    /// Queues every quota (upstream's `enqueueAll`).
    pub fn enqueue_all(&self) {
        for q in self.quotas.state() {
            self.queue.add(key_of(&q.metadata));
        }
    }

    async fn sync_quota(&self, key: &str) -> Result<Action, SyncError> {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        let Some(rq) = self.quotas.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(Action::Await);
        };
        let quota_json = to_value(&*rq);
        let hard = quota::resource_list(quota_json.pointer("/spec/hard"));
        let previous = quota::resource_list(quota_json.pointer("/status/used"));
        let status_hard = quota::resource_list(quota_json.pointer("/status/hard"));
        let mut evaluated: Vec<(Evaluator, Vec<Value>)> = self
            .evaluators
            .iter()
            .filter(|(e, _)| !e.matching_resources(hard.keys()).is_empty())
            .map(|(e, list)| (e.clone(), list(ns)))
            .collect();
        evaluated.extend(self.count_other_resources(ns, &hard).await?);
        let used = quota::calculate_used(
            &quota_json,
            &hard,
            &previous,
            evaluated.iter().map(|(e, v)| (e, v.as_slice())),
            now_unix(),
        );
        if quota::equals(&hard, &status_hard) && quota::equals(&used, &previous) {
            return Ok(Action::Await);
        }
        let mut fresh = (*rq).clone();
        fresh.status = Some(ResourceQuotaStatus {
            hard: Some(to_k8s(&hard)),
            used: Some(to_k8s(&used)),
        });
        let api: Api<ResourceQuota> = Api::namespaced(self.client.clone(), ns);
        match api
            .replace_status(name, &PostParams::default(), &fresh)
            .await
        {
            Ok(_) => Ok(Action::Await),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::Await),
            Err(e) => Err(e.into()),
        }
    }

    /// `count/<resource>.<group>` names no informer-backed evaluator
    /// tracks: the objects listed from the API server.
    async fn count_other_resources(
        &self,
        ns: &str,
        hard: &ResourceList,
    ) -> Result<Vec<(Evaluator, Vec<Value>)>, SyncError> {
        let mut out = Vec::new();
        for name in hard.keys() {
            let Some(resource) = name.strip_prefix("count/") else {
                continue;
            };
            let known = self
                .evaluators
                .iter()
                .any(|(e, _)| !e.matching_resources([name]).is_empty());
            if known {
                continue;
            }
            let Some(info) = skiff_api::resources::resolve(resource)
                .into_iter()
                .find(|i| quota::object_count_name(i.group, i.plural) == *name)
            else {
                continue;
            };
            let ar = ApiResource {
                group: info.group.to_owned(),
                version: info.version.to_owned(),
                api_version: if info.group.is_empty() {
                    info.version.to_owned()
                } else {
                    format!("{}/{}", info.group, info.version)
                },
                kind: info.kind.to_owned(),
                plural: info.plural.to_owned(),
            };
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &ar);
            let items = api.list_metadata(&ListParams::default()).await?.items;
            out.push((
                Evaluator::for_resource(info.group, info.plural),
                items.iter().map(|_| Value::Null).collect(),
            ));
        }
        Ok(out)
    }
}

/// A `ResourceList` as the API's quantities.
fn to_k8s(list: &ResourceList) -> std::collections::BTreeMap<String, K8sQuantity> {
    list.iter()
        .map(|(k, q)| (k.clone(), K8sQuantity(q.to_string())))
        .collect()
}

/// Seconds since the Unix epoch.
fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Registers `K`'s informer (plural `resource` of the core group) as an
/// evaluated kind whose deletions and usage changes requeue its
/// namespace's quotas (upstream's replenishment).
fn track<K: Informable + Serialize>(
    factory: &InformerFactory,
    resource: &str,
    quotas: &Arc<NamespaceIndex<ResourceQuota>>,
    queue: &Arc<WorkQueue<String>>,
    evaluators: &mut Vec<(Evaluator, Lister)>,
) {
    let informer = factory.informer::<K>();
    let index = informer.namespace_index();
    let evaluator = Evaluator::for_resource("", resource);
    informer.add_event_handler(Arc::new(Replenish {
        evaluator: evaluator.clone(),
        quotas: quotas.clone(),
        queue: queue.clone(),
    }));
    evaluators.push((
        evaluator,
        Box::new(move |ns| index.list(ns).iter().map(|o| to_value(&**o)).collect()),
    ));
}

/// Queues the quotas of an object's namespace when usage may have gone
/// down.
struct Replenish {
    evaluator: Evaluator,
    quotas: Arc<NamespaceIndex<ResourceQuota>>,
    queue: Arc<WorkQueue<String>>,
}

impl Replenish {
    fn enqueue_namespace(&self, ns: &str) {
        for q in self.quotas.list(ns) {
            let tracks = q
                .spec
                .as_ref()
                .and_then(|s| s.hard.as_ref())
                .is_some_and(|h| !self.evaluator.matching_resources(h.keys()).is_empty());
            if tracks {
                self.queue.add(key_of(&q.metadata));
            }
        }
    }
}

impl<K: Informable + Serialize> ResourceEventHandler<K> for Replenish {
    fn on_add(&self, _obj: &Arc<K>) {}

    fn on_update(&self, old: &Arc<K>, new: &Arc<K>) {
        // Most namespaces have no quota: then nothing is to be queued, and
        // the two usages (each a JSON rendering of the object, on every
        // pod status change) need not be computed.
        let ns = new.meta().namespace.as_deref().unwrap_or("");
        if self.quotas.list(ns).is_empty() {
            return;
        }
        let now = now_unix();
        let before = self.evaluator.usage(&to_value(&**old), now);
        let after = self.evaluator.usage(&to_value(&**new), now);
        if !quota::equals(&before, &after) {
            self.enqueue_namespace(ns);
        }
    }

    fn on_delete(&self, obj: &Arc<K>) {
        self.enqueue_namespace(obj.meta().namespace.as_deref().unwrap_or(""));
    }
}

/// Queues a quota when it appears or its `spec.hard` changes (its status
/// changes are this controller's and admission's own writes).
struct QuotaHandler(Arc<WorkQueue<String>>);

impl ResourceEventHandler<ResourceQuota> for QuotaHandler {
    fn on_add(&self, q: &Arc<ResourceQuota>) {
        self.0.add(key_of(&q.metadata));
    }

    fn on_update(&self, old: &Arc<ResourceQuota>, new: &Arc<ResourceQuota>) {
        let hard = |q: &ResourceQuota| q.spec.as_ref().and_then(|s| s.hard.clone());
        let status_hard = |q: &ResourceQuota| q.status.as_ref().and_then(|s| s.hard.clone());
        // A quota whose status was never written (or was reset) is also
        // queued, as upstream's missing-usage queue does.
        if hard(old) != hard(new) || status_hard(new).is_none() {
            self.0.add(key_of(&new.metadata));
        }
    }

    fn on_delete(&self, _q: &Arc<ResourceQuota>) {}
}

impl Reconciler for ResourceQuotaController {
    fn name(&self) -> &str {
        NAME
    }

    fn sync(
        &self,
        key: &str,
    ) -> impl std::future::Future<Output = Result<Action, SyncError>> + Send {
        self.sync_quota(key)
    }
}
