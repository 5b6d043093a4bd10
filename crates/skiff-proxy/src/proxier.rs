//! The proxy as it runs in the node agent: reflectors on Services,
//! EndpointSlices and its own Node feed [`Proxier::sync`], which computes
//! the ruleset and applies it through an [`Nftables`] backend.
//!
//! The first sync replaces the table whole (whatever a previous run left is
//! gone); later ones apply only the difference to the installed ruleset,
//! which keeps affinity state and makes an endpoint change cost one small
//! transaction. A failed sync leaves the kernel on the last good ruleset
//! (nft transactions are atomic); the next attempt, after a back-off, is a
//! full replacement.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use skiff_sys::conntrack::Conntrack;
use skiff_sys::net::NetOps;
use skiff_sys::nft::{NftError, Nftables};
use tokio::sync::{Notify, watch};

use crate::conntrack::stale_udp_flows;
use crate::model::{self, ServicePortInfo};
use crate::rules::{self, ProxyConfig};
use crate::ruleset::Ruleset;

/// Errors that stop the proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The configuration cannot work.
    #[error("invalid proxy configuration: {0}")]
    InvalidConfig(String),
    /// nftables is unusable (missing binary, kernel without nf_tables).
    #[error("nftables: {0}")]
    Nft(#[from] NftError),
    /// A sysctl the proxy needs could not be set.
    #[error(transparent)]
    Sysctl(#[from] skiff_sys::net::NetError),
}

/// Counters of the proxy's work (read them for metrics and tests).
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// Successful syncs (full or partial; no-op syncs excluded).
    pub syncs: AtomicU64,
    /// Full replacements among them.
    pub full_syncs: AtomicU64,
    /// Failed syncs.
    pub sync_errors: AtomicU64,
    /// Failed conntrack deletions.
    pub conntrack_errors: AtomicU64,
    /// Rules in the installed ruleset.
    pub rules: AtomicU64,
    /// Duration of the last successful sync, in microseconds.
    pub last_sync_micros: AtomicU64,
}

/// What one sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncOutcome {
    /// Whether a script was applied (false: nothing changed).
    pub applied: bool,
    /// Whether it replaced the whole table.
    pub full: bool,
    /// Rules in the ruleset.
    pub rules: usize,
}

/// The last ruleset applied successfully. nft transactions are atomic, so
/// after a failure the kernel still holds it; `trusted` says whether a diff
/// against it may be applied (after a failure the next sync replaces the
/// table whole instead, in case the failure came from a drifted table).
#[derive(Debug)]
struct Installed {
    ruleset: Ruleset,
    ports: Vec<ServicePortInfo>,
    trusted: bool,
}

/// Computes and applies the ruleset.
#[derive(Debug)]
pub struct Proxier<F, C> {
    config: ProxyConfig,
    nft: F,
    conntrack: C,
    installed: Option<Installed>,
    stats: Arc<ProxyStats>,
}

impl<F: Nftables, C: Conntrack> Proxier<F, C> {
    /// A proxier that has installed nothing yet. `config.nodeport_addresses`
    /// are served in addition to the Node's own addresses.
    pub fn new(config: ProxyConfig, nft: F, conntrack: C) -> Result<Self, ProxyError> {
        if !rules::valid_table_name(&config.table) {
            return Err(ProxyError::InvalidConfig(format!(
                "nftables table name {:?}",
                config.table
            )));
        }
        Ok(Self {
            config,
            nft,
            conntrack,
            installed: None,
            stats: Arc::default(),
        })
    }

    /// The counters.
    pub fn stats(&self) -> Arc<ProxyStats> {
        self.stats.clone()
    }

    /// The nftables backend (to inspect fakes in tests).
    pub fn nft(&self) -> &F {
        &self.nft
    }

    /// The conntrack backend (to inspect fakes in tests).
    pub fn conntrack(&self) -> &C {
        &self.conntrack
    }

    /// The ruleset for these objects.
    pub fn compute(
        &self,
        services: &[&Service],
        slices: &[&EndpointSlice],
        node: Option<&Node>,
    ) -> (Ruleset, Vec<ServicePortInfo>) {
        let mut config = self.config.clone();
        let mut addresses: BTreeSet<Ipv4Addr> = config.nodeport_addresses.iter().copied().collect();
        addresses.extend(node_addresses(node));
        config.nodeport_addresses = addresses.into_iter().collect();
        let ports = model::build(services, slices, &config.node_name);
        (rules::compute(&config, &ports), ports)
    }

