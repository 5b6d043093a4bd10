//! OpenAPI 3.0 → Swagger 2.0 shapes, as kube-openapi serves the same types
//! in both: `$ref`s point into `#/definitions/`; a `$ref` wrapped in `allOf`
//! (v3's way of giving a reference a description or default) is a bare
//! `$ref` with those siblings; types v3 writes as `oneOf` of primitives
//! (`IntOrString`, `Quantity`) are `type: string`; request bodies are `body`
//! parameters and media types move to `consumes` / `produces`.

use serde_json::{Map, Value, json};

const V3_PREFIX: &str = "#/components/schemas/";
const V2_PREFIX: &str = "#/definitions/";

/// Schema keywords v3 has and Swagger 2.0 does not.
const V3_ONLY: &[&str] = &[
    "nullable",
    "oneOf",
    "anyOf",
    "not",
    "writeOnly",
    "deprecated",
];

/// Converts one schema (a definition or a nested one).
pub(super) fn schema(v3: &Value) -> Value {
    let Value::Object(obj) = v3 else {
        return v3.clone();
    };
    let mut out = Map::new();
    for (key, value) in obj {
        if V3_ONLY.contains(&key.as_str()) {
            continue;
        }
        let converted = match key.as_str() {
            "$ref" => reference(value),
            "allOf" => match single_ref(value) {
                Some(r) => {
                    out.insert("$ref".into(), reference(r));
                    continue;
                }
                None => Value::Array(value.as_array().into_iter().flatten().map(schema).collect()),
            },
            "properties" => Value::Object(
                value
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), schema(v)))
                    .collect(),
            ),
            "items" => schema(value),
            "additionalProperties" if value.is_object() => schema(value),
            _ => value.clone(),
        };
        out.insert(key.clone(), converted);
    }
    // A oneOf of primitives (int-or-string, a quantity's string or number)
    // has no v2 form; kube-openapi serves these as strings.
    if obj.contains_key("oneOf") && !out.contains_key("type") {
        out.insert("type".into(), "string".into());
    }
    Value::Object(out)
}

fn reference(value: &Value) -> Value {
    match value.as_str() {
        Some(r) => Value::String(match r.strip_prefix(V3_PREFIX) {
            Some(name) => format!("{V2_PREFIX}{name}"),
            None => r.to_owned(),
        }),
        None => value.clone(),
    }
}

/// The `$ref` of an `allOf` holding just one reference.
fn single_ref(all_of: &Value) -> Option<&Value> {
    match all_of.as_array()?.as_slice() {
        [only] => only.as_object().filter(|o| o.len() == 1)?.get("$ref"),
        _ => None,
    }
}

/// Converts a path item: its parameters and operations.
pub(super) fn path_item(v3: &Value) -> Value {
    let Value::Object(obj) = v3 else {
        return v3.clone();
    };
    let mut out = Map::new();
    for (key, value) in obj {
        let converted = match key.as_str() {
            "parameters" => parameters(value),
            "get" | "put" | "post" | "delete" | "options" | "head" | "patch" => operation(value),
            _ => value.clone(),
        };
        out.insert(key.clone(), converted);
    }
    Value::Object(out)
}

/// A v3 parameter's `schema` (type and constraints) moves onto the parameter.
fn parameters(v3: &Value) -> Value {
    let converted = v3.as_array().into_iter().flatten().map(|param| {
        let Value::Object(p) = param else {
            return param.clone();
        };
        let mut out = Map::new();
        for (key, value) in p {
            match (key.as_str(), value) {
                ("schema", Value::Object(s)) => {
                    for (k, v) in s {
                        out.insert(k.clone(), v.clone());
                    }
                }
                _ => {
                    out.insert(key.clone(), value.clone());
                }
            }
        }
        Value::Object(out)
    });
    Value::Array(converted.collect())
}

/// The media types of a v3 `content` map, in its order.
fn media_types(content: Option<&Value>) -> Vec<String> {
    content
        .and_then(Value::as_object)
        .map(|c| c.keys().cloned().collect())
        .unwrap_or_default()
}

/// The schema of the first media type of a v3 `content` map (every media
/// type of an operation carries the same one).
fn content_schema(content: Option<&Value>) -> Option<Value> {
    content
        .and_then(Value::as_object)
        .and_then(|c| c.values().next())
        .and_then(|m| m.get("schema"))
        .map(schema)
}

/// The order kube-apiserver lists what it produces.
fn produces_order(t: &str) -> usize {
    match t {
        "application/json" => 0,
        "application/yaml" => 1,
        "application/vnd.kubernetes.protobuf" => 2,
        _ => 3,
    }
}

fn operation(v3: &Value) -> Value {
    let Value::Object(obj) = v3 else {
        return v3.clone();
    };
    let mut out = Map::new();
    let mut params = obj.get("parameters").map(parameters).unwrap_or(json!([]));
    let mut produces: Vec<String> = Vec::new();
    for (key, value) in obj {
        match key.as_str() {
            "parameters" => {}
            "requestBody" => {
                let content = value.get("content");
                let types = media_types(content);
                // Bodies that are objects of the kind take any media type a
                // decoder knows; patches name theirs.
                let consumes = if types.iter().any(|t| t.contains("patch")) {
                    types
                } else {
                    vec!["*/*".to_owned()]
                };
                out.insert("consumes".into(), json!(consumes));
                let mut body = json!({ "name": "body", "in": "body" });
                if value.get("required").and_then(Value::as_bool) == Some(true) {
                    body["required"] = true.into();
                }
                if let Some(s) = content_schema(content) {
                    body["schema"] = s;
                }
                if let Value::Array(list) = &mut params {
                    list.insert(0, body);
                }
            }
            "responses" => {
                let mut responses = Map::new();
                for (code, response) in value.as_object().into_iter().flatten() {
                    let content = response.get("content");
                    for t in media_types(content) {
                        if !produces.contains(&t) {
                            produces.push(t);
                        }
                    }
                    let mut r = Map::new();
                    if let Some(d) = response.get("description") {
                        r.insert("description".into(), d.clone());
                    }
                    if let Some(s) = content_schema(content) {
                        r.insert("schema".into(), s);
                    }
                    responses.insert(code.clone(), Value::Object(r));
                }
                out.insert("responses".into(), Value::Object(responses));
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    if params.as_array().is_some_and(|p| !p.is_empty()) {
        out.insert("parameters".into(), params);
    }
    produces.sort_by_key(|t| produces_order(t));
    if !produces.is_empty() {
        out.insert("produces".into(), json!(produces));
    }
    out.insert("schemes".into(), json!(["https"]));
    Value::Object(out)
}
