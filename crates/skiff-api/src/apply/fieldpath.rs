//! Field paths and field sets as server-side apply tracks them
//! (`sigs.k8s.io/structured-merge-diff/v4/fieldpath`), and their `FieldsV1`
//! JSON encoding (`f:name`, `k:{"name":"c"}`, `v:"x"`, `i:0`, `.`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

use super::ApplyError;

/// One step of a field path. The variant order is upstream's sort order:
/// field names, then keys, then values, then indexes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A field of an object (`f:name`).
    Field(String),
    /// An element of a map-list, by its key fields: a JSON object with sorted
    /// keys (`k:{"containerPort":80,"protocol":"TCP"}`).
    Key(String),
    /// An element of a set, by its JSON value (`v:"finalizer"`).
    Value(String),
    /// An element of a list by position (`i:0`).
    Index(usize),
}

impl PathElement {
    /// The `FieldsV1` key of this element.
    pub fn encode(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(key) => format!("k:{key}"),
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses a `FieldsV1` key (anything but `.`).
    pub fn decode(s: &str) -> Result<PathElement, ApplyError> {
        let bad =
            |why: &str| ApplyError::BadManagedFields(format!("invalid path element {s:?}: {why}"));
        let (kind, rest) = s.split_at_checked(2).ok_or_else(|| bad("too short"))?;
        match kind {
            "f:" => Ok(PathElement::Field(rest.to_owned())),
            "k:" => {
                let v: Value = serde_json::from_str(rest).map_err(|e| bad(&e.to_string()))?;
                match v {
                    Value::Object(m) if !m.is_empty() => {
                        Ok(PathElement::Key(canonical(&Value::Object(m))))
                    }
                    _ => Err(bad("a key must be a non-empty JSON object")),
                }
            }
            "v:" => {
                let v: Value = serde_json::from_str(rest).map_err(|e| bad(&e.to_string()))?;
                Ok(PathElement::Value(canonical(&v)))
            }
            "i:" => rest
                .parse()
                .map(PathElement::Index)
                .map_err(|_| bad("an index must be a number")),
            _ => Err(bad("unknown prefix")),
        }
    }
}

impl fmt::Display for PathElement {
    /// Upstream's `PathElement.String()`: `.name`, `[k="v",n=1]`, `[=v]`, `[0]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(key) => {
                let parsed: Value = serde_json::from_str(key).unwrap_or(Value::Null);
                let parts: Vec<String> = parsed
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
                    .unwrap_or_default();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(v) => write!(f, "[={v}]"),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A path from the object's root.
pub type Path = Vec<PathElement>;

/// A path as upstream prints it: `.spec.containers[name="web"].image`.
pub fn path_string(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// JSON with object keys sorted (serde_json's map sorts, or keeps insertion
/// order, which [`sorted`] makes sorted), so equal values encode equally.
pub fn canonical(v: &Value) -> String {
    sorted(v).to_string()
}

fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let ordered: BTreeMap<&String, Value> = m.iter().map(|(k, v)| (k, sorted(v))).collect();
            Value::Object(ordered.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// A set of field paths: what one manager owns, or what changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet(BTreeSet<Path>);

impl FieldSet {
    /// The empty set.
    pub fn new() -> FieldSet {
        FieldSet::default()
    }

    /// Adds `path` (the empty root path is never a member).
    pub fn insert(&mut self, path: Path) {
        if !path.is_empty() {
            self.0.insert(path);
        }
    }

    /// True when `path` is a member.
    pub fn contains(&self, path: &[PathElement]) -> bool {
        self.0.contains(path)
    }

    /// True when a member is `path` or lies below it.
    pub fn has_prefix(&self, path: &[PathElement]) -> bool {
        self.0
            .range(path.to_vec()..)
            .next()
            .is_some_and(|p| p.starts_with(path))
    }

    /// True when the set has no members.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The members, in upstream's order.
    pub fn iter(&self) -> std::collections::btree_set::Iter<'_, Path> {
        self.0.iter()
    }

    /// `self ∪ other`.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.union(&other.0).cloned().collect())
    }

    /// `self − other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.difference(&other.0).cloned().collect())
    }

    /// `self ∩ other`.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.intersection(&other.0).cloned().collect())
    }

    /// The members for which `keep` holds.
    pub fn filter(&self, keep: impl Fn(&Path) -> bool) -> FieldSet {
        FieldSet(self.0.iter().filter(|p| keep(p)).cloned().collect())
    }

    /// The `FieldsV1` JSON of this set.
    pub fn to_fields_v1(&self) -> Value {
        let mut root = Node::default();
        for path in &self.0 {
            let mut node = &mut root;
            for pe in path {
                node = node.children.entry(pe.clone()).or_default();
            }
            node.member = true;
        }
        root.encode()
    }

    /// Parses `FieldsV1` JSON.
    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, ApplyError> {
        let mut set = FieldSet::new();
        let mut stack: Vec<(Path, &Value)> = vec![(Vec::new(), v)];
        while let Some((path, v)) = stack.pop() {
            if path.len() > crate::patch::MAX_DEPTH {
                return Err(ApplyError::BadManagedFields(
                    "fieldsV1 nests too deeply".into(),
                ));
            }
            let map = v.as_object().ok_or_else(|| {
                ApplyError::BadManagedFields("fieldsV1 must be a JSON object".into())
            })?;
            if map.is_empty() {
                set.insert(path);
                continue;
            }
            for (k, child) in map {
                if k == "." {
                    set.insert(path.clone());
                    continue;
                }
                let mut p = path.clone();
                p.push(PathElement::decode(k)?);
                stack.push((p, child));
            }
        }
        Ok(set)
    }
}

impl FromIterator<Path> for FieldSet {
    fn from_iter<I: IntoIterator<Item = Path>>(iter: I) -> Self {
        let mut set = FieldSet::new();
        for p in iter {
            set.insert(p);
        }
        set
    }
}

#[derive(Default)]
struct Node {
    member: bool,
    children: BTreeMap<PathElement, Node>,
}

impl Node {
    fn encode(&self) -> Value {
        let mut map = Map::new();
        if self.member && !self.children.is_empty() {
            map.insert(".".into(), Value::Object(Map::new()));
        }
        for (pe, child) in &self.children {
            map.insert(pe.encode(), child.encode());
        }
        Value::Object(map)
    }
}
