//! Discovery documents built from the resource table: `/api`, `/api/v1`,
//! `/apis`, `/apis/{group}`, `/apis/{group}/{version}` (legacy discovery) and
//! aggregated discovery (`apidiscovery.k8s.io/v2`), shaped as upstream serves
//! them so that `kubectl api-resources` and `kubectl api-versions` print
//! upstream's output.

mod aggregated;

pub use aggregated::{
    AGGREGATED_DISCOVERY_V2_MEDIA_TYPE, aggregated_apis, aggregated_core, wants_aggregated_v2,
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIGroupList, APIResource, APIResourceList, APIVersions, GroupVersionForDiscovery,
    ServerAddressByClientCIDR,
};
use serde_json::Value;

use crate::resources::{self, GroupInfo, ResourceInfo};

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn non_empty_list(items: &[&str]) -> Option<Vec<String>> {
    (!items.is_empty()).then(|| strings(items))
}

fn verb_strings(verbs: &[resources::Verb]) -> Vec<String> {
    verbs.iter().map(|v| v.as_str().to_owned()).collect()
}

/// The discovery entries of one resource: the resource itself, then one entry
/// per subresource (`pods/status`, ...).
pub fn api_resources(r: &ResourceInfo) -> Vec<APIResource> {
    let mut out = vec![APIResource {
        categories: non_empty_list(r.categories),
        group: None,
        kind: r.kind.to_owned(),
        name: r.plural.to_owned(),
        namespaced: r.namespaced(),
        short_names: non_empty_list(r.short_names),
        singular_name: r.singular.to_owned(),
        storage_version_hash: None,
        verbs: verb_strings(r.verbs),
        version: None,
    }];
    for s in r.subresources {
        out.push(APIResource {
            categories: None,
            group: s.kind_group_version.map(|(g, _)| g.to_owned()),
            kind: s.kind.to_owned(),
            name: format!("{}/{}", r.plural, s.name),
            namespaced: r.namespaced(),
            short_names: None,
            singular_name: String::new(),
            storage_version_hash: None,
            verbs: verb_strings(s.verbs),
            version: s.kind_group_version.map(|(_, v)| v.to_owned()),
        });
    }
    out
}

/// `/api` (`APIVersions`): the core group's versions and the address clients
/// should use (`host:port`), advertised for every client CIDR.
pub fn api_versions(server_address: &str) -> APIVersions {
    APIVersions {
        server_address_by_client_cidrs: vec![ServerAddressByClientCIDR {
            client_cidr: "0.0.0.0/0".to_owned(),
            server_address: server_address.to_owned(),
        }],
        versions: resources::group("")
            .map(|g| strings(g.versions))
            .unwrap_or_default(),
    }
}

/// `/api/v1` or `/apis/{group}/{version}` (`APIResourceList`), entries sorted by
/// name as upstream; `None` for a group version we do not serve.
pub fn api_resource_list(group: &str, version: &str) -> Option<APIResourceList> {
    let served = resources::group(group).is_some_and(|g| g.versions.contains(&version));
    if !served {
        return None;
    }
    let mut list: Vec<APIResource> = resources::for_group_version(group, version)
        .flat_map(api_resources)
        .collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    Some(APIResourceList {
        group_version: group_version(group, version),
        resources: list,
    })
}

fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    }
}

fn to_api_group(g: &GroupInfo) -> APIGroup {
    let gv = |v: &str| GroupVersionForDiscovery {
        group_version: group_version(g.name, v),
        version: v.to_owned(),
    };
    APIGroup {
        name: g.name.to_owned(),
        preferred_version: Some(gv(g.preferred_version())),
        server_address_by_client_cidrs: None,
        versions: g.versions.iter().map(|v| gv(v)).collect(),
    }
}

/// `/apis/{group}` (`APIGroup`); `None` for the core group or an unknown group.
pub fn api_group(name: &str) -> Option<APIGroup> {
    resources::api_groups()
        .find(|g| g.name == name)
        .map(to_api_group)
}

/// `/apis` (`APIGroupList`): every non-core group, in upstream's priority order.
pub fn api_group_list() -> APIGroupList {
    APIGroupList {
        groups: resources::api_groups().map(to_api_group).collect(),
    }
}

/// Serializes a discovery object; `keep_api_version` false drops `apiVersion`,
/// as upstream does for `/api` and `/api/v1` (kept unversioned since release 1.1).
fn to_json(obj: Result<Value, serde_json::Error>, keep_api_version: bool) -> Option<Value> {
    let mut v = obj.ok()?;
    if !keep_api_version && let Some(map) = v.as_object_mut() {
        map.remove("apiVersion");
    }
    Some(v)
}

/// The legacy discovery document for a request path (`/api`, `/api/v1`,
/// `/apis`, `/apis/apps`, `/apis/apps/v1`, an optional trailing `/`), exactly
/// as upstream serves it; `None` for any other path. `server_address` is the
/// `host:port` advertised by `/api`.
pub fn document(path: &str, server_address: &str) -> Option<Value> {
    let path = path.strip_suffix('/').unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    match segments.as_slice() {
        ["", "api"] => to_json(serde_json::to_value(api_versions(server_address)), false),
        ["", "api", version] => {
            to_json(serde_json::to_value(api_resource_list("", version)?), false)
        }
        ["", "apis"] => {
            let mut list = to_json(serde_json::to_value(api_group_list()), true)?;
            // Items of a list carry no type meta upstream.
            if let Some(groups) = list.get_mut("groups").and_then(Value::as_array_mut) {
                for g in groups.iter_mut().filter_map(Value::as_object_mut) {
                    g.remove("apiVersion");
                    g.remove("kind");
                }
            }
            Some(list)
        }
        ["", "apis", group] if !group.is_empty() => {
            to_json(serde_json::to_value(api_group(group)?), true)
        }
        ["", "apis", group, version] if !group.is_empty() => to_json(
            serde_json::to_value(api_resource_list(group, version)?),
            true,
        ),
        _ => None,
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
