//! Walks over objects guided by the patch schema: the field set of an
//! object, the comparison of two objects, merging an applied configuration
//! into a live object and removing fields.

use serde_json::{Map, Value};

use super::ApplyError;
use super::fieldpath::{FieldSet, Path, PathElement, Subtree, canonical, path_string};
use crate::patch::{ListType, MAX_DEPTH, PatchSchema};

/// Where a value sits: the schema of its type and, for lists, their type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx {
    pub schema: PatchSchema,
    /// `None` for non-lists and for lists the table does not know (atomic).
    pub list_type: Option<ListType>,
}

impl Ctx {
    /// The root of an object of the kind described by `schema`.
    pub fn root(schema: PatchSchema) -> Ctx {
        Ctx {
            schema,
            list_type: None,
        }
    }

    pub(super) fn field(&self, name: &str) -> Ctx {
        let (info, schema) = self.schema.child(name);
        Ctx {
            schema,
            list_type: info.list_type,
        }
    }

    pub(super) fn element(&self) -> Ctx {
        Ctx {
            schema: self.schema,
            list_type: None,
        }
    }

    /// True for lists whose elements are owned one by one.
    pub(super) fn itemized(&self) -> bool {
        matches!(
            self.list_type,
            Some(ListType::Set) | Some(ListType::Map { .. })
        )
    }
}

/// The path element of one element of an itemized list.
pub(crate) fn item_element(
    ctx: &Ctx,
    item: &Value,
    path: &[PathElement],
) -> Result<PathElement, ApplyError> {
    match ctx.list_type {
        Some(ListType::Map { keys }) => {
            let obj = item.as_object().ok_or_else(|| {
                ApplyError::Invalid(format!(
                    "{}: expected an object in an associative list",
                    path_string(path)
                ))
            })?;
            let mut key = Map::new();
            for k in keys {
                match obj.get(*k) {
                    Some(v) if !v.is_null() => {
                        key.insert((*k).to_owned(), v.clone());
                    }
                    // Upstream's schema defaults this key field.
                    _ if *k == "protocol" => {
                        key.insert((*k).to_owned(), Value::String("TCP".into()));
                    }
                    _ => {}
                }
            }
            if key.is_empty() {
                return Err(ApplyError::Invalid(format!(
                    "{}: associative list with keys has an element that omits key field {:?} (and doesn't have default value)",
                    path_string(path),
                    keys.first().copied().unwrap_or_default()
                )));
            }
            Ok(PathElement::Key(canonical(&Value::Object(key))))
        }
        Some(ListType::Set) => {
            if item.is_object() || item.is_array() {
                return Err(ApplyError::Invalid(format!(
                    "{}: expected a scalar in a set",
                    path_string(path)
                )));
            }
            Ok(PathElement::Value(canonical(item)))
        }
        _ => Err(ApplyError::Invalid(format!(
            "{}: list is not associative",
            path_string(path)
        ))),
    }
}

fn too_deep(path: &[PathElement]) -> Result<(), ApplyError> {
    if path.len() > MAX_DEPTH {
        return Err(ApplyError::Invalid(format!(
            "{}: object nests more than {MAX_DEPTH} levels",
            path_string(path)
        )));
    }
    Ok(())
}

/// The fields set in `v` (upstream's `ToFieldSet`): every scalar, null,
/// empty object and atomic list is a leaf; elements of itemized lists are
/// members themselves as well as their fields.
pub(crate) fn field_set(v: &Value, ctx: Ctx) -> Result<FieldSet, ApplyError> {
    let mut set = FieldSet::new();
    let mut path = Vec::new();
    collect(v, ctx, &mut path, &mut set)?;
    Ok(set)
}

