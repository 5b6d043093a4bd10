//! Strategic merge patch: a merge patch that knows, from the type's patch
//! metadata ([`PatchSchema`]), which lists merge element by element, plus the
//! directives upstream's clients send:
//!
//! - `$patch: replace` / `$patch: delete` on a map (and on list elements, see
//!   [`super::strategic_list`]); `$patch: merge` is refused, as upstream does;
//! - `$retainKeys: [..]`: drop the original's keys that are not listed;
//! - `$deleteFromPrimitiveList/<field>: [..]`: remove scalars from a list;
//! - `$setElementOrder/<field>: [..]`: the order of the merged list.
//!
//! The semantics and error messages are those of
//! `k8s.io/apimachinery/pkg/util/strategicpatch` as the API server calls it
//! (`MergeParallelList` and `IgnoreUnmatchedNulls` on).

use serde_json::{Map, Value};

use super::gofmt::{go_string_verb, go_type, go_value};
use super::schema::{PatchSchema, PatchStrategy};
use super::strategic_list::{
    merge_slice_handler, normalize_element_order, partition_maps, partition_primitives,
    slice_element_kind,
};
use super::{PatchError, decode};

pub(super) const DIRECTIVE: &str = "$patch";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";

/// Applies a strategic merge patch (`application/strategic-merge-patch+json`)
/// to `original`, an object of the type `schema` describes.
///
/// Malformed patches and directives are [`PatchError::BadRequest`]; patches that
/// do not fit the object (a list element without its merge key, mismatched list
/// element types, lists of lists) are [`PatchError::Merge`] /
/// [`PatchError::Unprocessable`]. A `null` patch changes nothing.
pub fn apply_strategic_merge_patch(
    original: &Value,
    patch: &[u8],
    schema: &PatchSchema,
) -> Result<Value, PatchError> {
    let patch = match decode(patch)? {
        Value::Null => return Ok(original.clone()),
        Value::Object(patch) => patch,
        other => {
            let kind = match other {
                Value::Array(_) => "array",
                Value::String(_) => "string",
                Value::Number(_) => "number",
                _ => "bool",
            };
            return Err(PatchError::BadRequest(format!(
                "json: cannot unmarshal {kind} into Go value of type map[string]interface {{}}"
            )));
        }
    };
    let original = match original {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    merge_map(original, patch, *schema).map(Value::Object)
}

/// Merges `patch` into `original` (upstream's `mergeMap`).
pub(super) fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    schema: PatchSchema,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.remove(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => Ok(patch),
            Some("delete") => Ok(Map::new()),
            _ => {
                patch.insert(DIRECTIVE.to_string(), directive.clone());
                Err(bad_patch_type(&directive, &patch))
            }
        };
    }

    apply_retain_keys(&mut original, &mut patch)?;
    merge_ordered_lists(&mut original, &mut patch, schema)?;

    for (key, patch_value) in patch {
        let (key, is_delete_list) = if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            let field = extract_key(&key, DELETE_FROM_PRIMITIVE_LIST)?;
            (if field.is_empty() { key } else { field }, true)
        } else {
            (key, false)
        };

        // `null` deletes the field.
        if patch_value.is_null() {
            original.remove(&key);
            continue;
        }

        let Some(current) = original.get_mut(&key) else {
            // New field: take the patch value, minus nulls and directives.
            if !is_delete_list {
                set_cleaned(&mut original, key, patch_value);
            }
            continue;
        };
        if GoKind::of(current) != GoKind::of(&patch_value) {
            if !is_delete_list {
                set_cleaned(&mut original, key, patch_value);
            }
            continue;
        }

        match (current, patch_value) {
            (Value::Object(current), Value::Object(patch_map)) => {
                let (info, sub) = schema.child(&key);
                let taken = std::mem::take(current);
                *current = if info.strategy == Some(PatchStrategy::Replace) {
                    patch_map
                } else {
                    merge_map(taken, patch_map, sub)?
                };
            }
            (Value::Array(current), Value::Array(patch_list)) => {
                let (info, sub) = schema.child(&key);
                let taken = std::mem::take(current);
                *current = merge_slice_handler(taken, patch_list, sub, &info, is_delete_list)?;
            }
            (current, patch_value) => match remove_directives(patch_value) {
                Some(v) => *current = v,
                None => {
                    original.remove(&key);
                }
            },
        }
    }
    Ok(original)
}

