//! The fields a create sets, written straight into `FieldsV1` text.
//!
//! Every create without managedFields of its own records the same thing:
//! the writer owns everything the new object holds beyond the kind's zero
//! value, less what no manager owns. [`super::update`] gets that by
//! comparing the zero value with the object into a [`super::FieldSet`],
//! filtering it and encoding it; this walks the object once and writes the
//! encoding as JSON text, with no path elements cloned, no set or `Value`
//! tree built and no untracked subtree (type, identity metadata, a main
//! resource's status) visited beyond a depth check. Creates are most writes
//! (every pod, every event), so this is the path they take, and the API
//! server splices the text into the encoded object. Anything it does not
//! cover (an object nesting near the depth limit, a list repeating a key)
//! goes the general way, which also words the error. The tests check the
//! two agree.

use serde_json::{Map, Value};

use super::walk::{Ctx, ZERO_STRUCTS, item_element};
use crate::patch::MAX_DEPTH;

/// Whether a manager can own the field `first`, or the member `second` of
/// it (`None` for the field itself or a list element under it).
pub(crate) type Tracks<'a> = &'a dyn Fn(&str, Option<&str>) -> bool;

/// Writes the `FieldsV1` of what creating `obj` sets, owned as `tracks`
/// allows, to `out` (`{}` when nothing is); `None` when this path cannot
/// decide (`out` then holds a partial write).
pub(crate) fn fields_v1(
    obj: &Map<String, Value>,
    ctx: Ctx,
    tracks: Tracks<'_>,
    out: &mut Vec<u8>,
) -> Option<()> {
    // The top level is a zero struct too: never owned itself.
    out.push(b'{');
    in_zero_struct(obj, ctx, &[], tracks, out)?;
    out.push(b'}');
    Some(())
}

/// True when the member `name` of the zero struct at `parent` is one too
/// (Go's zero value of every kind holding it holds it).
fn is_zero_struct(parent: &[&str], name: &str) -> bool {
    ZERO_STRUCTS.iter().any(|p| {
        p.split_last()
            .is_some_and(|(last, above)| *last == name && above == parent)
    })
}

/// The members of an object being written: each after a comma but the
/// first, and a member that turns out empty taken back.
struct Members {
    /// Where the object's first member goes (just after its `{`).
    start: usize,
}

impl Members {
    fn open(out: &[u8]) -> Members {
        Members { start: out.len() }
    }

    /// Starts the member whose key is `prefix` and `key`; returns where it
    /// started, to take it back.
    fn key(&self, out: &mut Vec<u8>, prefix: &str, key: &str) -> usize {
        let at = out.len();
        if at > self.start {
            out.push(b',');
        }
        if is_plain(key) {
            out.push(b'"');
            out.extend_from_slice(prefix.as_bytes());
            out.extend_from_slice(key.as_bytes());
            out.push(b'"');
        } else {
            write_str(out, &format!("{prefix}{key}"));
        }
        out.push(b':');
        at
    }

    fn is_empty(&self, out: &[u8]) -> bool {
        out.len() == self.start
    }
}

/// What the zero struct at `path` holds, as owned: not the struct, but
/// each member, itself a zero struct or owned whole. On the top two levels
/// `tracks` decides what may be owned (below them, everything may). Writes
/// the members only (the caller writes the braces).
fn in_zero_struct(
    m: &Map<String, Value>,
    ctx: Ctx,
    path: &[&str],
    tracks: Tracks<'_>,
    out: &mut Vec<u8>,
) -> Option<()> {
    let members = Members::open(out.as_slice());
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
        let at = members.key(out, "f:", c);
        let written = match cv {
            Value::Object(cm) if is_zero_struct(path, c) => {
                let mut below_path = path.to_vec();
                below_path.push(c);
                out.push(b'{');
                let inside = out.len();
                in_zero_struct(cm, cctx, &below_path, tracks, out)?;
                out.push(b'}');
                out.len() > inside + 1
            }
            _ if path.is_empty() => tracked_member(cv, cctx, c, tracks, out)?,
            _ => {
                member(&[cv], cctx, path.len() + 1, out)?;
                true
            }
        };
        if !written {
            out.truncate(at);
        }
    }
    Some(())
}

