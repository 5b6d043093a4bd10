//! JSON patch (RFC 6902) as kube-apiserver applies it (the Go library
//! `evanphx/json-patch` v4): its error messages, negative array indices
//! (`/-1` is the last element), `replace` of a missing object member acting as
//! `add`, and the limits on operation count and on bytes added by `copy`.
//!
//! Where that library has plain bugs we follow the RFC instead: `test` compares
//! `null` with `null` as equal, and `copy` from a missing member is an error
//! rather than a copy of `null`.

use serde_json::{Map, Value};

use super::{
    MAX_DEPTH, MAX_JSON_PATCH_COPY_BYTES, MAX_JSON_PATCH_OPERATIONS, PatchError, decode, depth,
};

/// Applies an RFC 6902 JSON patch (`application/json-patch+json`) to `original`.
///
/// A body that is not a JSON array of objects is a [`PatchError::BadRequest`];
/// more than [`MAX_JSON_PATCH_OPERATIONS`] operations is
/// [`PatchError::TooManyOperations`]; an operation that does not apply is
/// [`PatchError::Unprocessable`] and leaves nothing changed.
pub fn apply_json_patch(original: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    let ops = match decode(patch)? {
        Value::Null => return Ok(original.clone()),
        Value::Array(ops) => ops,
        other => return Err(type_error(&other, "jsonpatch.Patch")),
    };
    for op in &ops {
        if !matches!(op, Value::Object(_) | Value::Null) {
            return Err(type_error(op, "jsonpatch.Operation"));
        }
    }
    if ops.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooManyOperations {
            max: MAX_JSON_PATCH_OPERATIONS,
            got: ops.len(),
        });
    }

    let mut doc = original.clone();
    let mut state = State {
        copied_bytes: 0,
        depth_bound: depth(&doc),
        depth_limit: MAX_DEPTH.max(depth(&doc)),
    };
    let empty = Map::new();
    for op in &ops {
        let op = op.as_object().unwrap_or(&empty);
        apply_op(&mut doc, op, &mut state)?;
    }
    Ok(doc)
}

/// Go's `json: cannot unmarshal X into Go value of type T`.
fn type_error(v: &Value, go_type: &str) -> PatchError {
    let kind = match v {
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Null => "null",
    };
    PatchError::BadRequest(format!(
        "json: cannot unmarshal {kind} into Go value of type {go_type}"
    ))
}

struct State {
    copied_bytes: usize,
    /// An upper bound on the nesting depth of the document.
    depth_bound: usize,
    depth_limit: usize,
}

impl State {
    /// Records that a value nesting `value_depth` levels lands `tokens` levels
    /// down, and refuses documents that would nest too deep.
    fn grow(&mut self, tokens: usize, value_depth: usize) -> Result<(), PatchError> {
        self.depth_bound = self.depth_bound.max(tokens.saturating_add(value_depth));
        if self.depth_bound > self.depth_limit {
            return Err(PatchError::TooDeep {
                max: self.depth_limit,
            });
        }
        Ok(())
    }
}

fn unprocessable(msg: String) -> PatchError {
    PatchError::Unprocessable(msg)
}

