//! Which resources a namespace's deletion must empty: upstream's
//! `ServerPreferredNamespacedResources` (each group's resources at the
//! preferred version, or at the first version serving them when the
//! preferred one does not) filtered to those that can be deleted.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;

use super::conditions::Gvr;

/// A namespaced resource whose objects the namespace controller deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletableResource {
    /// Where it is served.
    pub gvr: Gvr,
    /// Its kind.
    pub kind: String,
    /// `list` is supported.
    pub list: bool,
    /// `deletecollection` is supported.
    pub delete_collection: bool,
}

/// One API group as discovery lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupVersions {
    /// Group name ("" for core).
    pub name: String,
    /// Versions in the server's order.
    pub versions: Vec<String>,
    /// The preferred version.
    pub preferred: String,
}

/// What discovery found, and what went wrong on the way.
#[derive(Debug, Default)]
pub struct Discovered {
    /// Deletable namespaced resources.
    pub resources: Vec<DeletableResource>,
    /// Discovery's error, and how many group versions failed when only
    /// some did.
    pub error: Option<(String, Option<usize>)>,
    /// Group versions that did not parse.
    pub group_version_errors: Vec<String>,
}

/// Parses `group/version` or `version` (upstream's `ParseGroupVersion`).
pub fn parse_group_version(gv: &str) -> Result<(String, String), String> {
    if gv.is_empty() || gv == "/" {
        return Ok((String::new(), String::new()));
    }
    match gv.split('/').collect::<Vec<_>>().as_slice() {
        [v] => Ok((String::new(), (*v).to_owned())),
        [g, v] => Ok(((*g).to_owned(), (*v).to_owned())),
        _ => Err(format!("unexpected GroupVersion string: {gv}")),
    }
}

/// The deletable namespaced resources of `groups`, given the resource list
/// of each group version that answered (keyed by `group/version`); also
/// the group versions whose lists named an unparsable group version.
pub fn select_resources(
    groups: &[GroupVersions],
    lists: &HashMap<String, APIResourceList>,
) -> (Vec<DeletableResource>, Vec<String>) {
    // Per group and resource: the version chosen, and whether it deletes.
    let mut chosen: BTreeMap<(String, String), (DeletableResource, bool)> = BTreeMap::new();
    let mut errors = Vec::new();
    for group in groups {
        for version in &group.versions {
            let key = if group.name.is_empty() {
                version.clone()
            } else {
                format!("{}/{version}", group.name)
            };
            let Some(list) = lists.get(&key) else {
                continue;
            };
            let (g, v) = match parse_group_version(&list.group_version) {
                Ok(gv) => gv,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            for r in &list.resources {
                if r.name.contains('/') || !r.namespaced {
                    continue;
                }
                let gr = (g.clone(), r.name.clone());
                if chosen.contains_key(&gr) && *version != group.preferred {
                    continue;
                }
                let has = |verb: &str| r.verbs.iter().any(|x| x == verb);
                let res = DeletableResource {
                    gvr: Gvr::new(&g, &v, &r.name),
                    kind: r.kind.clone(),
                    list: has("list"),
                    delete_collection: has("deletecollection"),
                };
                chosen.insert(gr, (res, has("delete")));
            }
        }
    }
    let resources = chosen
        .into_values()
        .filter_map(|(r, deletable)| deletable.then_some(r))
        .collect();
    (resources, errors)
}

/// Discovers the server's deletable namespaced resources. Discovery errors
/// are not fatal: the resources of the group versions that answered are
/// still returned.
pub async fn discover(client: &kube::Client) -> Discovered {
    let mut out = Discovered::default();
    let mut groups = Vec::new();
    match client.list_core_api_versions().await {
        Ok(core) => groups.push(GroupVersions {
            name: String::new(),
            preferred: core.versions.first().cloned().unwrap_or_default(),
            versions: core.versions,
        }),
        Err(e) => {
            out.error = Some((e.to_string(), None));
            return out;
        }
    }
    match client.list_api_groups().await {
        Ok(list) => {
            for g in list.groups {
                groups.push(GroupVersions {
                    preferred: g
                        .preferred_version
                        .as_ref()
                        .map(|p| p.version.clone())
                        .unwrap_or_default(),
                    versions: g.versions.iter().map(|v| v.version.clone()).collect(),
                    name: g.name,
                });
            }
        }
        Err(e) => {
            out.error = Some((e.to_string(), None));
            return out;
        }
    }
    let fetches = groups.iter().flat_map(|g| {
        g.versions.iter().map(move |v| {
            let gv = if g.name.is_empty() {
                v.clone()
            } else {
                format!("{}/{v}", g.name)
            };
            let core = g.name.is_empty();
            async move {
                let r = if core {
                    client.list_core_api_resources(&gv).await
                } else {
                    client.list_api_group_resources(&gv).await
                };
                (gv, r)
            }
        })
    });
    let results = futures::future::join_all(fetches).await;
    let mut lists = HashMap::new();
    let mut failed = Vec::new();
    for (gv, r) in results {
        match r {
            Ok(list) => {
                lists.insert(gv, list);
            }
            Err(e) => failed.push(format!("{gv}: {e}")),
        }
    }
    if !failed.is_empty() {
        failed.sort();
        out.error = Some((
            format!(
                "unable to retrieve the complete list of server APIs: {}",
                failed.join(", ")
            ),
            Some(failed.len()),
        ));
    }
    let (resources, errors) = select_resources(&groups, &lists);
    out.resources = resources;
    out.group_version_errors = errors;
    out
}
