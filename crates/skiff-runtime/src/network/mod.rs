//! The built-in pod network: every sandbox's network namespace gets an `eth0`
//! veth into a node-local bridge, an address from the node's podCIDR (the
//! bridge holds the first one and is the default gateway), and egress to
//! outside the cluster CIDR is masqueraded.
//!
//! [`BridgeNetwork::setup`] and [`BridgeNetwork::teardown`] match the sandbox
//! code's `PodNetwork` trait; both are idempotent.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};
use skiff_sys::net::{BridgeSpec, LinuxNetOps, NetError, NetOps, PodInterfaceSpec, VethSpec};
use skiff_sys::nft::{NftCli, NftError, Nftables};
use tokio::sync::OnceCell;

pub mod cni;
pub mod ipam;
pub mod masquerade;

pub use cidr::{CidrError, Ipv4Cidr};
pub use ipam::{Ipam, IpamError};
pub use skiff_sys::net::cidr;

/// Default bridge name.
pub const DEFAULT_BRIDGE: &str = "skiff0";
/// Default nftables table of the masquerade rules.
pub const DEFAULT_NAT_TABLE: &str = "skiff-nat";
/// Default MTU of the bridge and veths.
pub const DEFAULT_MTU: u32 = 1500;
/// The pod-side interface name, as every CNI plugin names it.
pub const POD_IFNAME: &str = "eth0";

/// Settings of a node's bridge network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeNetworkConfig {
    /// Bridge interface name (at most 15 bytes).
    pub bridge_name: String,
    /// This node's podCIDR; its first host address is the bridge's.
    pub pod_cidr: Ipv4Cidr,
    /// The whole cluster's pod CIDR (`--cluster-cidr`); traffic to it is not
    /// masqueraded.
    pub cluster_cidr: Ipv4Cidr,
    /// MTU of the bridge and veths.
    pub mtu: u32,
    /// Directory of the IPAM records (one file per address).
    pub ipam_dir: PathBuf,
    /// nftables table (family `ip`) holding the masquerade rule.
    pub nat_table: String,
    /// Hairpin mode on pod ports of the bridge (pod → own Service → itself).
    pub hairpin_mode: bool,
}

impl BridgeNetworkConfig {
    /// Defaults for everything but the CIDRs and where the runtime keeps state:
    /// IPAM records go to `<state_dir>/networks/<bridge>`, as host-local keeps
    /// them under `/var/lib/cni/networks/<network>`.
    pub fn new(pod_cidr: Ipv4Cidr, cluster_cidr: Ipv4Cidr, state_dir: &Path) -> Self {
        Self {
            bridge_name: DEFAULT_BRIDGE.to_string(),
            pod_cidr,
            cluster_cidr,
            mtu: DEFAULT_MTU,
            ipam_dir: ipam_dir(state_dir),
            nat_table: DEFAULT_NAT_TABLE.to_string(),
            hairpin_mode: true,
        }
    }
}

/// Where the node's bridge network keeps its IPAM records under `state_dir`.
fn ipam_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("networks").join(DEFAULT_BRIDGE)
}

