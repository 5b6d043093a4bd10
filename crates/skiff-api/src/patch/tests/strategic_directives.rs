//! Strategic merge patch: directives, nulls, malformed patches, hostile input.

use serde_json::{Value, json};

use super::super::*;
use super::strategic::{Case, POD, Want, container, pod, run};

#[test]
fn map_directives_and_nulls() {
    let labelled = json!({"metadata": {"name": "p", "labels": {"a": "1", "b": "2"}}, "spec": {
        "nodeName": "n1", "securityContext": {"runAsUser": 1}
    }});
    run(vec![
        Case {
            name: "null deletes",
            kind: POD,
            original: labelled.clone(),
            patch: json!({"metadata": {"labels": {"a": null, "zz": null}}, "spec": {"nodeName": null}}),
            want: Want::Ok(
                json!({"metadata": {"name": "p", "labels": {"b": "2"}}, "spec": {
                    "securityContext": {"runAsUser": 1}
                }}),
            ),
        },
        Case {
            name: "$patch: replace on a map",
            kind: POD,
            original: labelled.clone(),
            patch: json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}),
            want: Want::Ok(
                json!({"metadata": {"name": "p", "labels": {"c": "3"}}, "spec": {
                    "nodeName": "n1", "securityContext": {"runAsUser": 1}
                }}),
            ),
        },
        Case {
            name: "$patch: delete on a map leaves it empty",
            kind: POD,
            original: labelled.clone(),
            patch: json!({"spec": {"securityContext": {"$patch": "delete"}}}),
            want: Want::Ok(
                json!({"metadata": {"name": "p", "labels": {"a": "1", "b": "2"}}, "spec": {
                    "nodeName": "n1", "securityContext": {}
                }}),
            ),
        },
        Case {
            name: "$patch: replace at the top",
            kind: POD,
            original: labelled.clone(),
            patch: json!({"$patch": "replace", "metadata": {"name": "q"}}),
            want: Want::Ok(json!({"metadata": {"name": "q"}})),
        },
        Case {
            name: "new values lose nulls and directive maps",
            kind: POD,
            original: labelled.clone(),
            patch: json!({"spec": {"dnsConfig": {
                "nameservers": ["1.1.1.1"], "options": null, "searches": {"$patch": "delete"}
            }}}),
            want: Want::Ok(
                json!({"metadata": {"name": "p", "labels": {"a": "1", "b": "2"}}, "spec": {
                    "nodeName": "n1", "securityContext": {"runAsUser": 1},
                    "dnsConfig": {"nameservers": ["1.1.1.1"]}
                }}),
            ),
        },
        Case {
            name: "a new field that is only a directive is not added",
            kind: POD,
            original: labelled.clone(),
            patch: json!({"spec": {"affinity": {"$patch": "delete"}}}),
            want: Want::Ok(labelled.clone()),
        },
        Case {
            name: "a value of another type replaces",
            kind: POD,
            original: labelled.clone(),
            patch: json!({"spec": {"nodeName": {"x": null, "y": 1}}}),
            want: Want::Ok(
                json!({"metadata": {"name": "p", "labels": {"a": "1", "b": "2"}}, "spec": {
                    "nodeName": {"y": 1}, "securityContext": {"runAsUser": 1}
                }}),
            ),
        },
        Case {
            name: "$patch: merge on a map is refused, as upstream does",
            kind: POD,
            original: labelled.clone(),
            patch: json!({"metadata": {"labels": {"$patch": "merge", "x": "1"}}}),
            want: Want::Err(
                422,
                "unknown patch type: merge in map: map[$patch:merge x:1]",
            ),
        },
        Case {
            name: "unknown directive",
            kind: POD,
            original: labelled.clone(),
            patch: json!({"metadata": {"$patch": 7}}),
            want: Want::Err(
                422,
                "unknown patch type: %!s(int64=7) in map: map[$patch:7]",
            ),
        },
    ]);
}

#[test]
fn list_directives() {
    let a = container("a", json!({}));
    let b = container("b", json!({}));
    run(vec![
        Case {
            name: "$patch: replace inside a merge list",
            kind: POD,
            original: pod(vec![a.clone(), b.clone()]),
            patch: json!({"spec": {"containers": [{"name": "z", "image": "z:1"}, {"$patch": "replace"}]}}),
            want: Want::Ok(pod(vec![container("z", json!({}))])),
        },
        Case {
            name: "$patch: replace alone empties the list",
            kind: POD,
            original: pod(vec![a.clone(), b.clone()]),
            patch: json!({"spec": {"containers": [{"$patch": "replace"}]}}),
            want: Want::Ok(pod(vec![])),
        },
        Case {
            name: "$patch: merge in a list",
            kind: POD,
            original: pod(vec![a.clone()]),
            patch: json!({"spec": {"containers": [{"$patch": "merge"}]}}),
            want: Want::Err(422, "merging lists cannot yet be specified in the patch"),
        },
        Case {
            name: "delete without the merge key",
            kind: POD,
            original: pod(vec![a.clone()]),
            patch: json!({"spec": {"containers": [{"$patch": "delete"}]}}),
            want: Want::Err(
                422,
                "map: map[$patch:delete] does not contain declared merge key: name",
            ),
        },
        Case {
            name: "element without the merge key",
            kind: POD,
            original: pod(vec![a.clone()]),
            patch: json!({"spec": {"containers": [{"image": "x"}]}}),
            want: Want::Err(
                422,
                "map: map[image:x] does not contain declared merge key: name",
            ),
        },
        Case {
            name: "scalars in a list of maps",
            kind: POD,
            original: pod(vec![a.clone()]),
            patch: json!({"spec": {"containers": ["a"]}}),
            want: Want::Err(422, "list element types are not identical"),
        },
        Case {
            name: "a new list loses its directive elements",
            kind: POD,
            original: json!({"spec": {}}),
            patch: json!({"spec": {"containers": [{"name": "a", "image": "a:1"}, {"$patch": "replace"}]}}),
            want: Want::Ok(json!({"spec": {"containers": [a.clone()]}})),
        },
    ]);
}

