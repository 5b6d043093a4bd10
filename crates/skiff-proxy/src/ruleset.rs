//! An nftables table as data, and the `nft -f` scripts that install it.
//!
//! A [`Ruleset`] is the whole content of one table: chains with their rules,
//! sets and maps with their elements. It renders either as a full
//! replacement (declare, delete and recreate the table in one transaction) or
//! as a diff against the ruleset that is known to be installed (only chains,
//! elements and sets that changed are touched). Both are single `nft -f`
//! scripts, so either all of it applies or nothing does.
//!
//! The flat command syntax (`add chain`, `add rule`, `add element`) is used
//! throughout: nft 1.0 is picky about rules inside `{ }` blocks and flat
//! commands are also what a diff needs.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One chain: an optional base-chain declaration and its rules, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chain {
    /// `type nat hook prerouting priority dstnat; policy accept;` for base
    /// chains; `None` for regular chains.
    pub hook: Option<String>,
    /// Rule texts, in order.
    pub rules: Vec<String>,
}

/// A set or map: its declaration and, unless dynamic, its elements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Set {
    /// `map` or `set`.
    pub kind: SetKind,
    /// Declaration body, e.g. `type ipv4_addr; flags dynamic,timeout; timeout 10800s;`.
    pub decl: String,
    /// Element texts: `key` for sets, `key : value` for maps. Keys are unique.
    pub elements: BTreeMap<String, Option<String>>,
    /// Filled by the data path (affinity): a diff neither flushes nor
    /// rewrites it, so its state survives syncs.
    pub dynamic: bool,
}

/// Whether a [`Set`] is a plain set or a map.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SetKind {
    /// `set`.
    #[default]
    Set,
    /// `map` (elements carry values).
    Map,
}

impl SetKind {
    pub(crate) fn keyword(self) -> &'static str {
        match self {
            SetKind::Set => "set",
            SetKind::Map => "map",
        }
    }
}

/// Chains and sets being built: what a [`Ruleset`] and a Service's
/// [`Fragment`](crate::table::Fragment) have in common.
pub trait Builder {
    /// The chains by name.
    fn chains_mut(&mut self) -> &mut BTreeMap<String, Chain>;
    /// The sets and maps by name.
    fn sets_mut(&mut self) -> &mut BTreeMap<String, Set>;

    /// The chain `name`, created empty when missing.
    fn chain(&mut self, name: &str) -> &mut Chain {
        self.chains_mut().entry(name.to_string()).or_default()
    }

    /// Adds `rule` to the chain `name` (created when missing).
    fn rule(&mut self, name: &str, rule: impl Into<String>) {
        self.chain(name).rules.push(rule.into());
    }

    /// Declares a set or map (replacing an earlier declaration of that name).
    fn declare_set(&mut self, name: &str, kind: SetKind, decl: &str, dynamic: bool) {
        self.sets_mut().insert(
            name.to_string(),
            Set {
                kind,
                decl: decl.to_string(),
                elements: BTreeMap::new(),
                dynamic,
            },
        );
    }
}

impl Builder for Ruleset {
    fn chains_mut(&mut self) -> &mut BTreeMap<String, Chain> {
        &mut self.chains
    }

    fn sets_mut(&mut self) -> &mut BTreeMap<String, Set> {
        &mut self.sets
    }
}

/// The whole content of one `ip` family table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// Table name (family `ip`).
    pub table: String,
    /// Chains by name.
    pub chains: BTreeMap<String, Chain>,
    /// Sets and maps by name.
    pub sets: BTreeMap<String, Set>,
}

impl Ruleset {
    /// An empty ruleset of `table`.
    pub fn new(table: &str) -> Self {
        Self {
            table: table.to_string(),
            ..Self::default()
        }
    }

    /// Adds an element to a declared set or map. Returns false (and adds
    /// nothing) when the set is unknown or already has that key.
    pub fn element(&mut self, set: &str, key: String, value: Option<String>) -> bool {
        match self.sets.get_mut(set) {
            Some(s) if !s.elements.contains_key(&key) => {
                s.elements.insert(key, value);
                true
            }
            _ => false,
        }
    }

    /// Number of rules in all chains.
    pub fn rule_count(&self) -> usize {
        self.chains.values().map(|c| c.rules.len()).sum()
    }

    /// Number of elements in all non-dynamic sets and maps.
    pub fn element_count(&self) -> usize {
        self.sets.values().map(|s| s.elements.len()).sum()
    }

