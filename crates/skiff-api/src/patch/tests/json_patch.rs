use serde_json::{Value, json};

use super::super::*;

fn pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "labels": {"app": "web", "a/b": "slash", "t~x": "tilde"}},
        "spec": {"containers": [
            {"name": "a", "image": "nginx:1", "args": ["x", "y", "z"]},
            {"name": "b", "image": "redis"}
        ]}
    })
}

enum Want {
    Ok(Value),
    /// HTTP code and a piece of the detailed message.
    Err(u16, &'static str),
}

fn run(cases: Vec<(&str, Value, Want)>) {
    for (name, patch, want) in cases {
        let got = apply_json_patch(&pod(), patch.to_string().as_bytes());
        match (got, want) {
            (Ok(got), Want::Ok(want)) => assert_eq!(got, want, "{name}"),
            (Err(e), Want::Err(code, msg)) => {
                assert_eq!(e.code(), code, "{name}: {e}");
                assert!(e.to_string().contains(msg), "{name}: {e:?} lacks {msg:?}");
            }
            (got, _) => panic!("{name}: unexpected {got:?}"),
        }
    }
}

fn with(f: impl FnOnce(&mut Value)) -> Value {
    let mut v = pod();
    f(&mut v);
    v
}

#[test]
fn operations() {
    run(vec![
        (
            "add a member",
            json!([{"op": "add", "path": "/spec/nodeName", "value": "n1"}]),
            Want::Ok(with(|v| v["spec"]["nodeName"] = json!("n1"))),
        ),
        (
            "add overwrites a member",
            json!([{"op": "add", "path": "/metadata/labels/app", "value": "db"}]),
            Want::Ok(with(|v| v["metadata"]["labels"]["app"] = json!("db"))),
        ),
        (
            "add into an array, at an index and at the end",
            json!([
                {"op": "add", "path": "/spec/containers/0/args/1", "value": "new"},
                {"op": "add", "path": "/spec/containers/0/args/-", "value": "last"}
            ]),
            Want::Ok(with(|v| {
                v["spec"]["containers"][0]["args"] = json!(["x", "new", "y", "z", "last"])
            })),
        ),
        (
            "add at index len appends",
            json!([{"op": "add", "path": "/spec/containers/0/args/3", "value": "w"}]),
            Want::Ok(with(|v| {
                v["spec"]["containers"][0]["args"] = json!(["x", "y", "z", "w"])
            })),
        ),
        (
            "escaped tokens",
            json!([
                {"op": "replace", "path": "/metadata/labels/a~1b", "value": "s"},
                {"op": "remove", "path": "/metadata/labels/t~0x"}
            ]),
            Want::Ok(with(|v| {
                v["metadata"]["labels"] = json!({"app": "web", "a/b": "s"});
            })),
        ),
        (
            "remove an array element",
            json!([{"op": "remove", "path": "/spec/containers/1"}]),
            Want::Ok(with(|v| {
                v["spec"]["containers"].as_array_mut().unwrap().remove(1);
            })),
        ),
        (
            "negative indices count from the end, as upstream allows",
            json!([{"op": "remove", "path": "/spec/containers/0/args/-1"}]),
            Want::Ok(with(|v| {
                v["spec"]["containers"][0]["args"] = json!(["x", "y"])
            })),
        ),
        (
            "replace",
            json!([{"op": "replace", "path": "/spec/containers/0/image", "value": "nginx:2"}]),
            Want::Ok(with(|v| {
                v["spec"]["containers"][0]["image"] = json!("nginx:2")
            })),
        ),
        (
            "replace of a missing member adds it, as upstream does",
            json!([{"op": "replace", "path": "/spec/restartPolicy", "value": "Never"}]),
            Want::Ok(with(|v| v["spec"]["restartPolicy"] = json!("Never"))),
        ),
        (
            "move",
            json!([{"op": "move", "from": "/metadata/labels/app", "path": "/metadata/labels/tier"}]),
            Want::Ok(with(|v| {
                v["metadata"]["labels"] = json!({"tier": "web", "a/b": "slash", "t~x": "tilde"});
            })),
        ),
        (
            "move within an array",
            json!([{"op": "move", "from": "/spec/containers/0/args/0", "path": "/spec/containers/0/args/2"}]),
            Want::Ok(with(|v| {
                v["spec"]["containers"][0]["args"] = json!(["y", "z", "x"])
            })),
        ),
        (
            "copy",
            json!([{"op": "copy", "from": "/spec/containers/1", "path": "/spec/initContainers"}]),
            Want::Ok(with(|v| {
                v["spec"]["initContainers"] = json!({"name": "b", "image": "redis"})
            })),
        ),
        (
            "test then replace",
            json!([
                {"op": "test", "path": "/spec/containers/0/image", "value": "nginx:1"},
                {"op": "test", "path": "/spec/containers/0/args", "value": ["x", "y", "z"]},
                {"op": "replace", "path": "/spec/containers/0/image", "value": "nginx:2"}
            ]),
            Want::Ok(with(|v| {
                v["spec"]["containers"][0]["image"] = json!("nginx:2")
            })),
        ),
        (
            "replace the whole document",
            json!([{"op": "replace", "path": "", "value": {"kind": "Pod"}}]),
            Want::Ok(json!({"kind": "Pod"})),
        ),
        ("empty patch", json!([]), Want::Ok(pod())),
        ("null patch", json!(null), Want::Ok(pod())),
    ]);
}

#[test]
fn failures() {
    run(vec![
        (
            "test fails",
            json!([{"op": "test", "path": "/spec/containers/0/image", "value": "nginx:9"}]),
            Want::Err(
                422,
                "testing value /spec/containers/0/image failed: test failed",
            ),
        ),
        (
            "test of a missing member fails",
            json!([{"op": "test", "path": "/spec/nope", "value": null}]),
            Want::Err(422, "testing value /spec/nope failed"),
        ),
        (
            "test of the whole document",
            json!([{"op": "test", "path": "", "value": {}}]),
            Want::Err(422, "testing value  failed"),
        ),
        (
            "add below a missing parent",
            json!([{"op": "add", "path": "/spec/missing/x", "value": 1}]),
            Want::Err(
                422,
                "add operation does not apply: doc is missing path: \"/spec/missing/x\"",
            ),
        ),
        (
            "add through a scalar",
            json!([{"op": "add", "path": "/kind/x", "value": 1}]),
            Want::Err(422, "doc is missing path"),
        ),
        (
            "add out of range",
            json!([{"op": "add", "path": "/spec/containers/5", "value": {}}]),
            Want::Err(
                422,
                "error in add for path: '/spec/containers/5': Unable to access invalid index: 5",
            ),
        ),
        (
            "add with a bad index",
            json!([{"op": "add", "path": "/spec/containers/x", "value": {}}]),
            Want::Err(422, "value was not a proper array index: 'x'"),
        ),
        (
            "remove a missing member",
            json!([{"op": "remove", "path": "/metadata/annotations"}]),
            Want::Err(
                422,
                "Unable to remove nonexistent key: annotations: missing value",
            ),
        ),
        (
            "remove the document",
            json!([{"op": "remove", "path": ""}]),
            Want::Err(422, "remove operation does not apply"),
        ),
        (
            "remove past the end",
            json!([{"op": "remove", "path": "/spec/containers/2"}]),
            Want::Err(422, "invalid index referenced"),
        ),
        (
            "replace past the end",
            json!([{"op": "replace", "path": "/spec/containers/9", "value": {}}]),
            Want::Err(
                422,
                "replace operation does not apply: doc is missing key: /spec/containers/9",
            ),
        ),
        (
            "move from a missing member",
            json!([{"op": "move", "from": "/spec/nope", "path": "/spec/x"}]),
            Want::Err(422, "Unable to remove nonexistent key: nope"),
        ),
        (
            "move into itself",
            json!([{"op": "move", "from": "/spec", "path": "/spec/inner"}]),
            Want::Err(
                422,
                "move operation does not apply: doc is missing destination path",
            ),
        ),
        (
            "copy from a missing member",
            json!([{"op": "copy", "from": "/spec/nope", "path": "/spec/x"}]),
            Want::Err(
                422,
                "copy operation does not apply: doc is missing from path: /spec/nope",
            ),
        ),
        (
            "unknown op",
            json!([{"op": "frobnicate", "path": "/spec"}]),
            Want::Err(422, "Unexpected kind: frobnicate"),
        ),
        (
            "missing op",
            json!([{"path": "/spec"}]),
            Want::Err(422, "Unexpected kind: unknown"),
        ),
        (
            "missing path",
            json!([{"op": "add", "value": 1}]),
            Want::Err(422, "add operation failed to decode path"),
        ),
        (
            "non-string path",
            json!([{"op": "replace", "path": 3, "value": 1}]),
            Want::Err(422, "cannot unmarshal number into Go value of type string"),
        ),
        (
            "later failure undoes earlier operations",
            json!([
                {"op": "replace", "path": "/kind", "value": "X"},
                {"op": "test", "path": "/kind", "value": "Pod"}
            ]),
            Want::Err(422, "test failed"),
        ),
        (
            "not an array",
            json!({"op": "add"}),
            Want::Err(
                400,
                "json: cannot unmarshal object into Go value of type jsonpatch.Patch",
            ),
        ),
        (
            "not an array of objects",
            json!(["add"]),
            Want::Err(
                400,
                "json: cannot unmarshal string into Go value of type jsonpatch.Operation",
            ),
        ),
    ]);
}

#[test]
fn malformed_and_hostile_bodies() {
    for body in [
        &b""[..],
        b"[",
        b"{\"op\":",
        b"\xff\xfe",
        b"[{\"op\": \"add\", \"path\": \"/a\", \"value\": }]",
    ] {
        let e = apply_json_patch(&pod(), body).unwrap_err();
        assert_eq!(e.code(), 400, "{body:?}: {e}");
        assert_eq!(e.reason(), "BadRequest");
    }

    let too_many: Vec<Value> = (0..=MAX_JSON_PATCH_OPERATIONS)
        .map(|_| json!({"op": "test", "path": "/kind", "value": "Pod"}))
        .collect();
    let e = apply_json_patch(&pod(), Value::Array(too_many).to_string().as_bytes()).unwrap_err();
    assert_eq!(e.code(), 413);
    assert_eq!(
        e.status_message(),
        "Request entity too large: The allowed maximum operations in a JSON patch is 10000, got 10001"
    );

    // Copying the document into itself doubles it each time: the copy budget
    // stops it long before memory does.
    let doubling: Vec<Value> = (0..64)
        .map(|i| json!({"op": "copy", "from": "/spec", "path": format!("/spec/c{i}")}))
        .collect();
    let e = apply_json_patch(&pod(), Value::Array(doubling).to_string().as_bytes()).unwrap_err();
    assert!(
        matches!(e, PatchError::Unprocessable(_) | PatchError::TooDeep { .. }),
        "{e}"
    );

    // Nesting the document deeper and deeper is bounded too.
    let mut deep = vec![json!({"op": "add", "path": "/d", "value": {}})];
    let mut path = "/d".to_string();
    for _ in 0..200 {
        path.push_str("/d");
        deep.push(json!({"op": "add", "path": path, "value": {}}));
    }
    let e = apply_json_patch(&pod(), Value::Array(deep).to_string().as_bytes()).unwrap_err();
    assert_eq!(e, PatchError::TooDeep { max: MAX_DEPTH });

    let nested = "[".repeat(5000) + &"]".repeat(5000);
    assert_eq!(
        apply_json_patch(&pod(), nested.as_bytes())
            .unwrap_err()
            .code(),
        400
    );
}

#[test]
fn status_message_of_failed_operations_is_upstreams_generic_one() {
    let e = apply_json_patch(&pod(), br#"[{"op":"remove","path":"/nope"}]"#).unwrap_err();
    assert_eq!(e.code(), 422);
    assert_eq!(e.reason(), "Invalid");
    assert_eq!(e.status_message(), GENERIC_UNPROCESSABLE_MESSAGE);
}
