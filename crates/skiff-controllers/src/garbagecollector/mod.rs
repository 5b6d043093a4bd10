//! The garbage collector (upstream's `garbagecollector` package): monitors
//! every deletable resource, keeps the ownerReference graph, and
//! - deletes dependents whose owners are all gone (background),
//! - deletes the dependents of an owner being deleted in the foreground
//!   and then drops its `foregroundDeletion` finalizer,
//! - removes references to an owner deleted with the `orphan` policy from
//!   its dependents and then drops its `orphan` finalizer.

mod graph;
mod workers;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::discovery::{Discovery, Scope, verbs};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::controller::run_workers;
use crate::metrics::ControllerMetrics;
use crate::workqueue::WorkQueue;

pub use graph::{Graph, Identity, ObjectMetaView};
use workers::{AttemptToDelete, AttemptToOrphan};

/// Finalizer of an owner whose dependents are orphaned.
pub const ORPHAN_FINALIZER: &str = "orphan";
/// Finalizer of an owner deleted in the foreground.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// Workers per queue (`--concurrent-gc-syncs`).
pub const DEFAULT_WORKERS: usize = 20;

/// Resources the collector never watches (upstream's default ignored
/// resources: events are numerous and never owners).
const IGNORED: &[(&str, &str)] = &[("", "events"), ("events.k8s.io", "events")];

/// A resource the collector can act on.
#[derive(Debug, Clone)]
pub struct Resource {
    /// How to reach it.
    pub api: ApiResource,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
}

/// What the workers share.
pub struct Shared {
    pub(crate) client: kube::Client,
    pub(crate) graph: Mutex<Graph>,
    /// `apiVersion/kind` to resource.
    pub(crate) kinds: HashMap<(String, String), Resource>,
    pub(crate) attempt_to_delete: Arc<WorkQueue<String>>,
    pub(crate) attempt_to_orphan: Arc<WorkQueue<String>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("resources", &self.kinds.len())
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn graph(&self) -> std::sync::MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The resource of `apiVersion`/`kind`; another version of the same
    /// group and kind serves when that version is not the one watched.
    pub(crate) fn resolve(&self, api_version: &str, kind: &str) -> Option<&Resource> {
        if let Some(r) = self.kinds.get(&(api_version.to_owned(), kind.to_owned())) {
            return Some(r);
        }
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        self.kinds
            .values()
            .find(|r| r.api.group == group && r.api.kind == kind)
    }

    /// Applies what the graph asks for after a change.
    fn enqueue(&self, work: graph::Work) {
        for uid in work.attempt_to_delete {
            self.attempt_to_delete.add(uid);
        }
        for uid in work.attempt_to_orphan {
            self.attempt_to_orphan.add(uid);
        }
    }
}

/// Discovers the deletable, watchable resources.
async fn discover(client: &kube::Client) -> Result<Vec<Resource>, kube::Error> {
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut out = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            let usable = [verbs::LIST, verbs::WATCH, verbs::DELETE]
                .iter()
                .all(|v| caps.supports_operation(v));
            if !usable || IGNORED.contains(&(ar.group.as_str(), ar.plural.as_str())) {
                continue;
            }
            out.push(Resource {
                api: ar,
                namespaced: caps.scope == Scope::Namespaced,
            });
        }
    }
    Ok(out)
}

/// Runs the collector until `shutdown`, its queues reporting to `metrics`.
/// Resources are discovered once at start (custom resources added later
/// are not watched until a restart).
pub async fn run(
    client: kube::Client,
    workers: usize,
    metrics: ControllerMetrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let resources = loop {
        match discover(&client).await {
            Ok(r) => break r,
            Err(err) => {
                tracing::warn!(error = %err, "garbage collector: discovery failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
            }
        }
    };
    let mut kinds = HashMap::new();
    for r in &resources {
        kinds.insert((r.api.api_version.clone(), r.api.kind.clone()), r.clone());
    }
    let shared = Arc::new(Shared {
        client: client.clone(),
        graph: Mutex::new(Graph::default()),
        kinds,
        attempt_to_delete: Arc::new(metrics.queue("garbage_collector_attempt_to_delete")),
        attempt_to_orphan: Arc::new(metrics.queue("garbage_collector_attempt_to_orphan")),
    });
    let mut monitors = JoinSet::new();
    let mut synced = Vec::new();
    for r in resources {
        let (tx, rx) = watch::channel(false);
        synced.push(rx);
        monitors.spawn(monitor(shared.clone(), r, tx, shutdown.clone()));
    }
    for mut rx in synced {
        tokio::select! {
            _ = rx.wait_for(|s| *s) => {}
            _ = shutdown.wait_for(|s| *s) => {}
        }
    }
    if !*shutdown.borrow() {
        tracing::info!("garbage collector: all resource monitors synced");
        let mut w = JoinSet::new();
        w.spawn(run_workers(
            Arc::new(AttemptToDelete(shared.clone())),
            shared.attempt_to_delete.clone(),
            workers,
            shutdown.clone(),
        ));
        w.spawn(run_workers(
            Arc::new(AttemptToOrphan(shared.clone())),
            shared.attempt_to_orphan.clone(),
            workers,
            shutdown.clone(),
        ));
        while w.join_next().await.is_some() {}
    }
    monitors.shutdown().await;
}

/// Watches one resource into the graph.
async fn monitor(
    shared: Arc<Shared>,
    resource: Resource,
    synced: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Metadata only, as upstream's metadata informers: the graph keeps
    // nothing else, and whole objects (every pod's status included) would
    // be fetched and parsed on every change for nothing.
    let api: kube::Api<PartialObjectMeta<DynamicObject>> =
        kube::Api::all_with(shared.client.clone(), &resource.api);
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut relist: Vec<ObjectMetaView> = Vec::new();
    let res = Arc::new(resource);
    loop {
        let ev = tokio::select! {
            ev = stream.next() => ev,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let ev = match ev {
            Some(Ok(ev)) => ev,
            Some(Err(err)) => {
                tracing::debug!(resource = %res.api.plural, error = %err, "gc monitor: watch error");
                continue;
            }
            None => return,
        };
        let work = match ev {
            watcher::Event::Init => {
                relist.clear();
                continue;
            }
            watcher::Event::InitApply(obj) => {
                relist.push(ObjectMetaView::new(&res, obj.metadata));
                continue;
            }
            watcher::Event::InitDone => {
                let work = shared
                    .graph()
                    .replace_resource(&res, std::mem::take(&mut relist));
                synced.send_replace(true);
                work
            }
            watcher::Event::Apply(obj) => shared
                .graph()
                .upsert(ObjectMetaView::new(&res, obj.metadata)),
            watcher::Event::Delete(obj) => shared
                .graph()
                .remove(obj.metadata.uid.as_deref().unwrap_or("")),
        };
        shared.enqueue(work);
    }
}