    /// The script that replaces whatever the table holds with this ruleset.
    pub fn render_full(&self) -> String {
        let sets: Vec<(&str, &Set)> = self.sets.iter().map(|(n, s)| (n.as_str(), s)).collect();
        let chains: Vec<(&str, &Chain)> =
            self.chains.iter().map(|(n, c)| (n.as_str(), c)).collect();
        let elements: Vec<(&str, Vec<Element<'_>>)> = self
            .sets
            .iter()
            .map(|(n, s)| (n.as_str(), s.elements.iter().collect()))
            .collect();
        render_full_from(
            &self.table,
            &sets,
            &chains,
            &elements,
            self.estimated_size(),
            "",
        )
    }

    /// The script that turns `previous` (installed) into this ruleset,
    /// touching only what changed. `None` when nothing changed. Needs a full
    /// render instead when a set's declaration changed (see
    /// [`Ruleset::diffable_from`]).
    pub fn render_diff(&self, previous: &Ruleset) -> Option<String> {
        self.render_diff_in(previous, "")
    }

    /// [`Ruleset::render_diff`] for a table whose sets carry `suffix` after
    /// their names (see [`set_name`]).
    pub fn render_diff_in(&self, previous: &Ruleset, suffix: &str) -> Option<String> {
        let t = &self.table;
        let mut out = String::new();
        // 1. Elements that go or change value: removed first, so no map still
        //    points at a chain deleted below.
        for (name, old) in &previous.sets {
            if old.dynamic {
                continue;
            }
            let new = self.sets.get(name);
            let gone: Vec<&String> = old
                .elements
                .iter()
                .filter(|(k, v)| new.is_none_or(|n| n.elements.get(*k) != Some(*v)))
                .map(|(k, _)| k)
                .collect();
            if new.is_some() && !gone.is_empty() {
                write_keys(&mut out, t, &set_name(name, suffix), &gone);
            }
        }
        // 2. New sets and chains.
        for (name, set) in &self.sets {
            if !previous.sets.contains_key(name) {
                write_set_decl(&mut out, t, &set_name(name, suffix), set);
            }
        }
        for (name, chain) in &self.chains {
            if !previous.chains.contains_key(name) {
                write_chain_decl(&mut out, t, name, chain);
            }
        }
        // 3. Rules of new and changed chains.
        for (name, chain) in &self.chains {
            match previous.chains.get(name) {
                Some(old) if old == chain => {}
                Some(_) => {
                    let _ = writeln!(out, "flush chain ip {t} {name}");
                    write_rules(&mut out, t, name, chain, suffix);
                }
                None => write_rules(&mut out, t, name, chain, suffix),
            }
        }
        // 4. Elements that are new or changed value.
        for (name, set) in &self.sets {
            if set.dynamic {
                continue;
            }
            let old = previous.sets.get(name);
            let added = set
                .elements
                .iter()
                .filter(|(k, v)| old.is_none_or(|o| o.elements.get(*k) != Some(*v)));
            write_elements(&mut out, t, "add", &set_name(name, suffix), added);
        }
        // 5. Chains and sets that are gone: nothing refers to them any more
        //    (their referrers were rewritten or removed above).
        for (name, chain) in &previous.chains {
            if !self.chains.contains_key(name) && !chain.rules.is_empty() {
                let _ = writeln!(out, "flush chain ip {t} {name}");
            }
        }
        // Maps go before chains: their elements may point at those chains.
        for (name, set) in &previous.sets {
            if !self.sets.contains_key(name) {
                let name = set_name(name, suffix);
                let _ = writeln!(out, "delete {} ip {t} {name}", set.kind.keyword());
            }
        }
        for name in previous.chains.keys() {
            if !self.chains.contains_key(name) {
                let _ = writeln!(out, "delete chain ip {t} {name}");
            }
        }
        (!out.is_empty()).then_some(out)
    }

    /// Whether [`Ruleset::render_diff`] can go from `previous` to this
    /// ruleset: same table, and every set present in both has the same
    /// declaration (nft cannot change a set's type or timeout in place).
    pub fn diffable_from(&self, previous: &Ruleset) -> bool {
        self.table == previous.table
            && self.sets.iter().all(|(name, set)| {
                previous
                    .sets
                    .get(name)
                    .is_none_or(|old| old.decl == set.decl && old.kind == set.kind)
            })
            && self.chains.iter().all(|(name, chain)| {
                previous
                    .chains
                    .get(name)
                    .is_none_or(|old| old.hook == chain.hook)
            })
    }

    /// The script that brings the kernel from `installed` (the ruleset
    /// known to be in place, `None` when unknown) to this ruleset, and
    /// whether it replaces the table whole: a diff when one can be made, a
    /// full replacement otherwise. `None` when nothing changed.
    pub fn script_from(&self, installed: Option<&Ruleset>) -> Option<(String, bool)> {
        match installed {
            Some(old) if self.diffable_from(old) => {
                self.render_diff(old).map(|script| (script, false))
            }
            _ => Some((self.render_full(), true)),
        }
    }

    /// The script that removes the table; harmless when it does not exist.
    pub fn render_delete(table: &str) -> String {
        format!("add table ip {table}\ndelete table ip {table}\n")
    }

    fn estimated_size(&self) -> usize {
        let rules: usize = self
            .chains
            .iter()
            .map(|(n, c)| {
                (n.len() + 24) * (c.rules.len() + 1)
                    + c.rules.iter().map(String::len).sum::<usize>()
            })
            .sum();
        let elements: usize = self
            .sets
            .values()
            .map(|s| {
                s.elements
                    .iter()
                    .map(|(k, v)| k.len() + v.as_ref().map_or(0, |v| v.len() + 3) + 2)
                    .sum::<usize>()
            })
            .sum();
        rules + elements + 256
    }
}

/// One element: key and value (maps) or `None` (sets).
pub(crate) type Element<'a> = (&'a String, &'a Option<String>);

/// The name set `name` has in the kernel when the table's sets carry
/// `suffix`: a full sync that loads elements before switching to them fills
/// freshly named sets while the old ones still serve (see
/// [`crate::table::Table::render_staged`]).
pub fn set_name<'a>(name: &'a str, suffix: &str) -> Cow<'a, str> {
    if suffix.is_empty() {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(format!("{name}{suffix}"))
    }
}

