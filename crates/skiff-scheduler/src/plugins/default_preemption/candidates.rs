//! Candidate nodes for preemption: which nodes to try, the dry run over
//! them (upstream's `DryRunPreemption`) and choosing the best one
//! (`pickOneNodeForPreemption`).

use std::sync::Arc;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use super::victims::{Victims, pod_priority, pod_start_time, select_victims_on_node};
use crate::framework::{
    Code, CycleState, FrameworkHandle, NodeInfo, NodeToStatus, PodInfo, Status,
};

/// A node where the pod fits once its victims are gone.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The node.
    pub name: String,
    /// What must be evicted there.
    pub victims: Victims,
}

/// Nodes where removing pods might help: those Filter rejected as
/// Unschedulable (not UnschedulableAndUnresolvable), in snapshot order.
/// Nodes absent from `filtered` had `absent` (None: unresolvable).
pub fn nodes_where_preemption_might_help(
    nodes: &[Arc<NodeInfo>],
    filtered: &NodeToStatus,
    absent: Option<&Status>,
) -> Vec<Arc<NodeInfo>> {
    nodes
        .iter()
        .filter(|n| {
            let code = match filtered.get(n.name()) {
                Some(s) => s.code(),
                None => absent.map_or(Code::UnschedulableAndUnresolvable, Status::code),
            };
            code == Code::Unschedulable
        })
        .cloned()
        .collect()
}

/// How many candidates the dry run looks for: `percentage` of the nodes,
/// at least `absolute`, at most all of them (upstream's
/// `calculateNumCandidates`).
pub fn calculate_num_candidates(num_nodes: usize, percentage: i64, absolute: i64) -> usize {
    let n = (num_nodes as i64 * percentage / 100).max(absolute);
    (n.max(0) as usize).min(num_nodes)
}

/// Below this many potential nodes the dry run stays on one thread.
const PARALLEL_MIN_NODES: usize = 64;
/// Below this many CPUs the dry run stays on one thread: the API server
/// and the scheduler's other work need them, and on two CPUs a parallel
/// dry run measured slower (Preemption: 540 against 660-710 pods/s).
const PARALLEL_MIN_CPUS: usize = 4;
/// Nodes each thread checks per round of a parallel dry run: enough work
/// to repay the thread's spawn. (A node takes microseconds; at two nodes
/// per thread, spawning cost more than the nodes.)
const DRY_RUN_CHUNK: usize = 32;

/// Threads for a dry run over `nodes` potential nodes.
pub fn dry_run_threads(nodes: usize) -> usize {
    let cpus = crate::runtime::cpu_threads();
    if nodes >= PARALLEL_MIN_NODES && cpus >= PARALLEL_MIN_CPUS {
        cpus
    } else {
        1
    }
}

/// Simulates preemption on `potential` nodes starting at `offset`, until
/// `wanted` candidates are found with at least one not violating a
/// PodDisruptionBudget. Candidates without violations come first. Returns
/// the candidates and each failed node's status. With more than one of
/// `threads`, nodes are simulated in parallel rounds, stopping after the
/// round that found enough (upstream cancels its parallel workers the same
/// way).
#[allow(clippy::too_many_arguments)]
pub fn dry_run_preemption(
    fh: &dyn FrameworkHandle,
    state: &CycleState,
    pod: &PodInfo,
    potential: &[Arc<NodeInfo>],
    pdbs: &[Arc<PodDisruptionBudget>],
    offset: usize,
    wanted: usize,
    threads: usize,
) -> (Vec<Candidate>, NodeToStatus) {
    let n = potential.len();
    let check = |i: usize| -> (String, Result<Victims, Status>) {
        let node = &potential[(offset + i) % n];
        let mut node_copy = NodeInfo::clone(node);
        let mut state_copy = state.clone();
        let r = select_victims_on_node(fh, &mut state_copy, pod, &mut node_copy, pdbs);
        (node.name().to_owned(), r)
    };
    // One node per round on one thread.
    let round = if threads > 1 {
        threads * DRY_RUN_CHUNK
    } else {
        1
    };
    let mut non_violating = Vec::new();
    let mut violating = Vec::new();
    let mut statuses = NodeToStatus::new();
    let mut done = 0;
    while done < n {
        let end = (done + round).min(n);
        let results: Vec<(String, Result<Victims, Status>)> = if threads > 1 {
            let per = (end - done).div_ceil(threads);
            std::thread::scope(|sc| {
                let handles: Vec<_> = (done..end)
                    .step_by(per)
                    .map(|lo| {
                        let hi = (lo + per).min(end);
                        sc.spawn(move || (lo..hi).map(check).collect::<Vec<_>>())
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap_or_default())
                    .collect()
            })
        } else {
            (done..end).map(check).collect()
        };
        done = end;
        for (name, r) in results {
            match r {
                Ok(victims) if victims.num_pdb_violations == 0 => {
                    non_violating.push(Candidate { name, victims });
                }
                Ok(victims) => violating.push(Candidate { name, victims }),
                Err(s) => {
                    statuses.insert(name, s);
                }
            }
        }
        if !non_violating.is_empty() && non_violating.len() + violating.len() >= wanted {
            break;
        }
    }
    // Upstream fills fixed-size lists, so never more than `wanted` of each.
    non_violating.truncate(wanted);
    violating.truncate(wanted);
    non_violating.extend(violating);
    (non_violating, statuses)
}

/// The earliest start time among the highest-priority victims (upstream's
/// `GetEarliestPodStartTime`); i128::MAX when none started.
fn earliest_start_of_highest_priority(v: &Victims) -> i128 {
    let Some(first) = v.pods.first() else {
        return i128::MIN;
    };
    let mut max_priority = pod_priority(&first.pod);
    let mut earliest = pod_start_time(&first.pod);
    for p in &v.pods {
        let prio = pod_priority(&p.pod);
        if prio == max_priority {
            earliest = earliest.min(pod_start_time(&p.pod));
        } else if prio > max_priority {
            max_priority = prio;
            earliest = pod_start_time(&p.pod);
        }
    }
    earliest
}

/// The index of the best candidate: fewest PodDisruptionBudget violations,
/// then the lowest highest-victim priority, the smallest sum of priorities,
/// the fewest victims, the latest start of the highest-priority victims,
/// and finally the first. Victims are ordered most important first.
pub fn pick_one_node_for_preemption(candidates: &[Candidate]) -> Option<usize> {
    type ScoreFn = fn(&Victims) -> i128;
    let score_fns: [ScoreFn; 5] = [
        |v| -i128::from(v.num_pdb_violations),
        |v| {
            -v.pods
                .first()
                .map_or(0, |p| i128::from(pod_priority(&p.pod)))
        },
        |v| {
            // Shifted so every term is positive: a few negative-priority
            // victims must not beat fewer ones of the same priority.
            -v.pods
                .iter()
                .map(|p| i128::from(pod_priority(&p.pod)) + i128::from(i32::MAX) + 1)
                .sum::<i128>()
        },
        |v| -(v.pods.len() as i128),
        earliest_start_of_highest_priority,
    ];
    let mut remaining: Vec<usize> = (0..candidates.len()).collect();
    for f in score_fns {
        let scores: Vec<i128> = remaining
            .iter()
            .map(|&i| f(&candidates[i].victims))
            .collect();
        let &best = scores.iter().max()?;
        remaining = remaining
            .iter()
            .zip(&scores)
            .filter(|(_, s)| **s == best)
            .map(|(i, _)| *i)
            .collect();
        if remaining.len() == 1 {
            break;
        }
    }
    remaining.first().copied()
}
