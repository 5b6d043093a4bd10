//! The Endpoints, EndpointSlice and mirroring controllers against the real
//! API server, with hollow nodes giving pods IPs and readiness (and a
//! kubelet-less Node whose pods' status the test writes itself).

use crate::support;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use skiff_controllers::cached_pod::CachedPod;
use support::{Cluster, NODE, wait_for};

const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";

fn from<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn pod_template(app: &str, node: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox",
                 "ports": [{"name": "http", "containerPort": 8080}]}]},
    })
}

async fn create_service(c: &Cluster, name: &str, selector: Option<&str>) -> Service {
    let api: Api<Service> = Api::default_namespaced(c.client.clone());
    let mut spec = json!({"ports": [{"name": "http", "port": 80, "targetPort": "http"}]});
    if let Some(app) = selector {
        spec["selector"] = json!({"app": app});
    }
    let svc = from(json!({"metadata": {"name": name, "labels": {"tier": "fe"}}, "spec": spec}));
    api.create(&PostParams::default(), &svc).await.unwrap()
}

/// (ready, not-ready) IPs of the Endpoints `name`, each list sorted.
async fn endpoint_ips(c: &Cluster, name: &str) -> Option<(Vec<String>, Vec<String>)> {
    let api: Api<Endpoints> = Api::default_namespaced(c.client.clone());
    let ep = api.get_opt(name).await.unwrap()?;
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    for s in ep.subsets.iter().flatten() {
        ready.extend(s.addresses.iter().flatten().map(|a| a.ip.clone()));
        not_ready.extend(s.not_ready_addresses.iter().flatten().map(|a| a.ip.clone()));
    }
    ready.sort();
    not_ready.sort();
    Some((ready, not_ready))
}

async fn slices_of(c: &Cluster, svc: &str) -> Vec<EndpointSlice> {
    let api: Api<EndpointSlice> = Api::default_namespaced(c.client.clone());
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={svc}"));
    api.list(&lp).await.unwrap().items
}

/// Endpoint (ready, serving, terminating) by IP across the Service's slices.
async fn slice_endpoints(c: &Cluster, svc: &str) -> Vec<(String, bool, bool, bool)> {
    let mut out: Vec<(String, bool, bool, bool)> = slices_of(c, svc)
        .await
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .map(|e| {
            let cond = e.conditions.clone().unwrap_or_default();
            (
                e.addresses[0].clone(),
                cond.ready.unwrap_or(false),
                cond.serving.unwrap_or(false),
                cond.terminating.unwrap_or(false),
            )
        })
        .collect();
    out.sort();
    out
}

async fn pod_ips(c: &Cluster, app: &str) -> Vec<String> {
    let mut ips: Vec<String> = c
        .active_pods("default", &format!("app={app}"))
        .await
        .iter()
        .filter(|p| skiff_controllers::podutil::is_pod_ready(&CachedPod::from((*p).clone())))
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect();
    ips.sort();
    ips
}

/// Waits until `n` ready pods of `app` are listed, ready, by both the
/// Endpoints and the slices of `svc`.
async fn wait_listed(c: &Cluster, svc: &str, app: &str, n: usize) -> Vec<String> {
    wait_for(&format!("{n} endpoints of {svc}"), async || {
        let ips = pod_ips(c, app).await;
        if ips.len() != n || c.active_pods("default", &format!("app={app}")).await.len() != n {
            return None;
        }
        let (ready, not_ready) = endpoint_ips(c, svc).await?;
        let slices = slice_endpoints(c, svc).await;
        let slice_ips: Vec<String> = slices
            .iter()
            .filter(|e| e.1 && e.2 && !e.3)
            .map(|e| e.0.clone())
            .collect();
        (ready == ips && not_ready.is_empty() && slice_ips == ips && slices.len() == n)
            .then_some(ips)
    })
    .await
}

