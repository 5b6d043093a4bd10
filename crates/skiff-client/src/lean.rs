//! [`Lean`]: an object as a watch or list decodes it, without
//! `metadata.managedFields`.
//!
//! Components that only read objects (the scheduler's informers, hollow
//! nodes) never look at managedFields, yet decoding them is a large part of
//! decoding a small object: every entry's `fieldsV1` is a JSON tree. client-go
//! informers drop them after decoding (a transform); here they are skipped
//! while decoding, so they are neither built nor cloned nor freed.

use std::borrow::Cow;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::{
    self, DeserializeSeed, Deserializer, IgnoredAny, IntoDeserializer, MapAccess, SeqAccess,
    Visitor,
};

/// `K` decoded without `metadata.managedFields` (it is left empty). Use as
/// `Api<Lean<Pod>>` with kube-rs watchers; it is read-only (not
/// serializable), so writes go through `Api<K>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Lean<K>(pub K);

impl<K: kube::Resource> kube::Resource for Lean<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }

    fn api_version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::api_version(dt)
    }

    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        self.0.meta()
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        self.0.meta_mut()
    }
}

impl<'de, K: de::Deserialize<'de>> de::Deserialize<'de> for Lean<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        K::deserialize(Filtered {
            inner: d,
            level: Level::Object,
        })
        .map(Lean)
    }
}

/// Where a [`Filtered`] deserializer sits: the object itself (whose
/// `metadata` is filtered), or its metadata (whose `managedFields` is
/// skipped).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Level {
    Object,
    Metadata,
}

/// A map key, borrowed from the input when it can be.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// Wraps the deserializer of an object (or of its metadata) so that its
/// map's entries pass through [`FilteredMap`].
struct Filtered<D> {
    inner: D,
    level: Level,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Filtered<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_any(FilteredVisitor {
            inner: visitor,
            level: self.level,
        })
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_map(FilteredVisitor {
            inner: visitor,
            level: self.level,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_struct(
            name,
            fields,
            FilteredVisitor {
                inner: visitor,
                level: self.level,
            },
        )
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_option(FilteredVisitor {
            inner: visitor,
            level: self.level,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct seq tuple
        tuple_struct enum identifier ignored_any
    }
}

struct FilteredVisitor<V> {
    inner: V,
    level: Level,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for FilteredVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(FilteredMap {
            inner: map,
            level: self.level,
            metadata_next: false,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(seq)
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    /// `Option<ObjectMeta>` and the like: the value inside is filtered.
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(Filtered {
            inner: d,
            level: self.level,
        })
    }
}

/// An object's entries with `managedFields` skipped (at the metadata
/// level), or with `metadata`'s value filtered in turn (at the object's).
struct FilteredMap<A> {
    inner: A,
    level: Level,
    /// The key just returned was the object's `metadata`.
    metadata_next: bool,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for FilteredMap<A> {
    type Error = A::Error;

    fn next_key_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        loop {
            let Some(key) = self.inner.next_key::<Key<'de>>()? else {
                return Ok(None);
            };
            match (self.level, key.as_str()) {
                (Level::Metadata, "managedFields") => {
                    self.inner.next_value::<IgnoredAny>()?;
                    continue;
                }
                (Level::Object, "metadata") => self.metadata_next = true,
                _ => self.metadata_next = false,
            }
            return match key {
                Key::Borrowed(k) => seed.deserialize(k.into_deserializer()).map(Some),
                Key::Owned(k) => seed.deserialize(k.into_deserializer()).map(Some),
            };
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        if std::mem::take(&mut self.metadata_next) {
            self.inner.next_value_seed(MetadataSeed(seed))
        } else {
            self.inner.next_value_seed(seed)
        }
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// Deserializes the object's metadata through a [`Filtered`] deserializer.
struct MetadataSeed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for MetadataSeed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Filtered {
            inner: d,
            level: Level::Metadata,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    use super::*;

    fn pod_json() -> serde_json::Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "web",
                "namespace": "default",
                "labels": {"app": "web", "managedFields": "a label, kept"},
                "managedFields": [{
                    "manager": "kubectl",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {"f:containers": {}}},
                }],
                "resourceVersion": "7",
            },
            "spec": {"containers": [{"name": "app", "image": "nginx"}], "nodeName": "n1"},
            "status": {"phase": "Pending"},
        })
    }

    #[test]
    fn everything_but_managed_fields_is_decoded() {
        let text = serde_json::to_string(&pod_json()).unwrap();
        let lean: Lean<Pod> = serde_json::from_str(&text).unwrap();
        let mut full: Pod = serde_json::from_str(&text).unwrap();
        assert!(full.metadata.managed_fields.is_some());
        assert_eq!(lean.0.metadata.managed_fields, None);
        full.metadata.managed_fields = None;
        assert_eq!(lean.0, full);
        // A label named like the field is only a label.
        assert_eq!(
            lean.0.metadata.labels.unwrap()["managedFields"],
            "a label, kept"
        );
    }

    #[test]
    fn escaped_keys_and_a_reader_decode_too() {
        // An escape in a key keeps serde_json from lending it.
        let text = serde_json::to_string(&pod_json())
            .unwrap()
            .replace("\"managedFields\":[", "\"managed\\u0046ields\":[");
        let lean: Lean<Pod> = serde_json::from_str(&text).unwrap();
        assert_eq!(lean.0.metadata.managed_fields, None);
        let lean: Lean<Pod> = serde_json::from_reader(text.as_bytes()).unwrap();
        assert_eq!(lean.0.metadata.name.as_deref(), Some("web"));
        assert_eq!(lean.0.metadata.managed_fields, None);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for text in [
            "null",
            "[]",
            "{\"metadata\": 5}",
            "{\"metadata\": {\"managedFields\": [}}",
            "{\"spec\": {\"containers\": 1}}",
        ] {
            assert!(serde_json::from_str::<Lean<Pod>>(text).is_err(), "{text}");
        }
    }

    #[test]
    fn a_watch_event_carries_a_lean_object() {
        let ev = json!({"type": "MODIFIED", "object": pod_json()});
        let ev: kube::core::WatchEvent<Lean<Pod>> =
            serde_json::from_slice(&serde_json::to_vec(&ev).unwrap()).unwrap();
        let kube::core::WatchEvent::Modified(lean) = ev else {
            panic!("not a modification");
        };
        assert_eq!(lean.0.metadata.managed_fields, None);
        assert_eq!(lean.0.spec.unwrap().node_name.as_deref(), Some("n1"));
    }
}
