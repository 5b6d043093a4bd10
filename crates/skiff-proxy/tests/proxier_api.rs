//! The proxier's run loop against the real API server on 127.0.0.1, with
//! the recording nftables fake: the first sync replaces the table, object
//! changes become incremental scripts, failures are retried as full syncs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use skiff_apiserver::{ApiServer, ApiServerConfig};
use skiff_client::EventRecorder;
use skiff_proxy::metrics::NetworkMetrics;
use skiff_proxy::netpol::{Enforcer, NetpolConfig};
use skiff_proxy::{Proxier, ProxyConfig, RunOptions};
use skiff_store::AnyStore;
use skiff_sys::conntrack::fake::RecordingConntrack;
use skiff_sys::nft::Nftables;
use skiff_sys::nft::fake::RecordingNftables;

async fn start_server(dir: &Path) -> (ApiServer, kube::Client) {
    let store = AnyStore::open(&[], dir).await.unwrap();
    let server = ApiServer::start(ApiServerConfig::loopback(dir), store)
        .await
        .unwrap();
    let client = skiff_client::kubeconfig::client_from(&dir.join("kubeconfig.yaml"))
        .await
        .unwrap();
    (server, client)
}

/// Shares one recording fake between the proxier and the test.
#[derive(Debug, Clone, Default)]
struct Shared(Arc<RecordingNftables>);

impl Nftables for Shared {
    async fn apply(&self, script: &str) -> Result<(), skiff_sys::nft::NftError> {
        self.0.apply(script).await
    }

    async fn list(&self, script: &str) -> Result<String, skiff_sys::nft::NftError> {
        self.0.list(script).await
    }
}

