//! Lease-based leader election, as client-go's `leaderelection` with a
//! `LeaseLock`: acquire or renew every `retry_period` with a
//! resourceVersion compare-and-swap, give up leading when renewals fail for
//! `renew_deadline`, and release the lease on a clean stop so a standby
//! takes over at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;
use tokio::time::Instant;

/// Timings and the lock's identity (client-go's `LeaderElectionConfig`).
#[derive(Debug, Clone)]
pub struct LeaderElectionConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This candidate's identity (`holderIdentity`).
    pub identity: String,
    /// How long a non-leader waits after the last observed renewal before
    /// taking over (15 s).
    pub lease_duration: Duration,
    /// How long the leader keeps retrying a renewal before giving up (10 s).
    pub renew_deadline: Duration,
    /// Time between attempts (2 s).
    pub retry_period: Duration,
}

impl LeaderElectionConfig {
    /// kube-scheduler's defaults for the Lease `namespace/name`.
    pub fn new(namespace: &str, name: &str, identity: String) -> Self {
        LeaderElectionConfig {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            identity,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// `hostname_uuid`, the identity kube-scheduler and the controller manager
/// use.
pub fn holder_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}_{}", uuid_v4())
}

fn uuid_v4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// What the elector last saw of the lease (client-go's observed record and
/// observed time: expiry is judged by the local clock, never by comparing
/// clocks across machines).
#[derive(Debug, Clone, Default)]
struct Observed {
    holder: String,
    renew_time: Option<MicroTime>,
    at: Option<Instant>,
}

/// Runs the election loop; readers watch [`LeaderElector::subscribe`].
#[derive(Debug)]
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderElectionConfig,
    leading: watch::Sender<bool>,
    observed: Observed,
}

impl LeaderElector {
    /// An elector for `config` using `client`.
    pub fn new(client: kube::Client, config: LeaderElectionConfig) -> Self {
        let (leading, _) = watch::channel(false);
        LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
            leading,
            observed: Observed::default(),
        }
    }

    /// "Am I the leader", updated as it changes.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    /// Campaigns and leads until `shutdown` turns true (or its sender goes),
    /// then releases the lease if held.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut last_renew = Instant::now();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let ok = self.try_acquire_or_renew().await;
            let leading = *self.leading.borrow();
            if ok {
                last_renew = Instant::now();
                if !leading {
                    tracing::info!(lease = %self.lease_key(), identity = %self.config.identity,
                        "successfully acquired lease");
                    self.leading.send_replace(true);
                }
            } else if leading && last_renew.elapsed() >= self.config.renew_deadline {
                tracing::warn!(lease = %self.lease_key(), "failed to renew lease: leadership lost");
                self.leading.send_replace(false);
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.retry_period) => {}
                r = shutdown.changed() => if r.is_err() { break },
            }
        }
        if *self.leading.borrow() {
            self.release().await;
        }
        self.leading.send_replace(false);
    }

    fn lease_key(&self) -> String {
        format!("{}/{}", self.config.namespace, self.config.name)
    }

    fn observe(&mut self, spec: &LeaseSpec) {
        let holder = spec.holder_identity.clone().unwrap_or_default();
        if self.observed.at.is_none()
            || holder != self.observed.holder
            || spec.renew_time != self.observed.renew_time
        {
            self.observed = Observed {
                holder,
                renew_time: spec.renew_time.clone(),
                at: Some(Instant::now()),
            };
        }
    }

    /// One attempt: true when this candidate holds the lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> bool {
        let now = MicroTime(Timestamp::now());
        let duration_secs = i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(15);
        let existing = match self.api.get_opt(&self.config.name).await {
            Ok(l) => l,
            Err(err) => {
                tracing::debug!(error = %err, "error retrieving lease");
                return false;
            }
        };
        let Some(mut lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.config.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(l) => {
                    if let Some(spec) = &l.spec {
                        self.observe(spec);
                    }
                    true
                }
                Err(err) => {
                    tracing::debug!(error = %err, "error creating lease");
                    false
                }
            };
        };
        let mut spec = lease.spec.take().unwrap_or_default();
        self.observe(&spec);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let me = holder == self.config.identity;
        if !me && !holder.is_empty() {
            let lease_for = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(self.config.lease_duration, Duration::from_secs);
            let still_valid = self
                .observed
                .at
                .is_some_and(|at| at + lease_for > Instant::now());
            if still_valid {
                return false;
            }
        }
        if !me {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.holder_identity = Some(self.config.identity.clone());
        spec.lease_duration_seconds = Some(duration_secs);
        spec.renew_time = Some(now);
        lease.spec = Some(spec);
        // The resourceVersion from the get makes this a compare-and-swap.
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(l) => {
                if let Some(spec) = &l.spec {
                    self.observe(spec);
                }
                true
            }
            Err(err) => {
                tracing::debug!(error = %err, "error updating lease");
                false
            }
        }
    }

    /// Gives the lease up: empty holder, 1 s duration (client-go's release).
    async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        let now = MicroTime(Timestamp::now());
        spec.holder_identity = Some(String::new());
        spec.lease_duration_seconds = Some(1);
        spec.acquire_time = Some(now.clone());
        spec.renew_time = Some(now);
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.lease_key(), "released lease"),
            Err(err) => tracing::warn!(error = %err, "failed to release lease"),
        }
    }
}

