//! Events, core `v1` and `events.k8s.io/v1` (one printer: upstream serves both
//! from the same objects): LAST SEEN TYPE REASON OBJECT MESSAGE, and SUBOBJECT
//! SOURCE FIRST SEEN COUNT NAME wide. The name column comes last here.

use serde_json::Value;

use super::fields::{get, int_at, name, opt_int, str_at, time_at};
use super::{Ctx, TableColumnDefinition, col, name_col};

/// Event columns, in upstream's order (Name last, wide only).
pub(super) static COLUMNS: &[TableColumnDefinition] = &[
    col(
        "Last Seen",
        "string",
        0,
        "Time since the event was last observed.",
    ),
    col("Type", "string", 0, "Normal or Warning."),
    col("Reason", "string", 0, "Short machine-readable reason."),
    col("Object", "string", 0, "kind/name of the object involved."),
    col(
        "Subobject",
        "string",
        1,
        "Field path of the part of the object involved.",
    ),
    col(
        "Source",
        "string",
        1,
        "Component (and host) that reported it.",
    ),
    col("Message", "string", 0, "Human-readable description."),
    col(
        "First Seen",
        "string",
        1,
        "Time since the event was first observed.",
    ),
    col("Count", "string", 1, "How many times it was observed."),
    name_col(1),
];

/// Where each field of the printer lives in one API version of Event.
struct Layout {
    involved: &'static str,
    message: &'static str,
    source: &'static str,
    first: &'static str,
    last: &'static str,
    count: &'static str,
}

const CORE: Layout = Layout {
    involved: "involvedObject",
    message: "message",
    source: "source",
    first: "firstTimestamp",
    last: "lastTimestamp",
    count: "count",
};

/// events.k8s.io/v1 names (the conversion upstream applies before printing).
const EVENTS_V1: Layout = Layout {
    involved: "regarding",
    message: "note",
    source: "deprecatedSource",
    first: "deprecatedFirstTimestamp",
    last: "deprecatedLastTimestamp",
    count: "deprecatedCount",
};

/// The cells of one core `v1` Event.
pub(super) fn core_row(ev: &Value, ctx: &Ctx) -> Vec<Value> {
    row(ev, &CORE, ctx)
}

/// The cells of one `events.k8s.io/v1` Event.
pub(super) fn events_v1_row(ev: &Value, ctx: &Ctx) -> Vec<Value> {
    row(ev, &EVENTS_V1, ctx)
}

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() { b } else { a }
}

fn row(ev: &Value, l: &Layout, ctx: &Ctx) -> Vec<Value> {
    let since = |t| super::fields::since(t, ctx);
    let first_time = time_at(ev, &[l.first]);
    let first = if first_time.is_some() {
        since(first_time)
    } else {
        since(time_at(ev, &["eventTime"]))
    };
    let last_time = time_at(ev, &[l.last]);
    let mut last = if last_time.is_some() {
        since(last_time)
    } else {
        first.clone()
    };
    let mut count = int_at(ev, &[l.count]);
    if get(ev, &["series"]).is_some_and(Value::is_object) {
        last = since(time_at(ev, &["series", "lastObservedTime"]));
        count = opt_int(ev, &["series", "count"]).unwrap_or(0);
    } else if count == 0 {
        // Singleton events of the new API carry no count.
        count = 1;
    }

    let kind = str_at(ev, &[l.involved, "kind"]).to_lowercase();
    let involved_name = str_at(ev, &[l.involved, "name"]);
    let target = if involved_name.is_empty() {
        kind
    } else {
        format!("{kind}/{involved_name}")
    };

    let component = first_non_empty(
        str_at(ev, &[l.source, "component"]),
        str_at(ev, &["reportingController"]),
    );
    let host = first_non_empty(
        str_at(ev, &[l.source, "host"]),
        str_at(ev, &["reportingInstance"]),
    );
    let source = if host.is_empty() {
        component.to_owned()
    } else {
        format!("{component}, {host}")
    };

    vec![
        last.into(),
        str_at(ev, &["type"]).into(),
        str_at(ev, &["reason"]).into(),
        target.into(),
        str_at(ev, &[l.involved, "fieldPath"]).into(),
        source.into(),
        str_at(ev, &[l.message]).trim().into(),
        first.into(),
        count.into(),
        name(ev).into(),
    ]
}
