//! Victim selection on one node (upstream's `SelectVictimsOnNode`) and the
//! PodDisruptionBudget accounting it relies on.

use std::cmp::Ordering;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use skiff_api::selector::labels::from_label_selector;

use crate::framework::{Code, CycleState, FrameworkHandle, NodeInfo, PodInfo, Status};

/// A pod's priority (`spec.priority`, 0 when unset).
pub fn pod_priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// When the pod started, in nanoseconds since the epoch; a pod that has
/// not started counts as starting now, i.e. after every started pod
/// (upstream's `GetPodStartTime`).
pub fn pod_start_time(pod: &Pod) -> i128 {
    pod.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map_or(i128::MAX, |t| t.0.as_nanosecond())
}

/// Upstream's `MoreImportantPod`: higher priority first, then the pod that
/// started earlier.
pub fn more_important_pod(a: &Pod, b: &Pod) -> bool {
    let (pa, pb) = (pod_priority(a), pod_priority(b));
    if pa != pb {
        return pa > pb;
    }
    pod_start_time(a) < pod_start_time(b)
}

/// [`more_important_pod`] as an ordering, most important first.
pub fn importance_order(a: &Arc<PodInfo>, b: &Arc<PodInfo>) -> Ordering {
    if more_important_pod(&a.pod, &b.pod) {
        Ordering::Less
    } else if more_important_pod(&b.pod, &a.pod) {
        Ordering::Greater
    } else {
        Ordering::Equal
    }
}

/// Splits `pods` (order kept) into those whose eviction would exceed a
/// matching PodDisruptionBudget's `disruptionsAllowed` and the rest
/// (upstream's `filterPodsWithPDBViolation`). Pods already listed in a
/// budget's `disruptedPods` do not use it up again.
pub fn filter_pods_with_pdb_violation(
    pods: &[Arc<PodInfo>],
    pdbs: &[Arc<PodDisruptionBudget>],
) -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
    let mut allowed: Vec<i32> = pdbs
        .iter()
        .map(|p| p.status.as_ref().map_or(0, |s| s.disruptions_allowed))
        .collect();
    let mut violating = Vec::new();
    let mut non_violating = Vec::new();
    for pi in pods {
        let mut violated = false;
        let labels = pi.labels();
        // A pod without labels matches no budget.
        if !labels.is_empty() {
            for (i, pdb) in pdbs.iter().enumerate() {
                if pdb.metadata.namespace.as_deref() != Some(pi.namespace()) {
                    continue;
                }
                let selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
                let Ok(selector) = from_label_selector(selector) else {
                    continue;
                };
                // An empty selector matches nothing here, as upstream.
                if selector.is_empty() || !selector.matches(labels) {
                    continue;
                }
                let name = pi.pod.metadata.name.as_deref().unwrap_or("");
                let already_disrupted = pdb
                    .status
                    .as_ref()
                    .and_then(|s| s.disrupted_pods.as_ref())
                    .is_some_and(|d| d.contains_key(name));
                if already_disrupted {
                    continue;
                }
                allowed[i] -= 1;
                if allowed[i] < 0 {
                    violated = true;
                }
            }
        }
        if violated {
            violating.push(pi.clone());
        } else {
            non_violating.push(pi.clone());
        }
    }
    (violating, non_violating)
}

/// The victims chosen on one node, most important first.
#[derive(Debug, Clone)]
pub struct Victims {
    /// Pods to evict.
    pub pods: Vec<Arc<PodInfo>>,
    /// How many of them violate a PodDisruptionBudget.
    pub num_pdb_violations: i64,
}

/// True when `victim` may be preempted by `preemptor`: lower priority.
pub fn is_preemption_allowed(victim: &PodInfo, preemptor: &PodInfo) -> bool {
    pod_priority(&victim.pod) < pod_priority(&preemptor.pod)
}

fn remove(
    fh: &dyn FrameworkHandle,
    state: &mut CycleState,
    pod: &PodInfo,
    node: &mut NodeInfo,
    victim: &PodInfo,
) -> Result<(), Status> {
    if !node.remove_pod(&victim.key) {
        return Err(Status::error(format!(
            "no corresponding pod {} in pods of node {}",
            victim.key,
            node.name()
        )));
    }
    let s = fh.run_pre_filter_extension_remove_pod(state, pod, victim, node);
    if s.is_success() { Ok(()) } else { Err(s) }
}

fn add(
    fh: &dyn FrameworkHandle,
    state: &mut CycleState,
    pod: &PodInfo,
    node: &mut NodeInfo,
    victim: &Arc<PodInfo>,
) -> Result<(), Status> {
    node.add_pod(victim.clone());
    let s = fh.run_pre_filter_extension_add_pod(state, pod, victim, node);
    if s.is_success() { Ok(()) } else { Err(s) }
}

/// The fewest lower-priority pods to evict from `node` so `pod` fits
/// (upstream's `SelectVictimsOnNode`). `state` and `node` are copies the
/// simulation changes. Removes every lower-priority pod, checks the pod
/// fits, then adds back ("reprieves") as many as still let it fit: those
/// whose eviction would violate a PodDisruptionBudget first, each group
/// from the most important down.
pub fn select_victims_on_node(
    fh: &dyn FrameworkHandle,
    state: &mut CycleState,
    pod: &PodInfo,
    node: &mut NodeInfo,
    pdbs: &[Arc<PodDisruptionBudget>],
) -> Result<Victims, Status> {
    let mut potential: Vec<Arc<PodInfo>> = node
        .pods
        .iter()
        .filter(|p| is_preemption_allowed(p, pod))
        .cloned()
        .collect();
    if potential.is_empty() {
        return Err(Status::unresolvable(
            "No preemption victims found for incoming pod",
        ));
    }
    for v in &potential {
        remove(fh, state, pod, node, v)?;
    }
    // Affinity of the pod to its victims is not considered, as upstream:
    // if it does not fit without them, this node cannot help.
    let s = fh.run_filter_plugins_with_nominated_pods(state, pod, node);
    if !s.is_success() {
        return Err(s);
    }
    potential.sort_by(importance_order);
    let (violating, non_violating) = filter_pods_with_pdb_violation(&potential, pdbs);
    let mut victims = Vec::new();
    let mut num_pdb_violations = 0;
    let mut reprieve =
        |v: &Arc<PodInfo>, state: &mut CycleState, node: &mut NodeInfo| -> Result<bool, Status> {
            add(fh, state, pod, node, v)?;
            let fits = fh
                .run_filter_plugins_with_nominated_pods(state, pod, node)
                .is_success();
            if !fits {
                remove(fh, state, pod, node, v)?;
                victims.push(v.clone());
            }
            Ok(fits)
        };
    for v in &violating {
        if !reprieve(v, state, node)? {
            num_pdb_violations += 1;
        }
    }
    for v in &non_violating {
        reprieve(v, state, node)?;
    }
    if !violating.is_empty() && !non_violating.is_empty() {
        victims.sort_by(importance_order);
    }
    if victims.is_empty() {
        // The pod fits with every pod back: Filter failed for a reason
        // preemption does not change.
        return Err(Status::new(
            Code::Error,
            format!("expected at least one victim pod on node {:?}", node.name()),
        ));
    }
    Ok(Victims {
        pods: victims,
        num_pdb_violations,
    })
}
