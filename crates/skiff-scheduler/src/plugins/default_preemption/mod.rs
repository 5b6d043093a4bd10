//! DefaultPreemption (PostFilter, PreEnqueue): when a pod fits nowhere,
//! find the node where evicting the fewest, least important lower-priority
//! pods lets it fit, honouring PodDisruptionBudgets where possible; nominate
//! the pod to that node and evict them asynchronously, keeping the pod out
//! of activeQ meanwhile (upstream's `defaultpreemption` plugin and
//! `framework/preemption` evaluator, with SchedulerAsyncPreemption).

pub mod candidates;
pub mod preempting;
pub mod prepare;
pub mod victims;

#[cfg(test)]
mod async_tests;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use skiff_api::field::Path;
use tokio::task::JoinSet;

use crate::framework::{
    ClusterEvent, ClusterLister, Code, CycleState, EventResource, FrameworkHandle, Handle,
    NodeToStatus, Plugin, PodInfo, PostFilterPlugin, PostFilterResult, PreEnqueuePlugin, Status,
    action,
};
use crate::plugins::helper::args;
use crate::runtime::{Diagnosis, FitError};
use candidates::{
    Candidate, calculate_num_candidates, dry_run_preemption, dry_run_threads,
    nodes_where_preemption_might_help, pick_one_node_for_preemption,
};
use preempting::{Eviction, Preempting, preempted_event};
use prepare::{ApiPreemptor, PodPreemptor};
use victims::{is_preemption_allowed, pod_priority};

/// The plugin's configuration name.
pub const NAME: &str = "DefaultPreemption";

/// `DefaultPreemptionArgs` with upstream's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultPreemptionArgs {
    /// Candidates to find as a percentage of the nodes (default 10).
    pub min_candidate_nodes_percentage: i64,
    /// Candidates to find at least (default 100).
    pub min_candidate_nodes_absolute: i64,
}

impl Default for DefaultPreemptionArgs {
    fn default() -> Self {
        DefaultPreemptionArgs {
            min_candidate_nodes_percentage: 10,
            min_candidate_nodes_absolute: 100,
        }
    }
}

impl DefaultPreemptionArgs {
    /// Decodes and validates the args (upstream's
    /// `ValidateDefaultPreemptionArgs`).
    pub fn parse(value: Option<&serde_json::Value>) -> Result<Self, String> {
        let obj = args::object(value)?;
        let root = Path::default();
        let d = DefaultPreemptionArgs::default();
        let a = DefaultPreemptionArgs {
            min_candidate_nodes_percentage: args::int(
                &obj,
                "minCandidateNodesPercentage",
                &root,
                d.min_candidate_nodes_percentage,
            )?,
            min_candidate_nodes_absolute: args::int(
                &obj,
                "minCandidateNodesAbsolute",
                &root,
                d.min_candidate_nodes_absolute,
            )?,
        };
        let (p, n) = (
            a.min_candidate_nodes_percentage,
            a.min_candidate_nodes_absolute,
        );
        if !(0..=100).contains(&p) {
            return Err(format!(
                "minCandidateNodesPercentage: Invalid value: {p}: not in valid range [0, 100]"
            ));
        }
        if n < 0 {
            return Err(format!(
                "minCandidateNodesAbsolute: Invalid value: {n}: not in valid range [0, inf)"
            ));
        }
        if p == 0 && n == 0 {
            return Err("minCandidateNodesPercentage: Invalid value: 0: cannot be zero at the same time as minCandidateNodesAbsolute".into());
        }
        Ok(a)
    }
}

/// The DefaultPreemption plugin.
pub struct DefaultPreemption {
    args: DefaultPreemptionArgs,
    lister: Arc<dyn ClusterLister>,
    preemptor: Option<Arc<dyn PodPreemptor>>,
    rng: Mutex<StdRng>,
    preempting: Preempting,
    /// The running evictions; dropping the plugin (the scheduler stopped
    /// leading) aborts them.
    tasks: Mutex<JoinSet<()>>,
}

