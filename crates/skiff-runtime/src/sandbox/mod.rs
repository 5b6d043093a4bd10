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
    /// Stopped (containers killed, network torn down), or found dead: its
    /// namespaces died with the host (see [`SandboxRecord::network_torn_down`]).
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
    /// The boot of the host the sandbox was made in
    /// (`/proc/sys/kernel/random/boot_id`): in another boot its namespaces
    /// and veth are gone. Absent from records of older agents.
    #[serde(default)]
    pub boot_id: Option<String>,
    /// StopPodSandbox tore down its network (its address is released). A
    /// sandbox found NotReady after a restart of the host holds its address
    /// until then. (Older agents' records lack it; tearing down again is
    /// harmless.)
    #[serde(default)]
    pub network_torn_down: bool,
}

impl SandboxRecord {
    /// Whether a sandbox recorded Ready is dead: made in another boot of the
    /// host than `current_boot`, or its namespaces are no longer pinned
    /// (`pinned`; the check for records without a boot id).
    pub fn lost(&self, current_boot: Option<&str>, pinned: impl FnOnce() -> bool) -> bool {
        let other_boot = matches!(
            (self.boot_id.as_deref(), current_boot),
            (Some(made), Some(now)) if made != now
        );
        self.state == SandboxState::Ready && (other_boot || !pinned())
    }

    /// Whether every `selector` label matches.
    pub fn matches_labels(&self, selector: &std::collections::HashMap<String, String>) -> bool {
        selector.iter().all(|(k, v)| self.labels.get(k) == Some(v))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn record(state: SandboxState, boot_id: Option<&str>) -> SandboxRecord {
        SandboxRecord {
            id: "s".into(),
            name: "p".into(),
            namespace: "default".into(),
            uid: "u".into(),
            attempt: 0,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            hostname: "p".into(),
            log_directory: String::new(),
            cgroup_parent: String::new(),
            created_at: 1,
            state,
            ip: None,
            boot_id: boot_id.map(str::to_owned),
            network_torn_down: false,
        }
    }

    #[test]
    fn a_ready_sandbox_is_lost_in_another_boot_or_without_its_pins() {
        use SandboxState::{NotReady, Ready};
        // (state, recorded boot, current boot, pins live, lost)
        let cases = [
            (Ready, Some("a"), Some("a"), true, false),
            (Ready, Some("a"), Some("b"), true, true),
            (Ready, Some("a"), Some("a"), false, true),
            // An older agent's record: only the pins tell.
            (Ready, None, Some("b"), true, false),
            (Ready, None, Some("b"), false, true),
            // This boot unknown: only the pins tell.
            (Ready, Some("a"), None, true, false),
            (NotReady, Some("a"), Some("b"), false, false),
        ];
        for (state, made, now, pinned, want) in cases {
            let got = record(state, made).lost(now, || pinned);
            assert_eq!(
                got, want,
                "{state:?} made in {made:?}, now {now:?}, pinned {pinned}"
            );
        }
    }

    #[test]
    fn records_of_older_agents_read() {
        let mut json = serde_json::to_value(record(SandboxState::Ready, Some("a"))).unwrap();
        let fields = json.as_object_mut().unwrap();
        fields.remove("boot_id");
        fields.remove("network_torn_down");
        let old: SandboxRecord = serde_json::from_value(json).unwrap();
        assert_eq!((old.boot_id, old.network_torn_down), (None, false));
    }
}
