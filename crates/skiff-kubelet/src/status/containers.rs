//! Container statuses from the runtime's view (upstream's
//! `convertToAPIContainerStatuses` plus the prober manager's `started` and
//! `ready`).

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, PodSpec, PodStatus,
};

use super::phase::is_restartable_init_container;
use super::{
    CONTAINER_CREATING, Exited, POD_INITIALIZING, RuntimeContainer, RuntimePod, RuntimeState,
    Waiting,
};

fn terminated(e: &Exited) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: e.exit_code,
        reason: (!e.reason.is_empty()).then(|| e.reason.clone()),
        message: (!e.message.is_empty()).then(|| e.message.clone()),
        started_at: e.started_at.clone(),
        finished_at: e.finished_at.clone(),
        container_id: (!e.container_id.is_empty()).then(|| e.container_id.clone()),
        signal: None,
    }
}

fn state_of(r: &RuntimeContainer) -> ContainerState {
    match &r.state {
        RuntimeState::Running { started_at } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(started_at.clone()),
            }),
            ..ContainerState::default()
        },
        RuntimeState::Exited(e) => ContainerState {
            terminated: Some(terminated(e)),
            ..ContainerState::default()
        },
        // Created but not running: waiting to run, no reason.
        RuntimeState::Created | RuntimeState::Unknown => ContainerState {
            waiting: Some(ContainerStateWaiting::default()),
            ..ContainerState::default()
        },
    }
}

/// The prober manager's `started`: running, and its startup probe (if
/// any) succeeded.
fn started(c: &Container, r: &RuntimeContainer) -> bool {
    if !matches!(r.state, RuntimeState::Running { .. }) {
        return false;
    }
    match r.startup_probe {
        Some(result) => result,
        None => c.startup_probe.is_none(),
    }
}

/// The prober manager's `ready` for a container that serves (regular or
/// sidecar): started, running, and its readiness probe (if any) succeeded.
fn serving_ready(c: &Container, r: &RuntimeContainer) -> bool {
    started(c, r)
        && match r.readiness_probe {
            Some(true) => true,
            _ => c.readiness_probe.is_none(),
        }
}

fn from_runtime(c: &Container, r: &RuntimeContainer, init: bool) -> ContainerStatus {
    let ready = if init && !is_restartable_init_container(c) {
        // A regular init container is ready once it exited 0.
        matches!(&r.state, RuntimeState::Exited(e) if e.exit_code == 0)
    } else {
        serving_ready(c, r)
    };
    ContainerStatus {
        name: c.name.clone(),
        image: if r.image.is_empty() {
            c.image.clone().unwrap_or_default()
        } else {
            r.image.clone()
        },
        image_id: r.image_id.clone(),
        container_id: (!r.container_id.is_empty()).then(|| r.container_id.clone()),
        state: Some(state_of(r)),
        last_state: Some(
            r.last_termination
                .as_ref()
                .map(|e| ContainerState {
                    terminated: Some(terminated(e)),
                    ..ContainerState::default()
                })
                .unwrap_or_default(),
        ),
        ready,
        restart_count: r.restart_count,
        started: Some(started(c, r)),
        ..ContainerStatus::default()
    }
}

/// A container the runtime does not (or no longer) know: a terminated
/// status stays as it was; otherwise it waits with `reason`, keeping the
/// restart count and last termination.
fn default_status(c: &Container, old: Option<&ContainerStatus>, reason: &str) -> ContainerStatus {
    if let Some(o) = old
        && o.state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .is_some()
    {
        return o.clone();
    }
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.to_owned()),
                message: None,
            }),
            ..ContainerState::default()
        }),
        last_state: Some(old.and_then(|o| o.last_state.clone()).unwrap_or_default()),
        restart_count: old.map_or(0, |o| o.restart_count),
        ready: false,
        started: Some(false),
        ..ContainerStatus::default()
    }
}

/// A container the pod worker could not (re)start: waiting with the
/// worker's reason; the newest instance (if any) is the last state.
fn waiting_status(
    c: &Container,
    r: Option<&RuntimeContainer>,
    old: Option<&ContainerStatus>,
    w: &Waiting,
) -> ContainerStatus {
    let mut status = match r {
        Some(r) => {
            let mut s = from_runtime(c, r, false);
            s.last_state = Some(match &r.state {
                RuntimeState::Exited(e) => ContainerState {
                    terminated: Some(terminated(e)),
                    ..ContainerState::default()
                },
                _ => s.last_state.unwrap_or_default(),
            });
            s
        }
        None => default_status(c, old, CONTAINER_CREATING),
    };
    status.state = Some(ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(w.reason.clone()),
            message: (!w.message.is_empty()).then(|| w.message.clone()),
        }),
        ..ContainerState::default()
    });
    status.ready = false;
    status.started = Some(false);
    status
}

fn statuses(
    containers: &[Container],
    old: &[ContainerStatus],
    runtime: &RuntimePod,
    init: bool,
    default_reason: &str,
) -> Vec<ContainerStatus> {
    containers
        .iter()
        .map(|c| {
            let r = runtime.containers.iter().find(|r| r.name == c.name);
            let o = old.iter().find(|o| o.name == c.name);
            match (runtime.waiting.get(&c.name), r) {
                (Some(w), r) => waiting_status(c, r, o, w),
                (None, Some(r)) => from_runtime(c, r, init),
                (None, None) => default_status(c, o, default_reason),
            }
        })
        .collect()
}

/// Statuses of the regular containers, sorted by name as upstream sorts
/// them.
pub(crate) fn container_statuses(
    spec: &PodSpec,
    old: &PodStatus,
    runtime: &RuntimePod,
) -> Vec<ContainerStatus> {
    let reason = if spec.init_containers.as_ref().is_some_and(|i| !i.is_empty()) {
        POD_INITIALIZING
    } else {
        CONTAINER_CREATING
    };
    let mut out = statuses(
        &spec.containers,
        old.container_statuses.as_deref().unwrap_or_default(),
        runtime,
        false,
        reason,
    );
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Statuses of the init containers, in the spec's order.
pub(crate) fn init_container_statuses(
    spec: &PodSpec,
    old: &PodStatus,
    runtime: &RuntimePod,
) -> Vec<ContainerStatus> {
    statuses(
        spec.init_containers.as_deref().unwrap_or_default(),
        old.init_container_statuses.as_deref().unwrap_or_default(),
        runtime,
        true,
        POD_INITIALIZING,
    )
}
