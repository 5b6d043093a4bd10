//! The Swagger 2.0 document a kube-apiserver serves at `/openapi/v2`: every
//! served group-version in one document, built from the same schemas and
//! operations as the OpenAPI v3 documents (see [`convert`] for the v3 → v2
//! shapes).
//!
//! kubectl needs it for client-side validation: `create`/`apply -f` of a kind
//! the server-side `fieldValidation` check does not cover (a `kind: List`)
//! validates each item against these definitions, found by their
//! `x-kubernetes-group-version-kind`.

mod convert;

use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use super::{Document, documents};

/// The `/openapi/v2` document (JSON), built on first use.
pub fn v2_document() -> &'static Document {
    static V2: OnceLock<Document> = OnceLock::new();
    V2.get_or_init(|| Document::new(&v2_value()))
}

/// Builds the Swagger 2.0 document (not cached; see [`v2_document`]).
pub fn v2_value() -> Value {
    let mut paths = Map::new();
    let mut definitions = Map::new();
    for doc in documents().group_versions.values() {
        let Ok(v3) = serde_json::from_slice::<Value>(doc.json()) else {
            continue;
        };
        if let Some(v3_paths) = v3.get("paths").and_then(Value::as_object) {
            for (path, item) in v3_paths {
                paths.insert(path.clone(), convert::path_item(item));
            }
        }
        let schemas = v3.pointer("/components/schemas").and_then(Value::as_object);
        for (name, schema) in schemas.into_iter().flatten() {
            merge_definition(&mut definitions, name, convert::schema(schema));
        }
    }
    json!({
        "swagger": "2.0",
        "info": { "title": "Kubernetes", "version": "unversioned" },
        "paths": paths,
        "definitions": definitions,
        "securityDefinitions": {
            "BearerToken": {
                "description": "Bearer Token authentication",
                "in": "header",
                "name": "authorization",
                "type": "apiKey",
            },
        },
        "security": [{ "BearerToken": [] }],
    })
}

/// Adds a definition; one already there from another group-version's
/// document (the meta/v1 types, `autoscaling/v1` `Scale`) is the same schema,
/// so only its group-version-kinds are merged.
fn merge_definition(definitions: &mut Map<String, Value>, name: &str, schema: Value) {
    const GVK: &str = "x-kubernetes-group-version-kind";
    let Some(existing) = definitions.get_mut(name) else {
        definitions.insert(name.to_owned(), schema);
        return;
    };
    let Some(Value::Array(new)) = schema.get(GVK) else {
        return;
    };
    let Some(obj) = existing.as_object_mut() else {
        return;
    };
    let list = obj.entry(GVK).or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(list) = list {
        for gvk in new {
            if !list.contains(gvk) {
                list.push(gvk.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests;
