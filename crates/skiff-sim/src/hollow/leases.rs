//! Lease heartbeats for every hollow node from one task: the nodes are
//! renewed in small slices on a short tick, so each is renewed once per
//! interval and the requests are spread evenly over it.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::watch;

use super::node::{self, LEASE_NAMESPACE};
use super::{Shared, Stats};

/// Ticks per interval (the wheel's slots).
const SLOTS: u32 = 100;

/// Sets `spec.renewTime` to now.
pub(crate) async fn renew(leases: &Api<Lease>, name: &str) -> Result<(), kube::Error> {
    let patch = serde_json::json!({"spec": {"renewTime": MicroTime(Timestamp::now())}});
    leases
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

/// Which nodes to renew at tick `tick` of each interval: node `i` sits in
/// slot `i % SLOTS`.
pub(crate) fn slot_members(count: usize, tick: u32) -> impl Iterator<Item = usize> {
    (tick as usize..count).step_by(SLOTS as usize)
}

/// Renews (or, if it was deleted, recreates) the Lease of node `index`.
async fn renew_one(leases: Api<Lease>, shared: Arc<Shared>, index: usize) {
    if shared.is_paused(index) {
        return;
    }
    let name = shared.node_name(index);
    match renew(&leases, &name).await {
        Ok(()) => Stats::inc(&shared.stats.lease_renewals),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            // Deleted under us: a kubelet recreates it.
            let lease = node::lease(&name, "");
            if leases.create(&PostParams::default(), &lease).await.is_err() {
                Stats::inc(&shared.stats.errors);
            }
        }
        Err(e) => {
            tracing::debug!(node = %name, error = %e, "lease renewal failed");
            Stats::inc(&shared.stats.errors);
        }
    }
}

pub(crate) async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let leases: Api<Lease> = Api::namespaced(shared.client.clone(), LEASE_NAMESPACE);
    let period = shared.config.lease_interval / SLOTS;
    let period = period.max(Duration::from_millis(1));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Slow answers must not stretch the interval: slices overlap, up to
    // this many renewals in flight; only past it do the ticks wait.
    let cap = shared.config.concurrency.max(1) * 4;
    let mut in_flight = FuturesUnordered::new();
    let mut tick = 0u32;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            Some(()) = in_flight.next(), if !in_flight.is_empty() => continue,
            _ = shutdown.changed() => return,
        }
        for i in slot_members(shared.config.count, tick) {
            while in_flight.len() >= cap {
                tokio::select! {
                    _ = in_flight.next() => {}
                    _ = shutdown.changed() => return,
                }
            }
            in_flight.push(renew_one(leases.clone(), shared.clone(), i));
        }
        tick = (tick + 1) % SLOTS;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_is_in_exactly_one_slot() {
        for count in [1usize, 99, 100, 101, 5_000] {
            let mut seen = vec![0u32; count];
            let mut largest = 0;
            for tick in 0..SLOTS {
                let members: Vec<usize> = slot_members(count, tick).collect();
                largest = largest.max(members.len());
                for i in members {
                    seen[i] += 1;
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "{count}");
            // Spread evenly: no slot holds more than its share, rounded up.
            assert_eq!(largest, count.div_ceil(SLOTS as usize), "{count}");
        }
    }
}
