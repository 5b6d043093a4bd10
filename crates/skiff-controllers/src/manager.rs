//! Runs the enabled controllers as kube-controller-manager does: on shared
//! informers, while holding the Lease `kube-system/kube-controller-manager`
//! when leader election is on.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::ReplicationController;
use skiff_client::{EventRecorder, EventSink, LeaderElectionConfig, Leadership};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::controller::{Reconciler, run_workers};
use crate::informer::InformerFactory;
use crate::metrics::ControllerMetrics;
use crate::replicaset::{self, ReplicaController, ReplicaKind};
use crate::workqueue::WorkQueue;

/// Controllers this manager knows, by upstream's `--controllers` names.
pub const KNOWN_CONTROLLERS: &[&str] = &[
    "cronjob",
    "daemonset",
    "deployment",
    "disruption",
    "endpoint",
    "endpointslice",
    "endpointslice-mirroring",
    "garbagecollector",
    "job",
    "namespace",
    "node-ipam-controller",
    "node-lifecycle-controller",
    "persistentvolume-binder",
    "pod-garbage-collector",
    "replicaset",
    "replicationcontroller",
    "resourcequota",
    "root-ca-cert-publisher",
    "serviceaccount",
    "statefulset",
    "taint-eviction-controller",
    "ttl-after-finished-controller",
];

/// The Lease the instances elect their leader through (kube-system).
const LEASE_NAME: &str = "kube-controller-manager";

/// Controllers off unless named explicitly (none of ours yet).
const DISABLED_BY_DEFAULT: &[&str] = &[];

/// Errors that stop the manager before it starts.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// `--controllers` named something unknown.
    #[error("{0:?} is not in the list of known controllers")]
    UnknownController(String),
    /// An option's value is unusable.
    #[error("{0}")]
    InvalidOption(String),
}

/// kube-controller-manager's options that apply here.
#[derive(Debug, Clone)]
pub struct ControllerManagerOptions {
    /// `--controllers`: `*` for the defaults, `name` to enable, `-name` to
    /// disable.
    pub controllers: Vec<String>,
    /// Elect a leader through the Lease before running controllers.
    pub leader_elect: bool,
    /// This instance's Lease identity.
    pub identity: String,
    /// `--concurrent-replicaset-syncs`.
    pub concurrent_replicaset_syncs: usize,
    /// `--concurrent-rc-syncs`.
    pub concurrent_rc_syncs: usize,
    /// `--concurrent-gc-syncs`.
    pub concurrent_gc_syncs: usize,
    /// `--concurrent-deployment-syncs`.
    pub concurrent_deployment_syncs: usize,
    /// `--concurrent-job-syncs`.
    pub concurrent_job_syncs: usize,
    /// `--concurrent-ttl-after-finished-syncs`.
    pub concurrent_ttl_after_finished_syncs: usize,
    /// `--concurrent-daemonset-syncs`.
    pub concurrent_daemonset_syncs: usize,
    /// `--concurrent-statefulset-syncs`.
    pub concurrent_statefulset_syncs: usize,
    /// `--concurrent-resource-quota-syncs`.
    pub concurrent_resource_quota_syncs: usize,
    /// `--resource-quota-sync-period`: how often every quota is recounted.
    pub resource_quota_sync_period: std::time::Duration,
    /// `--concurrent-endpoint-syncs`.
    pub concurrent_endpoint_syncs: usize,
    /// `--concurrent-service-endpoint-syncs`.
    pub concurrent_service_endpoint_syncs: usize,
    /// `--max-endpoints-per-slice`.
    pub max_endpoints_per_slice: usize,
    /// `--mirroring-concurrent-service-endpoint-syncs`.
    pub mirroring_concurrent_service_endpoint_syncs: usize,
    /// `--mirroring-max-endpoints-per-subset`.
    pub mirroring_max_endpoints_per_subset: usize,
    /// `--concurrent-cron-job-syncs`.
    pub concurrent_cron_job_syncs: usize,
    /// `--allocate-node-cidrs`: give Nodes podCIDRs from `cluster_cidr`.
    pub allocate_node_cidrs: bool,
    /// `--cluster-cidr`.
    pub cluster_cidr: String,
    /// `--node-cidr-mask-size`.
    pub node_cidr_mask_size: u8,
    /// `--node-monitor-period`, `--node-monitor-grace-period` and the other
    /// node lifecycle flags.
    pub node_lifecycle: crate::nodelifecycle::NodeLifecycleOptions,
    /// `--terminated-pod-gc-threshold` and the collector's timing.
    pub pod_gc: crate::podgc::PodGcOptions,
    /// `--concurrent-namespace-syncs`.
    pub concurrent_namespace_syncs: usize,
    /// `--pvclaimbinder-sync-period`: how often the PV binder syncs every
    /// claim and volume again.
    pub pvclaimbinder_sync_period: std::time::Duration,
    /// The cluster CA bundle (PEM) the root CA publisher puts in every
    /// namespace (`--root-ca-file`, else the kubeconfig's CA); without it
    /// the publisher does not run.
    pub root_ca: Option<String>,
    /// Where the controllers report their metrics (whoever serves
    /// `/metrics` registers it).
    pub metrics: ControllerMetrics,
}

