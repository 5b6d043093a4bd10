use serde_json::Value;

use super::*;
use crate::resources::RESOURCES;

fn doc(group: &str, version: &str) -> Value {
    let doc = v3_group_version(group, version).expect("served group-version");
    serde_json::from_slice(doc.json()).expect("valid JSON")
}

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    &doc["components"]["schemas"][name]
}

#[test]
fn root_lists_every_served_group_version_with_its_hash() {
    let root: Value = serde_json::from_slice(v3_root().json()).expect("valid JSON");
    for group in GROUPS {
        for version in group.versions {
            let path = gv_path(group.name, version);
            let doc = v3_document(&path).expect("document");
            assert_eq!(
                root["paths"][&path]["serverRelativeURL"],
                format!("/openapi/v3/{path}?hash={}", doc.hash()),
            );
        }
    }
    assert!(v3_document("apis/nope/v1").is_none());
}

#[test]
fn every_served_kind_has_a_schema_with_its_gvk() {
    for r in RESOURCES {
        let doc = doc(r.group, r.version);
        let name = types::definition_name(r.group, r.version, r.kind);
        let gvks = schema(&doc, &name)["x-kubernetes-group-version-kind"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} has no GVK"));
        assert!(
            gvks.iter()
                .any(|g| g["kind"] == r.kind && g["group"] == r.group)
        );
        let list = types::definition_name(r.group, r.version, r.list_kind);
        assert!(
            schema(&doc, &list)["properties"]["items"].is_object(),
            "{list}"
        );
    }
}

#[test]
fn every_reference_resolves() {
    fn walk(v: &Value, schemas: &Value, missing: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(r)) = o.get("$ref") {
                    let name = r.trim_start_matches("#/components/schemas/");
                    if schemas.get(name).is_none() {
                        missing.push(r.clone());
                    }
                }
                o.values().for_each(|c| walk(c, schemas, missing));
            }
            Value::Array(a) => a.iter().for_each(|c| walk(c, schemas, missing)),
            _ => {}
        }
    }
    for group in GROUPS {
        let doc = doc(group.name, group.preferred_version());
        let mut missing = Vec::new();
        walk(&doc, &doc["components"]["schemas"], &mut missing);
        assert!(missing.is_empty(), "{}: {missing:?}", group.name);
    }
}

#[test]
fn pod_containers_merge_by_name() {
    let doc = doc("", "v1");
    let containers = &schema(&doc, "io.k8s.api.core.v1.PodSpec")["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-list-type"], "map");
    assert_eq!(
        containers["x-kubernetes-list-map-keys"],
        serde_json::json!(["name"])
    );
    let image = &schema(&doc, "io.k8s.api.core.v1.Container")["properties"]["image"];
    assert!(
        image["description"]
            .as_str()
            .is_some_and(|d| d.contains("Container image name"))
    );
    let ports = &schema(&doc, "io.k8s.api.core.v1.Container")["properties"]["ports"];
    assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
}

#[test]
fn upstream_formats() {
    let doc = doc("apps", "v1");
    let ios = schema(&doc, "io.k8s.apimachinery.pkg.util.intstr.IntOrString");
    assert_eq!(ios["format"], "int-or-string");
    let meta = schema(&doc, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta");
    assert_eq!(meta["properties"]["generation"]["format"], "int64");
    let time = schema(&doc, "io.k8s.apimachinery.pkg.apis.meta.v1.Time");
    assert_eq!(time["format"], "date-time");
    let replicas = &schema(&doc, "io.k8s.api.apps.v1.DeploymentSpec")["properties"]["replicas"];
    assert_eq!(replicas["format"], "int32");
    let strategy = &schema(&doc, "io.k8s.api.apps.v1.DeploymentSpec")["properties"]["strategy"];
    assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
}

#[test]
fn patch_operations_take_field_validation() {
    for r in RESOURCES {
        let doc = doc(r.group, r.version);
        let prefix = if r.group.is_empty() {
            "/api/v1".to_owned()
        } else {
            format!("/apis/{}/{}", r.group, r.version)
        };
        let ns = if r.namespaced() {
            "/namespaces/{namespace}"
        } else {
            ""
        };
        let path = format!("{prefix}{ns}/{}/{{name}}", r.plural);
        let patch = &doc["paths"][&path]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            serde_json::json!({ "group": r.group, "kind": r.kind, "version": r.version }),
            "{path}"
        );
        let params = patch["parameters"].as_array().expect("parameters");
        assert!(
            params
                .iter()
                .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"),
            "{path}"
        );
        assert!(
            patch["requestBody"]["content"]["application/strategic-merge-patch+json"].is_object()
        );
    }
}

#[test]
fn unknown_fields_are_named_like_upstream() {
    let deployment = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "web", "labels": { "app": "web" }, "bogus": 1 },
        "spec": {
            "replicass": 3,
            "selector": { "matchLabels": { "app": "web" } },
            "strategy": { "rollingUpdate": { "maxSurge": "25%" } },
            "template": {
                "metadata": { "annotations": { "a": "b" } },
                "spec": {
                    "containers": [
                        { "name": "web", "image": "nginx", "resources": { "limits": { "cpu": "1" } } },
                        { "name": "side", "imagee": "busybox", "env": [{ "name": "A", "valuee": "1" }] },
                    ],
                },
            },
        },
        "status": {},
    });
    assert_eq!(
        unknown_fields("apps", "v1", "Deployment", &deployment),
        [
            "metadata.bogus",
            "spec.replicass",
            "spec.template.spec.containers[1].env[0].valuee",
            "spec.template.spec.containers[1].imagee",
        ]
    );
    let cm = serde_json::json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "x",
        "managedFields": [{ "fieldsV1": { "f:data": {} }, "manager": "m" }] }, "data": { "k": "v" } });
    assert!(unknown_fields("", "v1", "ConfigMap", &cm).is_empty());
    let scale = serde_json::json!({ "spec": { "replicas": 1, "nope": 2 } });
    assert_eq!(
        unknown_fields("autoscaling", "v1", "Scale", &scale),
        ["spec.nope"]
    );
    assert!(unknown_fields("example.com", "v1", "Widget", &scale).is_empty());
}
