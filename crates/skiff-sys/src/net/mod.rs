//! Host networking for the built-in pod network: bridges, veth pairs, addresses,
//! routes and sysctls, behind [`NetOps`] so the pod network's sequencing can be
//! tested against [`fake::RecordingNetOps`] without root.
//!
//! [`LinuxNetOps`] speaks route netlink (the `rtnetlink` crate). Anything done
//! inside a pod's network namespace runs on a dedicated OS thread that enters
//! the namespace and then exits: `setns` is per thread, and a tokio worker left
//! in a pod's namespace would silently run later tasks there.

use std::future::Future;
use std::net::Ipv4Addr;
use std::path::PathBuf;

pub mod cidr;
mod linux;

#[cfg(feature = "fake")]
pub mod fake;

pub use cidr::{CidrError, Ipv4Cidr};
pub use linux::{LinuxNetOps, run_in_netns};

/// A Linux bridge the pod veths attach to; its address is the pods' gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSpec {
    /// Interface name (at most 15 bytes), e.g. `skiff0`.
    pub name: String,
    /// The gateway address the bridge carries, e.g. `10.42.0.1`.
    pub address: Ipv4Addr,
    /// Prefix length of the pod CIDR, e.g. 24.
    pub prefix_len: u8,
    /// MTU of the bridge.
    pub mtu: u32,
}

/// A veth pair: the host end is enslaved to a bridge, the peer is created
/// directly inside the pod's network namespace under its final name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethSpec {
    /// Host-side interface name (at most 15 bytes).
    pub host_ifname: String,
    /// Name of the peer inside the namespace, normally `eth0`.
    pub container_ifname: String,
    /// Bind-mounted namespace file, e.g. `/run/netns/<id>`.
    pub netns: PathBuf,
    /// Bridge the host end joins.
    pub bridge: String,
    /// MTU of both ends.
    pub mtu: u32,
    /// Hairpin mode on the bridge port, so a pod reaches itself through a
    /// Service address (the CNI bridge plugin's `hairpinMode`).
    pub hairpin: bool,
}

/// Addressing of the pod-side interface, applied inside the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInterfaceSpec {
    /// Bind-mounted namespace file.
    pub netns: PathBuf,
    /// Interface inside the namespace, normally `eth0`.
    pub ifname: String,
    /// The pod's address.
    pub address: Ipv4Addr,
    /// Prefix length of the pod CIDR.
    pub prefix_len: u8,
    /// Default gateway (the bridge address).
    pub gateway: Ipv4Addr,
}

/// An IPv4 route in the main table: `destination/prefix_len via gateway`,
/// tagged with a route protocol number so its owner can find it again
/// (`ip route show proto N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteSpec {
    /// The destination network, e.g. `10.42.1.0/24`.
    pub destination: Ipv4Cidr,
    /// Next hop, e.g. the other node's InternalIP.
    pub gateway: Ipv4Addr,
    /// Route protocol (`rtm_protocol`) marking who owns the route.
    pub protocol: u8,
}

impl std::fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} via {} proto {}",
            self.destination, self.gateway, self.protocol
        )
    }
}

/// Errors of the host network operations.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A netlink request was refused by the kernel.
    #[error("{op}: {source}")]
    Netlink {
        /// What was being done, e.g. `add address 10.42.0.1/24 to skiff0`.
        op: String,
        /// The kernel's answer.
        #[source]
        source: std::io::Error,
    },
    /// A link that must exist does not.
    #[error("link {0} not found")]
    LinkNotFound(String),
    /// Opening or entering a network namespace failed.
    #[error("network namespace {path}: {source}")]
    Netns {
        /// The namespace file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Writing a sysctl failed.
    #[error("sysctl {key}: {source}")]
    Sysctl {
        /// Dotted key, e.g. `net.ipv4.ip_forward`.
        key: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Any other I/O failure (netlink socket, namespace thread).
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The host network operations the pod network needs. Every method is
/// idempotent: repeating it after success changes nothing and succeeds.
pub trait NetOps: Send + Sync + 'static {
    /// Creates the bridge if missing, gives it its address and MTU and brings it up.
    fn ensure_bridge(
        &self,
        bridge: &BridgeSpec,
    ) -> impl Future<Output = Result<(), NetError>> + Send;

    /// Creates a veth pair whose host end joins the bridge and is up, and whose
    /// peer is created inside the namespace as `container_ifname`.
    fn create_veth(&self, veth: &VethSpec) -> impl Future<Output = Result<(), NetError>> + Send;

    /// Inside the namespace: brings `lo` and the interface up, adds the address
    /// and the default route via the gateway.
    fn configure_pod_interface(
        &self,
        iface: &PodInterfaceSpec,
    ) -> impl Future<Output = Result<(), NetError>> + Send;

    /// Deletes a link in the host namespace (deleting a veth end removes its
    /// peer). Returns whether it existed.
    fn delete_link(&self, name: &str) -> impl Future<Output = Result<bool, NetError>> + Send;

    /// Whether a link of that name exists in the host namespace.
    fn link_exists(&self, name: &str) -> impl Future<Output = Result<bool, NetError>> + Send;

    /// Adds the route, or replaces the main table's route to the same
    /// destination (another gateway or protocol).
    fn replace_route(&self, route: &RouteSpec)
    -> impl Future<Output = Result<(), NetError>> + Send;

    /// Deletes the route to `route`'s destination via its gateway with its
    /// protocol. Returns whether it existed.
    fn delete_route(
        &self,
        route: &RouteSpec,
    ) -> impl Future<Output = Result<bool, NetError>> + Send;

    /// The IPv4 routes of the main table with a gateway and the given protocol.
    fn list_routes(
        &self,
        protocol: u8,
    ) -> impl Future<Output = Result<Vec<RouteSpec>, NetError>> + Send;

    /// Writes a sysctl, e.g. `net.ipv4.ip_forward` = `1`.
    fn set_sysctl(
        &self,
        key: &str,
        value: &str,
    ) -> impl Future<Output = Result<(), NetError>> + Send;
}

/// The `/proc/sys` path of a dotted sysctl key. Dots separate path components;
/// keys whose components contain dots (interface names) are not supported.
pub fn sysctl_path(key: &str) -> PathBuf {
    let mut path = PathBuf::from("/proc/sys");
    for part in key.split('.') {
        path.push(part);
    }
    path
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod network_tests {
    use super::*;

    #[test]
    fn network_sysctl_path_maps_dots_to_directories() {
        for (key, want) in [
            ("net.ipv4.ip_forward", "/proc/sys/net/ipv4/ip_forward"),
            (
                "net.bridge.bridge-nf-call-iptables",
                "/proc/sys/net/bridge/bridge-nf-call-iptables",
            ),
        ] {
            assert_eq!(sysctl_path(key), PathBuf::from(want));
        }
    }
}