impl std::fmt::Debug for DefaultPreemption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DefaultPreemption")
            .field("args", &self.args)
            .finish_non_exhaustive()
    }
}

/// The registry factory.
pub fn new(value: Option<&serde_json::Value>, handle: &Handle) -> Result<Arc<dyn Plugin>, String> {
    let args = DefaultPreemptionArgs::parse(value)?;
    let preemptor = handle
        .lister
        .api_client()
        .map(|client| Arc::new(ApiPreemptor { client }) as Arc<dyn PodPreemptor>);
    Ok(Arc::new(DefaultPreemption::with(
        args,
        handle.lister.clone(),
        preemptor,
        StdRng::from_os_rng(),
    )))
}

impl Plugin for DefaultPreemption {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_post_filter(&self) -> Option<&dyn PostFilterPlugin> {
        Some(self)
    }
    fn as_pre_enqueue(&self) -> Option<&dyn PreEnqueuePlugin> {
        Some(self)
    }
    /// Victims' deletions may un-gate a preemptor (upstream registers the
    /// event with a hint that always skips: the preemptor's other rejecting
    /// plugins decide, and PreEnqueue is asked again on every move).
    fn events_to_register(&self) -> Vec<ClusterEvent> {
        vec![ClusterEvent {
            resource: EventResource::Pod,
            action: action::DELETE,
        }]
    }
}

impl PreEnqueuePlugin for DefaultPreemption {
    fn pre_enqueue(&self, pod: &Pod) -> Status {
        if self.preempting.contains(pod) {
            return Status::unresolvable("waiting for the preemption for this pod to be finished");
        }
        Status::success()
    }
}

fn reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

/// Upstream's `podTerminatingByPreemption`: being deleted after the
/// scheduler marked it as a preemption victim.
fn terminating_by_preemption(pod: &Pod) -> bool {
    if pod.metadata.deletion_timestamp.is_none() {
        return false;
    }
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionTarget")
        .is_some_and(|c| c.status == "True" && c.reason.as_deref() == Some("PreemptionByScheduler"))
}

impl DefaultPreemption {
    /// A plugin with explicit parts (tests pass a recording preemptor and a
    /// seeded random source).
    pub fn with(
        args: DefaultPreemptionArgs,
        lister: Arc<dyn ClusterLister>,
        preemptor: Option<Arc<dyn PodPreemptor>>,
        rng: StdRng,
    ) -> DefaultPreemption {
        DefaultPreemption {
            args,
            lister,
            preemptor,
            rng: Mutex::new(rng),
            preempting: Preempting::default(),
            tasks: Mutex::new(JoinSet::new()),
        }
    }

    fn tasks(&self) -> MutexGuard<'_, JoinSet<()>> {
        self.tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// True while `pod`'s victims are being evicted (upstream's
    /// `IsPodRunningPreemption`).
    pub fn is_pod_running_preemption(&self, pod: &Pod) -> bool {
        self.preempting.contains(pod)
    }

    /// Waits for every eviction started so far (tests; an orderly stop).
    pub async fn wait_for_preemptions(&self) {
        let mut tasks = std::mem::take(&mut *self.tasks());
        while tasks.join_next().await.is_some() {}
    }