async fn scale(c: &Cluster, name: &str, replicas: i32) {
    let api: Api<Deployment> = Api::default_namespaced(c.client.clone());
    let patch = json!({"spec": {"replicas": replicas}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

async fn kubectl(c: &Cluster, args: &[&str]) -> String {
    let out = c.kubectl_output(args).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_endpoints_follow_a_deployment() {
    let c = Cluster::start(1).await;
    let svc = create_service(&c, "web", Some("web")).await;
    let deploy: Deployment = from(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": pod_template("web", NODE)},
    }));
    let deployments: Api<Deployment> = Api::default_namespaced(c.client.clone());
    deployments
        .create(&PostParams::default(), &deploy)
        .await
        .unwrap();
    wait_listed(&c, "web", "web", 3).await;

    // The Endpoints: named port resolved, node and target, labels.
    let eps: Api<Endpoints> = Api::default_namespaced(c.client.clone());
    let ep = eps.get("web").await.unwrap();
    let labels = ep.metadata.labels.clone().unwrap();
    assert_eq!(
        labels["endpoints.kubernetes.io/managed-by"],
        "endpoint-controller"
    );
    assert_eq!(labels["tier"], "fe");
    let subset = &ep.subsets.as_ref().unwrap()[0];
    let port = &subset.ports.as_ref().unwrap()[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("http"), 8080));
    let addr = &subset.addresses.as_ref().unwrap()[0];
    assert_eq!(addr.node_name.as_deref(), Some(NODE));
    assert_eq!(
        addr.target_ref.as_ref().unwrap().kind.as_deref(),
        Some("Pod")
    );

    // The slice: labels, owner, port, zone.
    let slices = slices_of(&c, "web").await;
    assert_eq!(slices.len(), 1);
    let s = &slices[0];
    let labels = s.metadata.labels.clone().unwrap();
    assert_eq!(labels[MANAGED_BY], "endpointslice-controller.k8s.io");
    assert_eq!(labels["tier"], "fe");
    assert!(s.metadata.name.as_deref().unwrap().starts_with("web-"));
    let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), &owner.uid),
        ("Service", svc.metadata.uid.as_ref().unwrap())
    );
    assert_eq!(s.ports.as_ref().unwrap()[0].port, Some(8080));
    assert!(
        s.endpoints
            .iter()
            .all(|e| e.zone.is_some() && e.node_name.as_deref() == Some(NODE))
    );

    // Scaling follows.
    scale(&c, "web", 5).await;
    wait_listed(&c, "web", "web", 5).await;
    scale(&c, "web", 2).await;
    wait_listed(&c, "web", "web", 2).await;

    // A sync with nothing to change writes nothing: touch the Service, then
    // wait for a second Service's endpoints (work queued after it).
    let versions = async || {
        let ep = eps.get("web").await.unwrap().metadata.resource_version;
        let slices: Vec<_> = slices_of(&c, "web")
            .await
            .into_iter()
            .map(|s| s.metadata.resource_version)
            .collect();
        (ep, slices)
    };
    let before = versions().await;
    let services: Api<Service> = Api::default_namespaced(c.client.clone());
    let touch = json!({"metadata": {"annotations": {"touched": "yes"}}});
    services
        .patch("web", &PatchParams::default(), &Patch::Merge(&touch))
        .await
        .unwrap();
    create_service(&c, "probe", Some("web")).await;
    wait_listed(&c, "probe", "web", 2).await;
    assert_eq!(versions().await, before);

    // kubectl lists both kinds.
    let out = kubectl(&c, &["get", "endpoints,endpointslices", "-n", "default"]).await;
    assert!(out.contains("endpoints/web"), "{out}");
    assert!(
        out.contains(&format!(
            "endpointslice.discovery.k8s.io/{}",
            slices[0].metadata.name.as_deref().unwrap()
        )),
        "{out}"
    );
    assert!(out.contains(":8080"), "{out}");

    // Deleting the Service removes its Endpoints; the garbage collector
    // removes its slices.
    services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("endpoints and slices gone", async || {
        let ep_gone = eps.get_opt("web").await.unwrap().is_none();
        (ep_gone && slices_of(&c, "web").await.is_empty()).then_some(())
    })
    .await;
    c.stop().await;
}

