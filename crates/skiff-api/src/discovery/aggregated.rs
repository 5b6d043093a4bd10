//! Aggregated discovery, `apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`: all
//! groups, versions and resources in one document, which kubectl and client-go
//! (≥ 1.30) ask for first at `/api` and `/apis`.
//!
//! Built as JSON by hand (k8s-openapi has no types for it), following upstream's
//! `staging/src/k8s.io/api/apidiscovery/v2/types.go` and the apiserver's
//! conversion: `responseKind` carries empty group and version unless the kind
//! lives in another group version (Eviction, Scale, TokenRequest).

use serde_json::{Map, Value, json};

use crate::resources::{self, GroupInfo, ResourceInfo, Scope, Verb};

/// The `Content-Type` of an aggregated discovery response, which clients check
/// before decoding it as such.
pub const AGGREGATED_DISCOVERY_V2_MEDIA_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// True when an `Accept` header asks for aggregated discovery v2 in JSON
/// (any of its media ranges is `application/json` with `g=apidiscovery.k8s.io`,
/// `v=v2`, `as=APIGroupDiscoveryList` and a non-zero `q`).
pub fn wants_aggregated_v2(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        if !media.eq_ignore_ascii_case("application/json") {
            return false;
        }
        let (mut g, mut v, mut as_, mut q_zero) = (false, false, false, false);
        for param in parts {
            let Some((k, val)) = param.split_once('=') else {
                continue;
            };
            match k.trim() {
                "g" => g = val.trim() == "apidiscovery.k8s.io",
                "v" => v = val.trim() == "v2",
                "as" => as_ = val.trim() == "APIGroupDiscoveryList",
                "q" => q_zero = val.trim().parse::<f64>().is_ok_and(|q| q <= 0.0),
                _ => {}
            }
        }
        g && v && as_ && !q_zero
    })
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

fn verbs(verbs: &[Verb]) -> Value {
    Value::Array(verbs.iter().map(|v| Value::from(v.as_str())).collect())
}

fn string_list(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|s| Value::from(*s)).collect())
}

fn resource_discovery(r: &ResourceInfo) -> Value {
    let mut m = Map::new();
    m.insert("resource".into(), r.plural.into());
    m.insert("responseKind".into(), gvk("", "", r.kind));
    let scope = match r.scope {
        Scope::Namespaced => "Namespaced",
        Scope::Cluster => "Cluster",
    };
    m.insert("scope".into(), scope.into());
    m.insert("singularResource".into(), r.singular.into());
    m.insert("verbs".into(), verbs(r.verbs));
    if !r.short_names.is_empty() {
        m.insert("shortNames".into(), string_list(r.short_names));
    }
    if !r.categories.is_empty() {
        m.insert("categories".into(), string_list(r.categories));
    }
    if !r.subresources.is_empty() {
        let subs = r
            .subresources
            .iter()
            .map(|s| {
                let (g, v) = s.kind_group_version.unwrap_or(("", ""));
                json!({
                    "subresource": s.name,
                    "responseKind": gvk(g, v, s.kind),
                    "verbs": verbs(s.verbs),
                })
            })
            .collect();
        m.insert("subresources".into(), Value::Array(subs));
    }
    Value::Object(m)
}

fn group_discovery(g: &GroupInfo) -> Value {
    let versions: Vec<Value> = g
        .versions
        .iter()
        .map(|v| {
            let resources: Vec<Value> = resources::for_group_version(g.name, v)
                .map(resource_discovery)
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let mut metadata = Map::new();
    if !g.name.is_empty() {
        metadata.insert("name".into(), g.name.into());
    }
    // Go's ObjectMeta always writes its zero creationTimestamp as null.
    metadata.insert("creationTimestamp".into(), Value::Null);
    json!({"metadata": metadata, "versions": versions})
}

fn discovery_list(items: Vec<Value>) -> Value {
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

/// The aggregated discovery document served at `/api`: the core group only.
pub fn aggregated_core() -> Value {
    discovery_list(
        resources::group("")
            .map(group_discovery)
            .into_iter()
            .collect(),
    )
}

/// The aggregated discovery document served at `/apis`: every non-core group,
/// in priority order.
pub fn aggregated_apis() -> Value {
    discovery_list(resources::api_groups().map(group_discovery).collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn accept_header_negotiation() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert!(wants_aggregated_v2(kubectl));
        assert!(wants_aggregated_v2(AGGREGATED_DISCOVERY_V2_MEDIA_TYPE));
        assert!(wants_aggregated_v2(
            "application/json; g=apidiscovery.k8s.io; v=v2; as=APIGroupDiscoveryList"
        ));
        assert!(!wants_aggregated_v2("application/json"));
        assert!(!wants_aggregated_v2(
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
        ));
        assert!(!wants_aggregated_v2(
            "application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        ));
        assert!(!wants_aggregated_v2(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;q=0"
        ));
        assert!(!wants_aggregated_v2(""));
        assert!(!wants_aggregated_v2(";;,=,;="));
    }

    #[test]
    fn core_document_shape() {
        let doc = aggregated_core();
        assert_eq!(doc["kind"], "APIGroupDiscoveryList");
        assert_eq!(doc["apiVersion"], "apidiscovery.k8s.io/v2");
        assert_eq!(doc["metadata"], json!({}));
        let items = doc["items"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["metadata"], json!({"creationTimestamp": null}));
        let v1 = &items[0]["versions"][0];
        assert_eq!(v1["version"], "v1");
        assert_eq!(v1["freshness"], "Current");
        let pods = v1["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "pods")
            .unwrap();
        assert_eq!(
            pods["responseKind"],
            json!({"group": "", "kind": "Pod", "version": ""})
        );
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["singularResource"], "pod");
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        let eviction = pods["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["subresource"] == "eviction")
            .unwrap();
        assert_eq!(
            eviction,
            &json!({
                "subresource": "eviction",
                "responseKind": {"group": "policy", "kind": "Eviction", "version": "v1"},
                "verbs": ["create"]
            })
        );
        let secrets = v1["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "secrets")
            .unwrap();
        assert_eq!(
            secrets,
            &json!({
                "resource": "secrets",
                "responseKind": {"group": "", "kind": "Secret", "version": ""},
                "scope": "Namespaced",
                "singularResource": "secret",
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
            })
        );
    }

    #[test]
    fn groups_document_shape() {
        let doc = aggregated_apis();
        let names: Vec<&str> = doc["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "apps",
                "events.k8s.io",
                "batch",
                "certificates.k8s.io",
                "networking.k8s.io",
                "policy",
                "rbac.authorization.k8s.io",
                "storage.k8s.io",
                "scheduling.k8s.io",
                "coordination.k8s.io",
                "discovery.k8s.io"
            ]
        );
        let apps = &doc["items"][0]["versions"][0]["resources"];
        let deploy = apps
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "deployments")
            .unwrap();
        assert_eq!(
            deploy["subresources"],
            json!([
                {"subresource": "scale", "responseKind": {"group": "autoscaling", "kind": "Scale", "version": "v1"}, "verbs": ["get", "patch", "update"]},
                {"subresource": "status", "responseKind": {"group": "", "kind": "Deployment", "version": ""}, "verbs": ["get", "patch", "update"]}
            ])
        );
        let csr = &doc["items"][3]["versions"][0]["resources"][0];
        assert_eq!(csr["scope"], "Cluster");
        assert_eq!(csr["resource"], "certificatesigningrequests");
    }
}
