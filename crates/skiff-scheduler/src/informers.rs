//! The scheduler's informers: kube-rs watchers on pods and nodes feeding
//! the cache and the queue, and reflectors on PVCs, PVs, StorageClasses,
//! namespaces, Services, ReplicationControllers, ReplicaSets and
//! StatefulSets behind [`ClusterLister`]. Every change that may make a
//! rejected pod fit is turned into a [`ClusterEvent`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{
    Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, ReplicationController, Service,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use skiff_client::Lean;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cache::{Cache, node_name};
use crate::framework::{ClusterEvent, ClusterLister, EventObjects, EventResource, action};
use crate::queue::SchedulingQueue;

/// [`ClusterLister`] over reflector stores.
#[derive(Clone)]
pub struct InformerLister {
    client: kube::Client,
    pvcs: Store<PersistentVolumeClaim>,
    pvs: Store<PersistentVolume>,
    storage_classes: Store<StorageClass>,
    namespaces: Store<Namespace>,
    services: Store<Service>,
    replication_controllers: Store<ReplicationController>,
    replica_sets: Store<ReplicaSet>,
    stateful_sets: Store<StatefulSet>,
    pdbs: Store<PodDisruptionBudget>,
}

impl InformerLister {
    /// Waits until every reflector has listed once (upstream's
    /// WaitForCacheSync), so the first decisions see Services and
    /// namespaces.
    pub async fn wait_until_ready(&self) {
        let _ = futures::join!(
            self.pvcs.wait_until_ready(),
            self.pvs.wait_until_ready(),
            self.storage_classes.wait_until_ready(),
            self.namespaces.wait_until_ready(),
            self.services.wait_until_ready(),
            self.replication_controllers.wait_until_ready(),
            self.replica_sets.wait_until_ready(),
            self.stateful_sets.wait_until_ready(),
            self.pdbs.wait_until_ready(),
        );
    }
}

impl std::fmt::Debug for InformerLister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InformerLister").finish_non_exhaustive()
    }
}

