//! `run`: the scheduler as a component: leader election, informers, the
//! loop; stops when `shutdown` turns true.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use skiff_client::{EventRecorder, EventSink, LeaderElectionConfig, Leadership};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cache::Cache;
use crate::config::{ConfigError, KubeSchedulerConfiguration};
use crate::framework::{Handle, Plugin, PluginFactory};
use crate::informers::{PodHandler, spawn_node_informer, spawn_pod_informer, start_listers};
use crate::metrics::SchedulerMetrics;
use crate::queue::SchedulingQueue;
use crate::runtime::Framework;
use crate::scheduler::{ApiStatusWriter, Scheduler};

/// How the scheduler runs.
#[derive(Clone)]
pub struct SchedulerOptions {
    /// The configuration (`--config`, or the defaults).
    pub config: KubeSchedulerConfiguration,
    /// The plugin registry ([`crate::plugins::registry`] in production).
    pub registry: Vec<(&'static str, PluginFactory)>,
    /// This instance's identity for the Lease and events.
    pub identity: String,
    /// Where the scheduler's metrics go (served by whoever registers it).
    pub metrics: SchedulerMetrics,
}

impl std::fmt::Debug for SchedulerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerOptions")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl SchedulerOptions {
    /// The default configuration and plugins.
    pub fn new() -> Self {
        SchedulerOptions {
            config: KubeSchedulerConfiguration::default(),
            registry: crate::plugins::registry(),
            identity: skiff_client::holder_identity(),
            metrics: SchedulerMetrics::new(),
        }
    }

    /// Names in the registry, for configuration validation.
    pub fn registered(&self) -> BTreeSet<&'static str> {
        self.registry.iter().map(|(n, _)| *n).collect()
    }
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions::new()
    }
}

/// Errors that stop the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration is invalid.
    #[error("{0}")]
    Config(#[from] ConfigError),
}

/// Builds every profile's framework (start-up validation: errors name the
/// field).
pub fn build_frameworks(
    opts: &SchedulerOptions,
    handle: &Handle,
) -> Result<HashMap<String, Arc<Framework>>, ConfigError> {
    let mut out = HashMap::new();
    for (i, p) in opts.config.profiles.iter().enumerate() {
        let f = Framework::new(
            i,
            p,
            &opts.registry,
            handle,
            opts.config.parallelism,
            opts.config.percentage_of_nodes_to_score,
        )?;
        out.insert(p.scheduler_name.clone(), Arc::new(f));
    }
    Ok(out)
}

/// Runs the scheduler until `shutdown` turns true (or its sender drops).
/// With leader election it schedules only while holding the Lease.
pub async fn run(
    opts: SchedulerOptions,
    client: kube::Client,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), RunError> {
    // Validate before campaigning, so a bad config stops start-up at once.
    build_frameworks(
        &opts,
        &Handle {
            lister: Arc::new(crate::framework::StaticLister::default()),
        },
    )?;
    let le = &opts.config.leader_election;
    let election = le.leader_elect.then(|| {
        LeaderElectionConfig::new(
            &le.resource_namespace,
            &le.resource_name,
            opts.identity.clone(),
        )
    });
    // As upstream, the status is reported only with leader election on.
    let set_leader = |leading: bool| {
        if le.leader_elect {
            opts.metrics.set_leader(&le.resource_name, leading);
        }
    };
    set_leader(false);
    let mut leadership = Leadership::start(client.clone(), election, shutdown.clone());
    loop {
        tokio::select! {
            r = leadership.leading.wait_for(|l| *l) => if r.is_err() { break },
            _ = shutdown.wait_for(|s| *s) => break,
        }
        tracing::info!(identity = %opts.identity, "scheduler is leading: starting");
        set_leader(true);
        let led = run_leading(
            &opts,
            client.clone(),
            &mut leadership.leading,
            &mut shutdown,
        )
        .await;
        set_leader(false);
        led?;
        if *shutdown.borrow() {
            break;
        }
        tracing::warn!("scheduler lost leadership: stopped scheduling");
    }
    // Let the elector release the Lease so a standby takes over at once.
    leadership.finish().await;
    Ok(())
}

async fn run_leading(
    opts: &SchedulerOptions,
    client: kube::Client,
    leading: &mut watch::Receiver<bool>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), RunError> {
    let mut tasks = JoinSet::new();
    let slot: crate::informers::QueueSlot = Arc::default();
    let lister = start_listers(&client, &slot, &mut tasks);
    let handle = Handle {
        lister: Arc::new(lister.clone()),
    };
    let frameworks = build_frameworks(opts, &handle)?;
    let mut plugins: Vec<Arc<dyn Plugin>> = Vec::new();
    let mut pre_enqueue = HashMap::new();
    let mut queue_sort = None;
    for (name, f) in &frameworks {
        plugins.extend(f.plugins().cloned());
        pre_enqueue.insert(name.clone(), f.pre_enqueue_plugins().to_vec());
        if queue_sort.is_none() {
            queue_sort = f.queue_sort().cloned();
        }
    }
    let queue = Arc::new(SchedulingQueue::new(
        queue_sort,
        pre_enqueue,
        &plugins,
        Duration::from_secs(opts.config.pod_initial_backoff_seconds),
        Duration::from_secs(opts.config.pod_max_backoff_seconds),
    ));
    let _ = slot.set(queue.clone());
    opts.metrics.set_queue(&queue);
    let cache = Arc::new(Cache::new());
    let (nodes_tx, mut nodes_synced) = watch::channel(false);
    let (pods_tx, mut pods_synced) = watch::channel(false);
    spawn_node_informer(
        &mut tasks,
        client.clone(),
        cache.clone(),
        queue.clone(),
        nodes_tx,
    );
    let names: HashSet<String> = frameworks.keys().cloned().collect();
    spawn_pod_informer(
        &mut tasks,
        client.clone(),
        PodHandler::new(names, cache.clone(), queue.clone()),
        pods_tx,
    );
    let events: Arc<dyn EventSink> = Arc::new(EventRecorder::spawn(
        client.clone(),
        "default-scheduler",
        // Upstream's reportingInstance: the controller name and the host.
        &format!(
            "default-scheduler-{}",
            opts.identity
                .rsplit_once('_')
                .map_or(opts.identity.as_str(), |(h, _)| h)
        ),
        skiff_client::events::DEFAULT_EVENT_QUEUE,
    ));
    let sched = Arc::new(Scheduler {
        frameworks,
        queue: queue.clone(),
        cache,
        events,
        status: Arc::new(ApiStatusWriter { client }),
        metrics: opts.metrics.clone(),
    });
    let stopped = async {
        tokio::select! {
            _ = leading.wait_for(|l| !*l) => {}
            _ = shutdown.wait_for(|s| *s) => {}
        }
    };
    tokio::pin!(stopped);
    // Wait for the caches before the first decision (WaitForCacheSync).
    tokio::select! {
        _ = &mut stopped => { tasks.abort_all(); return Ok(()) }
        _ = async {
            let _ = nodes_synced.wait_for(|s| *s).await;
            let _ = pods_synced.wait_for(|s| *s).await;
            lister.wait_until_ready().await;
        } => {}
    }
    tracing::info!("scheduler caches synced: scheduling");
    let looping = tokio::spawn(sched.run());
    stopped.await;
    queue.close();
    looping.abort();
    tasks.abort_all();
    Ok(())
}
