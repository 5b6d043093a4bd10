//! The framework runtime: one [`Framework`] per profile, built from the
//! plugin registry and the profile's configuration, that runs the plugins
//! at each extension point as upstream's `frameworkImpl`.

mod binding;
mod diagnosis;
mod post_filter;
mod schedule;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::config::{ConfigError, Profile};
use crate::framework::{Handle, MAX_NODE_SCORE, Plugin, PluginFactory};

pub use binding::{PERMIT_MAX_TIMEOUT, WaitingPods};
pub use diagnosis::{Diagnosis, FitError, NO_NODES_AVAILABLE};
pub use post_filter::CycleHandle;
pub use schedule::{PodNominator, ScheduleError, ScheduleResult, num_feasible_nodes_to_find};

/// The CPUs this process may use, read once: the standard library reads
/// the cgroup's quota files on every call, too slow for once per cycle.
pub(crate) fn cpu_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |p| p.get()))
}

/// Plugins of one extension point with their score weights.
type WeightedPlugins = Vec<(Arc<dyn Plugin>, i64)>;

/// The plugins of one profile, per extension point, in order.
pub struct Framework {
    profile_name: String,
    percentage_of_nodes_to_score: Option<i32>,
    parallelism: usize,
    plugins: HashMap<&'static str, Arc<dyn Plugin>>,
    pre_enqueue: Vec<Arc<dyn Plugin>>,
    queue_sort: Option<Arc<dyn Plugin>>,
    pre_filter: Vec<Arc<dyn Plugin>>,
    filter: Vec<Arc<dyn Plugin>>,
    post_filter: Vec<Arc<dyn Plugin>>,
    pre_score: Vec<Arc<dyn Plugin>>,
    score: Vec<(Arc<dyn Plugin>, i64)>,
    reserve: Vec<Arc<dyn Plugin>>,
    permit: Vec<Arc<dyn Plugin>>,
    pre_bind: Vec<Arc<dyn Plugin>>,
    bind: Vec<Arc<dyn Plugin>>,
    post_bind: Vec<Arc<dyn Plugin>>,
    next_start_node_index: AtomicUsize,
    rng: Mutex<StdRng>,
    waiting_pods: WaitingPods,
    pending_permits: Mutex<HashMap<String, PendingPermit>>,
}

/// A Permit wait: the outcome channel, the timeout and the waiting plugins.
type PendingPermit = (
    tokio::sync::oneshot::Receiver<crate::framework::Status>,
    std::time::Duration,
    String,
);

impl std::fmt::Debug for Framework {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |v: &[Arc<dyn Plugin>]| v.iter().map(|p| p.name()).collect::<Vec<_>>();
        f.debug_struct("Framework")
            .field("profile", &self.profile_name)
            .field("pre_filter", &names(&self.pre_filter))
            .field("filter", &names(&self.filter))
            .field(
                "score",
                &self
                    .score
                    .iter()
                    .map(|(p, w)| (p.name(), *w))
                    .collect::<Vec<_>>(),
            )
            .field("bind", &names(&self.bind))
            .finish_non_exhaustive()
    }
}

/// Does `plugin` implement the extension point with configuration key `key`?
fn implements(plugin: &dyn Plugin, key: &str) -> bool {
    match key {
        "preEnqueue" => plugin.as_pre_enqueue().is_some(),
        "queueSort" => plugin.as_queue_sort().is_some(),
        "preFilter" => plugin.as_pre_filter().is_some(),
        "filter" => plugin.as_filter().is_some(),
        "postFilter" => plugin.as_post_filter().is_some(),
        "preScore" => plugin.as_pre_score().is_some(),
        "score" => plugin.as_score().is_some(),
        "reserve" => plugin.as_reserve().is_some(),
        "permit" => plugin.as_permit().is_some(),
        "preBind" => plugin.as_pre_bind().is_some(),
        "bind" => plugin.as_bind().is_some(),
        "postBind" => plugin.as_post_bind().is_some(),
        _ => false,
    }
}

