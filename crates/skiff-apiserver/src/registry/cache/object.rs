//! An object as the watch cache keeps it: its JSON as clients receive it
//! (with `resourceVersion`), plus the labels and selectable fields that
//! selectors read. Lists and watch lines copy the bytes; only the rarer
//! outputs (Table, metadata, Event views) decode them again. A decoded
//! `serde_json::Value` tree costs several times its JSON, so 100,000 cached
//! objects would otherwise take gigabytes.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use bytes::Bytes;
use serde_json::Value;
use skiff_api::resources::{RESOURCES, ResourceInfo};
use skiff_api::selector::{self, fields::FieldSelector, labels::Selector};

use super::selectable;
use crate::registry::meta::string_map;
use crate::registry::splice::with_resource_version;
use crate::registry::{matches, set_rv};

/// One cached object.
#[derive(Debug, Clone)]
pub(crate) struct CachedObject {
    /// The object's JSON, keys in serde_json's (sorted) order.
    pub json: Bytes,
    /// The revision of the write (the object's resourceVersion).
    rev: i64,
    labels: BTreeMap<String, String>,
    fields: selector::fields::Fields,
}

impl CachedObject {
    /// Encodes `obj` (with its resourceVersion set), a `info` object.
    pub fn new(info: &ResourceInfo, obj: &Value) -> Option<CachedObject> {
        let json = serde_json::to_vec(obj).ok()?;
        let rev = obj
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .and_then(|rv| rv.parse().ok())
            .unwrap_or(0);
        Some(CachedObject::with_json(info, obj, json, rev))
    }

    /// `obj` whose JSON (with resourceVersion `rev`) is `json` already.
    fn with_json(info: &ResourceInfo, obj: &Value, json: Vec<u8>, rev: i64) -> CachedObject {
        CachedObject {
            json: Bytes::from(json),
            rev,
            labels: string_map(obj, "labels"),
            fields: selector::selectable_fields(info, obj),
        }
    }

    /// The stored value at `key` with resourceVersion `rev`, or `None` when
    /// the key is no served resource's or the value is not a JSON object.
    pub fn from_store(key: &str, value: &[u8], rev: i64) -> Option<CachedObject> {
        let info = owner(key)?;
        // Labels and fields from the parts of the object selectors read;
        // the bytes are the stored ones with the revision spliced in, not
        // encoded again.
        let sparse = selectable::decode(value)?;
        if let Some(json) = with_resource_version(value, rev) {
            return Some(CachedObject::with_json(info, &sparse, json, rev));
        }
        let mut obj: Value = serde_json::from_slice(value).ok()?;
        set_rv(&mut obj, rev);
        CachedObject::new(info, &obj)
    }

    /// The revision of the write this object is (its resourceVersion).
    pub fn revision(&self) -> i64 {
        self.rev
    }

    /// The object as a JSON value.
    pub fn decode(&self) -> Value {
        // The bytes were encoded from a Value, so they decode.
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }

    /// The same object with resourceVersion `rev` (a delete's last state).
    pub fn at_revision(&self, rev: i64) -> CachedObject {
        let mut obj = self.decode();
        set_rv(&mut obj, rev);
        CachedObject {
            json: serde_json::to_vec(&obj).map_or_else(|_| self.json.clone(), Bytes::from),
            rev,
            labels: self.labels.clone(),
            fields: self.fields.clone(),
        }
    }

    /// True when the object passes the selectors of a request to `info`.
    pub fn matches(&self, info: &ResourceInfo, labels: &Selector, fields: &FieldSelector) -> bool {
        if labels.is_empty() && fields.is_empty() {
            return true;
        }
        if info.shares_storage_with.is_some() || info.kind == "Event" {
            // Selectors name fields of the API asked, whatever the stored shape.
            return matches(info, labels, fields, &self.decode());
        }
        (labels.is_empty() || labels.matches(&self.labels))
            && (fields.is_empty() || fields.matches(&self.fields))
    }
}

/// An object the registry is writing, with what selectors read of it taken
/// from its decoded form: the watch cache makes its [`CachedObject`] from
/// this when the write's event comes, rather than decoding the stored bytes.
#[derive(Debug)]
pub(crate) struct Written {
    /// The bytes being stored (without resourceVersion).
    pub stored: Bytes,
    labels: BTreeMap<String, String>,
    fields: selector::fields::Fields,
}

impl Written {
    /// `obj`, stored as `stored` at `key`; `None` when the key is no
    /// served resource's.
    pub fn new(key: &str, stored: Bytes, obj: &Value) -> Option<Written> {
        let info = owner(key)?;
        Some(Written {
            stored,
            labels: string_map(obj, "labels"),
            fields: selector::selectable_fields(info, obj),
        })
    }

    /// `pod` bound to `node` by a binding that stores `stored`: what
    /// selectors read is the pod's but for `spec.nodeName` (the binding
    /// adds a condition, which no selector reads). `None` when `pod` has
    /// no `spec.nodeName` field (not a pod).
    pub fn bound(pod: &CachedObject, stored: Bytes, node: &str) -> Option<Written> {
        let mut fields = pod.fields.clone();
        *fields.get_mut("spec.nodeName")? = node.to_owned();
        Some(Written {
            stored,
            labels: pod.labels.clone(),
            fields,
        })
    }

    /// The cached object once stored at revision `rev`: what
    /// [`CachedObject::from_store`] gives for the same bytes.
    pub fn at(self, rev: i64) -> Option<CachedObject> {
        Some(CachedObject {
            json: Bytes::from(with_resource_version(&self.stored, rev)?),
            rev,
            labels: self.labels,
            fields: self.fields,
        })
    }
}

