//! The proxy's table kept as parts: a fixed base plus one [`Fragment`] per
//! Service, so that a change to one Service is rendered as a transaction
//! touching only what that Service contributes.
//!
//! Fragments may share chains (the pick chains every ClusterIP Service of
//! one protocol and endpoint count uses) and set elements (two Services
//! with a common endpoint add the same hairpin element). Each shared name or
//! element remembers its owners; the first owner in Service order provides
//! what is installed, and it goes when the last owner does. Rendering the
//! whole table and rendering a change therefore agree on every object: the
//! table after a change is exactly the table built from scratch.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use skiff_sys::nft::{SetElements, SetType};

use crate::model::ServiceKey;
use crate::ruleset::{
    Builder, Chain, Element, Ruleset, Set, render_full_from, set_name, write_chain_decl,
    write_elements, write_rules, write_set_decl,
};

/// What one Service adds to the table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fragment {
    /// Chains, its own and shared ones (rendered identically by each user).
    pub chains: BTreeMap<String, Chain>,
    /// Sets it declares (its own, such as affinity sets), with their elements.
    pub sets: BTreeMap<String, Set>,
    /// Elements it adds to the base's sets and maps: set → key → value.
    pub elements: BTreeMap<String, BTreeMap<String, Option<String>>>,
}

impl Fragment {
    /// Whether it adds nothing.
    pub fn is_empty(&self) -> bool {
        self.chains.is_empty() && self.sets.is_empty() && self.elements.is_empty()
    }

    /// Adds an element to one of its own sets, or else to the base's set of
    /// that name. The first value for a key stays.
    pub fn element(&mut self, set: &str, key: String, value: Option<String>) {
        let elements = match self.sets.get_mut(set) {
            Some(own) => &mut own.elements,
            None => self.elements.entry(set.to_string()).or_default(),
        };
        elements.entry(key).or_insert(value);
    }
}

/// A fragment declares sets of its own (affinity sets) and chains, its own
/// and shared ones.
impl Builder for Fragment {
    fn chains_mut(&mut self) -> &mut BTreeMap<String, Chain> {
        &mut self.chains
    }

    fn sets_mut(&mut self) -> &mut BTreeMap<String, Set> {
        &mut self.sets
    }
}

/// Adds `fragment` to `rs` where nothing of that name or key is yet: the
/// table [`Table`] keeps, when fragments are added in Service order.
pub fn merge(rs: &mut Ruleset, fragment: Fragment) {
    for (name, chain) in fragment.chains {
        rs.chains.entry(name).or_insert(chain);
    }
    for (name, set) in fragment.sets {
        rs.sets.entry(name).or_insert(set);
    }
    for (set, elements) in fragment.elements {
        if let Some(target) = rs.sets.get_mut(&set) {
            for (k, v) in elements {
                target.elements.entry(k).or_insert(v);
            }
        }
    }
}

/// Owners of a shared name, in Service order (the first one's version is
/// installed).
type Owners = Vec<ServiceKey>;

fn own(owners: &mut Owners, key: &ServiceKey) {
    if let Err(at) = owners.binary_search(key) {
        owners.insert(at, key.clone());
    }
}

/// Removes `key`; true when nobody owns the name any more.
fn disown(owners: &mut Owners, key: &ServiceKey) -> bool {
    if let Ok(at) = owners.binary_search(key) {
        owners.remove(at);
    }
    owners.is_empty()
}

/// What the objects touched by a batch of changes looked like before it
/// (`None`: absent), recorded on first touch.
#[derive(Debug, Default)]
pub struct Delta {
    chains: BTreeMap<String, Option<Chain>>,
    sets: BTreeMap<String, Option<Set>>,
    elements: BTreeMap<String, BTreeMap<String, Option<Option<String>>>>,
    base: Option<Ruleset>,
}

impl Delta {
    /// Whether nothing was touched.
    pub fn is_empty(&self) -> bool {
        self.chains.is_empty()
            && self.sets.is_empty()
            && self.elements.is_empty()
            && self.base.is_none()
    }
}