/// Sets `key` to a patch value the original had no counterpart for: nulls
/// dropped, directive maps removed (and the key with them if the value itself
/// is one).
fn set_cleaned(original: &mut Map<String, Value>, key: String, mut value: Value) {
    discard_nulls(&mut value);
    match remove_directives(value) {
        Some(v) => {
            original.insert(key, v);
        }
        None => {
            original.remove(&key);
        }
    }
}

/// `$retainKeys`: the original keeps only the listed keys, and the patch may
/// set no other.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let bad = || PatchError::BadRequest("invalid patch format of retainKeys".to_string());
    let Value::Array(retain) = retain else {
        return Err(bad());
    };
    let listed = |k: &str| retain.iter().any(|v| v.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null()
            || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || k.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if !listed(k) {
            return Err(bad());
        }
    }
    original.retain(|k, _| listed(k));
    Ok(())
}

/// `$setElementOrder/<field>`: merges the field's list (if the patch has it)
/// and orders the result: the listed order first, server-only items kept near
/// their old neighbours (upstream's `mergePatchIntoOriginal`).
fn merge_ordered_lists(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    schema: PatchSchema,
) -> Result<(), PatchError> {
    let directive_keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for directive_key in directive_keys {
        let Some(order) = patch.remove(&directive_key) else {
            continue;
        };
        let Value::Array(order) = order else {
            return Err(bad_arg_type("[]interface {}", &order));
        };
        let field = extract_key(&directive_key, SET_ELEMENT_ORDER)?;
        let original_list = list_at(original, &field)?;
        let patch_list = list_at(patch, &field)?;
        let (info, sub) = schema.child(&field);
        let merge_key = info.merge_key.unwrap_or("");
        validate_patch_with_set_order(patch_list.as_deref().unwrap_or(&[]), &order, merge_key)?;

        let merged = match (original_list.clone(), patch_list.clone()) {
            (Some(original_list), None) => original_list,
            (None, Some(patch_list)) => match remove_directives(Value::Array(patch_list)) {
                Some(Value::Array(items)) => items,
                _ => continue,
            },
            (Some(original_list), Some(patch_list)) => {
                merge_slice_handler(original_list, patch_list, sub, &info, false)?
            }
            (None, None) => continue,
        };

        let (in_order, server_only) = if merge_key.is_empty() {
            partition_primitives(merged, &order)
        } else {
            partition_maps(merged, &order, merge_key)?
        };
        let original_list = original_list.unwrap_or_default();
        let kind = slice_element_kind(&[&original_list, patch_list.as_deref().unwrap_or(&[])])?;
        let ordered = normalize_element_order(
            in_order,
            server_only,
            &order,
            &original_list,
            merge_key,
            kind,
        )?;
        original.insert(field.clone(), Value::Array(ordered));
        patch.remove(&field);
    }
    Ok(())
}

/// The list at `key`, if any; anything else there is an error.
fn list_at(map: &Map<String, Value>, key: &str) -> Result<Option<Vec<Value>>, PatchError> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items.clone())),
        Some(other) => Err(bad_arg_type("[]interface {}", other)),
    }
}

/// Checks that the patch list's items appear in the `$setElementOrder` list in
/// the same relative order (deletions and directive items aside).
fn validate_patch_with_set_order(
    patch_list: &[Value],
    order: &[Value],
    merge_key: &str,
) -> Result<(), PatchError> {
    if order.is_empty() || patch_list.is_empty() {
        return Ok(());
    }
    let mut kept = Vec::with_capacity(patch_list.len());
    for item in patch_list {
        if !merge_key.is_empty() {
            let Value::Object(map) = item else {
                return Err(bad_arg_type("map[string]interface {}", item));
            };
            if map.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                continue;
            }
        }
        kept.push(item);
    }
    let (mut p, mut o) = (0, 0);
    while p < kept.len() && o < order.len() {
        if is_directive(kept[p]) {
            p += 1;
            continue;
        }
        if merge_key_value_equal(kept[p], &order[o], merge_key)? {
            p += 1;
        }
        o += 1;
    }
    if p < kept.len() && o >= order.len() {
        return Err(PatchError::Merge(format!(
            "The order in patch list:\n{}\n doesn't match {SET_ELEMENT_ORDER} list:\n{}\n",
            go_value(&Value::Array(patch_list.to_vec())),
            go_value(&Value::Array(order.to_vec())),
        )));
    }
    Ok(())
}

