#![allow(clippy::unwrap_used, clippy::expect_used)]

use prost_reflect::DynamicMessage;
use serde_json::{Value, json};

use super::*;

/// A document with every shape the API server's `/openapi/v2` uses.
fn sample() -> Value {
    json!({
        "swagger": "2.0",
        "info": { "title": "Kubernetes", "version": "v1.33.0" },
        "paths": {
            "/api/v1/namespaces/{namespace}/pods/{name}": {
                "parameters": [
                    { "name": "name", "in": "path", "required": true, "type": "string", "uniqueItems": true, "description": "name of the Pod" },
                    { "$ref": "#/parameters/pretty" },
                ],
                "get": {
                    "tags": ["core_v1"],
                    "operationId": "readCoreV1NamespacedPod",
                    "consumes": ["*/*"],
                    "produces": ["application/json", "application/yaml"],
                    "schemes": ["https"],
                    "responses": {
                        "200": { "description": "OK", "schema": { "$ref": "#/definitions/io.k8s.api.core.v1.Pod" } },
                        "401": { "description": "Unauthorized" },
                    },
                    "x-kubernetes-action": "get",
                    "x-kubernetes-group-version-kind": { "group": "", "kind": "Pod", "version": "v1" },
                },
                "patch": {
                    "parameters": [
                        { "name": "body", "in": "body", "required": true, "schema": { "$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch" } },
                        { "name": "force", "in": "query", "type": "boolean", "uniqueItems": true },
                    ],
                    "responses": { "200": { "description": "OK" } },
                },
            },
        },
        "definitions": {
            "io.k8s.api.core.v1.Pod": {
                "description": "Pod is a collection of containers.",
                "type": "object",
                "required": ["spec"],
                "properties": {
                    "metadata": { "$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "description": "Standard object's metadata.", "default": {} },
                    "containers": {
                        "type": "array",
                        "items": { "$ref": "#/definitions/io.k8s.api.core.v1.Container" },
                        "x-kubernetes-list-map-keys": ["name"],
                        "x-kubernetes-patch-merge-key": "name",
                    },
                    "labels": { "type": "object", "additionalProperties": { "type": "string" } },
                    "priority": { "type": "integer", "format": "int32" },
                    "free": { "type": "object", "additionalProperties": true },
                },
                "x-kubernetes-group-version-kind": [{ "group": "", "kind": "Pod", "version": "v1" }],
            },
        },
        "parameters": {
            "pretty": { "name": "pretty", "in": "query", "type": "string", "uniqueItems": true },
        },
        "securityDefinitions": {
            "BearerToken": { "type": "apiKey", "name": "authorization", "in": "header", "description": "Bearer Token authentication" },
        },
        "security": [{ "BearerToken": [] }],
    })
}

fn message(bytes: &[u8]) -> DynamicMessage {
    DynamicMessage::decode(document_descriptor().unwrap(), bytes).unwrap()
}

fn field<'a>(msg: &'a DynamicMessage, name: &str) -> std::borrow::Cow<'a, prost_reflect::Value> {
    msg.get_field_by_name(name).unwrap()
}

#[test]
fn round_trips_every_shape() {
    let doc = sample();
    let bytes = encode(&doc).unwrap();
    assert_eq!(decode(&bytes).unwrap(), doc);
}

#[test]
fn definitions_are_named_schemas_with_yaml_extensions() {
    let msg = message(&encode(&sample()).unwrap());
    let definitions = field(&msg, "definitions");
    let list = definitions.as_message().unwrap();
    let entries = field(list, "additional_properties");
    let entries = entries.as_list().unwrap();
    assert_eq!(entries.len(), 1);
    let pod = entries[0].as_message().unwrap();
    assert_eq!(field(pod, "name").as_str(), Some("io.k8s.api.core.v1.Pod"));
    let schema = field(pod, "value");
    let schema = schema.as_message().unwrap();
    let ty = field(schema, "type");
    let ty = field(ty.as_message().unwrap(), "value");
    assert_eq!(ty.as_list().unwrap()[0].as_str(), Some("object"));
    let ext = field(schema, "vendor_extension");
    let ext = ext.as_list().unwrap()[0].as_message().unwrap().clone();
    assert_eq!(
        field(&ext, "name").as_str(),
        Some("x-kubernetes-group-version-kind")
    );
    let any = field(&ext, "value");
    let yaml = field(any.as_message().unwrap(), "yaml");
    let parsed: Value = serde_json::from_str(yaml.as_str().unwrap()).unwrap();
    assert_eq!(
        parsed,
        json!([{ "group": "", "kind": "Pod", "version": "v1" }])
    );
}

#[test]
fn parameters_take_their_oneof_branch() {
    let msg = message(&encode(&sample()).unwrap());
    let paths = field(&msg, "paths");
    let path = field(paths.as_message().unwrap(), "path");
    let item = path.as_list().unwrap()[0].as_message().unwrap().clone();
    let item = field(&item, "value").as_message().unwrap().clone();
    let params = field(&item, "parameters");
    let params = params.as_list().unwrap();
    let first = params[0].as_message().unwrap();
    assert!(first.has_field_by_name("parameter"));
    let parameter = field(first, "parameter").as_message().unwrap().clone();
    let non_body = field(&parameter, "non_body_parameter")
        .as_message()
        .unwrap()
        .clone();
    assert!(non_body.has_field_by_name("path_parameter_sub_schema"));
    assert!(
        params[1]
            .as_message()
            .unwrap()
            .has_field_by_name("json_reference")
    );
    let patch = field(&item, "patch").as_message().unwrap().clone();
    let patch_params = field(&patch, "parameters");
    let body = patch_params.as_list().unwrap()[0]
        .as_message()
        .unwrap()
        .clone();
    let body = field(&body, "parameter").as_message().unwrap().clone();
    assert!(body.has_field_by_name("body_parameter"));
}

#[test]
fn rejects_keys_swagger_does_not_have() {
    for (doc, field) in [
        (
            json!({ "swagger": "2.0", "openapi": "3.0.0" }),
            "Document.openapi",
        ),
        (
            json!({ "definitions": { "A": { "oneOf": [{ "type": "string" }] } } }),
            "Schema.oneOf",
        ),
        (
            json!({ "definitions": { "A": { "nullable": true } } }),
            "Schema.nullable",
        ),
    ] {
        match encode(&doc) {
            Err(ProtoError::InvalidValue { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{doc}: {other:?}"),
        }
    }
    assert!(matches!(
        encode(&json!({ "definitions": { "A": { "required": "name" } } })),
        Err(ProtoError::InvalidValue { .. })
    ));
}

#[test]
fn names_convert_both_ways() {
    for (key, field) in [
        ("operationId", "operation_id"),
        ("$ref", "_ref"),
        ("additionalProperties", "additional_properties"),
        ("in", "in"),
        ("securityDefinitions", "security_definitions"),
    ] {
        assert_eq!(field_name(key), field);
        assert_eq!(json_key(field), key);
    }
}
