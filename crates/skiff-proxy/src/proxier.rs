//! The proxy as it runs in the node agent: reflectors on Services,
//! EndpointSlices and its own Node feed [`Proxier::sync`], which computes
//! the ruleset and applies it through an [`Nftables`] backend.
//!
//! The proxier keeps the table as parts, one [`Fragment`](crate::table::Fragment)
//! per Service, each remembered with the resourceVersions of the Service
//! and its EndpointSlices it was computed from. A sync recomputes only the
//! Services whose versions moved (or that have none: objects not from an
//! API server) and applies a transaction touching only what they
//! contribute; an endpoint change costs one small computation and one small
//! transaction whatever the number of Services.
//!
//! The first sync replaces the table whole (whatever a previous run left is
//! gone). A large table is replaced in stages so that nft need not parse
//! its elements (see [`Staged`](crate::table::Staged)): its sets are
//! declared under fresh names, filled over netlink, and then one
//! transaction points the rules at them and drops the old table's objects.
//! A failed sync leaves the kernel on the last good ruleset (nft
//! transactions are atomic); the next attempt, after a back-off, is a full
//! replacement. The periodic resync recomputes every Service, and replaces
//! the table whole when the kernel no longer holds it (deleted or flushed by
//! hand).

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use skiff_client::events::{EventSink, PendingEvent};
use skiff_sys::conntrack::Conntrack;
use skiff_sys::net::NetOps;
use skiff_sys::nft::{NftError, Nftables};
use tokio::sync::{Notify, watch};

use crate::conntrack::stale_udp_flows;
use crate::metrics::{SyncCounters, SyncHistogram};
use crate::model::{self, SERVICE_NAME_LABEL, ServiceKey, ServicePortInfo};
use crate::rules::{self, ProxyConfig};
use crate::ruleset::{Ruleset, set_name};
use crate::table::{Delta, Installed, Table};

/// Tables with at least this many elements are replaced in stages, their
/// elements loaded over netlink; smaller ones in one `nft` script, which
/// costs one process instead of three.
pub const DEFAULT_STAGED_ELEMENTS: usize = 5_000;

/// The set-name suffixes a staged replacement alternates between: the new
/// sets must not collide with the ones serving until the switch.
const SET_SUFFIXES: [&str; 2] = ["", "-g1"];

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
    /// Syncs, failures, rules, durations, last success.
    pub sync: SyncCounters,
    /// Full replacements among the successful syncs.
    pub full_syncs: AtomicU64,
    /// Failed conntrack deletions.
    pub conntrack_errors: AtomicU64,
    /// Successful full replacements' durations.
    pub full_sync_duration: SyncHistogram,
    /// Successful incremental syncs' durations.
    pub partial_sync_duration: SyncHistogram,
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

/// The resourceVersions a Service's fragment was computed from: the
/// Service's and its EndpointSlices' (by name).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Versions {
    service: String,
    slices: Vec<(String, String)>,
}

impl Versions {
    /// `None` when an object has no resourceVersion (it did not come from
    /// an API server, so a change cannot be told from the version).
    fn of(service: &Service, slices: &[&EndpointSlice]) -> Option<Self> {
        Some(Self {
            service: service.metadata.resource_version.clone()?,
            slices: slices
                .iter()
                .map(|s| {
                    Some((
                        s.metadata.name.clone()?,
                        s.metadata.resource_version.clone()?,
                    ))
                })
                .collect::<Option<_>>()?,
        })
    }

    /// Whether these are the versions of `service` and `slices` (sorted by
    /// name), without building them.
    fn current(&self, service: &Service, slices: &[&EndpointSlice]) -> bool {
        service.metadata.resource_version.as_deref() == Some(self.service.as_str())
            && self.slices.len() == slices.len()
            && self.slices.iter().zip(slices).all(|((name, version), s)| {
                s.metadata.name.as_deref() == Some(name.as_str())
                    && s.metadata.resource_version.as_deref() == Some(version.as_str())
            })
    }
}

/// What the proxier knows of one Service.
#[derive(Debug)]
struct Known {
    /// What its fragment was computed from (`None`: recompute every sync).
    versions: Option<Versions>,
    /// Its ports, as in the table.
    ports: Vec<ServicePortInfo>,
}