/// `rule` with every set it names (`@name`) carrying `suffix`.
pub(crate) fn rule_text<'a>(rule: &'a str, suffix: &str) -> Cow<'a, str> {
    if suffix.is_empty() || !rule.contains('@') {
        return Cow::Borrowed(rule);
    }
    let mut out = String::with_capacity(rule.len() + 8);
    let mut rest = rule;
    while let Some(at) = rest.find('@') {
        let (before, name) = rest.split_at(at);
        out.push_str(before);
        let end = name
            .find(|c: char| c.is_whitespace() || matches!(c, ',' | '}' | ';'))
            .unwrap_or(name.len());
        out.push_str(&name[..end]);
        out.push_str(suffix);
        rest = &name[end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The script that replaces whatever `table` holds with these sets,
/// chains and elements (see [`Ruleset::render_full`]).
pub(crate) fn render_full_from(
    t: &str,
    sets: &[(&str, &Set)],
    chains: &[(&str, &Chain)],
    elements: &[(&str, Vec<Element<'_>>)],
    capacity: usize,
    suffix: &str,
) -> String {
    let mut out = String::with_capacity(capacity);
    // Declaring first makes the delete succeed when the table is absent.
    let _ = writeln!(out, "add table ip {t}");
    let _ = writeln!(out, "delete table ip {t}");
    let _ = writeln!(out, "add table ip {t}");
    for (name, set) in sets {
        write_set_decl(&mut out, t, &set_name(name, suffix), set);
    }
    for (name, chain) in chains {
        write_chain_decl(&mut out, t, name, chain);
    }
    for (name, chain) in chains {
        write_rules(&mut out, t, name, chain, suffix);
    }
    for (name, elements) in elements {
        write_elements(
            &mut out,
            t,
            "add",
            &set_name(name, suffix),
            elements.iter().copied(),
        );
    }
    out
}

pub(crate) fn write_set_decl(out: &mut String, table: &str, name: &str, set: &Set) {
    let _ = writeln!(
        out,
        "add {} ip {table} {name} {{ {} }}",
        set.kind.keyword(),
        set.decl
    );
}

pub(crate) fn write_chain_decl(out: &mut String, table: &str, name: &str, chain: &Chain) {
    match &chain.hook {
        Some(hook) => {
            let _ = writeln!(out, "add chain ip {table} {name} {{ {hook} }}");
        }
        None => {
            let _ = writeln!(out, "add chain ip {table} {name}");
        }
    }
}

pub(crate) fn write_rules(out: &mut String, table: &str, name: &str, chain: &Chain, suffix: &str) {
    for rule in &chain.rules {
        let rule = rule_text(rule, suffix);
        let _ = writeln!(out, "add rule ip {table} {name} {rule}");
    }
}

pub(crate) fn write_elements<'a>(
    out: &mut String,
    table: &str,
    verb: &str,
    name: &str,
    elements: impl Iterator<Item = Element<'a>>,
) {
    // Batched: one command per 1,000 elements keeps nft's parser fast
    // without building one enormous line.
    let mut n = 0;
    for (key, value) in elements {
        if n % 1000 == 0 {
            if n > 0 {
                out.push_str(" }\n");
            }
            let _ = write!(out, "{verb} element ip {table} {name} {{ ");
        } else {
            out.push_str(", ");
        }
        out.push_str(key);
        if let Some(value) = value {
            out.push_str(" : ");
            out.push_str(value);
        }
        n += 1;
    }
    if n > 0 {
        out.push_str(" }\n");
    }
}

fn write_keys(out: &mut String, table: &str, set: &str, keys: &[&String]) {
    for chunk in keys.chunks(1000) {
        let joined: Vec<&str> = chunk.iter().map(|k| k.as_str()).collect();
        let _ = writeln!(
            out,
            "delete element ip {table} {set} {{ {} }}",
            joined.join(", ")
        );
    }
}
