//! Tolerant readers of JSON objects and upstream's small formatting helpers
//! (labels, selectors, container lists, timestamps, quantities).
//!
//! A missing or mistyped field reads as the zero value of its Go type, which is
//! what upstream prints for a field that is not set.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Ctx;
use super::duration::human_duration;
use crate::selector::labels::{Selector, from_label_selector};

/// The value at `path` (object keys), if every step exists.
pub(super) fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.as_object()?.get(*k))
}

/// The string at `path`; empty when missing or not a string.
pub(super) fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    get(v, path).and_then(Value::as_str).unwrap_or("")
}

/// The string at `path`, or `None` when missing, null or not a string (a Go `*string`).
pub(super) fn opt_str<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(v, path).and_then(Value::as_str)
}

/// The integer at `path`, if it is one.
pub(super) fn opt_int(v: &Value, path: &[&str]) -> Option<i64> {
    let v = get(v, path)?;
    v.as_i64()
        .or_else(|| v.as_u64().map(|u| i64::try_from(u).unwrap_or(i64::MAX)))
}

/// The integer at `path`; 0 when missing or not an integer.
pub(super) fn int_at(v: &Value, path: &[&str]) -> i64 {
    opt_int(v, path).unwrap_or(0)
}

/// The boolean at `path`, if it is one (a Go `*bool`).
pub(super) fn opt_bool(v: &Value, path: &[&str]) -> Option<bool> {
    get(v, path).and_then(Value::as_bool)
}

/// The boolean at `path`; false when missing or not a boolean.
pub(super) fn bool_at(v: &Value, path: &[&str]) -> bool {
    opt_bool(v, path).unwrap_or(false)
}

/// The array at `path`; empty when missing or not an array.
pub(super) fn array_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    get(v, path)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The object at `path`, if it is one.
pub(super) fn object_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Map<String, Value>> {
    get(v, path).and_then(Value::as_object)
}

/// Number of entries of the object (map) at `path`; 0 when missing.
pub(super) fn map_len(v: &Value, path: &[&str]) -> usize {
    object_at(v, path).map_or(0, Map::len)
}

/// The string entries of the map at `path`, sorted by key (non-string values skipped).
pub(super) fn string_map<'a>(v: &'a Value, path: &[&str]) -> Vec<(&'a str, &'a str)> {
    let mut entries: Vec<(&str, &str)> = object_at(v, path)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
        .collect();
    entries.sort_unstable();
    entries
}

/// `metadata.name`.
pub(super) fn name(obj: &Value) -> &str {
    str_at(obj, &["metadata", "name"])
}

/// True when `metadata.deletionTimestamp` is set.
pub(super) fn is_deleting(obj: &Value) -> bool {
    get(obj, &["metadata", "deletionTimestamp"]).is_some_and(|v| !v.is_null())
}

/// A timestamp at `path` (RFC 3339, any precision), or `None` when missing,
/// malformed or Go's zero time (`0001-01-01T00:00:00Z`).
pub(super) fn time_at(v: &Value, path: &[&str]) -> Option<OffsetDateTime> {
    parse_time(get(v, path)?.as_str()?)
}

/// Parses an RFC 3339 timestamp; Go's zero time counts as unset.
pub(super) fn parse_time(s: &str) -> Option<OffsetDateTime> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    let zero = OffsetDateTime::new_utc(
        time::Date::from_calendar_date(1, time::Month::January, 1).ok()?,
        time::Time::MIDNIGHT,
    );
    (t != zero).then_some(t)
}

/// Upstream's `translateTimestampSince`: the human duration from `t` to now, or
/// `<unknown>` when unset.
pub(super) fn since(t: Option<OffsetDateTime>, ctx: &Ctx) -> String {
    match t {
        Some(t) => human_duration(ctx.now - t),
        None => "<unknown>".to_owned(),
    }
}

/// The AGE cell: time since `metadata.creationTimestamp`.
pub(super) fn age(obj: &Value, ctx: &Ctx) -> Value {
    Value::from(since(time_at(obj, &["metadata", "creationTimestamp"]), ctx))
}

