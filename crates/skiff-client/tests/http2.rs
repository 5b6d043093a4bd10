//! A component's client against the real API server: its requests and
//! watches share one HTTP/2 connection, where kube-rs's own client opens
//! one per request in flight and per watch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ListParams, ObjectMeta, PostParams, WatchEvent, WatchParams};
use skiff_apiserver::{ApiServer, ApiServerConfig};
use skiff_store::AnyStore;

/// Established connections from this host to `port` (client ends).
fn connections_to(port: u16) -> usize {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let remote_port = fields
                        .get(2)
                        .and_then(|a| a.rsplit_once(':'))
                        .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
                    fields.get(3) == Some(&"01") && remote_port == Some(port)
                })
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .count()
}

/// A real API server on loopback and a kubeconfig for it; keep all three
/// alive for the test.
async fn start() -> (tempfile::TempDir, ApiServer, kube::Config) {
    let dir = tempfile::tempdir().unwrap();
    let store = AnyStore::open(&[], dir.path()).await.unwrap();
    let server = ApiServer::start(ApiServerConfig::loopback(dir.path()), store)
        .await
        .unwrap();
    let config = skiff_client::kubeconfig::config_from(&dir.path().join("kubeconfig.yaml"))
        .await
        .unwrap();
    (dir, server, config)
}

/// The config maps of "default" and the resource version to watch from.
async fn config_maps(client: kube::Client) -> (Api<ConfigMap>, String) {
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let version = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    (cms, version)
}

fn config_map(name: String) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Opens `watches` watches and then makes `requests` creates at once; every
/// watch sees every create. Returns the established connections after.
async fn watches_and_requests(client: kube::Client, prefix: &str, port: u16) -> usize {
    let (watches, requests) = (4, 24);
    let (cms, version) = config_maps(client).await;
    let mut streams = Vec::new();
    for _ in 0..watches {
        streams.push(
            cms.watch(&WatchParams::default(), &version)
                .await
                .unwrap()
                .boxed(),
        );
    }
    let creates = (0..requests).map(|i| {
        let cms = cms.clone();
        let cm = config_map(format!("{prefix}-{i}"));
        async move { cms.create(&PostParams::default(), &cm).await }
    });
    futures::future::try_join_all(creates).await.unwrap();
    for stream in &mut streams {
        let added: Vec<_> = stream
            .by_ref()
            .take(requests)
            .map_ok(|e| matches!(e, WatchEvent::Added(_)))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(added, vec![true; requests]);
    }
    connections_to(port)
}

#[tokio::test]
async fn requests_and_watches_share_one_http2_connection() {
    let (_dir, _server, config) = start().await;
    let port = config.cluster_url.port_u16().unwrap();
    assert_eq!(connections_to(port), 0);

    let client = skiff_client::kubeconfig::client(config.clone()).unwrap();
    // The first request learns that the server speaks HTTP/2; everything
    // after shares its connection.
    client.apiserver_version().await.unwrap();
    assert_eq!(watches_and_requests(client, "h2", port).await, 1);

    // kube-rs's own client (HTTP/1.1) on the same server: a connection per
    // watch and more for the creates in flight.
    let h1 = kube::Client::try_from(config).unwrap();
    let h1_connections = watches_and_requests(h1, "h1", port).await;
    assert!(h1_connections > 4, "{h1_connections} HTTP/1.1 connections");
}

#[tokio::test]
async fn a_watch_nobody_reads_holds_up_only_itself() {
    let (_dir, _server, config) = start().await;
    let (cms, version) = config_maps(skiff_client::kubeconfig::client(config).unwrap()).await;
    // Opened and never read: every create below reaches it too.
    let _unread = cms.watch(&WatchParams::default(), &version).await.unwrap();
    // 1 MiB of events for it: far past HTTP/2's default 64 KiB windows.
    for i in 0..128 {
        let mut cm = config_map(format!("big-{i}"));
        cm.data = Some([("blob".to_owned(), "x".repeat(8 << 10))].into());
        tokio::time::timeout(
            std::time::Duration::from_secs(20),
            cms.create(&PostParams::default(), &cm),
        )
        .await
        .unwrap_or_else(|_| panic!("create {i} waited on the unread watch"))
        .unwrap();
    }
}
