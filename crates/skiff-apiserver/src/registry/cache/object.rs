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
use crate::registry::splice::with_resource_version;
use crate::registry::{matches, set_rv};

/// One cached object.
#[derive(Debug, Clone)]
pub(crate) struct CachedObject {
    /// The object's JSON, keys in serde_json's (sorted) order.
    pub json: Bytes,
    labels: BTreeMap<String, String>,
    fields: selector::fields::Fields,
}

impl CachedObject {
    /// Encodes `obj` (with its resourceVersion set), a `info` object.
    pub fn new(info: &ResourceInfo, obj: &Value) -> Option<CachedObject> {
        let json = serde_json::to_vec(obj).ok()?;
        Some(CachedObject::with_json(info, obj, json))
    }

    /// `obj` whose JSON (with resourceVersion) is `json` already.
    fn with_json(info: &ResourceInfo, obj: &Value, json: Vec<u8>) -> CachedObject {
        let labels = obj
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        CachedObject {
            json: Bytes::from(json),
            labels,
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
            return Some(CachedObject::with_json(info, &sparse, json));
        }
        let mut obj: Value = serde_json::from_slice(value).ok()?;
        set_rv(&mut obj, rev);
        CachedObject::new(info, &obj)
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
