//! The pod status the kubelet reports, computed from the pod and what its
//! runtime says about the sandbox and containers, as upstream's kubelet
//! does (`generateAPIPodStatus`, `getPhase`, the prober manager's
//! started/ready rules and `pkg/kubelet/status/generate.go`). No I/O: the
//! caller gathers the runtime's view and the current time.

mod conditions;
mod containers;
mod phase;
mod qos;
#[cfg(test)]
mod tests;

use k8s_openapi::api::core::v1::{ContainerState, HostIP, Pod, PodCondition, PodIP, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub use conditions::{
    CONTAINERS_NOT_INITIALIZED, CONTAINERS_NOT_READY, POD_COMPLETED, POD_FAILED,
    READINESS_GATES_NOT_READY, UNKNOWN_CONTAINER_STATUSES,
};
pub use phase::get_phase;
pub use qos::{compute_pod_qos, pod_qos};

/// Waiting reason of a container that has no runtime status yet.
pub const CONTAINER_CREATING: &str = "ContainerCreating";
/// Waiting reason of a regular container while init containers run.
pub const POD_INITIALIZING: &str = "PodInitializing";

/// What the runtime reports for one container (the newest instance of it).
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeContainer {
    /// The container's name in the pod spec.
    pub name: String,
    /// `<runtime>://<id>`, e.g. `containerd://4f1c…`.
    pub container_id: String,
    /// The image as the runtime resolved it.
    pub image: String,
    /// The image's digest reference.
    pub image_id: String,
    /// The instance's state.
    pub state: RuntimeState,
    /// How many times the kubelet restarted it.
    pub restart_count: i32,
    /// How the previous instance ended, if there was one.
    pub last_termination: Option<Exited>,
    /// Result of the startup probe: `None` when it has not run yet (or the
    /// container has none).
    pub startup_probe: Option<bool>,
    /// Result of the readiness probe: `None` when it has not run yet (or
    /// the container has none).
    pub readiness_probe: Option<bool>,
}

/// A container instance's state in the runtime.
#[derive(Debug, Clone, PartialEq)]
pub enum RuntimeState {
    /// Created, not started.
    Created,
    /// Running since the given time.
    Running {
        /// When the process started.
        started_at: Time,
    },
    /// The process exited.
    Exited(Exited),
    /// The runtime does not know.
    Unknown,
}

/// How a container instance ended.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Exited {
    /// The process's exit code.
    pub exit_code: i32,
    /// `Completed`, `Error`, `OOMKilled`, ...
    pub reason: String,
    /// A message from the runtime.
    pub message: String,
    /// When it started.
    pub started_at: Option<Time>,
    /// When it exited.
    pub finished_at: Option<Time>,
    /// The instance's id (`<runtime>://<id>`).
    pub container_id: String,
}

/// The runtime's view of one pod.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RuntimePod {
    /// Whether a sandbox with networking configured exists.
    pub sandbox_ready: bool,
    /// The sandbox's IPs, primary first.
    pub pod_ips: Vec<String>,
    /// The containers (init and regular) the runtime knows, by name.
    pub containers: Vec<RuntimeContainer>,
    /// Containers the pod worker could not (re)start, by name: they report
    /// `waiting` with this reason (`CrashLoopBackOff`, `ErrImagePull`,
    /// `CreateContainerConfigError`, ...) while their newest instance, if
    /// any, becomes `lastState`.
    pub waiting: std::collections::BTreeMap<String, Waiting>,
}

/// Why a container is waiting, as the pod worker's last sync found it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Waiting {
    /// `CrashLoopBackOff`, `ErrImagePull`, ...
    pub reason: String,
    /// The human message.
    pub message: String,
}

/// Everything [`generate_pod_status`] needs.
#[derive(Debug, Clone, Copy)]
pub struct StatusInput<'a> {
    /// The pod as the API server has it (its status is the previous one).
    pub pod: &'a Pod,
    /// What the runtime reports.
    pub runtime: &'a RuntimePod,
    /// The node's IPs, primary first.
    pub host_ips: &'a [String],
    /// Whether the pod worker has finished the pod (no restarts follow).
    pub pod_is_terminal: bool,
    /// The current time (transition times, `startTime`).
    pub now: &'a Time,
}

/// Condition types the kubelet owns (upstream's `PodConditionByKubelet`).
pub fn is_kubelet_condition(condition_type: &str) -> bool {
    matches!(
        condition_type,
        "Ready" | "Initialized" | "ContainersReady" | "PodReadyToStartContainers"
    )
}

