//! A model of nftables state for the recording fake: applies scripts in the
//! flat command syntax (`add table`, `add chain`, `add rule`, `add map`,
//! `add element`, `flush chain`, `delete …`) the way the kernel does — one
//! transaction, all or nothing — with the kernel's refusals: deleting what
//! does not exist, a chain that still has rules or is referenced, a set a
//! rule still uses; adding an element whose key is there with another value;
//! rules and verdicts pointing at chains or sets that do not exist.

use std::collections::BTreeMap;

/// One chain: its hook declaration (base chains) and rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelChain {
    /// `{ type … hook … }` body, for base chains.
    pub hook: Option<String>,
    /// Rule texts as written.
    pub rules: Vec<String>,
}

/// One set or map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelSet {
    /// `set` or `map`.
    pub kind: String,
    /// Declaration body.
    pub decl: String,
    /// key → value (maps) or `None` (sets).
    pub elements: BTreeMap<String, Option<String>>,
}

/// One table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelTable {
    /// Chains by name.
    pub chains: BTreeMap<String, ModelChain>,
    /// Sets and maps by name.
    pub sets: BTreeMap<String, ModelSet>,
}

/// Every table, by `family name`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NftModel {
    /// Tables by `family name` (e.g. `ip skiff-proxy`).
    pub tables: BTreeMap<String, ModelTable>,
}

/// Chains a rule or verdict names after `jump`/`goto`.
fn chain_refs(text: &str) -> impl Iterator<Item = &str> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut out = Vec::new();
    for pair in words.windows(2) {
        if pair[0] == "jump" || pair[0] == "goto" {
            out.push(pair[1].trim_end_matches([',', '}', ';']));
        }
    }
    out.into_iter()
}

/// Sets a rule names with `@`.
fn set_refs(text: &str) -> impl Iterator<Item = &str> {
    text.split_whitespace()
        .filter_map(|w| w.strip_prefix('@'))
        .map(|w| w.trim_end_matches([',', '}', ';']))
}

/// `{ a, b }` → `[a, b]`; `None` when not braced.
fn braced(text: &str) -> Option<Vec<&str>> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    Some(
        inner
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect(),
    )
}

