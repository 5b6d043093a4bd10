//! Shared by the API server's integration tests: a real server on
//! 127.0.0.1 with its admin kubeconfig, a kube-rs client from that
//! kubeconfig, and the real kubectl binaries.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::TryStreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::WatchEvent;

use skiff_apiserver::{ApiServer, ApiServerConfig};
use skiff_store::AnyStore;

/// kubectl 1.33 (what /usr/bin/kubectl picks for a 1.33 server).
pub const KUBECTL_133: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";
/// kubectl 1.32, one minor behind.
pub const KUBECTL_132: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.32";

/// The admin kubeconfig the server writes into its data dir.
pub fn kubeconfig_path(dir: &Path) -> PathBuf {
    dir.join("kubeconfig.yaml")
}

/// Starts the server on the embedded store in `dir`, on `port` (0: any).
pub async fn start_server(dir: &Path, port: u16) -> ApiServer {
    let store = AnyStore::open(&[], dir).await.unwrap();
    let mut config = ApiServerConfig::new(dir);
    config.bind_address = IpAddr::V4(Ipv4Addr::LOCALHOST);
    config.port = port;
    config.write_kubeconfig = Some(kubeconfig_path(dir));
    ApiServer::start(config, store).await.unwrap()
}

/// Starts the server on the embedded store in `dir` (any port) with
/// `configure` applied to its config; also returns the store, so tests can
/// look at keys the API does not show (allocations).
pub async fn start_server_with(
    dir: &Path,
    configure: impl FnOnce(&mut ApiServerConfig),
) -> (ApiServer, AnyStore) {
    let store = AnyStore::open(&[], dir).await.unwrap();
    let mut config = ApiServerConfig::new(dir);
    config.bind_address = IpAddr::V4(Ipv4Addr::LOCALHOST);
    config.port = 0;
    config.write_kubeconfig = Some(kubeconfig_path(dir));
    configure(&mut config);
    let server = ApiServer::start(config, store.clone()).await.unwrap();
    (server, store)
}

/// A kube-rs client authenticated by the admin kubeconfig in `dir`.
pub async fn client(dir: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig_path(dir)).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(cfg).unwrap()
}

/// [`client`] without kube-rs's retries of 429/503/504 answers, for tests
/// that expect those answers.
pub async fn client_without_retries(dir: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig_path(dir)).unwrap();
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    cfg.default_retry = false;
    kube::Client::try_from(cfg).unwrap()
}

/// [`start_server`] and [`client`].
pub async fn start(dir: &Path, port: u16) -> (ApiServer, kube::Client) {
    let server = start_server(dir, port).await;
    (server, client(dir).await)
}

/// A kubectl binary with the server's kubeconfig and a private HOME (its
/// discovery cache stays inside the test).
pub struct Kubectl {
    pub bin: &'static str,
    pub kubeconfig: PathBuf,
    pub home: PathBuf,
}

impl Kubectl {
    /// kubectl `bin` for the server whose data dir is `dir`.
    pub fn new(bin: &'static str, dir: &Path) -> Kubectl {
        Kubectl {
            bin,
            kubeconfig: kubeconfig_path(dir),
            home: dir.to_path_buf(),
        }
    }

    /// Runs kubectl off the async threads: (success, stdout, stderr).
    pub async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let bin = self.bin;
        let kubeconfig = self.kubeconfig.clone();
        let home = self.home.clone();
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new(bin)
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .env("HOME", &home)
                .args(&args)
                .output()
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
        .await
        .unwrap()
    }

    /// Runs kubectl and returns stdout, failing the test if kubectl fails.
    pub async fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args).await;
        assert!(ok, "{} {args:?} failed: {err}", self.bin);
        out
    }
}

/// A boxed watch of `K` (ConfigMaps unless told), as kube-rs streams it.
pub type Events<K = ConfigMap> = BoxStream<'static, kube::Result<WatchEvent<K>>>;

/// The next non-bookmark event, as (type, name).
pub async fn next_event<K: kube::Resource>(w: &mut Events<K>) -> (&'static str, String) {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), w.try_next())
            .await
            .expect("no watch event within 10 s")
            .unwrap()
            .expect("watch ended");
        let name = |o: K| o.meta().name.clone().unwrap();
        return match ev {
            WatchEvent::Added(o) => ("ADDED", name(o)),
            WatchEvent::Modified(o) => ("MODIFIED", name(o)),
            WatchEvent::Deleted(o) => ("DELETED", name(o)),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(e) => ("ERROR", format!("{} {}", e.code, e.reason)),
        };
    }
}

/// `/metrics` as the admin.
pub async fn metrics(client: &kube::Client) -> String {
    client
        .request_text(http::Request::get("/metrics").body(Vec::new()).unwrap())
        .await
        .unwrap()
}
