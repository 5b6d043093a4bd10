//! Shared helpers of the printer tests.

use serde_json::Value;
use time::OffsetDateTime;

use crate::resources::{RESOURCES, ResourceInfo};

/// The fixed "now" of every test: 2025-06-01T12:00:00Z.
pub(super) fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_748_779_200).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// An RFC 3339 timestamp `secs` seconds before [`now`].
pub(super) fn ago(secs: i64) -> String {
    let t = now() - time::Duration::seconds(secs);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The served resource of `group` and `kind`.
pub(super) fn res(group: &str, kind: &str) -> &'static ResourceInfo {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.kind == kind)
        .unwrap_or_else(|| panic!("no resource {group}/{kind}"))
}

/// The cells kubectl shows by default (priority-0 columns).
pub(super) fn default_cells(r: &ResourceInfo, obj: &Value) -> Vec<Value> {
    let cells = super::row(r, obj, now());
    let cols = super::columns(r);
    assert_eq!(cells.len(), cols.len(), "one cell per column");
    cells
        .into_iter()
        .zip(cols)
        .filter(|(_, c)| c.priority == 0)
        .map(|(v, _)| v)
        .collect()
}

/// The cells of `-o wide` (every column).
pub(super) fn wide_cells(r: &ResourceInfo, obj: &Value) -> Vec<Value> {
    let cells = super::row(r, obj, now());
    assert_eq!(cells.len(), super::columns(r).len(), "one cell per column");
    cells
}

/// The header kubectl prints: upper-cased names of the columns of `priority` 0
/// (or all with `wide`).
pub(super) fn header(r: &ResourceInfo, wide: bool) -> Vec<String> {
    super::columns(r)
        .iter()
        .filter(|c| wide || c.priority == 0)
        .map(|c| c.name.to_uppercase())
        .collect()
}

/// Builds a JSON array of cells from string-ish literals.
#[macro_export]
macro_rules! cells {
    ($($v:expr),* $(,)?) => { vec![$(serde_json::Value::from($v)),*] };
}
