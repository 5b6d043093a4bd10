//! The pod phase from its container statuses (upstream's `getPhase`).

use k8s_openapi::api::core::v1::{Container, ContainerStatus, PodSpec};

/// Whether `c` is a sidecar: an init container with `restartPolicy: Always`.
pub(crate) fn is_restartable_init_container(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

pub(crate) fn find<'a>(statuses: &'a [ContainerStatus], name: &str) -> Option<&'a ContainerStatus> {
    statuses.iter().find(|s| s.name == name)
}

/// What one status says about its container.
enum Seen {
    Running {
        started: bool,
    },
    Terminated {
        exit_code: i32,
    },
    /// Waiting after a previous instance ended with this code.
    Restarting {
        last_exit_code: i32,
    },
    Waiting,
    Unknown,
}

fn seen(s: &ContainerStatus) -> Seen {
    let state = s.state.as_ref();
    if state.and_then(|st| st.running.as_ref()).is_some() {
        return Seen::Running {
            started: s.started == Some(true),
        };
    }
    if let Some(t) = state.and_then(|st| st.terminated.as_ref()) {
        return Seen::Terminated {
            exit_code: t.exit_code,
        };
    }
    if state.and_then(|st| st.waiting.as_ref()).is_some() {
        return match s.last_state.as_ref().and_then(|l| l.terminated.as_ref()) {
            Some(t) => Seen::Restarting {
                last_exit_code: t.exit_code,
            },
            None => Seen::Waiting,
        };
    }
    Seen::Unknown
}

/// The phase of a pod with `spec` whose init and regular containers have
/// `statuses`. `pod_is_terminal`: the kubelet will not restart anything
/// any more; `pod_has_initialized`: the pod was Initialized before (a
/// restarting sidecar does not send it back to Pending).
pub fn get_phase(
    spec: &PodSpec,
    statuses: &[ContainerStatus],
    pod_is_terminal: bool,
    pod_has_initialized: bool,
) -> String {
    let init = spec.init_containers.as_deref().unwrap_or_default();
    let restart_policy = spec.restart_policy.as_deref().unwrap_or("Always");

    let mut pending_regular_init = 0;
    let mut pending_sidecars = 0;
    let mut failed_initialization = 0;
    for c in init.iter().filter(|c| !is_restartable_init_container(c)) {
        match find(statuses, &c.name).map(seen) {
            Some(Seen::Terminated { exit_code })
            | Some(Seen::Restarting {
                last_exit_code: exit_code,
            }) => {
                if exit_code != 0 {
                    failed_initialization += 1;
                }
            }
            _ => pending_regular_init += 1,
        }
    }

    let (mut unknown, mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    for c in init.iter().filter(|c| is_restartable_init_container(c)) {
        match find(statuses, &c.name).map(seen) {
            None => unknown += 1,
            Some(Seen::Running { started }) => {
                if !started {
                    pending_sidecars += 1;
                }
                running += 1;
            }
            // A stopped sidecar does not count towards the phase.
            Some(Seen::Terminated { .. }) | Some(Seen::Restarting { .. }) => {}
            Some(Seen::Waiting) => {
                pending_sidecars += 1;
                waiting += 1;
            }
            Some(Seen::Unknown) => {
                pending_sidecars += 1;
                unknown += 1;
            }
        }
    }
    for c in &spec.containers {
        match find(statuses, &c.name).map(seen) {
            None | Some(Seen::Unknown) => unknown += 1,
            Some(Seen::Running { .. }) => running += 1,
            Some(Seen::Terminated { exit_code }) => {
                stopped += 1;
                if exit_code == 0 {
                    succeeded += 1;
                }
            }
            Some(Seen::Restarting { .. }) => stopped += 1,
            Some(Seen::Waiting) => waiting += 1,
        }
    }

    if failed_initialization > 0 && restart_policy == "Never" {
        return "Failed".to_owned();
    }
    let phase = if pending_regular_init > 0
        || (pending_sidecars > 0 && !pod_has_initialized)
        || waiting > 0
    {
        "Pending"
    } else if running > 0 && unknown == 0 {
        "Running"
    } else if running == 0 && stopped > 0 && unknown == 0 {
        if pod_is_terminal {
            if stopped == succeeded {
                "Succeeded"
            } else {
                "Failed"
            }
        } else if restart_policy == "Always" {
            // Every container is on its way back up.
            "Running"
        } else if stopped == succeeded {
            "Succeeded"
        } else if restart_policy == "Never" {
            "Failed"
        } else {
            // OnFailure: the failed ones restart.
            "Running"
        }
    } else {
        "Pending"
    };
    phase.to_owned()
}