/// The resource that owns the storage key `key` (the longest matching
/// storage prefix, never a resource sharing another's storage).
pub(crate) fn owner(key: &str) -> Option<&'static ResourceInfo> {
    static OWNERS: OnceLock<Vec<&'static ResourceInfo>> = OnceLock::new();
    let owners = OWNERS.get_or_init(|| {
        let mut v: Vec<&'static ResourceInfo> = RESOURCES
            .iter()
            .filter(|r| r.shares_storage_with.is_none())
            .collect();
        v.sort_by_key(|r| std::cmp::Reverse(r.storage_prefix.len()));
        v
    });
    owners
        .iter()
        .copied()
        .find(|r| key.starts_with(r.storage_prefix))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;
    use skiff_api::resources::by_gvr;

    use super::*;

    /// An object handed over by the registry is the one the reflector
    /// would have decoded from the store: same bytes, labels and fields.
    #[test]
    fn a_written_object_is_what_the_store_would_give() {
        for (info, obj) in [
            (
                by_gvr("", "v1", "pods").unwrap(),
                json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web", "tier": "1"}},
                    "spec": {"nodeName": "n1", "schedulerName": "default-scheduler",
                        "containers": [{"name": "c", "image": "i"}]},
                    "status": {"phase": "Pending"}}),
            ),
            (
                by_gvr("", "v1", "events").unwrap(),
                json!({"apiVersion": "v1", "kind": "Event",
                    "metadata": {"name": "p.1", "namespace": "ns"},
                    "involvedObject": {"kind": "Pod", "name": "p", "namespace": "ns"},
                    "reason": "Scheduled", "type": "Normal", "source": {"component": "s"}}),
            ),
            (
                // events.k8s.io/v1 Events are stored in their own shape
                // under the core resource's keys.
                by_gvr("", "v1", "events").unwrap(),
                json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
                    "metadata": {"name": "p.2", "namespace": "ns"},
                    "regarding": {"kind": "Pod", "name": "p", "namespace": "ns"},
                    "reason": "Scheduled", "type": "Normal", "action": "Binding",
                    "reportingController": "default-scheduler", "reportingInstance": "s",
                    "eventTime": "2026-12-04T10:00:00.000000Z"}),
            ),
        ] {
            let key = info.key(Some("ns"), obj["metadata"]["name"].as_str().unwrap());
            let stored = Bytes::from(serde_json::to_vec(&obj).unwrap());
            let written = Written::new(&key, stored.clone(), &obj)
                .unwrap()
                .at(42)
                .unwrap();
            let decoded = CachedObject::from_store(&key, &stored, 42).unwrap();
            assert_eq!(written.json, decoded.json);
            assert_eq!(written.labels, decoded.labels);
            assert_eq!(
                format!("{:?}", written.fields),
                format!("{:?}", decoded.fields)
            );
            assert!(!written.labels.is_empty() || info.kind == "Event");
        }
        let pods = by_gvr("", "v1", "pods").unwrap();
        assert!(Written::new("/elsewhere/x", Bytes::from_static(b"{}"), &json!({})).is_none());
        let obj = json!({"metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1"}});
        let stored = Bytes::from(serde_json::to_vec(&obj).unwrap());
        let written = Written::new(&pods.key(Some("ns"), "p"), stored, &obj)
            .unwrap()
            .at(7)
            .unwrap();
        assert!(
            std::str::from_utf8(&written.json)
                .unwrap()
                .contains(r#""resourceVersion":"7""#)
        );
        let labels = skiff_api::selector::labels::parse("app=web").unwrap();
        let fields = skiff_api::selector::fields::parse("spec.nodeName=n1").unwrap();
        assert!(written.matches(pods, &labels, &fields));
        let other = skiff_api::selector::fields::parse("spec.nodeName=n2").unwrap();
        assert!(!written.matches(pods, &labels, &other));
    }

    /// A pod bound from the cached pod is what the reflector would decode
    /// from the binding's stored bytes.
    #[test]
    fn a_bound_pod_is_what_the_store_would_give() {
        let pods = by_gvr("", "v1", "pods").unwrap();
        let key = pods.key(Some("ns"), "p");
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"}},
            "spec": {"schedulerName": "default-scheduler", "restartPolicy": "Always",
                "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Pending"}});
        let stored = serde_json::to_vec(&pod).unwrap();
        let held = CachedObject::from_store(&key, &stored, 5).unwrap();
        assert_eq!(held.revision(), 5);
        let conditions = br#"[{"type":"PodScheduled","status":"True"}]"#;
        let bound =
            Bytes::from(crate::registry::splice::bound_pod(&stored, "n1", conditions).unwrap());
        let written = Written::bound(&held, bound.clone(), "n1")
            .unwrap()
            .at(6)
            .unwrap();
        let decoded = CachedObject::from_store(&key, &bound, 6).unwrap();
        assert_eq!(written.json, decoded.json);
        assert_eq!(written.revision(), 6);
        assert_eq!(written.labels, decoded.labels);
        assert_eq!(written.fields, decoded.fields);
        assert_eq!(
            written.fields.get("spec.nodeName").map(String::as_str),
            Some("n1")
        );
        // An object without the field is not a pod to bind.
        let cm = by_gvr("", "v1", "configmaps").unwrap();
        let other = CachedObject::new(
            cm,
            &json!({"metadata": {"name": "c", "resourceVersion": "3"}}),
        )
        .unwrap();
        assert_eq!(other.revision(), 3);
        assert!(Written::bound(&other, bound, "n1").is_none());
    }
}
