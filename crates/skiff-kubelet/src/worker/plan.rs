//! The pod worker's decision for one sync, as a pure function of the pod
//! spec, the runtime's containers in the current sandbox and the probe
//! results (upstream's `computePodActions`): which container to start next,
//! which to kill, and whether the pod is finished.
//!
//! Order: regular init containers run one at a time in spec order, each to
//! success; restartable init containers ("sidecars") start in order and must
//! be started (startup probe passed) before the next init container; then
//! every regular container starts. Exited containers restart per the pod's
//! restartPolicy (sidecars always restart until the pod finishes).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, PodSpec};

/// A container instance as the plan sees it: the newest instance per name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Runtime ID.
    pub id: String,
    /// CRI attempt (= restart count).
    pub attempt: u32,
    /// State.
    pub state: InstanceState,
}

/// An instance's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceState {
    /// Created, never started.
    Created,
    /// Running.
    Running,
    /// Exited with this code.
    Exited(i32),
    /// The runtime does not know.
    Unknown,
}

/// What the probes say, by container name (for the current instances).
#[derive(Debug, Clone, Default)]
pub struct ProbeState {
    /// Liveness or startup probe failed past its threshold: restart.
    pub failed: BTreeMap<String, String>,
    /// Containers whose startup probe has not succeeded yet.
    pub not_started: BTreeSet<String>,
}

/// One step for the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start a new instance of this container.
    Start {
        /// Container name.
        name: String,
        /// Whether it is an init container.
        init: bool,
        /// The attempt number for the new instance.
        attempt: u32,
        /// The previous instance exited with this code (back-off applies).
        restart: bool,
    },
    /// Stop this instance.
    Kill {
        /// Runtime ID.
        id: String,
        /// Container name.
        name: String,
        /// Why (the Killing event's message).
        message: String,
    },
}

/// The decision of one sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Steps in order.
    pub actions: Vec<Action>,
    /// No container will run again: the pod is finished (Succeeded/Failed).
    pub terminal: bool,
}

/// Whether an init container is a sidecar (`restartPolicy: Always`).
pub fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