    /// Upstream's `PodEligibleToPreemptOthers`: pods with
    /// `preemptionPolicy: Never` don't preempt, nor do pods whose nominated
    /// node still has lower-priority victims terminating (unless that node
    /// has become unresolvable for them). `nominated` is the pod's
    /// nominated node (this scheduler's record, else the pod's status) and
    /// `nominated_node_status` what filtering said of it.
    pub fn pod_eligible_to_preempt_others(
        &self,
        fh: &dyn FrameworkHandle,
        pod: &PodInfo,
        nominated: Option<&str>,
        nominated_node_status: Option<&Status>,
    ) -> Result<(), &'static str> {
        let spec = pod.pod.spec.as_ref();
        if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
            return Err("not eligible due to preemptionPolicy=Never.");
        }
        let Some(nominated) = nominated else {
            return Ok(());
        };
        let code = nominated_node_status.map_or(Code::UnschedulableAndUnresolvable, Status::code);
        if code == Code::UnschedulableAndUnresolvable {
            return Ok(());
        }
        if let Some(node) = fh.snapshot().get(nominated) {
            // Victims whose eviction is still under way count as
            // terminating: another preemptor may just have chosen this
            // node, and its victim's DisruptionTarget and deletion are not
            // seen yet.
            let terminating = node.pods.iter().any(|p| {
                is_preemption_allowed(p, pod)
                    && (terminating_by_preemption(&p.pod) || self.preempting.is_victim(&p.pod))
            });
            if terminating {
                return Err("not eligible due to a terminating pod on the nominated node.");
            }
        }
        Ok(())
    }

    fn offset(&self, n: usize) -> usize {
        match self.rng.lock() {
            Ok(mut r) if n > 0 => r.random_range(0..n),
            _ => 0,
        }
    }

    /// Upstream's `Evaluator.Preempt` without the API writes: eligibility,
    /// candidates, the best one. Err carries the final status (and whether
    /// the nomination should be cleared).
    pub fn find_best_candidate(
        &self,
        fh: &dyn FrameworkHandle,
        state: &CycleState,
        pod: &PodInfo,
        filtered: &NodeToStatus,
        absent: Option<&Status>,
    ) -> Result<Candidate, (Option<PostFilterResult>, Status)> {
        let nominated = nominated_node(fh, pod);
        let nominated = nominated.as_deref();
        let nominated_status = nominated.and_then(|n| filtered.get(n)).or(absent);
        if let Err(msg) = self.pod_eligible_to_preempt_others(fh, pod, nominated, nominated_status)
        {
            return Err((None, Status::unschedulable(msg)));
        }
        let all = &fh.snapshot().nodes;
        if all.is_empty() {
            return Err((None, Status::error("no nodes available")));
        }
        let potential = nodes_where_preemption_might_help(all, filtered, absent);
        let (mut candidates, statuses) = if potential.is_empty() {
            (Vec::new(), NodeToStatus::new())
        } else {
            let pdbs = self.lister.pdbs();
            let wanted = calculate_num_candidates(
                potential.len(),
                self.args.min_candidate_nodes_percentage,
                self.args.min_candidate_nodes_absolute,
            );
            let offset = self.offset(potential.len());
            let threads = dry_run_threads(potential.len());
            dry_run_preemption(fh, state, pod, &potential, &pdbs, offset, wanted, threads)
        };
        if candidates.is_empty() {
            let errors: Vec<String> = statuses
                .values()
                .filter(|s| s.code() == Code::Error)
                .map(|s| s.to_string())
                .collect();
            if !errors.is_empty() {
                return Err((None, Status::error(errors.join(", "))));
            }
            let fit = FitError {
                pod: pod.key.clone(),
                num_all_nodes: all.len(),
                diagnosis: Diagnosis {
                    node_to_status: statuses,
                    absent_nodes_status: Some(Status::unresolvable(
                        "Preemption is not helpful for scheduling",
                    )),
                    ..Diagnosis::default()
                },
            };
            // A result without a node clears a stale nomination.
            return Err((
                Some(PostFilterResult::default()),
                Status::unschedulable(fit.to_string()),
            ));
        }
        let best = pick_one_node_for_preemption(&candidates).unwrap_or(0);
        Ok(candidates.swap_remove(best))
    }

    /// Upstream's `prepareCandidateAsync`: rejects the victims waiting at
    /// Permit now, and hands the API calls (clearing lower-priority
    /// nominations to the node, evicting the other victims) to a task; the
    /// preemptor stays gated by PreEnqueue while victims remain.
    fn prepare_candidate_async(
        &self,
        fh: &dyn FrameworkHandle,
        c: &Candidate,
        pod: &PodInfo,
    ) -> Status {
        let uid = pod.pod.metadata.uid.as_deref().unwrap_or("");
        let mut victims = Vec::new();
        for v in &c.victims.pods {
            if v.pod.metadata.deletion_timestamp.is_some() {
                // Graceful deletion already started.
                continue;
            }
            if fh.reject_waiting_pod(&v.key, NAME, "preempted") {
                fh.record_event(preempted_event(&v.pod, uid, &c.name));
                continue;
            }
            victims.push(v.pod.clone());
        }
        let priority = pod_priority(&pod.pod);
        let lower_nominated: Vec<Arc<Pod>> = fh
            .nominated_pods_for_node(&c.name)
            .iter()
            .flat_map(|l| l.iter())
            .filter(|n| pod_priority(&n.pod) < priority && n.key != pod.key)
            .map(|n| n.pod.clone())
            .collect();
        let client = match &self.preemptor {
            Some(p) => p.clone(),
            None if victims.is_empty() => return Status::success(),
            None => return Status::error("DefaultPreemption has no API client"),
        };
        if victims.is_empty() && lower_nominated.is_empty() {
            return Status::success();
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Status::error("DefaultPreemption runs outside an async runtime");
        };
        if !victims.is_empty() {
            self.preempting.insert(&pod.pod, &victims);
        }
        let eviction = Eviction {
            preemptor: pod.pod.clone(),
            preemptor_key: pod.key.clone(),
            scheduler_name: pod
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.scheduler_name.clone())
                .unwrap_or_else(|| crate::config::DEFAULT_SCHEDULER_NAME.to_owned()),
            node: c.name.clone(),
            victims,
            lower_nominated,
            client,
            handle: fh.detached(),
            preempting: self.preempting.clone(),
        };
        let mut tasks = self.tasks();
        // Finished evictions leave their results behind until reaped.
        while tasks.try_join_next().is_some() {}
        tasks.spawn_on(eviction.run(), &runtime);
        Status::success()
    }
}

