//! Pod sandboxes: shared net/IPC/UTS namespaces pinned under the run dir, and
//! the seam to pod networking.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Pod networking for sandboxes (bridge, veth, IPAM). The runtime calls it
/// after creating a sandbox's network namespace and before removing it.
pub trait PodNetwork: Send + Sync + std::fmt::Debug {
    /// Connects the namespace at `netns_path`; returns the pod's IP, if any.
    fn setup(&self, sandbox_id: &str, netns_path: &Path) -> std::io::Result<Option<IpAddr>>;

    /// Disconnects the namespace and releases its address. Idempotent.
    fn teardown(&self, sandbox_id: &str, netns_path: &Path) -> std::io::Result<()>;
}

/// A [`PodNetwork`] that does nothing: pods get loopback only.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopPodNetwork;

impl PodNetwork for NoopPodNetwork {
    fn setup(&self, _sandbox_id: &str, _netns_path: &Path) -> std::io::Result<Option<IpAddr>> {
        Ok(None)
    }

    fn teardown(&self, _sandbox_id: &str, _netns_path: &Path) -> std::io::Result<()> {
        Ok(())
    }
}

/// A sandbox's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxState {
    /// Namespaces exist and networking is set up.
    Ready,
    /// Stopped: containers killed, network torn down.
    NotReady,
}

/// What the runtime persists about a sandbox (`sandboxes/<id>/sandbox.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxRecord {
    /// Sandbox ID.
    pub id: String,
    /// Pod name.
    pub name: String,
    /// Pod namespace.
    pub namespace: String,
    /// Pod UID.
    pub uid: String,
    /// Attempt number.
    pub attempt: u32,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Hostname of the pod.
    pub hostname: String,
    /// Where the pod's container logs live.
    pub log_directory: String,
    /// The cgroup that containers of this pod go under.
    pub cgroup_parent: String,
    /// Creation time, Unix nanoseconds.
    pub created_at: i64,
    /// State.
    pub state: SandboxState,
    /// The pod IP from the network, if any.
    pub ip: Option<IpAddr>,
}

impl SandboxRecord {
    /// Whether every `selector` label matches.
    pub fn matches_labels(&self, selector: &std::collections::HashMap<String, String>) -> bool {
        selector.iter().all(|(k, v)| self.labels.get(k) == Some(v))
    }
}
