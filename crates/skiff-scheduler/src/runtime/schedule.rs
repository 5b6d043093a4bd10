//! The scheduling algorithm of one cycle: PreFilter, Filter over the
//! snapshot (a rotating, adaptive sample of nodes), PreScore, Score,
//! NormalizeScore and weights, host selection with a random tie-break.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rand::Rng;

use super::Framework;
use super::diagnosis::{Diagnosis, FitError};
use crate::framework::{
    Code, CycleState, FilterPlugin, MAX_NODE_SCORE, MIN_NODE_SCORE, NodeInfo, NodeScore,
    NominatedPods, PodInfo, PreFilterResult, Snapshot, Status,
};

/// Below this many nodes every node is evaluated.
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The adaptive percentage never drops below this.
const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: i64 = 5;
/// Nodes per thread per round when filtering in parallel: below this,
/// spawning threads costs more than it saves.
const PARALLEL_CHUNK: usize = 512;

/// How many nodes ahead of the one being filtered its node info is
/// prefetched.
const PREFETCH_AHEAD: usize = 4;

/// How far ahead the filter loop loads nodes' label blocks (less than
/// [`PREFETCH_AHEAD`], so the node info that points to the block is there).
const LABELS_AHEAD: usize = 2;

/// Where the pod goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleResult {
    /// The chosen node.
    pub suggested_host: String,
    /// Nodes evaluated by Filter.
    pub evaluated_nodes: usize,
    /// Nodes that passed Filter.
    pub feasible_nodes: usize,
}

/// Why a cycle found no node.
#[derive(Debug, Clone)]
pub enum ScheduleError {
    /// The snapshot has no nodes.
    NoNodes,
    /// No node fits.
    Fit(Box<FitError>),
    /// A plugin failed.
    Error(Status),
}

impl std::fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScheduleError::NoNodes => f.write_str(super::NO_NODES_AVAILABLE),
            ScheduleError::Fit(e) => e.fmt(f),
            ScheduleError::Error(s) => s.fmt(f),
        }
    }
}

/// Pods nominated to nodes (by preemption) that Filter must take into
/// account, as upstream's `PodNominator`.
pub trait PodNominator: Send + Sync {
    /// Nominated pods on `node` (None: none).
    fn nominated_pods_for_node(&self, node: &str) -> Option<NominatedPods>;
    /// Whether any pod is nominated anywhere (fast path).
    fn has_nominated_pods(&self) -> bool;
    /// The node pod `key` is nominated to, as this scheduler last decided
    /// (possibly before the pod's status shows it).
    fn nominated_node_of(&self, key: &str) -> Option<String>;
}

/// Upstream's `numFeasibleNodesToFind`: every node below 100 nodes,
/// otherwise `percentage` of them (adaptive `50 - nodes/125`, at least 5%
/// when unset or 0), but never fewer than 100.
pub fn num_feasible_nodes_to_find(percentage: Option<i32>, num_all_nodes: usize) -> usize {
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND {
        return num_all_nodes;
    }
    let mut p = i64::from(percentage.unwrap_or(0));
    if p == 0 {
        p = (50 - num_all_nodes as i64 / 125).max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND);
    }
    let n = (num_all_nodes as i64 * p / 100) as usize;
    n.max(MIN_FEASIBLE_NODES_TO_FIND)
}