/// Sets a kubelet-less pod's status: Running with `ip`, Ready as given.
async fn set_status(pods: &Api<Pod>, name: &str, ip: &str, ready: bool, at: &str) {
    let status = json!({"status": {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" },
                        "lastTransitionTime": at}],
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_and_termination_move_endpoints() {
    let c = Cluster::start(0).await;
    manual_node(&c).await;
    create_service(&c, "app", Some("app")).await;
    let pods = c.pods("default");
    for (name, ip) in [("a", "10.99.0.1"), ("b", "10.99.0.2")] {
        ready_pod(&pods, "app", name, ip).await;
    }
    let both = vec!["10.99.0.1".to_owned(), "10.99.0.2".to_owned()];
    wait_for("two ready endpoints", async || {
        let (ready, _) = endpoint_ips(&c, "app").await?;
        let slices = slice_endpoints(&c, "app").await;
        (ready == both && slices.iter().filter(|e| e.1).count() == 2).then_some(())
    })
    .await;
    let trigger = |ep: &Endpoints| {
        ep.metadata.annotations.as_ref().and_then(|a| {
            a.get("endpoints.kubernetes.io/last-change-trigger-time")
                .cloned()
        })
    };

    // b turns not ready: notReadyAddresses, and ready=false serving=false.
    set_status(&pods, "b", "10.99.0.2", false, "2026-01-01T00:01:00Z").await;
    let eps: Api<Endpoints> = Api::default_namespaced(c.client.clone());
    wait_for("b not ready", async || {
        let (ready, not_ready) = endpoint_ips(&c, "app").await?;
        let slices = slice_endpoints(&c, "app").await;
        let b = slices.iter().find(|e| e.0 == "10.99.0.2")?;
        (ready == ["10.99.0.1"] && not_ready == ["10.99.0.2"] && !b.1 && !b.2 && !b.3).then_some(())
    })
    .await;
    let ep = eps.get("app").await.unwrap();
    assert_eq!(trigger(&ep).as_deref(), Some("2026-01-01T00:01:00Z"));
    let zones: Vec<Option<String>> = slices_of(&c, "app")
        .await
        .iter()
        .flat_map(|s| s.endpoints.iter().map(|e| e.zone.clone()))
        .collect();
    assert_eq!(zones, [Some("z1".to_owned()), Some("z1".to_owned())]);

    // a is deleted (no kubelet finishes it, so it stays terminating): gone
    // from the Endpoints, terminating and not ready in the slice.
    pods.delete("a", &DeleteParams::default()).await.unwrap();
    wait_for("a terminating", async || {
        let (ready, _) = endpoint_ips(&c, "app").await?;
        let slices = slice_endpoints(&c, "app").await;
        let a = slices.iter().find(|e| e.0 == "10.99.0.1");
        let a_ok = match a {
            Some(a) => !a.1 && a.2 && a.3,
            // Removed at once if the server finished the deletion itself.
            None => pods.get_opt("a").await.unwrap().is_none(),
        };
        (ready.is_empty() && a_ok).then_some(())
    })
    .await;
    c.stop().await;
}

/// Creates a Node no kubelet runs (pods on it get their status from the
/// test).
async fn manual_node(c: &Cluster) {
    let nodes: Api<Node> = Api::all(c.client.clone());
    let node: Node = from(json!({"metadata": {"name": "manual",
        "labels": {"topology.kubernetes.io/zone": "z1"}}}));
    nodes.create(&PostParams::default(), &node).await.unwrap();
}

/// Creates pod `name` of `app` on the manual node, Running and Ready at `ip`.
async fn ready_pod(pods: &Api<Pod>, app: &str, name: &str, ip: &str) {
    let mut p = pod_template(app, "manual");
    p["metadata"]["name"] = json!(name);
    pods.create(&PostParams::default(), &from(p)).await.unwrap();
    set_status(pods, name, ip, true, "2026-01-01T00:00:00Z").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_pods_spread_over_slices_of_at_most_100() {
    // Pods with test-written status: no kubelet to wait for.
    let c = Cluster::start(0).await;
    manual_node(&c).await;
    let pods = c.pods("default");
    let creates = (0..250).map(|i| {
        let pods = pods.clone();
        async move {
            let ip = format!("10.98.{}.{}", i / 200, i % 200 + 1);
            ready_pod(&pods, "big", &format!("big-{i}"), &ip).await;
        }
    });
    futures::stream::iter(creates)
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    // The Service comes last, so the controllers write its endpoints once.
    create_service(&c, "big", Some("big")).await;
    wait_listed(&c, "big", "big", 250).await;
    let mut sizes: Vec<usize> = slices_of(&c, "big")
        .await
        .iter()
        .map(|s| s.endpoints.len())
        .collect();
    sizes.sort_unstable();
    assert_eq!(sizes.len(), 3, "{sizes:?}");
    assert!(sizes.iter().all(|n| *n <= 100), "{sizes:?}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_of_selectorless_services_are_mirrored() {
    let c = Cluster::start(0).await;
    create_service(&c, "ext", None).await;
    let eps: Api<Endpoints> = Api::default_namespaced(c.client.clone());
    let ep: Endpoints = from(json!({
        "metadata": {"name": "ext", "labels": {"team": "a"}},
        "subsets": [{"addresses": [{"ip": "192.0.2.1"}, {"ip": "192.0.2.2"}],
                     "notReadyAddresses": [{"ip": "192.0.2.3"}],
                     "ports": [{"name": "http", "port": 8080}]}],
    }));
    let ep = eps.create(&PostParams::default(), &ep).await.unwrap();
    let mirrored = wait_for("mirrored slice", async || {
        let s = slice_endpoints(&c, "ext").await;
        (s.len() == 3).then_some(s)
    })
    .await;
    let ready: Vec<(&str, bool)> = mirrored.iter().map(|e| (e.0.as_str(), e.1)).collect();
    assert_eq!(
        ready,
        [
            ("192.0.2.1", true),
            ("192.0.2.2", true),
            ("192.0.2.3", false)
        ]
    );
    let slice = slices_of(&c, "ext").await.remove(0);
    let labels = slice.metadata.labels.clone().unwrap();
    assert_eq!(
        labels[MANAGED_BY],
        "endpointslicemirroring-controller.k8s.io"
    );
    assert_eq!(labels["team"], "a");
    let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), &owner.uid),
        ("Endpoints", ep.metadata.uid.as_ref().unwrap())
    );
    // The hand-written Endpoints is left alone by the Endpoints controller.
    let unchanged = eps.get("ext").await.unwrap();
    assert_eq!(
        unchanged.metadata.resource_version,
        ep.metadata.resource_version
    );

    // An edit is mirrored into the same slice.
    let patch = json!({"subsets": [{"addresses": [{"ip": "192.0.2.9"}],
                                    "ports": [{"name": "http", "port": 8080}]}]});
    eps.patch("ext", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_for("edit mirrored", async || {
        let slices = slices_of(&c, "ext").await;
        (slices.len() == 1
            && slices[0].metadata.name == slice.metadata.name
            && slices[0].endpoints.len() == 1
            && slices[0].endpoints[0].addresses == ["192.0.2.9"])
        .then_some(())
    })
    .await;
    let out = kubectl(&c, &["get", "endpoints,endpointslices", "-n", "default"]).await;
    assert!(
        out.contains("endpoints/ext") && out.contains("192.0.2.9:8080"),
        "{out}"
    );
    assert!(
        out.contains(slice.metadata.name.as_deref().unwrap()),
        "{out}"
    );
    // The API server's own kubernetes slice is not the mirror's to remove.
    assert_eq!(slices_of(&c, "kubernetes").await.len(), 1);

    // Deleting the Endpoints takes its mirrored slice with it.
    eps.delete("ext", &DeleteParams::default()).await.unwrap();
    wait_for("mirror gone", async || {
        slices_of(&c, "ext").await.is_empty().then_some(())
    })
    .await;
    c.stop().await;
}
