//! Shared informers, as client-go's `SharedInformerFactory` on kube-runtime:
//! one watcher and one reflector store per resource type, however many
//! controllers use it; handlers are told of adds, updates (with the old
//! object) and deletes after the store has the change, and a relist
//! reports what changed while the watch was down.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use futures::StreamExt;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::metrics::ControllerMetrics;

/// What a resource type needs to be informed on.
pub trait Informable:
    kube::Resource<DynamicType = ()>
    + Clone
    + std::fmt::Debug
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
}
impl<K> Informable for K where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// Reacts to changes of one resource type; must only enqueue work, quickly.
pub trait ResourceEventHandler<K>: Send + Sync {
    /// `obj` appeared.
    fn on_add(&self, obj: &Arc<K>);
    /// `old` became `new` (also on a relist, with equal resourceVersions).
    fn on_update(&self, old: &Arc<K>, new: &Arc<K>);
    /// `obj` went away (its last known state).
    fn on_delete(&self, obj: &Arc<K>);
}

type Handlers<K> = Arc<RwLock<Vec<Arc<dyn ResourceEventHandler<K>>>>>;

/// Objects by bucket, then by namespace and name.
type Buckets<B, K> = HashMap<B, HashMap<(String, String), Arc<K>>>;

/// An informer's objects grouped by a key each object computes (one of
/// client-go's indexers), then by namespace and name, so a controller
/// reads one group instead of scanning the whole cache.
pub struct Index<B, K> {
    bucket_of: fn(&K) -> B,
    buckets: RwLock<Buckets<B, K>>,
}

impl<B, K> std::fmt::Debug for Index<B, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").finish_non_exhaustive()
    }
}