/// The table as base plus per-Service fragments (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct Table {
    base: Ruleset,
    fragments: BTreeMap<ServiceKey, Fragment>,
    chain_owners: HashMap<String, Owners>,
    set_owners: HashMap<String, Owners>,
    element_owners: HashMap<String, HashMap<String, Owners>>,
}

impl Table {
    /// A table holding only `base`.
    pub fn new(base: Ruleset) -> Self {
        Self {
            base,
            ..Self::default()
        }
    }

    /// Names of the base's chains.
    pub fn base_chains(&self) -> impl Iterator<Item = &str> {
        self.base.chains.keys().map(String::as_str)
    }

    /// Replaces the base (its chains and sets keep their names; only rules
    /// and elements change), recording the old one in `delta`.
    pub fn set_base(&mut self, base: Ruleset, delta: &mut Delta) {
        if base == self.base {
            return;
        }
        let old = std::mem::replace(&mut self.base, base);
        delta.base.get_or_insert(old);
    }

    /// The installed version of chain `name`.
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.base.chains.get(name).or_else(|| {
            let owner = self.chain_owners.get(name)?.first()?;
            self.fragments.get(owner)?.chains.get(name)
        })
    }

    /// The installed version of a set a fragment declares.
    fn own_set(&self, name: &str) -> Option<&Set> {
        let owner = self.set_owners.get(name)?.first()?;
        self.fragments.get(owner)?.sets.get(name)
    }

    /// The installed value of a fragment's element of a base set.
    fn element(&self, set: &str, key: &str) -> Option<&Option<String>> {
        if let Some(value) = self.base.sets.get(set).and_then(|s| s.elements.get(key)) {
            return Some(value);
        }
        let owner = self.element_owners.get(set)?.get(key)?.first()?;
        self.fragments.get(owner)?.elements.get(set)?.get(key)
    }

    /// Sets `key`'s fragment (`None` or an empty fragment removes it),
    /// recording in `delta` (unless the whole table will be rendered) what
    /// the touched objects were before.
    pub fn replace(
        &mut self,
        key: &ServiceKey,
        fragment: Option<Fragment>,
        delta: Option<&mut Delta>,
    ) {
        let fragment = fragment.filter(|f| !f.is_empty());
        if self.fragments.get(key) == fragment.as_ref() {
            return;
        }
        if let Some(delta) = delta {
            self.record(key, fragment.as_ref(), delta);
        }
        self.forget(key);
        let Some(new) = fragment else {
            return;
        };
        for name in new.chains.keys() {
            own(self.chain_owners.entry(name.clone()).or_default(), key);
        }
        for name in new.sets.keys() {
            own(self.set_owners.entry(name.clone()).or_default(), key);
        }
        for (set, elements) in &new.elements {
            let owners = self.element_owners.entry(set.clone()).or_default();
            for k in elements.keys() {
                own(owners.entry(k.clone()).or_default(), key);
            }
        }
        self.fragments.insert(key.clone(), new);
    }

    /// Records in `delta` the objects `key`'s current and `new` fragments
    /// touch, as they are now (first touch only).
    fn record(&self, key: &ServiceKey, new: Option<&Fragment>, delta: &mut Delta) {
        for f in self.fragments.get(key).into_iter().chain(new) {
            for name in f.chains.keys() {
                if !delta.chains.contains_key(name) {
                    let before = self.chain(name).cloned();
                    delta.chains.insert(name.clone(), before);
                }
            }
            for name in f.sets.keys() {
                if !delta.sets.contains_key(name) {
                    let before = self.own_set(name).cloned();
                    delta.sets.insert(name.clone(), before);
                }
            }
            for (set, elements) in &f.elements {
                for k in elements.keys() {
                    let recorded = delta.elements.get(set).is_some_and(|e| e.contains_key(k));
                    if !recorded {
                        let before = self.element(set, k).cloned();
                        delta
                            .elements
                            .entry(set.clone())
                            .or_default()
                            .insert(k.clone(), before);
                    }
                }
            }
        }
    }

    /// Drops `key`'s fragment and its ownerships.
    fn forget(&mut self, key: &ServiceKey) {
        let Some(old) = self.fragments.remove(key) else {
            return;
        };
        for name in old.chains.keys() {
            release(&mut self.chain_owners, name, key);
        }
        for name in old.sets.keys() {
            release(&mut self.set_owners, name, key);
        }
        for (set, elements) in &old.elements {
            if let Some(owners) = self.element_owners.get_mut(set) {
                for k in elements.keys() {
                    release(owners, k, key);
                }
            }
        }
    }

    /// Whether `key` provides what is installed of an object `owners` own.
    fn provides(owners: Option<&Owners>, key: &ServiceKey) -> bool {
        owners.and_then(|o| o.first()) == Some(key)
    }

    /// The script that replaces the table whole (as
    /// [`Ruleset::render_full`] of [`Table::to_ruleset`], without copying).
    pub fn render_full(&self) -> String {
        let (sets, chains, elements, size) = self.parts();
        render_full_from(&self.base.table, &sets, &chains, &elements, size, "")
    }

    /// The whole table in three steps that together replace what the kernel
    /// holds (`installed`) without a moment of a partial ruleset: see
    /// [`Staged`]. Sets carry `suffix`, which none of `installed`'s may
    /// (the caller picks it); `load` tells which sets' elements go over
    /// netlink, and their types.
    pub fn render_staged(
        &self,
        suffix: &str,
        installed: &Installed,
        load: impl Fn(&str) -> Option<SetType>,
    ) -> Staged<'_> {
        let t = &self.base.table;
        let (sets, chains, elements, size) = self.parts();
        let mut prepare = String::with_capacity(size / 4);
        let _ = writeln!(prepare, "add table ip {t}");
        for (name, set) in &sets {
            write_set_decl(&mut prepare, t, &set_name(name, suffix), set);
        }
        for (name, chain) in &chains {
            write_chain_decl(&mut prepare, t, name, chain);
        }
        let mut loads = Vec::new();
        for (name, items) in &elements {
            let physical = set_name(name, suffix);
            match load(name) {
                Some(set_type) => loads.push(SetElements {
                    set: physical.into_owned(),
                    set_type,
                    elements: items
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_deref()))
                        .collect(),
                }),
                None => write_elements(&mut prepare, t, "add", &physical, items.iter().copied()),
            }
        }
        let mut switch = String::new();
        // Whatever refers to the old sets and chains goes first: rules
        // (flushed), then the sets (verdict maps refer to chains), then the
        // chains the new table has no more.
        for name in &installed.chains {
            let _ = writeln!(switch, "flush chain ip {t} {name}");
        }
        for (kind, name) in &installed.sets {
            let _ = writeln!(switch, "delete {kind} ip {t} {name}");
        }
        let keep: BTreeSet<&str> = chains.iter().map(|(n, _)| *n).collect();
        for name in &installed.chains {
            if !keep.contains(name.as_str()) {
                let _ = writeln!(switch, "delete chain ip {t} {name}");
            }
        }
        for (name, chain) in &chains {
            write_rules(&mut switch, t, name, chain, suffix);
        }
        Staged {
            prepare,
            loads,
            switch,
        }
    }

    /// The whole table's sets, chains and elements by set (the base's first,
    /// then each object from its first owner), and an estimate of its
    /// script's size.
    #[allow(clippy::type_complexity)]
    fn parts(
        &self,
    ) -> (
        Vec<(&str, &Set)>,
        Vec<(&str, &Chain)>,
        Vec<(&str, Vec<Element<'_>>)>,
        usize,
    ) {
        let mut sets: Vec<(&str, &Set)> = self
            .base
            .sets
            .iter()
            .map(|(n, s)| (n.as_str(), s))
            .collect();
        let mut chains: Vec<(&str, &Chain)> = self
            .base
            .chains
            .iter()
            .map(|(n, c)| (n.as_str(), c))
            .collect();
        let mut elements: BTreeMap<&str, Vec<Element<'_>>> = self
            .base
            .sets
            .iter()
            .map(|(n, s)| (n.as_str(), s.elements.iter().collect()))
            .collect();
        let mut size = 256;
        for (key, f) in &self.fragments {
            for (name, chain) in &f.chains {
                if Self::provides(self.chain_owners.get(name), key)
                    && !self.base.chains.contains_key(name)
                {
                    chains.push((name, chain));
                }
            }
            for (name, set) in &f.sets {
                if Self::provides(self.set_owners.get(name), key)
                    && !self.base.sets.contains_key(name)
                {
                    sets.push((name, set));
                }
            }
            for (set, items) in &f.elements {
                let owners = self.element_owners.get(set);
                let Some(target) = elements.get_mut(set.as_str()) else {
                    continue;
                };
                for item in items {
                    if Self::provides(owners.and_then(|o| o.get(item.0)), key) {
                        size += item.0.len() + item.1.as_ref().map_or(0, String::len) + 5;
                        target.push(item);
                    }
                }
            }
        }
        let elements: Vec<(&str, Vec<Element<'_>>)> = elements.into_iter().collect();
        (sets, chains, elements, size * 11 / 10)
    }

    /// The whole table as one [`Ruleset`].
    pub fn to_ruleset(&self) -> Ruleset {
        let mut rs = self.base.clone();
        for (key, f) in &self.fragments {
            let first = |owners: Option<&Owners>| Self::provides(owners, key);
            for (name, chain) in &f.chains {
                if first(self.chain_owners.get(name)) && !rs.chains.contains_key(name) {
                    rs.chains.insert(name.clone(), chain.clone());
                }
            }
            for (name, set) in &f.sets {
                if first(self.set_owners.get(name)) && !rs.sets.contains_key(name) {
                    rs.sets.insert(name.clone(), set.clone());
                }
            }
            for (set, elements) in &f.elements {
                let owners = self.element_owners.get(set);
                let Some(target) = rs.sets.get_mut(set) else {
                    continue;
                };
                for (k, v) in elements {
                    if first(owners.and_then(|o| o.get(k))) {
                        target
                            .elements
                            .entry(k.clone())
                            .or_insert_with(|| v.clone());
                    }
                }
            }
        }
        rs
    }

    /// Names of every set and map of the table.
    pub fn set_names(&self) -> impl Iterator<Item = &str> {
        self.base
            .sets
            .keys()
            .chain(self.set_owners.keys())
            .map(String::as_str)
    }

    /// Elements in the whole table (shared ones counted once per owner).
    pub fn element_count(&self) -> usize {
        self.base.element_count()
            + self
                .fragments
                .values()
                .map(|f| {
                    f.elements.values().map(BTreeMap::len).sum::<usize>()
                        + f.sets.values().map(|s| s.elements.len()).sum::<usize>()
                })
                .sum::<usize>()
    }

    /// Rules in the whole table.
    pub fn rule_count(&self) -> usize {
        self.base.rule_count()
            + self
                .chain_owners
                .keys()
                .filter(|name| !self.base.chains.contains_key(*name))
                .filter_map(|name| self.chain(name))
                .map(|c| c.rules.len())
                .sum::<usize>()
    }

    /// The script that brings the kernel from the table as it was before
    /// the changes recorded in `delta` to the table now, touching only what
    /// they touched. `Ok(None)`: nothing to do; `Err(())`: the change cannot
    /// be made in place (a set's declaration changed), render the whole
    /// table instead.
    /// Sets carry `suffix` after their names in the kernel (see
    /// [`Table::render_staged`]).
    #[allow(clippy::result_unit_err)]
    pub fn render_delta(&self, delta: &Delta, suffix: &str) -> Result<Option<String>, ()> {
        let mut before = Ruleset::new(&self.base.table);
        let mut after = Ruleset::new(&self.base.table);
        for (name, old) in &delta.chains {
            if let Some(old) = old {
                before.chains.insert(name.clone(), old.clone());
            }
            if let Some(new) = self.chain(name) {
                after.chains.insert(name.clone(), new.clone());
            }
        }
        for (name, old) in &delta.sets {
            if let Some(old) = old {
                before.sets.insert(name.clone(), old.clone());
            }
            if let Some(new) = self.own_set(name) {
                after.sets.insert(name.clone(), new.clone());
            }
        }
        for (set, elements) in &delta.elements {
            // Elements go only into the base's sets, which both sides have.
            let Some(base_set) = self.base.sets.get(set) else {
                continue;
            };
            let empty = || Set {
                elements: BTreeMap::new(),
                ..base_set.clone()
            };
            let b = before.sets.entry(set.clone()).or_insert_with(empty);
            for (k, old) in elements {
                if let Some(old) = old {
                    b.elements.insert(k.clone(), old.clone());
                }
            }
            let a = after.sets.entry(set.clone()).or_insert_with(empty);
            for k in elements.keys() {
                if let Some(new) = self.element(set, k) {
                    a.elements.insert(k.clone(), new.clone());
                }
            }
        }
        if !after.diffable_from(&before) {
            return Err(());
        }
        let mut script = after.render_diff_in(&before, suffix).unwrap_or_default();
        if let Some(old_base) = &delta.base {
            if !self.base.diffable_from(old_base) {
                return Err(());
            }
            // The base's chains and sets keep their names, so its diff
            // neither declares nor deletes anything the fragments use.
            script.push_str(
                &self
                    .base
                    .render_diff_in(old_base, suffix)
                    .unwrap_or_default(),
            );
        }
        Ok((!script.is_empty()).then_some(script))
    }
}

fn release(owners: &mut HashMap<String, Owners>, name: &str, key: &ServiceKey) {
    if let Some(o) = owners.get_mut(name)
        && disown(o, key)
    {
        owners.remove(name);
    }
}

/// The chains and sets a table holds in the kernel, by name (from a terse
/// listing: no elements, which are costly to fetch).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installed {
    /// Chain names.
    pub chains: Vec<String>,
    /// `(set or map, name)`.
    pub sets: Vec<(String, String)>,
}

