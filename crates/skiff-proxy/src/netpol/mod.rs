//! NetworkPolicy enforcement (networking.k8s.io/v1) in the node agent.
//!
//! [`model`] extracts what matters from Pods, Namespaces and
//! NetworkPolicies, [`rules::compute`] turns it into the ruleset of one
//! table of this node (policies apply to this node's pods: ingress where
//! the destination runs, egress where the source runs), and the
//! [`Enforcer`] applies it through an `Nftables` backend the way the
//! proxier does: the first sync replaces the table (stale rules of an
//! earlier run go), later ones apply the difference, a failed one leaves the
//! previous rules and makes the next a full replacement.

pub mod model;
pub mod rules;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use skiff_client::events::EventSink;
use skiff_sys::nft::{NftError, Nftables};
use tokio::sync::{Notify, watch};

use crate::metrics::SyncCounters;
use crate::proxier::{FailureEvents, ProxyError, RunOptions, SyncOnce, drive, reflect, stopped};
use crate::ruleset::Ruleset;

pub use crate::proxier::SyncOutcome;
pub use rules::{DEFAULT_TABLE, NetpolConfig};

/// Counters of the enforcer's work.
#[derive(Debug, Default)]
pub struct NetpolStats {
    /// Syncs, failures, rules, durations, last success.
    pub sync: SyncCounters,
}

/// Computes and applies the policy ruleset of this node.
#[derive(Debug)]
pub struct Enforcer<F> {
    config: NetpolConfig,
    nft: F,
    /// The last ruleset applied, when a diff against it can be trusted.
    installed: Option<Ruleset>,
    stats: Arc<NetpolStats>,
    /// Where failed syncs of the run loop are reported.
    events: Option<FailureEvents>,
}

impl<F: Nftables> Enforcer<F> {
    /// An enforcer that has installed nothing yet.
    pub fn new(config: NetpolConfig, nft: F) -> Result<Self, ProxyError> {
        if !crate::rules::valid_table_name(&config.table) {
            return Err(ProxyError::InvalidConfig(format!(
                "nftables table name {:?}",
                config.table
            )));
        }
        Ok(Self {
            config,
            nft,
            installed: None,
            stats: Arc::default(),
            events: None,
        })
    }

    /// Reports the run loop's failed syncs as Warning Events
    /// (`FailedToSyncNetworkPolicyRules`) on this node through `sink`.
    pub fn with_events(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.events = Some(FailureEvents {
            sink,
            reason: "FailedToSyncNetworkPolicyRules",
            what: "the NetworkPolicy nftables rules",
        });
        self
    }

    /// The counters.
    pub fn stats(&self) -> Arc<NetpolStats> {
        self.stats.clone()
    }

    /// The nftables backend (to inspect fakes in tests).
    pub fn nft(&self) -> &F {
        &self.nft
    }

    /// The ruleset for these objects.
    pub fn compute(
        &self,
        policies: &[&NetworkPolicy],
        pods: &[&Pod],
        namespaces: &[&Namespace],
    ) -> Ruleset {
        rules::compute(
            &self.config,
            &model::policies(policies),
            &model::pods(pods),
            &model::namespaces(namespaces),
        )
    }

    /// Brings the kernel in line with these objects. On error the kernel
    /// keeps the previous ruleset and the next sync replaces the table.
    pub async fn sync(
        &mut self,
        policies: &[&NetworkPolicy],
        pods: &[&Pod],
        namespaces: &[&Namespace],
    ) -> Result<SyncOutcome, NftError> {
        let started = std::time::Instant::now();
        let result = self.sync_inner(policies, pods, namespaces).await;
        self.stats.sync.record(started.elapsed(), &result);
        result
    }

    async fn sync_inner(
        &mut self,
        policies: &[&NetworkPolicy],
        pods: &[&Pod],
        namespaces: &[&Namespace],
    ) -> Result<SyncOutcome, NftError> {
        let ruleset = self.compute(policies, pods, namespaces);
        let rules = ruleset.rule_count();
        let Some((script, full)) = ruleset.script_from(self.installed.as_ref()) else {
            return Ok(SyncOutcome {
                applied: false,
                full: false,
                rules,
            });
        };
        if let Err(err) = self.nft.apply(&script).await {
            self.installed = None;
            return Err(err);
        }
        self.installed = Some(ruleset);
        Ok(SyncOutcome {
            applied: true,
            full,
            rules,
        })
    }
}

/// Removes the enforcer's table (`skiff agent --cleanup`); harmless when it
/// does not exist.
pub async fn cleanup(nft: &impl Nftables, table: &str) -> Result<(), ProxyError> {
    crate::proxier::cleanup(nft, table).await
}

/// Runs `enforcer` against the API server until `shutdown`. Returns an
/// error only when nftables cannot work at all; failed syncs are logged,
/// counted and retried with back-off.
#[tracing::instrument(skip_all, fields(node = %enforcer.config.node_name, table = %enforcer.config.table))]
pub async fn run<F: Nftables>(
    mut enforcer: Enforcer<F>,
    client: kube::Client,
    options: RunOptions,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ProxyError> {
    let changed = Arc::new(Notify::new());
    let policies = reflect(
        Api::<NetworkPolicy>::all(client.clone()),
        watcher::Config::default(),
        changed.clone(),
        shutdown.clone(),
    );
    let pods = reflect(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default(),
        changed.clone(),
        shutdown.clone(),
    );
    let namespaces = reflect(
        Api::<Namespace>::all(client),
        watcher::Config::default(),
        changed.clone(),
        shutdown.clone(),
    );
    // The first sync waits for complete lists: a partial view could deny
    // traffic a policy allows (a peer not listed yet).
    tokio::select! {
        () = stopped(&mut shutdown) => return Ok(()),
        _ = async {
            let _ = policies.wait_until_ready().await;
            let _ = pods.wait_until_ready().await;
            let _ = namespaces.wait_until_ready().await;
        } => {}
    }
    let mut target = NetpolSync {
        enforcer: &mut enforcer,
        policies,
        pods,
        namespaces,
    };
    drive(
        "network policy",
        &mut target,
        &changed,
        options,
        &mut shutdown,
    )
    .await?;
    Ok(())
}

struct NetpolSync<'a, F> {
    enforcer: &'a mut Enforcer<F>,
    policies: Store<NetworkPolicy>,
    pods: Store<Pod>,
    namespaces: Store<Namespace>,
}

impl<F: Nftables> SyncOnce for NetpolSync<'_, F> {
    fn sync_failed(&mut self, err: &NftError) {
        if let Some(events) = &self.enforcer.events {
            events.record(&self.enforcer.config.node_name, err);
        }
    }

    async fn sync_once(&mut self) -> Result<(), NftError> {
        let policies = self.policies.state();
        let pods = self.pods.state();
        let namespaces = self.namespaces.state();
        let policy_refs: Vec<&NetworkPolicy> = policies.iter().map(AsRef::as_ref).collect();
        let pod_refs: Vec<&Pod> = pods.iter().map(AsRef::as_ref).collect();
        let ns_refs: Vec<&Namespace> = namespaces.iter().map(AsRef::as_ref).collect();
        let outcome = self
            .enforcer
            .sync(&policy_refs, &pod_refs, &ns_refs)
            .await?;
        if outcome.applied {
            tracing::debug!(
                full = outcome.full,
                rules = outcome.rules,
                "synced network policy rules"
            );
        }
        Ok(())
    }
}