fn apply_op(doc: &mut Value, op: &Map<String, Value>, state: &mut State) -> Result<(), PatchError> {
    let kind = op.get("op").and_then(Value::as_str).unwrap_or("unknown");
    let value = op.get("value").cloned().unwrap_or(Value::Null);
    match kind {
        "add" => {
            let path = string_field(op, "path").ok_or_else(|| {
                unprocessable("add operation failed to decode path: missing value".into())
            })?;
            state.grow(tokens(path), depth(&value))?;
            let (parent, key) = find_parent(doc, path).ok_or_else(|| {
                unprocessable(format!(
                    "add operation does not apply: doc is missing path: \"{path}\": missing value"
                ))
            })?;
            add(parent, &key, value)
                .map_err(|e| unprocessable(format!("error in add for path: '{path}': {e}")))
        }
        "remove" => {
            let path = string_field(op, "path").ok_or_else(|| {
                unprocessable("remove operation failed to decode path: missing value".into())
            })?;
            let (parent, key) = find_parent(doc, path).ok_or_else(|| {
                unprocessable(format!(
                    "remove operation does not apply: doc is missing path: \"{path}\": missing value"
                ))
            })?;
            remove(parent, &key)
                .map(drop)
                .map_err(|e| unprocessable(format!("error in remove for path: '{path}': {e}")))
        }
        "replace" => {
            let path = path_field(op, "path", "replace operation failed to decode path")?;
            if path.is_empty() {
                // Upstream replaces the whole document only with an object or an
                // array, and silently ignores anything else.
                if value.is_object() || value.is_array() {
                    state.grow(0, depth(&value))?;
                    *doc = value;
                }
                return Ok(());
            }
            state.grow(tokens(path), depth(&value))?;
            let (parent, key) = find_parent(doc, path).ok_or_else(|| {
                unprocessable(format!(
                    "replace operation does not apply: doc is missing path: {path}: missing value"
                ))
            })?;
            if get(parent, &key).is_err() {
                return Err(unprocessable(format!(
                    "replace operation does not apply: doc is missing key: {path}: missing value"
                )));
            }
            set(parent, &key, value)
                .map_err(|e| unprocessable(format!("error in remove for path: '{path}': {e}")))
        }
        "move" => {
            let from = path_field(op, "from", "move operation failed to decode from")?;
            let path = path_field(op, "path", "move operation failed to decode path")?;
            let (parent, key) = find_parent(doc, from).ok_or_else(|| {
                unprocessable(format!(
                    "move operation does not apply: doc is missing from path: {from}: missing value"
                ))
            })?;
            let moved = remove(parent, &key)
                .map_err(|e| unprocessable(format!("error in move for path: '{key}': {e}")))?;
            // The moved value nests at most as deep as the document below `from`.
            state.grow(tokens(path), state.depth_bound.saturating_sub(tokens(from)))?;
            let (parent, key) = find_parent(doc, path).ok_or_else(|| {
                unprocessable(format!(
                    "move operation does not apply: doc is missing destination path: {path}: missing value"
                ))
            })?;
            add(parent, &key, moved)
                .map_err(|e| unprocessable(format!("error in move for path: '{path}': {e}")))
        }
        "copy" => {
            let from = path_field(op, "from", "copy operation failed to decode from")?;
            let missing_from = || {
                unprocessable(format!(
                    "copy operation does not apply: doc is missing from path: {from}: missing value"
                ))
            };
            let (parent, key) = find_parent(doc, from).ok_or_else(missing_from)?;
            let copied = get(parent, &key)
                .map_err(|e| unprocessable(format!("error in copy for from: '{from}': {e}")))?
                .ok_or_else(missing_from)?
                .clone();
            let path = string_field(op, "path").ok_or_else(|| {
                unprocessable("copy operation failed to decode path: missing value".into())
            })?;
            state.grow(tokens(path), state.depth_bound.saturating_sub(tokens(from)))?;
            let (parent, key) = find_parent(doc, path).ok_or_else(|| {
                unprocessable(format!(
                    "copy operation does not apply: doc is missing destination path: {path}: missing value"
                ))
            })?;
            state.copied_bytes = state.copied_bytes.saturating_add(json_len(&copied));
            if state.copied_bytes > MAX_JSON_PATCH_COPY_BYTES {
                return Err(unprocessable(format!(
                    "Unable to complete the copy, the accumulated size increase of copy is {}, exceeding the limit {}",
                    state.copied_bytes, MAX_JSON_PATCH_COPY_BYTES
                )));
            }
            add(parent, &key, copied)
                .map_err(|e| unprocessable(format!("error while adding value during copy: {e}")))
        }
        "test" => {
            let path = path_field(op, "path", "test operation failed to decode path")?;
            let failed = || unprocessable(format!("testing value {path} failed: test failed"));
            if path.is_empty() {
                return if *doc == value { Ok(()) } else { Err(failed()) };
            }
            let (parent, key) = find_parent(doc, path).ok_or_else(|| {
                unprocessable(format!(
                    "test operation does not apply: is missing path: {path}: missing value"
                ))
            })?;
            let current = get(parent, &key)
                .map_err(|e| unprocessable(format!("error in test for path: '{path}': {e}")))?;
            match current {
                Some(current) if op.contains_key("value") && *current == value => Ok(()),
                _ => Err(failed()),
            }
        }
        other => Err(unprocessable(format!("Unexpected kind: {other}"))),
    }
}

fn string_field<'a>(op: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    op.get(name).and_then(Value::as_str)
}

/// A `path`/`from` member for the operations whose upstream error names the
/// decoding failure.
fn path_field<'a>(
    op: &'a Map<String, Value>,
    name: &str,
    context: &str,
) -> Result<&'a str, PatchError> {
    match op.get(name) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(unprocessable(format!(
            "{context}: operation{} missing {name} field: missing value",
            if name == "from" { "," } else { "" }
        ))),
        Some(other) => Err(unprocessable(format!(
            "{context}: json: cannot unmarshal {} into Go value of type string",
            if other.is_number() {
                "number"
            } else if other.is_boolean() {
                "bool"
            } else if other.is_array() {
                "array"
            } else {
                "object"
            }
        ))),
    }
}