#[test]
fn retain_keys() {
    let deploy = ("apps", "Deployment");
    run(vec![
        Case {
            name: "$retainKeys clears the other strategy fields",
            kind: deploy,
            original: json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
            patch: json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
            want: Want::Ok(json!({"spec": {"strategy": {"type": "Recreate"}}})),
        },
        Case {
            name: "$retainKeys on a volume in a merge list",
            kind: deploy,
            original: json!({"spec": {"template": {"spec": {"volumes": [
                {"name": "v", "emptyDir": {}}, {"name": "w", "emptyDir": {}}
            ]}}}}),
            patch: json!({"spec": {"template": {"spec": {"volumes": [
                {"name": "v", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/x"}}
            ]}}}}),
            want: Want::Ok(json!({"spec": {"template": {"spec": {"volumes": [
                {"name": "v", "hostPath": {"path": "/x"}}, {"name": "w", "emptyDir": {}}
            ]}}}})),
        },
        Case {
            name: "a patched key missing from $retainKeys",
            kind: deploy,
            original: json!({"spec": {"strategy": {"type": "RollingUpdate"}}}),
            patch: json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}),
            want: Want::Err(400, "invalid patch format of retainKeys"),
        },
        Case {
            name: "$retainKeys must be a list",
            kind: deploy,
            original: json!({"spec": {"strategy": {"type": "RollingUpdate"}}}),
            patch: json!({"spec": {"strategy": {"$retainKeys": "type"}}}),
            want: Want::Err(400, "invalid patch format of retainKeys"),
        },
    ]);
}

#[test]
fn set_element_order_errors() {
    let three = pod(vec![
        container("1", json!({})),
        container("3", json!({})),
        container("2", json!({})),
    ]);
    run(vec![
        Case {
            name: "patch order contradicts $setElementOrder",
            kind: POD,
            original: three.clone(),
            patch: json!({"spec": {
                "$setElementOrder/containers": [{"name": "1"}, {"name": "2"}, {"name": "3"}],
                "containers": [{"name": "3", "image": "x"}, {"name": "1", "image": "y"}]
            }}),
            want: Want::Err(422, "doesn't match $setElementOrder list"),
        },
        Case {
            name: "$setElementOrder must be a list",
            kind: POD,
            original: three.clone(),
            patch: json!({"spec": {"$setElementOrder/containers": {"name": "1"}}}),
            want: Want::Err(
                422,
                "expected a []interface {}, but received a map[string]interface {}",
            ),
        },
        Case {
            name: "$setElementOrder entries need the merge key",
            kind: POD,
            original: three.clone(),
            patch: json!({"spec": {"$setElementOrder/containers": [{"image": "1"}]}}),
            want: Want::Err(422, "does not contain declared merge key: name"),
        },
        Case {
            name: "bad $setElementOrder prefix",
            kind: POD,
            original: three.clone(),
            patch: json!({"spec": {"$setElementOrderX/containers": []}}),
            want: Want::Err(400, "invalid patch format of setElementOrder list"),
        },
        Case {
            name: "bad $deleteFromPrimitiveList prefix",
            kind: POD,
            original: three.clone(),
            patch: json!({"metadata": {"$deleteFromPrimitiveListfinalizers": ["a"]}}),
            want: Want::Err(400, "invalid patch format of primitive list"),
        },
    ]);
}

#[test]
fn malformed_bodies() {
    let schema = PatchSchema::for_kind("", "v1", "Pod").expect("pod");
    let original = pod(vec![container("a", json!({}))]);
    assert_eq!(
        apply_strategic_merge_patch(&original, b"null", &schema),
        Ok(original.clone())
    );
    for body in [&b"[1]"[..], b"\"x\"", b"3", b"{", b"", b"\xff"] {
        let e = apply_strategic_merge_patch(&original, body, &schema).unwrap_err();
        assert_eq!(e.code(), 400, "{body:?}: {e}");
    }
    let e = apply_strategic_merge_patch(&original, b"[]", &schema).unwrap_err();
    assert_eq!(
        e.to_string(),
        "json: cannot unmarshal array into Go value of type map[string]interface {}"
    );

    let mut deep = String::new();
    for _ in 0..(MAX_DEPTH + 5) {
        deep.push_str("{\"spec\":");
    }
    deep.push_str("{}");
    deep.push_str(&"}".repeat(MAX_DEPTH + 5));
    assert_eq!(
        apply_strategic_merge_patch(&original, deep.as_bytes(), &schema),
        Err(PatchError::TooDeep { max: MAX_DEPTH })
    );
}