impl ControllerManagerOptions {
    /// Upstream's defaults: every default controller, leader election on,
    /// five workers each.
    pub fn new(identity: String) -> Self {
        ControllerManagerOptions {
            controllers: vec!["*".to_owned()],
            leader_elect: true,
            identity,
            concurrent_replicaset_syncs: replicaset::DEFAULT_WORKERS,
            concurrent_rc_syncs: replicaset::DEFAULT_WORKERS,
            concurrent_gc_syncs: crate::garbagecollector::DEFAULT_WORKERS,
            concurrent_deployment_syncs: crate::deployment::DEFAULT_WORKERS,
            concurrent_job_syncs: crate::job::DEFAULT_WORKERS,
            concurrent_ttl_after_finished_syncs: crate::ttlafterfinished::DEFAULT_WORKERS,
            concurrent_daemonset_syncs: crate::daemon::DEFAULT_WORKERS,
            concurrent_statefulset_syncs: crate::statefulset::DEFAULT_WORKERS,
            concurrent_resource_quota_syncs: crate::resourcequota::DEFAULT_WORKERS,
            resource_quota_sync_period: crate::resourcequota::DEFAULT_SYNC_PERIOD,
            concurrent_endpoint_syncs: crate::endpoint::DEFAULT_WORKERS,
            concurrent_service_endpoint_syncs: crate::endpointslice::DEFAULT_WORKERS,
            max_endpoints_per_slice: crate::endpointslice::DEFAULT_MAX_ENDPOINTS_PER_SLICE,
            mirroring_concurrent_service_endpoint_syncs:
                crate::endpointslicemirroring::DEFAULT_WORKERS,
            mirroring_max_endpoints_per_subset:
                crate::endpointslicemirroring::DEFAULT_MAX_ENDPOINTS_PER_SUBSET,
            concurrent_cron_job_syncs: crate::cronjob::DEFAULT_WORKERS,
            allocate_node_cidrs: false,
            cluster_cidr: String::new(),
            node_cidr_mask_size: crate::nodeipam::DEFAULT_NODE_CIDR_MASK_SIZE,
            node_lifecycle: crate::nodelifecycle::NodeLifecycleOptions::default(),
            pod_gc: crate::podgc::PodGcOptions::default(),
            concurrent_namespace_syncs: crate::namespace::DEFAULT_WORKERS,
            pvclaimbinder_sync_period: crate::persistentvolume::DEFAULT_SYNC_PERIOD,
            root_ca: None,
            metrics: ControllerMetrics::new(),
        }
    }