impl Installed {
    /// What the `nft` listing of `list chains`, `list sets` and `list maps`
    /// (any of them, in any order) shows of table `ip table`.
    pub fn parse(listing: &str, table: &str) -> Self {
        let header = format!("table ip {table} {{");
        let mut inside = false;
        let mut out = Self::default();
        for line in listing.lines().map(str::trim) {
            if line.starts_with("table ") {
                inside = line == header;
                continue;
            }
            if !inside {
                continue;
            }
            let Some((kind, rest)) = line.split_once(' ') else {
                continue;
            };
            let Some(name) = rest.strip_suffix('{') else {
                continue;
            };
            let name = name.trim().trim_matches('"').to_string();
            match kind {
                "chain" => out.chains.push(name),
                "set" | "map" => out.sets.push((kind.to_string(), name)),
                _ => {}
            }
        }
        out.chains.sort();
        out.chains.dedup();
        out.sets.sort();
        out.sets.dedup();
        out
    }

    /// Whether a set of this name is installed.
    pub fn has_set(&self, name: &str) -> bool {
        self.sets.iter().any(|(_, n)| n == name)
    }

    /// Whether a chain of this name is installed.
    pub fn has_chain(&self, name: &str) -> bool {
        self.chains.iter().any(|n| n == name)
    }
}

/// A full replacement in three steps, for tables whose elements are too
/// many for nft to parse quickly. `prepare` (an nft script) declares the
/// table's sets under fresh names and every chain it needs (existing ones
/// are left as they are; new ones are empty and unreferenced); `loads` then
/// fills the fresh sets (over netlink); `switch` (an nft script, one
/// transaction) rewrites every chain's rules to use the fresh sets and
/// deletes the old sets and the chains no longer needed. Until `switch`
/// the old ruleset serves unchanged, and after it the new one does whole.
#[derive(Debug)]
pub struct Staged<'a> {
    /// Declares the fresh sets and the chains, and adds the elements not
    /// loaded.
    pub prepare: String,
    /// Elements of the fresh sets, for [`skiff_sys::nft::Nftables::add_elements`].
    pub loads: Vec<SetElements<'a>>,
    /// Switches to the fresh sets and removes what is left of the old table.
    pub switch: String,
}
