//! Field paths and field sets as server-side apply tracks them
//! (`sigs.k8s.io/structured-merge-diff/v4/fieldpath`), and their `FieldsV1`
//! JSON encoding (`f:name`, `k:{"name":"c"}`, `v:"x"`, `i:0`, `.`).

use std::collections::{BTreeMap, btree_map};
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
        // Concatenated rather than formatted: managedFields encode one key
        // per field of every object written.
        let (prefix, text) = match self {
            PathElement::Field(name) => ("f:", name.as_str()),
            PathElement::Key(key) => ("k:", key.as_str()),
            PathElement::Value(v) => ("v:", v.as_str()),
            PathElement::Index(i) => return format!("i:{i}"),
        };
        let mut out = String::with_capacity(prefix.len() + text.len());
        out.push_str(prefix);
        out.push_str(text);
        out
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
///
/// Kept as a tree of path elements (as upstream's `SetNodeMap`), so paths
/// share their prefixes: set operations walk the two trees once, and a
/// path is never stored or copied whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    /// The root; never a member itself. Nodes that are neither members nor
    /// have members below them are pruned, so equal sets are equal trees.
    root: Node,
}

/// A place in a [`FieldSet`] to add members at and below, without walking
/// from the root for each (see [`FieldSet::cursor`]).
#[derive(Debug)]
pub(crate) struct Cursor<'a> {
    node: &'a mut Node,
    /// The root is never a member.
    root: bool,
}

impl<'a> Cursor<'a> {
    /// Makes this path a member.
    pub(crate) fn mark(&mut self) {
        if !self.root {
            self.node.member = true;
        }
    }

    /// The child at `pe`, created if missing.
    pub(crate) fn child(self, pe: &PathElement) -> Cursor<'a> {
        let children = &mut self.node.children;
        if !children.contains_key(pe) {
            children.insert(pe.clone(), Node::default());
        }
        match children.get_mut(pe) {
            Some(node) => Cursor { node, root: false },
            // Inserted just above.
            None => unreachable!("a child inserted a moment ago is missing"),
        }
    }

    /// Adds `sub` here: this node becomes it, or takes in its members
    /// (the root still never a member).
    pub(crate) fn graft(self, sub: Subtree) {
        let mut node = sub.0;
        if self.root {
            node.member = false;
        }
        if self.node.is_empty() {
            *self.node = node;
        } else {
            self.node.merge_owned(node);
        }
    }
}

/// Part of a set built from the leaves up before it joins the set (see
/// [`Cursor::graft`]): its nodes are all members, made once each, and
/// their path elements moved in rather than copied.
#[derive(Debug)]
pub(crate) struct Subtree(Node);

impl Subtree {
    /// A member with nothing below it yet.
    pub(crate) fn member() -> Subtree {
        Subtree(Node {
            member: true,
            children: BTreeMap::new(),
        })
    }

