//! The part of a stored object that label and field selectors read, decoded
//! without the rest.
//!
//! The watch cache indexes every write's labels and selectable fields. Those
//! are all scalars at most two levels deep (`type`, `spec.nodeName`,
//! `involvedObject.kind`), plus `metadata.labels` and `status.podIPs`, so the
//! containers, volumes, conditions and managedFields that make up most of a
//! pod's JSON are skipped by the parser instead of being built into a
//! `serde_json::Value` and dropped again.

use std::fmt;

use serde::Deserializer;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Second-level members kept whole (they are not scalars).
const KEPT_WHOLE: &[(&str, &str)] = &[("metadata", "labels"), ("status", "podIPs")];

/// `json` reduced to what selectors read: every scalar at the top level and
/// one level below, plus [`KEPT_WHOLE`]. `None` when `json` is not a JSON
/// object.
pub(crate) fn decode(json: &[u8]) -> Option<Value> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let value = Level::Top.deserialize(&mut de).ok()??;
    de.end().ok()?;
    value.is_object().then_some(value)
}

/// Where a value sits: what of it is kept.
#[derive(Clone, Copy)]
enum Level<'a> {
    /// The object itself: every member's kept part.
    Top,
    /// The top-level member named so: scalars, and of an object its
    /// second-level scalars and [`KEPT_WHOLE`] members.
    Member(&'a str),
    /// A second-level value: scalars only.
    Second,
}

impl<'de> DeserializeSeed<'de> for Level<'_> {
    type Value = Option<Value>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Level<'_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(Value::from(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Value::String(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Some(Value::Null))
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Some(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let parent = match self {
            Level::Top => None,
            Level::Member(key) => Some(key),
            Level::Second => {
                // Third level: nothing kept but [`KEPT_WHOLE`], read above.
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                return Ok(None);
            }
        };
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = match parent {
                None => map.next_value_seed(Level::Member(&key))?,
                Some(p) if KEPT_WHOLE.contains(&(p, key.as_str())) => {
                    Some(map.next_value::<Value>()?)
                }
                Some(_) => map.next_value_seed(Level::Second)?,
            };
            if let Some(value) = value {
                out.insert(key, value);
            }
        }
        Ok(Some(Value::Object(out)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;
    use skiff_api::resources;
    use skiff_api::selector::selectable_fields;

    use super::*;

    fn same_fields(group: &str, plural: &str, obj: Value) {
        let info = resources::by_gvr(group, "v1", plural).expect("resource");
        let json = serde_json::to_vec(&obj).unwrap();
        let sparse = decode(&json).unwrap();
        assert_eq!(
            selectable_fields(info, &sparse),
            selectable_fields(info, &obj),
            "{plural}"
        );
        assert_eq!(
            sparse.pointer("/metadata/labels"),
            obj.pointer("/metadata/labels"),
            "{plural}"
        );
    }

    #[test]
    fn selectors_read_the_same_from_the_sparse_object() {
        same_fields(
            "",
            "pods",
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web", "tier": "1"},
                             "managedFields": [{"manager": "m", "fieldsV1": {"f:spec": {}}}],
                             "annotations": {"a": "b"}},
                "spec": {"nodeName": "n1", "restartPolicy": "Always", "schedulerName": "s",
                         "serviceAccountName": "sa", "hostNetwork": true,
                         "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}]},
                "status": {"phase": "Running", "podIP": "10.0.0.1", "nominatedNodeName": "n2",
                           "podIPs": [{"ip": "10.0.0.2"}],
                           "conditions": [{"type": "Ready", "status": "True"}]},
            }),
        );
        same_fields(
            "",
            "nodes",
            json!({"metadata": {"name": "n"}, "spec": {"unschedulable": true, "taints": [{"key": "k"}]}}),
        );
        same_fields(
            "",
            "events",
            json!({"metadata": {"name": "e", "namespace": "ns"},
                   "involvedObject": {"kind": "Pod", "name": "p", "uid": "u", "fieldPath": "spec"},
                   "reason": "Scheduled", "type": "Normal", "source": {"component": "sched"},
                   "count": 3}),
        );
        same_fields(
            "events.k8s.io",
            "events",
            json!({"apiVersion": "events.k8s.io/v1", "metadata": {"name": "e", "namespace": "ns"},
                   "regarding": {"kind": "Pod", "name": "p"}, "reportingController": "c",
                   "reason": "r", "type": "Warning"}),
        );
        same_fields(
            "apps",
            "replicasets",
            json!({"metadata": {"name": "rs", "namespace": "ns", "labels": {}}, "status": {"replicas": 3}}),
        );
    }

    #[test]
    fn only_scalars_near_the_top_are_kept() {
        let obj = json!({
            "kind": "Pod",
            "items": [1, 2],
            "metadata": {"name": "p", "labels": {"a": "b"}, "managedFields": [{"x": 1}],
                         "annotations": {"k": "v"}},
            "spec": {"nodeName": "n", "containers": [{"name": "c"}], "nested": {"deep": "x"}},
            "status": {"podIPs": [{"ip": "1.2.3.4"}], "conditions": [{"type": "Ready"}]},
        });
        let sparse = decode(&serde_json::to_vec(&obj).unwrap()).unwrap();
        assert_eq!(
            sparse,
            json!({
                "kind": "Pod",
                "metadata": {"name": "p", "labels": {"a": "b"}},
                "spec": {"nodeName": "n"},
                "status": {"podIPs": [{"ip": "1.2.3.4"}]},
            })
        );
    }

    #[test]
    fn non_objects_and_bad_json_are_refused() {
        assert_eq!(decode(b"[1, 2]"), None);
        assert_eq!(decode(b"\"x\""), None);
        assert_eq!(decode(b"{\"a\": 1"), None);
        assert_eq!(decode(b"{\"a\": 1} trailing"), None);
    }
}
