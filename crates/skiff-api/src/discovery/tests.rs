use serde_json::json;

use super::*;

#[test]
fn api_root() {
    let doc = document("/api", "10.0.0.1:6443").unwrap();
    assert_eq!(
        doc,
        json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "10.0.0.1:6443"}]
        })
    );
    assert_eq!(document("/api/", "a:1"), document("/api", "a:1"));
}

#[test]
fn core_v1_resource_list() {
    let doc = document("/api/v1", "x").unwrap();
    assert_eq!(doc["kind"], "APIResourceList");
    assert_eq!(doc["groupVersion"], "v1");
    assert!(
        doc.get("apiVersion").is_none(),
        "core discovery is unversioned"
    );
    let resources = doc["resources"].as_array().unwrap();
    let names: Vec<&str> = resources
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);
    let find = |name: &str| {
        resources
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(
        find("pods"),
        json!({
            "name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            "shortNames": ["po"], "categories": ["all"]
        })
    );
    assert_eq!(
        find("pods/eviction"),
        json!({
            "name": "pods/eviction", "singularName": "", "namespaced": true,
            "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]
        })
    );
    assert_eq!(
        find("namespaces/finalize"),
        json!({"name": "namespaces/finalize", "singularName": "", "namespaced": false, "kind": "Namespace", "verbs": ["update"]})
    );
    assert_eq!(
        find("nodes/proxy"),
        json!({"name": "nodes/proxy", "singularName": "", "namespaced": false, "kind": "NodeProxyOptions", "verbs": ["create", "delete", "get", "patch", "update"]})
    );
    assert_eq!(
        find("serviceaccounts/token"),
        json!({
            "name": "serviceaccounts/token", "singularName": "", "namespaced": true,
            "group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest", "verbs": ["create"]
        })
    );
    assert_eq!(
        find("secrets"),
        json!({
            "name": "secrets", "singularName": "secret", "namespaced": true, "kind": "Secret",
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
        })
    );
    // 15 resources plus their 22 subresources.
    assert_eq!(resources.len(), 15 + 22);
}

#[test]
fn group_list_and_groups() {
    let doc = document("/apis", "x").unwrap();
    assert_eq!(doc["kind"], "APIGroupList");
    assert_eq!(doc["apiVersion"], "v1");
    let groups = doc["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 11);
    assert_eq!(
        groups[0],
        json!({
            "name": "apps",
            "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
            "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}
        })
    );
    let mut api_versions: Vec<String> = groups
        .iter()
        .flat_map(|g| g["versions"].as_array().unwrap().clone())
        .map(|v| v["groupVersion"].as_str().unwrap().to_owned())
        .collect();
    api_versions.push("v1".to_owned());
    api_versions.sort();
    // `kubectl api-versions` output (sorted) for the groups we serve.
    assert_eq!(
        api_versions,
        [
            "apps/v1",
            "batch/v1",
            "certificates.k8s.io/v1",
            "coordination.k8s.io/v1",
            "discovery.k8s.io/v1",
            "events.k8s.io/v1",
            "networking.k8s.io/v1",
            "policy/v1",
            "rbac.authorization.k8s.io/v1",
            "scheduling.k8s.io/v1",
            "storage.k8s.io/v1",
            "v1"
        ]
    );

    let batch = document("/apis/batch", "x").unwrap();
    assert_eq!(
        batch,
        json!({
            "kind": "APIGroup", "apiVersion": "v1", "name": "batch",
            "versions": [{"groupVersion": "batch/v1", "version": "v1"}],
            "preferredVersion": {"groupVersion": "batch/v1", "version": "v1"}
        })
    );
}

#[test]
fn group_version_resource_list() {
    let doc = document("/apis/apps/v1", "x").unwrap();
    assert_eq!(doc["apiVersion"], "v1");
    assert_eq!(doc["groupVersion"], "apps/v1");
    let names: Vec<&str> = doc["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "controllerrevisions",
            "daemonsets",
            "daemonsets/status",
            "deployments",
            "deployments/scale",
            "deployments/status",
            "replicasets",
            "replicasets/scale",
            "replicasets/status",
            "statefulsets",
            "statefulsets/scale",
            "statefulsets/status"
        ]
    );
    let scale = &doc["resources"][4];
    assert_eq!(scale["group"], "autoscaling");
    assert_eq!(scale["version"], "v1");
    assert_eq!(scale["kind"], "Scale");
    let ev = document("/apis/events.k8s.io/v1", "x").unwrap();
    assert_eq!(ev["resources"][0]["shortNames"], json!(["ev"]));
}

#[test]
fn unknown_paths() {
    for p in [
        "/apis/apps/v2",
        "/apis/nope",
        "/apis/nope/v1",
        "/api/v2",
        "/apis//v1",
        "/",
        "",
        "/apis/apps/v1/deployments",
        "api",
    ] {
        assert!(document(p, "x").is_none(), "{p}");
    }
    assert!(api_group("").is_none());
    assert!(api_resource_list("", "v2").is_none());
}
