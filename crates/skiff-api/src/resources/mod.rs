//! The resource table: one static description of every served resource, which
//! drives the router, discovery, OpenAPI, RBAC and Table output.
//!
//! Facts (short names, categories, verbs, subresources) follow what a v1.33
//! kube-apiserver lists in discovery.

mod table;

pub use table::{GROUPS, RESOURCES};

/// Where Events are stored: core `events` and events.k8s.io `events` are
/// two views of one set of objects.
pub const EVENTS_STORAGE_PREFIX: &str = "/registry/events/";

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

/// Whether objects live in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Objects live in a namespace.
    Namespaced,
    /// Objects are cluster-wide.
    Cluster,
}

/// A Kubernetes API verb as listed in discovery. The variants are in
/// alphabetical order, so a sorted list of verbs sorts like upstream's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verb {
    /// `create` (POST).
    Create,
    /// `delete` (DELETE of one object).
    Delete,
    /// `deletecollection` (DELETE of a collection).
    DeleteCollection,
    /// `get` (GET of one object).
    Get,
    /// `list` (GET of a collection).
    List,
    /// `patch` (PATCH).
    Patch,
    /// `update` (PUT).
    Update,
    /// `watch` (GET with `watch=true`).
    Watch,
}

impl Verb {
    /// The verb as written in discovery and RBAC rules.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Create => "create",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Patch => "patch",
            Verb::Update => "update",
            Verb::Watch => "watch",
        }
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A subresource such as `pods/status` or `deployments/scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubresourceInfo {
    /// The subresource name (`status`, `scale`, `log`, ...).
    pub name: &'static str,
    /// The kind of the object it takes or returns (`Pod`, `Scale`, `PodExecOptions`).
    pub kind: &'static str,
    /// `(group, version)` of `kind` when it lives outside the parent's group
    /// version (`policy/v1` Eviction, `autoscaling/v1` Scale,
    /// `authentication.k8s.io/v1` TokenRequest); upstream then sets `group` and
    /// `version` on the discovery entry.
    pub kind_group_version: Option<(&'static str, &'static str)>,
    /// Verbs, sorted.
    pub verbs: &'static [Verb],
}

/// One resource of one group version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; empty for the core group.
    pub group: &'static str,
    /// API version (`v1`).
    pub version: &'static str,
    /// Kind of one object (`Pod`).
    pub kind: &'static str,
    /// Kind of a list (`PodList`).
    pub list_kind: &'static str,
    /// Plural resource name, as in URLs (`pods`).
    pub plural: &'static str,
    /// Singular name (`pod`).
    pub singular: &'static str,
    /// Short names for kubectl (`po`).
    pub short_names: &'static [&'static str],
    /// Categories (`all`).
    pub categories: &'static [&'static str],
    /// Namespaced or cluster-scoped.
    pub scope: Scope,
    /// Verbs, sorted, exactly as upstream lists them in discovery.
    pub verbs: &'static [Verb],
    /// Subresources, sorted by name.
    pub subresources: &'static [SubresourceInfo],
    /// Storage key prefix of the objects, ending in `/` (`/registry/pods/`).
    pub storage_prefix: &'static str,
    /// `(group, plural)` of the resource whose stored objects these are, when two
    /// APIs are representations of one set of objects: events.k8s.io/v1 `events`
    /// reads and writes core `events` (a conversion is needed between them).
    pub shares_storage_with: Option<(&'static str, &'static str)>,
}

impl ResourceInfo {
    /// True for namespaced resources.
    pub fn namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }

    /// `group/version`, or `version` for the core group (`apps/v1`, `v1`).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural` or `plural.group`, upstream's qualified resource (`deployments.apps`).
    pub fn qualified_resource(&self) -> String {
        crate::status::qualified_resource(self.group, self.plural)
    }

    /// True when `verb` is served on the resource itself.
    pub fn supports(&self, verb: Verb) -> bool {
        self.verbs.contains(&verb)
    }

    /// The subresource named `name`.
    pub fn subresource(&self, name: &str) -> Option<&'static SubresourceInfo> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// Storage prefix for listing or watching: all objects with `None` (or for a
    /// cluster-scoped resource), one namespace's objects with `Some(ns)`. Ends in `/`.
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        match (self.scope, namespace) {
            (Scope::Namespaced, Some(ns)) => format!("{}{ns}/", self.storage_prefix),
            _ => self.storage_prefix.to_owned(),
        }
    }

    /// Storage key of one object: `{prefix}{namespace}/{name}` for namespaced
    /// resources, `{prefix}{name}` for cluster-scoped ones (whose `namespace` is
    /// ignored). A namespaced resource given `None` gets an empty namespace
    /// segment, which never collides with a real object's key.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match self.scope {
            Scope::Namespaced => {
                format!("{}{}/{name}", self.storage_prefix, namespace.unwrap_or(""))
            }
            Scope::Cluster => format!("{}{name}", self.storage_prefix),
        }
    }
}

