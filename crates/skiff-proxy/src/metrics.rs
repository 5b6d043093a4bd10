//! The agent's network metrics in the Prometheus text format: the Service
//! proxy's under kube-proxy's names and buckets
//! (`kubeproxy_sync_proxy_rules_duration_seconds`, its full and partial
//! variants, `kubeproxy_sync_proxy_rules_last_timestamp_seconds`,
//! `kubeproxy_sync_proxy_rules_nftables_sync_failures_total`, each with
//! upstream's `ip_family` label), the NetworkPolicy enforcer's under
//! `skiff_network_policy_*` (upstream has no policy enforcer to follow).
//!
//! [`NetworkMetrics`] is a prometheus-client [`Collector`] over the
//! counters the proxier and the enforcer keep ([`ProxyStats`],
//! [`NetpolStats`]); the agent serves it on `--proxy-metrics-bind-address`
//! (kube-proxy's 127.0.0.1:10249) through
//! [`skiff_client::metrics_listener`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::netpol::NetpolStats;
use crate::proxier::{ProxyStats, SyncOutcome};

/// The label every proxy metric carries (the proxy programs IPv4 only).
const IP_FAMILY: [(&str, &str); 1] = [("ip_family", "IPv4")];

/// A sync-duration histogram with kube-proxy's buckets (1 ms doubling 15
/// times, up to about 16 s).
#[derive(Debug)]
pub struct SyncHistogram(Histogram);

impl Default for SyncHistogram {
    fn default() -> Self {
        Self(Histogram::new(exponential_buckets(0.001, 2.0, 15)))
    }
}

impl SyncHistogram {
    /// Records one sync that took `elapsed`.
    pub fn observe(&self, elapsed: Duration) {
        self.0.observe(elapsed.as_secs_f64());
    }
}

/// When a rule loop last synced successfully.
#[derive(Debug, Default)]
pub struct LastSync(AtomicU64);

impl LastSync {
    /// Records a successful sync now.
    pub fn set_now(&self) {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.0.store(millis, Ordering::Relaxed);
    }

    /// The time of the last successful sync; `None` before the first.
    pub fn get(&self) -> Option<SystemTime> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            millis => Some(UNIX_EPOCH + Duration::from_millis(millis)),
        }
    }

    /// Seconds since the epoch, as the gauge shows it (0 before the first).
    fn seconds(&self) -> f64 {
        // Milliseconds since the epoch fit an f64 exactly for ages to come.
        #[allow(clippy::cast_precision_loss)]
        let millis = self.0.load(Ordering::Relaxed) as f64;
        millis / 1000.0
    }
}

/// What each rule loop (the proxy's, the policy enforcer's) counts.
#[derive(Debug, Default)]
pub struct SyncCounters {
    /// Successful syncs that applied something (no-op syncs excluded).
    pub syncs: AtomicU64,
    /// Failed syncs.
    pub sync_errors: AtomicU64,
    /// Rules in the installed ruleset.
    pub rules: AtomicU64,
    /// Every sync's duration (successful, failed, or finding nothing to do).
    pub sync_duration: SyncHistogram,
    /// When the last successful sync finished.
    pub last_sync: LastSync,
}

