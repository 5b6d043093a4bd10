//! Strategic merge of lists: lists of maps merged by merge key (with
//! `$patch: delete` / `$patch: replace` elements), lists of scalars merged as
//! sets or reduced by `$deleteFromPrimitiveList`, and upstream's ordering of the
//! result (patch order first, server-only items kept near their old
//! neighbours).
//!
//! Lookups go through hash maps keyed by the scalar value (the element itself,
//! or its merge key), so large hostile lists cost linear time rather than the
//! quadratic scans upstream does.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::PatchError;
use super::gofmt::go_value;
use super::schema::{FieldInfo, PatchSchema, PatchStrategy};
use super::strategic::{DIRECTIVE, GoKind, bad_arg_type, bad_patch_type, merge_map, no_merge_key};

/// Merges `patch` into `original` for a list field: element by element when
/// the field's strategy is `merge` (or for a `$deleteFromPrimitiveList`
/// list), else the patch replaces the list verbatim.
pub(super) fn merge_slice_handler(
    original: Vec<Value>,
    patch: Vec<Value>,
    schema: PatchSchema,
    info: &FieldInfo,
    is_delete_list: bool,
) -> Result<Vec<Value>, PatchError> {
    if info.strategy == Some(PatchStrategy::Merge) || is_delete_list {
        merge_slice(
            original,
            patch,
            schema,
            info.merge_key.unwrap_or(""),
            is_delete_list,
        )
    } else {
        Ok(patch)
    }
}

fn merge_slice(
    original: Vec<Value>,
    patch: Vec<Value>,
    schema: PatchSchema,
    merge_key: &str,
    is_delete_list: bool,
) -> Result<Vec<Value>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let kind = slice_element_kind(&[&original, &patch])?;

    let (merged, patch_order, server_order) = if kind != GoKind::Map {
        if is_delete_list {
            let doomed: HashSet<Key<'_>> = patch.iter().map(Key::of).collect();
            return Ok(original
                .iter()
                .filter(|v| !doomed.contains(&Key::of(v)))
                .cloned()
                .collect());
        }
        let mut seen = HashSet::new();
        let merged: Vec<Value> = original
            .iter()
            .chain(patch.iter())
            .filter(|v| seen.insert(Key::of(v)))
            .cloned()
            .collect();
        (merged, patch, original)
    } else {
        if merge_key.is_empty() {
            return Err(PatchError::Merge(
                "cannot merge lists without merge key for struct".to_string(),
            ));
        }
        let (original, patch) = apply_special_elements(original, patch, merge_key)?;
        let merged = merge_by_key(original.clone(), patch.clone(), merge_key, schema)?;
        (merged, patch, original)
    };

    let (in_patch, server_only) = if merge_key.is_empty() {
        partition_primitives(merged, &patch_order)
    } else {
        partition_maps(merged, &patch_order, merge_key)?
    };
    normalize_element_order(
        in_patch,
        server_only,
        &patch_order,
        &server_order,
        merge_key,
        kind,
    )
}

/// Handles the `$patch` elements of a patch list: `delete` removes the
/// original elements with that merge key value, `replace` makes the patch's
/// other elements the whole list. Returns the new original and the patch
/// without those elements.
fn apply_special_elements(
    original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut plain = Vec::with_capacity(patch.len());
    let mut doomed = HashSet::new();
    let mut replace = false;
    for item in &patch {
        let Some(map) = item.as_object() else {
            plain.push(item.clone());
            continue;
        };
        let Some(directive) = map.get(DIRECTIVE) else {
            plain.push(item.clone());
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let value = map
                    .get(merge_key)
                    .ok_or_else(|| no_merge_key(map, merge_key))?;
                doomed.insert(Key::of(value));
            }
            Some("replace") => replace = true,
            Some("merge") => {
                return Err(PatchError::Merge(
                    "merging lists cannot yet be specified in the patch".to_string(),
                ));
            }
            _ => return Err(bad_patch_type(directive, map)),
        }
    }
    if replace {
        return Ok((plain, Vec::new()));
    }
    let mut kept = Vec::with_capacity(original.len());
    for (i, item) in original.into_iter().enumerate() {
        let Some(map) = item.as_object() else {
            return Err(PatchError::Merge(format!("value for key {i} is not a map")));
        };
        let delete = map
            .get(merge_key)
            .is_some_and(|v| doomed.contains(&Key::of(v)));
        if !delete {
            kept.push(item);
        }
    }
    Ok((kept, plain))
}