impl<B: Eq + std::hash::Hash, K: Informable> Index<B, K> {
    fn new(bucket_of: fn(&K) -> B) -> Self {
        Index {
            bucket_of,
            buckets: RwLock::new(HashMap::new()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Buckets<B, K>> {
        self.buckets.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Buckets<B, K>> {
        self.buckets.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The objects of one bucket.
    fn bucket<Q>(&self, bucket: &Q) -> Vec<Arc<K>>
    where
        B: std::borrow::Borrow<Q>,
        Q: Eq + std::hash::Hash + ?Sized,
    {
        self.read()
            .get(bucket)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    fn key(obj: &K) -> (String, String) {
        let m = obj.meta();
        (
            m.namespace.clone().unwrap_or_default(),
            m.name.clone().unwrap_or_default(),
        )
    }

    /// Stores `obj`, which was `old` (then in `old`'s bucket) if known.
    fn put(&self, old: Option<&K>, obj: Arc<K>) {
        let bucket = (self.bucket_of)(&obj);
        let key = Self::key(&obj);
        let mut idx = self.write();
        if let Some(old) = old {
            let was = (self.bucket_of)(old);
            if was != bucket {
                Self::remove_from(&mut idx, was, &key);
            }
        }
        idx.entry(bucket).or_default().insert(key, obj);
    }

    /// Forgets `obj`, found in the bucket of any of `states`.
    fn remove(&self, states: &[&K]) {
        let Some(first) = states.first() else { return };
        let key = Self::key(first);
        let mut idx = self.write();
        for obj in states {
            Self::remove_from(&mut idx, (self.bucket_of)(obj), &key);
        }
    }

    fn remove_from(idx: &mut Buckets<B, K>, bucket: B, key: &(String, String)) {
        if let Some(m) = idx.get_mut(&bucket) {
            m.remove(key);
            if m.is_empty() {
                idx.remove(&bucket);
            }
        }
    }

    fn rebuild(&self, all: &[Arc<K>]) {
        let mut fresh: Buckets<B, K> = HashMap::new();
        for o in all {
            fresh
                .entry((self.bucket_of)(o))
                .or_default()
                .insert(Self::key(o), o.clone());
        }
        *self.write() = fresh;
    }
}

/// An informer's objects by namespace (upstream's namespace indexer), so
/// a controller lists one namespace without scanning all.
pub type NamespaceIndex<K> = Index<String, K>;

impl<K: Informable> Index<String, K> {
    /// The objects in `namespace` ("" for cluster-scoped ones).
    pub fn list(&self, namespace: &str) -> Vec<Arc<K>> {
        self.bucket(namespace)
    }

    /// The object `namespace/name`, if cached.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.read()
            .get(namespace)?
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }
}

/// A group of [`ControllerIndex`]: the objects one controller owns, or the
/// orphans (no controller) of one namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ControllerKey {
    /// Objects whose controllerRef has this UID.
    Controller(String),
    /// Objects of this namespace without a controllerRef.
    Orphan(String),
}

impl ControllerKey {
    fn of<K: Informable>(obj: &K) -> ControllerKey {
        let m = obj.meta();
        match crate::podutil::controller_of(m) {
            Some(r) => ControllerKey::Controller(r.uid.clone()),
            None => ControllerKey::Orphan(m.namespace.clone().unwrap_or_default()),
        }
    }
}

/// An informer's objects by controller UID, orphans by namespace
/// (upstream's controller-UID pod indexer): a controller reads its own
/// objects and the orphans it may adopt without scanning the namespace.
pub type ControllerIndex<K> = Index<ControllerKey, K>;

impl<K: Informable> Index<ControllerKey, K> {
    /// The objects in `namespace` whose controllerRef has `uid`, and the
    /// orphans of `namespace` (upstream's `FilterPodsByOwner` with
    /// orphans included): everything a claim by that owner looks at.
    pub fn owned_or_orphaned(&self, namespace: &str, uid: &str) -> Vec<Arc<K>> {
        let idx = self.read();
        let owned = idx
            .get(&ControllerKey::Controller(uid.to_owned()))
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|o| o.meta().namespace.as_deref().unwrap_or("") == namespace);
        let orphans = idx
            .get(&ControllerKey::Orphan(namespace.to_owned()))
            .into_iter()
            .flat_map(|m| m.values());
        owned.chain(orphans).cloned().collect()
    }
}

/// The indexes every shared informer keeps up to date.
#[derive(Debug)]
struct Indexes<K> {
    namespace: Arc<NamespaceIndex<K>>,
    controller: Arc<ControllerIndex<K>>,
}

impl<K> Clone for Indexes<K> {
    fn clone(&self) -> Self {
        Indexes {
            namespace: self.namespace.clone(),
            controller: self.controller.clone(),
        }
    }
}

impl<K: Informable> Indexes<K> {
    fn new() -> Self {
        Indexes {
            namespace: Arc::new(Index::new(|o: &K| {
                o.meta().namespace.clone().unwrap_or_default()
            })),
            controller: Arc::new(Index::new(ControllerKey::of::<K>)),
        }
    }

    fn put(&self, old: Option<&K>, obj: Arc<K>) {
        self.namespace.put(old, obj.clone());
        self.controller.put(old, obj);
    }

    fn remove(&self, states: &[&K]) {
        self.namespace.remove(states);
        self.controller.remove(states);
    }

    fn rebuild(&self, all: &[Arc<K>]) {
        self.namespace.rebuild(all);
        self.controller.rebuild(all);
    }
}

/// One resource type's shared informer: its store and handlers.
pub struct SharedInformer<K: Informable> {
    store: Store<K>,
    indexes: Indexes<K>,
    writer: Mutex<Option<reflector::store::Writer<K>>>,
    handlers: Handlers<K>,
    api: Api<K>,
}

impl<K: Informable> std::fmt::Debug for SharedInformer<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedInformer")
            .field("kind", &K::kind(&()))
            .field("objects", &self.store.len())
            .finish_non_exhaustive()
    }
}

impl<K: Informable> SharedInformer<K> {
    /// The informer's cache (upstream's lister).
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// The informer's namespace index.
    pub fn namespace_index(&self) -> Arc<NamespaceIndex<K>> {
        self.indexes.namespace.clone()
    }

    /// The informer's controller-UID index.
    pub fn controller_index(&self) -> Arc<ControllerIndex<K>> {
        self.indexes.controller.clone()
    }

    /// Adds a handler. Register before [`InformerFactory::start`]: a handler
    /// added later hears only of later changes.
    pub fn add_event_handler(&self, handler: Arc<dyn ResourceEventHandler<K>>) {
        self.handlers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(handler);
    }