/// Computes and applies the ruleset.
#[derive(Debug)]
pub struct Proxier<F, C> {
    config: ProxyConfig,
    nft: F,
    conntrack: C,
    /// The table as it should be (`None` before the first sync).
    table: Option<Table>,
    /// Every Service in the table.
    known: HashMap<ServiceKey, Known>,
    /// Whether the kernel holds `table`: after a failed (or no) sync, or
    /// when a check found the table damaged, the next sync replaces it whole.
    in_sync: bool,
    /// Whether anything was ever installed (before that, there are no
    /// stale conntrack entries to delete).
    installed_once: bool,
    /// The ports of each Service changed since the last successful sync as
    /// they were then: stale UDP flows are found against them.
    udp_baseline: BTreeMap<ServiceKey, Vec<ServicePortInfo>>,
    /// The next sync recomputes every Service, whatever its versions.
    recompute_all: bool,
    /// What the installed table's set names end with (see [`SET_SUFFIXES`]).
    suffix: &'static str,
    /// Replace the table in stages from this many elements on.
    staged_elements: usize,
    stats: Arc<ProxyStats>,
    /// Where failed syncs of the run loop are reported.
    events: Option<FailureEvents>,
}

/// The namespace and Service an EndpointSlice belongs to.
fn slice_service(slice: &EndpointSlice) -> Option<(&str, &str)> {
    let namespace = slice.metadata.namespace.as_deref()?;
    let service = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some((namespace, service.as_str()))
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
            table: None,
            known: HashMap::new(),
            in_sync: false,
            installed_once: false,
            udp_baseline: BTreeMap::new(),
            recompute_all: false,
            suffix: "",
            staged_elements: DEFAULT_STAGED_ELEMENTS,
            stats: Arc::default(),
            events: None,
        })
    }

    /// Reports the run loop's failed syncs as Warning Events
    /// (`FailedToSyncProxyRules`) on this node through `sink`.
    pub fn with_events(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.events = Some(FailureEvents {
            sink,
            reason: "FailedToSyncProxyRules",
            what: "the Service proxy's nftables rules",
        });
        self
    }

    /// Replaces the table in stages, elements over netlink, from `elements`
    /// elements on (default [`DEFAULT_STAGED_ELEMENTS`]; 0: always).
    pub fn with_staged_elements(mut self, elements: usize) -> Self {
        self.staged_elements = elements;
        self
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

    /// The configuration with the Node's addresses among the NodePort
    /// addresses.
    fn node_config(&self, node: Option<&Node>) -> ProxyConfig {
        let mut config = self.config.clone();
        let mut addresses: std::collections::BTreeSet<Ipv4Addr> =
            config.nodeport_addresses.iter().copied().collect();
        addresses.extend(node_addresses(node));
        config.nodeport_addresses = addresses.into_iter().collect();
        config
    }

    /// The ruleset for these objects, computed from scratch.
    pub fn compute(
        &self,
        services: &[&Service],
        slices: &[&EndpointSlice],
        node: Option<&Node>,
    ) -> (Ruleset, Vec<ServicePortInfo>) {
        let config = self.node_config(node);
        let ports = model::build(services, slices, &config.node_name);
        (rules::compute(&config, &ports), ports)
    }

    /// Makes the next sync recompute every Service, whatever their versions
    /// say (the periodic resync: a safety net, it should change nothing).
    pub fn recompute_all(&mut self) {
        self.recompute_all = true;
    }

    /// Checks that the kernel still holds the table (someone may have
    /// deleted it, or chains of it); when not, the next sync replaces it
    /// whole. Returns whether it is intact. Only chain names are compared:
    /// `nft list chains` is cheap, while listing any chain's rules makes nft
    /// fetch every set element of the table first (over a second at 10,000
    /// Services), so rules flushed by hand are not noticed.
    pub async fn verify(&mut self) -> Result<bool, NftError> {
        let Some(table) = self.table.as_ref().filter(|_| self.in_sync) else {
            return Ok(false);
        };
        let intact = match self.nft.list("list chains ip\n").await {
            Ok(out) => {
                let installed = Installed::parse(&out, &self.config.table);
                table.base_chains().all(|c| installed.has_chain(c))
            }
            Err(NftError::Rejected(_)) => false,
            Err(err) => {
                self.stats.sync.sync_errors.fetch_add(1, Ordering::Relaxed);
                return Err(err);
            }
        };
        if !intact {
            tracing::warn!(table = %self.config.table, "the proxy's nftables table is gone or damaged; replacing it");
            self.in_sync = false;
        }
        Ok(intact)
    }

    /// Brings the table in line with these objects: recomputes the Services
    /// whose versions moved and records what that changes in `delta`.
    fn update(
        &mut self,
        table: &mut Table,
        services: &[&Service],
        slices: &[&EndpointSlice],
        config: &ProxyConfig,
        mut delta: Option<&mut Delta>,
    ) {
        let mut groups: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for slice in slices {
            if let Some(owner) = slice_service(slice) {
                groups.entry(owner).or_default().push(slice);
            }
        }
        let recompute_all = std::mem::take(&mut self.recompute_all);
        let mut seen = std::collections::HashSet::with_capacity(services.len());
        for service in services {
            let (Some(namespace), Some(name)) = (
                service.metadata.namespace.as_deref(),
                service.metadata.name.as_deref(),
            ) else {
                continue;
            };
            let mut group = groups.remove(&(namespace, name)).unwrap_or_default();
            group.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            let key = ServiceKey::new(namespace, name);
            let unchanged = !recompute_all
                && self
                    .known
                    .get(&key)
                    .and_then(|k| k.versions.as_ref())
                    .is_some_and(|v| v.current(service, &group));
            if !seen.insert(key.clone()) || unchanged {
                continue;
            }
            let ports = model::build(&[*service], &group, &config.node_name);
            table.replace(
                &key,
                Some(rules::service(config, &ports)),
                delta.as_deref_mut(),
            );
            let known = Known {
                versions: Versions::of(service, &group),
                ports,
            };
            let old = self.known.insert(key.clone(), known);
            if self.installed_once {
                self.udp_baseline
                    .entry(key)
                    .or_insert_with(|| old.map(|k| k.ports).unwrap_or_default());
            }
        }
        let gone: Vec<ServiceKey> = self
            .known
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            table.replace(&key, None, delta.as_deref_mut());
            let old = self.known.remove(&key);
            if self.installed_once {
                self.udp_baseline
                    .entry(key)
                    .or_insert_with(|| old.map(|k| k.ports).unwrap_or_default());
            }
        }
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
        let result = self.sync_inner(services, slices, node).await;
        let elapsed = started.elapsed();
        self.stats.sync.record(elapsed, &result);
        if let Ok(outcome) = &result
            && outcome.applied
        {
            let by_kind = if outcome.full {
                self.stats.full_syncs.fetch_add(1, Ordering::Relaxed);
                &self.stats.full_sync_duration
            } else {
                &self.stats.partial_sync_duration
            };
            by_kind.observe(elapsed);
        }
        result
    }

    async fn sync_inner(
        &mut self,
        services: &[&Service],
        slices: &[&EndpointSlice],
        node: Option<&Node>,
    ) -> Result<SyncOutcome, NftError> {
        let config = self.node_config(node);
        let base = rules::base(&config);
        let mut delta = Delta::default();
        let mut table = match self.table.take() {
            Some(mut table) => {
                table.set_base(base, &mut delta);
                table
            }
            None => Table::new(base),
        };
        // When the table will be replaced whole, what changed does not
        // matter.
        let record = self.in_sync.then_some(&mut delta);
        self.update(&mut table, services, slices, &config, record);
        let rules = table.rule_count();
        // A diff of what changed, or else (nothing known to be installed,
        // or a change nft cannot make in place) the whole table.
        let diff = match self
            .in_sync
            .then(|| table.render_delta(&delta, self.suffix))
        {
            Some(Ok(None)) => {
                self.table = Some(table);
                return Ok(SyncOutcome {
                    applied: false,
                    full: false,
                    rules,
                });
            }
            Some(Ok(Some(script))) => Some(script),
            _ => None,
        };
        let full = diff.is_none();
        let applied = match diff {
            Some(script) => self.nft.apply(&script).await.map(|()| self.suffix),
            None => self.replace_whole(&table).await,
        };
        self.table = Some(table);
        match applied {
            Ok(suffix) => self.suffix = suffix,
            Err(err) => {
                self.in_sync = false;
                return Err(err);
            }
        }
        self.in_sync = true;
        self.installed_once = true;
        self.delete_stale_udp_flows().await;
        Ok(SyncOutcome {
            applied: true,
            full,
            rules,
        })
    }

    /// Replaces whatever the kernel holds with `table`; returns the suffix
    /// its sets now carry. A large table goes in stages; should that fail
    /// (say, an old table in the way), in one script.
    async fn replace_whole(&self, table: &Table) -> Result<&'static str, NftError> {
        if table.element_count() >= self.staged_elements {
            match self.replace_staged(table).await {
                Ok(suffix) => return Ok(suffix),
                Err(NftError::NotFound) => return Err(NftError::NotFound),
                Err(err) => tracing::warn!(
                    error = %err,
                    "staged replacement of the proxy's table failed; replacing it in one script"
                ),
            }
        }
        self.nft.apply(&table.render_full()).await?;
        Ok(SET_SUFFIXES[0])
    }

    /// See [`Staged`](crate::table::Staged).
    async fn replace_staged(&self, table: &Table) -> Result<&'static str, NftError> {
        let name = &self.config.table;
        let listing = self
            .nft
            .list("list chains ip\nlist sets ip\nlist maps ip\n")
            .await?;
        let installed = Installed::parse(&listing, name);
        let suffix = SET_SUFFIXES
            .into_iter()
            .find(|suffix| {
                table
                    .set_names()
                    .all(|set| !installed.has_set(&set_name(set, suffix)))
            })
            .ok_or_else(|| NftError::Rejected("no free names for fresh sets".to_string()))?;
        let staged = table.render_staged(suffix, &installed, rules::element_type);
        self.nft.apply(&staged.prepare).await?;
        self.nft.add_elements(name, &staged.loads).await?;
        self.nft.apply(&staged.switch).await?;
        Ok(suffix)
    }

    /// Deletes the UDP flows the Services changed since the last successful
    /// sync left stale.
    async fn delete_stale_udp_flows(&mut self) {
        let baseline = std::mem::take(&mut self.udp_baseline);
        let previous: Vec<ServicePortInfo> = baseline.values().flatten().cloned().collect();
        let current: Vec<ServicePortInfo> = baseline
            .keys()
            .filter_map(|k| self.known.get(k))
            .flat_map(|k| k.ports.iter().cloned())
            .collect();
        for filter in stale_udp_flows(&previous, &current) {
            if let Err(err) = self.conntrack.delete_udp(&filter).await {
                self.stats.conntrack_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %err, "cannot delete stale UDP conntrack entries");
            }
        }
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
    /// Recompute every Service (and check the table is still there) this
    /// often even without changes.
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
        verify: false,
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
    /// Check the table in the kernel before the next sync.
    verify: bool,
}