/// Merges each patch element into the original element with the same merge
/// key value, or appends it.
fn merge_by_key(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: &str,
    schema: PatchSchema,
) -> Result<Vec<Value>, PatchError> {
    let mut index: HashMap<Key<'static>, usize> = HashMap::new();
    for (i, item) in original.iter().enumerate() {
        let Some(map) = item.as_object() else {
            return Err(PatchError::Merge(format!("value for key {i} is not a map")));
        };
        if let Some(v) = map.get(merge_key) {
            index.entry(Key::of(v).into_owned()).or_insert(i);
        }
    }
    for item in patch {
        let Value::Object(patch_map) = item else {
            return Err(bad_arg_type("map[string]interface {}", &item));
        };
        let value = patch_map
            .get(merge_key)
            .ok_or_else(|| no_merge_key(&patch_map, merge_key))?;
        let key = Key::of(value).into_owned();
        match index.get(&key).copied() {
            Some(i) => {
                let Some(Value::Object(current)) = original.get_mut(i) else {
                    return Err(PatchError::Merge(format!("value for key {i} is not a map")));
                };
                let taken = std::mem::take(current);
                *current = merge_map(taken, patch_map, schema)?;
            }
            None => {
                index.insert(key, original.len());
                original.push(Value::Object(patch_map));
            }
        }
    }
    Ok(original)
}

/// Splits scalars into those present in `by` and the rest, keeping order.
pub(super) fn partition_primitives(items: Vec<Value>, by: &[Value]) -> (Vec<Value>, Vec<Value>) {
    let by: HashSet<Key<'_>> = by.iter().map(Key::of).collect();
    let (mut yes, mut no) = (Vec::new(), Vec::new());
    for item in items {
        if by.contains(&Key::of(&item)) {
            yes.push(item);
        } else {
            no.push(item);
        }
    }
    (yes, no)
}

/// Splits maps into those whose merge key value appears in `by` and the rest,
/// keeping order. Every item must be a map with the merge key.
pub(super) fn partition_maps(
    items: Vec<Value>,
    by: &[Value],
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut wanted = HashSet::new();
    for (i, v) in by.iter().enumerate() {
        let Some(map) = v.as_object() else {
            return Err(PatchError::Merge(format!("value for key {i} is not a map")));
        };
        if let Some(value) = map.get(merge_key) {
            wanted.insert(Key::of(value));
        }
    }
    let (mut yes, mut no) = (Vec::new(), Vec::new());
    for item in items {
        let Some(map) = item.as_object() else {
            return Err(bad_arg_type("map[string]interface {}", &item));
        };
        let value = map
            .get(merge_key)
            .ok_or_else(|| no_merge_key(map, merge_key))?;
        if wanted.contains(&Key::of(value)) {
            yes.push(item);
        } else {
            no.push(item);
        }
    }
    Ok((yes, no))
}

/// The common Go kind of the elements of `slices`: an error for lists of
/// lists, mixed kinds, or no elements at all.
pub(super) fn slice_element_kind(slices: &[&[Value]]) -> Result<GoKind, PatchError> {
    let mut kind = None;
    for v in slices.iter().flat_map(|s| s.iter()) {
        let k = GoKind::of(v);
        match kind {
            None if k == GoKind::Slice => {
                return Err(PatchError::Unprocessable(
                    "lists of lists are not supported".to_string(),
                ));
            }
            None => kind = Some(k),
            Some(prev) if prev != k => {
                let all = slices.iter().map(|s| Value::Array(s.to_vec())).collect();
                return Err(PatchError::Merge(format!(
                    "list element types are not identical: {}",
                    go_value(&Value::Array(all))
                )));
            }
            Some(_) => {}
        }
    }
    kind.ok_or_else(|| PatchError::Merge("no elements in any of the given slices".to_string()))
}

