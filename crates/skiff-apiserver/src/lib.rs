//! The Kubernetes API server: HTTPS, authn/authz, admission, generic REST
//! handlers, watch cache, discovery.
//!
//! [`ApiServer::start`] loads (or creates) the cluster's certificates, writes
//! the admin kubeconfig, binds the HTTPS port and serves until
//! [`ApiServer::shutdown`]. Only this crate touches the store; every other
//! component talks to the API it serves.

pub mod app;
pub mod authn;
pub mod event_ttl;
pub mod health;
pub mod in_process;
pub mod kubeconfig;
pub mod limits;
pub mod metrics;
pub mod negotiate;
pub mod openapi;
pub mod pki;
pub mod registry;
pub mod request_info;
pub mod response;
mod server;
pub mod version;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use skiff_store::{AnyStore, Store};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::task::AbortOnDropHandle;

use crate::app::App;
use crate::authn::{Authenticator, StaticTokenAuthenticator};
use crate::pki::{Pki, SanConfig};

/// Settings of the API server (`skiff server` flags).
#[derive(Clone, Debug)]
pub struct ApiServerConfig {
    /// `--data-dir`: certificates live in `DATA_DIR/server/tls`.
    pub data_dir: PathBuf,
    /// `--bind-address`.
    pub bind_address: IpAddr,
    /// `--https-listen-port` (0 picks a free port, for tests).
    pub port: u16,
    /// `--write-kubeconfig`: where to write the admin kubeconfig, if anywhere.
    pub write_kubeconfig: Option<PathBuf>,
    /// `--token-auth-file`: static bearer tokens (upstream's CSV format).
    pub token_auth_file: Option<PathBuf>,
    /// Names and addresses the serving certificate must carry.
    pub sans: SanConfig,
    /// `--service-cidr`: where ClusterIPs come from (its first address is
    /// the `default/kubernetes` Service's).
    pub service_cidr: registry::services::ServiceCidr,
    /// `--max-requests-inflight`: read-only requests (get, list) served at
    /// once before the next gets 429 (0: no limit).
    pub max_requests_inflight: usize,
    /// `--max-mutating-requests-inflight`: mutating requests served at once
    /// before the next gets 429 (0: no limit).
    pub max_mutating_requests_inflight: usize,
    /// `--request-timeout`: the longest a request other than a watch (or
    /// another long-running request) may take before it gets 504.
    pub request_timeout: std::time::Duration,
    /// Other components' metrics served on `/metrics` too (the in-process
    /// scheduler's).
    pub metrics_collectors: Vec<metrics::SharedCollector>,
    /// Called on the warm-up thread once the OpenAPI documents are built:
    /// building them decodes megabytes of JSON into trees, freed by then
    /// (the `skiff` binary returns that memory to the OS here).
    pub after_warm_up: Option<fn()>,
    /// `--event-ttl`: how long an event lives after its last write.
    pub event_ttl: std::time::Duration,
}

impl ApiServerConfig {
    /// Defaults for a server with its state in `data_dir`: all addresses,
    /// port 6443, no kubeconfig written, no token file, upstream's in-flight
    /// limits (400 read-only, 200 mutating) and request timeout (60 s).
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ApiServerConfig {
            data_dir: data_dir.into(),
            bind_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 6443,
            write_kubeconfig: None,
            token_auth_file: None,
            sans: SanConfig::default(),
            service_cidr: registry::services::ServiceCidr::default(),
            max_requests_inflight: limits::DEFAULT_MAX_REQUESTS_INFLIGHT,
            max_mutating_requests_inflight: limits::DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT,
            request_timeout: limits::DEFAULT_REQUEST_TIMEOUT,
            metrics_collectors: Vec::new(),
            after_warm_up: None,
            event_ttl: event_ttl::DEFAULT_EVENT_TTL,
        }
    }

    /// [`ApiServerConfig::new`] for tests and tools: 127.0.0.1 on a port
    /// the OS picks, the admin kubeconfig written to
    /// `<data_dir>/kubeconfig.yaml`.
    pub fn loopback(data_dir: impl Into<PathBuf>) -> Self {
        let mut config = ApiServerConfig::new(data_dir);
        config.bind_address = IpAddr::V4(Ipv4Addr::LOCALHOST);
        config.port = 0;
        config.write_kubeconfig = Some(config.data_dir.join("kubeconfig.yaml"));
        config
    }
}