    /// Checks `--controllers` names.
    pub fn validate(&self) -> Result<(), ManagerError> {
        for c in &self.controllers {
            let name = c.strip_prefix('-').unwrap_or(c);
            if name != "*" && !KNOWN_CONTROLLERS.contains(&name) {
                return Err(ManagerError::UnknownController(name.to_owned()));
            }
        }
        if self.allocate_node_cidrs {
            self.range_allocator()?;
        }
        Ok(())
    }

    fn range_allocator(&self) -> Result<crate::nodeipam::RangeAllocator, ManagerError> {
        let cidr = crate::nodeipam::Cidr::parse(&self.cluster_cidr)
            .map_err(|e| ManagerError::InvalidOption(format!("--cluster-cidr: {e}")))?;
        crate::nodeipam::RangeAllocator::new(cidr, self.node_cidr_mask_size)
            .map_err(|e| ManagerError::InvalidOption(format!("--node-cidr-mask-size: {e}")))
    }

    /// Whether `name` runs (upstream's `IsControllerEnabled`: the first
    /// explicit mention wins, else `*` enables the defaults).
    pub fn is_enabled(&self, name: &str) -> bool {
        let mut star = false;
        for c in &self.controllers {
            if c == name {
                return true;
            }
            if c.strip_prefix('-') == Some(name) {
                return false;
            }
            if c == "*" {
                star = true;
            }
        }
        star && !DISABLED_BY_DEFAULT.contains(&name)
    }
}

