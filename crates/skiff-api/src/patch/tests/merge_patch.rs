use serde_json::{Value, json};

use super::super::*;

#[test]
fn merge_patch_semantics() {
    let original = json!({
        "metadata": {"name": "cm", "labels": {"a": "1", "b": "2"}, "finalizers": ["x", "y"]},
        "data": {"k": "v"},
        "list": [1, 2],
        "nothing": null
    });
    let cases: Vec<(&str, Value, Value)> = vec![
        ("empty patch", json!({}), original.clone()),
        (
            "set, change and delete members",
            json!({"metadata": {"labels": {"a": "9", "b": null, "c": "3"}}}),
            json!({
                "metadata": {"name": "cm", "labels": {"a": "9", "c": "3"}, "finalizers": ["x", "y"]},
                "data": {"k": "v"}, "list": [1, 2], "nothing": null
            }),
        ),
        (
            "lists are replaced whole",
            json!({"metadata": {"finalizers": ["z"]}, "list": []}),
            json!({
                "metadata": {"name": "cm", "labels": {"a": "1", "b": "2"}, "finalizers": ["z"]},
                "data": {"k": "v"}, "list": [], "nothing": null
            }),
        ),
        (
            "deleting a missing member is fine; a whole map goes with null",
            json!({"missing": null, "data": null}),
            json!({
                "metadata": {"name": "cm", "labels": {"a": "1", "b": "2"}, "finalizers": ["x", "y"]},
                "list": [1, 2], "nothing": null
            }),
        ),
        (
            "new values lose their nulls, inside arrays too",
            json!({"spec": {"a": null, "b": {"c": null, "d": 1}, "l": [{"e": null, "f": 2}, null]}}),
            json!({
                "metadata": {"name": "cm", "labels": {"a": "1", "b": "2"}, "finalizers": ["x", "y"]},
                "data": {"k": "v"}, "list": [1, 2], "nothing": null,
                "spec": {"b": {"d": 1}, "l": [{"f": 2}, null]}
            }),
        ),
        (
            "a map over a scalar replaces it",
            json!({"list": {"x": null, "y": 1}, "nothing": {"z": 1}}),
            json!({
                "metadata": {"name": "cm", "labels": {"a": "1", "b": "2"}, "finalizers": ["x", "y"]},
                "data": {"k": "v"}, "list": {"y": 1}, "nothing": {"z": 1}
            }),
        ),
        (
            "a scalar over a map replaces it",
            json!({"data": "flat"}),
            json!({
                "metadata": {"name": "cm", "labels": {"a": "1", "b": "2"}, "finalizers": ["x", "y"]},
                "data": "flat", "list": [1, 2], "nothing": null
            }),
        ),
    ];
    for (name, patch, want) in cases {
        let got = apply_merge_patch(&original, patch.to_string().as_bytes());
        assert_eq!(got, Ok(want), "{name}");
    }
}

#[test]
fn merge_patch_bodies_upstream_refuses() {
    let original = json!({"a": 1});
    for body in [&b"null"[..], b"3", b"\"x\"", b"true", b"{", b"", b"\xff"] {
        let e = apply_merge_patch(&original, body).unwrap_err();
        assert_eq!(
            e,
            PatchError::BadRequest("Invalid JSON Patch".into()),
            "{body:?}"
        );
        assert_eq!(e.code(), 400);
    }
    // An array replaces the document; the server then fails to decode it.
    assert_eq!(
        apply_merge_patch(&original, b"[{\"a\": null}]"),
        Ok(json!([{}]))
    );

    let mut deep = String::new();
    for _ in 0..(MAX_DEPTH + 1) {
        deep.push_str("{\"a\":");
    }
    deep.push('1');
    deep.push_str(&"}".repeat(MAX_DEPTH + 1));
    assert_eq!(
        apply_merge_patch(&original, deep.as_bytes()),
        Err(PatchError::TooDeep { max: MAX_DEPTH })
    );
}

#[test]
fn patch_types_and_apply_any() {
    assert_eq!(
        PatchType::from_content_type("application/json-patch+json"),
        Some(PatchType::Json)
    );
    assert_eq!(
        PatchType::from_content_type("application/merge-patch+json; charset=utf-8"),
        Some(PatchType::Merge)
    );
    assert_eq!(
        PatchType::from_content_type(" Application/Strategic-Merge-Patch+JSON "),
        Some(PatchType::StrategicMerge)
    );
    assert_eq!(
        PatchType::from_content_type("application/apply-patch+yaml"),
        Some(PatchType::Apply)
    );
    assert_eq!(PatchType::from_content_type("application/json"), None);
    assert_eq!(PatchType::from_content_type(""), None);
    for t in PatchType::ALL {
        assert_eq!(PatchType::from_content_type(t.content_type()), Some(t));
    }

    let original = json!({"metadata": {"finalizers": ["a"]}});
    let pod = PatchSchema::for_kind("", "v1", "Pod");
    let body = br#"{"metadata": {"finalizers": ["b"]}}"#;
    assert_eq!(
        apply_any(PatchType::Merge, &original, body, pod.as_ref()),
        Ok(json!({"metadata": {"finalizers": ["b"]}}))
    );
    assert_eq!(
        apply_any(PatchType::StrategicMerge, &original, body, pod.as_ref()),
        Ok(json!({"metadata": {"finalizers": ["b", "a"]}}))
    );
    assert_eq!(
        apply_any(
            PatchType::Json,
            &original,
            br#"[{"op":"add","path":"/metadata/finalizers/-","value":"c"}]"#,
            None
        ),
        Ok(json!({"metadata": {"finalizers": ["a", "c"]}}))
    );
    let e = apply_any(PatchType::StrategicMerge, &original, body, None).unwrap_err();
    assert_eq!((e.code(), e.reason()), (415, "UnsupportedMediaType"));
    let e = apply_any(PatchType::Apply, &original, b"metadata: {}", pod.as_ref()).unwrap_err();
    assert_eq!(e.code(), 415);
    assert!(e.to_string().contains("not supported yet"), "{e}");
}