    /// Brings the kernel in line with these objects. On error the kernel
    /// keeps the previous ruleset and the next sync replaces the table.
    pub async fn sync(
        &mut self,
        services: &[&Service],
        slices: &[&EndpointSlice],
        node: Option<&Node>,
    ) -> Result<SyncOutcome, NftError> {
        let started = Instant::now();
        let (ruleset, ports) = self.compute(services, slices, node);
        let rules = ruleset.rule_count();
        let installed = self
            .installed
            .as_ref()
            .filter(|i| i.trusted)
            .map(|i| &i.ruleset);
        let Some((script, full)) = ruleset.script_from(installed) else {
            return Ok(SyncOutcome {
                applied: false,
                full: false,
                rules,
            });
        };
        if let Err(err) = self.nft.apply(&script).await {
            self.stats.sync_errors.fetch_add(1, Ordering::Relaxed);
            if let Some(installed) = &mut self.installed {
                installed.trusted = false;
            }
            return Err(err);
        }
        let previous = self.installed.take();
        if let Some(previous) = &previous {
            for filter in stale_udp_flows(&previous.ports, &ports) {
                if let Err(err) = self.conntrack.delete_udp(&filter).await {
                    self.stats.conntrack_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %err, "cannot delete stale UDP conntrack entries");
                }
            }
        }
        self.installed = Some(Installed {
            ruleset,
            ports,
            trusted: true,
        });
        self.stats.syncs.fetch_add(1, Ordering::Relaxed);
        if full {
            self.stats.full_syncs.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.rules.store(rules as u64, Ordering::Relaxed);
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.stats.last_sync_micros.store(micros, Ordering::Relaxed);
        Ok(SyncOutcome {
            applied: true,
            full,
            rules,
        })
    }
}

/// The Node's IPv4 InternalIP and ExternalIP addresses.
fn node_addresses(node: Option<&Node>) -> impl Iterator<Item = Ipv4Addr> + '_ {
    node.and_then(|n| n.status.as_ref())
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
        .filter_map(|a| a.address.parse().ok())
}

/// Removes the proxy's table (`skiff agent --cleanup-proxy`); harmless when
/// it does not exist.
pub async fn cleanup(nft: &impl Nftables, table: &str) -> Result<(), ProxyError> {
    if !rules::valid_table_name(table) {
        return Err(ProxyError::InvalidConfig(format!(
            "nftables table name {table:?}"
        )));
    }
    nft.apply(&Ruleset::render_delete(table)).await?;
    Ok(())
}

/// Sysctls the rules need: forwarding, and `route_localnet` when NodePorts
/// answer on 127.0.0.1 (DNAT from a loopback address is otherwise martian).
pub async fn prepare_host(net: &impl NetOps, config: &ProxyConfig) -> Result<(), ProxyError> {
    net.set_sysctl("net.ipv4.ip_forward", "1").await?;
    if config.nodeport_addresses.iter().any(Ipv4Addr::is_loopback) {
        net.set_sysctl("net.ipv4.conf.all.route_localnet", "1")
            .await?;
    }
    Ok(())
}

/// Checks that nftables works at all (binary present, kernel support) by
/// declaring the table, which changes nothing if it exists.
pub async fn preflight(nft: &impl Nftables, table: &str) -> Result<(), ProxyError> {
    if !rules::valid_table_name(table) {
        return Err(ProxyError::InvalidConfig(format!(
            "nftables table name {table:?}"
        )));
    }
    nft.apply(&format!("add table ip {table}\n")).await?;
    Ok(())
}

/// Timing of the run loop.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// How long to gather further changes after the first one.
    pub debounce: Duration,
    /// Recompute (and diff) this often even without changes.
    pub resync: Duration,
    /// First retry delay after a failed sync; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(5),
            resync: Duration::from_secs(30),
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Resolves once `shutdown` says so (or its sender is gone). Returns `()`
/// so no borrow of the channel is held across the await.
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Starts a reflector of `api` that pokes `changed` on every change.
pub(crate) fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    changed: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    tokio::spawn(async move {
        // managedFields are of no use here and can be most of an object
        // (the policy enforcer caches every Pod of the cluster).
        let objects = watcher(api, config)
            .default_backoff()
            .modify(|o| o.meta_mut().managed_fields = None);
        let stream = reflector::reflector(writer, objects).for_each(|event| {
            if matches!(
                event,
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone)
            ) {
                changed.notify_one();
            }
            futures::future::ready(())
        });
        tokio::select! {
            () = stream => {}
            () = stopped(&mut shutdown) => {}
        }
    });
    store
}

