//! Service updates allocate and release as upstream's service REST: type
//! changes (ClusterIP, NodePort, LoadBalancer, ExternalName), ports added
//! and removed, the health check NodePort of `externalTrafficPolicy:
//! Local`, upstream's 422 messages, and no leaked or doubled allocation
//! (the allocation keys in the store always match the live Services, also
//! under concurrent writers and in a full /29 range).

use crate::support;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use skiff_store::{AnyStore, ListOptions, Store};

const ALLOCATIONS: &str = "/registry/allocations/";

fn svc(name: &str, spec: Value) -> Service {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

fn http(node_port: Option<i32>) -> Value {
    let mut port = json!({"name": "http", "port": 80});
    if let Some(np) = node_port {
        port["nodePort"] = json!(np);
    }
    port
}

fn status_of(err: kube::Error) -> kube::core::Status {
    match err {
        kube::Error::Api(s) => *s,
        other => panic!("expected a Status, got {other:?}"),
    }
}

fn merge(patch: Value) -> Patch<Value> {
    Patch::Merge(patch)
}

/// The allocation keys in the store, with the Service holding each
/// (`namespace/name/uid`).
async fn allocations(store: &AnyStore) -> BTreeMap<String, String> {
    let list = store
        .list(ALLOCATIONS, ListOptions::default())
        .await
        .unwrap();
    list.kvs
        .iter()
        .map(|kv| {
            let key = kv.key.strip_prefix(ALLOCATIONS).unwrap().to_owned();
            (key, String::from_utf8(kv.value.to_vec()).unwrap())
        })
        .collect()
}

/// What the live Services hold, keyed as the store keys them.
async fn wanted(client: &kube::Client) -> BTreeMap<String, String> {
    let all: Api<Service> = Api::all(client.clone());
    let mut want = BTreeMap::new();
    for s in all.list(&ListParams::default()).await.unwrap() {
        let owner = format!(
            "{}/{}/{}",
            s.metadata.namespace.as_deref().unwrap(),
            s.metadata.name.as_deref().unwrap(),
            s.metadata.uid.as_deref().unwrap()
        );
        let spec = s.spec.unwrap();
        let mut insert = |key: String| {
            let previous = want.insert(key.clone(), owner.clone());
            assert!(
                previous.is_none() || previous.as_ref() == Some(&owner),
                "{key} held by {previous:?} and {owner}"
            );
        };
        if let Some(ip) = spec.cluster_ip.filter(|ip| ip != "None" && !ip.is_empty()) {
            insert(format!("clusterips/{ip}"));
        }
        for p in spec.ports.unwrap_or_default() {
            if let Some(np) = p.node_port {
                insert(format!("nodeports/{np}"));
            }
        }
        if let Some(hc) = spec.health_check_node_port {
            insert(format!("nodeports/{hc}"));
        }
    }
    want
}

/// No leak, no double allocation: the store holds exactly what the live
/// Services use, each key for the Service using it.
async fn assert_allocations_match(store: &AnyStore, client: &kube::Client, when: &str) {
    assert_eq!(allocations(store).await, wanted(client).await, "{when}");
}

fn node_ports(s: &Service) -> Vec<Option<i32>> {
    let spec = s.spec.as_ref().unwrap();
    spec.ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| p.node_port)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_and_port_changes_allocate_and_release() {
    let dir = tempfile::tempdir().unwrap();
    let (server, store) = support::start_server_with(dir.path(), |_| {}).await;
    let client = support::client(dir.path()).await;
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let (pp, patch) = (PostParams::default(), PatchParams::default());

    let web = svcs
        .create(&pp, &svc("web", json!({"ports": [http(None)]})))
        .await
        .unwrap();
    let ip = web.spec.as_ref().unwrap().cluster_ip.clone().unwrap();
    assert_eq!(node_ports(&web), [None]);
    assert_allocations_match(&store, &client, "created").await;
    // A create that fails in the store (the name is taken) keeps nothing.
    let before = allocations(&store).await;
    let taken = status_of(
        svcs.create(&pp, &svc("web", json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [http(None)]})))
            .await
            .unwrap_err(),
    );
    assert_eq!(taken.code, 409);
    assert_eq!(allocations(&store).await, before);

    // ClusterIP -> NodePort allocates a NodePort and keeps the IP.
    let web = svcs
        .patch("web", &patch, &merge(json!({"spec": {"type": "NodePort"}})))
        .await
        .unwrap();
    let np = node_ports(&web)[0].unwrap();
    assert!((30000..=32767).contains(&np), "{np}");
    assert_eq!(web.spec.as_ref().unwrap().cluster_ip.as_ref(), Some(&ip));
    assert_allocations_match(&store, &client, "to NodePort").await;

    // NodePort -> ClusterIP clears and releases it.
    let web = svcs
        .patch(
            "web",
            &patch,
            &merge(json!({"spec": {"type": "ClusterIP"}})),
        )
        .await
        .unwrap();
    assert_eq!(node_ports(&web), [None]);
    assert!(
        !allocations(&store)
            .await
            .contains_key(&format!("nodeports/{np}"))
    );
    assert_allocations_match(&store, &client, "back to ClusterIP").await;

    // A requested NodePort is honoured...
    let to_30100 = json!({"spec": {"type": "NodePort", "ports": [http(Some(30100))]}});
    let web = svcs.patch("web", &patch, &merge(to_30100)).await.unwrap();
    assert_eq!(node_ports(&web), [Some(30100)]);
    // ...and nobody else gets it, on create or on update.
    let err = status_of(
        svcs.create(
            &pp,
            &svc(
                "other",
                json!({"type": "NodePort", "ports": [http(Some(30100))]}),
            ),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        err.message,
        "Service \"other\" is invalid: spec.ports[0].nodePort: Invalid value: 30100: provided port is already allocated"
    );
    svcs.create(&pp, &svc("other", json!({"ports": [http(None)]})))
        .await
        .unwrap();
    // Two ports: the first asks for a free port, the second for a taken
    // one; the refused update keeps neither.
    let two_ports = json!({"spec": {"type": "NodePort", "ports": [
        {"name": "a", "port": 81, "nodePort": 30200},
        {"name": "b", "port": 82, "nodePort": 30100},
    ]}});
    let err = status_of(
        svcs.patch("other", &patch, &merge(two_ports))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        err.message,
        "Service \"other\" is invalid: spec.ports[1].nodePort: Invalid value: 30100: provided port is already allocated"
    );
    let err = status_of(
        svcs.patch(
            "other",
            &patch,
            &merge(json!({"spec": {"type": "NodePort", "ports": [http(Some(40000))]}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        err.message,
        "Service \"other\" is invalid: spec.ports[0].nodePort: Invalid value: 40000: provided port is not in the valid range. The range of valid ports is 30000-32767"
    );
    let other = svcs.get("other").await.unwrap();
    assert_eq!(
        other.spec.as_ref().unwrap().type_.as_deref(),
        Some("ClusterIP")
    );
    assert!(!allocations(&store).await.contains_key("nodeports/30200"));
    assert_allocations_match(&store, &client, "refused updates").await;

    // Adding a port allocates for it alone; removing one releases it.
    let mut replaced = svcs.get("web").await.unwrap();
    replaced
        .spec
        .as_mut()
        .unwrap()
        .ports
        .as_mut()
        .unwrap()
        .push(serde_json::from_value(json!({"name": "https", "port": 443})).unwrap());
    let web = svcs.replace("web", &pp, &replaced).await.unwrap();
    let ports = node_ports(&web);
    assert_eq!(ports[0], Some(30100));
    let https = ports[1].unwrap();
    assert_ne!(https, 30100);
    assert_allocations_match(&store, &client, "port added").await;
    let mut replaced = web.clone();
    replaced
        .spec
        .as_mut()
        .unwrap()
        .ports
        .as_mut()
        .unwrap()
        .remove(0);
    let web = svcs.replace("web", &pp, &replaced).await.unwrap();
    assert_eq!(node_ports(&web), [Some(https)]);
    assert!(!allocations(&store).await.contains_key("nodeports/30100"));
    assert_allocations_match(&store, &client, "port removed").await;

    // LoadBalancer with externalTrafficPolicy Local gets a health check
    // NodePort, released when the policy changes.
    let lb_local = json!({"spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local"}});
    let web = svcs.patch("web", &patch, &merge(lb_local)).await.unwrap();
    let hc = web.spec.as_ref().unwrap().health_check_node_port.unwrap();
    assert!((30000..=32767).contains(&hc) && hc != https, "{hc}");
    assert_eq!(node_ports(&web), [Some(https)], "NodePorts kept");
    assert_allocations_match(&store, &client, "LoadBalancer Local").await;
    let cluster = json!({"spec": {"externalTrafficPolicy": "Cluster"}});
    let web = svcs.patch("web", &patch, &merge(cluster)).await.unwrap();
    assert_eq!(web.spec.as_ref().unwrap().health_check_node_port, None);
    assert!(
        !allocations(&store)
            .await
            .contains_key(&format!("nodeports/{hc}"))
    );
    assert_allocations_match(&store, &client, "LoadBalancer Cluster").await;

    // -> ExternalName releases the IP and the NodePorts and clears them.
    let external = json!({"spec": {"type": "ExternalName", "externalName": "db.example.com"}});
    let web = svcs.patch("web", &patch, &merge(external)).await.unwrap();
    let spec = web.spec.as_ref().unwrap();
    assert_eq!(
        (spec.cluster_ip.as_ref(), spec.cluster_ips.as_ref()),
        (None, None)
    );
    assert_eq!(node_ports(&web), [None]);
    assert!(
        !allocations(&store)
            .await
            .contains_key(&format!("clusterips/{ip}"))
    );
    assert_allocations_match(&store, &client, "to ExternalName").await;

    // ExternalName -> ClusterIP allocates an IP again.
    let back = json!({"spec": {"type": "ClusterIP", "externalName": null}});
    let web = svcs.patch("web", &patch, &merge(back)).await.unwrap();
    let spec = web.spec.as_ref().unwrap();
    let new_ip = spec.cluster_ip.clone().unwrap();
    assert_eq!(
        spec.cluster_ips.as_deref(),
        Some(std::slice::from_ref(&new_ip))
    );
    assert_allocations_match(&store, &client, "back from ExternalName").await;

    // The real kubectl sees the same.
    let kubectl = support::Kubectl::new(support::KUBECTL_133, dir.path());
    kubectl
        .ok(&[
            "patch",
            "svc",
            "web",
            "-p",
            r#"{"spec":{"type":"NodePort"}}"#,
        ])
        .await;
    let np = kubectl
        .ok(&[
            "get",
            "svc",
            "web",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}",
        ])
        .await;
    assert!(
        (30000..=32767).contains(&np.parse::<i32>().unwrap()),
        "{np}"
    );
    assert_allocations_match(&store, &client, "kubectl patch").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_range_never_leaks_or_doubles() {
    let dir = tempfile::tempdir().unwrap();
    let cidr = skiff_apiserver::registry::services::ServiceCidr::parse("10.96.0.0/29").unwrap();
    let (server, store) = support::start_server_with(dir.path(), |c| c.service_cidr = cidr).await;
    let client = support::client(dir.path()).await;
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let (pp, patch) = (PostParams::default(), PatchParams::default());

    // A /29 has six addresses; the first is the kubernetes Service's.
    for i in 1..=5 {
        let s = svcs
            .create(
                &pp,
                &svc(
                    &format!("s{i}"),
                    json!({"type": "NodePort", "ports": [http(None)]}),
                ),
            )
            .await
            .unwrap();
        let ip = s.spec.unwrap().cluster_ip.unwrap();
        assert!(ip.starts_with("10.96.0.") && ip != "10.96.0.1", "{ip}");
    }
    let full = status_of(
        svcs.create(&pp, &svc("s6", json!({"ports": [http(None)]})))
            .await
            .unwrap_err(),
    );
    assert_eq!(full.code, 500);
    assert_eq!(
        full.message,
        "Internal error occurred: failed to allocate a serviceIP: range is full"
    );
    assert_allocations_match(&store, &client, "range full").await;

    // To ExternalName frees an address for the next Service...
    let external = json!({"spec": {"type": "ExternalName", "externalName": "db.example.com"}});
    let freed = svcs
        .get("s1")
        .await
        .unwrap()
        .spec
        .unwrap()
        .cluster_ip
        .unwrap();
    svcs.patch("s1", &patch, &merge(external)).await.unwrap();
    let s6 = svcs
        .create(&pp, &svc("s6", json!({"ports": [http(None)]})))
        .await
        .unwrap();
    assert_eq!(s6.spec.unwrap().cluster_ip.unwrap(), freed);
    // ...and back to ClusterIP finds the range full: the update is refused
    // and the Service stays as it was.
    let err = status_of(
        svcs.patch(
            "s1",
            &patch,
            &merge(json!({"spec": {"type": "ClusterIP", "externalName": null}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 500, "{}", err.message);
    let s1 = svcs.get("s1").await.unwrap().spec.unwrap();
    assert_eq!(s1.type_.as_deref(), Some("ExternalName"));
    assert_allocations_match(&store, &client, "refused type change").await;

    // Concurrent writers flipping types (conflicts retried, each retry's
    // claims given back) and creating/deleting Services.
    let mut tasks = Vec::new();
    for t in 0..4 {
        let svcs = svcs.clone();
        tasks.push(tokio::spawn(async move {
            let patch = PatchParams::default();
            for round in 0..10 {
                let target = format!("s{}", 2 + (t + round) % 3);
                let ty = if (t + round) % 2 == 0 { "NodePort" } else { "ClusterIP" };
                let _ = svcs
                    .patch(&target, &patch, &merge(json!({"spec": {"type": ty}})))
                    .await;
                let _ = svcs
                    .patch(
                        "s5",
                        &patch,
                        &merge(json!({"spec": {"type": "LoadBalancer", "externalTrafficPolicy": if round % 2 == 0 { "Local" } else { "Cluster" }}})),
                    )
                    .await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_allocations_match(&store, &client, "concurrent type changes").await;

    // A Service held by a finalizer releases everything when the last
    // finalizer goes.
    svcs.patch(
        "s2",
        &patch,
        &merge(json!({"metadata": {"finalizers": ["example.com/hold"]}})),
    )
    .await
    .unwrap();
    svcs.delete("s2", &DeleteParams::default()).await.unwrap();
    assert_allocations_match(&store, &client, "marked for deletion").await;
    svcs.patch(
        "s2",
        &patch,
        &merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(svcs.get_opt("s2").await.unwrap().is_none());
    assert_allocations_match(&store, &client, "finalized").await;
    server.shutdown().await;
}