/// Errors of the pod network.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The configuration cannot work.
    #[error("invalid pod network configuration: {0}")]
    InvalidConfig(String),
    /// Address management failed (including exhaustion).
    #[error(transparent)]
    Ipam(#[from] IpamError),
    /// A link, address, route or sysctl operation failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// Programming the masquerade rules failed.
    #[error("masquerade rules: {0}")]
    Nft(#[from] NftError),
    /// A blocking IPAM task died.
    #[error("IPAM task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// The host-side veth name of a sandbox: stable, so teardown finds it without
/// state, and within the 15-byte limit.
pub fn host_veth_name(sandbox_id: &str) -> String {
    let digest = Sha256::digest(sandbox_id.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("veth{}", &hex[..11])
}

/// A node-local bridge network.
#[derive(Debug)]
pub struct BridgeNetwork<N = LinuxNetOps, F = NftCli> {
    config: BridgeNetworkConfig,
    ops: N,
    nft: F,
    ipam: Arc<Ipam>,
    host_ready: OnceCell<()>,
}

impl BridgeNetwork {
    /// The real network on this host.
    pub fn new(config: BridgeNetworkConfig) -> Result<Self, NetworkError> {
        Self::with_ops(config, LinuxNetOps::new(), NftCli::new())
    }
}

impl<N: NetOps, F: Nftables> BridgeNetwork<N, F> {
    /// A network over the given operations (fakes in tests).
    pub fn with_ops(config: BridgeNetworkConfig, ops: N, nft: F) -> Result<Self, NetworkError> {
        if config.bridge_name.is_empty() || config.bridge_name.len() > 15 {
            return Err(NetworkError::InvalidConfig(format!(
                "bridge name {:?} must be 1 to 15 bytes",
                config.bridge_name
            )));
        }
        if !masquerade::valid_table_name(&config.nat_table) {
            return Err(NetworkError::InvalidConfig(format!(
                "nftables table name {:?}",
                config.nat_table
            )));
        }
        if config.pod_cidr.prefix_len() < config.cluster_cidr.prefix_len()
            || !config.cluster_cidr.contains(config.pod_cidr.network())
        {
            return Err(NetworkError::InvalidConfig(format!(
                "pod CIDR {} is not inside cluster CIDR {}",
                config.pod_cidr, config.cluster_cidr
            )));
        }
        let ipam = Ipam::new(&config.ipam_dir, config.pod_cidr)?;
        Ok(Self {
            config,
            ops,
            nft,
            ipam: Arc::new(ipam),
            host_ready: OnceCell::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BridgeNetworkConfig {
        &self.config
    }

    /// The operations (to inspect fakes in tests).
    pub fn ops(&self) -> &N {
        &self.ops
    }

    /// The address allocator.
    pub fn ipam(&self) -> &Ipam {
        &self.ipam
    }

    /// Sysctls, bridge and masquerade: done once per process, retried on the
    /// next setup if it failed.
    async fn ensure_host(&self) -> Result<(), NetworkError> {
        self.host_ready
            .get_or_try_init(|| async {
                self.ops.set_sysctl("net.ipv4.ip_forward", "1").await?;
                // Without br_netfilter the file is absent; the bridge's own
                // nf_call_iptables option (set by ensure_bridge) still holds.
                if let Err(err) = self
                    .ops
                    .set_sysctl("net.bridge.bridge-nf-call-iptables", "1")
                    .await
                {
                    tracing::warn!(error = %err, "cannot enable bridge-nf-call-iptables");
                }
                self.ops
                    .ensure_bridge(&BridgeSpec {
                        name: self.config.bridge_name.clone(),
                        address: self.ipam.gateway(),
                        prefix_len: self.config.pod_cidr.prefix_len(),
                        mtu: self.config.mtu,
                    })
                    .await?;
                self.nft
                    .apply(&masquerade::masquerade_ruleset(
                        &self.config.nat_table,
                        self.config.pod_cidr,
                        self.config.cluster_cidr,
                    ))
                    .await?;
                Ok::<(), NetworkError>(())
            })
            .await
            .map(|_| ())
    }

    /// Connects the sandbox's namespace to the bridge and returns its address.
    /// Calling it again for the same sandbox returns the same address.
    #[tracing::instrument(skip_all, fields(sandbox = %sandbox_id))]
    pub async fn setup(
        &self,
        sandbox_id: &str,
        netns_path: &Path,
    ) -> Result<Option<IpAddr>, NetworkError> {
        self.ensure_host().await?;
        let ipam = self.ipam.clone();
        let id = sandbox_id.to_string();
        let address = tokio::task::spawn_blocking(move || ipam.allocate(&id)).await??;
        let host_ifname = host_veth_name(sandbox_id);
        let wired = async {
            self.ops
                .create_veth(&VethSpec {
                    host_ifname: host_ifname.clone(),
                    container_ifname: POD_IFNAME.to_string(),
                    netns: netns_path.to_path_buf(),
                    bridge: self.config.bridge_name.clone(),
                    mtu: self.config.mtu,
                    hairpin: self.config.hairpin_mode,
                })
                .await?;
            self.ops
                .configure_pod_interface(&PodInterfaceSpec {
                    netns: netns_path.to_path_buf(),
                    ifname: POD_IFNAME.to_string(),
                    address,
                    prefix_len: self.config.pod_cidr.prefix_len(),
                    gateway: self.ipam.gateway(),
                })
                .await
        }
        .await;
        if let Err(err) = wired {
            // Leave nothing half-built behind; the caller may retry from scratch.
            if let Err(cleanup) = self.teardown(sandbox_id, netns_path).await {
                tracing::warn!(error = %cleanup, "cleanup after failed setup");
            }
            return Err(err.into());
        }
        tracing::debug!(%address, veth = %host_ifname, "pod network set up");
        Ok(Some(IpAddr::V4(address)))
    }

    /// Removes the sandbox's veth and releases its address. Unknown sandboxes
    /// and repeated calls are fine.
    #[tracing::instrument(skip_all, fields(sandbox = %sandbox_id))]
    pub async fn teardown(&self, sandbox_id: &str, _netns_path: &Path) -> Result<(), NetworkError> {
        // Deleting the host end removes the peer in the pod's namespace too.
        self.ops.delete_link(&host_veth_name(sandbox_id)).await?;
        let ipam = self.ipam.clone();
        let id = sandbox_id.to_string();
        tokio::task::spawn_blocking(move || ipam.release(&id)).await??;
        Ok(())
    }

    /// Removes the masquerade table and the bridge (agent clean-up). Pods still
    /// attached lose connectivity.
    pub async fn remove_host_network(&self) -> Result<(), NetworkError> {
        remove_host_network(
            &self.ops,
            &self.nft,
            &self.config.bridge_name,
            &self.config.nat_table,
        )
        .await
    }
}

/// Removes a bridge network's host parts by name: its masquerade table and
/// its bridge (`skiff agent --cleanup`, which knows no podCIDR). Absent
/// parts are fine.
pub async fn remove_host_network<N: NetOps, F: Nftables>(
    ops: &N,
    nft: &F,
    bridge_name: &str,
    nat_table: &str,
) -> Result<(), NetworkError> {
    if !masquerade::valid_table_name(nat_table) {
        return Err(NetworkError::InvalidConfig(format!(
            "nftables table name {nat_table:?}"
        )));
    }
    nft.apply(&masquerade::remove_ruleset(nat_table)).await?;
    ops.delete_link(bridge_name).await?;
    Ok(())
}

impl<N: NetOps, F: Nftables> crate::sandbox::PodNetwork for BridgeNetwork<N, F>
where
    Self: std::fmt::Debug,
{
    fn setup<'a>(
        &'a self,
        sandbox_id: &'a str,
        netns_path: &'a Path,
    ) -> futures::future::BoxFuture<'a, std::io::Result<Option<IpAddr>>> {
        Box::pin(async move {
            BridgeNetwork::setup(self, sandbox_id, netns_path)
                .await
                .map_err(std::io::Error::other)
        })
    }

    fn teardown<'a>(
        &'a self,
        sandbox_id: &'a str,
        netns_path: &'a Path,
    ) -> futures::future::BoxFuture<'a, std::io::Result<()>> {
        Box::pin(async move {
            BridgeNetwork::teardown(self, sandbox_id, netns_path)
                .await
                .map_err(std::io::Error::other)
        })
    }
}

/// The node's pod network as the agent runs it: a [`BridgeNetwork`] built
/// once the kubelet passes the node's podCIDR (CRI `UpdateRuntimeConfig`),
/// as container runtimes hand it to their network plugin. Until then sandboxes
/// fail with "network not ready" and the kubelet retries.
#[derive(Debug)]
pub struct NodePodNetwork {
    cluster_cidr: Ipv4Cidr,
    state_dir: PathBuf,
    bridge_name: String,
    nat_table: String,
    bridge: std::sync::OnceLock<BridgeNetwork>,
}

impl NodePodNetwork {
    /// A network for pods inside `cluster_cidr`, keeping IPAM state under `state_dir`.
    pub fn new(cluster_cidr: Ipv4Cidr, state_dir: &Path) -> Self {
        Self {
            cluster_cidr,
            state_dir: state_dir.to_path_buf(),
            bridge_name: DEFAULT_BRIDGE.to_owned(),
            nat_table: DEFAULT_NAT_TABLE.to_owned(),
            bridge: std::sync::OnceLock::new(),
        }
    }

    /// Uses another bridge and nftables table than the defaults.
    pub fn with_names(mut self, bridge_name: &str, nat_table: &str) -> Self {
        bridge_name.clone_into(&mut self.bridge_name);
        nat_table.clone_into(&mut self.nat_table);
        self
    }

    /// The bridge network, once configured.
    pub fn bridge(&self) -> Option<&BridgeNetwork> {
        self.bridge.get()
    }

    fn require(&self) -> std::io::Result<&BridgeNetwork> {
        self.bridge.get().ok_or_else(|| {
            std::io::Error::other("network is not ready: the node has no podCIDR yet")
        })
    }
}

impl crate::sandbox::PodNetwork for NodePodNetwork {
    fn setup<'a>(
        &'a self,
        sandbox_id: &'a str,
        netns_path: &'a Path,
    ) -> futures::future::BoxFuture<'a, std::io::Result<Option<IpAddr>>> {
        Box::pin(async move {
            let bridge = self.require()?;
            crate::sandbox::PodNetwork::setup(bridge, sandbox_id, netns_path).await
        })
    }

    fn teardown<'a>(
        &'a self,
        sandbox_id: &'a str,
        netns_path: &'a Path,
    ) -> futures::future::BoxFuture<'a, std::io::Result<()>> {
        Box::pin(async move {
            match self.bridge.get() {
                // A sandbox of an earlier agent (or boot) may hold an address
                // that only the bridge's allocator, made once the kubelet
                // passes the podCIDR, can release: until then its stop fails
                // and is retried, as a setup is.
                None => {
                    let dir = ipam_dir(&self.state_dir);
                    let held = match ipam::allocations_in(&dir) {
                        Ok(held) => held,
                        Err(IpamError::Io { source, .. })
                            if source.kind() == std::io::ErrorKind::NotFound =>
                        {
                            Vec::new()
                        }
                        Err(e) => return Err(std::io::Error::other(e)),
                    };
                    if held.iter().any(|(_, owner)| owner == sandbox_id) {
                        return Err(std::io::Error::other(
                            "network is not ready: the node has no podCIDR yet",
                        ));
                    }
                    Ok(())
                }
                Some(bridge) => {
                    crate::sandbox::PodNetwork::teardown(bridge, sandbox_id, netns_path).await
                }
            }
        })
    }

    fn set_pod_cidr(&self, pod_cidr: &str) -> std::io::Result<()> {
        let cidr: Ipv4Cidr = pod_cidr
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")))?;
        if let Some(existing) = self.bridge.get() {
            if existing.config().pod_cidr != cidr {
                tracing::warn!(current = %existing.config().pod_cidr, new = %cidr,
                    "podCIDR changed; keeping the current one until the agent restarts");
            }
            return Ok(());
        }
        let mut config = BridgeNetworkConfig::new(cidr, self.cluster_cidr, &self.state_dir);
        config.bridge_name.clone_from(&self.bridge_name);
        config.nat_table.clone_from(&self.nat_table);
        let bridge = BridgeNetwork::new(config).map_err(std::io::Error::other)?;
        // A concurrent call may have won; either bridge has the same config.
        let _ = self.bridge.set(bridge);
        tracing::info!(pod_cidr = %cidr, "pod network configured");
        Ok(())
    }

    fn ready(&self) -> Result<(), String> {
        self.require().map(|_| ()).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests;