/// The status the kubelet writes for `input.pod`: phase, conditions,
/// container statuses, IPs, start time and QoS class. Transition times
/// carry over from the previous status when a condition's status did not
/// change.
pub fn generate_pod_status(input: StatusInput<'_>) -> PodStatus {
    let pod = input.pod;
    let old = pod.status.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();

    let init_statuses = containers::init_container_statuses(&spec, &old, input.runtime);
    let container_statuses = containers::container_statuses(&spec, &old, input.runtime);
    let all: Vec<_> = init_statuses
        .iter()
        .chain(container_statuses.iter())
        .cloned()
        .collect();

    let pod_has_initialized = old
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Initialized" && c.status == "True");
    let phase = phase::get_phase(&spec, &all, input.pod_is_terminal, pod_has_initialized);

    // Conditions owned by others (the scheduler's PodScheduled, custom
    // readiness gates) are kept; the kubelet's own are regenerated.
    let old_conditions: Vec<PodCondition> = old.conditions.clone().unwrap_or_default();
    let mut conditions: Vec<PodCondition> = old_conditions
        .iter()
        .filter(|c| !is_kubelet_condition(&c.type_) && c.type_ != "PodScheduled")
        .cloned()
        .collect();
    conditions.push(conditions::ready_to_start_containers(input.runtime));
    conditions.push(conditions::initialized(&spec, Some(&all), &phase));
    let ready = conditions::ready(&spec, &conditions, Some(&all), &phase);
    conditions.push(ready);
    conditions.push(conditions::containers_ready(&spec, Some(&all), &phase));
    conditions.push(
        old_conditions
            .iter()
            .find(|c| c.type_ == "PodScheduled")
            .cloned()
            .unwrap_or_else(|| PodCondition {
                type_: "PodScheduled".to_owned(),
                status: "True".to_owned(),
                ..PodCondition::default()
            }),
    );
    for c in &mut conditions {
        if c.last_transition_time.is_some() {
            continue;
        }
        let previous = old_conditions.iter().find(|o| o.type_ == c.type_);
        c.last_transition_time = match previous {
            Some(o) if o.status == c.status && o.last_transition_time.is_some() => {
                o.last_transition_time.clone()
            }
            _ => Some(input.now.clone()),
        };
    }

    let pod_ips = if input.runtime.pod_ips.is_empty() {
        // The sandbox is gone (or not yet there): keep what was reported.
        old.pod_ips.clone().unwrap_or_default()
    } else {
        input
            .runtime
            .pod_ips
            .iter()
            .map(|ip| PodIP { ip: ip.clone() })
            .collect()
    };
    let host_ips: Vec<HostIP> = input
        .host_ips
        .iter()
        .map(|ip| HostIP { ip: ip.clone() })
        .collect();

    let mut status = PodStatus {
        phase: Some(phase),
        conditions: Some(conditions),
        host_ip: host_ips.first().map(|h| h.ip.clone()),
        host_ips: (!host_ips.is_empty()).then_some(host_ips),
        pod_ip: pod_ips.first().map(|p| p.ip.clone()),
        pod_ips: (!pod_ips.is_empty()).then_some(pod_ips),
        start_time: old.start_time.clone().or_else(|| Some(input.now.clone())),
        qos_class: Some(pod_qos(pod).to_owned()),
        init_container_statuses: (!spec.init_containers.as_ref().is_none_or(Vec::is_empty))
            .then_some(init_statuses),
        container_statuses: Some(container_statuses),
        nominated_node_name: old.nominated_node_name.clone(),
        message: None,
        reason: None,
        ..PodStatus::default()
    };
    truncate_times(&mut status);
    status
}

/// Cuts every time in `status` to whole seconds, as the API server stores
/// them (upstream's status manager normalises the same way before it
/// compares): a status computed from the runtime's nanosecond times then
/// equals the one the API returns, instead of looking changed at every sync
/// and costing a status write that changes nothing.
pub fn truncate_times(status: &mut PodStatus) {
    fn cut(t: &mut Option<Time>) {
        if let Some(Time(ts)) = t
            && let Ok(whole) = k8s_openapi::jiff::Timestamp::from_second(ts.as_second())
        {
            *ts = whole;
        }
    }
    fn cut_state(state: &mut Option<ContainerState>) {
        let Some(state) = state else { return };
        if let Some(r) = &mut state.running {
            cut(&mut r.started_at);
        }
        if let Some(t) = &mut state.terminated {
            cut(&mut t.started_at);
            cut(&mut t.finished_at);
        }
    }
    cut(&mut status.start_time);
    for c in status.conditions.iter_mut().flatten() {
        cut(&mut c.last_probe_time);
        cut(&mut c.last_transition_time);
    }
    let containers = [
        &mut status.init_container_statuses,
        &mut status.container_statuses,
        &mut status.ephemeral_container_statuses,
    ];
    for c in containers.into_iter().flatten().flatten() {
        cut_state(&mut c.state);
        cut_state(&mut c.last_state);
    }
}
