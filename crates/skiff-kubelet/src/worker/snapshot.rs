//! What the runtime holds for each pod, gathered by one relist (upstream's
//! PLEG relist): sandboxes and container instances, grouped by pod UID, and
//! their translation into the status module's runtime view.

use std::collections::{BTreeMap, HashMap};

use k8s_cri::v1 as api;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::plan::{Instance, InstanceState};
use crate::cri::{CONTAINER_NAME_LABEL, Cri, POD_UID_LABEL};
use crate::status::{Exited, RuntimeContainer, RuntimePod, RuntimeState};

/// A sandbox of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxView {
    /// Runtime ID.
    pub id: String,
    /// CRI attempt.
    pub attempt: u32,
    /// Ready (namespaces and network up).
    pub ready: bool,
    /// The pod IP, if the network gave one.
    pub ip: Option<String>,
    /// Creation time, Unix nanoseconds.
    pub created_at: i64,
}

/// One container instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerView {
    /// Runtime ID.
    pub id: String,
    /// Name in the pod spec.
    pub name: String,
    /// CRI attempt.
    pub attempt: u32,
    /// The sandbox it runs in.
    pub sandbox_id: String,
    /// State.
    pub state: InstanceState,
    /// Image as asked for.
    pub image: String,
    /// Image the runtime resolved.
    pub image_ref: String,
    /// Unix nanoseconds (0 = unset).
    pub created_at: i64,
    /// Unix nanoseconds (0 = unset).
    pub started_at: i64,
    /// Unix nanoseconds (0 = unset).
    pub finished_at: i64,
    /// Runtime reason for the exit (`Completed`, `Error`, `OOMKilled`).
    pub reason: String,
    /// Runtime message.
    pub message: String,
}

/// The runtime's objects of one pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodSnapshot {
    /// Sandboxes, any state.
    pub sandboxes: Vec<SandboxView>,
    /// Container instances, any sandbox.
    pub containers: Vec<ContainerView>,
}

impl PodSnapshot {
    /// The newest sandbox (highest attempt, then newest).
    pub fn current_sandbox(&self) -> Option<&SandboxView> {
        self.sandboxes
            .iter()
            .max_by_key(|s| (s.attempt, s.created_at))
    }

    /// Instances in `sandbox_id` by name, newest attempt first.
    fn by_name(&self, sandbox_id: Option<&str>) -> BTreeMap<&str, Vec<&ContainerView>> {
        let mut out: BTreeMap<&str, Vec<&ContainerView>> = BTreeMap::new();
        for c in &self.containers {
            if sandbox_id.is_none_or(|s| s == c.sandbox_id) {
                out.entry(c.name.as_str()).or_default().push(c);
            }
        }
        for list in out.values_mut() {
            list.sort_by_key(|c| std::cmp::Reverse((c.attempt, c.created_at)));
        }
        out
    }

    /// The newest instance of every container in `sandbox_id`, as the plan
    /// wants it.
    pub fn instances(&self, sandbox_id: &str) -> BTreeMap<String, Instance> {
        self.by_name(Some(sandbox_id))
            .into_iter()
            .filter_map(|(name, list)| {
                let c = list.first()?;
                Some((
                    name.to_owned(),
                    Instance {
                        id: c.id.clone(),
                        attempt: c.attempt,
                        state: c.state,
                    },
                ))
            })
            .collect()
    }

    /// The highest attempt used for `name` in any sandbox.
    pub fn max_attempt(&self, name: &str) -> Option<u32> {
        self.containers
            .iter()
            .filter(|c| c.name == name)
            .map(|c| c.attempt)
            .max()
    }

    /// The newest instance of `name` (any sandbox).
    pub fn newest(&self, name: &str) -> Option<&ContainerView> {
        self.containers
            .iter()
            .filter(|c| c.name == name)
            .max_by_key(|c| (c.attempt, c.created_at))
    }

    /// This view with what the worker itself just did: `sandbox` (when new)
    /// and `containers` (as ContainerStatus showed them after starting
    /// them), so the status it writes next need not wait for a relist.
    pub fn with_own(&self, sandbox: &SandboxView, containers: Vec<ContainerView>) -> PodSnapshot {
        let mut out = self.clone();
        if !out.sandboxes.iter().any(|s| s.id == sandbox.id) {
            out.sandboxes.push(sandbox.clone());
        }
        for c in containers {
            out.containers.retain(|o| o.id != c.id);
            out.containers.push(c);
        }
        out
    }

    /// Instances that are running.
    pub fn running(&self) -> impl Iterator<Item = &ContainerView> {
        self.containers
            .iter()
            .filter(|c| c.state == InstanceState::Running)
    }

