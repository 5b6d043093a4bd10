//! The watch cache's in-memory core, without I/O: the current objects of
//! every resource, a window of recent events per resource, and the watchers
//! events are fanned out to. The reflector in the parent module feeds it
//! from one store watch; requests read it under a short lock.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use skiff_api::resources::{RESOURCES, ResourceInfo};
use skiff_api::selector::fields::FieldSelector;
use skiff_api::selector::labels::Selector;
use skiff_store::{EventKind, Revision};
use tokio::sync::mpsc;

use super::object::CachedObject;
use crate::negotiate::Output;

/// Sizes of the cache; [`CacheConfig::default`] is what the server uses.
#[derive(Clone, Debug)]
pub(crate) struct CacheConfig {
    /// Events buffered for one watcher; a watcher further behind is closed.
    pub watcher_buffer: usize,
    /// Events of one resource always kept, whatever their age.
    pub min_events: usize,
    /// Events of one resource never exceeded.
    pub max_events: usize,
    /// Events younger than this are kept (up to `max_events`).
    pub min_age: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        // Upstream sizes its window to cover at least 75 s of history.
        CacheConfig {
            watcher_buffer: 1024,
            min_events: 1000,
            max_events: 10_000,
            min_age: Duration::from_secs(75),
        }
    }
}

/// One change of one object, shared by every watcher that receives it.
#[derive(Debug)]
pub(crate) struct CachedEvent {
    /// The store revision of the change.
    pub rev: Revision,
    /// The object's storage key.
    pub key: String,
    /// Put (create or update) or delete.
    pub kind: EventKind,
    /// The object as written; for a delete, its last state with
    /// `resourceVersion` = the delete's revision.
    pub obj: Arc<CachedObject>,
    /// The object before a put, if it existed.
    pub prev: Option<Arc<CachedObject>>,
    at: Instant,
    /// Watch lines already rendered, one per (resource, type, output).
    encoded: Mutex<Vec<(&'static ResourceInfo, &'static str, Output, Bytes)>>,
}

impl CachedEvent {
    /// The watch line of this event as `kind` in `output`, rendered by
    /// `render` the first time and shared afterwards.
    pub fn line(
        &self,
        info: &'static ResourceInfo,
        kind: &'static str,
        output: Output,
        render: impl FnOnce(&CachedObject) -> Bytes,
    ) -> Bytes {
        let mut encoded = self.encoded.lock().unwrap_or_else(PoisonError::into_inner);
        let found = encoded
            .iter()
            .find(|(i, k, o, _)| std::ptr::eq(*i, info) && *k == kind && *o == output);
        if let Some((.., bytes)) = found {
            return bytes.clone();
        }
        let bytes = render(&self.obj);
        encoded.push((info, kind, output, bytes.clone()));
        bytes
    }
}

/// A change read from the store, decoded.
#[derive(Debug)]
pub(crate) enum Change {
    /// A create or update of `key` to `obj` (whose resourceVersion is set).
    Put {
        key: String,
        rev: Revision,
        obj: CachedObject,
    },
    /// A delete of `key`.
    Delete { key: String, rev: Revision },
}

/// Where a new watcher starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Start {
    /// With the current objects, then their changes.
    Objects,
    /// With changes after the cache's current revision.
    Now,
    /// With the changes after this revision.
    After(Revision),
}

/// Why a watch cannot start from the cache at the requested revision.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NotServed {
    /// The cache has not listed the store yet.
    NotReady,
    /// Events just after the revision have left the window.
    TooOld { oldest: Revision },
}

/// A watcher registered with the cache: events come on `events`; the
/// channel closes when the watcher fell too far behind or the cache
/// relisted.
#[derive(Debug)]
pub(crate) struct Registration {
    /// The initial objects (for a watch from "now") or the events after the
    /// requested revision (for a resumed watch).
    pub initial: Initial,
    /// The cache revision the registration was made at.
    pub revision: Revision,
    /// Live events after `revision`.
    pub events: mpsc::Receiver<Arc<CachedEvent>>,
}

/// What a watcher receives before live events.
#[derive(Debug)]
pub(crate) enum Initial {
    /// The current objects under the watched prefix, in key order.
    Objects(Vec<Arc<CachedObject>>),
    /// The window's events after the requested revision, in order.
    Events(Vec<Arc<CachedEvent>>),
}