#[test]
fn opaque_schema_replaces_lists_and_merges_maps() {
    let original = json!({"spec": {"items": [{"name": "a"}], "m": {"x": 1}}});
    let patch = br#"{"spec": {"items": [{"name": "b"}], "m": {"y": 2}}}"#;
    assert_eq!(
        apply_strategic_merge_patch(&original, patch, &PatchSchema::opaque()),
        Ok(json!({"spec": {"items": [{"name": "b"}], "m": {"x": 1, "y": 2}}}))
    );
}

#[test]
fn large_lists_stay_fast() {
    // Hash-based lookups: 20,000 elements each side would take minutes with
    // upstream's quadratic scans.
    let n = 20_000;
    let original =
        json!({"metadata": {"finalizers": (0..n).map(|i| format!("f{i}")).collect::<Vec<_>>()}});
    let patch = json!({"metadata": {
        "finalizers": (0..n).rev().map(|i| format!("g{i}")).collect::<Vec<_>>(),
        "$setElementOrder/finalizers": (0..n).rev().map(|i| format!("g{i}")).collect::<Vec<_>>()
    }});
    let schema = PatchSchema::for_kind("", "v1", "ConfigMap").expect("cm");
    let got =
        apply_strategic_merge_patch(&original, patch.to_string().as_bytes(), &schema).unwrap();
    assert_eq!(
        got["metadata"]["finalizers"].as_array().map(Vec::len),
        Some(2 * n)
    );

    // Errors about huge lists stay readable.
    let bad = json!({"metadata": {
        "finalizers": (0..n).map(|i| format!("g{i}")).collect::<Vec<_>>(),
        "$setElementOrder/finalizers": (0..n).rev().map(|i| format!("g{i}")).collect::<Vec<_>>()
    }});
    let e =
        apply_strategic_merge_patch(&original, bad.to_string().as_bytes(), &schema).unwrap_err();
    assert!(
        e.to_string().contains("doesn't match"),
        "{}",
        &e.to_string()[..200]
    );
    assert!(e.to_string().len() < 10_000, "{}", e.to_string().len());
}

/// A tiny deterministic generator of hostile patches: random JSON built from
/// the keys and directives the patch code reacts to. Nothing may panic.
#[test]
fn random_patches_never_panic() {
    let mut seed: u64 = 0x5eed_1234_abcd_ef01;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n.max(1)
    };
    const KEYS: &[&str] = &[
        "spec",
        "containers",
        "name",
        "env",
        "ports",
        "containerPort",
        "finalizers",
        "metadata",
        "$patch",
        "$retainKeys",
        "$setElementOrder/containers",
        "$setElementOrder/finalizers",
        "$deleteFromPrimitiveList/finalizers",
        "$deleteFromPrimitiveList/args",
        "args",
        "volumes",
        "op",
        "path",
        "value",
        "from",
        "/spec/containers/0",
        "/metadata/finalizers/-",
        "-1",
    ];
    const SCALARS: &[&str] = &[
        "replace", "delete", "merge", "add", "remove", "copy", "move", "test", "a",
    ];
    fn random_value(next: &mut dyn FnMut(u64) -> u64, depth: u32) -> Value {
        match next(if depth > 5 { 4 } else { 7 }) {
            0 => Value::Null,
            1 => json!(next(3)),
            2 => json!(SCALARS[next(SCALARS.len() as u64) as usize]),
            3 => json!(KEYS[next(KEYS.len() as u64) as usize]),
            4 | 5 => {
                let mut m = serde_json::Map::new();
                for _ in 0..next(4) {
                    m.insert(
                        KEYS[next(KEYS.len() as u64) as usize].to_string(),
                        random_value(next, depth + 1),
                    );
                }
                Value::Object(m)
            }
            _ => Value::Array(
                (0..next(4))
                    .map(|_| random_value(next, depth + 1))
                    .collect(),
            ),
        }
    }
    let original = json!({
        "metadata": {"name": "p", "finalizers": ["a", "b"]},
        "spec": {"containers": [
            {"name": "a", "args": ["x"], "env": [{"name": "E"}], "ports": [{"containerPort": 80}]},
            {"name": "b"}
        ], "volumes": [{"name": "v", "emptyDir": {}}]}
    });
    let schema = PatchSchema::for_kind("", "v1", "Pod").expect("pod");
    for _ in 0..3000 {
        let patch = random_value(&mut next, 0).to_string();
        for kind in PatchType::ALL {
            let _ = apply_any(kind, &original, patch.as_bytes(), Some(&schema));
        }
    }
}