    /// Starts watching (once; later calls do nothing).
    fn start(&self, tasks: &mut JoinSet<()>, shutdown: watch::Receiver<bool>) {
        let Some(writer) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let api = self.api.clone();
        let store = self.store.clone();
        let handlers = self.handlers.clone();
        let indexes = self.indexes.clone();
        // As kube-controller-manager's informers do: no controller reads
        // managedFields, and they are often half of an object's size.
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(|obj| obj.meta_mut().managed_fields = None);
        tasks.spawn(run_informer(
            stream, writer, store, indexes, handlers, shutdown,
        ));
    }
}

fn notify<K>(handlers: &Handlers<K>, f: impl Fn(&dyn ResourceEventHandler<K>)) {
    let hs = handlers.read().unwrap_or_else(|e| e.into_inner()).clone();
    for h in hs {
        f(h.as_ref());
    }
}

/// Feeds `stream` (a watcher's events) into the store and the handlers.
async fn run_informer<K: Informable>(
    stream: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    mut writer: reflector::store::Writer<K>,
    store: Store<K>,
    indexes: Indexes<K>,
    handlers: Handlers<K>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut stream = std::pin::pin!(stream);
    // What a relist in progress has listed so far (the writer buffers the
    // objects themselves): handlers hear of them once the store holds the
    // whole new list.
    let mut relist: Vec<ObjectRef<K>> = Vec::new();
    loop {
        let ev = tokio::select! {
            ev = stream.next() => ev,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let ev = match ev {
            Some(Ok(ev)) => ev,
            Some(Err(err)) => {
                tracing::debug!(kind = %K::kind(&()), error = %err, "watch error; retrying");
                continue;
            }
            None => return,
        };
        match &ev {
            watcher::Event::Init => relist.clear(),
            watcher::Event::InitApply(obj) => relist.push(ObjectRef::from_obj(obj)),
            watcher::Event::InitDone => {
                let listed: Vec<(Option<Arc<K>>, ObjectRef<K>)> =
                    relist.drain(..).map(|r| (store.get(&r), r)).collect();
                let seen: std::collections::HashSet<&ObjectRef<K>> =
                    listed.iter().map(|(_, r)| r).collect();
                let gone: Vec<Arc<K>> = store
                    .state()
                    .into_iter()
                    .filter(|o| !seen.contains(&ObjectRef::from_obj(o.as_ref())))
                    .collect();
                writer.apply_watcher_event(&ev);
                indexes.rebuild(&store.state());
                for (old, r) in &listed {
                    let Some(new) = store.get(r) else { continue };
                    match old {
                        Some(old) => notify(&handlers, |h| h.on_update(old, &new)),
                        None => notify(&handlers, |h| h.on_add(&new)),
                    }
                }
                for obj in &gone {
                    notify(&handlers, |h| h.on_delete(obj));
                }
                continue;
            }
            _ => {}
        }
        match &ev {
            watcher::Event::Apply(obj) => {
                let r = ObjectRef::from_obj(obj);
                let old = store.get(&r);
                writer.apply_watcher_event(&ev);
                let Some(new) = store.get(&r) else { continue };
                indexes.put(old.as_deref(), new.clone());
                match old {
                    Some(old) => notify(&handlers, |h| h.on_update(&old, &new)),
                    None => notify(&handlers, |h| h.on_add(&new)),
                }
            }
            watcher::Event::Delete(obj) => {
                let stored = store.get(&ObjectRef::from_obj(obj));
                writer.apply_watcher_event(&ev);
                let mut states = vec![obj];
                states.extend(stored.as_deref());
                indexes.remove(&states);
                let obj = Arc::new(obj.clone());
                notify(&handlers, |h| h.on_delete(&obj));
            }
            _ => writer.apply_watcher_event(&ev),
        }
    }
}

type Starter = Box<dyn Fn(&mut JoinSet<()>, watch::Receiver<bool>) + Send>;
type SyncWaiter = Box<dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send>;

/// Hands out one [`SharedInformer`] per resource type, and the manager's
/// [`ControllerMetrics`] the controllers built on it create their queues
/// through.
pub struct InformerFactory {
    client: kube::Client,
    informers: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    starters: Mutex<Vec<Starter>>,
    syncs: Mutex<Vec<SyncWaiter>>,
    metrics: ControllerMetrics,
}

impl std::fmt::Debug for InformerFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InformerFactory").finish_non_exhaustive()
    }
}