/// One page of a list served from the cache.
#[derive(Debug)]
pub(crate) struct CachedPage {
    /// Matching objects, in key order.
    pub items: Vec<Arc<CachedObject>>,
    /// The cache revision the page reflects.
    pub revision: Revision,
    /// The last key examined, when keys follow it.
    pub continue_after: Option<String>,
    /// Keys after the page, when known (no selectors).
    pub remaining: Option<u64>,
}

/// Sizes, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CacheStats {
    /// Objects held.
    pub objects: usize,
    /// Events in the windows.
    pub events: usize,
    /// Registered watchers.
    pub watchers: usize,
}

#[derive(Debug)]
struct Watcher {
    prefix: String,
    tx: mpsc::Sender<Arc<CachedEvent>>,
}

#[derive(Debug, Default)]
struct ResourceCache {
    objects: BTreeMap<String, Arc<CachedObject>>,
    window: VecDeque<Arc<CachedEvent>>,
    /// Every event after this revision is in the window.
    oldest: Revision,
    watchers: Vec<Watcher>,
}

/// The cache of every resource of the table.
#[derive(Debug)]
pub(crate) struct CacheState {
    config: CacheConfig,
    /// Every change up to this revision has been applied (0: not listed).
    revision: Revision,
    resources: HashMap<&'static str, ResourceCache>,
    /// Storage prefixes, longest first, to route keys.
    prefixes: Vec<&'static str>,
}

impl CacheState {
    /// An empty, not yet listed cache of every resource of the table.
    pub fn new(config: CacheConfig) -> CacheState {
        let mut prefixes: Vec<&'static str> = RESOURCES.iter().map(|r| r.storage_prefix).collect();
        prefixes.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        prefixes.dedup();
        // Keys of the resources left to the store still route to their
        // prefix, and from there to nothing.
        let resources = prefixes
            .iter()
            .filter(|p| super::holds_key(p))
            .map(|p| (*p, ResourceCache::default()))
            .collect();
        CacheState {
            config,
            revision: 0,
            resources,
            prefixes,
        }
    }