impl PostFilterPlugin for DefaultPreemption {
    fn post_filter<'a>(
        &'a self,
        handle: &'a dyn FrameworkHandle,
        state: &'a CycleState,
        pod: &'a PodInfo,
        filtered: &'a NodeToStatus,
        absent_nodes_status: Option<&'a Status>,
    ) -> BoxFuture<'a, (Option<PostFilterResult>, Status)> {
        Box::pin(async move {
            // Every run counts, whatever its outcome (upstream's deferred
            // increment).
            if let Some(m) = handle.metrics() {
                m.preemption_attempt();
            }
            let candidate =
                match self.find_best_candidate(handle, state, pod, filtered, absent_nodes_status) {
                    Ok(c) => c,
                    Err((r, s)) => return (r, with_prefix(s)),
                };
            tracing::debug!(pod = %pod.key, node = %candidate.name, victims = candidate.victims.pods.len(), "preempting");
            let s = self.prepare_candidate_async(handle, &candidate, pod);
            if !s.is_success() {
                return (None, with_prefix(s));
            }
            if let Some(m) = handle.metrics() {
                m.observe_preemption_victims(candidate.victims.pods.len());
            }
            (
                Some(PostFilterResult {
                    nominated_node_name: Some(candidate.name),
                }),
                Status::success(),
            )
        })
    }
}

/// Upstream prefixes the plugin's messages with "preemption: ".
fn with_prefix(s: Status) -> Status {
    let msg = s.to_string();
    if msg.is_empty() {
        return s;
    }
    Status::new(s.code(), format!("preemption: {msg}"))
}

/// The node `pod` is nominated to: this scheduler's own record first (it
/// nominated the pod, and a retry can come before the status write that
/// shows it is seen), else the pod's `status.nominatedNodeName`. Judging
/// by the status alone, such a retry found the pod eligible again and
/// evicted a second victim elsewhere while its first one still terminated.
fn nominated_node(fh: &dyn FrameworkHandle, pod: &PodInfo) -> Option<String> {
    fh.nominated_node_of(&pod.key).or_else(|| {
        pod.pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.clone())
            .filter(|n| !n.is_empty())
    })
}