/// One API group with the versions served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupInfo {
    /// Group name; empty for the core group (served under `/api`).
    pub name: &'static str,
    /// Served versions, preferred first.
    pub versions: &'static [&'static str],
    /// Upstream's group priority: discovery lists groups by descending priority.
    pub priority: u32,
}

impl GroupInfo {
    /// The preferred (first) version.
    pub fn preferred_version(&self) -> &'static str {
        self.versions.first().copied().unwrap_or("v1")
    }
}

/// `RESOURCES` keyed by (group, version, name), first entry winning as a
/// scan of the table would; the router looks up every request.
type Index = HashMap<(&'static str, &'static str, &'static str), &'static ResourceInfo>;

fn index_by(name: fn(&'static ResourceInfo) -> &'static str) -> Index {
    let mut index = Index::with_capacity(RESOURCES.len());
    for r in RESOURCES {
        index.entry((r.group, r.version, name(r))).or_insert(r);
    }
    index
}

/// The resource with this group, version and plural name.
pub fn by_gvr(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    static BY_GVR: LazyLock<Index> = LazyLock::new(|| index_by(|r| r.plural));
    BY_GVR.get(&(group, version, plural)).copied()
}

/// The resource whose objects have this group, version and kind.
pub fn by_gvk(group: &str, version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    static BY_GVK: LazyLock<Index> = LazyLock::new(|| index_by(|r| r.kind));
    BY_GVK.get(&(group, version, kind)).copied()
}

/// The resource for an object's `apiVersion` (`apps/v1`, `v1`) and `kind`.
pub fn by_api_version_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    by_gvk(group, version, kind)
}

/// Every resource of one group version, in table order (sorted by plural).
pub fn for_group_version<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static ResourceInfo> + 'a {
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

/// The group named `name` (`""` for core).
pub fn group(name: &str) -> Option<&'static GroupInfo> {
    GROUPS.iter().find(|g| g.name == name)
}

/// Every non-core group, in discovery order (by descending priority).
pub fn api_groups() -> impl Iterator<Item = &'static GroupInfo> {
    GROUPS.iter().filter(|g| !g.name.is_empty())
}

fn group_rank(group: &str) -> u32 {
    self::group(group).map_or(0, |g| g.priority)
}

/// Resolves what a user typed, as kubectl does: a plural, singular or short name
/// (case-insensitive), optionally qualified as `name.group` or
/// `name.version.group`. Several resources may match (`events` is core and
/// events.k8s.io); they come back in discovery priority order, so the first one
/// is what kubectl picks.
pub fn resolve(input: &str) -> Vec<&'static ResourceInfo> {
    let input = input.to_ascii_lowercase();
    let names_match =
        |r: &ResourceInfo, n: &str| r.plural == n || r.singular == n || r.short_names.contains(&n);
    let mut found: Vec<&'static ResourceInfo> = RESOURCES
        .iter()
        .filter(|r| names_match(r, &input))
        .collect();
    if found.is_empty() {
        // `name.group` or `name.version.group`; group names contain dots, so try
        // every split point.
        for (i, _) in input.match_indices('.') {
            let (name, rest) = (&input[..i], &input[i + 1..]);
            for r in RESOURCES.iter().filter(|r| names_match(r, name)) {
                let versioned = rest
                    .split_once('.')
                    .is_some_and(|(v, g)| v == r.version && g == r.group);
                if (rest == r.group || versioned) && !found.contains(&r) {
                    found.push(r);
                }
            }
        }
    }
    found.sort_by_key(|r| std::cmp::Reverse(group_rank(r.group)));
    found
}

/// Every resource in a category (`all`), in discovery priority order.
pub fn in_category(category: &str) -> Vec<&'static ResourceInfo> {
    let mut found: Vec<&'static ResourceInfo> = RESOURCES
        .iter()
        .filter(|r| r.categories.contains(&category))
        .collect();
    found.sort_by_key(|r| std::cmp::Reverse(group_rank(r.group)));
    found
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