impl NftModel {
    /// An empty model.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies `script` as one transaction; on error nothing changes and the
    /// error reads like nft's.
    pub fn apply(&mut self, script: &str) -> Result<(), String> {
        let mut next = self.clone();
        for line in script.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            next.command(line)
                .map_err(|e| format!("Error: {e}\n{line}"))?;
        }
        *self = next;
        Ok(())
    }

    /// What `list chains [FAMILY]` (every chain, without rules), `list sets
    /// [FAMILY]` and `list maps [FAMILY]` (declarations, tersely: without
    /// elements) or `list chain FAMILY TABLE CHAIN` (one rule per line)
    /// print, in nft's layout; an error when there is no such chain. Several
    /// commands, one a line, print one after the other.
    pub fn list(&self, script: &str) -> Result<String, String> {
        let mut out = String::new();
        for line in script.lines().filter(|l| !l.trim().is_empty()) {
            out.push_str(&self.list_one(line)?);
        }
        Ok(out)
    }

    fn list_one(&self, script: &str) -> Result<String, String> {
        let words: Vec<&str> = script.split_whitespace().collect();
        if let ["list", kind @ ("sets" | "maps"), family @ ..] = &words[..] {
            return Ok(self.list_tables(family.first(), |t, out| {
                for (name, s) in &t.sets {
                    if format!("{}s", s.kind) == *kind {
                        let decl = s.decl.trim_matches(['{', '}', ' ']);
                        out.push_str(&format!("\t{} {name} {{\n\t\t{decl}\n\t}}\n", s.kind));
                    }
                }
            }));
        }
        if let ["list", "chains", family @ ..] = &words[..] {
            return Ok(self.list_tables(family.first(), |t, out| {
                for (name, c) in &t.chains {
                    out.push_str(&format!("\tchain {name} {{\n"));
                    if let Some(hook) = &c.hook {
                        out.push_str(&format!("\t\t{hook}\n"));
                    }
                    out.push_str("\t}\n");
                }
            }));
        }
        let ["list", "chain", family, table, chain] = words[..] else {
            return Err(format!("Error: the model cannot list {script:?}"));
        };
        let c = self
            .tables
            .get(&format!("{family} {table}"))
            .and_then(|t| t.chains.get(chain))
            .ok_or("Error: No such file or directory")?;
        let mut out = format!("table {family} {table} {{\n\tchain {chain} {{\n");
        for rule in &c.rules {
            out.push_str(&format!("\t\t{rule}\n"));
        }
        out.push_str("\t}\n}\n");
        Ok(out)
    }

    /// Every table (of `family`, when given) in nft's layout, with what
    /// `body` writes inside each.
    fn list_tables(
        &self,
        family: Option<&&str>,
        body: impl Fn(&ModelTable, &mut String),
    ) -> String {
        let mut out = String::new();
        for (key, t) in &self.tables {
            if family.is_some_and(|f| !key.starts_with(&format!("{f} "))) {
                continue;
            }
            out.push_str(&format!("table {key} {{\n"));
            body(t, &mut out);
            out.push_str("}\n");
        }
        out
    }

    fn table(&mut self, family: &str, name: &str) -> Result<&mut ModelTable, String> {
        self.tables
            .get_mut(&format!("{family} {name}"))
            .ok_or_else(|| format!("No such file or directory: table {family} {name}"))
    }

    fn command(&mut self, line: &str) -> Result<(), String> {
        let mut words = line.splitn(5, ' ');
        let verb = words.next().unwrap_or_default();
        let object = words.next().unwrap_or_default();
        let family = words.next().unwrap_or_default();
        let table = words.next().unwrap_or_default();
        let rest = words.next().unwrap_or_default();
        if object == "table" {
            let key = format!("{family} {table}");
            return match verb {
                "add" => {
                    self.tables.entry(key).or_default();
                    Ok(())
                }
                "delete" => self
                    .tables
                    .remove(&key)
                    .map(|_| ())
                    .ok_or_else(|| format!("No such file or directory: table {key}")),
                "flush" => {
                    let t = self.table(family, table)?;
                    for c in t.chains.values_mut() {
                        c.rules.clear();
                    }
                    Ok(())
                }
                _ => Err(format!("the model does not know {verb} table")),
            };
        }
        let t = self.table(family, table)?;
        let (name, body) = rest.split_once(' ').unwrap_or((rest, ""));
        match (verb, object) {
            ("add", "chain") => {
                let hook = braced(body).map(|_| body.trim().to_string());
                let c = t.chains.entry(name.to_string()).or_default();
                if c.hook.is_none() {
                    c.hook = hook;
                }
                Ok(())
            }
            ("add", "rule") => {
                for target in chain_refs(body) {
                    if !t.chains.contains_key(target) {
                        return Err(format!("No such file or directory: chain {target}"));
                    }
                }
                for set in set_refs(body) {
                    if !t.sets.contains_key(set) {
                        return Err(format!("No such file or directory: set {set}"));
                    }
                }
                let c = t
                    .chains
                    .get_mut(name)
                    .ok_or_else(|| format!("No such file or directory: chain {name}"))?;
                c.rules.push(body.to_string());
                Ok(())
            }
            ("flush", "chain") => {
                let c = t
                    .chains
                    .get_mut(name)
                    .ok_or_else(|| format!("No such file or directory: chain {name}"))?;
                c.rules.clear();
                Ok(())
            }
            ("delete", "chain") => {
                let c = t
                    .chains
                    .get(name)
                    .ok_or_else(|| format!("No such file or directory: chain {name}"))?;
                if !c.rules.is_empty() {
                    return Err(format!("Device or resource busy: chain {name} has rules"));
                }
                let in_rules = t
                    .chains
                    .values()
                    .flat_map(|c| &c.rules)
                    .any(|r| chain_refs(r).any(|x| x == name));
                let in_maps = t
                    .sets
                    .values()
                    .flat_map(|s| s.elements.values().flatten())
                    .any(|v| chain_refs(v).any(|x| x == name));
                if in_rules || in_maps {
                    return Err(format!("Device or resource busy: chain {name} is in use"));
                }
                t.chains.remove(name);
                Ok(())
            }
            ("add", "set" | "map") => {
                let decl = braced(body)
                    .map(|_| body.trim().to_string())
                    .ok_or_else(|| format!("syntax error: {object} {name} without a body"))?;
                match t.sets.get(name) {
                    Some(s) if s.decl != decl || s.kind != object => {
                        Err(format!("File exists: {object} {name} declared differently"))
                    }
                    Some(_) => Ok(()),
                    None => {
                        t.sets.insert(
                            name.to_string(),
                            ModelSet {
                                kind: object.to_string(),
                                decl,
                                elements: BTreeMap::new(),
                            },
                        );
                        Ok(())
                    }
                }
            }
            ("delete", "set" | "map") => {
                if !t.sets.contains_key(name) {
                    return Err(format!("No such file or directory: {object} {name}"));
                }
                let used = t
                    .chains
                    .values()
                    .flat_map(|c| &c.rules)
                    .any(|r| set_refs(r).any(|x| x == name));
                if used {
                    return Err(format!(
                        "Device or resource busy: {object} {name} is in use"
                    ));
                }
                t.sets.remove(name);
                Ok(())
            }
            ("add", "element") => {
                let items = braced(body)
                    .ok_or_else(|| format!("syntax error: elements of {name} not braced"))?;
                let chains: Vec<String> = t.chains.keys().cloned().collect();
                let s = t
                    .sets
                    .get_mut(name)
                    .ok_or_else(|| format!("No such file or directory: set {name}"))?;
                for item in items {
                    let (key, value) = match item.split_once(" : ") {
                        Some((k, v)) => (k.trim(), Some(v.trim().to_string())),
                        None => (item, None),
                    };
                    if (s.kind == "map") != value.is_some() {
                        return Err(format!("syntax error: element {item:?} of {name}"));
                    }
                    if let Some(target) = value
                        .as_deref()
                        .into_iter()
                        .flat_map(chain_refs)
                        .find(|c| !chains.iter().any(|x| x == c))
                    {
                        return Err(format!("No such file or directory: chain {target}"));
                    }
                    match s.elements.get(key) {
                        Some(old) if *old != value => {
                            return Err(format!("File exists: element {key} of {name}"));
                        }
                        _ => {
                            s.elements.insert(key.to_string(), value);
                        }
                    }
                }
                Ok(())
            }
            ("delete", "element") => {
                let items = braced(body)
                    .ok_or_else(|| format!("syntax error: elements of {name} not braced"))?;
                let s = t
                    .sets
                    .get_mut(name)
                    .ok_or_else(|| format!("No such file or directory: set {name}"))?;
                for key in items {
                    if s.elements.remove(key).is_none() {
                        return Err(format!(
                            "No such file or directory: element {key} of {name}"
                        ));
                    }
                }
                Ok(())
            }
            _ => Err(format!("the model does not know {verb} {object}")),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const BASE: &str = "add table ip t\nadd chain ip t a\nadd chain ip t b\nadd map ip t m { type ipv4_addr : verdict; }\nadd rule ip t a ip daddr vmap @m\nadd element ip t m { 10.0.0.1 : goto b }\n";

    #[test]
    fn refuses_what_the_kernel_refuses_and_keeps_the_state_on_error() {
        let mut m = NftModel::new();
        m.apply(BASE).unwrap();
        let before = m.clone();
        for (script, why) in [
            ("delete chain ip t b\n", "in use"),
            ("delete chain ip t a\n", "has rules"),
            ("delete map ip t m\n", "in use"),
            ("add element ip t m { 10.0.0.1 : goto a }\n", "File exists"),
            ("delete element ip t m { 10.0.0.2 }\n", "No such file"),
            ("add rule ip t a goto c\n", "chain c"),
            ("add rule ip t a ip daddr @s\n", "set s"),
            (
                "add map ip t m { type ipv4_addr : ipv4_addr; }\n",
                "declared differently",
            ),
            ("delete table ip u\n", "No such file"),
        ] {
            // The first line applies, the second fails: nothing sticks.
            let err = m
                .apply(&format!("add chain ip t fresh\n{script}"))
                .unwrap_err();
            assert!(err.contains(why), "{script}: {err}");
            assert_eq!(m, before, "{script}");
        }
        // In the right order it all works.
        m.apply("delete element ip t m { 10.0.0.1 }\nflush chain ip t a\ndelete chain ip t b\ndelete map ip t m\n")
            .unwrap();
        assert!(m.tables["ip t"].sets.is_empty());
        assert_eq!(m.tables["ip t"].chains.len(), 1);
        assert!(m.list("list chain ip t a").unwrap().contains("chain a {"));
        assert!(m.list("list chain ip t b").is_err());
        assert_eq!(
            m.list("list chains ip").unwrap(),
            "table ip t {\n\tchain a {\n\t}\n}\n"
        );
        assert_eq!(m.list("list chains inet").unwrap(), "");
        m.apply("add set ip t s { type ipv4_addr; }\nadd element ip t s { 10.0.0.1 }\n")
            .unwrap();
        assert_eq!(
            m.list("list sets ip\nlist maps ip\n").unwrap(),
            "table ip t {\n\tset s {\n\t\ttype ipv4_addr;\n\t}\n}\ntable ip t {\n}\n"
        );
    }
}
