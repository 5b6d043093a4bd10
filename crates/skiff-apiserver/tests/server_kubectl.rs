//! The real API server on an ephemeral port, driven by the real kubectl
//! (1.33 and 1.32) with the kubeconfig the server wrote: version, discovery,
//! health endpoints, and 401 for anonymous requests outside the health paths.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

use skiff_apiserver::{ApiServer, ApiServerConfig};
use skiff_store::AnyStore;

const KUBECTL_133: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";
const KUBECTL_132: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.32";

struct Cluster {
    server: ApiServer,
    kubeconfig: PathBuf,
    dir: tempfile::TempDir,
}

async fn start() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let store = AnyStore::open(&[], dir.path()).await.unwrap();
    let mut config = ApiServerConfig::new(dir.path());
    config.bind_address = IpAddr::V4(Ipv4Addr::LOCALHOST);
    config.port = 0;
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    config.write_kubeconfig = Some(kubeconfig.clone());
    let server = ApiServer::start(config, store).await.unwrap();
    Cluster {
        server,
        kubeconfig,
        dir,
    }
}

/// Runs kubectl off the test's async threads; returns (success, stdout, stderr).
async fn kubectl(bin: &str, kubeconfig: Option<&Path>, args: &[&str]) -> (bool, String, String) {
    let bin = bin.to_owned();
    let kubeconfig = kubeconfig.map(Path::to_path_buf);
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(&bin);
        if let Some(kc) = kubeconfig {
            cmd.arg("--kubeconfig").arg(kc);
        }
        // Keep kubectl's discovery cache inside the test.
        cmd.env("HOME", std::env::temp_dir());
        let out = cmd.args(&args).output().expect("run kubectl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_reads_version_discovery_and_health() {
    let c = start().await;
    let kc = Some(c.kubeconfig.as_path());
    for bin in [KUBECTL_133, KUBECTL_132] {
        let (ok, out, err) = kubectl(bin, kc, &["version", "-o", "json"]).await;
        assert!(ok, "{bin} version: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["serverVersion"]["major"], "1");
        assert_eq!(v["serverVersion"]["minor"], "33");

        let (ok, out, err) = kubectl(bin, kc, &["api-resources", "--no-headers"]).await;
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

        let (ok, out, err) = kubectl(bin, kc, &["api-versions"]).await;
        assert!(ok, "{bin} api-versions: {err}");
        for gv in ["v1", "apps/v1", "batch/v1", "rbac.authorization.k8s.io/v1"] {
            assert!(out.lines().any(|l| l == gv), "{gv} missing from:\n{out}");
        }
    }
    let (ok, out, err) = kubectl(KUBECTL_133, kc, &["get", "--raw", "/readyz?verbose"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("[+]etcd ok") && out.ends_with("readyz check passed\n"),
        "{out}"
    );
    let (ok, out, _) = kubectl(KUBECTL_133, kc, &["get", "--raw", "/livez/ping"]).await;
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

    // Same data dir, same port: the old kubeconfig still works.
    let store = AnyStore::open(&[], c.dir.path()).await.unwrap();
    let mut config = ApiServerConfig::new(c.dir.path());
    config.bind_address = IpAddr::V4(Ipv4Addr::LOCALHOST);
    config.port = port;
    let server = ApiServer::start(config, store).await.unwrap();
    let ca_after = std::fs::read(c.dir.path().join("server/tls/server-ca.crt")).unwrap();
    assert_eq!(ca_before, ca_after);
    let (ok, out, err) = kubectl(
        KUBECTL_133,
        Some(&c.kubeconfig),
        &["get", "--raw", "/healthz"],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(out, "ok");
    server.shutdown().await;
}
