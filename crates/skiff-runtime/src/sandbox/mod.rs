//! Pod sandboxes: shared net/IPC/UTS namespaces pinned under the run dir, and
//! the seam to pod networking.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

/// Pod networking for sandboxes (bridge, veth, IPAM). The runtime calls it
/// after creating a sandbox's network namespace and before removing it.
pub trait PodNetwork: Send + Sync + std::fmt::Debug {
    /// Connects the namespace at `netns_path`; returns the pod's IP, if any.
    fn setup<'a>(
        &'a self,
        sandbox_id: &'a str,
        netns_path: &'a Path,
    ) -> BoxFuture<'a, std::io::Result<Option<IpAddr>>>;

    /// Disconnects the namespace and releases its address. Idempotent.
    fn teardown<'a>(
        &'a self,
        sandbox_id: &'a str,
        netns_path: &'a Path,
    ) -> BoxFuture<'a, std::io::Result<()>>;

    /// Takes the node's podCIDR, as the kubelet passes it through CRI
    /// `UpdateRuntimeConfig`. Networks that do not need it ignore it.
    fn set_pod_cidr(&self, _pod_cidr: &str) -> std::io::Result<()> {
        Ok(())
    }

    /// `Err(message)` while pods cannot get a network yet (CRI
    /// `NetworkReady=false`).
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A [`PodNetwork`] that does nothing: pods get loopback only.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopPodNetwork;

impl PodNetwork for NoopPodNetwork {
    fn setup<'a>(
        &'a self,
        _sandbox_id: &'a str,
        _netns_path: &'a Path,
    ) -> BoxFuture<'a, std::io::Result<Option<IpAddr>>> {
        Box::pin(async { Ok(None) })
    }

    fn teardown<'a>(
        &'a self,
        _sandbox_id: &'a str,
        _netns_path: &'a Path,
    ) -> BoxFuture<'a, std::io::Result<()>> {
        Box::pin(async { Ok(()) })
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
