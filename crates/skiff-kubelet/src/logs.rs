//! Where the kubelet's pods' container logs are, for its log server: the
//! pod manager records each pod's UID and log directory, the relist each
//! pod's container instances; [`PodLogs`] answers the server's lookups
//! with upstream's messages.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::server::{LogLocator, LogTarget};
use crate::worker::plan::InstanceState;
use crate::worker::snapshot::PodSnapshot;

#[derive(Debug, Clone, Default)]
struct Entry {
    uid: String,
    log_dir: PathBuf,
    containers: Vec<String>,
    snapshot: PodSnapshot,
}

/// The kubelet's view of its pods' logs; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct PodLogs {
    pods: Arc<Mutex<HashMap<(String, String), Entry>>>,
}

impl PodLogs {
    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), Entry>> {
        self.pods
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records (or updates) a pod: its UID, log directory and container names.
    pub fn set_pod(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        log_dir: PathBuf,
        containers: Vec<String>,
    ) {
        let mut pods = self.lock();
        let e = pods
            .entry((namespace.to_owned(), name.to_owned()))
            .or_default();
        if e.uid != uid {
            e.snapshot = PodSnapshot::default();
        }
        e.uid = uid.to_owned();
        e.log_dir = log_dir;
        e.containers = containers;
    }

    /// Forgets the pod with `uid`.
    pub fn remove_uid(&self, uid: &str) {
        self.lock().retain(|_, e| e.uid != uid);
    }

    /// Takes the relist's view of every pod.
    pub fn set_snapshots(&self, snapshots: &HashMap<String, PodSnapshot>) {
        for e in self.lock().values_mut() {
            e.snapshot = snapshots.get(&e.uid).cloned().unwrap_or_default();
        }
    }

    /// The runtime ID of `container`'s running instance in `namespace/pod`,
    /// or upstream kubelet's answer when there is none.
    pub fn running_container(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Result<String, (u16, String)> {
        let pods = self.lock();
        let entry = pods
            .get(&(namespace.to_owned(), pod.to_owned()))
            .ok_or_else(|| (404, "pod does not exist".to_owned()))?;
        entry
            .snapshot
            .containers
            .iter()
            .filter(|c| c.name == container && c.state == InstanceState::Running)
            .max_by_key(|c| (c.attempt, c.created_at))
            .map(|c| c.id.clone())
            .ok_or_else(|| (500, format!("container not found ({container:?})")))
    }

    /// The runtime ID of the ready sandbox of `namespace/pod` (with `uid`,
    /// only if the pod has it), or upstream kubelet's answer when there is
    /// none.
    pub fn ready_sandbox(
        &self,
        namespace: &str,
        pod: &str,
        uid: Option<&str>,
    ) -> Result<String, (u16, String)> {
        let pods = self.lock();
        let entry = pods
            .get(&(namespace.to_owned(), pod.to_owned()))
            .ok_or_else(|| (404, "pod does not exist".to_owned()))?;
        if uid.is_some_and(|uid| uid != entry.uid) {
            return Err((404, "pod not found".to_owned()));
        }
        entry
            .snapshot
            .current_sandbox()
            .filter(|s| s.ready)
            .map(|s| s.id.clone())
            .ok_or_else(|| {
                (
                    500,
                    format!(
                        "failed to find sandboxID for pod {pod}_{namespace}({})",
                        entry.uid
                    ),
                )
            })
    }

    fn running(&self, namespace: &str, pod: &str, id: &str) -> bool {
        self.lock()
            .get(&(namespace.to_owned(), pod.to_owned()))
            .is_some_and(|e| {
                e.snapshot
                    .containers
                    .iter()
                    .any(|c| c.id == id && c.state == InstanceState::Running)
            })
    }
}

impl LogLocator for PodLogs {
    fn locate(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Result<LogTarget, (u16, String)> {
        let entry = self
            .lock()
            .get(&(namespace.to_owned(), pod.to_owned()))
            .cloned()
            .ok_or_else(|| (404, format!("pod {pod:?} does not exist")))?;
        if !entry.containers.iter().any(|c| c == container) {
            return Err((
                404,
                format!("container {container:?} not found in pod {pod:?}"),
            ));
        }
        let mut instances: Vec<_> = entry
            .snapshot
            .containers
            .iter()
            .filter(|c| c.name == container)
            .collect();
        instances.sort_by_key(|c| std::cmp::Reverse((c.attempt, c.created_at)));
        let instance = if previous {
            instances.get(1).copied().ok_or_else(|| {
                (
                    400,
                    format!("previous terminated container {container:?} in pod {pod:?} not found"),
                )
            })?
        } else {
            instances.first().copied().ok_or_else(|| {
                (
                    400,
                    format!("container {container:?} in pod {pod:?} is waiting to start: ContainerCreating"),
                )
            })?
        };
        let path = entry.log_dir.join(crate::config::container_log_path(
            container,
            instance.attempt,
        ));
        let (this, ns, name, id) = (
            self.clone(),
            namespace.to_owned(),
            pod.to_owned(),
            instance.id.clone(),
        );
        Ok(LogTarget {
            path,
            running: Arc::new(move || this.running(&ns, &name, &id)),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::worker::snapshot::ContainerView;

    fn view(attempt: u32, state: InstanceState) -> ContainerView {
        ContainerView {
            id: format!("id{attempt}"),
            name: "c".into(),
            attempt,
            sandbox_id: "s".into(),
            state,
            image: String::new(),
            image_ref: String::new(),
            created_at: i64::from(attempt),
            started_at: 0,
            finished_at: 0,
            reason: String::new(),
            message: String::new(),
        }
    }

    #[test]
    fn current_and_previous_instances_and_upstream_errors() {
        let logs = PodLogs::default();
        logs.set_pod(
            "ns",
            "p",
            "u1",
            PathBuf::from("/logs/ns_p_u1"),
            vec!["c".into()],
        );
        let err = logs.locate("ns", "p", "c", false).unwrap_err();
        assert_eq!(
            err,
            (
                400,
                "container \"c\" in pod \"p\" is waiting to start: ContainerCreating".into()
            )
        );
        let snap = PodSnapshot {
            sandboxes: vec![],
            containers: vec![
                view(0, InstanceState::Exited(1)),
                view(1, InstanceState::Running),
            ],
        };
        logs.set_snapshots(&[("u1".to_owned(), snap)].into());
        let now = logs.locate("ns", "p", "c", false).unwrap();
        assert_eq!(now.path, PathBuf::from("/logs/ns_p_u1/c/1.log"));
        assert!((now.running)());
        let prev = logs.locate("ns", "p", "c", true).unwrap();
        assert_eq!(prev.path, PathBuf::from("/logs/ns_p_u1/c/0.log"));
        assert!(!(prev.running)());
        assert_eq!(logs.locate("ns", "q", "c", false).unwrap_err().0, 404);
        assert_eq!(
            logs.locate("ns", "p", "x", false).unwrap_err(),
            (404, "container \"x\" not found in pod \"p\"".into())
        );
        assert_eq!(logs.running_container("ns", "p", "c").unwrap(), "id1");
        assert_eq!(
            logs.running_container("ns", "p", "x").unwrap_err(),
            (500, "container not found (\"x\")".into())
        );
        logs.remove_uid("u1");
        assert_eq!(
            logs.running_container("ns", "p", "c").unwrap_err(),
            (404, "pod does not exist".into())
        );
        assert_eq!(logs.locate("ns", "p", "c", false).unwrap_err().0, 404);
    }
}
