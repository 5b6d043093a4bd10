//! Reserve/Unreserve, Permit (with waiting pods), PreBind, Bind, PostBind.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::oneshot;

use super::Framework;
use crate::framework::{Code, CycleState, PodInfo, Status};

/// The longest a Permit plugin may make a pod wait (upstream's
/// `maxTimeout`, 15 minutes).
pub const PERMIT_MAX_TIMEOUT: Duration = Duration::from_secs(15 * 60);

struct WaitingPod {
    pending: BTreeSet<&'static str>,
    done: Option<oneshot::Sender<Status>>,
}

/// Pods held at Permit, by `namespace/name`, until every waiting plugin
/// allows them, one rejects them, or the timeout passes.
#[derive(Default)]
pub struct WaitingPods {
    pods: Mutex<HashMap<String, WaitingPod>>,
}

impl std::fmt::Debug for WaitingPods {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitingPods").finish_non_exhaustive()
    }
}

impl WaitingPods {
    fn add(&self, key: &str, pending: BTreeSet<&'static str>) -> oneshot::Receiver<Status> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut m) = self.pods.lock() {
            m.insert(
                key.to_owned(),
                WaitingPod {
                    pending,
                    done: Some(tx),
                },
            );
        }
        rx
    }

    fn remove(&self, key: &str) {
        if let Ok(mut m) = self.pods.lock() {
            m.remove(key);
        }
    }

    /// Keys of the waiting pods.
    pub fn keys(&self) -> Vec<String> {
        self.pods
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// `plugin` allows pod `key`; it proceeds once no plugin is pending.
    pub fn allow(&self, key: &str, plugin: &str) {
        let Ok(mut m) = self.pods.lock() else { return };
        if let Some(w) = m.get_mut(key) {
            w.pending.retain(|p| *p != plugin);
            if w.pending.is_empty()
                && let Some(tx) = w.done.take()
            {
                let _ = tx.send(Status::success());
            }
        }
    }

    /// `plugin` rejects pod `key` with `msg`.
    pub fn reject(&self, key: &str, plugin: &'static str, msg: &str) {
        let Ok(mut m) = self.pods.lock() else { return };
        if let Some(w) = m.get_mut(key)
            && let Some(tx) = w.done.take()
        {
            let _ = tx.send(Status::unschedulable(msg).with_plugin(plugin));
        }
    }
}

impl Framework {
    /// Reserve in order; on failure the caller runs
    /// [`run_reserve_plugins_unreserve`](Self::run_reserve_plugins_unreserve).
    pub fn run_reserve_plugins_reserve(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        node: &str,
    ) -> Status {
        for p in &self.reserve {
            let Some(r) = p.as_reserve() else { continue };
            let s = r.reserve(state, pod, node);
            if !s.is_success() {
                if s.is_rejected() {
                    return s.with_plugin(p.name());
                }
                return Status::error(format!("running Reserve plugin {:?}: {s}", p.name()))
                    .with_plugin(p.name());
            }
        }
        Status::success()
    }

    /// Unreserve, in reverse order.
    pub fn run_reserve_plugins_unreserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str) {
        for p in self.reserve.iter().rev() {
            if let Some(r) = p.as_reserve() {
                r.unreserve(state, pod, node);
            }
        }
    }

    /// Permit: Success, Wait (the pod is registered as waiting; await
    /// [`wait_on_permit`](Self::wait_on_permit)), or a rejection.
    pub fn run_permit_plugins(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> Status {
        let mut waiting = BTreeSet::new();
        let mut timeout = PERMIT_MAX_TIMEOUT;
        for p in &self.permit {
            let Some(pp) = p.as_permit() else { continue };
            let (s, t) = pp.permit(state, pod, node);
            match s.code() {
                Code::Success => {}
                Code::Wait => {
                    waiting.insert(p.name());
                    timeout = timeout.min(t.min(PERMIT_MAX_TIMEOUT));
                }
                _ if s.is_rejected() => return s.with_plugin(p.name()),
                _ => {
                    return Status::error(format!("running Permit plugin {:?}: {s}", p.name()))
                        .with_plugin(p.name());
                }
            }
        }
        if waiting.is_empty() {
            return Status::success();
        }
        let names: Vec<&str> = waiting.iter().copied().collect();
        let rx = self.waiting_pods.add(&pod.key, waiting);
        if let Ok(mut m) = self.pending_permits.lock() {
            m.insert(pod.key.clone(), (rx, timeout, names.join(",")));
        }
        Status::new(Code::Wait, "one or more plugins asked to wait")
    }

    /// Waits for a pod that Permit parked: Success when allowed, the
    /// rejection, or Unschedulable after the timeout.
    pub async fn wait_on_permit(&self, pod: &PodInfo) -> Status {
        let entry = self
            .pending_permits
            .lock()
            .ok()
            .and_then(|mut m| m.remove(&pod.key));
        let Some((rx, timeout, plugins)) = entry else {
            return Status::success();
        };
        let s = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => Status::error("waiting pod was dropped"),
            Err(_) => Status::unschedulable(format!(
                "rejected due to timeout after waiting {timeout:?} at plugin {plugins}"
            )),
        };
        self.waiting_pods.remove(&pod.key);
        s
    }

    /// PreBind in order.
    pub async fn run_pre_bind_plugins(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &str,
    ) -> Status {
        for p in &self.pre_bind {
            let Some(pb) = p.as_pre_bind() else { continue };
            let s = pb.pre_bind(state, pod, node).await;
            if !s.is_success() {
                if s.is_rejected() {
                    return s.with_plugin(p.name());
                }
                return Status::error(format!("running PreBind plugin {:?}: {s}", p.name()))
                    .with_plugin(p.name());
            }
        }
        Status::success()
    }

    /// Bind: the first binder that does not Skip decides.
    pub async fn run_bind_plugins(&self, state: &CycleState, pod: &PodInfo, node: &str) -> Status {
        for p in &self.bind {
            let Some(b) = p.as_bind() else { continue };
            let s = b.bind(state, pod, node).await;
            if s.is_skip() {
                continue;
            }
            if !s.is_success() {
                if s.is_rejected() {
                    return s.with_plugin(p.name());
                }
                return Status::error(format!("running Bind plugin {:?}: {s}", p.name()))
                    .with_plugin(p.name());
            }
            return s;
        }
        Status::error("no bind plugin bound the pod")
    }

    /// PostBind, informational.
    pub fn run_post_bind_plugins(&self, state: &CycleState, pod: &PodInfo, node: &str) {
        for p in &self.post_bind {
            if let Some(pb) = p.as_post_bind() {
                pb.post_bind(state, pod, node);
            }
        }
    }
}
