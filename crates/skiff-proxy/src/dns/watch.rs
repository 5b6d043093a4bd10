//! Keeps [`ClusterData`] in step with the API: one watcher (kube-runtime)
//! per kind; a relist replaces that kind's data at once. `synced` turns true
//! once every kind has been listed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource};

use super::data::ClusterData;

/// One watcher's event, tagged with its kind.
#[derive(Debug)]
enum Change {
    Namespace(Box<Event<Namespace>>),
    Service(Box<Event<Service>>),
    Slice(Box<Event<EndpointSlice>>),
}

fn watch<K>(
    client: &kube::Client,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + use<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + 'static,
{
    watcher::watcher(Api::<K>::all(client.clone()), watcher::Config::default()).default_backoff()
}

/// Relist buffers and "listed once" flags of the three kinds.
#[derive(Debug, Default)]
struct Relists {
    namespaces: Option<Vec<Namespace>>,
    services: Option<Vec<Service>>,
    slices: Option<Vec<EndpointSlice>>,
    listed: [bool; 3],
}

/// Runs until `shutdown`.
pub async fn run(
    client: kube::Client,
    data: Arc<RwLock<ClusterData>>,
    synced: Arc<AtomicBool>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let streams = futures::stream::select_all([
        watch::<Namespace>(&client)
            .map(|e| e.map(|e| Change::Namespace(Box::new(e))))
            .boxed(),
        watch::<Service>(&client)
            .map(|e| e.map(|e| Change::Service(Box::new(e))))
            .boxed(),
        watch::<EndpointSlice>(&client)
            .map(|e| e.map(|e| Change::Slice(Box::new(e))))
            .boxed(),
    ]);
    let mut streams = std::pin::pin!(streams);
    let mut relists = Relists::default();
    loop {
        let change = tokio::select! {
            c = streams.next() => c,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let change = match change {
            Some(Ok(c)) => c,
            Some(Err(err)) => {
                tracing::debug!(error = %err, "cluster DNS watch error; retrying");
                continue;
            }
            None => return,
        };
        let mut data = data.write().unwrap_or_else(|e| e.into_inner());
        if apply(&mut data, &mut relists, change) {
            data.set_serial(now());
        }
        drop(data);
        if relists.listed.iter().all(|l| *l) && !synced.load(Ordering::Acquire) {
            tracing::info!("cluster DNS has listed Namespaces, Services and EndpointSlices");
            synced.store(true, Ordering::Release);
        }
    }
}

fn now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

fn name_of<K: Resource>(obj: &K) -> (&str, &str) {
    let m = obj.meta();
    (
        m.namespace.as_deref().unwrap_or_default(),
        m.name.as_deref().unwrap_or_default(),
    )
}

/// Applies one event; whether the data changed.
fn apply(data: &mut ClusterData, relists: &mut Relists, change: Change) -> bool {
    match change {
        Change::Namespace(ev) => match *ev {
            Event::Init => relists.namespaces = Some(Vec::new()),
            Event::InitApply(ns) => relists.namespaces.get_or_insert_default().push(ns),
            Event::InitDone => {
                let list = relists.namespaces.take().unwrap_or_default();
                data.replace_namespaces(list.iter().filter_map(|n| n.metadata.name.as_deref()));
                relists.listed[0] = true;
                return true;
            }
            Event::Apply(ns) => {
                data.add_namespace(name_of(&ns).1);
                return true;
            }
            Event::Delete(ns) => {
                data.remove_namespace(name_of(&ns).1);
                return true;
            }
        },
        Change::Service(ev) => match *ev {
            Event::Init => relists.services = Some(Vec::new()),
            Event::InitApply(svc) => relists.services.get_or_insert_default().push(svc),
            Event::InitDone => {
                data.replace_services(&relists.services.take().unwrap_or_default());
                relists.listed[1] = true;
                return true;
            }
            Event::Apply(svc) => {
                data.apply_service(&svc);
                return true;
            }
            Event::Delete(svc) => {
                let (ns, name) = name_of(&svc);
                data.remove_service(ns, name);
                return true;
            }
        },
        Change::Slice(ev) => match *ev {
            Event::Init => relists.slices = Some(Vec::new()),
            Event::InitApply(s) => relists.slices.get_or_insert_default().push(s),
            Event::InitDone => {
                data.replace_slices(&relists.slices.take().unwrap_or_default());
                relists.listed[2] = true;
                return true;
            }
            Event::Apply(s) => {
                data.apply_slice(&s);
                return true;
            }
            Event::Delete(s) => {
                let (ns, name) = name_of(&s);
                data.remove_slice(ns, name);
                return true;
            }
        },
    }
    false
}
