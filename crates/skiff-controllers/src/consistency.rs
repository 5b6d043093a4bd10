//! Read-your-writes for a controller's own objects (upstream's
//! `ConsistencyStore`): the resourceVersion of the controller's latest
//! write to each object it owns, so a sync can wait until its informer
//! shows that write. Informers of different resources are separate watch
//! streams, so the pods a controller touched after writing an object's
//! status can reach it before that status does; a sync that reads the
//! older status together with the newer pods acts on a state that never
//! existed (a Job would start a second pod for an index it had already
//! recorded as done).

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The latest own write per object key (`ns/name`): the object's UID and
/// resourceVersion after the write.
#[derive(Debug, Default)]
pub struct OwnWrites(Mutex<HashMap<String, (String, i64)>>);

impl OwnWrites {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, i64)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes a write to `key` whose answer carried `written`.
    pub fn record(&self, key: &str, written: &ObjectMeta) {
        let (Some(uid), Some(rv)) = (written.uid.as_deref(), resource_version(written)) else {
            return;
        };
        let mut m = self.lock();
        let newer = m
            .get(key)
            .is_none_or(|(known, at)| known != uid || *at < rv);
        if newer {
            m.insert(key.to_owned(), (uid.to_owned(), rv));
        }
    }

    /// True when `cached` (the informer's copy of `key`) shows this
    /// controller's latest write to it, or there is none to wait for: no
    /// write recorded, another object by that name, or a resourceVersion
    /// that does not read as a number.
    pub fn caught_up(&self, key: &str, cached: &ObjectMeta) -> bool {
        let mut m = self.lock();
        let Some((uid, written)) = m.get(key) else {
            return true;
        };
        let seen = cached.uid.as_deref() != Some(uid.as_str())
            || resource_version(cached).is_none_or(|rv| rv >= *written);
        if seen {
            m.remove(key);
        }
        seen
    }

    /// Drops what is known of `key` (the object is gone).
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

fn resource_version(meta: &ObjectMeta) -> Option<i64> {
    meta.resource_version.as_deref()?.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn meta(uid: &str, rv: &str) -> ObjectMeta {
        ObjectMeta {
            uid: Some(uid.to_owned()),
            resource_version: Some(rv.to_owned()),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn a_sync_waits_for_the_cache_to_show_the_last_write() {
        let w = OwnWrites::default();
        assert!(w.caught_up("ns/a", &meta("u1", "5")), "nothing written");
        w.record("ns/a", &meta("u1", "10"));
        assert!(!w.caught_up("ns/a", &meta("u1", "9")));
        // An older answer arriving late does not lower the mark.
        w.record("ns/a", &meta("u1", "8"));
        assert!(!w.caught_up("ns/a", &meta("u1", "9")));
        assert!(w.caught_up("ns/a", &meta("u1", "10")));
        // Seen once, the record is gone.
        assert!(w.caught_up("ns/a", &meta("u1", "9")));
    }

    #[test]
    fn another_object_or_an_unreadable_version_does_not_hold_a_sync() {
        let w = OwnWrites::default();
        w.record("ns/a", &meta("u1", "10"));
        assert!(w.caught_up("ns/a", &meta("u2", "3")), "recreated");
        w.record("ns/a", &meta("u1", "10"));
        assert!(w.caught_up("ns/a", &meta("u1", "opaque")));
        w.record("ns/a", &meta("u1", "10"));
        w.forget("ns/a");
        assert!(w.caught_up("ns/a", &meta("u1", "1")));
        // A write whose answer has no version is not waited for.
        w.record("ns/b", &meta("u1", ""));
        assert!(w.caught_up("ns/b", &meta("u1", "1")));
    }
}
