//! Response content negotiation from the `Accept` header: plain JSON, a
//! `meta.k8s.io/v1` Table (what `kubectl get` asks for), or
//! `PartialObjectMetadata(List)` (what metadata-only informers ask for).
//! Anything else we cannot produce is 406.

use serde_json::{Value, json};
use skiff_api::printers::{self, IncludeObjectPolicy};
use skiff_api::resources::ResourceInfo;
use skiff_api::status::ApiError;

/// The shape of the response body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// The objects themselves.
    Json,
    /// A `meta.k8s.io/v1` Table.
    Table(IncludeObjectPolicy),
    /// `PartialObjectMetadata` / `PartialObjectMetadataList` (meta.k8s.io/v1).
    Metadata,
}

/// Media types we can produce, for the 406 message.
const PRODUCIBLE: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/json;as=Table;v=v1;g=meta.k8s.io",
    "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io",
    "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
];

/// Picks the response shape from `Accept` and the `includeObject` query
/// parameter, taking the first media range we can serve.
pub fn choose(accept: &str, include_object: Option<&str>) -> Result<Output, ApiError> {
    if accept.trim().is_empty() {
        return Ok(Output::Json);
    }
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let (mut as_, mut g, mut v) = (None, None, None);
        for p in parts {
            if let Some((k, val)) = p.split_once('=') {
                let val = val.trim().trim_matches('"');
                match k.trim() {
                    "as" => as_ = Some(val.to_owned()),
                    "g" => g = Some(val.to_owned()),
                    "v" => v = Some(val.to_owned()),
                    _ => {}
                }
            }
        }
        if !matches!(media.as_str(), "application/json" | "application/*" | "*/*") {
            continue;
        }
        match (as_.as_deref(), g.as_deref(), v.as_deref()) {
            (None, _, _) => return Ok(Output::Json),
            (Some("Table"), Some("meta.k8s.io"), Some("v1")) => {
                let include = IncludeObjectPolicy::parse(include_object.unwrap_or_default())
                    .map_err(ApiError::BadRequest)?;
                return Ok(Output::Table(include));
            }
            (
                Some("PartialObjectMetadata" | "PartialObjectMetadataList"),
                Some("meta.k8s.io"),
                Some("v1"),
            ) => {
                return Ok(Output::Metadata);
            }
            // v1beta1 Tables and other shapes: try the next range.
            _ => {}
        }
    }
    Err(ApiError::NotAcceptable {
        accepted: PRODUCIBLE.iter().map(|s| (*s).to_owned()).collect(),
    })
}

/// Renders one object in `output`.
pub fn object(info: &ResourceInfo, output: Output, obj: Value) -> Value {
    let obj = view(info, obj);
    match output {
        Output::Json => obj,
        Output::Table(include) => {
            let meta = list_meta(obj.pointer("/metadata/resourceVersion"), None);
            printers::table(info, &[obj], now(), include, &meta)
        }
        Output::Metadata => partial(&obj),
    }
}

/// A stored object as `info`'s API shows it (events are stored in the
/// shape of the API that wrote them).
pub fn view(info: &ResourceInfo, obj: Value) -> Value {
    if info.shares_storage_with.is_none() && info.kind != "Event" {
        return obj;
    }
    skiff_api::conversion::view(info.group, info.version, info.kind, obj)
}

/// Renders a list (`items` plus list `metadata`) in `output`.
pub fn list(info: &ResourceInfo, output: Output, mut list: Value) -> Value {
    if let Some(items) = list.get_mut("items").and_then(Value::as_array_mut) {
        for item in items.iter_mut() {
            *item = view(info, std::mem::take(item));
        }
    }
    match output {
        Output::Json => list,
        Output::Table(include) => {
            let items = list
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let meta = list_meta(
                list.pointer("/metadata/resourceVersion"),
                list.pointer("/metadata/continue"),
            );
            printers::table(info, &items, now(), include, &meta)
        }
        Output::Metadata => {
            let items: Vec<Value> = list
                .get("items")
                .and_then(Value::as_array)
                .map(|items| items.iter().map(partial).collect())
                .unwrap_or_default();
            json!({
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": list.get("metadata").cloned().unwrap_or_else(|| json!({})),
                "items": items,
            })
        }
    }
}

fn partial(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

fn list_meta(
    rv: Option<&Value>,
    cont: Option<&Value>,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta {
        resource_version: rv.and_then(Value::as_str).map(str::to_owned),
        continue_: cont.and_then(Value::as_str).map(str::to_owned),
        ..Default::default()
    }
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_get_asks_for_tables() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(
            choose(kubectl, None).unwrap(),
            Output::Table(IncludeObjectPolicy::Metadata)
        );
        assert_eq!(
            choose(kubectl, Some("Object")).unwrap(),
            Output::Table(IncludeObjectPolicy::Object)
        );
        assert!(choose(kubectl, Some("Bogus")).is_err());
        // Only v1beta1 Tables, then JSON: JSON.
        assert_eq!(
            choose(
                "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
                None
            )
            .unwrap(),
            Output::Json
        );
        assert_eq!(choose("", None).unwrap(), Output::Json);
        assert_eq!(choose("*/*", None).unwrap(), Output::Json);
        assert_eq!(
            choose("application/vnd.kubernetes.protobuf,application/json", None).unwrap(),
            Output::Json
        );
        assert_eq!(
            choose(
                "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json",
                None
            )
            .unwrap(),
            Output::Metadata
        );
        assert!(matches!(
            choose("application/vnd.kubernetes.protobuf", None),
            Err(ApiError::NotAcceptable { .. })
        ));
        assert!(matches!(
            choose("text/html", None),
            Err(ApiError::NotAcceptable { .. })
        ));
    }
}
