//! Cluster DNS, as CoreDNS's `kubernetes` plugin answers it (`pods
//! insecure`), run by `skiff server`.
//!
//! - [`data`]: Namespaces, Services and EndpointSlices from the API (kept
//!   by [`watch`]), indexed in memory;
//! - [`answer`]: the pure answer function (names → records, NXDOMAIN vs
//!   NODATA, SOA, TTLs);
//! - [`message`]: bytes in, bytes out (FORMERR, EDNS, truncation);
//! - [`forward`]: names outside the zone go to the host's resolvers;
//! - [`cache`]: their answers are kept up to 30 s, as k3s's `cache 30`;
//! - [`serve`]: the UDP and TCP listeners;
//! - [`kube_dns`]: the `kube-system/kube-dns` Service and its EndpointSlice
//!   pointing at the listener, so the proxy sends `--cluster-dns:53` here.

pub mod answer;
pub mod cache;
pub mod data;
pub mod forward;
pub mod kube_dns;
pub mod message;
pub mod serve;
pub mod watch;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};

use crate::rules::Cidr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Record, RecordType};

pub use answer::{Answer, Outcome, Zone};
pub use data::ClusterData;
pub use message::{Step, Transport};

/// Settings of the cluster DNS server (`skiff server` flags).
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Where to listen (UDP and TCP); port 0 picks one (tests).
    pub listen: SocketAddr,
    /// The address published in `kube-dns`'s EndpointSlice (the listener's
    /// when it is not a wildcard address).
    pub advertise: IpAddr,
    /// `--cluster-domain`.
    pub cluster_domain: String,
    /// `--cluster-dns`: the `kube-dns` Service's ClusterIP.
    pub cluster_dns: IpAddr,
    /// Resolvers for names outside the cluster; `None`: the host's
    /// (`/etc/resolv.conf`).
    pub upstreams: Option<Vec<SocketAddr>>,
    /// Keep the `kube-system/kube-dns` Service and EndpointSlice.
    pub publish_service: bool,
    /// Who gets names outside the cluster resolved (forwarded upstream).
    pub recursion: Recursion,
}

/// Who may have names outside the cluster resolved through the upstreams
/// (BIND's `allow-recursion`): loopback always, plus the listed networks
/// (the server passes the pod and Service networks and its node IP).
/// Everyone else gets REFUSED for such names, so a DNS port reachable from
/// outside is no open resolver; cluster names are answered to anyone.
#[derive(Debug, Clone, Default)]
pub enum Recursion {
    /// Any client.
    #[default]
    Anyone,
    /// Loopback and these networks.
    From(Vec<Cidr>),
}

impl Recursion {
    /// Whether `client` may have outside names resolved.
    pub fn allows(&self, client: IpAddr) -> bool {
        match self {
            Recursion::Anyone => true,
            Recursion::From(networks) => {
                client.is_loopback()
                    || match client {
                        IpAddr::V4(v4) => networks.iter().any(|n| n.contains(v4)),
                        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| {
                            v4.is_loopback() || networks.iter().any(|n| n.contains(v4))
                        }),
                    }
            }
        }
    }
}

/// Why cluster DNS could not start.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// `--cluster-domain` is not a DNS name.
    #[error("cluster domain {domain:?} is not a DNS name: {reason}")]
    Domain {
        /// The domain given.
        domain: String,
        /// Why.
        reason: String,
    },
    /// The listener could not be bound.
    #[error("cannot listen on {addr} (UDP and TCP): {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Answers requests: the cluster's data, the zone and the upstreams.
#[derive(Debug)]
pub struct Resolver {
    data: Arc<RwLock<ClusterData>>,
    synced: Arc<AtomicBool>,
    zone: Zone,
    upstreams: Vec<SocketAddr>,
    recursion: Recursion,
    cache: cache::Cache,
}

impl Resolver {
    /// A resolver for `zone` over `data` (answers SERVFAIL in the zone until
    /// `synced` is set), forwarding other names to `upstreams`.
    pub fn new(
        data: Arc<RwLock<ClusterData>>,
        synced: Arc<AtomicBool>,
        zone: Zone,
        upstreams: Vec<SocketAddr>,
    ) -> Resolver {
        Resolver {
            data,
            synced,
            zone,
            upstreams,
            recursion: Recursion::Anyone,
            cache: cache::Cache::default(),
        }
    }

    /// The same resolver, forwarding only for the clients `recursion` allows.
    pub fn with_recursion(mut self, recursion: Recursion) -> Resolver {
        self.recursion = recursion;
        self
    }

    /// The cluster's data this resolver answers from.
    pub fn data(&self) -> &Arc<RwLock<ClusterData>> {
        &self.data
    }

    /// The fast part: what to do with `bytes` (an in-zone reply is final).
    pub fn step(&self, bytes: &[u8], transport: Transport) -> Step {
        let data = self.data.read().unwrap_or_else(|e| e.into_inner());
        message::process(
            &data,
            &self.zone,
            bytes,
            transport,
            self.synced.load(Ordering::Acquire),
        )
    }

