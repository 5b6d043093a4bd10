//! Reading a plugin's `pluginConfig` args (JSON, as in a
//! KubeSchedulerConfiguration) with errors that name the field, as
//! upstream's decoding and `validation_pluginargs.go` do.

use serde_json::Value;
use skiff_api::field::{Error, ErrorList, Path};

/// The args as an object; `None` and `null` count as empty.
pub fn object(args: Option<&Value>) -> Result<serde_json::Map<String, Value>, String> {
    match args {
        None | Some(Value::Null) => Ok(serde_json::Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(other) => Err(format!("args: expected an object, got {other}")),
    }
}

/// A list of strings at `field` (absent: empty).
pub fn string_list(
    obj: &serde_json::Map<String, Value>,
    field: &str,
) -> Result<Vec<String>, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{field}[{i}]: expected a string"))
            })
            .collect(),
        Some(_) => Err(format!("{field}: expected a list of strings")),
    }
}

/// An integer at `path` in `obj`, or `default` when absent.
pub fn int(
    obj: &serde_json::Map<String, Value>,
    field: &str,
    path: &Path,
    default: i64,
) -> Result<i64, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_i64()
            .ok_or_else(|| format!("{}: expected an integer", path.child(field))),
    }
}

/// One `{name, weight}` entry of a resources list (upstream's
/// `ResourceSpec`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceSpec {
    /// The resource name (`cpu`, `memory`, an extended resource).
    pub name: String,
    /// Its weight.
    pub weight: i64,
}

/// The `resources` list at `path`, `None` when absent or empty (so the
/// caller applies its default).
pub fn resource_specs(
    value: Option<&Value>,
    path: &Path,
) -> Result<Option<Vec<ResourceSpec>>, String> {
    let items = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(format!("{path}: expected a list")),
    };
    if items.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = path.index(i);
        let obj = item
            .as_object()
            .ok_or_else(|| format!("{p}: expected an object"))?;
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        // Upstream's v1 defaulting turns a missing or zero weight into 1.
        let weight = match int(obj, "weight", &p, 1)? {
            0 => 1,
            w => w,
        };
        out.push(ResourceSpec { name, weight });
    }
    Ok(Some(out))
}

/// The default scored resources (upstream's `defaultResourceSpec`).
pub fn default_resource_specs() -> Vec<ResourceSpec> {
    vec![
        ResourceSpec {
            name: "cpu".to_owned(),
            weight: 1,
        },
        ResourceSpec {
            name: "memory".to_owned(),
            weight: 1,
        },
    ]
}

/// Upstream's `ToAggregate().Error()` of `errs`, or Ok when empty.
pub fn aggregate(errs: ErrorList) -> Result<(), String> {
    match errs.aggregate_message() {
        None => Ok(()),
        Some(m) => Err(m),
    }
}

/// Pushes an `Invalid value` error.
pub fn invalid(errs: &mut ErrorList, path: &Path, value: i64, detail: &str) {
    errs.push(Error::invalid(path, value, detail));
}