    /// The status module's view: the newest instance per name and the one
    /// before it as the last termination. `runtime_name` prefixes IDs.
    pub fn runtime_pod(&self, runtime_name: &str) -> RuntimePod {
        let sandbox = self.current_sandbox();
        let containers = self
            .by_name(None)
            .into_values()
            .filter_map(|list| {
                let newest = list.first()?;
                let previous = list.get(1);
                Some(RuntimeContainer {
                    name: newest.name.clone(),
                    container_id: format!("{runtime_name}://{}", newest.id),
                    image: newest.image.clone(),
                    image_id: newest.image_ref.clone(),
                    state: runtime_state(newest, runtime_name),
                    restart_count: i32::try_from(newest.attempt).unwrap_or(i32::MAX),
                    last_termination: previous.and_then(|p| match runtime_state(p, runtime_name) {
                        RuntimeState::Exited(e) => Some(e),
                        _ => None,
                    }),
                    startup_probe: None,
                    readiness_probe: None,
                })
            })
            .collect();
        RuntimePod {
            sandbox_ready: sandbox.is_some_and(|s| s.ready),
            pod_ips: sandbox.and_then(|s| s.ip.clone()).into_iter().collect(),
            containers,
            waiting: BTreeMap::new(),
        }
    }
}

/// A CRI timestamp (Unix nanoseconds) as a Time; 0 is unset.
pub fn time_of(nanos: i64) -> Option<Time> {
    (nanos > 0)
        .then(|| Timestamp::from_nanosecond(i128::from(nanos)).ok())
        .flatten()
        .map(Time)
}

fn runtime_state(c: &ContainerView, runtime_name: &str) -> RuntimeState {
    match c.state {
        InstanceState::Created => RuntimeState::Created,
        InstanceState::Unknown => RuntimeState::Unknown,
        InstanceState::Running => RuntimeState::Running {
            started_at: time_of(c.started_at)
                .or_else(|| time_of(c.created_at))
                .unwrap_or(Time(Timestamp::UNIX_EPOCH)),
        },
        InstanceState::Exited(code) => RuntimeState::Exited(Exited {
            exit_code: code,
            reason: if !c.reason.is_empty() {
                c.reason.clone()
            } else if code == 0 {
                "Completed".to_owned()
            } else {
                "Error".to_owned()
            },
            message: c.message.clone(),
            started_at: time_of(c.started_at),
            finished_at: time_of(c.finished_at),
            container_id: format!("{runtime_name}://{}", c.id),
        }),
    }
}

/// Remembers what earlier relists learned so a relist asks the runtime for
/// details only about what changed (a sandbox's IP never changes; an
/// exited container never changes again).
#[derive(Debug, Default)]
pub struct RelistCache {
    sandbox_ips: HashMap<String, Option<String>>,
    containers: HashMap<String, ContainerView>,
}

fn state_of(state: i32) -> Option<api::ContainerState> {
    api::ContainerState::try_from(state).ok()
}

/// One container as ContainerStatus shows it; `None` when the runtime no
/// longer has it.
pub async fn container_view(
    cri: &mut Cri,
    id: &str,
    sandbox_id: &str,
) -> Result<Option<ContainerView>, tonic::Status> {
    let status = cri
        .runtime
        .container_status(api::ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: false,
        })
        .await;
    let st = match status {
        Ok(r) => match r.into_inner().status {
            Some(st) => st,
            None => return Ok(None),
        },
        Err(e) if e.code() == tonic::Code::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let state = match state_of(st.state) {
        Some(api::ContainerState::ContainerCreated) => InstanceState::Created,
        Some(api::ContainerState::ContainerRunning) => InstanceState::Running,
        Some(api::ContainerState::ContainerExited) => InstanceState::Exited(st.exit_code),
        _ => InstanceState::Unknown,
    };
    let meta = st.metadata.unwrap_or_default();
    Ok(Some(ContainerView {
        id: id.to_owned(),
        name: st
            .labels
            .get(CONTAINER_NAME_LABEL)
            .cloned()
            .unwrap_or(meta.name),
        attempt: meta.attempt,
        sandbox_id: sandbox_id.to_owned(),
        state,
        image: st.image.map(|i| i.image).unwrap_or_default(),
        image_ref: st.image_ref,
        created_at: st.created_at,
        started_at: st.started_at,
        finished_at: st.finished_at,
        reason: st.reason,
        message: st.message,
    }))
}