fn priority(pod: &PodInfo) -> i32 {
    pod.pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

impl Framework {
    /// PreFilter: merges the plugins' node restrictions; a Skip drops that
    /// plugin's Filter for this cycle. A rejection names its plugin.
    pub fn run_pre_filter_plugins(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status, BTreeSet<&'static str>) {
        let mut result: Option<PreFilterResult> = None;
        let mut with_nodes = BTreeSet::new();
        for p in &self.pre_filter {
            let Some(pf) = p.as_pre_filter() else {
                continue;
            };
            let (r, s) = pf.pre_filter(state, pod, snapshot);
            if s.is_skip() {
                state.skip_filter_plugins.insert(p.name());
                continue;
            }
            if !s.is_success() {
                let s = if s.is_rejected() {
                    s.with_plugin(p.name())
                } else {
                    Status::error(format!("running PreFilter plugin {:?}: {s}", p.name()))
                        .with_plugin(p.name())
                };
                return (None, s, BTreeSet::new());
            }
            if let Some(names) = r.and_then(|r| r.node_names) {
                with_nodes.insert(p.name());
                let merged = match result.take().and_then(|r| r.node_names) {
                    None => names,
                    Some(prev) => prev.intersection(&names).cloned().collect(),
                };
                if merged.is_empty() {
                    let list: Vec<&str> = with_nodes.iter().copied().collect();
                    let msg = if list.len() == 1 {
                        format!("node(s) didn't satisfy plugin {}", list[0])
                    } else {
                        format!(
                            "node(s) didn't satisfy plugins [{}] simultaneously",
                            list.join(" ")
                        )
                    };
                    return (None, Status::unresolvable(msg), with_nodes);
                }
                result = Some(PreFilterResult {
                    node_names: Some(merged),
                });
            }
        }
        (result, Status::success(), with_nodes)
    }

    /// Filter for one node: the first plugin that does not pass decides.
    pub fn run_filter_plugins(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        run_active_filters(&self.active_filters(state), state, pod, node)
    }

    /// The Filter plugins not skipped by PreFilter this cycle, resolved once
    /// per cycle rather than per node (the skip-set lookup showed up in
    /// profiles at 5,000 nodes).
    fn active_filters<'a>(
        &'a self,
        state: &CycleState,
    ) -> Vec<(&'static str, &'a dyn FilterPlugin)> {
        self.filter
            .iter()
            .filter(|p| !state.skip_filter_plugins.contains(p.name()))
            .filter_map(|p| p.as_filter().map(|f| (p.name(), f)))
            .collect()
    }

    /// Filter with the nominated pods of equal or higher priority counted
    /// on the node first (upstream's `RunFilterPluginsWithNominatedPods`):
    /// the pod must fit both with them and without them.
    pub fn run_filter_plugins_with_nominated_pods(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
        nominated: &[Arc<PodInfo>],
    ) -> Status {
        let prio = priority(pod);
        let extra: Vec<&Arc<PodInfo>> = nominated
            .iter()
            .filter(|n| n.key != pod.key && priority(n) >= prio)
            .collect();
        if !extra.is_empty() {
            let mut state_with = state.clone();
            let mut node_with = node.clone();
            for n in &extra {
                node_with.add_pod((*n).clone());
                // Plugins whose PreFilter skipped have no state to update.
                let s = self.run_pre_filter_extension(&mut state_with, pod, n, &node_with, true);
                if !s.is_success() {
                    return s;
                }
            }
            let s = self.run_filter_plugins(&state_with, pod, &node_with);
            if !s.is_success() {
                return s;
            }
        }
        self.run_filter_plugins(state, pod, node)
    }

    /// One whole scheduling decision for `pod` on `snapshot` (upstream's
    /// `schedulePod`), without side effects beyond the rotating start index.
    pub fn schedule_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
        nominator: Option<&dyn PodNominator>,
    ) -> Result<ScheduleResult, ScheduleError> {
        if snapshot.nodes.is_empty() {
            return Err(ScheduleError::NoNodes);
        }
        let (feasible, diagnosis) = self.find_nodes_that_fit(state, pod, snapshot, nominator)?;
        if feasible.is_empty() {
            return Err(ScheduleError::Fit(Box::new(FitError {
                pod: pod.key.clone(),
                num_all_nodes: snapshot.nodes.len(),
                diagnosis,
            })));
        }
        let evaluated = feasible.len() + diagnosis.node_to_status.len();
        if feasible.len() == 1 {
            return Ok(ScheduleResult {
                suggested_host: feasible[0].name().to_owned(),
                evaluated_nodes: evaluated,
                feasible_nodes: 1,
            });
        }
        let totals = self.prioritize_nodes(state, pod, &feasible, snapshot)?;
        let host = self.select_host(&totals);
        Ok(ScheduleResult {
            suggested_host: host,
            evaluated_nodes: evaluated,
            feasible_nodes: feasible.len(),
        })
    }

    /// PreFilter then Filter: the feasible nodes and the rejections.
    pub fn find_nodes_that_fit(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
        nominator: Option<&dyn PodNominator>,
    ) -> Result<(Vec<Arc<NodeInfo>>, Diagnosis), ScheduleError> {
        let mut diagnosis = Diagnosis::default();
        let (pre_result, s, with_nodes) = self.run_pre_filter_plugins(state, pod, snapshot);
        if !s.is_success() {
            if !s.is_rejected() {
                return Err(ScheduleError::Error(s));
            }
            if let Some(p) = s.plugin() {
                diagnosis.unschedulable_plugins.insert(p);
            }
            diagnosis.unschedulable_plugins.extend(with_nodes);
            diagnosis.pre_filter_msg = s.to_string();
            diagnosis.absent_nodes_status = Some(s);
            return Ok((Vec::new(), diagnosis));
        }
        // A node nominated by an earlier preemption is most likely the only
        // one that fits, so it is tried first (upstream's
        // `evaluateNominatedNode`).
        let nominated_node = pod
            .pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .and_then(|n| snapshot.get(n));
        if let Some(node) = nominated_node {
            let nominated = nominator
                .filter(|nm| nm.has_nominated_pods())
                .and_then(|nm| nm.nominated_pods_for_node(node.name()));
            let nominated = nominated.as_deref().unwrap_or_default();
            let s = self.run_filter_plugins_with_nominated_pods(state, pod, node, nominated);
            if s.is_success() {
                return Ok((vec![node.clone()], diagnosis));
            }
        }
        let restricted: Vec<Arc<NodeInfo>>;
        let nodes: &[Arc<NodeInfo>] = match pre_result.and_then(|r| r.node_names) {
            None => &snapshot.nodes,
            Some(names) => {
                restricted = names
                    .iter()
                    .filter_map(|n| snapshot.get(n).cloned())
                    .collect();
                let list: Vec<&str> = with_nodes.iter().copied().collect();
                diagnosis.absent_nodes_status = Some(Status::unresolvable(format!(
                    "node(s) didn't satisfy plugin(s) [{}]",
                    list.join(" ")
                )));
                diagnosis.unschedulable_plugins.extend(with_nodes);
                &restricted
            }
        };
        let n = nodes.len();
        if n == 0 {
            return Ok((Vec::new(), diagnosis));
        }
        let to_find = num_feasible_nodes_to_find(self.percentage_of_nodes_to_score, n);
        let start = self.next_start_node_index.load(Ordering::Relaxed) % n;
        let nominator = nominator.filter(|nm| nm.has_nominated_pods());
        let state_ref: &CycleState = state;
        let active = self.active_filters(state_ref);
        let reads_labels = active.iter().any(|(_, f)| f.reads_node_labels());
        let check = |i: usize| -> Status {
            let node = &nodes[(start + i) % n];
            match nominator {
                Some(nm) => {
                    let nominated = nm.nominated_pods_for_node(node.name());
                    let nominated = nominated.as_deref().unwrap_or_default();
                    self.run_filter_plugins_with_nominated_pods(state_ref, pod, node, nominated)
                }
                None => run_active_filters(&active, state_ref, pod, node),
            }
        };
        let mut feasible = Vec::with_capacity(to_find.min(n));
        let mut processed = 0;
        let threads = self.parallelism.min(super::cpu_threads());
        let mut error: Option<Status> = None;
        let record = |i: usize,
                      s: Status,
                      feasible: &mut Vec<Arc<NodeInfo>>,
                      diag: &mut Diagnosis,
                      error: &mut Option<Status>| {
            let node = &nodes[(start + i) % n];
            if s.is_success() {
                feasible.push(node.clone());
            } else if s.is_rejected() {
                if let Some(p) = s.plugin() {
                    diag.unschedulable_plugins.insert(p);
                }
                diag.node_to_status.insert(node.name().to_owned(), s);
            } else if s.code() == Code::Pending {
                if let Some(p) = s.plugin() {
                    diag.pending_plugins.insert(p);
                }
                diag.node_to_status.insert(node.name().to_owned(), s);
            } else if error.is_none() {
                *error = Some(s);
            }
        };
        while processed < n && feasible.len() < to_find && error.is_none() {
            // Threads only for a round big enough to repay their start, and
            // never more nodes than could still be wanted, so a cycle that
            // needs a few hundred feasible nodes checks about that many.
            let round = (threads * PARALLEL_CHUNK)
                .min(to_find - feasible.len())
                .min(n - processed);
            if threads > 1 && round >= 2 * PARALLEL_CHUNK {
                // `threads` contiguous chunks per round, stopping after the
                // round that reaches the target, as upstream's parallelizer.
                let per = round.div_ceil(threads);
                let base = processed;
                let results: Vec<Vec<Status>> = std::thread::scope(|sc| {
                    let handles: Vec<_> = (0..threads)
                        .map(|t| {
                            let lo = base + t * per;
                            let hi = (lo + per).min(base + round);
                            sc.spawn(move || (lo..hi).map(check).collect::<Vec<_>>())
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().unwrap_or_default())
                        .collect()
                });
                for s in results.into_iter().flatten() {
                    if feasible.len() >= to_find {
                        break;
                    }
                    record(processed, s, &mut feasible, &mut diagnosis, &mut error);
                    processed += 1;
                }
            } else {
                // The node infos are scattered over the heap and each
                // node's first read misses the caches; start the load of a
                // node a few places ahead so it overlaps this one's work.
                if processed + PREFETCH_AHEAD < n {
                    skiff_sys::memory::prefetch(&*nodes[(start + processed + PREFETCH_AHEAD) % n]);
                }
                // The label blocks are elsewhere again; a node whose info
                // was asked for two places back knows where its block is.
                if reads_labels && processed + LABELS_AHEAD < n {
                    nodes[(start + processed + LABELS_AHEAD) % n].prefetch_labels();
                }
                let s = check(processed);
                record(processed, s, &mut feasible, &mut diagnosis, &mut error);
                processed += 1;
            }
        }
        if let Some(e) = error {
            return Err(ScheduleError::Error(e));
        }
        self.next_start_node_index
            .store((start + processed) % n, Ordering::Relaxed);
        Ok((feasible, diagnosis))
    }

    /// PreScore, Score, NormalizeScore and weights: each node's total.
    pub fn prioritize_nodes<'n>(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &'n [Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Result<Vec<NodeScore<'n>>, ScheduleError> {
        let mut totals: Vec<NodeScore<'n>> = nodes
            .iter()
            .map(|n| NodeScore {
                name: n.name(),
                score: 0,
            })
            .collect();
        if self.score.is_empty() {
            // No scorers: every feasible node is equally good.
            for t in &mut totals {
                t.score = 1;
            }
            return Ok(totals);
        }
        for p in &self.pre_score {
            let Some(ps) = p.as_pre_score() else { continue };
            let s = ps.pre_score(state, pod, nodes, snapshot);
            if s.is_skip() {
                state.skip_score_plugins.insert(p.name());
            } else if !s.is_success() {
                return Err(ScheduleError::Error(Status::error(format!(
                    "running PreScore plugin {:?}: {s}",
                    p.name()
                ))));
            }
        }
        let state_ref: &CycleState = state;
        // One buffer for every plugin's scores, refilled per plugin.
        let mut scores: Vec<NodeScore<'n>> = Vec::with_capacity(nodes.len());
        for (p, weight) in &self.score {
            if state_ref.skip_score_plugins.contains(p.name()) {
                continue;
            }
            let Some(sp) = p.as_score() else { continue };
            let s = sp.score_nodes(state_ref, pod, nodes, &mut scores);
            if !s.is_success() {
                return Err(ScheduleError::Error(Status::error(format!(
                    "running Score plugin {:?}: {s}",
                    p.name()
                ))));
            }
            let s = sp.normalize_scores(state_ref, pod, &mut scores);
            if !s.is_success() {
                return Err(ScheduleError::Error(Status::error(format!(
                    "running Normalize on Score plugins: plugin {:?} failed with: {s}",
                    p.name()
                ))));
            }
            for (t, s) in totals.iter_mut().zip(&scores) {
                if !(MIN_NODE_SCORE..=MAX_NODE_SCORE).contains(&s.score) {
                    return Err(ScheduleError::Error(Status::error(format!(
                        "applying score defaultWeights on Score plugins: plugin {:?} returns an invalid score {}, it should in the range of [{MIN_NODE_SCORE}, {MAX_NODE_SCORE}] after normalizing",
                        p.name(),
                        s.score
                    ))));
                }
                t.score += s.score * weight;
            }
        }
        Ok(totals)
    }

    /// The node with the highest total; ties broken uniformly at random
    /// (reservoir sampling, as upstream).
    pub fn select_host(&self, totals: &[NodeScore<'_>]) -> String {
        let Ok(mut rng) = self.rng.lock() else {
            return totals
                .first()
                .map(|t| t.name.to_owned())
                .unwrap_or_default();
        };
        let mut best: Option<&NodeScore> = None;
        let mut ties = 0u32;
        for t in totals {
            match best {
                Some(b) if t.score < b.score => {}
                Some(b) if t.score == b.score => {
                    ties += 1;
                    if rng.random_range(0..ties) == 0 {
                        best = Some(t);
                    }
                }
                _ => {
                    best = Some(t);
                    ties = 1;
                }
            }
        }
        best.map(|b| b.name.to_owned()).unwrap_or_default()
    }
}

/// Runs `filters` in order on one node: the first that does not pass decides.
fn run_active_filters(
    filters: &[(&'static str, &dyn FilterPlugin)],
    state: &CycleState,
    pod: &PodInfo,
    node: &NodeInfo,
) -> Status {
    for (name, f) in filters {
        let s = f.filter(state, pod, node);
        if !s.is_success() {
            if !s.is_rejected() {
                return Status::error(format!("running {name:?} filter plugin: {s}"))
                    .with_plugin(name);
            }
            return s.with_plugin(name);
        }
    }
    Status::success()
}
