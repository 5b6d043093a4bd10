//! The PersistentVolume binder (upstream's `persistentvolume-binder`,
//! pkg/controller/volume/persistentvolume): binds each claim to the volume
//! that fits it best (or the one it or the volume names), keeps both
//! phases current, releases volumes whose claim is gone and applies their
//! reclaim policy. There are no volume plugins here: provisioning is left
//! to external provisioners, and a volume that needs a deleter or recycler
//! plugin fails as upstream's does when it finds none.
//!
//! As upstream, the controller keeps its own copy of every volume and claim
//! it has seen or written (`volumes`, `claims`): a sync that follows one of
//! its own writes sees that write even before the informer does, and an
//! informer event older than the copy is skipped. One worker syncs claims
//! and one volumes; a periodic resync heals whatever an event missed.

mod reclaim;
mod sync;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::reflector::{ObjectRef, Store};
use skiff_client::EventSink;
use skiff_client::events::PendingEvent;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cached_pod::CachedPod;
use crate::controller::{Action, Reconciler, SyncError, run_workers};
use crate::informer::{InformerFactory, NamespaceIndex, ResourceEventHandler};
use crate::podutil::key_of;
use crate::workqueue::WorkQueue;

/// The `--controllers` name.
pub const NAME: &str = "persistentvolume-binder";
/// The component its events come from (upstream's event source).
pub const CONTROLLER_NAME: &str = "persistentvolume-controller";
/// `--pvclaimbinder-sync-period` default: how often every claim and volume
/// is synced again.
pub const DEFAULT_SYNC_PERIOD: Duration = Duration::from_secs(15);

/// The controller.
pub struct PersistentVolumeController {
    pub(crate) client: kube::Client,
    volume_informer: Store<PersistentVolume>,
    claim_informer: Store<PersistentVolumeClaim>,
    pub(crate) classes: Store<StorageClass>,
    pub(crate) pods: Arc<NamespaceIndex<CachedPod>>,
    /// The newest version seen or written of each volume, by name.
    volumes: Mutex<HashMap<String, Arc<PersistentVolume>>>,
    /// The newest version seen or written of each claim, by `ns/name`.
    claims: Mutex<HashMap<String, Arc<PersistentVolumeClaim>>>,
    pub(crate) claim_queue: Arc<WorkQueue<String>>,
    pub(crate) volume_queue: Arc<WorkQueue<String>>,
    events: Arc<dyn EventSink>,
}

impl std::fmt::Debug for PersistentVolumeController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistentVolumeController")
            .finish_non_exhaustive()
    }
}

impl PersistentVolumeController {
    /// A controller on `factory`'s informers, its handlers registered.
    pub fn new(
        client: kube::Client,
        factory: &InformerFactory,
        events: Arc<dyn EventSink>,
    ) -> Arc<Self> {
        let volume_informer = factory.informer::<PersistentVolume>();
        let claim_informer = factory.informer::<PersistentVolumeClaim>();
        let c = Arc::new(PersistentVolumeController {
            client,
            volume_informer: volume_informer.store(),
            claim_informer: claim_informer.store(),
            classes: factory.informer::<StorageClass>().store(),
            pods: factory.informer::<CachedPod>().namespace_index(),
            volumes: Mutex::new(HashMap::new()),
            claims: Mutex::new(HashMap::new()),
            claim_queue: Arc::new(WorkQueue::new()),
            volume_queue: Arc::new(WorkQueue::new()),
            events,
        });
        volume_informer.add_event_handler(Arc::new(VolumeHandler(c.clone())));
        claim_informer.add_event_handler(Arc::new(ClaimHandler(c.clone())));
        c
    }

    /// Runs the claim and volume workers and the periodic resync (every
    /// `sync_period`) until `stop`. Call once the informers have synced.
    pub async fn run(self: Arc<Self>, sync_period: Duration, mut stop: watch::Receiver<bool>) {
        self.initialize_caches();
        let mut set = JoinSet::new();
        set.spawn(run_workers(
            Arc::new(ClaimWorker(self.clone())),
            self.claim_queue.clone(),
            1,
            stop.clone(),
        ));
        set.spawn(run_workers(
            Arc::new(VolumeWorker(self.clone())),
            self.volume_queue.clone(),
            1,
            stop.clone(),
        ));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(sync_period) => self.resync(),
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        while set.join_next().await.is_some() {}
    }