/// Orders a merged list: `in_patch` sorted by `patch_order`, `server_only`
/// sorted by `server_order`, then the two interleaved so that server-only
/// items stay before the patch items they preceded on the server.
pub(super) fn normalize_element_order(
    in_patch: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: &str,
    kind: GoKind,
) -> Result<Vec<Value>, PatchError> {
    let in_patch = sort_by_order(in_patch, patch_order, merge_key, kind)?;
    let server_only = sort_by_order(server_only, server_order, merge_key, kind)?;

    let positions = Positions::new(server_order, merge_key, kind);
    let mut out = Vec::with_capacity(in_patch.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = in_patch.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
            (Some(l), Some(r)) => match (positions.of(l), positions.of(r)) {
                (Some(li), Some(ri)) => li < ri,
                _ => false,
            },
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    Ok(out)
}

/// Stable-sorts `items` by their position in `order`; items not in it go last.
/// For maps, every item and every order entry must carry the merge key, and
/// `$patch: delete` items are moved to the end.
fn sort_by_order(
    items: Vec<Value>,
    order: &[Value],
    merge_key: &str,
    kind: GoKind,
) -> Result<Vec<Value>, PatchError> {
    let mut deleted = Vec::new();
    let mut items = items;
    if kind == GoKind::Map {
        for v in items.iter().chain(order.iter()) {
            let Some(map) = v.as_object() else {
                return Err(bad_arg_type("map[string]interface {}", v));
            };
            if !map.contains_key(merge_key) {
                return Err(no_merge_key(map, merge_key));
            }
        }
        let (keep, del): (Vec<Value>, Vec<Value>) = items
            .into_iter()
            .partition(|v| v.get(DIRECTIVE).and_then(Value::as_str) != Some("delete"));
        items = keep;
        deleted = del;
    }
    let positions = Positions::new(order, merge_key, kind);
    let mut keyed: Vec<(usize, Value)> = items
        .into_iter()
        .map(|v| (positions.of(&v).unwrap_or(usize::MAX), v))
        .collect();
    keyed.sort_by_key(|(pos, _)| *pos);
    let mut out: Vec<Value> = keyed.into_iter().map(|(_, v)| v).collect();
    out.extend(deleted);
    Ok(out)
}

/// First positions of values (or of their merge key values) in a list.
struct Positions<'a> {
    first: HashMap<Key<'a>, usize>,
    merge_key: &'a str,
    maps: bool,
}

impl<'a> Positions<'a> {
    fn new(list: &'a [Value], merge_key: &'a str, kind: GoKind) -> Self {
        let maps = kind == GoKind::Map;
        let mut first = HashMap::new();
        for (i, v) in list.iter().enumerate() {
            first.entry(Self::key(v, merge_key, maps)).or_insert(i);
        }
        Positions {
            first,
            merge_key,
            maps,
        }
    }

    /// For maps the merge key value, a missing key counting as `null` (as
    /// upstream compares them).
    fn key<'v>(v: &'v Value, merge_key: &str, maps: bool) -> Key<'v> {
        if maps {
            v.get(merge_key).map_or(Key::Null, Key::of)
        } else {
            Key::of(v)
        }
    }

    fn of(&self, v: &Value) -> Option<usize> {
        self.first
            .get(&Self::key(v, self.merge_key, self.maps))
            .copied()
    }
}

/// A hashable stand-in for a JSON value with the equality upstream uses
/// (integers and floats never equal; compound values by their JSON text).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(u64),
    Str(std::borrow::Cow<'a, str>),
    Compound(String),
}

impl<'a> Key<'a> {
    fn of(v: &'a Value) -> Self {
        match v {
            Value::Null => Key::Null,
            Value::Bool(b) => Key::Bool(*b),
            Value::Number(n) => {
                if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
                    // -0.0 == 0.0 as floats.
                    Key::Float(if f == 0.0 { 0 } else { f.to_bits() })
                } else if let Some(i) = n.as_i64() {
                    Key::Int(i)
                } else if let Some(u) = n.as_u64() {
                    Key::Uint(u)
                } else {
                    Key::Compound(n.to_string())
                }
            }
            Value::String(s) => Key::Str(std::borrow::Cow::Borrowed(s)),
            Value::Array(_) | Value::Object(_) => Key::Compound(v.to_string()),
        }
    }

    fn into_owned(self) -> Key<'static> {
        match self {
            Key::Null => Key::Null,
            Key::Bool(b) => Key::Bool(b),
            Key::Int(i) => Key::Int(i),
            Key::Uint(u) => Key::Uint(u),
            Key::Float(f) => Key::Float(f),
            Key::Str(s) => Key::Str(std::borrow::Cow::Owned(s.into_owned())),
            Key::Compound(s) => Key::Compound(s),
        }
    }
}