/// Why the API server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Certificates could not be loaded or created.
    #[error("certificates: {0}")]
    Pki(#[from] pki::PkiError),
    /// The kubeconfig could not be written.
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kubeconfig::KubeconfigError),
    /// The token file is unreadable or malformed.
    #[error("token file: {0}")]
    TokenFile(#[from] authn::TokenFileError),
    /// The system namespaces could not be created.
    #[error("creating the system namespaces: {0}")]
    Bootstrap(String),
    /// The port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running API server.
#[derive(Debug)]
pub struct ApiServer {
    local_addr: SocketAddr,
    pki: Arc<Pki>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    store: Option<AnyStore>,
    app: Arc<App>,
    /// Deletes expired events; stopped when the server goes.
    event_ttl: AbortOnDropHandle<()>,
}

impl ApiServer {
    /// Starts serving on `config`'s address with `store` as storage.
    pub async fn start(config: ApiServerConfig, store: AnyStore) -> Result<ApiServer, StartError> {
        let pki = {
            let data_dir = config.data_dir.clone();
            let sans = config.sans.clone();
            tokio::task::spawn_blocking(move || Pki::load_or_create(&data_dir, &sans))
                .await
                .map_err(|e| pki::PkiError::Io {
                    path: config.data_dir.clone(),
                    source: std::io::Error::other(e),
                })??
        };
        let mut authn = Authenticator::new().with_x509(pki.x509_authenticator()?);
        if let Some(path) = &config.token_auth_file {
            authn = authn.with_token_authenticator(Arc::new(StaticTokenAuthenticator::load(path)?));
        }

        let addr = SocketAddr::new(config.bind_address, config.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        if let Some(path) = &config.write_kubeconfig {
            let server = kubeconfig::server_url(config.bind_address, local_addr.port());
            kubeconfig::write_admin(path, &server, &pki)?;
        }

        let metrics = Arc::new(metrics::Metrics::with_collectors(
            config.metrics_collectors.iter().cloned(),
        ));
        let store = store.observed(metrics.store_observer());
        let store_check = {
            let store = store.clone();
            health::Check::new("etcd", move || {
                let store = store.clone();
                async move {
                    store
                        .current_revision()
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string())
                }
            })
        };
        let registry = registry::Registry::new(store.clone(), config.service_cidr)
            .with_kubelet_client(registry::pod_log::KubeletClient::new(pki.kubelet_client())?);
        let advertise = match config.bind_address {
            ip if ip.is_unspecified() => config
                .sans
                .node_ips
                .first()
                .copied()
                .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            ip => ip,
        };
        registry
            .bootstrap(advertise, local_addr.port())
            .await
            .map_err(|e| StartError::Bootstrap(e.to_string()))?;
        let app = Arc::new(App::new(
            authn,
            registry,
            local_addr.to_string(),
            vec![health::Check::ping(), store_check],
            Vec::new(),
            app::Serving {
                metrics,
                max_requests_inflight: config.max_requests_inflight,
                max_mutating_requests_inflight: config.max_mutating_requests_inflight,
                request_timeout: config.request_timeout,
            },
        ));
        // Build the OpenAPI documents (hundreds of ms) off the request path.
        let after_warm_up = config.after_warm_up;
        if let Err(err) = std::thread::Builder::new()
            .name("openapi-warm-up".into())
            .spawn(move || {
                openapi::warm_up();
                if let Some(f) = after_warm_up {
                    f();
                }
            })
        {
            tracing::warn!(error = %err, "cannot build the OpenAPI documents ahead; the first request builds them");
        }
        let event_ttl = AbortOnDropHandle::new(tokio::spawn(event_ttl::run(
            store.clone(),
            config.event_ttl,
        )));
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(pki.server_tls_config()?));
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(server::serve(listener, acceptor, app.clone(), async {
            let _ = stopped.await;
        }));
        tracing::info!(%local_addr, "API server listening");
        Ok(ApiServer {
            local_addr,
            pki: Arc::new(pki),
            stop: Some(stop),
            task,
            store: Some(store),
            app,
            event_ttl,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The cluster's certificates.
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// The API for this process's own components, as the admin user (the
    /// identity of the admin kubeconfig they would otherwise use): see
    /// [`in_process`]. Give it to `kube::Client::new`.
    pub fn in_process_admin(&self) -> in_process::InProcess {
        let admin = std::slice::from_ref(self.pki.admin().cert_der());
        let peer = self.app.peer_identity(Some(admin));
        in_process::InProcess::new(self.app.clone(), peer)
    }

    /// Ends open watches (their clients see their streams end cleanly),
    /// stops accepting connections, waits for requests in flight to finish
    /// and connections to close, then closes the store.
    pub async fn shutdown(mut self) {
        self.app.start_draining();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        // The sweeper's store handle goes before the store closes.
        self.event_ttl.abort();
        let _ = (&mut self.event_ttl).await;
        if let Some(store) = self.store.take() {
            store.close().await;
        }
    }
}