impl ClusterLister for InformerLister {
    fn pvc(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.pvcs.get(&ObjectRef::new(name).within(namespace))
    }
    fn pv(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.pvs.get(&ObjectRef::new(name))
    }
    fn storage_class(&self, name: &str) -> Option<Arc<StorageClass>> {
        self.storage_classes.get(&ObjectRef::new(name))
    }
    fn namespaces(&self) -> Vec<(String, BTreeMap<String, String>)> {
        self.namespaces
            .state()
            .iter()
            .map(|n| {
                (
                    n.metadata.name.clone().unwrap_or_default(),
                    n.metadata.labels.clone().unwrap_or_default(),
                )
            })
            .collect()
    }
    fn namespace_labels(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.namespaces
            .get(&ObjectRef::new(name))
            .map(|n| n.metadata.labels.clone().unwrap_or_default())
    }
    fn services(&self, namespace: &str) -> Vec<Arc<Service>> {
        self.services
            .state_filter(|s| s.metadata.namespace.as_deref() == Some(namespace))
    }
    fn replication_controller(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<Arc<ReplicationController>> {
        self.replication_controllers
            .get(&ObjectRef::new(name).within(namespace))
    }
    fn replica_set(&self, namespace: &str, name: &str) -> Option<Arc<ReplicaSet>> {
        self.replica_sets
            .get(&ObjectRef::new(name).within(namespace))
    }
    fn stateful_set(&self, namespace: &str, name: &str) -> Option<Arc<StatefulSet>> {
        self.stateful_sets
            .get(&ObjectRef::new(name).within(namespace))
    }
    fn api_client(&self) -> Option<kube::Client> {
        Some(self.client.clone())
    }
    fn pdbs(&self) -> Vec<Arc<PodDisruptionBudget>> {
        self.pdbs.state()
    }
}

fn spawn_reflector<K>(
    tasks: &mut JoinSet<()>,
    api: Api<K>,
    queue: QueueSlot,
    resource: Option<EventResource>,
) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()));
    tasks.spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            match stream.try_next().await {
                Ok(Some(ev)) => {
                    let act = match ev {
                        watcher::Event::Apply(_) => action::ADD | action::UPDATE,
                        watcher::Event::Delete(_) => action::DELETE,
                        _ => 0,
                    };
                    if let (Some(q), Some(resource)) = (queue.get(), resource)
                        && act != 0
                    {
                        q.move_all_to_active_or_backoff(ClusterEvent {
                            resource,
                            action: act,
                        });
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    tracing::debug!(error = %err, "watch error; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    });
    reader
}

/// The queue the listers report events to, set once it exists (the queue
/// is built from plugins, which are built with the listers).
pub type QueueSlot = Arc<std::sync::OnceLock<Arc<SchedulingQueue>>>;

/// Starts the listers' reflectors.
pub fn start_listers(
    client: &kube::Client,
    queue: &QueueSlot,
    tasks: &mut JoinSet<()>,
) -> InformerLister {
    InformerLister {
        client: client.clone(),
        pvcs: spawn_reflector(
            tasks,
            Api::all(client.clone()),
            queue.clone(),
            Some(EventResource::PersistentVolumeClaim),
        ),
        pvs: spawn_reflector(
            tasks,
            Api::all(client.clone()),
            queue.clone(),
            Some(EventResource::PersistentVolume),
        ),
        storage_classes: spawn_reflector(
            tasks,
            Api::all(client.clone()),
            queue.clone(),
            Some(EventResource::StorageClass),
        ),
        namespaces: spawn_reflector(
            tasks,
            Api::all(client.clone()),
            queue.clone(),
            Some(EventResource::Namespace),
        ),
        // No plugin re-queues on these (as upstream): they only shape
        // PodTopologySpread's default constraints for later attempts.
        services: spawn_reflector(tasks, Api::all(client.clone()), queue.clone(), None),
        replication_controllers: spawn_reflector(
            tasks,
            Api::all(client.clone()),
            queue.clone(),
            None,
        ),
        replica_sets: spawn_reflector(tasks, Api::all(client.clone()), queue.clone(), None),
        stateful_sets: spawn_reflector(tasks, Api::all(client.clone()), queue.clone(), None),
        // Budgets only steer preemption; no rejected pod waits on them.
        pdbs: spawn_reflector(tasks, Api::all(client.clone()), queue.clone(), None),
    }
}

/// What changed on a node, as action flags.
pub fn node_update_action(old: &Node, new: &Node) -> u32 {
    let mut a = 0;
    let alloc = |n: &Node| n.status.as_ref().and_then(|s| s.allocatable.clone());
    if alloc(old) != alloc(new) {
        a |= action::UPDATE_NODE_ALLOCATABLE;
    }
    if old.metadata.labels != new.metadata.labels {
        a |= action::UPDATE_NODE_LABEL;
    }
    let taints = |n: &Node| n.spec.as_ref().map(|s| (s.taints.clone(), s.unschedulable));
    if taints(old) != taints(new) {
        a |= action::UPDATE_NODE_TAINT;
    }
    let conds = |n: &Node| {
        n.status.as_ref().and_then(|s| {
            s.conditions.as_ref().map(|c| {
                c.iter()
                    .map(|c| (c.type_.clone(), c.status.clone()))
                    .collect::<Vec<_>>()
            })
        })
    };
    if conds(old) != conds(new) {
        a |= action::UPDATE_NODE_CONDITION;
    }
    if old.metadata.annotations != new.metadata.annotations {
        a |= action::UPDATE_NODE_ANNOTATION;
    }
    a
}

/// Watches nodes into the cache. `synced` turns true after the first list.
pub fn spawn_node_informer(
    tasks: &mut JoinSet<()>,
    client: kube::Client,
    cache: Arc<Cache>,
    queue: Arc<SchedulingQueue>,
    synced: watch::Sender<bool>,
) {
    // managedFields are skipped while decoding: nothing here reads them.
    let api: Api<Lean<Node>> = Api::all(client);
    tasks.spawn(async move {
        let mut known: HashMap<String, Arc<Node>> = HashMap::new();
        let mut seen: HashSet<String> = HashSet::new();
        let stream = watcher(api, watcher::Config::default());
        let mut stream = std::pin::pin!(stream);
        let apply = |known: &mut HashMap<String, Arc<Node>>, node: Node| {
            let node = Arc::new(node);
            let name = node.metadata.name.clone().unwrap_or_default();
            let old = known.insert(name, node.clone());
            cache.add_or_update_node(node.clone());
            let act = match &old {
                None => action::ADD,
                Some(old) => node_update_action(old, &node),
            };
            if act != 0 {
                queue.move_on_event(
                    ClusterEvent {
                        resource: EventResource::Node,
                        action: act,
                    },
                    &EventObjects::Node {
                        old,
                        new: Some(node),
                    },
                );
            }
        };
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Init) => seen.clear(),
                Ok(watcher::Event::InitApply(Lean(n))) => {
                    seen.insert(n.metadata.name.clone().unwrap_or_default());
                    apply(&mut known, n);
                }
                Ok(watcher::Event::InitDone) => {
                    let gone: Vec<String> = known
                        .keys()
                        .filter(|k| !seen.contains(*k))
                        .cloned()
                        .collect();
                    for k in gone {
                        known.remove(&k);
                        cache.remove_node(&k);
                    }
                    synced.send_replace(true);
                }
                Ok(watcher::Event::Apply(Lean(n))) => apply(&mut known, n),
                Ok(watcher::Event::Delete(Lean(n))) => {
                    let name = n.metadata.name.clone().unwrap_or_default();
                    known.remove(&name);
                    cache.remove_node(&name);
                }
                Err(err) => {
                    tracing::debug!(error = %err, "node watch error; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    });
}

fn pod_key(p: &Pod) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or(""),
        p.metadata.name.as_deref().unwrap_or("")
    )
}

/// Routes pod changes: assigned pods to the cache, pending pods of our
/// profiles to the queue.
#[derive(Debug)]
pub struct PodHandler {
    /// The profiles' scheduler names.
    pub scheduler_names: HashSet<String>,
    /// The cache.
    pub cache: Arc<Cache>,
    /// The queue.
    pub queue: Arc<SchedulingQueue>,
    known: HashMap<String, Arc<Pod>>,
}

impl PodHandler {
    /// A handler for the profiles named `scheduler_names`.
    pub fn new(
        scheduler_names: HashSet<String>,
        cache: Arc<Cache>,
        queue: Arc<SchedulingQueue>,
    ) -> PodHandler {
        PodHandler {
            scheduler_names,
            cache,
            queue,
            known: HashMap::new(),
        }
    }

    fn responsible(&self, pod: &Pod) -> bool {
        let name = pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or(crate::config::DEFAULT_SCHEDULER_NAME);
        self.scheduler_names.contains(name)
    }

    /// A pod was added or changed.
    pub fn apply(&mut self, pod: Pod) {
        let pod = Arc::new(pod);
        let key = pod_key(&pod);
        let old = self.known.insert(key.clone(), pod.clone());
        if node_name(&pod).is_some() {
            let was_pending = old.as_ref().is_some_and(|o| node_name(o).is_none());
            if was_pending {
                self.queue.delete(&key);
            }
            self.cache.add_or_update_pod(pod.clone());
            let act = match &old {
                Some(o) if !was_pending => {
                    if o.metadata.labels != pod.metadata.labels {
                        action::UPDATE_POD_LABEL
                    } else {
                        0
                    }
                }
                _ => action::ADD,
            };
            if act != 0 {
                // A pod that just got its node is an add, as upstream's
                // informers see it.
                let old = if was_pending { None } else { old };
                self.queue.move_on_event(
                    ClusterEvent {
                        resource: EventResource::Pod,
                        action: act,
                    },
                    &EventObjects::Pod {
                        old,
                        new: Some(pod.clone()),
                    },
                );
            }
            return;
        }
        if !self.responsible(&pod) {
            return;
        }
        if pod.metadata.deletion_timestamp.is_some() {
            self.queue.delete(&key);
            return;
        }
        match old {
            Some(old) => self.queue.update(old, pod),
            None => self.queue.add(pod),
        }
    }

    /// A pod was deleted.
    pub fn delete(&mut self, key: &str) {
        let Some(old) = self.known.remove(key) else {
            return;
        };
        if node_name(&old).is_none() {
            self.queue.delete(key);
        }
        // A pod seen only as pending may still be in the cache: assumed,
        // with its binding landed while the watch was down (a relist
        // reports only its deletion). It must not hold its node's room.
        let assigned = node_name(&old).is_some();
        if assigned || self.cache.pod_node(key).is_some() {
            self.cache.remove_pod(key);
            // Hints judge a deleted pod by its node: one known only as
            // pending gets no objects, so every hint queues.
            let objects = if assigned {
                EventObjects::Pod {
                    old: Some(old),
                    new: None,
                }
            } else {
                EventObjects::Unknown
            };
            self.queue.move_on_event(
                ClusterEvent {
                    resource: EventResource::Pod,
                    action: action::DELETE,
                },
                &objects,
            );
        }
    }
}

#[cfg(test)]
#[path = "informers_tests.rs"]
mod tests;

/// Watches pods through `handler`. `synced` turns true after the first list.
pub fn spawn_pod_informer(
    tasks: &mut JoinSet<()>,
    client: kube::Client,
    mut handler: PodHandler,
    synced: watch::Sender<bool>,
) {
    // managedFields are skipped while decoding: nothing here reads them.
    let api: Api<Lean<Pod>> = Api::all(client);
    tasks.spawn(async move {
        let mut seen: HashSet<String> = HashSet::new();
        let stream = watcher(api, watcher::Config::default());
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Init) => seen.clear(),
                Ok(watcher::Event::InitApply(Lean(p))) => {
                    seen.insert(pod_key(&p));
                    handler.apply(p);
                }
                Ok(watcher::Event::InitDone) => {
                    let gone: Vec<String> = handler
                        .known
                        .keys()
                        .filter(|k| !seen.contains(*k))
                        .cloned()
                        .collect();
                    for k in gone {
                        handler.delete(&k);
                    }
                    synced.send_replace(true);
                }
                Ok(watcher::Event::Apply(Lean(p))) => handler.apply(p),
                Ok(watcher::Event::Delete(Lean(p))) => handler.delete(&pod_key(&p)),
                Err(err) => {
                    tracing::debug!(error = %err, "pod watch error; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    });
}