    fn initialize_caches(&self) {
        for v in self.volume_informer.state() {
            if let Err(err) = self.store_volume(&v) {
                tracing::warn!(error = %err, "cannot cache volume");
            }
        }
        for c in self.claim_informer.state() {
            if let Err(err) = self.store_claim(&c) {
                tracing::warn!(error = %err, "cannot cache claim");
            }
        }
    }

    /// Queues every claim and volume (upstream's `resync`).
    fn resync(&self) {
        for c in self.claim_informer.state() {
            self.claim_queue.add(key_of(&c.metadata));
        }
        for v in self.volume_informer.state() {
            self.volume_queue.add(key_of(&v.metadata));
        }
    }

    /// The cached volume `name`.
    pub(crate) fn cached_volume(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        lock(&self.volumes).get(name).cloned()
    }

    /// Every cached volume.
    pub(crate) fn cached_volumes(&self) -> Vec<Arc<PersistentVolume>> {
        lock(&self.volumes).values().cloned().collect()
    }

    /// The cached claim `ns/name`.
    pub(crate) fn cached_claim(&self, key: &str) -> Option<Arc<PersistentVolumeClaim>> {
        lock(&self.claims).get(key).cloned()
    }

    /// The informer's claim `ns/name`.
    pub(crate) fn informer_claim(
        &self,
        ns: &str,
        name: &str,
    ) -> Option<Arc<PersistentVolumeClaim>> {
        self.claim_informer.get(&ObjectRef::new(name).within(ns))
    }

    /// Records `volume` unless the cache holds a newer version; true when
    /// it was recorded (upstream's `storeObjectUpdate`).
    pub(crate) fn store_volume(&self, volume: &Arc<PersistentVolume>) -> Result<bool, SyncError> {
        store_newer(&self.volumes, key_of(&volume.metadata), volume)
    }

    /// As [`Self::store_volume`] for claims.
    pub(crate) fn store_claim(
        &self,
        claim: &Arc<PersistentVolumeClaim>,
    ) -> Result<bool, SyncError> {
        store_newer(&self.claims, key_of(&claim.metadata), claim)
    }

    async fn volume_worker(&self, name: &str) -> Result<Action, SyncError> {
        if let Some(volume) = self.volume_informer.get(&ObjectRef::new(name)) {
            if self.store_volume(&volume)? {
                self.sync_volume(volume).await?;
            }
            return Ok(Action::Await);
        }
        // Gone from the informer: a delete, unless already handled.
        let Some(volume) = lock(&self.volumes).remove(name) else {
            return Ok(Action::Await);
        };
        // Its claim turns Lost now rather than at the next resync.
        if let Some((ns, claim, _)) = skiff_api::storage::claim_ref(&volume) {
            self.claim_queue.add(format!("{ns}/{claim}"));
        }
        Ok(Action::Await)
    }

    async fn claim_worker(&self, key: &str) -> Result<Action, SyncError> {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        if let Some(claim) = self.informer_claim(ns, name) {
            if self.store_claim(&claim)? {
                self.sync_claim(claim).await?;
            }
            return Ok(Action::Await);
        }
        let Some(claim) = lock(&self.claims).remove(key) else {
            return Ok(Action::Await);
        };
        // Its volume is released now rather than at the next resync.
        if let Some(volume) = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .filter(|v| !v.is_empty())
        {
            self.volume_queue.add(volume.to_owned());
        }
        Ok(Action::Await)
    }

    fn record(
        &self,
        regarding: ObjectReference,
        normal: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.events.record(PendingEvent {
            regarding,
            normal,
            reason: reason.to_owned(),
            action: action.to_owned(),
            note,
        });
    }