/// Lists every sandbox and container of the runtime, grouped by pod UID.
pub async fn relist(
    cri: &mut Cri,
    cache: &mut RelistCache,
) -> Result<HashMap<String, PodSnapshot>, tonic::Status> {
    let sandboxes = cri
        .runtime
        .list_pod_sandbox(api::ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items;
    let containers = cri
        .runtime
        .list_containers(api::ListContainersRequest { filter: None })
        .await?
        .into_inner()
        .containers;

    let mut pods: HashMap<String, PodSnapshot> = HashMap::new();
    let mut seen_sandboxes = Vec::with_capacity(sandboxes.len());
    for s in sandboxes {
        let Some(uid) = s.labels.get(POD_UID_LABEL).cloned() else {
            continue;
        };
        let ready = s.state == api::PodSandboxState::SandboxReady as i32;
        let ip = match cache.sandbox_ips.get(&s.id) {
            Some(ip) => ip.clone(),
            None => {
                let status = cri
                    .runtime
                    .pod_sandbox_status(api::PodSandboxStatusRequest {
                        pod_sandbox_id: s.id.clone(),
                        verbose: false,
                    })
                    .await;
                let ip = match status {
                    Ok(r) => r
                        .into_inner()
                        .status
                        .and_then(|st| st.network)
                        .map(|n| n.ip)
                        .filter(|ip| !ip.is_empty()),
                    // Removed meanwhile: the next relist drops it.
                    Err(e) if e.code() == tonic::Code::NotFound => continue,
                    Err(e) => return Err(e),
                };
                cache.sandbox_ips.insert(s.id.clone(), ip.clone());
                ip
            }
        };
        seen_sandboxes.push(s.id.clone());
        pods.entry(uid).or_default().sandboxes.push(SandboxView {
            id: s.id,
            attempt: s.metadata.map_or(0, |m| m.attempt),
            ready,
            ip,
            created_at: s.created_at,
        });
    }
    cache
        .sandbox_ips
        .retain(|id, _| seen_sandboxes.contains(id));

    let mut seen = Vec::with_capacity(containers.len());
    for c in containers {
        let Some(uid) = c.labels.get(POD_UID_LABEL).cloned() else {
            continue;
        };
        seen.push(c.id.clone());
        let listed = state_of(c.state);
        let cached = cache.containers.get(&c.id).filter(|v| {
            // Exited never changes; otherwise the listed state must match.
            matches!(v.state, InstanceState::Exited(_))
                || matches!(
                    (v.state, listed),
                    (
                        InstanceState::Running,
                        Some(api::ContainerState::ContainerRunning)
                    ) | (
                        InstanceState::Created,
                        Some(api::ContainerState::ContainerCreated)
                    )
                )
        });
        let view = match cached {
            Some(v) => v.clone(),
            None => match container_view(cri, &c.id, &c.pod_sandbox_id).await? {
                Some(view) => {
                    cache.containers.insert(c.id.clone(), view.clone());
                    view
                }
                // Removed meanwhile: the next relist drops it.
                None => continue,
            },
        };
        pods.entry(uid).or_default().containers.push(view);
    }
    cache.containers.retain(|id, _| seen.contains(id));
    Ok(pods)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn c(name: &str, attempt: u32, sandbox: &str, state: InstanceState) -> ContainerView {
        ContainerView {
            id: format!("{name}-{attempt}"),
            name: name.into(),
            attempt,
            sandbox_id: sandbox.into(),
            state,
            image: "busybox".into(),
            image_ref: "sha256:aa".into(),
            created_at: i64::from(attempt) + 1,
            started_at: 1_000_000_000,
            finished_at: 2_000_000_000,
            reason: String::new(),
            message: String::new(),
        }
    }

    #[test]
    fn newest_instance_with_the_previous_as_last_termination() {
        let snap = PodSnapshot {
            sandboxes: vec![
                SandboxView {
                    id: "s0".into(),
                    attempt: 0,
                    ready: false,
                    ip: None,
                    created_at: 1,
                },
                SandboxView {
                    id: "s1".into(),
                    attempt: 1,
                    ready: true,
                    ip: Some("10.42.0.9".into()),
                    created_at: 2,
                },
            ],
            containers: vec![
                c("a", 0, "s0", InstanceState::Exited(1)),
                c("a", 1, "s1", InstanceState::Running),
                c("b", 0, "s1", InstanceState::Exited(0)),
            ],
        };
        assert_eq!(snap.current_sandbox().map(|s| s.id.as_str()), Some("s1"));
        let inst = snap.instances("s1");
        assert_eq!(inst["a"].attempt, 1);
        assert_eq!(inst["b"].state, InstanceState::Exited(0));
        assert_eq!(snap.max_attempt("a"), Some(1));

        let rp = snap.runtime_pod("skiff");
        assert!(rp.sandbox_ready);
        assert_eq!(rp.pod_ips, ["10.42.0.9"]);
        let a = rp.containers.iter().find(|c| c.name == "a").unwrap();
        assert_eq!(a.container_id, "skiff://a-1");
        assert_eq!(a.restart_count, 1);
        let last = a.last_termination.as_ref().unwrap();
        assert_eq!((last.exit_code, last.reason.as_str()), (1, "Error"));
        let b = rp.containers.iter().find(|c| c.name == "b").unwrap();
        assert!(matches!(&b.state, RuntimeState::Exited(e) if e.reason == "Completed"));
    }
}