impl<F: Nftables, C: Conntrack> SyncOnce for ProxySync<'_, F, C> {
    fn resync_due(&mut self) {
        self.proxier.recompute_all();
        self.verify = true;
    }

    fn sync_failed(&mut self, err: &NftError) {
        if let Some(events) = &self.proxier.events {
            events.record(&self.proxier.config.node_name, err);
        }
    }

    async fn sync_once(&mut self) -> Result<(), NftError> {
        if std::mem::take(&mut self.verify) {
            self.proxier.verify().await?;
        }
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
    /// The periodic resync is due (the next `sync_once` follows at once).
    fn resync_due(&mut self) {}

    /// Computes from the current objects and applies.
    fn sync_once(&mut self) -> impl std::future::Future<Output = Result<(), NftError>> + Send;

    /// A sync failed with `err` (it is retried after a back-off).
    fn sync_failed(&mut self, _err: &NftError) {}
}

/// Reports a rule loop's failed syncs as Warning Events on its Node (the
/// reference kubelet and kube-proxy use: the UID is the node's name, which
/// is what `kubectl describe node` looks for). Repeats of one failure have
/// the same note, so the recorder folds them into one Event series.
#[derive(Debug, Clone)]
pub(crate) struct FailureEvents {
    pub(crate) sink: Arc<dyn EventSink>,
    /// `reason` of the Events, e.g. `FailedToSyncProxyRules`.
    pub(crate) reason: &'static str,
    /// What failed, for the note, e.g. "the Service proxy's nftables rules".
    pub(crate) what: &'static str,
}

impl FailureEvents {
    pub(crate) fn record(&self, node_name: &str, err: &NftError) {
        self.sink.record(PendingEvent {
            regarding: ObjectReference {
                kind: Some("Node".to_owned()),
                name: Some(node_name.to_owned()),
                uid: Some(node_name.to_owned()),
                ..ObjectReference::default()
            },
            normal: false,
            reason: self.reason.to_owned(),
            action: "SyncRules".to_owned(),
            note: format!(
                "Failed to sync {}; the previous rules stay in place and the sync is retried: {err}",
                self.what
            ),
        });
    }
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
                target.resync_due();
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
                        target.sync_failed(&err);
                    }
                }
            }
        }
    }
}
