//! Small helpers over the JSON form of objects.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// The value at `path` (field names only), if every step exists.
pub(super) fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, step| cur.get(step))
}

/// The mutable value at `path`, if every step exists.
pub(super) fn at_mut<'a>(v: &'a mut Value, path: &[&str]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |cur, step| cur.get_mut(step))
}

/// The string field `key` of `v`, or `""` when missing or not a string.
pub(super) fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The integer field `key` of `v`, when present and an integer.
pub(super) fn int_of(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

/// The list field `key` of `v` (empty when missing).
pub(super) fn list_of<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// True when `key` is set to something other than `null`.
pub(super) fn has(v: &Value, key: &str) -> bool {
    v.get(key).is_some_and(|x| !x.is_null())
}

/// A string map (labels, selectors) from a JSON object; non-string values
/// are skipped.
pub(super) fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// Sets `key` to `value` unless it already holds a non-null value.
pub(super) fn set_default(map: &mut Map<String, Value>, key: &str, value: Value) {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.to_owned(), value);
    }
}

/// The object at `key`, created (or replaced when not an object) as `{}`.
/// Always `Some`; the `Option` only spares an `unwrap`.
pub(super) fn object_entry<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    let slot = map
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
}

/// Calls `f` on every object element of the list at `key` of `map`.
pub(super) fn each_object_mut(
    map: &mut Map<String, Value>,
    key: &str,
    mut f: impl FnMut(&mut Map<String, Value>),
) {
    if let Some(Value::Array(items)) = map.get_mut(key) {
        for item in items {
            if let Value::Object(m) = item {
                f(m);
            }
        }
    }
}

/// A copy of `v` without the values Go's semantic equality treats as
/// unset: `null`, `""`, `[]` and `{}` (after pruning their contents).
pub(super) fn pruned(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), pruned(v)))
                .filter(|(_, v)| !is_unset(v))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(pruned).collect()),
        other => other.clone(),
    }
}

fn is_unset(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// Go's `apiequality.Semantic.DeepEqual` on JSON: unset values compare equal
/// to missing ones.
pub(super) fn semantic_eq(a: Option<&Value>, b: Option<&Value>) -> bool {
    let norm = |v: Option<&Value>| v.map_or(Value::Null, pruned);
    let (a, b) = (norm(a), norm(b));
    a == b || (is_unset(&a) && is_unset(&b))
}

/// The object at `key` of `map`, if it is one.
pub(super) fn child_mut<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    map.get_mut(key).and_then(Value::as_object_mut)
}
