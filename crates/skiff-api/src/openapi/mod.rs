//! OpenAPI v3 documents as a kube-apiserver serves them: `/openapi/v3` (the
//! index of group-version documents, each URL carrying a content hash) and
//! `/openapi/v3/api/v1`, `/openapi/v3/apis/{group}/{version}`; and the
//! Swagger 2.0 document of `/openapi/v2` built from them ([`v2_document`]).
//!
//! kubectl depends on them: `create`/`apply` with the default
//! `--validate=strict` look for the `fieldValidation` parameter on the PATCH
//! operation of the kind (and then leave validation to the server), client-side
//! `apply` computes strategic merge patches from the schemas' patch extensions,
//! and `explain` prints the schemas' descriptions.
//!
//! The schemas come from k8s-openapi through schemars (upstream's names and
//! descriptions); [`schemas`] adds what upstream serves on top and [`paths`]
//! the operations. Documents are built once, on first use, and kept
//! serialised.

mod fields;
mod paths;
mod schemas;
mod types;
mod v2;

pub use v2::{v2_document, v2_value};

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use crate::resources::GROUPS;

/// One serialised document and the hash of its bytes.
#[derive(Debug)]
pub struct Document {
    json: Vec<u8>,
    hash: String,
}

impl Document {
    fn new(value: &Value) -> Document {
        let json = serde_json::to_vec(value).unwrap_or_default();
        let hash = format!("{:016X}", fnv1a(&json));
        Document { json, hash }
    }

    /// The document as JSON.
    pub fn json(&self) -> &[u8] {
        &self.json
    }

    /// A stable hash of the bytes (upper-case hex), used in the index's URLs
    /// and as the ETag.
    pub fn hash(&self) -> &str {
        &self.hash
    }
}

/// FNV-1a, 64 bits: stable across runs and builds, unlike std's SipHash keys.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[derive(Debug)]
struct Documents {
    root: Document,
    /// By path below `/openapi/v3/` (`api/v1`, `apis/apps/v1`).
    group_versions: BTreeMap<String, Document>,
    /// The fields of each group-version's types, by the same path.
    fields: BTreeMap<String, fields::FieldIndex>,
}

static DOCUMENTS: OnceLock<Documents> = OnceLock::new();

fn documents() -> &'static Documents {
    DOCUMENTS.get_or_init(|| {
        let mut group_versions = BTreeMap::new();
        let mut field_indexes = BTreeMap::new();
        let mut index = Map::new();
        for group in GROUPS {
            for version in group.versions {
                let (value, field_index) = build(group.name, version);
                let doc = Document::new(&value);
                let path = gv_path(group.name, version);
                field_indexes.insert(path.clone(), field_index);
                index.insert(
                    path.clone(),
                    json!({ "serverRelativeURL": format!("/openapi/v3/{path}?hash={}", doc.hash) }),
                );
                group_versions.insert(path, doc);
            }
        }
        Documents {
            root: Document::new(&json!({ "paths": index })),
            group_versions,
            fields: field_indexes,
        }
    })
}

/// `api/v1` for core, `apis/{group}/{version}` otherwise.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The `/openapi/v3` index: `{"paths": {"api/v1": {"serverRelativeURL":
/// "/openapi/v3/api/v1?hash=..."}, ...}}`.
pub fn v3_root() -> &'static Document {
    &documents().root
}

/// The document at `/openapi/v3/{path}` (`api/v1`, `apis/apps/v1`).
pub fn v3_document(path: &str) -> Option<&'static Document> {
    documents().group_versions.get(path.trim_matches('/'))
}

/// The document of one served group-version.
pub fn v3_group_version(group: &str, version: &str) -> Option<&'static Document> {
    v3_document(&gv_path(group, version))
}

/// Builds the OpenAPI 3.0 document of a group-version (not cached; see
/// [`v3_group_version`]). Empty `paths` for a group-version we do not serve.
pub fn group_version_value(group: &str, version: &str) -> Value {
    build(group, version).0
}

/// Fields of `obj`, an object of `group`/`version`/`kind` (its `apiVersion`
/// and `kind`), that its schema does not have: dotted paths as upstream's
/// strict decoding names them (`spec.replicass`,
/// `spec.template.spec.containers[0].imagee`), for `fieldValidation=Strict`
/// (errors) and `Warn` (warnings). Empty for kinds without a schema (a body
/// of another kind is a different error).
pub fn unknown_fields(group: &str, version: &str, kind: &str, obj: &Value) -> Vec<String> {
    let fields = &documents().fields;
    // Kinds of other groups served as subresources (autoscaling/v1 Scale) are
    // indexed in the documents of the groups serving them.
    fields
        .get(&gv_path(group, version))
        .and_then(|index| index.unknown_fields(group, version, kind, obj))
        .or_else(|| {
            fields
                .values()
                .find_map(|index| index.unknown_fields(group, version, kind, obj))
        })
        .unwrap_or_default()
}

fn build(group: &str, version: &str) -> (Value, fields::FieldIndex) {
    let (schemas, found) = schemas::components(group, version);
    let mut field_index = fields::FieldIndex::new(&schemas);
    let mut paths = Map::new();
    for (r, entries) in &found {
        paths::add_resource(&mut paths, r, entries);
        let kinds = entries
            .kind
            .iter()
            .chain(entries.subresources.iter().map(|(_, k)| k));
        for k in kinds {
            field_index.add_kind(k.group, k.version, k.kind, &k.definition);
        }
    }
    let title = if group.is_empty() {
        "Kubernetes".to_owned()
    } else {
        format!("Kubernetes {group}")
    };
    let value = json!({
        "openapi": "3.0.0",
        "info": { "title": title, "version": "unversioned" },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "BearerToken": {
                    "type": "apiKey",
                    "description": "Bearer Token authentication",
                    "name": "authorization",
                    "in": "header",
                },
            },
        },
    });
    (value, field_index)
}

#[cfg(test)]
mod tests;