fn merge_key_value_equal(left: &Value, right: &Value, merge_key: &str) -> Result<bool, PatchError> {
    if merge_key.is_empty() {
        return Ok(left == right);
    }
    let Value::Object(l) = left else {
        return Err(bad_arg_type("map[string]interface {}", left));
    };
    let Value::Object(r) = right else {
        return Err(bad_arg_type("map[string]interface {}", right));
    };
    let lv = l.get(merge_key).ok_or_else(|| no_merge_key(l, merge_key))?;
    let rv = r.get(merge_key).ok_or_else(|| no_merge_key(r, merge_key))?;
    Ok(lv == rv)
}

/// The field named after `prefix/`.
fn extract_key(s: &str, prefix: &str) -> Result<String, PatchError> {
    match s.split_once('/') {
        Some((head, rest)) if head == prefix => Ok(rest.to_string()),
        _ => Err(PatchError::BadRequest(
            if prefix == DELETE_FROM_PRIMITIVE_LIST {
                "invalid patch format of primitive list"
            } else {
                "invalid patch format of setElementOrder list"
            }
            .to_string(),
        )),
    }
}

/// True for a map carrying a `$patch` directive.
pub(super) fn is_directive(v: &Value) -> bool {
    v.as_object().is_some_and(|m| m.contains_key(DIRECTIVE))
}

/// Strips directive maps out of a patch value (`None` if the value itself is
/// one), as upstream does before taking a patch value verbatim.
pub(super) fn remove_directives(value: Value) -> Option<Value> {
    match value {
        Value::Object(map) => {
            if map.contains_key(DIRECTIVE) {
                return None;
            }
            let map = map
                .into_iter()
                .filter_map(|(k, v)| remove_directives(v).map(|v| (k, v)))
                .collect();
            Some(Value::Object(map))
        }
        Value::Array(items) => Some(Value::Array(
            items.into_iter().filter_map(remove_directives).collect(),
        )),
        other => Some(other),
    }
}

/// Drops `null` members of maps, recursively (through lists too).
fn discard_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(discard_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(discard_nulls),
        _ => {}
    }
}

/// The Go dynamic type a decoded JSON value has in upstream's code; values of
/// different kinds never merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GoKind {
    Nil,
    Bool,
    Int,
    Float,
    String,
    Slice,
    Map,
}

impl GoKind {
    pub(super) fn of(v: &Value) -> Self {
        match v {
            Value::Null => GoKind::Nil,
            Value::Bool(_) => GoKind::Bool,
            Value::Number(n) if n.is_f64() => GoKind::Float,
            Value::Number(_) => GoKind::Int,
            Value::String(_) => GoKind::String,
            Value::Array(_) => GoKind::Slice,
            Value::Object(_) => GoKind::Map,
        }
    }
}

/// `map: map[...] does not contain declared merge key: <key>`.
pub(super) fn no_merge_key(map: &Map<String, Value>, key: &str) -> PatchError {
    PatchError::Merge(format!(
        "map: {} does not contain declared merge key: {key}",
        go_value(&Value::Object(map.clone()))
    ))
}

/// `expected a <type>, but received a <type>`.
pub(super) fn bad_arg_type(expected: &str, actual: &Value) -> PatchError {
    PatchError::Merge(format!(
        "expected a {expected}, but received a {}",
        go_type(actual)
    ))
}

/// `unknown patch type: <directive> in map: map[...]`.
pub(super) fn bad_patch_type(directive: &Value, map: &Map<String, Value>) -> PatchError {
    PatchError::Merge(format!(
        "unknown patch type: {} in map: {}",
        go_string_verb(directive),
        go_value(&Value::Object(map.clone()))
    ))
}
