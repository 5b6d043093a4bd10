//! `components.schemas` of a group-version document: the k8s-openapi types'
//! schemas as schemars generates them (upstream's names and descriptions),
//! adjusted to what a kube-apiserver serves: list kinds,
//! `x-kubernetes-group-version-kind`, patch and list-type extensions from our
//! patch table, and upstream's v3 shapes of `IntOrString` and `Quantity`.

use serde_json::{Map, Value, json};

use super::types::{self, LIST_META};
use crate::patch::schema::{ListType, PatchSchema, PatchStrategy};
use crate::resources::{self, ResourceInfo};

const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

/// A `$ref` to a definition, in an OpenAPI v3 document.
pub(super) fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// One top-level kind of the document: its definition name and GVK.
#[derive(Debug, Clone)]
pub(super) struct KindSchema {
    pub definition: String,
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
}

/// Every definition reachable from the kinds of `group`/`version` (the
/// resources', their lists' and their subresources'), and the top-level kinds
/// found, by resource (`None` for a kind without a Rust type).
pub(super) fn components(
    group: &str,
    version: &str,
) -> (
    Map<String, Value>,
    Vec<(&'static ResourceInfo, KindEntries)>,
) {
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    types::add_common(&mut generator);
    let mut found = Vec::new();
    for r in resources::for_group_version(group, version) {
        let kind = types::add_kind(&mut generator, r.group, r.kind).map(|definition| KindSchema {
            definition,
            group: r.group,
            version: r.version,
            kind: r.kind,
        });
        let mut subresources = Vec::new();
        for s in r.subresources {
            let (g, v) = s.kind_group_version.unwrap_or((r.group, r.version));
            if let Some(definition) = types::add_kind(&mut generator, g, s.kind) {
                subresources.push((
                    s.name,
                    KindSchema {
                        definition,
                        group: g,
                        version: v,
                        kind: s.kind,
                    },
                ));
            }
        }
        found.push((r, KindEntries { kind, subresources }));
    }
    let mut defs = generator.take_definitions(true);
    for (r, entries) in &found {
        if let Some(kind) = &entries.kind {
            let list = types::definition_name(r.group, r.version, r.list_kind);
            defs.insert(list.clone(), list_schema(r, &kind.definition));
            add_gvk(&mut defs, &list, r.group, r.version, r.list_kind);
            add_gvk(
                &mut defs,
                &kind.definition,
                kind.group,
                kind.version,
                kind.kind,
            );
        }
        for (_, sub) in &entries.subresources {
            add_gvk(&mut defs, &sub.definition, sub.group, sub.version, sub.kind);
        }
    }
    for (name, schema) in defs.iter_mut() {
        adjust(name, schema);
    }
    (defs, found)
}

/// The schemas of one resource's kind and subresources.
#[derive(Debug, Clone)]
pub(super) struct KindEntries {
    pub kind: Option<KindSchema>,
    /// `(subresource name, kind)` for subresources with a typed body.
    pub subresources: Vec<(&'static str, KindSchema)>,
}

/// The `{Kind}List` schema, which k8s-openapi has no type for (it uses a
/// generic `List<T>`).
fn list_schema(r: &ResourceInfo, item: &str) -> Value {
    let items = json!({
        "description": format!("List of {}.", r.plural),
        "type": "array",
        "items": reference(item),
    });
    json!({
        "description": format!("{} is a list of {}.", r.list_kind, r.kind),
        "type": "object",
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values.",
                "type": "string",
            },
            "items": items,
            "kind": {
                "description": "Kind is a string value representing the REST resource this object represents. In CamelCase.",
                "type": "string",
            },
            "metadata": {
                "allOf": [reference(LIST_META)],
                "default": {},
                "description": "Standard list metadata.",
            },
        },
        "required": ["items"],
    })
}

/// Appends a GVK to a definition's `x-kubernetes-group-version-kind` list.
fn add_gvk(defs: &mut Map<String, Value>, name: &str, group: &str, version: &str, kind: &str) {
    let Some(schema) = defs.get_mut(name).and_then(Value::as_object_mut) else {
        return;
    };
    let gvk = json!({ "group": group, "kind": kind, "version": version });
    let list = schema
        .entry("x-kubernetes-group-version-kind")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(list) = list
        && !list.contains(&gvk)
    {
        list.push(gvk);
    }
}

/// Upstream's v3 shapes and the patch extensions of one definition.
fn adjust(name: &str, schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    match name {
        INT_OR_STRING => {
            obj.remove("x-kubernetes-int-or-string");
            obj.insert("format".into(), "int-or-string".into());
            obj.insert(
                "oneOf".into(),
                json!([{ "type": "integer" }, { "type": "string" }]),
            );
            return;
        }
        QUANTITY => {
            obj.remove("x-kubernetes-int-or-string");
            obj.insert(
                "oneOf".into(),
                json!([{ "type": "string" }, { "type": "number" }]),
            );
            return;
        }
        _ => {}
    }
    let Some(table) = table_type_name(name).and_then(|t| PatchSchema::for_type(&t)) else {
        return;
    };
    let Some(Value::Object(props)) = obj.get_mut("properties") else {
        return;
    };
    for (prop, value) in props.iter_mut() {
        let (Some(info), Some(field)) = (table.field(&[prop.as_str()]), value.as_object_mut())
        else {
            continue;
        };
        let strategy = match (info.strategy, info.retain_keys) {
            (Some(PatchStrategy::Merge), true) => Some("merge,retainKeys"),
            (Some(PatchStrategy::Merge), false) => Some("merge"),
            (Some(PatchStrategy::Replace), _) => Some("replace"),
            (None, true) => Some("retainKeys"),
            (None, false) => None,
        };
        if let Some(s) = strategy {
            field.insert("x-kubernetes-patch-strategy".into(), s.into());
        }
        if let Some(key) = info.merge_key {
            field.insert("x-kubernetes-patch-merge-key".into(), key.into());
        }
        match info.list_type {
            Some(ListType::Atomic) => {
                field.insert("x-kubernetes-list-type".into(), "atomic".into());
            }
            Some(ListType::Set) => {
                field.insert("x-kubernetes-list-type".into(), "set".into());
            }
            Some(ListType::Map { keys }) => {
                field.insert("x-kubernetes-list-type".into(), "map".into());
                field.insert("x-kubernetes-list-map-keys".into(), json!(keys));
            }
            None => {}
        }
    }
}

/// The patch table's name of a definition: `io.k8s.api.core.v1.PodSpec` →
/// `core.v1.PodSpec`, `io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta` →
/// `meta.v1.ObjectMeta`.
fn table_type_name(definition: &str) -> Option<String> {
    definition
        .strip_prefix("io.k8s.api.")
        .or_else(|| definition.strip_prefix("io.k8s.apimachinery.pkg.apis."))
        .map(str::to_owned)
}