fn collect(v: &Value, ctx: Ctx, path: &mut Path, set: &mut FieldSet) -> Result<(), ApplyError> {
    too_deep(path)?;
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                path.push(PathElement::Field(k.clone()));
                collect(child, ctx.field(k), path, set)?;
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() && ctx.itemized() => {
            let mut seen = std::collections::BTreeSet::new();
            for item in items {
                let pe = item_element(&ctx, item, path)?;
                if !seen.insert(pe.clone()) {
                    return Err(ApplyError::Invalid(format!(
                        "{}: duplicate entries for key {pe}",
                        path_string(path)
                    )));
                }
                path.push(pe);
                set.insert(path);
                if let Value::Object(m) = item {
                    let ectx = ctx.element();
                    for (k, child) in m {
                        path.push(PathElement::Field(k.clone()));
                        collect(child, ectx.field(k), path, set)?;
                        path.pop();
                    }
                }
                path.pop();
            }
        }
        _ => set.insert(path),
    }
    Ok(())
}

/// What changed from one object to another (upstream's `Comparison`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// Fields present in both with different values.
    pub modified: FieldSet,
    /// Fields only in the new object.
    pub added: FieldSet,
    /// Fields only in the old object.
    pub removed: FieldSet,
}

/// Compares `old` and `new` field by field. As upstream, every node only
/// on one side counts, containers (maps, list elements) included.
pub(crate) fn compare(old: &Value, new: &Value, ctx: Ctx) -> Result<Comparison, ApplyError> {
    let mut out = Comparison::default();
    let mut path = Vec::new();
    compare_at(old, new, ctx, &mut path, &mut out)?;
    Ok(out)
}

/// Every node of `v` at `path` and below: the path itself, fields,
/// elements of itemized lists (elements that cannot be keyed are skipped).
fn nodes(v: &Value, ctx: Ctx, path: &mut Path, into: &mut FieldSet) -> Result<(), ApplyError> {
    let sub = subtree(v, ctx, path)?;
    into.cursor(path).graft(sub);
    Ok(())
}

/// [`nodes`] as a subtree built from the leaves up: each node is made once
/// and its children added in order, none looked up from the root.
fn subtree(v: &Value, ctx: Ctx, path: &mut Path) -> Result<Subtree, ApplyError> {
    too_deep(path)?;
    let mut node = Subtree::member();
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                path.push(PathElement::Field(k.clone()));
                let below = subtree(child, ctx.field(k), path)?;
                if let Some(pe) = path.pop() {
                    node.add(pe, below);
                }
            }
        }
        Value::Array(items) if ctx.itemized() => {
            for item in items {
                if let Ok(pe) = item_element(&ctx, item, path) {
                    path.push(pe);
                    let below = subtree(item, ctx.element(), path)?;
                    if let Some(pe) = path.pop() {
                        node.add(pe, below);
                    }
                }
            }
        }
        _ => {}
    }
    Ok(node)
}

/// The itemized elements of a list by path element (first occurrence wins).
fn keyed<'v>(items: &'v [Value], ctx: &Ctx, path: &[PathElement]) -> Vec<(PathElement, &'v Value)> {
    let mut seen = std::collections::BTreeSet::new();
    items
        .iter()
        .filter_map(|item| item_element(ctx, item, path).ok().map(|pe| (pe, item)))
        .filter(|(pe, _)| seen.insert(pe.clone()))
        .collect()
}