impl Framework {
    /// Builds the framework of `profile`: instantiates every plugin it
    /// enables (once, with its `pluginConfig` args) and expands `multiPoint`
    /// into the extension points each plugin implements, as upstream's
    /// `expandMultiPointPlugins` (plugins named at a specific point first,
    /// in that order, then multiPoint ones). Default plugins missing from
    /// `registry` are skipped; any other unknown name is an error.
    pub fn new(
        profile_index: usize,
        profile: &Profile,
        registry: &[(&'static str, PluginFactory)],
        handle: &Handle,
        parallelism: usize,
        global_percentage: Option<i32>,
    ) -> Result<Framework, ConfigError> {
        let path = format!("profiles[{profile_index}]");
        let factories: HashMap<&str, (&'static str, PluginFactory)> =
            registry.iter().map(|(n, f)| (*n, (*n, *f))).collect();
        let mut plugins: HashMap<&'static str, Arc<dyn Plugin>> = HashMap::new();
        let mut instantiate = |name: &str| -> Result<Option<Arc<dyn Plugin>>, ConfigError> {
            let Some(&(static_name, factory)) = factories.get(name) else {
                return Ok(None);
            };
            if let Some(p) = plugins.get(static_name) {
                return Ok(Some(p.clone()));
            }
            let args_index = profile.plugin_config.iter().position(|(n, _)| n == name);
            let args = args_index.map(|i| &profile.plugin_config[i].1);
            let p = factory(args, handle).map_err(|e| {
                ConfigError(match args_index {
                    Some(i) => format!("{path}.pluginConfig[{i}].args.{e}"),
                    None => format!("{path}: plugin {name:?}: {e}"),
                })
            })?;
            plugins.insert(static_name, p.clone());
            Ok(Some(p))
        };
        let mut per_point: HashMap<&'static str, WeightedPlugins> = HashMap::new();
        for &(key, ref set) in &profile.points {
            let mut list: Vec<(Arc<dyn Plugin>, i64)> = Vec::new();
            let mut explicit = BTreeSet::new();
            for (i, r) in set.enabled.iter().enumerate() {
                let Some(p) = instantiate(&r.name)? else {
                    return Err(ConfigError(format!(
                        "{path}.plugins.{key}.enabled[{i}].name: Invalid value: {:?}: not a registered plugin",
                        r.name
                    )));
                };
                if !implements(p.as_ref(), key) {
                    return Err(ConfigError(format!(
                        "{path}.plugins.{key}.enabled[{i}].name: Invalid value: {:?}: plugin {:?} does not extend {key} plugin",
                        r.name, r.name
                    )));
                }
                if !explicit.insert(r.name.clone()) {
                    return Err(ConfigError(format!(
                        "{path}.plugins.{key}.enabled[{i}].name: Duplicate value: {:?}",
                        r.name
                    )));
                }
                list.push((p, i64::from(r.weight.unwrap_or(0).max(1))));
            }
            for r in &profile.multi_point.enabled {
                if set.is_disabled(&r.name) || explicit.contains(&r.name) {
                    continue;
                }
                let Some(p) = instantiate(&r.name)? else {
                    if crate::config::DEFAULT_MULTI_POINT
                        .iter()
                        .any(|(n, _)| *n == r.name)
                    {
                        continue;
                    }
                    return Err(ConfigError(format!(
                        "{path}.plugins.multiPoint.enabled: Invalid value: {:?}: not a registered plugin",
                        r.name
                    )));
                };
                if !implements(p.as_ref(), key) {
                    continue;
                }
                if list.iter().any(|(q, _)| q.name() == p.name()) {
                    return Err(ConfigError(format!(
                        "{path}.plugins.multiPoint: plugin {:?} already registered as {key:?}",
                        r.name
                    )));
                }
                list.push((p, i64::from(r.weight.unwrap_or(0).max(1))));
            }
            per_point.insert(key, list);
        }
        let mut take = |k: &str| per_point.remove(k).unwrap_or_default();
        let strip =
            |v: Vec<(Arc<dyn Plugin>, i64)>| v.into_iter().map(|(p, _)| p).collect::<Vec<_>>();
        let queue_sort = strip(take("queueSort"));
        if queue_sort.len() > 1 {
            return Err(ConfigError(format!(
                "{path}.plugins.queueSort.enabled: Invalid value: {}: only one queue sort plugin can be enabled",
                queue_sort.len()
            )));
        }
        let score = take("score");
        let mut total: i64 = 0;
        for (_, w) in &score {
            total = w
                .checked_mul(MAX_NODE_SCORE)
                .and_then(|x| x.checked_add(total))
                .ok_or_else(|| {
                    ConfigError(format!(
                        "{path}: total score of Score plugins could overflow"
                    ))
                })?;
        }
        Ok(Framework {
            profile_name: profile.scheduler_name.clone(),
            percentage_of_nodes_to_score: profile
                .percentage_of_nodes_to_score
                .or(global_percentage),
            parallelism: parallelism.max(1),
            pre_enqueue: strip(take("preEnqueue")),
            queue_sort: queue_sort.into_iter().next(),
            pre_filter: strip(take("preFilter")),
            filter: strip(take("filter")),
            post_filter: strip(take("postFilter")),
            pre_score: strip(take("preScore")),
            score,
            reserve: strip(take("reserve")),
            permit: strip(take("permit")),
            pre_bind: strip(take("preBind")),
            bind: strip(take("bind")),
            post_bind: strip(take("postBind")),
            plugins,
            next_start_node_index: AtomicUsize::new(0),
            rng: Mutex::new(StdRng::from_os_rng()),
            waiting_pods: WaitingPods::default(),
            pending_permits: Mutex::new(HashMap::new()),
        })
    }

    /// Replaces the random source used for tie-breaks (tests replay seeds).
    pub fn set_seed(&self, seed: u64) {
        if let Ok(mut r) = self.rng.lock() {
            *r = StdRng::seed_from_u64(seed);
        }
    }

    /// The profile's scheduler name.
    pub fn profile_name(&self) -> &str {
        &self.profile_name
    }

    /// The plugin named `name`, if the profile enables it anywhere.
    pub fn plugin(&self, name: &str) -> Option<&Arc<dyn Plugin>> {
        self.plugins.get(name)
    }

    /// Every enabled plugin.
    pub fn plugins(&self) -> impl Iterator<Item = &Arc<dyn Plugin>> {
        self.plugins.values()
    }

    /// The QueueSort plugin.
    pub fn queue_sort(&self) -> Option<&Arc<dyn Plugin>> {
        self.queue_sort.as_ref()
    }

    /// The PreEnqueue plugins.
    pub fn pre_enqueue_plugins(&self) -> &[Arc<dyn Plugin>] {
        &self.pre_enqueue
    }

    /// True when a PostFilter plugin is enabled.
    pub fn has_post_filter_plugins(&self) -> bool {
        !self.post_filter.is_empty()
    }

    /// Names of the plugins per extension point (for logs and tests).
    pub fn list_plugins(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        let n = |v: &[Arc<dyn Plugin>]| v.iter().map(|p| p.name()).collect();
        vec![
            ("preEnqueue", n(&self.pre_enqueue)),
            (
                "queueSort",
                self.queue_sort.iter().map(|p| p.name()).collect(),
            ),
            ("preFilter", n(&self.pre_filter)),
            ("filter", n(&self.filter)),
            ("postFilter", n(&self.post_filter)),
            ("preScore", n(&self.pre_score)),
            ("score", self.score.iter().map(|(p, _)| p.name()).collect()),
            ("reserve", n(&self.reserve)),
            ("permit", n(&self.permit)),
            ("preBind", n(&self.pre_bind)),
            ("bind", n(&self.bind)),
            ("postBind", n(&self.post_bind)),
        ]
    }

    /// Score weights by plugin.
    pub fn score_weights(&self) -> Vec<(&'static str, i64)> {
        self.score.iter().map(|(p, w)| (p.name(), *w)).collect()
    }

    /// Pods waiting at Permit; Permit plugins' owners allow or reject them.
    pub fn waiting_pods(&self) -> &WaitingPods {
        &self.waiting_pods
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
