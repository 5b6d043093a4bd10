//! `paths` of a group-version document: the operations of every resource and
//! typed subresource, with their parameters, request bodies, responses and
//! `x-kubernetes-action` / `x-kubernetes-group-version-kind`. kubectl reads the
//! PATCH operations: a `fieldValidation` query parameter means the server
//! validates fields itself, and an `application/strategic-merge-patch+json`
//! body means `kubectl apply` may send strategic merge patches.

use serde_json::{Map, Value, json};

use super::schemas::{KindEntries, KindSchema, reference};
use crate::resources::{ResourceInfo, Scope, Verb};

const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";

const BODY_TYPES: &[&str] = &["application/json", "application/yaml"];
const RESPONSE_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];
const PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

/// Query parameters: `(name, type, description)`.
type Param = (&'static str, &'static str, &'static str);

const DRY_RUN: Param = (
    "dryRun",
    "string",
    "When present, indicates that modifications should not be persisted. Valid value: All.",
);
const FIELD_MANAGER: Param = (
    "fieldManager",
    "string",
    "A name associated with the actor or entity that is making these changes.",
);
const FIELD_VALIDATION: Param = (
    "fieldValidation",
    "string",
    "How the server treats unknown or duplicate fields in the request: Ignore, Warn or Strict.",
);
const FORCE: Param = (
    "force",
    "boolean",
    "Force apply requests: re-acquire fields owned by other managers. Only for apply patches.",
);
const LIST_PARAMS: &[Param] = &[
    (
        "allowWatchBookmarks",
        "boolean",
        "Requests watch events of type BOOKMARK.",
    ),
    (
        "continue",
        "string",
        "The continue token of the previous page of a paged list.",
    ),
    (
        "fieldSelector",
        "string",
        "Restricts the list to objects whose fields match.",
    ),
    (
        "labelSelector",
        "string",
        "Restricts the list to objects whose labels match.",
    ),
    (
        "limit",
        "integer",
        "The maximum number of objects of one page.",
    ),
    (
        "resourceVersion",
        "string",
        "Constrains the resource versions the request may be served from.",
    ),
    (
        "resourceVersionMatch",
        "string",
        "How resourceVersion applies to list calls: Exact or NotOlderThan.",
    ),
    (
        "sendInitialEvents",
        "boolean",
        "Starts a watch with synthetic events for the current state.",
    ),
    (
        "timeoutSeconds",
        "integer",
        "Timeout of the list or watch call.",
    ),
    ("watch", "boolean", "Watch for changes instead of listing."),
];
const DELETE_PARAMS: &[Param] = &[
    DRY_RUN,
    (
        "gracePeriodSeconds",
        "integer",
        "The duration in seconds before the object should be deleted.",
    ),
    (
        "ignoreStoreReadErrorWithClusterBreakingPotential",
        "boolean",
        "Deletes a corrupt object that cannot be read from storage.",
    ),
    (
        "orphanDependents",
        "boolean",
        "Deprecated: use propagationPolicy.",
    ),
    (
        "propagationPolicy",
        "string",
        "Garbage collection of dependents: Orphan, Background or Foreground.",
    ),
];

fn query(params: &[Param]) -> Vec<Value> {
    params
        .iter()
        .map(|(name, ty, description)| {
            json!({
                "name": name,
                "in": "query",
                "description": description,
                "schema": { "type": ty, "uniqueItems": true },
            })
        })
        .collect()
}

fn path_param(name: &str, description: &str) -> Value {
    json!({
        "name": name,
        "in": "path",
        "description": description,
        "required": true,
        "schema": { "type": "string", "uniqueItems": true },
    })
}

fn content(types: &[&str], schema: &Value) -> Value {
    Value::Object(
        types
            .iter()
            .map(|t| ((*t).to_owned(), json!({ "schema": schema })))
            .collect(),
    )
}

fn responses(codes: &[&str], schema: &Value) -> Value {
    let mut map: Map<String, Value> = codes
        .iter()
        .map(|code| {
            let description = match *code {
                "201" => "Created",
                "202" => "Accepted",
                _ => "OK",
            };
            (
                (*code).to_owned(),
                json!({ "description": description, "content": content(RESPONSE_TYPES, schema) }),
            )
        })
        .collect();
    map.insert("401".into(), json!({ "description": "Unauthorized" }));
    Value::Object(map)
}

/// `rbac.authorization.k8s.io` → `RbacAuthorization`, core → `Core`.
fn group_camel(group: &str) -> String {
    if group.is_empty() {
        return "Core".to_owned();
    }
    group
        .trim_end_matches(".k8s.io")
        .split('.')
        .map(capitalise)
        .collect()
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// What one operation is about.
struct Op<'a> {
    r: &'a ResourceInfo,
    kind: &'a KindSchema,
    /// `Namespaced` in operation ids of namespaced paths, else empty.
    namespaced: &'static str,
    /// `Status`, `Scale`, ... for subresources, else empty.
    suffix: String,
}

impl Op<'_> {
    fn operation(&self, verb: &str, action: &str, description: String) -> Map<String, Value> {
        let tag = if self.r.group.is_empty() {
            format!("core_{}", self.r.version)
        } else {
            let g = group_camel(self.r.group);
            let mut c = g.chars();
            let lower: String = c
                .next()
                .map(|f| f.to_lowercase().chain(c).collect())
                .unwrap_or_default();
            format!("{lower}_{}", self.r.version)
        };
        let id_kind = format!("{}{}", self.r.kind, self.suffix);
        let mut op = Map::new();
        op.insert("tags".into(), json!([tag]));
        op.insert("description".into(), description.into());
        op.insert(
            "operationId".into(),
            format!(
                "{verb}{}{}{}{id_kind}",
                group_camel(self.r.group),
                capitalise(self.r.version),
                self.namespaced
            )
            .into(),
        );
        op.insert("x-kubernetes-action".into(), action.into());
        op.insert(
            "x-kubernetes-group-version-kind".into(),
            json!({ "group": self.kind.group, "kind": self.kind.kind, "version": self.kind.version }),
        );
        op
    }

    fn get(&self) -> Value {
        let mut op = self.operation(
            "read",
            "get",
            format!("read the specified {}", self.kind.kind),
        );
        op.insert(
            "responses".into(),
            responses(&["200"], &reference(&self.kind.definition)),
        );
        Value::Object(op)
    }

    fn write(&self, verb: &str, action: &str, codes: &[&str]) -> Value {
        let mut op = self.operation(
            verb,
            action,
            format!("{verb} the specified {}", self.kind.kind),
        );
        op.insert(
            "parameters".into(),
            json!(query(&[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION])),
        );
        op.insert(
            "requestBody".into(),
            json!({ "content": content(BODY_TYPES, &reference(&self.kind.definition)), "required": true }),
        );
        op.insert(
            "responses".into(),
            responses(codes, &reference(&self.kind.definition)),
        );
        Value::Object(op)
    }

    fn patch(&self) -> Value {
        let mut op = self.operation(
            "patch",
            "patch",
            format!("partially update the specified {}", self.kind.kind),
        );
        op.insert(
            "parameters".into(),
            json!(query(&[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION, FORCE])),
        );
        op.insert(
            "requestBody".into(),
            json!({ "content": content(PATCH_TYPES, &reference(PATCH)), "required": true }),
        );
        op.insert(
            "responses".into(),
            responses(&["200", "201"], &reference(&self.kind.definition)),
        );
        Value::Object(op)
    }

    fn delete(&self) -> Value {
        let mut op = self.operation("delete", "delete", format!("delete a {}", self.kind.kind));
        op.insert("parameters".into(), json!(query(DELETE_PARAMS)));
        op.insert(
            "requestBody".into(),
            json!({ "content": content(BODY_TYPES, &reference(DELETE_OPTIONS)) }),
        );
        op.insert(
            "responses".into(),
            responses(&["200", "202"], &reference(STATUS)),
        );
        Value::Object(op)
    }

    fn list(&self, list_definition: &str) -> Value {
        let mut op = self.operation(
            "list",
            "list",
            format!("list or watch objects of kind {}", self.kind.kind),
        );
        op.insert("parameters".into(), json!(query(LIST_PARAMS)));
        op.insert(
            "responses".into(),
            responses(&["200"], &reference(list_definition)),
        );
        Value::Object(op)
    }

    fn delete_collection(&self) -> Value {
        let mut op = self.operation(
            "deletecollection",
            "deletecollection",
            format!("delete collection of {}", self.kind.kind),
        );
        let mut params = query(LIST_PARAMS);
        params.extend(query(DELETE_PARAMS));
        op.insert("parameters".into(), json!(params));
        op.insert(
            "requestBody".into(),
            json!({ "content": content(BODY_TYPES, &reference(DELETE_OPTIONS)) }),
        );
        op.insert("responses".into(), responses(&["200"], &reference(STATUS)));
        Value::Object(op)
    }
}