/// The number of reference tokens in a JSON pointer.
fn tokens(path: &str) -> usize {
    path.matches('/').count()
}

/// Decodes one reference token (`~1` is `/`, `~0` is `~`).
fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// The container holding the target of `path`, and the target's key in it.
/// `None` when the path has no parent (the empty path) or a parent is missing
/// or not a container.
fn find_parent<'a>(doc: &'a mut Value, path: &str) -> Option<(&'a mut Value, String)> {
    let mut parts = path.split('/');
    // Upstream ignores whatever precedes the first '/'.
    parts.next()?;
    let mut parts: Vec<&str> = parts.collect();
    let last = parts.pop()?;
    let mut cur = doc;
    for part in parts {
        let key = unescape(part);
        let next = match cur {
            Value::Object(map) => map.get_mut(&key)?,
            Value::Array(items) => {
                let idx = array_index(&key, items.len(), false).ok()?;
                items.get_mut(idx)?
            }
            _ => return None,
        };
        if !(next.is_object() || next.is_array()) {
            return None;
        }
        cur = next;
    }
    if !(cur.is_object() || cur.is_array()) {
        return None;
    }
    Some((cur, unescape(last)))
}

/// Go's `strconv.Atoi`, with its error text.
fn atoi(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.Atoi: parsing \"{s}\": invalid syntax"));
    }
    s.parse::<i64>()
        .map_err(|_| format!("strconv.Atoi: parsing \"{s}\": value out of range"))
}

fn invalid_index(idx: i64) -> String {
    format!("Unable to access invalid index: {idx}: invalid index referenced")
}

/// An index into an array of `len` elements; negative indices count from the
/// end. With `inclusive`, `len` itself is allowed (insert at the end).
fn array_index(key: &str, len: usize, inclusive: bool) -> Result<usize, String> {
    let idx = atoi(key)?;
    let size = i64::try_from(len).unwrap_or(i64::MAX) + i64::from(inclusive);
    if idx >= size || idx < -size {
        return Err(invalid_index(idx));
    }
    let adjusted = if idx < 0 { idx + size } else { idx };
    usize::try_from(adjusted).map_err(|_| invalid_index(idx))
}

fn get<'a>(container: &'a Value, key: &str) -> Result<Option<&'a Value>, String> {
    match container {
        Value::Object(map) => Ok(map.get(key)),
        Value::Array(items) => {
            let idx = array_index(key, items.len(), false)?;
            Ok(items.get(idx))
        }
        _ => Ok(None),
    }
}

fn set(container: &mut Value, key: &str, value: Value) -> Result<(), String> {
    match container {
        Value::Object(map) => {
            map.insert(key.to_string(), value);
            Ok(())
        }
        Value::Array(items) => {
            let idx = array_index(key, items.len(), false)?;
            if let Some(slot) = items.get_mut(idx) {
                *slot = value;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn add(container: &mut Value, key: &str, value: Value) -> Result<(), String> {
    match container {
        Value::Object(map) => {
            map.insert(key.to_string(), value);
            Ok(())
        }
        Value::Array(items) if key == "-" => {
            items.push(value);
            Ok(())
        }
        Value::Array(items) => {
            let idx = array_index(key, items.len(), true).map_err(|e| {
                if e.starts_with("strconv") {
                    format!("value was not a proper array index: '{key}': {e}")
                } else {
                    e
                }
            })?;
            items.insert(idx, value);
            Ok(())
        }
        _ => Ok(()),
    }
}

fn remove(container: &mut Value, key: &str) -> Result<Value, String> {
    match container {
        Value::Object(map) => map
            .remove(key)
            .ok_or_else(|| format!("Unable to remove nonexistent key: {key}: missing value")),
        Value::Array(items) => {
            let idx = array_index(key, items.len(), false)?;
            Ok(items.remove(idx))
        }
        _ => Err(format!(
            "Unable to remove nonexistent key: {key}: missing value"
        )),
    }
}

/// The length of `v` serialized as compact JSON.
fn json_len(v: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing to a counter cannot fail; a value that somehow does not serialize
    // counts as its partial length.
    let _ = serde_json::to_writer(&mut counter, v);
    counter.0
}