impl SyncCounters {
    /// Records one sync that took `elapsed` and ended with `result`.
    pub(crate) fn record<E>(&self, elapsed: Duration, result: &Result<SyncOutcome, E>) {
        self.sync_duration.observe(elapsed);
        match result {
            Ok(outcome) => {
                self.last_sync.set_now();
                if outcome.applied {
                    self.syncs.fetch_add(1, Ordering::Relaxed);
                }
                self.rules.store(outcome.rules as u64, Ordering::Relaxed);
            }
            Err(_) => {
                self.sync_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The proxy's and the policy enforcer's metrics (either may be absent:
/// `--disable-kube-proxy`, `--disable-network-policy`). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct NetworkMetrics {
    proxy: Option<Arc<ProxyStats>>,
    netpol: Option<Arc<NetpolStats>>,
}

impl NetworkMetrics {
    /// Metrics over these counters.
    pub fn new(proxy: Option<Arc<ProxyStats>>, netpol: Option<Arc<NetpolStats>>) -> Self {
        Self { proxy, netpol }
    }

    /// Whether there is anything to serve.
    pub fn is_empty(&self) -> bool {
        self.proxy.is_none() && self.netpol.is_none()
    }

    /// The metrics in the Prometheus text format.
    pub fn encode_text(&self) -> String {
        skiff_client::metrics_listener::encode_text(self.clone())
    }
}

/// Encodes `metric` under `name` with the `ip_family` label.
fn with_ip_family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(m.encode_family(&IP_FAMILY)?)
}

fn counter(value: &AtomicU64) -> ConstCounter {
    ConstCounter::new(value.load(Ordering::Relaxed))
}

fn gauge(value: &AtomicU64) -> ConstGauge {
    ConstGauge::new(i64::try_from(value.load(Ordering::Relaxed)).unwrap_or(i64::MAX))
}

impl Collector for NetworkMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use skiff_client::metrics_listener::describe;
        if let Some(p) = &self.proxy {
            with_ip_family(
                &mut encoder,
                "kubeproxy_sync_proxy_rules_duration_seconds",
                "SyncProxyRules latency in seconds",
                &p.sync.sync_duration.0,
            )?;
            with_ip_family(
                &mut encoder,
                "kubeproxy_sync_full_proxy_rules_duration_seconds",
                "SyncProxyRules latency in seconds for full resyncs",
                &p.full_sync_duration.0,
            )?;
            with_ip_family(
                &mut encoder,
                "kubeproxy_sync_partial_proxy_rules_duration_seconds",
                "SyncProxyRules latency in seconds for partial resyncs",
                &p.partial_sync_duration.0,
            )?;
            with_ip_family(
                &mut encoder,
                "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
                "The last time proxy rules were successfully synced",
                &ConstGauge::new(p.sync.last_sync.seconds()),
            )?;
            with_ip_family(
                &mut encoder,
                "kubeproxy_sync_proxy_rules_nftables_sync_failures",
                "Cumulative proxy nftables sync failures",
                &counter(&p.sync.sync_errors),
            )?;
            describe(
                &mut encoder,
                "skiff_proxy_rules",
                "Rules in the Service proxy's installed nftables ruleset",
                &gauge(&p.sync.rules),
            )?;
            describe(
                &mut encoder,
                "skiff_proxy_conntrack_cleanup_failures",
                "Failed deletions of stale UDP conntrack entries",
                &counter(&p.conntrack_errors),
            )?;
        }
        if let Some(n) = &self.netpol {
            describe(
                &mut encoder,
                "skiff_network_policy_sync_duration_seconds",
                "NetworkPolicy rule sync latency in seconds",
                &n.sync.sync_duration.0,
            )?;
            describe(
                &mut encoder,
                "skiff_network_policy_sync_last_timestamp_seconds",
                "The last time NetworkPolicy rules were successfully synced",
                &ConstGauge::new(n.sync.last_sync.seconds()),
            )?;
            describe(
                &mut encoder,
                "skiff_network_policy_sync_failures",
                "Cumulative NetworkPolicy nftables sync failures",
                &counter(&n.sync.sync_errors),
            )?;
            describe(
                &mut encoder,
                "skiff_network_policy_rules",
                "Rules in the NetworkPolicy enforcer's installed nftables ruleset",
                &gauge(&n.sync.rules),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn proxy_metrics_use_kube_proxys_names_and_labels() {
        let stats = Arc::new(ProxyStats::default());
        stats.sync.sync_duration.observe(Duration::from_millis(3));
        stats.full_sync_duration.observe(Duration::from_millis(3));
        stats.sync.sync_errors.fetch_add(2, Ordering::Relaxed);
        stats.sync.rules.store(42, Ordering::Relaxed);
        let text = NetworkMetrics::new(Some(stats.clone()), None).encode_text();
        assert!(
            text.contains(
                "kubeproxy_sync_proxy_rules_nftables_sync_failures_total{ip_family=\"IPv4\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "kubeproxy_sync_proxy_rules_duration_seconds_count{ip_family=\"IPv4\"} 1\n"
            )
        );
        assert!(text.contains(
            "kubeproxy_sync_full_proxy_rules_duration_seconds_bucket{ip_family=\"IPv4\",le=\"0.004\"} 1\n"
        ), "{text}");
        assert!(text.contains(
            "kubeproxy_sync_partial_proxy_rules_duration_seconds_count{ip_family=\"IPv4\"} 0\n"
        ));
        // No successful sync yet.
        assert!(
            text.contains(
                "kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family=\"IPv4\"} 0.0\n"
            ),
            "{text}"
        );
        assert!(text.contains("skiff_proxy_rules 42\n"));
        assert!(!text.contains("skiff_network_policy"));

        stats.sync.last_sync.set_now();
        let text = NetworkMetrics::new(Some(stats), None).encode_text();
        let line = text
            .lines()
            .find(|l| l.starts_with("kubeproxy_sync_proxy_rules_last_timestamp_seconds{"))
            .unwrap();
        let at: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!((now - at).abs() < 60.0, "{line}");
    }

    #[test]
    fn policy_metrics_stand_alone() {
        let stats = Arc::new(NetpolStats::default());
        stats.sync.sync_errors.fetch_add(1, Ordering::Relaxed);
        stats.sync.sync_duration.observe(Duration::from_millis(1));
        let m = NetworkMetrics::new(None, Some(stats));
        assert!(!m.is_empty());
        let text = m.encode_text();
        assert!(
            text.contains("skiff_network_policy_sync_failures_total 1\n"),
            "{text}"
        );
        assert!(text.contains("skiff_network_policy_sync_duration_seconds_count 1\n"));
        assert!(text.contains("skiff_network_policy_sync_last_timestamp_seconds 0.0\n"));
        assert!(!text.contains("kubeproxy_"));
        assert!(NetworkMetrics::default().is_empty());
    }
}
