#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};

use super::convert;
use super::*;

fn doc() -> Value {
    serde_json::from_slice(v2_document().json()).unwrap()
}

/// Every `$ref` in a value.
fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn is_swagger_2_with_definitions_for_every_served_kind() {
    let d = doc();
    assert_eq!(d["swagger"], "2.0");
    assert!(d.get("openapi").is_none() && d.get("components").is_none());
    for (name, gvk) in [
        (
            "io.k8s.api.core.v1.Pod",
            json!({"group": "", "kind": "Pod", "version": "v1"}),
        ),
        (
            "io.k8s.api.core.v1.ConfigMap",
            json!({"group": "", "kind": "ConfigMap", "version": "v1"}),
        ),
        (
            "io.k8s.api.apps.v1.Deployment",
            json!({"group": "apps", "kind": "Deployment", "version": "v1"}),
        ),
        (
            "io.k8s.api.apps.v1.DeploymentList",
            json!({"group": "apps", "kind": "DeploymentList", "version": "v1"}),
        ),
        (
            "io.k8s.api.rbac.v1.ClusterRole",
            json!({"group": "rbac.authorization.k8s.io", "kind": "ClusterRole", "version": "v1"}),
        ),
        (
            "io.k8s.api.batch.v1.CronJob",
            json!({"group": "batch", "kind": "CronJob", "version": "v1"}),
        ),
    ] {
        let def = &d["definitions"][name];
        assert_eq!(def["type"], "object", "{name}");
        let gvks = def["x-kubernetes-group-version-kind"].as_array().unwrap();
        assert!(gvks.contains(&gvk), "{name}: {gvks:?}");
    }
}

#[test]
fn every_reference_resolves_to_a_definition() {
    let d = doc();
    let mut all = Vec::new();
    refs(&d, &mut all);
    assert!(all.len() > 1000, "{}", all.len());
    for r in all {
        let name = r
            .strip_prefix("#/definitions/")
            .unwrap_or_else(|| panic!("{r}"));
        assert!(d["definitions"].get(name).is_some(), "dangling {r}");
    }
}

#[test]
fn references_with_descriptions_are_bare_refs() {
    let d = doc();
    let meta = &d["definitions"]["io.k8s.api.core.v1.Pod"]["properties"]["metadata"];
    assert_eq!(
        meta["$ref"],
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    assert!(meta.get("allOf").is_none());
    assert!(meta["description"].as_str().unwrap().contains("metadata"));
    let containers = &d["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(
        containers["items"]["$ref"],
        "#/definitions/io.k8s.api.core.v1.Container"
    );
}

#[test]
fn int_or_string_and_quantity_are_strings() {
    let d = doc();
    let ios = &d["definitions"]["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
    assert_eq!(
        (&ios["type"], &ios["format"]),
        (&json!("string"), &json!("int-or-string"))
    );
    assert!(ios.get("oneOf").is_none());
    let q = &d["definitions"]["io.k8s.apimachinery.pkg.api.resource.Quantity"];
    assert_eq!(q["type"], "string");
    assert!(q.get("oneOf").is_none());
}

#[test]
fn shared_definitions_merge_group_version_kinds() {
    let d = doc();
    // Scale is served by apps/v1 and core/v1 subresources; one definition.
    let scale =
        d["definitions"]["io.k8s.api.autoscaling.v1.Scale"]["x-kubernetes-group-version-kind"]
            .as_array()
            .unwrap();
    assert_eq!(
        scale,
        &vec![json!({"group": "autoscaling", "kind": "Scale", "version": "v1"})]
    );
}

#[test]
fn paths_carry_operations_with_body_parameters_and_extensions() {
    let d = doc();
    let item = &d["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
    let patch = &item["patch"];
    assert_eq!(patch["operationId"], "patchAppsV1NamespacedDeployment");
    assert_eq!(patch["x-kubernetes-action"], "patch");
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        json!({"group": "apps", "kind": "Deployment", "version": "v1"})
    );
    assert!(patch.get("requestBody").is_none());
    let params = patch["parameters"].as_array().unwrap();
    assert_eq!(params[0]["in"], "body");
    assert_eq!(
        params[0]["schema"]["$ref"],
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
    );
    let fv = params
        .iter()
        .find(|p| p["name"] == "fieldValidation")
        .unwrap();
    assert_eq!(
        (&fv["in"], &fv["type"]),
        (&json!("query"), &json!("string"))
    );
    assert!(fv.get("schema").is_none());
    assert!(
        patch["consumes"]
            .as_array()
            .unwrap()
            .contains(&json!("application/strategic-merge-patch+json"))
    );
    assert_eq!(
        patch["produces"],
        json!([
            "application/json",
            "application/yaml",
            "application/vnd.kubernetes.protobuf"
        ])
    );
    assert_eq!(
        patch["responses"]["200"]["schema"]["$ref"],
        "#/definitions/io.k8s.api.apps.v1.Deployment"
    );
    let post = &d["paths"]["/api/v1/namespaces/{namespace}/pods"]["post"];
    assert_eq!(post["consumes"], json!(["*/*"]));
    assert_eq!(post["x-kubernetes-action"], "post");
    let name = item["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "name")
        .unwrap();
    assert_eq!(
        (&name["in"], &name["required"], &name["type"]),
        (&json!("path"), &json!(true), &json!("string"))
    );
}

#[test]
fn schema_conversion_table() {
    for (v3, v2) in [
        (
            json!({"$ref": "#/components/schemas/A"}),
            json!({"$ref": "#/definitions/A"}),
        ),
        (
            json!({"allOf": [{"$ref": "#/components/schemas/A"}], "default": {}, "description": "d"}),
            json!({"$ref": "#/definitions/A", "default": {}, "description": "d"}),
        ),
        (
            json!({"type": "array", "items": {"allOf": [{"$ref": "#/components/schemas/A"}]}}),
            json!({"type": "array", "items": {"$ref": "#/definitions/A"}}),
        ),
        (
            json!({"type": "object", "additionalProperties": {"$ref": "#/components/schemas/A"}}),
            json!({"type": "object", "additionalProperties": {"$ref": "#/definitions/A"}}),
        ),
        (
            json!({"format": "int-or-string", "oneOf": [{"type": "integer"}, {"type": "string"}]}),
            json!({"format": "int-or-string", "type": "string"}),
        ),
        (
            json!({"type": "string", "nullable": true}),
            json!({"type": "string"}),
        ),
        (
            json!({"properties": {"a": {"allOf": [{"$ref": "#/components/schemas/B"}, {"$ref": "#/components/schemas/C"}]}}}),
            json!({"properties": {"a": {"allOf": [{"$ref": "#/definitions/B"}, {"$ref": "#/definitions/C"}]}}}),
        ),
    ] {
        assert_eq!(convert::schema(&v3), v2, "{v3}");
    }
}
