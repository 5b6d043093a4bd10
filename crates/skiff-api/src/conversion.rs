//! Conversion between the two APIs that share one storage: core/v1 Events
//! and events.k8s.io/v1 Events (`/registry/events/`). Each object is stored
//! in the shape of the API that wrote it (its `apiVersion` says which), and
//! [`view`] converts it for the API that reads it, field by field as
//! upstream's conversion functions map them.

use serde_json::{Map, Value};

/// `(core/v1 field, events.k8s.io/v1 field)` pairs that differ in name.
const RENAMED: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

/// Fields with the same name in both.
const SHARED: &[&str] = &[
    "metadata",
    "eventTime",
    "series",
    "action",
    "reason",
    "related",
    "type",
    "reportingInstance",
];

/// `obj` as the API `group`/`version`/`kind` shows it. Objects already in
/// that shape, and every kind but Event, are returned unchanged.
pub fn view(group: &str, version: &str, kind: &str, obj: Value) -> Value {
    if kind != "Event" {
        return obj;
    }
    let stored = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    match (group, version, stored) {
        ("", "v1", "events.k8s.io/v1") => convert(obj, false),
        ("events.k8s.io", "v1", "v1") => convert(obj, true),
        _ => obj,
    }
}

/// Converts an Event to events.k8s.io/v1 (`to_events`) or to core/v1.
fn convert(obj: Value, to_events: bool) -> Value {
    let Value::Object(src) = obj else {
        return obj;
    };
    let mut out = Map::new();
    out.insert(
        "apiVersion".into(),
        Value::String(if to_events { "events.k8s.io/v1" } else { "v1" }.into()),
    );
    out.insert("kind".into(), Value::String("Event".into()));
    for field in SHARED {
        if let Some(v) = src.get(*field) {
            out.insert((*field).into(), v.clone());
        }
    }
    for (core, events) in RENAMED {
        let (from, to) = if to_events {
            (core, events)
        } else {
            (events, core)
        };
        if let Some(v) = src.get(*from) {
            out.insert((*to).into(), v.clone());
        }
    }
    // A core Event's series count and last time live in `series` too; the
    // core API has no `series.lastObservedTime` twin, nothing more to map.
    Value::Object(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_convert_both_ways_and_round_trip() {
        let core = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "ns", "resourceVersion": "5"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "ns"},
            "reason": "Started", "message": "Started container c", "type": "Normal",
            "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:05Z",
            "count": 2, "reportingComponent": "kubelet", "reportingInstance": "n1",
        });
        let events = view("events.k8s.io", "v1", "Event", core.clone());
        assert_eq!(events["apiVersion"], "events.k8s.io/v1");
        assert_eq!(events["regarding"]["name"], "p");
        assert_eq!(events["note"], "Started container c");
        assert_eq!(events["deprecatedCount"], 2);
        assert_eq!(events["deprecatedSource"]["host"], "n1");
        assert_eq!(events["reportingController"], "kubelet");
        assert!(events.get("message").is_none());
        assert_eq!(view("", "v1", "Event", events), core);
    }

    #[test]
    fn same_shape_and_other_kinds_are_untouched() {
        let core = json!({"apiVersion": "v1", "kind": "Event", "message": "m"});
        assert_eq!(view("", "v1", "Event", core.clone()), core);
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "message": "m"});
        assert_eq!(view("events.k8s.io", "v1", "Pod", pod.clone()), pod);
    }
}
