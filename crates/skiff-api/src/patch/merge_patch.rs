//! JSON merge patch (RFC 7386) as kube-apiserver applies it (`evanphx/json-patch`
//! v4 `MergePatch`): `null` deletes a member, objects merge recursively,
//! anything else replaces. Where a patch value lands on no object (a new member,
//! or one that was not an object), its `null` members are dropped all the way
//! down, inside arrays too. A patch that is `null` or a scalar is refused with
//! upstream's `Invalid JSON Patch`; an array patch replaces the document.

use serde_json::{Map, Value};

use super::{MAX_DEPTH, PatchError, depth};

/// Upstream's message for a merge patch body it cannot use.
const BAD_MERGE_PATCH: &str = "Invalid JSON Patch";

/// Applies an RFC 7386 merge patch (`application/merge-patch+json`) to
/// `original`. Malformed bodies are [`PatchError::BadRequest`].
pub fn apply_merge_patch(original: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    let patch: Value = serde_json::from_slice(patch)
        .map_err(|_| PatchError::BadRequest(BAD_MERGE_PATCH.to_string()))?;
    if depth(&patch) > MAX_DEPTH {
        return Err(PatchError::TooDeep { max: MAX_DEPTH });
    }
    match patch {
        Value::Object(patch) => match original {
            Value::Object(doc) => {
                let mut doc = doc.clone();
                merge_members(&mut doc, patch);
                Ok(Value::Object(doc))
            }
            _ => {
                let mut patch = Value::Object(patch);
                prune_nulls(&mut patch);
                Ok(patch)
            }
        },
        Value::Array(items) => {
            let mut patch = Value::Array(items);
            prune_nulls(&mut patch);
            Ok(patch)
        }
        _ => Err(PatchError::BadRequest(BAD_MERGE_PATCH.to_string())),
    }
}

fn merge_members(doc: &mut Map<String, Value>, patch: Map<String, Value>) {
    for (key, value) in patch {
        if value.is_null() {
            doc.remove(&key);
            continue;
        }
        match doc.get_mut(&key) {
            Some(current) if !current.is_null() => merge_value(current, value),
            _ => {
                let mut value = value;
                prune_nulls(&mut value);
                doc.insert(key, value);
            }
        }
    }
}

fn merge_value(current: &mut Value, patch: Value) {
    match (current, patch) {
        (Value::Object(doc), Value::Object(patch)) => merge_members(doc, patch),
        (current @ Value::Object(_), patch) => *current = patch,
        (current, mut patch) => {
            prune_nulls(&mut patch);
            *current = patch;
        }
    }
}

/// Drops `null` members of objects, recursively (through arrays too; `null`
/// array elements stay).
fn prune_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(prune_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(prune_nulls),
        _ => {}
    }
}
