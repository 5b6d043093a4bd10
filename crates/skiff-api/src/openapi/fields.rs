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
        let mut path = Vec::new();
        self.walk(&Shape::Ref(def.clone()), obj, &mut path, &mut found);
        Some(found)
    }

    /// Walks `value` against `shape`; `path` holds the segments leading to
    /// it, rendered only for the (rare) unknown fields.
    fn walk<'v>(
        &self,
        shape: &Shape,
        value: &'v Value,
        path: &mut Vec<Segment<'v>>,
        found: &mut Vec<String>,
    ) {
        match (shape, value) {
            (Shape::Ref(name), Value::Object(obj)) => {
                let Some(Some(fields)) = self.definitions.get(name) else {
                    return;
                };
                for (key, child) in obj {
                    path.push(Segment::Key(key));
                    match fields.get(key) {
                        Some(s) => self.walk(s, child, path, found),
                        None => found.push(render(path)),
                    }
                    path.pop();
                }
            }
            (Shape::Array(item), Value::Array(items)) => {
                for (i, v) in items.iter().enumerate() {
                    path.push(Segment::Index(i));
                    self.walk(item, v, path, found);
                    path.pop();
                }
            }
            (Shape::Map(item), Value::Object(obj)) => {
                for (key, v) in obj {
                    path.push(Segment::Key(key));
                    self.walk(item, v, path, found);
                    path.pop();
                }
            }
            _ => {}
        }
    }
}

/// One step of a field path.
#[derive(Debug, Clone, Copy)]
enum Segment<'v> {
    Key(&'v str),
    Index(usize),
}

/// `spec.template.spec.containers[0].imagee`, as upstream's strict decoder
/// names a field.
fn render(path: &[Segment<'_>]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Segment::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

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