fn should_restart(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

fn next_attempt(i: Option<&Instance>) -> u32 {
    i.map_or(0, |i| i.attempt + 1)
}

fn start(c: &Container, init: bool, i: Option<&Instance>) -> Action {
    Action::Start {
        name: c.name.clone(),
        init,
        attempt: next_attempt(i),
        restart: matches!(
            i,
            Some(Instance {
                state: InstanceState::Exited(_),
                ..
            })
        ),
    }
}

fn kill(i: &Instance, name: &str, message: String) -> Action {
    Action::Kill {
        id: i.id.clone(),
        name: name.to_owned(),
        message,
    }
}

/// The actions for this sync. `instances` holds the newest instance of each
/// container (init and regular) in the pod's current sandbox.
pub fn plan(spec: &PodSpec, instances: &BTreeMap<String, Instance>, probes: &ProbeState) -> Plan {
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let mut out = Plan::default();

    // Liveness/startup failures: kill first; the restart follows as for any exit.
    let mut killed = BTreeSet::new();
    for (name, message) in &probes.failed {
        if let Some(i) = instances.get(name)
            && i.state == InstanceState::Running
        {
            out.actions.push(kill(i, name, message.clone()));
            killed.insert(name.clone());
        }
    }

    for c in spec.init_containers.iter().flatten() {
        let i = instances.get(&c.name);
        if is_sidecar(c) {
            match i.map(|i| i.state) {
                Some(InstanceState::Running) if !killed.contains(&c.name) => {
                    if probes.not_started.contains(&c.name) {
                        return out;
                    }
                }
                Some(InstanceState::Running) => return out,
                _ => {
                    out.actions.push(start(c, true, i));
                    return out;
                }
            }
            continue;
        }
        match i.map(|i| i.state) {
            Some(InstanceState::Exited(0)) => {}
            Some(InstanceState::Exited(code)) => {
                if policy == "Never" {
                    // A failed init container fails a Never pod.
                    out.terminal = true;
                    kill_sidecars(spec, instances, &mut out);
                } else {
                    let _ = code;
                    out.actions.push(start(c, true, i));
                }
                return out;
            }
            Some(InstanceState::Running) => return out,
            None | Some(InstanceState::Created) | Some(InstanceState::Unknown) => {
                out.actions.push(start(c, true, i));
                return out;
            }
        }
    }

    let mut will_run = false;
    for c in &spec.containers {
        let i = instances.get(&c.name);
        match i.map(|i| i.state) {
            Some(InstanceState::Running) if !killed.contains(&c.name) => will_run = true,
            Some(InstanceState::Running) => {
                // Killed above for a failed probe: restart per policy.
                if should_restart(policy, 1) {
                    will_run = true;
                }
            }
            Some(InstanceState::Exited(code)) => {
                if should_restart(policy, code) {
                    will_run = true;
                    out.actions.push(start(c, false, i));
                }
            }
            None | Some(InstanceState::Created) | Some(InstanceState::Unknown) => {
                will_run = true;
                out.actions.push(start(c, false, i));
            }
        }
    }
    if !will_run && !spec.containers.is_empty() {
        out.terminal = true;
        kill_sidecars(spec, instances, &mut out);
    }
    out
}

/// Once the regular containers are done, sidecars are stopped (in reverse
/// order, as upstream terminates them).
fn kill_sidecars(spec: &PodSpec, instances: &BTreeMap<String, Instance>, out: &mut Plan) {
    for c in spec.init_containers.iter().flatten().rev() {
        if is_sidecar(c)
            && let Some(i) = instances.get(&c.name)
            && i.state == InstanceState::Running
        {
            out.actions
                .push(kill(i, &c.name, format!("Stopping container {}", c.name)));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).unwrap()
    }

    fn inst(state: InstanceState, attempt: u32) -> Instance {
        Instance {
            id: format!("id-{attempt}"),
            attempt,
            state,
        }
    }

    fn instances(list: &[(&str, InstanceState, u32)]) -> BTreeMap<String, Instance> {
        list.iter()
            .map(|(n, s, a)| ((*n).to_owned(), inst(*s, *a)))
            .collect()
    }

    fn started(actions: &[Action]) -> Vec<(String, u32, bool)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Start {
                    name,
                    attempt,
                    restart,
                    ..
                } => Some((name.clone(), *attempt, *restart)),
                Action::Kill { .. } => None,
            })
            .collect()
    }

    use InstanceState::*;

    #[test]
    fn restart_policies() {
        // (policy, state of c, starts expected, terminal)
        let cases = [
            ("Always", None, vec![("c", 0, false)], false),
            ("Always", Some(Running), vec![], false),
            ("Always", Some(Exited(0)), vec![("c", 3, true)], false),
            ("Always", Some(Exited(1)), vec![("c", 3, true)], false),
            ("OnFailure", Some(Exited(0)), vec![], true),
            ("OnFailure", Some(Exited(137)), vec![("c", 3, true)], false),
            ("Never", Some(Exited(0)), vec![], true),
            ("Never", Some(Exited(1)), vec![], true),
            ("Never", Some(Created), vec![("c", 3, false)], false),
        ];
        for (policy, state, want, terminal) in cases {
            let s = spec(json!({"restartPolicy": policy, "containers": [{"name": "c"}]}));
            let inst = match state {
                Some(st) => instances(&[("c", st, 2)]),
                None => BTreeMap::new(),
            };
            let p = plan(&s, &inst, &ProbeState::default());
            let want: Vec<_> = want
                .into_iter()
                .map(|(n, a, r)| (n.to_owned(), a, r))
                .collect();
            assert_eq!(started(&p.actions), want, "{policy} {state:?}");
            assert_eq!(p.terminal, terminal, "{policy} {state:?}");
        }
    }

    #[test]
    fn init_containers_run_one_at_a_time_in_order() {
        let s = spec(json!({
            "initContainers": [{"name": "i1"}, {"name": "i2"}],
            "containers": [{"name": "a"}, {"name": "b"}],
        }));
        let p = plan(&s, &BTreeMap::new(), &ProbeState::default());
        assert_eq!(started(&p.actions), [("i1".to_owned(), 0, false)]);
        let p = plan(
            &s,
            &instances(&[("i1", Running, 0)]),
            &ProbeState::default(),
        );
        assert!(p.actions.is_empty());
        let p = plan(
            &s,
            &instances(&[("i1", Exited(0), 0)]),
            &ProbeState::default(),
        );
        assert_eq!(started(&p.actions), [("i2".to_owned(), 0, false)]);
        let done = instances(&[("i1", Exited(0), 0), ("i2", Exited(0), 0)]);
        let p = plan(&s, &done, &ProbeState::default());
        assert_eq!(
            started(&p.actions),
            [("a".to_owned(), 0, false), ("b".to_owned(), 0, false)]
        );
        // A failing init container restarts (Always) ...
        let failed = instances(&[("i1", Exited(0), 0), ("i2", Exited(1), 4)]);
        let p = plan(&s, &failed, &ProbeState::default());
        assert_eq!(started(&p.actions), [("i2".to_owned(), 5, true)]);
        assert!(!p.terminal);
        // ... and fails a Never pod.
        let mut never = s.clone();
        never.restart_policy = Some("Never".into());
        let p = plan(&never, &failed, &ProbeState::default());
        assert!(p.actions.is_empty() && p.terminal);
    }

    #[test]
    fn sidecars_start_first_restart_always_and_stop_last() {
        let s = spec(json!({
            "restartPolicy": "Never",
            "initContainers": [{"name": "side", "restartPolicy": "Always"}, {"name": "i1"}],
            "containers": [{"name": "a"}],
        }));
        let p = plan(&s, &BTreeMap::new(), &ProbeState::default());
        assert_eq!(started(&p.actions), [("side".to_owned(), 0, false)]);
        // Not started yet (startup probe pending): wait.
        let probes = ProbeState {
            not_started: ["side".to_owned()].into(),
            ..ProbeState::default()
        };
        let p = plan(&s, &instances(&[("side", Running, 0)]), &probes);
        assert!(p.actions.is_empty());
        let p = plan(
            &s,
            &instances(&[("side", Running, 0)]),
            &ProbeState::default(),
        );
        assert_eq!(started(&p.actions), [("i1".to_owned(), 0, false)]);
        // The sidecar restarts even in a Never pod.
        let crashed = instances(&[
            ("side", Exited(1), 0),
            ("i1", Exited(0), 0),
            ("a", Running, 0),
        ]);
        let p = plan(&s, &crashed, &ProbeState::default());
        assert_eq!(started(&p.actions), [("side".to_owned(), 1, true)]);
        // The main container finished: the pod is done and the sidecar stops.
        let finished = instances(&[
            ("side", Running, 0),
            ("i1", Exited(0), 0),
            ("a", Exited(0), 0),
        ]);
        let p = plan(&s, &finished, &ProbeState::default());
        assert!(p.terminal);
        assert_eq!(
            p.actions,
            [Action::Kill {
                id: "id-0".into(),
                name: "side".into(),
                message: "Stopping container side".into()
            }]
        );
    }

    #[test]
    fn failed_liveness_kills_then_restarts_per_policy() {
        let s = spec(json!({"containers": [{"name": "a"}, {"name": "b"}]}));
        let probes = ProbeState {
            failed: [(
                "a".to_owned(),
                "Container a failed liveness probe, will be restarted".to_owned(),
            )]
            .into(),
            ..ProbeState::default()
        };
        let running = instances(&[("a", Running, 0), ("b", Running, 0)]);
        let p = plan(&s, &running, &probes);
        assert_eq!(
            p.actions,
            [Action::Kill {
                id: "id-0".into(),
                name: "a".into(),
                message: "Container a failed liveness probe, will be restarted".into()
            }]
        );
        assert!(!p.terminal);
        // After the kill the exit is an ordinary restart.
        let exited = instances(&[("a", Exited(137), 0), ("b", Running, 0)]);
        let p = plan(&s, &exited, &ProbeState::default());
        assert_eq!(started(&p.actions), [("a".to_owned(), 1, true)]);
    }
}
