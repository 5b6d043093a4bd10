//! The `meta.k8s.io/v1` `Table` document and its rows.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::fields::{get, name, time_at};
use super::{columns, has_printer, pod, row};
use crate::go_quote;
use crate::resources::ResourceInfo;

/// What each row carries in `object` (the `includeObject` parameter of
/// `TableOptions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObjectPolicy {
    /// No object (`"object": null`).
    None,
    /// The object's metadata as a `PartialObjectMetadata` (the default).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObjectPolicy {
    /// Parses the `includeObject` query parameter: `None`, `Metadata`, `Object`,
    /// or empty for the default. The error is upstream's BadRequest message.
    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "" | "Metadata" => Ok(IncludeObjectPolicy::Metadata),
            "None" => Ok(IncludeObjectPolicy::None),
            "Object" => Ok(IncludeObjectPolicy::Object),
            other => Err(format!(
                "unrecognized includeObject value: {}",
                go_quote(other)
            )),
        }
    }
}

/// The cells of upstream's default table convertor: the name and the creation
/// time in RFC 3339 (UTC, seconds; Go's zero time when unset).
pub(super) fn default_row(object: &Value) -> Vec<Value> {
    let created = time_at(object, &["metadata", "creationTimestamp"]).map_or_else(
        || "0001-01-01T00:00:00Z".to_owned(),
        |t| {
            let t = t.to_offset(time::UtcOffset::UTC);
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        },
    );
    vec![name(object).into(), created.into()]
}

/// The `object` of a row under `include`.
fn row_object(object: &Value, include: IncludeObjectPolicy) -> Value {
    match include {
        IncludeObjectPolicy::None => Value::Null,
        IncludeObjectPolicy::Object => object.clone(),
        IncludeObjectPolicy::Metadata => {
            let metadata = get(object, &["metadata"])
                .filter(|m| m.is_object())
                .cloned()
                .unwrap_or_else(|| Value::Object(Map::new()));
            json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": metadata,
            })
        }
    }
}

/// One `TableRow`: `cells`, `conditions` when upstream sets any (finished pods),
/// and `object` as `include` asks.
pub fn table_row(
    resource: &ResourceInfo,
    object: &Value,
    now: OffsetDateTime,
    include: IncludeObjectPolicy,
) -> Value {
    let mut r = Map::new();
    r.insert("cells".into(), Value::Array(row(resource, object, now)));
    if resource.group.is_empty()
        && resource.kind == "Pod"
        && let Some(conditions) = pod::row_conditions(object)
    {
        r.insert("conditions".into(), conditions);
    }
    r.insert("object".into(), row_object(object, include));
    Value::Object(r)
}

/// A whole `meta.k8s.io/v1` `Table` of `objects` (one object for a GET, the
/// items for a LIST or one watch event): `metadata` from `list_meta`
/// (resourceVersion, continue, remainingItemCount), the column definitions of
/// [`columns`], and one row per object.
pub fn table(
    resource: &ResourceInfo,
    objects: &[Value],
    now: OffsetDateTime,
    include: IncludeObjectPolicy,
    list_meta: &ListMeta,
) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| table_row(resource, o, now, include))
        .collect();
    // Upstream's default convertor leaves an empty table's rows nil (`null`);
    // its printers return an empty list.
    let rows = if rows.is_empty() && !has_printer(resource) {
        Value::Null
    } else {
        Value::Array(rows)
    };
    let metadata = serde_json::to_value(list_meta).unwrap_or_else(|_| json!({}));
    let column_definitions: Vec<Value> = columns(resource).iter().map(|c| c.to_json()).collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": column_definitions,
        "rows": rows,
    })
}