/// Runs `proxier` against the API server until `shutdown`. Returns an error
/// only when the proxy cannot work at all (e.g. `nft` missing); failed syncs
/// are logged, counted and retried.
#[tracing::instrument(skip_all, fields(node = %proxier.config.node_name, table = %proxier.config.table))]
pub async fn run<F: Nftables, C: Conntrack>(
    mut proxier: Proxier<F, C>,
    client: kube::Client,
    options: RunOptions,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ProxyError> {
    let changed = Arc::new(Notify::new());
    let services = reflect(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
        changed.clone(),
        shutdown.clone(),
    );
    let slices = reflect(
        Api::<EndpointSlice>::all(client.clone()),
        watcher::Config::default(),
        changed.clone(),
        shutdown.clone(),
    );
    let nodes = reflect(
        Api::<Node>::all(client),
        watcher::Config::default().fields(&format!("metadata.name={}", proxier.config.node_name)),
        changed.clone(),
        shutdown.clone(),
    );
    // The first sync waits for complete lists: a partial view would reject
    // traffic to Services whose endpoints are not listed yet.
    tokio::select! {
        () = stopped(&mut shutdown) => return Ok(()),
        _ = async {
            let _ = services.wait_until_ready().await;
            let _ = slices.wait_until_ready().await;
            let _ = nodes.wait_until_ready().await;
        } => {}
    }
    let mut target = ProxySync {
        proxier: &mut proxier,
        services,
        slices,
        nodes,
    };
    drive("proxy", &mut target, &changed, options, &mut shutdown).await?;
    Ok(())
}

/// The proxy's stores and its proxier: one sync computes from the stores.
struct ProxySync<'a, F, C> {
    proxier: &'a mut Proxier<F, C>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    nodes: Store<Node>,
}

impl<F: Nftables, C: Conntrack> SyncOnce for ProxySync<'_, F, C> {
    async fn sync_once(&mut self) -> Result<(), NftError> {
        let svc = self.services.state();
        let eps = self.slices.state();
        let node = self.nodes.state().into_iter().next();
        let svc_refs: Vec<&Service> = svc.iter().map(AsRef::as_ref).collect();
        let eps_refs: Vec<&EndpointSlice> = eps.iter().map(AsRef::as_ref).collect();
        let outcome = self
            .proxier
            .sync(&svc_refs, &eps_refs, node.as_deref())
            .await?;
        if outcome.applied {
            tracing::debug!(
                full = outcome.full,
                rules = outcome.rules,
                "synced proxy rules"
            );
        }
        Ok(())
    }
}

/// One sync of a rule loop (the proxy's, the policy enforcer's).
pub(crate) trait SyncOnce: Send {
    /// Computes from the current objects and applies.
    fn sync_once(&mut self) -> impl std::future::Future<Output = Result<(), NftError>> + Send;
}

/// The rule loop: syncs `target` first at once, then `options.debounce`
/// after each change and every `options.resync`; a failed sync is retried
/// with back-off (the kernel keeps the previous rules meanwhile). Returns
/// on `shutdown`, or with the error when `nft` is missing altogether.
pub(crate) async fn drive(
    what: &'static str,
    target: &mut impl SyncOnce,
    changed: &Notify,
    options: RunOptions,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), NftError> {
    let mut due = Some(tokio::time::Instant::now());
    let mut backoff: Option<Duration> = None;
    let mut resync_at = tokio::time::Instant::now() + options.resync;
    loop {
        let wait_due = async {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = stopped(shutdown) => return Ok(()),
            () = changed.notified() => {
                // While backing off, a change does not cut the wait short.
                if backoff.is_none() {
                    let at = tokio::time::Instant::now() + options.debounce;
                    due = Some(due.map_or(at, |d| d.min(at)));
                }
            }
            () = tokio::time::sleep_until(resync_at) => {
                resync_at = tokio::time::Instant::now() + options.resync;
                due.get_or_insert_with(tokio::time::Instant::now);
            }
            () = wait_due => {
                due = None;
                match target.sync_once().await {
                    Ok(()) => backoff = None,
                    Err(NftError::NotFound) => return Err(NftError::NotFound),
                    Err(err) => {
                        let delay = backoff.map_or(options.min_backoff, |b| (b * 2).min(options.max_backoff));
                        backoff = Some(delay);
                        due = Some(tokio::time::Instant::now() + delay);
                        tracing::warn!(error = %err, retry_in = ?delay, "{what} rule sync failed; the previous rules stay in place");
                    }
                }
            }
        }
    }
}