/// Upstream's `labels.FormatLabels`: `k=v` pairs sorted by key, comma-joined;
/// `<none>` when empty.
pub(super) fn format_labels(v: &Value, path: &[&str]) -> String {
    let pairs: Vec<String> = string_map(v, path)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if pairs.is_empty() {
        "<none>".to_owned()
    } else {
        pairs.join(",")
    }
}

/// Converts the `metav1.LabelSelector` at `path` as upstream's
/// `LabelSelectorAsSelector`: absent or null is a nil selector (selects nothing),
/// `Err` when malformed or invalid.
fn label_selector(v: &Value, path: &[&str]) -> Result<Selector, ()> {
    let selector: Option<LabelSelector> = match get(v, path) {
        None | Some(Value::Null) => None,
        Some(raw) => Some(serde_json::from_value(raw.clone()).map_err(|_| ())?),
    };
    from_label_selector(selector.as_ref()).map_err(|_| ())
}

/// Upstream's `metav1.FormatLabelSelector`: the selector's string form, `<none>`
/// when it selects everything or nothing, `<error>` when invalid.
pub(super) fn format_label_selector(v: &Value, path: &[&str]) -> String {
    match label_selector(v, path) {
        Ok(s) => {
            let s = s.to_string();
            if s.is_empty() { "<none>".to_owned() } else { s }
        }
        Err(()) => "<error>".to_owned(),
    }
}

/// The selector string as deployments print it: empty when it selects everything
/// or nothing, `<invalid>` when invalid.
pub(super) fn selector_string(v: &Value, path: &[&str]) -> String {
    label_selector(v, path).map_or_else(|()| "<invalid>".to_owned(), |s| s.to_string())
}

/// Upstream's `layoutContainerCells`: the names and the images of the containers
/// at `path`, each comma-joined.
pub(super) fn container_cells(v: &Value, path: &[&str]) -> (Value, Value) {
    let containers = array_at(v, path);
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, &["image"])).collect();
    (names.join(",").into(), images.join(",").into())
}

/// An `IntOrString` as Go's `String()`: the number or the string.
pub(super) fn int_or_string(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.as_i64().map_or_else(|| n.to_string(), |i| i.to_string())),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// A resource quantity as stored (the API server stores the canonical form); the
/// zero quantity prints as `0`.
pub(super) fn quantity(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "0".to_owned(),
    }
}

/// Upstream's `GetAccessModesAsString`: RWO, ROX, RWX, RWOP in that order, each
/// once, comma-joined.
pub(super) fn access_modes(v: &Value, path: &[&str]) -> String {
    let present: BTreeSet<&str> = array_at(v, path).iter().filter_map(Value::as_str).collect();
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| present.contains(mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// Upstream's `listWithMoreString`: the first `max` items, then ` + N more...`;
/// `<unset>` when there are none.
pub(super) fn list_with_more(items: &[String], max: usize) -> String {
    let shown = items
        .iter()
        .take(max)
        .cloned()
        .collect::<Vec<_>>()
        .join(",");
    if items.len() > max {
        format!("{shown} + {} more...", items.len() - max)
    } else if shown.is_empty() {
        "<unset>".to_owned()
    } else {
        shown
    }
}

/// Go's `net.JoinHostPort`: brackets around hosts containing a colon (IPv6).
pub(super) fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `"True"`, `"False"` or `"<unset>"` (upstream's `printBoolPtr`).
pub(super) fn bool_ptr(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    }
}

/// The addresses of a load balancer status (`ip`, else `hostname`), deduplicated
/// and sorted, comma-joined. The server prints the wide form, never clipped.
pub(super) fn load_balancer_ingress(v: &Value, path: &[&str]) -> String {
    let set: BTreeSet<&str> = array_at(v, path)
        .iter()
        .filter_map(|i| {
            let ip = str_at(i, &["ip"]);
            let host = str_at(i, &["hostname"]);
            if !ip.is_empty() {
                Some(ip)
            } else if !host.is_empty() {
                Some(host)
            } else {
                None
            }
        })
        .collect();
    set.into_iter().collect::<Vec<_>>().join(",")
}
