//! The kubelet's pod conditions (upstream's `pkg/kubelet/status/generate.go`):
//! reasons and messages as upstream writes them.

use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodSpec};

use super::RuntimePod;
use super::phase::{find, is_restartable_init_container};

/// Reason: no container statuses at all.
pub const UNKNOWN_CONTAINER_STATUSES: &str = "UnknownContainerStatuses";
/// Reason: every container succeeded.
pub const POD_COMPLETED: &str = "PodCompleted";
/// Reason: the pod failed.
pub const POD_FAILED: &str = "PodFailed";
/// Reason: some container is not ready.
pub const CONTAINERS_NOT_READY: &str = "ContainersNotReady";
/// Reason: some init container has not succeeded.
pub const CONTAINERS_NOT_INITIALIZED: &str = "ContainersNotInitialized";
/// Reason: some readiness gate is not `True`.
pub const READINESS_GATES_NOT_READY: &str = "ReadinessGatesNotReady";

fn condition(type_: &str, status: bool, reason: &str, message: String) -> PodCondition {
    PodCondition {
        type_: type_.to_owned(),
        status: if status { "True" } else { "False" }.to_owned(),
        reason: (!reason.is_empty()).then(|| reason.to_owned()),
        message: (!message.is_empty()).then_some(message),
        ..PodCondition::default()
    }
}

/// Go's `%s` of a string slice: `[a b]`.
fn go_list(names: &[&str]) -> String {
    format!("[{}]", names.join(" "))
}

/// `PodReadyToStartContainers`: a sandbox with networking exists.
pub(crate) fn ready_to_start_containers(runtime: &RuntimePod) -> PodCondition {
    condition(
        "PodReadyToStartContainers",
        runtime.sandbox_ready,
        "",
        String::new(),
    )
}

/// `ContainersReady`: every regular container and sidecar is ready.
pub(crate) fn containers_ready(
    spec: &PodSpec,
    statuses: Option<&[ContainerStatus]>,
    phase: &str,
) -> PodCondition {
    const TYPE: &str = "ContainersReady";
    let Some(statuses) = statuses else {
        return condition(TYPE, false, UNKNOWN_CONTAINER_STATUSES, String::new());
    };
    let mut unknown = Vec::new();
    let mut unready = Vec::new();
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| is_restartable_init_container(c));
    for c in sidecars.chain(spec.containers.iter()) {
        match find(statuses, &c.name) {
            Some(s) if !s.ready => unready.push(c.name.as_str()),
            Some(_) => {}
            None => unknown.push(c.name.as_str()),
        }
    }
    if phase == "Succeeded" && unknown.is_empty() {
        return condition(TYPE, false, POD_COMPLETED, String::new());
    }
    if phase == "Failed" {
        return condition(TYPE, false, POD_FAILED, String::new());
    }
    let mut messages = Vec::new();
    if !unknown.is_empty() {
        messages.push(format!(
            "containers with unknown status: {}",
            go_list(&unknown)
        ));
    }
    if !unready.is_empty() {
        messages.push(format!(
            "containers with unready status: {}",
            go_list(&unready)
        ));
    }
    if messages.is_empty() {
        condition(TYPE, true, "", String::new())
    } else {
        condition(TYPE, false, CONTAINERS_NOT_READY, messages.join(", "))
    }
}

/// `Ready`: `ContainersReady` and every readiness gate's condition `True`.
pub(crate) fn ready(
    spec: &PodSpec,
    conditions: &[PodCondition],
    statuses: Option<&[ContainerStatus]>,
    phase: &str,
) -> PodCondition {
    const TYPE: &str = "Ready";
    let containers = containers_ready(spec, statuses, phase);
    if containers.status != "True" {
        return PodCondition {
            type_: TYPE.to_owned(),
            ..containers
        };
    }
    let mut messages = Vec::new();
    for gate in spec.readiness_gates.iter().flatten() {
        match conditions.iter().find(|c| c.type_ == gate.condition_type) {
            None => messages.push(format!(
                "corresponding condition of pod readiness gate \"{}\" does not exist.",
                gate.condition_type
            )),
            Some(c) if c.status != "True" => messages.push(format!(
                "the status of pod readiness gate \"{}\" is not \"True\", but {}",
                gate.condition_type, c.status
            )),
            Some(_) => {}
        }
    }
    if messages.is_empty() {
        condition(TYPE, true, "", String::new())
    } else {
        condition(TYPE, false, READINESS_GATES_NOT_READY, messages.join(", "))
    }
}

/// Whether an init container counts as done: a regular one is ready (it
/// exited 0), a sidecar has started.
fn init_container_initialized(
    c: &k8s_openapi::api::core::v1::Container,
    s: &ContainerStatus,
) -> bool {
    if is_restartable_init_container(c) {
        s.started == Some(true)
    } else {
        s.ready
    }
}

/// `Initialized`: every init container completed (sidecars: started).
pub(crate) fn initialized(
    spec: &PodSpec,
    statuses: Option<&[ContainerStatus]>,
    phase: &str,
) -> PodCondition {
    const TYPE: &str = "Initialized";
    let init = spec.init_containers.as_deref().unwrap_or_default();
    let Some(statuses) = statuses else {
        if init.is_empty() {
            return condition(TYPE, true, "", String::new());
        }
        return condition(TYPE, false, UNKNOWN_CONTAINER_STATUSES, String::new());
    };
    let mut unknown = Vec::new();
    let mut incomplete = Vec::new();
    for c in init {
        match find(statuses, &c.name) {
            None => unknown.push(c.name.as_str()),
            Some(s) if !init_container_initialized(c, s) => incomplete.push(c.name.as_str()),
            Some(_) => {}
        }
    }
    if phase == "Succeeded" && unknown.is_empty() {
        return condition(TYPE, true, POD_COMPLETED, String::new());
    }
    // A regular container that has run means initialization finished
    // before (sidecars may be restarting now).
    let regular_started = spec.containers.iter().any(|c| {
        find(statuses, &c.name).is_some_and(|s| {
            let state = s.state.as_ref();
            state.and_then(|st| st.running.as_ref()).is_some()
                || state.and_then(|st| st.terminated.as_ref()).is_some()
        })
    });
    if regular_started {
        return condition(TYPE, true, "", String::new());
    }
    let mut messages = Vec::new();
    if !unknown.is_empty() {
        messages.push(format!(
            "containers with unknown status: {}",
            go_list(&unknown)
        ));
    }
    if !incomplete.is_empty() {
        messages.push(format!(
            "containers with incomplete status: {}",
            go_list(&incomplete)
        ));
    }
    if messages.is_empty() {
        condition(TYPE, true, "", String::new())
    } else {
        condition(TYPE, false, CONTAINERS_NOT_INITIALIZED, messages.join(", "))
    }
}
