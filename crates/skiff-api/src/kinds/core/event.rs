//! Events, in both APIs: core/v1 `Event` and `events.k8s.io/v1` `Event`
//! are one internal type upstream, validated by the same code with the API
//! version deciding how strict it is. Error paths use the internal field
//! names (`involvedObject`, `message`, ...) in both, as upstream does.

use serde_json::Value;

use super::util::{FIELD_IMMUTABLE, bad, qualified_name, str_or_empty};
use crate::field::{BadValue, Error, ErrorList, Path};
use crate::validation::is_dns1123_subdomain;

/// Which API an Event is served through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::kinds) enum Api {
    /// core/v1: legacy rules only.
    CoreV1,
    /// events.k8s.io/v1: strict rules on create and update.
    EventsV1,
}

const REPORTING_INSTANCE_LIMIT: usize = 128;
const ACTION_LIMIT: usize = 128;
const REASON_LIMIT: usize = 128;
const NOTE_LIMIT: usize = 1024;

/// The internal field names and the JSON names each API uses for them.
const FIELDS: &[(&str, &str, &str)] = &[
    ("involvedObject", "involvedObject", "regarding"),
    ("message", "message", "note"),
    ("source", "source", "deprecatedSource"),
    (
        "firstTimestamp",
        "firstTimestamp",
        "deprecatedFirstTimestamp",
    ),
    ("lastTimestamp", "lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "count", "deprecatedCount"),
    (
        "reportingController",
        "reportingComponent",
        "reportingController",
    ),
];

/// The value of internal field `name` in an event served through `api`.
fn field<'a>(ev: &'a Value, api: Api, name: &str) -> Option<&'a Value> {
    let json = FIELDS
        .iter()
        .find(|(internal, _, _)| *internal == name)
        .map_or(name, |(_, core, events)| match api {
            Api::CoreV1 => core,
            Api::EventsV1 => events,
        });
    ev.get(json).filter(|v| !v.is_null())
}

fn text<'a>(ev: &'a Value, api: Api, name: &str) -> &'a str {
    field(ev, api, name)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn is_set(ev: &Value, api: Api, name: &str) -> bool {
    field(ev, api, name).is_some_and(|v| v.as_str() != Some(""))
}

fn limit(errs: &mut ErrorList, name: &str, value: &str, max: usize, required: bool) {
    let p = Path::new(name);
    if required && value.is_empty() {
        errs.push(Error::required(&p, ""));
    }
    if value.len() > max {
        errs.push(Error::invalid(
            &p,
            "",
            &format!("can have at most {max} characters"),
        ));
    }
}

/// Upstream's `legacyValidateEvent`.
fn legacy(ev: &Value, api: Api) -> ErrorList {
    let mut errs = ErrorList::new();
    let ns = ev
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let involved_ns = field(ev, api, "involvedObject")
        .map(|o| str_or_empty(o, "namespace"))
        .unwrap_or_default();
    let ns_path = Path::new("involvedObject").child("namespace");
    let mismatch = |errs: &mut ErrorList| {
        errs.push(Error::invalid(
            &ns_path,
            involved_ns,
            "does not match event.namespace",
        ));
    };
    if !is_set(ev, api, "eventTime") {
        if involved_ns.is_empty() {
            if !ns.is_empty() && ns != "default" {
                mismatch(&mut errs);
            }
        } else if ns != involved_ns {
            mismatch(&mut errs);
        }
    } else {
        if involved_ns.is_empty() && ns != "default" && ns != "kube-system" {
            mismatch(&mut errs);
        }
        let rc_name = match api {
            Api::CoreV1 => "reportingComponent",
            Api::EventsV1 => "reportingController",
        };
        let rc = text(ev, api, "reportingController");
        if rc.is_empty() {
            errs.push(Error::required(&Path::new(rc_name), ""));
        }
        qualified_name(&mut errs, &Path::new(rc_name), rc);
        limit(
            &mut errs,
            "reportingInstance",
            text(ev, api, "reportingInstance"),
            REPORTING_INSTANCE_LIMIT,
            true,
        );
        limit(
            &mut errs,
            "action",
            text(ev, api, "action"),
            ACTION_LIMIT,
            true,
        );
        limit(
            &mut errs,
            "reason",
            text(ev, api, "reason"),
            REASON_LIMIT,
            true,
        );
        limit(
            &mut errs,
            "message",
            text(ev, api, "message"),
            NOTE_LIMIT,
            false,
        );
    }
    for msg in is_dns1123_subdomain(ns) {
        errs.push(Error::invalid(&Path::new("namespace"), ns, &msg));
    }
    errs
}

fn series(ev: &Value, api: Api, errs: &mut ErrorList) {
    let Some(series) = field(ev, api, "series") else {
        return;
    };
    if series.get("count").and_then(Value::as_i64).unwrap_or(0) < 2 {
        errs.push(Error::invalid(
            &Path::new("series.count"),
            "",
            "should be at least 2",
        ));
    }
    if series.get("lastObservedTime").is_none_or(Value::is_null) {
        errs.push(Error::required(&Path::new("series.lastObservedTime"), ""));
    }
}

/// Upstream's `ValidateEventCreate`.
pub(in crate::kinds) fn validate_event(ev: &Value, api: Api) -> ErrorList {
    let mut errs = legacy(ev, api);
    if api == Api::CoreV1 {
        return errs;
    }
    series(ev, api, &mut errs);
    if !is_set(ev, api, "eventTime") {
        errs.push(Error::required(&Path::new("eventTime"), ""));
    }
    let ty = text(ev, api, "type");
    if ty != "Normal" && ty != "Warning" {
        errs.push(Error::invalid(
            &Path::new("type"),
            "",
            &format!("has invalid value: {ty}"),
        ));
    }
    for name in ["firstTimestamp", "lastTimestamp"] {
        if is_set(ev, api, name) {
            errs.push(Error::invalid(&Path::new(name), "", "needs to be unset"));
        }
    }
    if field(ev, api, "count").and_then(Value::as_i64).unwrap_or(0) != 0 {
        errs.push(Error::invalid(&Path::new("count"), "", "needs to be unset"));
    }
    let source = field(ev, api, "source");
    if source.is_some_and(|s| {
        !str_or_empty(s, "component").is_empty() || !str_or_empty(s, "host").is_empty()
    }) {
        errs.push(Error::invalid(
            &Path::new("source"),
            "",
            "needs to be unset",
        ));
    }
    errs
}

/// Upstream's `ValidateEventUpdate`.
pub(in crate::kinds) fn validate_event_update(new: &Value, old: &Value, api: Api) -> ErrorList {
    let mut errs = legacy(new, api);
    if api == Api::CoreV1 {
        return errs;
    }
    if field(new, api, "series") != field(old, api, "series") {
        series(new, api, &mut errs);
    }
    for name in [
        "involvedObject",
        "reason",
        "message",
        "source",
        "firstTimestamp",
        "lastTimestamp",
        "count",
        "type",
        "eventTime",
        "action",
        "related",
        "reportingController",
        "reportingInstance",
    ] {
        let (n, o) = (field(new, api, name), field(old, api, name));
        if n != o {
            errs.push(Error::invalid(
                &Path::new(name),
                n.map_or(BadValue::Null, bad),
                FIELD_IMMUTABLE,
            ));
        }
    }
    errs
}

#[cfg(test)]
#[path = "event_tests.rs"]
mod tests;