    /// The slow part of [`Resolver::step`]: forwarding and chasing CNAMEs
    /// upstream (for a `client` the recursion policy allows). `bytes` is
    /// the request.
    pub async fn finish(
        &self,
        step: Step,
        bytes: &[u8],
        transport: Transport,
        client: IpAddr,
    ) -> Option<Vec<u8>> {
        let recurse = self.recursion.allows(client);
        match step {
            Step::Reply(reply) => Some(reply),
            Step::Drop => None,
            Step::Forward(request) => {
                if self.upstreams.is_empty() || !recurse {
                    return Some(message::reply_error(
                        &request,
                        ResponseCode::Refused,
                        transport,
                    ));
                }
                let key = cache::key_of(&request);
                if let Some(cached) = key.as_ref().and_then(|k| self.cache.get(k, Instant::now())) {
                    return Some(message::from_cache(&request, cached, transport));
                }
                match forward::exchange(&self.upstreams, bytes, transport).await {
                    Some(reply) => {
                        if let (Some(key), Ok(parsed)) = (key, Message::from_vec(&reply)) {
                            self.cache.put(key, &parsed, Instant::now());
                        }
                        Some(reply)
                    }
                    None => Some(message::reply_error(
                        &request,
                        ResponseCode::ServFail,
                        transport,
                    )),
                }
            }
            Step::Chase(request, answer) => {
                let qtype = request
                    .queries
                    .first()
                    .map_or(RecordType::A, Query::query_type);
                let extra = match &answer.chase {
                    Some(target) if recurse => {
                        self.lookup_upstream(Query::query(target.clone(), qtype))
                            .await
                    }
                    _ => Vec::new(),
                };
                Some(message::chased(&request, answer, extra, transport))
            }
        }
    }

    /// Both parts: the reply to `bytes` from `client`, if any.
    pub async fn respond(
        &self,
        bytes: &[u8],
        transport: Transport,
        client: IpAddr,
    ) -> Option<Vec<u8>> {
        let step = self.step(bytes, transport);
        self.finish(step, bytes, transport, client).await
    }

    /// The answer records of `query` from the upstreams (UDP, then TCP if
    /// the reply was truncated); empty when they fail.
    async fn lookup_upstream(&self, query: Query) -> Vec<Record> {
        if self.upstreams.is_empty() {
            return Vec::new();
        }
        let bytes = message::query_for(rand::random(), query);
        let mut reply = forward::exchange(&self.upstreams, &bytes, Transport::Udp).await;
        if reply
            .as_ref()
            .and_then(|r| r.get(2))
            .is_some_and(|b| b & 0x02 != 0)
        {
            reply = forward::exchange(&self.upstreams, &bytes, Transport::Tcp).await;
        }
        match reply.map(|r| Message::from_vec(&r)) {
            Some(Ok(m)) if m.metadata.response_code == ResponseCode::NoError => m.answers,
            _ => Vec::new(),
        }
    }
}

/// A bound cluster DNS server, ready to [`DnsServer::run`].
pub struct DnsServer {
    config: DnsConfig,
    listener: serve::Listener,
    resolver: Arc<Resolver>,
    synced: Arc<AtomicBool>,
    client: kube::Client,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer")
            .field("config", &self.config)
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl DnsServer {
    /// Binds the listeners (UDP and TCP at `config.listen`); answers come
    /// once [`DnsServer::run`] runs.
    pub async fn bind(config: DnsConfig, client: kube::Client) -> Result<DnsServer, DnsError> {
        let zone = Zone::new(&config.cluster_domain, Some(config.cluster_dns)).map_err(|e| {
            DnsError::Domain {
                domain: config.cluster_domain.clone(),
                reason: e.to_string(),
            }
        })?;
        let listener = serve::Listener::bind(config.listen)
            .await
            .map_err(|source| DnsError::Bind {
                addr: config.listen,
                source,
            })?;
        let local = listener.local_addr();
        let upstreams = match &config.upstreams {
            Some(u) => u.clone(),
            None => {
                let mut skip = vec![local];
                if local.ip().is_unspecified() {
                    skip.push(SocketAddr::new(config.advertise, local.port()));
                }
                forward::host_upstreams(&skip)
            }
        };
        let data = Arc::new(RwLock::new(ClusterData::default()));
        let synced = Arc::new(AtomicBool::new(false));
        let resolver = Arc::new(
            Resolver::new(data, synced.clone(), zone, upstreams)
                .with_recursion(config.recursion.clone()),
        );
        Ok(DnsServer {
            config,
            listener,
            resolver,
            synced,
            client,
        })
    }

    /// Where it listens (UDP and TCP share the port).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// Watches the cluster, keeps `kube-dns` and serves until `shutdown`.
    pub async fn run(self, shutdown: tokio::sync::watch::Receiver<bool>) {
        let local = self.local_addr();
        tracing::info!(addr = %local, domain = %self.config.cluster_domain, "cluster DNS listening");
        let watching = tokio::spawn(watch::run(
            self.client.clone(),
            self.resolver.data().clone(),
            self.synced,
            shutdown.clone(),
        ));
        let publishing = self.config.publish_service.then(|| {
            let address = if local.ip().is_unspecified() {
                self.config.advertise
            } else {
                local.ip()
            };
            let address = (!address.is_loopback()).then_some(address);
            tokio::spawn(kube_dns::maintain(
                self.client.clone(),
                kube_dns::KubeDns {
                    cluster_ip: self.config.cluster_dns,
                    address,
                    port: local.port(),
                },
                shutdown.clone(),
            ))
        });
        self.listener.serve(self.resolver, shutdown).await;
        let _ = watching.await;
        if let Some(task) = publishing {
            let _ = task.await;
        }
    }
}
