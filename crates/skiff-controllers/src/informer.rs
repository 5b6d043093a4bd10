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

/// One resource type's shared informer: its store and handlers.
pub struct SharedInformer<K: Informable> {
    store: Store<K>,
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
        tasks.spawn(run_informer(api, writer, store, handlers, shutdown));
    }
}

fn notify<K>(handlers: &Handlers<K>, f: impl Fn(&dyn ResourceEventHandler<K>)) {
    let hs = handlers.read().unwrap_or_else(|e| e.into_inner()).clone();
    for h in hs {
        f(h.as_ref());
    }
}

async fn run_informer<K: Informable>(
    api: Api<K>,
    mut writer: reflector::store::Writer<K>,
    store: Store<K>,
    handlers: Handlers<K>,
    mut shutdown: watch::Receiver<bool>,
) {
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    // Objects of a relist in progress: handlers hear of them once the
    // store holds the whole new list.
    let mut relist: Vec<Arc<K>> = Vec::new();
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
            watcher::Event::InitApply(obj) => relist.push(Arc::new(obj.clone())),
            watcher::Event::InitDone => {
                let listed: Vec<(Option<Arc<K>>, Arc<K>)> = relist
                    .drain(..)
                    .map(|o| (store.get(&ObjectRef::from_obj(o.as_ref())), o))
                    .collect();
                let seen: std::collections::HashSet<ObjectRef<K>> = listed
                    .iter()
                    .map(|(_, o)| ObjectRef::from_obj(o.as_ref()))
                    .collect();
                let gone: Vec<Arc<K>> = store
                    .state()
                    .into_iter()
                    .filter(|o| !seen.contains(&ObjectRef::from_obj(o.as_ref())))
                    .collect();
                writer.apply_watcher_event(&ev);
                for (old, new) in &listed {
                    let new = store
                        .get(&ObjectRef::from_obj(new.as_ref()))
                        .unwrap_or(new.clone());
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
                match old {
                    Some(old) => notify(&handlers, |h| h.on_update(&old, &new)),
                    None => notify(&handlers, |h| h.on_add(&new)),
                }
            }
            watcher::Event::Delete(obj) => {
                writer.apply_watcher_event(&ev);
                let obj = Arc::new(obj.clone());
                notify(&handlers, |h| h.on_delete(&obj));
            }
            _ => writer.apply_watcher_event(&ev),
        }
    }
}

type Starter = Box<dyn Fn(&mut JoinSet<()>, watch::Receiver<bool>) + Send>;
type SyncWaiter = Box<dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send>;

/// Hands out one [`SharedInformer`] per resource type.
pub struct InformerFactory {
    client: kube::Client,
    informers: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    starters: Mutex<Vec<Starter>>,
    syncs: Mutex<Vec<SyncWaiter>>,
}

impl std::fmt::Debug for InformerFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InformerFactory").finish_non_exhaustive()
    }
}

impl InformerFactory {
    /// A factory whose informers watch through `client` (all namespaces).
    pub fn new(client: kube::Client) -> Self {
        InformerFactory {
            client,
            informers: Mutex::new(HashMap::new()),
            starters: Mutex::new(Vec::new()),
            syncs: Mutex::new(Vec::new()),
        }
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