/// A component's leadership: a running [`LeaderElector`] when it elects,
/// otherwise permanent leadership. Components loop on [`Self::leading`] and
/// call [`Self::finish`] when they stop, so the Lease is released and a
/// standby takes over at once.
#[derive(Debug)]
pub struct Leadership {
    /// True while this instance may act.
    pub leading: watch::Receiver<bool>,
    /// Keeps `leading` open when not electing.
    _always: Option<watch::Sender<bool>>,
    elector: Option<tokio::task::JoinHandle<()>>,
}

impl Leadership {
    /// Campaigns with `config` until `shutdown` turns true, or leads
    /// unconditionally when `config` is `None`.
    pub fn start(
        client: kube::Client,
        config: Option<LeaderElectionConfig>,
        shutdown: watch::Receiver<bool>,
    ) -> Leadership {
        match config {
            Some(config) => {
                let elector = LeaderElector::new(client, config);
                let leading = elector.subscribe();
                Leadership {
                    leading,
                    _always: None,
                    elector: Some(tokio::spawn(elector.run(shutdown))),
                }
            }
            None => {
                let (tx, leading) = watch::channel(true);
                Leadership {
                    leading,
                    _always: Some(tx),
                    elector: None,
                }
            }
        }
    }

    /// Waits for the elector (stopped by the shutdown signal) to release
    /// the Lease.
    pub async fn finish(self) {
        if let Some(task) = self.elector {
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_hostname_and_uuid() {
        let id = holder_identity();
        let (_, uuid) = id.rsplit_once('_').unwrap_or(("", ""));
        assert_eq!(uuid.len(), 36);
        assert_eq!(uuid.as_bytes()[14], b'4');
        assert_ne!(holder_identity(), id);
    }

    #[test]
    fn defaults_are_kube_schedulers() {
        let c = LeaderElectionConfig::new("kube-system", "kube-scheduler", "me".into());
        assert_eq!(c.lease_duration, Duration::from_secs(15));
        assert_eq!(c.renew_deadline, Duration::from_secs(10));
        assert_eq!(c.retry_period, Duration::from_secs(2));
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct LeaseLabels {
    name: String,
}

/// Upstream's `leader_election_master_status` gauge: 1 while this instance
/// holds the Lease `name`, 0 while it stands by. Components report it only
/// with leader election on. Cheap to clone: clones share the values.
#[derive(Clone, Debug, Default)]
pub struct LeaderStatus(
    prometheus_client::metrics::family::Family<
        LeaseLabels,
        prometheus_client::metrics::gauge::Gauge,
    >,
);

impl LeaderStatus {
    /// Reports whether this instance holds the Lease `name`.
    pub fn set(&self, name: &str, leading: bool) {
        self.0
            .get_or_create(&LeaseLabels {
                name: name.to_owned(),
            })
            .set(i64::from(leading));
    }

    /// Encodes the gauge: one step of a collector's `encode`.
    pub fn describe(
        &self,
        encoder: &mut prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        crate::metrics_listener::describe(
            encoder,
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. 'name' is the string used to identify the lease. Please make sure to group by name.",
            &self.0,
        )
    }
}