    /// The revision every change up to which is applied; 0 until listed.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// The storage prefix of the resource `key` belongs to.
    pub fn resource_of(&self, key: &str) -> Option<&'static str> {
        self.prefixes.iter().copied().find(|p| key.starts_with(p))
    }

    /// Forgets everything: watchers are closed (they re-watch) and the
    /// cache waits for [`CacheState::replace`].
    pub fn reset(&mut self) {
        for rc in self.resources.values_mut() {
            *rc = ResourceCache::default();
        }
        self.revision = 0;
    }

    /// Replaces the contents with a list of the store at `rev`.
    pub fn replace(&mut self, rev: Revision, objects: Vec<(String, CachedObject)>) {
        self.reset();
        for rc in self.resources.values_mut() {
            rc.oldest = rev;
        }
        for (key, obj) in objects {
            if let Some(rc) = self
                .resource_of(&key)
                .and_then(|p| self.resources.get_mut(p))
            {
                rc.objects.insert(key, Arc::new(obj));
            }
        }
        self.revision = rev;
    }

    /// Applies one change and fans it out to the resource's watchers.
    pub fn apply(&mut self, change: Change) {
        let (key, rev) = match &change {
            Change::Put { key, rev, .. } | Change::Delete { key, rev } => (key.clone(), *rev),
        };
        if rev <= self.revision {
            return;
        }
        self.revision = rev;
        let Some(rc) = self
            .resource_of(&key)
            .and_then(|p| self.resources.get_mut(p))
        else {
            return;
        };
        let (kind, obj, prev) = match change {
            Change::Put { obj, .. } => {
                let obj = Arc::new(obj);
                let prev = rc.objects.insert(key.clone(), obj.clone());
                (EventKind::Put, obj, prev)
            }
            Change::Delete { .. } => {
                let Some(prev) = rc.objects.remove(&key) else {
                    return;
                };
                (EventKind::Delete, Arc::new(prev.at_revision(rev)), None)
            }
        };
        let event = Arc::new(CachedEvent {
            rev,
            key,
            kind,
            obj,
            prev,
            at: Instant::now(),
            encoded: Mutex::new(Vec::new()),
        });
        rc.watchers.retain(|w| {
            if !event.key.starts_with(&w.prefix) {
                return !w.tx.is_closed();
            }
            match w.tx.try_send(event.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::info!(prefix = %w.prefix, "closing a watcher that fell too far behind");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        rc.window.push_back(event);
        let config = &self.config;
        while let Some(front) = rc.window.front() {
            let over = rc.window.len() > config.max_events
                || (rc.window.len() > config.min_events && front.at.elapsed() > config.min_age);
            if !over {
                break;
            }
            rc.oldest = front.rev;
            rc.window.pop_front();
        }
    }

    /// Registers a watcher of keys under `prefix` (in the resource stored
    /// under `storage`), starting as `start` says.
    pub fn watch(
        &mut self,
        storage: &str,
        prefix: &str,
        start: Start,
    ) -> Result<Registration, NotServed> {
        if self.revision == 0 {
            return Err(NotServed::NotReady);
        }
        let buffer = self.config.watcher_buffer.max(1);
        let revision = self.revision;
        let rc = self.resources.get_mut(storage).ok_or(NotServed::NotReady)?;
        let initial = match start {
            Start::Now => Initial::Events(Vec::new()),
            Start::Objects => Initial::Objects(
                rc.objects
                    .range(prefix.to_owned()..)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .map(|(_, v)| v.clone())
                    .collect(),
            ),
            Start::After(after) if after < rc.oldest => {
                return Err(NotServed::TooOld { oldest: rc.oldest });
            }
            Start::After(after) => {
                let start = rc.window.partition_point(|e| e.rev <= after);
                Initial::Events(
                    rc.window
                        .range(start..)
                        .filter(|e| e.key.starts_with(prefix))
                        .cloned()
                        .collect(),
                )
            }
        };
        let (tx, events) = mpsc::channel(buffer);
        rc.watchers.push(Watcher {
            prefix: prefix.to_owned(),
            tx,
        });
        Ok(Registration {
            initial,
            revision,
            events,
        })
    }

    /// The object at `key`, once the cache has listed the store.
    pub fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        if self.revision == 0 {
            return None;
        }
        let rc = self.resources.get(self.resource_of(key)?)?;
        rc.objects.get(key).cloned()
    }

    /// Up to `limit` (0: all) objects under `prefix` matching the
    /// selectors, in key order, starting after `after`.
    pub fn list(
        &self,
        info: &ResourceInfo,
        prefix: &str,
        labels: &Selector,
        fields: &FieldSelector,
        limit: u64,
    ) -> Option<CachedPage> {
        self.list_after(info, prefix, None, labels, fields, limit)
    }

    /// [`CacheState::list`] of the keys after `after` (a continued list).
    pub fn list_after(
        &self,
        info: &ResourceInfo,
        prefix: &str,
        after: Option<&str>,
        labels: &Selector,
        fields: &FieldSelector,
        limit: u64,
    ) -> Option<CachedPage> {
        use std::ops::Bound;
        if self.revision == 0 {
            return None;
        }
        let rc = self.resources.get(info.storage_prefix)?;
        let start = match after {
            Some(after) => Bound::Excluded(after.to_owned()),
            None => Bound::Included(prefix.to_owned()),
        };
        let mut range = rc
            .objects
            .range((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix));
        let everything = labels.is_empty() && fields.is_empty();
        let mut items = Vec::new();
        let mut last = None;
        for (key, obj) in range.by_ref() {
            if everything || obj.matches(info, labels, fields) {
                items.push(obj.clone());
                if limit > 0 && items.len() as u64 >= limit {
                    last = Some(key);
                    break;
                }
            }
        }
        let mut continue_after = None;
        let mut remaining = None;
        if let Some(last) = last {
            let rest = range.count() as u64;
            if rest > 0 {
                continue_after = Some(last.clone());
                remaining = everything.then_some(rest);
            }
        }
        Some(CachedPage {
            items,
            revision: self.revision,
            continue_after,
            remaining,
        })
    }

    /// Current sizes.
    pub fn stats(&self) -> CacheStats {
        let mut stats = CacheStats::default();
        for rc in self.resources.values() {
            stats.objects += rc.objects.len();
            stats.events += rc.window.len();
            stats.watchers += rc.watchers.len();
        }
        stats
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