fn compare_at(
    old: &Value,
    new: &Value,
    ctx: Ctx,
    path: &mut Path,
    out: &mut Comparison,
) -> Result<(), ApplyError> {
    too_deep(path)?;
    match (old, new) {
        (Value::Object(a), Value::Object(b)) if !(a.is_empty() && b.is_empty()) => {
            for (k, av) in a {
                let bv = b.get(k);
                // An equal member adds nothing; skipping it spares walking
                // the untouched bulk of an object (a status write's spec).
                // Its depth was checked when it was first written.
                if bv == Some(av) {
                    continue;
                }
                path.push(PathElement::Field(k.clone()));
                match bv {
                    Some(bv) => compare_at(av, bv, ctx.field(k), path, out)?,
                    None => nodes(av, ctx.field(k), path, &mut out.removed)?,
                }
                path.pop();
            }
            for (k, bv) in b {
                if !a.contains_key(k) {
                    path.push(PathElement::Field(k.clone()));
                    nodes(bv, ctx.field(k), path, &mut out.added)?;
                    path.pop();
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if ctx.itemized() && !(a.is_empty() && b.is_empty()) => {
            let ka = keyed(a, &ctx, path);
            let kb = keyed(b, &ctx, path);
            let ectx = ctx.element();
            for (pe, av) in &ka {
                let bv = kb.iter().find(|(p, _)| p == pe).map(|(_, bv)| *bv);
                if bv == Some(*av) {
                    continue;
                }
                path.push(pe.clone());
                match bv {
                    Some(bv) => compare_at(av, bv, ectx, path, out)?,
                    None => nodes(av, ectx, path, &mut out.removed)?,
                }
                path.pop();
            }
            for (pe, bv) in &kb {
                if !ka.iter().any(|(p, _)| p == pe) {
                    path.push(pe.clone());
                    nodes(bv, ectx, path, &mut out.added)?;
                    path.pop();
                }
            }
        }
        _ if old == new => {}
        _ => {
            // A leaf changed, or a value changed shape: the path itself is
            // modified, what was below it removed, what is below it added.
            out.modified.insert(path);
            let mut gone = FieldSet::new();
            nodes(old, ctx, path, &mut gone)?;
            let mut came = FieldSet::new();
            nodes(new, ctx, path, &mut came)?;
            let mut this = FieldSet::new();
            this.insert(path);
            let mut removed = gone.difference(&came);
            removed.subtract(&this);
            let mut added = came;
            added.subtract(&gone);
            added.subtract(&this);
            out.removed.merge(&removed);
            out.added.merge(&added);
        }
    }
    Ok(())
}

/// The containers Go's zero value of a kind holds (where the kind has
/// them): writing into one makes the writer own what is in it, not the
/// container.
pub(crate) const ZERO_STRUCTS: &[&[&str]] = &[
    &["metadata"],
    &["spec"],
    &["status"],
    &["spec", "template"],
    &["spec", "template", "metadata"],
    &["spec", "template", "spec"],
    &["spec", "strategy"],
    &["spec", "updateStrategy"],
    &["spec", "jobTemplate"],
    &["spec", "jobTemplate", "spec"],
    &["spec", "jobTemplate", "spec", "template"],
    &["spec", "jobTemplate", "spec", "template", "metadata"],
    &["spec", "jobTemplate", "spec", "template", "spec"],
];

/// `base` (the old side of a comparison) with the [`ZERO_STRUCTS`] `new`
/// has added, as upstream compares with the kind's zero value.
pub(crate) fn with_zero_structs(mut base: Value, new: &Value) -> Value {
    if !base.is_object() {
        return base;
    }
    for path in ZERO_STRUCTS {
        let present = path
            .iter()
            .try_fold(new, |v, k| v.get(*k))
            .is_some_and(Value::is_object);
        if !present {
            continue;
        }
        let mut cur = &mut base;
        for k in *path {
            let Some(map) = cur.as_object_mut() else {
                break;
            };
            cur = map
                .entry((*k).to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
        }
    }
    base
}

/// Merges an applied configuration into a live object: objects merge field
/// by field, itemized lists element by element (live order first, new
/// elements after), everything else is replaced. A `null` in the
/// configuration removes the field.
pub(crate) fn merge(
    live: &Value,
    config: &Value,
    ctx: Ctx,
    depth: usize,
) -> Result<Value, ApplyError> {
    if depth > MAX_DEPTH {
        return Err(ApplyError::Invalid(format!(
            "the applied configuration nests more than {MAX_DEPTH} levels"
        )));
    }
    match (live, config) {
        (Value::Object(l), Value::Object(c)) => {
            let mut out = l.clone();
            for (k, cv) in c {
                if cv.is_null() {
                    out.remove(k);
                    continue;
                }
                let merged = match l.get(k) {
                    Some(lv) => merge(lv, cv, ctx.field(k), depth + 1)?,
                    None => cv.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Ok(Value::Object(out))
        }
        (Value::Array(l), Value::Array(c)) if ctx.itemized() => {
            let path: Path = Vec::new();
            let mut out = Vec::with_capacity(l.len().max(c.len()));
            let config_keys: Vec<Option<PathElement>> = c
                .iter()
                .map(|item| item_element(&ctx, item, &path).ok())
                .collect();
            let mut used = vec![false; c.len()];
            for item in l {
                let pe = item_element(&ctx, item, &path).ok();
                let matched = pe
                    .as_ref()
                    .and_then(|pe| config_keys.iter().position(|k| k.as_ref() == Some(pe)));
                match matched {
                    Some(j) if !used[j] => {
                        used[j] = true;
                        out.push(merge(item, &c[j], ctx.element(), depth + 1)?);
                    }
                    _ => out.push(item.clone()),
                }
            }
            for (j, item) in c.iter().enumerate() {
                if !used[j] {
                    out.push(item.clone());
                }
            }
            Ok(Value::Array(out))
        }
        _ => Ok(config.clone()),
    }
}

/// Removes the field or list element at `path` from `obj`, if present; an
/// object or list left empty by that goes too, as upstream drops them.
pub(crate) fn remove(obj: &mut Value, path: &[PathElement]) {
    let mut len = path.len();
    while len > 0 && remove_one(obj, &path[..len]) {
        len -= 1;
        let emptied = lookup(obj, &path[..len]).is_some_and(|v| match v {
            Value::Object(m) => m.is_empty(),
            Value::Array(items) => items.is_empty(),
            _ => false,
        });
        if !emptied {
            break;
        }
    }
}

fn lookup<'v>(obj: &'v Value, path: &[PathElement]) -> Option<&'v Value> {
    let mut cur = obj;
    for pe in path {
        cur = match (pe, cur) {
            (PathElement::Field(name), Value::Object(m)) => m.get(name)?,
            (PathElement::Index(i), Value::Array(items)) => items.get(*i)?,
            (pe, Value::Array(items)) => items.iter().find(|item| element_matches(pe, item))?,
            _ => return None,
        };
    }
    Some(cur)
}

fn remove_one(obj: &mut Value, path: &[PathElement]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut cur = obj;
    for pe in parents {
        let next = match (pe, cur) {
            (PathElement::Field(name), Value::Object(m)) => m.get_mut(name),
            (PathElement::Index(i), Value::Array(items)) => items.get_mut(*i),
            (pe, Value::Array(items)) => items.iter_mut().find(|item| element_matches(pe, item)),
            _ => None,
        };
        match next {
            Some(next) => cur = next,
            None => return false,
        }
    }
    match (last, cur) {
        (PathElement::Field(name), Value::Object(m)) => m.remove(name).is_some(),
        (pe, Value::Array(items)) => {
            let before = items.len();
            let mut index = 0;
            items.retain(|item| {
                let keep = match pe {
                    PathElement::Index(i) => *i != index,
                    pe => !element_matches(pe, item),
                };
                index += 1;
                keep
            });
            items.len() != before
        }
        _ => false,
    }
}

fn element_matches(pe: &PathElement, item: &Value) -> bool {
    match pe {
        PathElement::Key(key) => {
            let Ok(Value::Object(key)) = serde_json::from_str::<Value>(key) else {
                return false;
            };
            key.iter().all(|(k, v)| match item.get(k) {
                Some(iv) if !iv.is_null() => iv == v,
                _ => k == "protocol" && v == "TCP",
            })
        }
        PathElement::Value(v) => canonical(item) == *v,
        _ => false,
    }
}
