//! The fields a create sets, written straight into `FieldsV1`.
//!
//! Every create without managedFields of its own records the same thing:
//! the writer owns everything the new object holds beyond the kind's zero
//! value, less what no manager owns. [`super::update`] gets that by
//! comparing the zero value with the object into a [`super::FieldSet`],
//! filtering it and encoding it; this walks the object once and builds the
//! encoding directly, with no path elements cloned, no set built and no
//! untracked subtree (type, identity metadata, a main resource's status)
//! visited beyond a depth check. Creates are most writes (every pod, every
//! event), so this is the path they take; anything it does not cover (an
//! object nesting near the depth limit) goes the general way, which also
//! words the error. The tests check the two agree.

use serde_json::{Map, Value};

use super::walk::{Ctx, ZERO_STRUCTS, item_element};
use crate::patch::MAX_DEPTH;

/// Whether a manager can own the field `first`, or the member `second` of
/// it (`None` for the field itself or a list element under it).
pub(crate) type Tracks<'a> = &'a dyn Fn(&str, Option<&str>) -> bool;

/// The `FieldsV1` of what creating `obj` sets, owned as `tracks` allows
/// (an empty object when nothing is); `None` when the object is too deep
/// for this path to decide.
pub(crate) fn fields_v1(obj: &Map<String, Value>, ctx: Ctx, tracks: Tracks<'_>) -> Option<Value> {
    // The top level is a zero struct too: never owned itself.
    Some(Value::Object(in_zero_struct(obj, ctx, &[], tracks)?))
}

/// True when the member `name` of the zero struct at `parent` is one too
/// (Go's zero value of every kind holding it holds it).
fn is_zero_struct(parent: &[&str], name: &str) -> bool {
    ZERO_STRUCTS.iter().any(|p| {
        p.split_last()
            .is_some_and(|(last, above)| *last == name && above == parent)
    })
}

/// What the zero struct at `path` holds, as owned: not the struct, but
/// each member, itself a zero struct or owned whole. On the top two levels
/// `tracks` decides what may be owned (below them, everything may).
fn in_zero_struct(
    m: &Map<String, Value>,
    ctx: Ctx,
    path: &[&str],
    tracks: Tracks<'_>,
) -> Option<Map<String, Value>> {
    let mut node = Map::new();
    for (c, cv) in m {
        if let [first] = path {
            // Set aside by the comparison, and never owned.
            if *first == "metadata" && matches!(c.as_str(), "managedFields" | "resourceVersion") {
                continue;
            }
            if !tracks(first, Some(c)) {
                within_depth(cv, 2)?;
                continue;
            }
        }
        let cctx = ctx.field(c);
        let below = match cv {
            Value::Object(cm) if is_zero_struct(path, c) => {
                let mut below_path = path.to_vec();
                below_path.push(c);
                let inside = in_zero_struct(cm, cctx, &below_path, tracks)?;
                (!inside.is_empty()).then_some(Value::Object(inside))
            }
            _ if path.is_empty() => tracked_member(cv, cctx, c, tracks)?,
            _ => Some(member(cv, cctx, path.len() + 1)?),
        };
        if let Some(below) = below {
            node.insert(field_key(c), below);
        }
    }
    Some(node)
}

/// The top-level field `name` with value `v`, owned whole as far as
/// `tracks` allows: itself, and each member one level down.
fn tracked_member(v: &Value, ctx: Ctx, name: &str, tracks: Tracks<'_>) -> Option<Option<Value>> {
    let mut node = Map::new();
    for_each_child(v, ctx, |key, second, child, cctx| {
        if tracks(name, second) {
            add(&mut node, key, member(child, cctx, 2)?);
        } else {
            within_depth(child, 2)?;
        }
        Some(())
    })?;
    let owned = tracks(name, None);
    if owned && !node.is_empty() {
        node.insert(".".into(), Value::Object(Map::new()));
    }
    Some((owned || !node.is_empty()).then_some(Value::Object(node)))
}

/// `v`, at `depth`, owned with everything below it: `{}` for a leaf, else
/// `"."` and its members.
fn member(v: &Value, ctx: Ctx, depth: usize) -> Option<Value> {
    if depth > MAX_DEPTH {
        return None;
    }
    let mut node = Map::new();
    for_each_child(v, ctx, |key, _, child, cctx| {
        add(&mut node, key, member(child, cctx, depth + 1)?);
        Some(())
    })?;
    if !node.is_empty() {
        node.insert(".".into(), Value::Object(Map::new()));
    }
    Some(Value::Object(node))
}

/// Calls `f` with the `FieldsV1` key, the field name (`None` for a list
/// element), the value and the context of each member of `v`: fields of
/// an object, elements of an itemized list that have a key (as the
/// comparison, elements without one are passed over).
fn for_each_child<F>(v: &Value, ctx: Ctx, mut f: F) -> Option<()>
where
    F: FnMut(String, Option<&str>, &Value, Ctx) -> Option<()>,
{
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                f(field_key(k), Some(k), child, ctx.field(k))?;
            }
        }
        Value::Array(items) if ctx.itemized() => {
            for item in items {
                if let Ok(pe) = item_element(&ctx, item, &[]) {
                    f(pe.encode(), None, item, ctx.element())?;
                }
            }
        }
        _ => {}
    }
    Some(())
}

/// Puts the member `child` at `key`; a repeated list key owns the union of
/// its elements.
fn add(node: &mut Map<String, Value>, key: String, child: Value) {
    match node.get_mut(&key) {
        Some(Value::Object(mine)) => {
            if let Value::Object(theirs) = child {
                union(mine, theirs);
            }
        }
        _ => {
            node.insert(key, child);
        }
    }
}

/// Merges the member `theirs` into the member `mine`.
fn union(mine: &mut Map<String, Value>, theirs: Map<String, Value>) {
    for (k, v) in theirs {
        if k == "." {
            continue;
        }
        add(mine, k, v);
    }
    if !mine.is_empty() && !mine.contains_key(".") {
        mine.insert(".".into(), Value::Object(Map::new()));
    }
}

/// `Some` when nothing in `v`, at `depth`, nests beyond [`MAX_DEPTH`]
/// (more strictly than the comparison, which only descends into objects
/// and itemized lists: past that, the general path decides).
fn within_depth(v: &Value, depth: usize) -> Option<()> {
    if depth > MAX_DEPTH {
        return None;
    }
    match v {
        Value::Object(m) => m.values().try_for_each(|c| within_depth(c, depth + 1)),
        Value::Array(items) => items.iter().try_for_each(|c| within_depth(c, depth + 1)),
        _ => Some(()),
    }
}

fn field_key(name: &str) -> String {
    let mut key = String::with_capacity(name.len() + 2);
    key.push_str("f:");
    key.push_str(name);
    key
}
