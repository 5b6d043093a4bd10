//! The real API server on an ephemeral port, driven by the real kubectl
//! (1.33 and 1.32) with the kubeconfig the server wrote: version, discovery,
//! health endpoints, and 401 for anonymous requests outside the health paths.

use crate::support;

use std::net::{IpAddr, Ipv4Addr};

use skiff_apiserver::{ApiServer, ApiServerConfig};
use skiff_store::AnyStore;
use support::{KUBECTL_132, KUBECTL_133, Kubectl, start_server};

struct Cluster {
    server: ApiServer,
    dir: tempfile::TempDir,
}

async fn start() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), 0).await;
    Cluster { server, dir }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_reads_version_discovery_and_health() {
    let c = start().await;
    for bin in [KUBECTL_133, KUBECTL_132] {
        let (ok, out, err) = Kubectl::new(bin, c.dir.path())
            .run(&["version", "-o", "json"])
            .await;
        assert!(ok, "{bin} version: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["serverVersion"]["major"], "1");
        assert_eq!(v["serverVersion"]["minor"], "33");

        let (ok, out, err) = Kubectl::new(bin, c.dir.path())
            .run(&["api-resources", "--no-headers"])
            .await;
        assert!(ok, "{bin} api-resources: {err}");
        let rows: Vec<Vec<&str>> = out
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        let pods = rows.iter().find(|r| r[0] == "pods").expect("pods listed");
        assert_eq!(pods[1..], ["po", "v1", "true", "Pod"]);
        let deploy = rows
            .iter()
            .find(|r| r[0] == "deployments")
            .expect("deployments listed");
        assert_eq!(deploy[1..], ["deploy", "apps/v1", "true", "Deployment"]);
        assert!(
            rows.iter()
                .any(|r| r[0] == "clusterroles" && r[2] == "false")
        );

        let (ok, out, err) = Kubectl::new(bin, c.dir.path()).run(&["api-versions"]).await;
        assert!(ok, "{bin} api-versions: {err}");
        for gv in ["v1", "apps/v1", "batch/v1", "rbac.authorization.k8s.io/v1"] {
            assert!(out.lines().any(|l| l == gv), "{gv} missing from:\n{out}");
        }
    }
    let (ok, out, err) = Kubectl::new(KUBECTL_133, c.dir.path())
        .run(&["get", "--raw", "/readyz?verbose"])
        .await;
    assert!(ok, "{err}");
    assert!(
        out.contains("[+]etcd ok") && out.ends_with("readyz check passed\n"),
        "{out}"
    );
    let (ok, out, _) = Kubectl::new(KUBECTL_133, c.dir.path())
        .run(&["get", "--raw", "/livez/ping"])
        .await;
    assert!(ok);
    assert_eq!(out, "ok");
    c.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_clients_get_health_and_version_only() {
    let c = start().await;
    // kube-rs with the server CA and no credentials at all.
    let url = format!("https://127.0.0.1:{}", c.server.local_addr().port());
    let mut config = kube::Config::new(url.parse().unwrap());
    config.root_cert = Some(vec![c.server.pki().server_ca_der().to_vec()]);
    let client = kube::Client::try_from(config).unwrap();
    let get = |path: &'static str| {
        let client = client.clone();
        async move {
            client
                .request_text(http::Request::get(path).body(Vec::new()).unwrap())
                .await
        }
    };
    for path in ["/healthz", "/livez", "/readyz", "/readyz/etcd"] {
        assert_eq!(get(path).await.unwrap(), "ok", "anonymous {path}");
    }
    let version: serde_json::Value = serde_json::from_str(&get("/version").await.unwrap()).unwrap();
    assert_eq!(version["minor"], "33");
    for path in [
        "/api",
        "/apis",
        "/api/v1/namespaces",
        "/metrics",
        "/openapi/v3",
        "/openapi/v2",
    ] {
        match get(path).await {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 401, "{path}");
                assert_eq!(status.reason, "Unauthorized", "{path}");
            }
            other => panic!("anonymous {path} must get 401, got {other:?}"),
        }
    }
    c.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_reuses_certificates_and_kubeconfig_keeps_working() {
    let c = start().await;
    let port = c.server.local_addr().port();
    let ca_before = std::fs::read(c.dir.path().join("server/tls/server-ca.crt")).unwrap();
    c.server.shutdown().await;

    // Same data dir, same port, no new kubeconfig: the old one still works.
    let store = AnyStore::open(&[], c.dir.path()).await.unwrap();
    let mut config = ApiServerConfig::new(c.dir.path());
    config.bind_address = IpAddr::V4(Ipv4Addr::LOCALHOST);
    config.port = port;
    let server = ApiServer::start(config, store).await.unwrap();
    let ca_after = std::fs::read(c.dir.path().join("server/tls/server-ca.crt")).unwrap();
    assert_eq!(ca_before, ca_after);
    let (ok, out, err) = Kubectl::new(KUBECTL_133, c.dir.path())
        .run(&["get", "--raw", "/healthz"])
        .await;
    assert!(ok, "{err}");
    assert_eq!(out, "ok");
    server.shutdown().await;
}
