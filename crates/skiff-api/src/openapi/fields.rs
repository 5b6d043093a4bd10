//! A compact index of the document's schemas, kept after the documents are
//! serialised, for server-side field validation (`fieldValidation=Strict` /
//! `Warn`): which fields each object type has, so unknown ones can be named
//! as upstream's strict decoder names them (`spec.replicass`,
//! `spec.template.spec.containers[0].imagee`).

use std::collections::HashMap;

use serde_json::{Map, Value};

/// The shape of one field's value.
#[derive(Debug, Clone)]
enum Shape {
    /// Scalars and free-form values: nothing to check below.
    Any,
    /// An object of a named definition.
    Ref(String),
    /// A list of values of one shape.
    Array(Box<Shape>),
    /// A map from strings to values of one shape.
    Map(Box<Shape>),
}

/// The fields of one object definition; `None` for definitions that accept
/// anything (`RawExtension`, `FieldsV1`, `IntOrString`, ...).
type Fields = Option<HashMap<String, Shape>>;

/// The field index of one group-version document.
#[derive(Debug, Default)]
pub(super) struct FieldIndex {
    definitions: HashMap<String, Fields>,
    /// `(group, version, kind)` → definition name.
    kinds: HashMap<(String, String, String), String>,
}

impl FieldIndex {
    pub(super) fn new(schemas: &Map<String, Value>) -> FieldIndex {
        let definitions = schemas
            .iter()
            .map(|(name, schema)| {
                let fields = schema
                    .get("properties")
                    .and_then(Value::as_object)
                    .filter(|_| schema.get("x-kubernetes-preserve-unknown-fields").is_none())
                    .map(|props| {
                        props
                            .iter()
                            .map(|(k, v)| (k.clone(), shape(v)))
                            .collect::<HashMap<_, _>>()
                    });
                (name.clone(), fields)
            })
            .collect();
        FieldIndex {
            definitions,
            kinds: HashMap::new(),
        }
    }

    pub(super) fn add_kind(&mut self, group: &str, version: &str, kind: &str, definition: &str) {
        self.kinds.insert(
            (group.to_owned(), version.to_owned(), kind.to_owned()),
            definition.to_owned(),
        );
    }

    /// Fields of `obj` (an object of `kind`) its schema does not have, as
    /// dotted paths; `None` when the kind is not in this index.
    pub(super) fn unknown_fields(
        &self,
        group: &str,
        version: &str,
        kind: &str,
        obj: &Value,
    ) -> Option<Vec<String>> {
        let def = self
            .kinds
            .get(&(group.to_owned(), version.to_owned(), kind.to_owned()))?;
        let mut found = Vec::new();
        self.walk(&Shape::Ref(def.clone()), obj, "", &mut found);
        Some(found)
    }

    fn walk(&self, shape: &Shape, value: &Value, path: &str, found: &mut Vec<String>) {
        match (shape, value) {
            (Shape::Ref(name), Value::Object(obj)) => {
                let Some(Some(fields)) = self.definitions.get(name) else {
                    return;
                };
                for (key, child) in obj {
                    let child_path = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    match fields.get(key) {
                        Some(s) => self.walk(s, child, &child_path, found),
                        None => found.push(child_path),
                    }
                }
            }
            (Shape::Array(item), Value::Array(items)) => {
                for (i, v) in items.iter().enumerate() {
                    self.walk(item, v, &format!("{path}[{i}]"), found);
                }
            }
            (Shape::Map(item), Value::Object(obj)) => {
                for (key, v) in obj {
                    self.walk(item, v, &format!("{path}.{key}"), found);
                }
            }
            _ => {}
        }
    }
}

/// The shape of a property schema.
fn shape(schema: &Value) -> Shape {
    let reference = schema.get("$ref").or_else(|| {
        schema
            .get("allOf")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(|s| s.get("$ref"))
    });
    if let Some(Value::String(r)) = reference {
        return Shape::Ref(r.trim_start_matches("#/components/schemas/").to_owned());
    }
    if let Some(items) = schema.get("items") {
        return Shape::Array(Box::new(shape(items)));
    }
    match schema.get("additionalProperties") {
        Some(v @ Value::Object(_)) => Shape::Map(Box::new(shape(v))),
        _ => Shape::Any,
    }
}