/// Adds the paths of one resource to `paths`.
pub(super) fn add_resource(
    paths: &mut Map<String, Value>,
    r: &ResourceInfo,
    entries: &KindEntries,
) {
    let prefix = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    let pretty = json!({
        "name": "pretty",
        "in": "query",
        "description": "If 'true', then the output is pretty printed.",
        "schema": { "type": "string", "uniqueItems": true },
    });
    let namespace = path_param(
        "namespace",
        "object name and auth scope, such as for teams and projects",
    );
    let name = path_param("name", &format!("name of the {}", r.kind));
    let (collection, namespaced, mut base_params) = match r.scope {
        Scope::Namespaced => (
            format!("{prefix}/namespaces/{{namespace}}/{}", r.plural),
            "Namespaced",
            vec![namespace],
        ),
        Scope::Cluster => (format!("{prefix}/{}", r.plural), "", vec![]),
    };
    base_params.push(pretty.clone());
    if let Some(kind) = &entries.kind {
        let op = Op {
            r,
            kind,
            namespaced,
            suffix: String::new(),
        };
        let list_definition = super::types::definition_name(r.group, r.version, r.list_kind);
        let mut coll = Map::new();
        coll.insert("parameters".into(), json!(base_params));
        if r.supports(Verb::List) {
            coll.insert("get".into(), op.list(&list_definition));
        }
        if r.supports(Verb::Create) {
            coll.insert(
                "post".into(),
                op.write("create", "post", &["200", "201", "202"]),
            );
        }
        if r.supports(Verb::DeleteCollection) {
            coll.insert("delete".into(), op.delete_collection());
        }
        paths.insert(collection.clone(), Value::Object(coll));

        let mut item = Map::new();
        let mut item_params = vec![name.clone()];
        item_params.extend(base_params.iter().cloned());
        item.insert("parameters".into(), json!(item_params));
        if r.supports(Verb::Get) {
            item.insert("get".into(), op.get());
        }
        if r.supports(Verb::Update) {
            item.insert("put".into(), op.write("replace", "put", &["200", "201"]));
        }
        if r.supports(Verb::Patch) {
            item.insert("patch".into(), op.patch());
        }
        if r.supports(Verb::Delete) {
            item.insert("delete".into(), op.delete());
        }
        paths.insert(format!("{collection}/{{name}}"), Value::Object(item));

        if r.scope == Scope::Namespaced && r.supports(Verb::List) {
            let all = Op {
                r,
                kind,
                namespaced: "",
                suffix: "ForAllNamespaces".to_owned(),
            };
            paths.insert(
                format!("{prefix}/{}", r.plural),
                json!({ "parameters": [pretty], "get": all.list(&list_definition) }),
            );
        }
    }
    for (sub_name, kind) in &entries.subresources {
        let Some(info) = r.subresource(sub_name) else {
            continue;
        };
        let op = Op {
            r,
            kind,
            namespaced,
            suffix: capitalise(sub_name),
        };
        let mut sub = Map::new();
        let mut params = vec![name.clone()];
        params.extend(base_params.iter().cloned());
        sub.insert("parameters".into(), json!(params));
        if info.verbs.contains(&Verb::Get) {
            sub.insert("get".into(), op.get());
        }
        if info.verbs.contains(&Verb::Create) {
            sub.insert(
                "post".into(),
                op.write("create", "post", &["200", "201", "202"]),
            );
        }
        if info.verbs.contains(&Verb::Update) {
            sub.insert("put".into(), op.write("replace", "put", &["200", "201"]));
        }
        if info.verbs.contains(&Verb::Patch) {
            sub.insert("patch".into(), op.patch());
        }
        paths.insert(
            format!("{collection}/{{name}}/{sub_name}"),
            Value::Object(sub),
        );
    }
}
