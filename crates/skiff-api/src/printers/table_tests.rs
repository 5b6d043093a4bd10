//! The `Table` document: shape, metadata, rows, `includeObject`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use serde_json::{Value, json};

use super::testutil::{ago, now, res};
use super::{IncludeObjectPolicy, table, table_row};

fn pod(name: &str, phase: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": "u-1", "resourceVersion": "42",
            "creationTimestamp": ago(90), "labels": {"app": "web"},
            "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
        "spec": {"containers": [{"name": "app", "image": "nginx"}], "nodeName": "node-a"},
        "status": {"phase": phase, "podIP": "10.42.0.9", "containerStatuses": [
            {"name": "app", "ready": phase == "Running", "restartCount": 0,
             "state": if phase == "Running" { json!({"running": {}}) }
                      else { json!({"terminated": {"exitCode": 0, "reason": "Completed"}}) }}]}})
}

#[test]
fn pod_table_document() {
    let meta = ListMeta {
        resource_version: Some("1234".into()),
        continue_: Some("eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ".into()),
        remaining_item_count: Some(7),
        ..ListMeta::default()
    };
    let t = table(
        res("", "Pod"),
        &[pod("web-0", "Running"), pod("job-1", "Succeeded")],
        now(),
        IncludeObjectPolicy::Metadata,
        &meta,
    );
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(
        t["metadata"],
        json!({"resourceVersion": "1234", "continue": "eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ",
            "remainingItemCount": 7})
    );
    let cols = t["columnDefinitions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(cols.len(), 9);
    let name_col = &cols[0];
    assert_eq!(name_col["name"], "Name");
    assert_eq!(name_col["type"], "string");
    assert_eq!(name_col["format"], "name");
    assert_eq!(name_col["priority"], 0);
    assert!(name_col["description"].is_string());
    // Every definition carries all five fields, as upstream encodes them.
    for c in &cols {
        let mut keys: Vec<&String> = c
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        keys.sort();
        assert_eq!(
            keys,
            ["description", "format", "name", "priority", "type"],
            "{c}"
        );
    }
    assert_eq!(cols[5]["name"], "IP");
    assert_eq!(cols[5]["priority"], 1);

    let rows = t["rows"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0],
        json!({
            "cells": ["web-0", "1/1", "Running", "0", "90s", "10.42.0.9", "node-a", "<none>",
                "<none>"],
            "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                "metadata": pod("web-0", "Running")["metadata"]},
        })
    );
    assert!(rows[0].get("conditions").is_none());
    assert_eq!(
        rows[1]["conditions"][0]["type"], "Completed",
        "finished pods carry a Completed row condition"
    );
    assert_eq!(rows[1]["conditions"][0]["status"], "True");
    assert_eq!(rows[1]["conditions"][0]["reason"], "Succeeded");
    assert_eq!(rows[1]["cells"][2], "Completed");
}

#[test]
fn include_object_policies() {
    let p = pod("web-0", "Running");
    let r = res("", "Pod");
    let full = table_row(r, &p, now(), IncludeObjectPolicy::Object);
    assert_eq!(full["object"], p);
    let none = table_row(r, &p, now(), IncludeObjectPolicy::None);
    assert_eq!(none.get("object"), Some(&Value::Null));
    let meta_only = table_row(
        r,
        &json!({"kind": "Pod"}),
        now(),
        IncludeObjectPolicy::Metadata,
    );
    assert_eq!(
        meta_only["object"],
        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": {}})
    );

    assert_eq!(
        IncludeObjectPolicy::parse(""),
        Ok(IncludeObjectPolicy::Metadata)
    );
    assert_eq!(
        IncludeObjectPolicy::parse("Metadata"),
        Ok(IncludeObjectPolicy::Metadata)
    );
    assert_eq!(
        IncludeObjectPolicy::parse("Object"),
        Ok(IncludeObjectPolicy::Object)
    );
    assert_eq!(
        IncludeObjectPolicy::parse("None"),
        Ok(IncludeObjectPolicy::None)
    );
    assert_eq!(
        IncludeObjectPolicy::parse("all"),
        Err("unrecognized includeObject value: \"all\"".to_owned())
    );
    assert_eq!(
        IncludeObjectPolicy::default(),
        IncludeObjectPolicy::Metadata
    );
}

#[test]
fn empty_tables() {
    let empty_meta = ListMeta {
        resource_version: Some("9".into()),
        ..ListMeta::default()
    };
    let t = table(
        res("", "Pod"),
        &[],
        now(),
        IncludeObjectPolicy::Metadata,
        &empty_meta,
    );
    assert_eq!(t["rows"], json!([]));
    assert_eq!(t["metadata"], json!({"resourceVersion": "9"}));
    // The default convertor leaves rows null, as upstream's does.
    let t = table(
        res("", "LimitRange"),
        &[],
        now(),
        IncludeObjectPolicy::Metadata,
        &ListMeta::default(),
    );
    assert_eq!(t["rows"], Value::Null);
    assert_eq!(t["metadata"], json!({}));
    assert_eq!(
        t["columnDefinitions"][1],
        json!({"name": "Created At", "type": "date", "format": "",
            "description": t["columnDefinitions"][1]["description"], "priority": 0})
    );
}