impl InformerFactory {
    /// A factory whose informers watch through `client` (all namespaces),
    /// with metrics of its own that nobody serves.
    pub fn new(client: kube::Client) -> Self {
        InformerFactory::with_metrics(client, ControllerMetrics::new())
    }

    /// [`InformerFactory::new`], its controllers reporting to `metrics`.
    pub fn with_metrics(client: kube::Client, metrics: ControllerMetrics) -> Self {
        InformerFactory {
            client,
            informers: Mutex::new(HashMap::new()),
            starters: Mutex::new(Vec::new()),
            syncs: Mutex::new(Vec::new()),
            metrics,
        }
    }

    /// The metrics the controllers on this factory report to (create their
    /// queues with [`ControllerMetrics::queue`]).
    pub fn metrics(&self) -> &ControllerMetrics {
        &self.metrics
    }

    /// The shared informer of `K`, created on first use.
    pub fn informer<K: Informable>(&self) -> Arc<SharedInformer<K>> {
        let mut informers = self.informers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = informers.get(&TypeId::of::<K>())
            && let Ok(inf) = existing.clone().downcast::<SharedInformer<K>>()
        {
            return inf;
        }
        let (store, writer) = reflector::store();
        let inf = Arc::new(SharedInformer {
            store,
            indexes: Indexes::new(),
            writer: Mutex::new(Some(writer)),
            handlers: Arc::default(),
            api: Api::all(self.client.clone()),
        });
        informers.insert(TypeId::of::<K>(), inf.clone());
        let starter = inf.clone();
        self.starters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(move |tasks, shutdown| {
                starter.start(tasks, shutdown)
            }));
        let synced = inf.store.clone();
        self.syncs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(move || {
                let s = synced.clone();
                Box::pin(async move {
                    let _ = s.wait_until_ready().await;
                })
            }));
        inf
    }

    /// Starts every informer asked for so far (each once) on `tasks`.
    pub fn start(&self, tasks: &mut JoinSet<()>, shutdown: watch::Receiver<bool>) {
        for start in self
            .starters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            start(tasks, shutdown.clone());
        }
    }

    /// Waits until every informer has listed once.
    pub async fn wait_for_cache_sync(&self) {
        let futs: Vec<_> = self
            .syncs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|f| f())
            .collect();
        futures::future::join_all(futs).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;

    use super::*;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl ResourceEventHandler<ConfigMap> for Recorder {
        fn on_add(&self, o: &Arc<ConfigMap>) {
            self.0.lock().unwrap().push(format!("add {}", name(o)));
        }
        fn on_update(&self, old: &Arc<ConfigMap>, new: &Arc<ConfigMap>) {
            self.0
                .lock()
                .unwrap()
                .push(format!("update {} {}->{}", name(new), rv(old), rv(new)));
        }
        fn on_delete(&self, o: &Arc<ConfigMap>) {
            self.0.lock().unwrap().push(format!("delete {}", name(o)));
        }
    }

    fn name(o: &ConfigMap) -> &str {
        o.metadata.name.as_deref().unwrap()
    }
    fn rv(o: &ConfigMap) -> &str {
        o.metadata.resource_version.as_deref().unwrap()
    }

    fn cm(name: &str, rv: &str) -> ConfigMap {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv}
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn handlers_see_adds_updates_deletes_and_relist_differences() {
        use watcher::Event::*;
        let events: Vec<Result<watcher::Event<ConfigMap>, watcher::Error>> = vec![
            Ok(Init),
            Ok(InitApply(cm("a", "1"))),
            Ok(InitApply(cm("b", "1"))),
            Ok(InitDone),
            Ok(Apply(cm("c", "2"))),
            Ok(Apply(cm("a", "3"))),
            Ok(Delete(cm("c", "4"))),
            // A relist after the watch broke: b went away, d appeared.
            Ok(Init),
            Ok(InitApply(cm("a", "3"))),
            Ok(InitApply(cm("d", "5"))),
            Ok(InitDone),
        ];
        let (store, writer) = reflector::store::<ConfigMap>();
        let rec = Arc::new(Recorder::default());
        let handlers: Handlers<ConfigMap> = Arc::new(RwLock::new(vec![rec.clone()]));
        let (_tx, rx) = watch::channel(false);
        let indexes = Indexes::new();
        run_informer(
            futures::stream::iter(events),
            writer,
            store.clone(),
            indexes.clone(),
            handlers,
            rx,
        )
        .await;
        let index = indexes.namespace;
        let mut indexed: Vec<String> = index
            .list("ns")
            .iter()
            .map(|o| name(o).to_owned())
            .collect();
        indexed.sort();
        assert_eq!(indexed, ["a", "d"]);
        assert!(index.list("other").is_empty());
        assert_eq!(
            *rec.0.lock().unwrap(),
            [
                "add a",
                "add b",
                "add c",
                "update a 1->3",
                "delete c",
                "update a 3->3",
                "add d",
                "delete b",
            ]
        );
        let mut names: Vec<String> = store.state().iter().map(|o| name(o).to_owned()).collect();
        names.sort();
        assert_eq!(names, ["a", "d"]);
    }

    /// A ConfigMap in `ns`, controlled by `owner` (a UID) if given.
    fn owned(name: &str, ns: &str, rv: &str, owner: Option<&str>) -> ConfigMap {
        let refs: Vec<serde_json::Value> = owner
            .iter()
            .map(|uid| {
                serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "o",
                    "uid": uid, "controller": true})
            })
            .collect();
        serde_json::from_value(serde_json::json!({"metadata": {
            "name": name, "namespace": ns, "resourceVersion": rv, "ownerReferences": refs,
        }}))
        .unwrap()
    }

    fn names(objs: Vec<Arc<ConfigMap>>) -> Vec<String> {
        let mut n: Vec<String> = objs.iter().map(|o| name(o).to_owned()).collect();
        n.sort();
        n
    }

    #[tokio::test]
    async fn controller_index_follows_adoption_release_and_deletion() {
        use watcher::Event::*;
        let events: Vec<Result<watcher::Event<ConfigMap>, watcher::Error>> = vec![
            Ok(Init),
            Ok(InitApply(owned("p1", "ns", "1", Some("u1")))),
            Ok(InitApply(owned("p2", "ns", "1", None))),
            Ok(InitApply(owned("q1", "ns", "1", Some("u2")))),
            Ok(InitApply(owned("r1", "other", "1", Some("u1")))),
            Ok(InitApply(owned("r2", "other", "1", None))),
            Ok(InitDone),
            // p2 adopted by u1, p1 released.
            Ok(Apply(owned("p2", "ns", "2", Some("u1")))),
            Ok(Apply(owned("p1", "ns", "3", None))),
            Ok(Delete(owned("q1", "ns", "4", Some("u2")))),
            // Deleted in a state other than the one cached.
            Ok(Apply(owned("p3", "ns", "5", Some("u1")))),
            Ok(Delete(owned("p3", "ns", "6", None))),
        ];
        let (store, writer) = reflector::store::<ConfigMap>();
        let (_tx, rx) = watch::channel(false);
        let indexes = Indexes::new();
        let handlers: Handlers<ConfigMap> = Arc::default();
        run_informer(
            futures::stream::iter(events),
            writer,
            store,
            indexes.clone(),
            handlers,
            rx,
        )
        .await;
        let idx = indexes.controller;
        assert_eq!(names(idx.owned_or_orphaned("ns", "u1")), ["p1", "p2"]);
        assert_eq!(names(idx.owned_or_orphaned("ns", "u2")), ["p1"]);
        assert_eq!(names(idx.owned_or_orphaned("other", "u1")), ["r1", "r2"]);
        assert_eq!(names(idx.owned_or_orphaned("other", "u2")), ["r2"]);
        assert!(idx.owned_or_orphaned("none", "u1").is_empty());
        assert_eq!(names(indexes.namespace.list("ns")), ["p1", "p2"]);
        assert_eq!(
            indexes.namespace.get("ns", "p2").map(|o| rv(&o).to_owned()),
            Some("2".to_owned())
        );
        assert!(indexes.namespace.get("ns", "q1").is_none());
    }
}