/// Runs the controllers until `shutdown` turns true (or its sender drops).
/// With leader election they run only while this instance holds the Lease;
/// losing it stops them until it is won again.
pub async fn run(
    opts: ControllerManagerOptions,
    client: kube::Client,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ManagerError> {
    opts.validate()?;
    let election = opts
        .leader_elect
        .then(|| LeaderElectionConfig::new("kube-system", LEASE_NAME, opts.identity.clone()));
    // As upstream, the status is reported only with leader election on.
    let set_leader = |leading: bool| {
        if opts.leader_elect {
            opts.metrics.set_leader(LEASE_NAME, leading);
        }
    };
    set_leader(false);
    let mut leadership = Leadership::start(client.clone(), election, shutdown.clone());
    loop {
        tokio::select! {
            r = leadership.leading.wait_for(|l| *l) => if r.is_err() { break },
            _ = shutdown.wait_for(|s| *s) => break,
        }
        tracing::info!(identity = %opts.identity, "controller manager is leading: starting controllers");
        set_leader(true);
        run_leading(
            &opts,
            client.clone(),
            &mut leadership.leading,
            &mut shutdown,
        )
        .await;
        set_leader(false);
        if *shutdown.borrow() {
            break;
        }
        tracing::warn!("controller manager lost leadership: controllers stopped");
    }
    leadership.finish().await;
    Ok(())
}

fn recorder(client: &kube::Client, controller: &str, identity: &str) -> Arc<dyn EventSink> {
    let host = identity.rsplit_once('_').map_or(identity, |(h, _)| h);
    Arc::new(EventRecorder::spawn(
        client.clone(),
        controller,
        &format!("{controller}-{host}"),
        skiff_client::events::DEFAULT_EVENT_QUEUE,
    ))
}

async fn run_leading(
    opts: &ControllerManagerOptions,
    client: kube::Client,
    leading: &mut watch::Receiver<bool>,
    shutdown: &mut watch::Receiver<bool>,
) {
    let factory = InformerFactory::with_metrics(client.clone(), opts.metrics.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut starters: Vec<Starter> = Vec::new();
    if opts.is_enabled("replicaset") {
        starters.push(start::<ReplicaSet>(
            &client,
            &factory,
            opts,
            opts.concurrent_replicaset_syncs,
            &stop_rx,
        ));
    }
    if opts.is_enabled("replicationcontroller") {
        starters.push(start::<ReplicationController>(
            &client,
            &factory,
            opts,
            opts.concurrent_rc_syncs,
            &stop_rx,
        ));
    }
    if opts.is_enabled("deployment") {
        let events = recorder(&client, crate::deployment::CONTROLLER_NAME, &opts.identity);
        let c = crate::deployment::DeploymentController::new(client.clone(), &factory, events);
        starters.push(workers_of(
            c.queue(),
            c,
            opts.concurrent_deployment_syncs,
            &stop_rx,
        ));
    }
    if opts.is_enabled(crate::job::NAME) {
        let events = recorder(&client, crate::job::CONTROLLER_NAME, &opts.identity);
        let c = crate::job::JobController::new(client.clone(), &factory, events);
        starters.push(workers_of(
            c.queue(),
            c,
            opts.concurrent_job_syncs,
            &stop_rx,
        ));
    }
    if opts.is_enabled("endpoint") {
        let events = recorder(&client, crate::endpoint::CONTROLLER_NAME, &opts.identity);
        let c = crate::endpoint::EndpointController::new(client.clone(), &factory, events);
        let (workers, stop) = (opts.concurrent_endpoint_syncs, stop_rx.clone());
        starters.push(Box::new(move |set: &mut JoinSet<()>| {
            c.enqueue_leftovers();
            let queue = c.queue();
            set.spawn(run_workers(c, queue, workers, stop));
        }));
    }
    if opts.is_enabled("endpointslice") {
        use crate::endpointslice as es;
        let events = recorder(&client, es::EVENT_SOURCE, &opts.identity);
        let c = es::EndpointSliceController::new(
            client.clone(),
            &factory,
            events,
            opts.max_endpoints_per_slice,
        );
        let workers = opts.concurrent_service_endpoint_syncs;
        starters.push(workers_of(c.queue(), c, workers, &stop_rx));
    }
    if opts.is_enabled(crate::disruption::NAME) {
        let events = recorder(&client, crate::disruption::CONTROLLER_NAME, &opts.identity);
        let c = crate::disruption::DisruptionController::new(client.clone(), &factory, events);
        let stop = stop_rx.clone();
        starters.push(Box::new(move |set: &mut JoinSet<()>| {
            set.spawn(c.run(stop));
        }));
    }
    if opts.is_enabled(crate::ttlafterfinished::NAME) {
        let c = crate::ttlafterfinished::TtlAfterFinishedController::new(client.clone(), &factory);
        starters.push(workers_of(
            c.queue(),
            c,
            opts.concurrent_ttl_after_finished_syncs,
            &stop_rx,
        ));
    }
    if opts.is_enabled(crate::daemon::CONTROLLER_NAME) {
        let events = recorder(&client, crate::daemon::CONTROLLER_NAME, &opts.identity);
        let c = crate::daemon::DaemonSetsController::new(client.clone(), &factory, events);
        starters.push(workers_of(
            c.queue(),
            c,
            opts.concurrent_daemonset_syncs,
            &stop_rx,
        ));
    }
    if opts.is_enabled(crate::statefulset::CONTROLLER_NAME) {
        let events = recorder(&client, crate::statefulset::CONTROLLER_NAME, &opts.identity);
        let c = crate::statefulset::StatefulSetController::new(client.clone(), &factory, events);
        let workers = opts.concurrent_statefulset_syncs;
        starters.push(workers_of(c.queue(), c, workers, &stop_rx));
    }
    if opts.is_enabled("endpointslice-mirroring") {
        use crate::endpointslicemirroring as m;
        let events = recorder(&client, m::EVENT_SOURCE, &opts.identity);
        let c = m::MirroringController::new(
            client.clone(),
            &factory,
            events,
            opts.mirroring_max_endpoints_per_subset,
        );
        starters.push(workers_of(
            c.queue(),
            c,
            opts.mirroring_concurrent_service_endpoint_syncs,
            &stop_rx,
        ));
    }
    if opts.is_enabled("cronjob") {
        let events = recorder(&client, crate::cronjob::CONTROLLER_NAME, &opts.identity);
        let clock = Arc::new(crate::cronjob::RealClock);
        let c = crate::cronjob::CronJobController::new(client.clone(), &factory, events, clock);
        starters.push(workers_of(
            c.queue(),
            c,
            opts.concurrent_cron_job_syncs,
            &stop_rx,
        ));
    }
    if opts.is_enabled(crate::resourcequota::NAME) {
        let c = crate::resourcequota::ResourceQuotaController::new(client.clone(), &factory);
        let (workers, period, stop) = (
            opts.concurrent_resource_quota_syncs,
            opts.resource_quota_sync_period,
            stop_rx.clone(),
        );
        starters.push(Box::new(move |set: &mut JoinSet<()>| {
            set.spawn(c.run(workers, period, stop));
        }));
    }
    if opts.allocate_node_cidrs
        && opts.is_enabled(crate::nodeipam::CONTROLLER_NAME)
        && let Ok(allocator) = opts.range_allocator()
    {
        let (client, stop) = (client.clone(), stop_rx.clone());
        starters.push(Box::new(move |set: &mut JoinSet<()>| {
            set.spawn(crate::nodeipam::run(client, allocator, stop));
        }));
    }
    if opts.is_enabled("garbagecollector") {
        let (client, workers, stop) = (client.clone(), opts.concurrent_gc_syncs, stop_rx.clone());
        let metrics = opts.metrics.clone();
        starters.push(Box::new(move |set: &mut JoinSet<()>| {
            set.spawn(crate::garbagecollector::run(client, workers, metrics, stop));
        }));
    }
    if opts.is_enabled(crate::nodelifecycle::CONTROLLER_NAME) {
        let events = recorder(&client, "node-controller", &opts.identity);
        let c = crate::nodelifecycle::NodeLifecycleController::new(
            client.clone(),
            &factory,
            events,
            opts.node_lifecycle.clone(),
        );
        let stop = stop_rx.clone();
        starters.push(Box::new(move |set: &mut JoinSet<()>| {
            set.spawn(c.run(stop));
        }));
    }
    if opts.is_enabled(crate::tainteviction::CONTROLLER_NAME) {
        let events = recorder(&client, "taint-eviction-controller", &opts.identity);
        let c =
            crate::tainteviction::TaintEvictionController::new(client.clone(), &factory, events);
        let stop = stop_rx.clone();
        starters.push(Box::new(move |set: &mut JoinSet<()>| {
            set.spawn(c.run(
                crate::tainteviction::TaintEvictionController::DEFAULT_WORKERS,
                stop,
            ));
        }));
    }
    if opts.is_enabled(crate::podgc::CONTROLLER_NAME) {
        let c = crate::podgc::PodGc::new(client.clone(), &factory, opts.pod_gc.clone());
        let stop = stop_rx.clone();
        starters.push(Box::new(move |set: &mut JoinSet<()>| {
            set.spawn(c.run(stop));
        }));
    }
    if opts.is_enabled(crate::persistentvolume::NAME) {
        use crate::persistentvolume as pv;
        let events = recorder(&client, pv::CONTROLLER_NAME, &opts.identity);
        let c = pv::PersistentVolumeController::new(client.clone(), &factory, events);
        let (period, stop) = (opts.pvclaimbinder_sync_period, stop_rx.clone());
        starters.push(Box::new(move |set: &mut JoinSet<()>| {
            set.spawn(c.run(period, stop));
        }));
    }
    start_namespace_controllers(opts, &client, &factory, &stop_rx, &mut starters);
    let mut informers = JoinSet::new();
    factory.start(&mut informers, stop_rx.clone());
    let mut still_leading = std::pin::pin!(async {
        let _ = leading.wait_for(|l| !*l).await;
    });
    let synced = tokio::select! {
        _ = factory.wait_for_cache_sync() => true,
        _ = &mut still_leading => false,
        _ = shutdown.wait_for(|s| *s) => false,
    };
    if synced {
        let mut workers = JoinSet::new();
        for s in starters {
            s(&mut workers);
        }
        tracing::info!("caches synced: controllers running");
        tokio::select! {
            _ = &mut still_leading => {}
            _ = shutdown.wait_for(|s| *s) => {}
        }
        stop_tx.send_replace(true);
        while workers.join_next().await.is_some() {}
    }
    stop_tx.send_replace(true);
    informers.shutdown().await;
}

/// The namespace, ServiceAccount and root CA publisher controllers.
fn start_namespace_controllers(
    opts: &ControllerManagerOptions,
    client: &kube::Client,
    factory: &InformerFactory,
    stop: &watch::Receiver<bool>,
    starters: &mut Vec<Starter>,
) {
    if opts.is_enabled(crate::namespace::CONTROLLER_NAME) {
        let c = crate::namespace::NamespaceController::new(client.clone(), factory);
        starters.push(workers_of(
            c.queue(),
            c,
            opts.concurrent_namespace_syncs,
            stop,
        ));
    }
    if opts.is_enabled(crate::serviceaccount::CONTROLLER_NAME) {
        let c = crate::serviceaccount::ServiceAccountsController::new(client.clone(), factory);
        let workers = crate::serviceaccount::DEFAULT_WORKERS;
        starters.push(workers_of(c.queue(), c, workers, stop));
    }
    if opts.is_enabled(crate::rootcacertpublisher::CONTROLLER_NAME) {
        match &opts.root_ca {
            Some(ca) => {
                let c =
                    crate::rootcacertpublisher::Publisher::new(client.clone(), factory, ca.clone());
                let workers = crate::rootcacertpublisher::DEFAULT_WORKERS;
                starters.push(workers_of(c.queue(), c, workers, stop));
            }
            None => tracing::warn!("no root CA given: root-ca-cert-publisher not started"),
        }
    }
}

/// Spawns a controller's workers once the caches are synced.
type Starter = Box<dyn FnOnce(&mut JoinSet<()>) + Send>;

/// A starter for `workers` workers of a controller on its queue.
fn workers_of<R: Reconciler>(
    queue: Arc<WorkQueue<String>>,
    c: Arc<R>,
    workers: usize,
    stop: &watch::Receiver<bool>,
) -> Starter {
    let stop = stop.clone();
    Box::new(move |set: &mut JoinSet<()>| {
        set.spawn(run_workers(c, queue, workers, stop));
    })
}

fn start<K: ReplicaKind>(
    client: &kube::Client,
    factory: &InformerFactory,
    opts: &ControllerManagerOptions,
    workers: usize,
    stop: &watch::Receiver<bool>,
) -> Starter {
    let events = recorder(client, K::CONTROLLER_NAME, &opts.identity);
    let c = ReplicaController::<K>::new(client.clone(), factory, events);
    workers_of(c.queue(), c, workers, stop)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> ControllerManagerOptions {
        let mut o = ControllerManagerOptions::new("me".into());
        o.controllers = list.iter().map(|s| (*s).to_owned()).collect();
        o
    }

    #[test]
    fn controllers_flag_semantics() {
        let o = opts(&["*"]);
        assert!(o.is_enabled("replicaset") && o.is_enabled("replicationcontroller"));
        let o = opts(&["*", "-replicaset"]);
        assert!(!o.is_enabled("replicaset") && o.is_enabled("replicationcontroller"));
        let o = opts(&["replicaset"]);
        assert!(o.is_enabled("replicaset") && !o.is_enabled("replicationcontroller"));
        // The first mention wins.
        let o = opts(&["-replicaset", "replicaset", "*"]);
        assert!(!o.is_enabled("replicaset"));
        assert!(opts(&[]).controllers.is_empty() && !opts(&[]).is_enabled("replicaset"));
    }

    #[test]
    fn unknown_controllers_are_rejected() {
        assert!(opts(&["*", "-replicaset"]).validate().is_ok());
        let err = opts(&["replicaset", "bogus"]).validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"bogus\" is not in the list of known controllers"
        );
        assert!(opts(&["-nope"]).validate().is_err());
    }
}