async fn wait_for_script(nft: &RecordingNftables, what: &str, f: impl Fn(&str) -> bool) -> usize {
    for _ in 0..300 {
        if let Some(i) = nft.scripts().iter().rposition(|s| f(s)) {
            return i;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no script {what}; got {:#?}", nft.scripts());
}

/// Stops a run loop and checks that it ended cleanly within 10 s.
async fn stop(
    stop_tx: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), skiff_proxy::ProxyError>>,
) {
    stop_tx.send_replace(true);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// The run loop's timing with a short first retry.
fn fast_retries() -> RunOptions {
    RunOptions {
        min_backoff: Duration::from_millis(100),
        ..RunOptions::default()
    }
}

/// The value of the sample `series` (name and labels) in `text`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

/// The events.k8s.io Event with `reason` (cluster-scoped objects' Events
/// go to `default`).
async fn wait_for_event(client: &kube::Client, reason: &str) -> Event {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    for _ in 0..200 {
        let list = events.list(&Default::default()).await.unwrap();
        if let Some(e) = list
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some(reason))
        {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {reason} event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxier_follows_services_endpoint_slices_and_its_node() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, client) = start_server(dir.path()).await;
    let nft = Shared::default();
    let config = ProxyConfig {
        table: "skiff-proxy".into(),
        node_name: "node-a".into(),
        nodeport_addresses: vec![Ipv4Addr::LOCALHOST],
        cluster_cidr: Some("10.42.0.0/16".parse().unwrap()),
    };
    let recorder = EventRecorder::spawn(client.clone(), "kube-proxy", "node-a", 100);
    let proxier = Proxier::new(config, nft.clone(), RecordingConntrack::new())
        .unwrap()
        .with_events(Arc::new(recorder));
    let stats = proxier.stats();
    let metrics = NetworkMetrics::new(Some(stats.clone()), None);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(skiff_proxy::proxier::run(
        proxier,
        client.clone(),
        fast_retries(),
        stop_rx,
    ));

    // The first sync is a full replacement.
    wait_for_script(&nft.0, "replacing the table", |s| {
        s.starts_with("add table ip skiff-proxy\ndelete table ip skiff-proxy\n")
    })
    .await;

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "web"},
        "spec": {"type": "NodePort", "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}))
    .unwrap();
    let svc = services.create(&PostParams::default(), &svc).await.unwrap();
    let ip = svc.spec.unwrap().cluster_ip.unwrap();
    // No endpoints yet: rejected.
    wait_for_script(&nft.0, "rejecting the new Service", |s| {
        s.contains(&format!(
            "no-endpoint-services {{ {ip} . tcp . 80 : goto reject-chain }}"
        ))
    })
    .await;

    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "web-manual", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.42.0.7"], "conditions": {"ready": true}, "nodeName": "node-a"}]}))
    .unwrap();
    slices.create(&PostParams::default(), &slice).await.unwrap();
    let added = wait_for_script(&nft.0, "routing to the endpoint", |s| {
        s.contains("dnat to 10.42.0.7:8080")
    })
    .await;
    let script = &nft.0.scripts()[added];
    assert!(
        !script.contains("delete table"),
        "an incremental sync:\n{script}"
    );
    assert!(script.contains(&format!(
        "delete element ip skiff-proxy no-endpoint-services {{ {ip} . tcp . 80 }}"
    )));

    // The Node's address joins the NodePort addresses.
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "node-a"}})).unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    nodes
        .patch_status(
            "node-a",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.44"}]}}),
            ),
        )
        .await
        .unwrap();
    wait_for_script(&nft.0, "adding the node address", |s| {
        s.contains("add element ip skiff-proxy nodeport-ips { 192.0.2.44 }")
    })
    .await;

    // A failing nft: retried with back-off, then a full replacement.
    nft.0.reject(Some("Error: simulated"));
    slices
        .patch(
            "web-manual",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"endpoints": [{"addresses": ["10.42.0.8"], "conditions": {"ready": true}}]}),
            ),
        )
        .await
        .unwrap();
    for _ in 0..200 {
        if stats.sync.sync_errors.load(Ordering::Relaxed) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        stats.sync.sync_errors.load(Ordering::Relaxed) >= 2,
        "retried"
    );
    // Reported: counted under kube-proxy's metric name, and as a Warning
    // Event on the Node (repeats folded into one series).
    let failures = sample(
        &metrics.encode_text(),
        "kubeproxy_sync_proxy_rules_nftables_sync_failures_total{ip_family=\"IPv4\"}",
    );
    assert!(failures >= 2.0, "{failures}");
    let event = wait_for_event(&client, "FailedToSyncProxyRules").await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(event.reporting_controller.as_deref(), Some("kube-proxy"));
    let regarding = event.regarding.unwrap();
    assert_eq!(regarding.kind.as_deref(), Some("Node"));
    assert_eq!(regarding.name.as_deref(), Some("node-a"));
    let note = event.note.unwrap_or_default();
    assert!(
        note.contains("the previous rules stay in place") && note.contains("Error: simulated"),
        "{note}"
    );
    let failed_at = sample(
        &metrics.encode_text(),
        "kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family=\"IPv4\"}",
    );
    assert!(failed_at > 0.0, "synced before the failures");
    nft.0.reject(None);
    let healed = wait_for_script(&nft.0, "a full sync with the new endpoint", |s| {
        s.starts_with("add table ip skiff-proxy\ndelete table")
            && s.contains("dnat to 10.42.0.8:8080")
    })
    .await;
    assert!(!nft.0.scripts()[healed].contains("10.42.0.7"));
    // The healing sync moved the last-success time, and the full sync shows
    // among the full syncs' durations.
    for _ in 0..100 {
        let text = metrics.encode_text();
        if sample(
            &text,
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family=\"IPv4\"}",
        ) > failed_at
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = metrics.encode_text();
    assert!(
        sample(
            &text,
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family=\"IPv4\"}"
        ) > failed_at,
        "{text}"
    );
    assert!(
        sample(
            &text,
            "kubeproxy_sync_full_proxy_rules_duration_seconds_count{ip_family=\"IPv4\"}"
        ) >= 2.0,
        "{text}"
    );
    assert!(
        sample(
            &text,
            "kubeproxy_sync_partial_proxy_rules_duration_seconds_count{ip_family=\"IPv4\"}"
        ) >= 1.0,
        "{text}"
    );

    stop(stop_tx, task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_network_policy_syncs_are_events_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, client) = start_server(dir.path()).await;
    let nft = Shared::default();
    // nft refuses from the start: the first sync fails and is retried.
    nft.0.reject(Some("Error: no such file"));
    let recorder = EventRecorder::spawn(client.clone(), "skiff-network-policy", "node-b", 100);
    let config = NetpolConfig {
        table: "skiff-netpol".into(),
        node_name: "node-b".into(),
    };
    let enforcer = Enforcer::new(config, nft.clone())
        .unwrap()
        .with_events(Arc::new(recorder));
    let stats = enforcer.stats();
    let metrics = NetworkMetrics::new(None, Some(stats.clone()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(skiff_proxy::netpol::run(
        enforcer,
        client.clone(),
        fast_retries(),
        stop_rx,
    ));

    let event = wait_for_event(&client, "FailedToSyncNetworkPolicyRules").await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(
        event.regarding.and_then(|r| r.name).as_deref(),
        Some("node-b")
    );
    assert!(
        event
            .note
            .unwrap_or_default()
            .contains("Error: no such file"),
        "the note carries nft's message"
    );
    let text = metrics.encode_text();
    assert!(sample(&text, "skiff_network_policy_sync_failures_total") >= 1.0);
    assert_eq!(
        sample(&text, "skiff_network_policy_sync_last_timestamp_seconds"),
        0.0,
        "never synced"
    );

    // Healed: the next retry installs the table and the time is recorded.
    nft.0.reject(None);
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), "default");
    let deny: NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"name": "deny"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}))
    .unwrap();
    policies
        .create(&PostParams::default(), &deny)
        .await
        .unwrap();
    for _ in 0..200 {
        if stats.sync.last_sync.get().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = metrics.encode_text();
    assert!(
        sample(&text, "skiff_network_policy_sync_last_timestamp_seconds") > 0.0,
        "{text}"
    );
    assert!(sample(&text, "skiff_network_policy_rules") > 0.0, "{text}");

    stop(stop_tx, task).await;
}
