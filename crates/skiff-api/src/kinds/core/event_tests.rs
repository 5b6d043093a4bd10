#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;

use crate::kinds::core::util::messages;
use crate::kinds::{validate, validate_update};

const EVENTS: &str = "events.k8s.io";

#[test]
fn core_events_check_the_involved_namespace() {
    let ok = json!({"metadata": {"namespace": "web"}, "involvedObject": {"kind": "Pod", "namespace": "web"}, "reason": "Started"});
    assert!(validate("", "Event", &ok).is_empty());
    let node_event =
        json!({"metadata": {"namespace": "default"}, "involvedObject": {"kind": "Node"}});
    assert!(validate("", "Event", &node_event).is_empty());
    let wrong = json!({"metadata": {"namespace": "web"}, "involvedObject": {"kind": "Pod", "namespace": "db"}});
    assert_eq!(
        messages(&validate("", "Event", &wrong)),
        vec!["involvedObject.namespace: Invalid value: \"db\": does not match event.namespace"]
    );
    // A new-style event through core/v1 needs the reporting fields.
    let new_style = json!({"metadata": {"namespace": "web"}, "involvedObject": {"namespace": "web"}, "eventTime": "2026-01-01T00:00:00.000000Z", "reason": "x".repeat(129)});
    assert_eq!(
        messages(&validate("", "Event", &new_style)),
        vec![
            "reportingComponent: Required value",
            "reportingComponent: Invalid value: \"\": name part must be non-empty",
            "reportingComponent: Invalid value: \"\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
            "reportingInstance: Required value",
            "action: Required value",
            "reason: Invalid value: \"\": can have at most 128 characters",
        ]
    );
}

#[test]
fn events_api_is_strict() {
    let good = json!({
        "metadata": {"namespace": "web"},
        "regarding": {"kind": "Pod", "namespace": "web", "name": "p"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "example.com/ctl",
        "reportingInstance": "ctl-1",
        "action": "Scheduling",
        "reason": "Scheduled",
        "type": "Normal",
        "note": "ok",
    });
    assert!(
        validate(EVENTS, "Event", &good).is_empty(),
        "{:?}",
        messages(&validate(EVENTS, "Event", &good))
    );
    let mut bad = good.clone();
    bad["type"] = json!("Info");
    bad["deprecatedCount"] = json!(3);
    bad["series"] = json!({"count": 1});
    assert_eq!(
        messages(&validate(EVENTS, "Event", &bad)),
        vec![
            "series.count: Invalid value: \"\": should be at least 2",
            "series.lastObservedTime: Required value",
            "type: Invalid value: \"\": has invalid value: Info",
            "count: Invalid value: \"\": needs to be unset",
        ]
    );
    let mut changed = good.clone();
    changed["note"] = json!("different");
    assert_eq!(
        messages(&validate_update(EVENTS, "Event", &changed, &good)),
        vec!["message: Invalid value: \"different\": field is immutable"]
    );
    // core/v1 updates are not held to the immutability rules.
    let core_old = json!({"metadata": {"namespace": "web"}, "involvedObject": {"namespace": "web"}, "message": "a", "count": 1});
    let core_new = json!({"metadata": {"namespace": "web"}, "involvedObject": {"namespace": "web"}, "message": "b", "count": 2});
    assert!(validate_update("", "Event", &core_new, &core_old).is_empty());
}