/// The top-level field `name` with value `v`, owned whole as far as
/// `tracks` allows: itself, and each member one level down. False when
/// nothing of it is owned (the caller takes the member back).
fn tracked_member(
    v: &Value,
    ctx: Ctx,
    name: &str,
    tracks: Tracks<'_>,
    out: &mut Vec<u8>,
) -> Option<bool> {
    let owned = tracks(name, None);
    out.push(b'{');
    let open = out.len();
    // "." goes first; taken back below when nothing follows it.
    if owned {
        out.extend_from_slice(b"\".\":{}");
    }
    let members = Members::open(out.as_slice());
    for_each_child(&[v], ctx, out, |(prefix, key), second, group, cctx, out| {
        if tracks(name, second) {
            members.key(out, prefix, key);
            member(group, cctx, 2, out)?;
        } else {
            group.iter().try_for_each(|child| within_depth(child, 2))?;
        }
        Some(())
    })?;
    let any = !members.is_empty(out);
    if owned && !any {
        out.truncate(open);
    } else if owned {
        // The comma between "." and the first member.
        out.insert(members.start, b',');
    }
    out.push(b'}');
    Some(owned || any)
}

/// `values` (one, or the elements of a list that share a key), at
/// `depth`, owned with everything below them: `{}` for leaves, else `"."`
/// and the union of their members.
fn member(values: &[&Value], ctx: Ctx, depth: usize, out: &mut Vec<u8>) -> Option<()> {
    if depth > MAX_DEPTH {
        return None;
    }
    out.push(b'{');
    let open = out.len();
    out.extend_from_slice(b"\".\":{}");
    let members = Members::open(out.as_slice());
    for_each_child(values, ctx, out, |(prefix, key), _, group, cctx, out| {
        members.key(out, prefix, key);
        member(group, cctx, depth + 1, out)
    })?;
    if members.is_empty(out) {
        out.truncate(open);
    } else {
        out.insert(members.start, b',');
    }
    out.push(b'}');
    Some(())
}

/// Calls `f` with the `FieldsV1` key (prefix and text), the field name
/// (`None` for a list element), the values and the context of each member
/// of `values`, in the order of their keys: fields of objects, elements of
/// itemized lists that have a key (as the comparison, elements without one
/// are passed over). Members that share a key (a list repeating one, or the
/// same field of several values) come once, with all their values: the
/// comparison owns their union.
fn for_each_child<F>(values: &[&Value], ctx: Ctx, out: &mut Vec<u8>, mut f: F) -> Option<()>
where
    F: FnMut((&str, &str), Option<&str>, &[&Value], Ctx, &mut Vec<u8>) -> Option<()>,
{
    // One object: its fields are unique and in order already.
    if let [Value::Object(m)] = values {
        for (k, child) in m {
            f(("f:", k), Some(k), &[child], ctx.field(k), out)?;
        }
        return Some(());
    }
    let mut entries: Vec<(String, Option<&str>, &Value)> = Vec::new();
    for v in values {
        match v {
            Value::Object(m) => {
                entries.extend(
                    m.iter()
                        .map(|(k, c)| (format!("f:{k}"), Some(k.as_str()), c)),
                );
            }
            Value::Array(items) if ctx.itemized() => {
                entries.extend(items.iter().filter_map(|item| {
                    let pe = item_element(&ctx, item, &[]).ok()?;
                    Some((pe.encode(), None, item))
                }));
            }
            _ => {}
        }
    }
    // Stable: a repeated key's values stay in list order.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut rest = entries.as_slice();
    while let Some((key, name, _)) = rest.first() {
        let n = rest.iter().take_while(|e| e.0 == *key).count();
        let (group, after) = rest.split_at(n);
        let group: Vec<&Value> = group.iter().map(|e| e.2).collect();
        let cctx = match name {
            Some(name) => ctx.field(name),
            None => ctx.element(),
        };
        f(("", key), *name, &group, cctx, out)?;
        rest = after;
    }
    Some(())
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

/// True when `s` needs no escaping in a JSON string.
fn is_plain(s: &str) -> bool {
    s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\')
}

/// `s` as a JSON string, escaped as serde_json escapes it.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    if is_plain(s) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing a str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}