    /// Adds `child` below at `pe`, merged with what an equal element
    /// added before.
    pub(crate) fn add(&mut self, pe: PathElement, child: Subtree) {
        self.0.add_child(pe, child.0);
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Node {
    member: bool,
    children: BTreeMap<PathElement, Node>,
}

impl Node {
    fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    fn count(&self) -> usize {
        usize::from(self.member) + self.children.values().map(Node::count).sum::<usize>()
    }

    fn merge(&mut self, other: &Node) {
        self.member |= other.member;
        for (pe, theirs) in &other.children {
            match self.children.get_mut(pe) {
                Some(mine) => mine.merge(theirs),
                None => {
                    self.children.insert(pe.clone(), theirs.clone());
                }
            }
        }
    }

    /// [`Node::merge`] taking `other` whole: nothing copied.
    fn merge_owned(&mut self, other: Node) {
        self.member |= other.member;
        for (pe, theirs) in other.children {
            self.add_child(pe, theirs);
        }
    }

    /// Puts `child` at `pe`, merged into the child already there.
    fn add_child(&mut self, pe: PathElement, child: Node) {
        match self.children.entry(pe) {
            btree_map::Entry::Vacant(e) => {
                e.insert(child);
            }
            btree_map::Entry::Occupied(mut e) => e.get_mut().merge_owned(child),
        }
    }

    fn subtract(&mut self, other: &Node) {
        if other.member {
            self.member = false;
        }
        if other.children.is_empty() {
            return;
        }
        self.children
            .retain(|pe, mine| match other.children.get(pe) {
                Some(theirs) => {
                    mine.subtract(theirs);
                    !mine.is_empty()
                }
                None => true,
            });
    }

    fn intersect(&self, other: &Node) -> Node {
        let mut out = Node {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (pe, mine) in &self.children {
            if let Some(theirs) = other.children.get(pe) {
                let both = mine.intersect(theirs);
                if !both.is_empty() {
                    out.children.insert(pe.clone(), both);
                }
            }
        }
        out
    }

    /// Drops members for which `keep` is false (`path` is this node's).
    /// `keep` judges a path by its first `depth` (at least one) elements
    /// only, so a node that deep decides for everything below it.
    fn retain(&mut self, path: &mut Path, depth: usize, keep: &impl Fn(&Path) -> bool) {
        if path.len() >= depth {
            if !keep(path) {
                self.member = false;
                self.children.clear();
            }
            return;
        }
        if self.member && !keep(path) {
            self.member = false;
        }
        let mut emptied = Vec::new();
        for (pe, child) in self.children.iter_mut() {
            path.push(pe.clone());
            child.retain(path, depth, keep);
            path.pop();
            if child.is_empty() {
                emptied.push(pe.clone());
            }
        }
        for pe in emptied {
            self.children.remove(&pe);
        }
    }

    /// Every member at and below this node (at `path`), in order.
    fn collect(&self, path: &mut Path, out: &mut Vec<Path>) {
        if self.member {
            out.push(path.clone());
        }
        for (pe, child) in &self.children {
            path.push(pe.clone());
            child.collect(path, out);
            path.pop();
        }
    }

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

impl FieldSet {
    /// The empty set.
    pub fn new() -> FieldSet {
        FieldSet::default()
    }

    /// Adds `path` (the empty root path is never a member).
    pub fn insert(&mut self, path: &[PathElement]) {
        if path.is_empty() {
            return;
        }
        self.cursor(path).mark();
    }

    /// The node at `path`, created (not marked) if missing; a path element
    /// is copied only where a node is new. Whoever takes a cursor marks
    /// something at or below it, so the set stays pruned.
    pub(crate) fn cursor(&mut self, path: &[PathElement]) -> Cursor<'_> {
        let mut at = Cursor {
            node: &mut self.root,
            root: true,
        };
        for pe in path {
            at = at.child(pe);
        }
        at
    }

    fn node(&self, path: &[PathElement]) -> Option<&Node> {
        path.iter()
            .try_fold(&self.root, |node, pe| node.children.get(pe))
    }

    /// True when `path` is a member.
    pub fn contains(&self, path: &[PathElement]) -> bool {
        !path.is_empty() && self.node(path).is_some_and(|n| n.member)
    }

    /// True when a member is `path` or lies below it.
    pub fn has_prefix(&self, path: &[PathElement]) -> bool {
        // Pruning keeps only nodes with a member at or below them.
        self.node(path).is_some_and(|n| !n.is_empty())
    }

    /// True when the set has no members.
    pub fn is_empty(&self) -> bool {
        self.root.children.is_empty()
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.root.count()
    }

    /// The members, in upstream's order (a path before the paths below it).
    pub fn iter(&self) -> std::vec::IntoIter<Path> {
        let mut out = Vec::new();
        self.root.collect(&mut Vec::new(), &mut out);
        out.into_iter()
    }

    /// Adds every member of `other`.
    pub fn merge(&mut self, other: &FieldSet) {
        self.root.merge(&other.root);
    }

    /// Removes every member of `other`.
    pub fn subtract(&mut self, other: &FieldSet) {
        self.root.subtract(&other.root);
    }

    /// `self ∪ other`.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.merge(other);
        out
    }

    /// `self − other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.subtract(other);
        out
    }

    /// `self ∩ other`.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        FieldSet {
            root: self.root.intersect(&other.root),
        }
    }

    /// Keeps the members for which `keep` holds. `keep` must judge a path
    /// by its first `depth` elements only (at least one): the walk stops
    /// there and keeps or drops whole subtrees, so a large set costs no
    /// more than its top levels.
    pub fn retain_by_prefix(&mut self, depth: usize, keep: impl Fn(&Path) -> bool) {
        self.root.retain(&mut Vec::new(), depth.max(1), &keep);
    }

    /// The members for which `keep` holds, as [`FieldSet::retain_by_prefix`].
    pub fn filter_by_prefix(&self, depth: usize, keep: impl Fn(&Path) -> bool) -> FieldSet {
        let mut out = self.clone();
        out.retain_by_prefix(depth, keep);
        out
    }

    /// The `FieldsV1` JSON of this set.
    pub fn to_fields_v1(&self) -> Value {
        self.root.encode()
    }

    /// Parses `FieldsV1` JSON.
    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, ApplyError> {
        let mut set = FieldSet::new();
        decode_node(v, &mut set.root, 0)?;
        // The root is never a member (`{}` or `{".": {}}` at the top).
        set.root.member = false;
        Ok(set)
    }
}

/// Fills `node` from its `FieldsV1` object: `{}` (a leaf) and `"."` mark a
/// member.
fn decode_node(v: &Value, node: &mut Node, depth: usize) -> Result<(), ApplyError> {
    if depth > crate::patch::MAX_DEPTH {
        return Err(ApplyError::BadManagedFields(
            "fieldsV1 nests too deeply".into(),
        ));
    }
    let map = v
        .as_object()
        .ok_or_else(|| ApplyError::BadManagedFields("fieldsV1 must be a JSON object".into()))?;
    if map.is_empty() {
        node.member = true;
        return Ok(());
    }
    for (k, child) in map {
        if k == "." {
            node.member = true;
            continue;
        }
        let pe = PathElement::decode(k)?;
        // A child is never empty: `{}` and `"."` make it a member, and
        // anything else gives it children.
        decode_node(child, node.children.entry(pe).or_default(), depth + 1)?;
    }
    Ok(())
}

impl FromIterator<Path> for FieldSet {
    fn from_iter<I: IntoIterator<Item = Path>>(iter: I) -> Self {
        let mut set = FieldSet::new();
        for p in iter {
            set.insert(&p);
        }
        set
    }
}