    /// An event about a claim.
    pub(crate) fn claim_event(
        &self,
        claim: &PersistentVolumeClaim,
        normal: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.record(claim_reference(claim), normal, reason, action, note);
    }

    /// An event about a volume.
    pub(crate) fn volume_event(
        &self,
        volume: &PersistentVolume,
        normal: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let m = &volume.metadata;
        let regarding = ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("PersistentVolume".to_owned()),
            name: m.name.clone(),
            uid: m.uid.clone(),
            resource_version: m.resource_version.clone(),
            ..ObjectReference::default()
        };
        self.record(regarding, normal, reason, action, note);
    }
}

/// A reference to the claim, as `spec.claimRef` and events carry it.
pub(crate) fn claim_reference(claim: &PersistentVolumeClaim) -> ObjectReference {
    let m = &claim.metadata;
    ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("PersistentVolumeClaim".to_owned()),
        name: m.name.clone(),
        namespace: m.namespace.clone(),
        uid: m.uid.clone(),
        resource_version: m.resource_version.clone(),
        ..ObjectReference::default()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn resource_version<K: kube::Resource>(obj: &K) -> Result<i64, SyncError> {
    let rv = obj.meta().resource_version.as_deref().unwrap_or("");
    rv.parse().map_err(|_| {
        format!(
            "error parsing ResourceVersion {rv:?} of {:?}",
            obj.meta().name
        )
        .into()
    })
}

fn store_newer<K: kube::Resource>(
    cache: &Mutex<HashMap<String, Arc<K>>>,
    key: String,
    obj: &Arc<K>,
) -> Result<bool, SyncError> {
    let new = resource_version(obj.as_ref())?;
    let mut cache = lock(cache);
    if let Some(old) = cache.get(&key) {
        // Only an older version is dropped: the same one passes, so that
        // periodic syncs still happen.
        if resource_version(old.as_ref())? > new {
            return Ok(false);
        }
    }
    cache.insert(key, obj.clone());
    Ok(true)
}

struct ClaimWorker(Arc<PersistentVolumeController>);

impl Reconciler for ClaimWorker {
    fn name(&self) -> &str {
        "persistentvolume-binder-claims"
    }

    fn sync(
        &self,
        key: &str,
    ) -> impl std::future::Future<Output = Result<Action, SyncError>> + Send {
        self.0.claim_worker(key)
    }
}

struct VolumeWorker(Arc<PersistentVolumeController>);

impl Reconciler for VolumeWorker {
    fn name(&self) -> &str {
        "persistentvolume-binder-volumes"
    }

    fn sync(
        &self,
        key: &str,
    ) -> impl std::future::Future<Output = Result<Action, SyncError>> + Send {
        self.0.volume_worker(key)
    }
}

struct VolumeHandler(Arc<PersistentVolumeController>);

impl ResourceEventHandler<PersistentVolume> for VolumeHandler {
    fn on_add(&self, v: &Arc<PersistentVolume>) {
        self.0.volume_queue.add(key_of(&v.metadata));
    }
    fn on_update(&self, _old: &Arc<PersistentVolume>, v: &Arc<PersistentVolume>) {
        self.0.volume_queue.add(key_of(&v.metadata));
    }
    fn on_delete(&self, v: &Arc<PersistentVolume>) {
        self.0.volume_queue.add(key_of(&v.metadata));
    }
}

struct ClaimHandler(Arc<PersistentVolumeController>);

impl ResourceEventHandler<PersistentVolumeClaim> for ClaimHandler {
    fn on_add(&self, c: &Arc<PersistentVolumeClaim>) {
        self.0.claim_queue.add(key_of(&c.metadata));
    }
    fn on_update(&self, _old: &Arc<PersistentVolumeClaim>, c: &Arc<PersistentVolumeClaim>) {
        self.0.claim_queue.add(key_of(&c.metadata));
    }
    fn on_delete(&self, c: &Arc<PersistentVolumeClaim>) {
        self.0.claim_queue.add(key_of(&c.metadata));
    }
}
