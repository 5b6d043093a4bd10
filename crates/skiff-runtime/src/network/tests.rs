//! The setup/teardown sequence against the recording fakes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use skiff_sys::net::fake::{FailOp, NetCall, RecordingNetOps};
use skiff_sys::net::{BridgeSpec, PodInterfaceSpec, VethSpec};
use skiff_sys::nft::fake::RecordingNftables;

use super::*;

fn network(dir: &Path) -> BridgeNetwork<RecordingNetOps, RecordingNftables> {
    let config = BridgeNetworkConfig::new(
        "10.42.5.0/24".parse().unwrap(),
        "10.42.0.0/16".parse().unwrap(),
        dir,
    );
    BridgeNetwork::with_ops(config, RecordingNetOps::new(), RecordingNftables::new()).unwrap()
}

fn netns(id: &str) -> PathBuf {
    PathBuf::from(format!("/run/netns/{id}"))
}

#[tokio::test]
async fn setup_sequence_host_once_then_veth_then_interface() {
    let dir = tempfile::tempdir().unwrap();
    let net = network(dir.path());
    let ip = net.setup("sb1", &netns("sb1")).await.unwrap();
    assert_eq!(ip, Some(IpAddr::V4(Ipv4Addr::new(10, 42, 5, 2))));
    let veth = host_veth_name("sb1");
    assert_eq!(
        net.ops().calls(),
        vec![
            NetCall::SetSysctl("net.ipv4.ip_forward".into(), "1".into()),
            NetCall::SetSysctl("net.bridge.bridge-nf-call-iptables".into(), "1".into()),
            NetCall::EnsureBridge(BridgeSpec {
                name: "skiff0".into(),
                address: Ipv4Addr::new(10, 42, 5, 1),
                prefix_len: 24,
                mtu: 1500,
            }),
            NetCall::CreateVeth(VethSpec {
                host_ifname: veth.clone(),
                container_ifname: "eth0".into(),
                netns: netns("sb1"),
                bridge: "skiff0".into(),
                mtu: 1500,
                hairpin: true,
            }),
            NetCall::ConfigurePodInterface(PodInterfaceSpec {
                netns: netns("sb1"),
                ifname: "eth0".into(),
                address: Ipv4Addr::new(10, 42, 5, 2),
                prefix_len: 24,
                gateway: Ipv4Addr::new(10, 42, 5, 1),
            }),
        ]
    );
    assert_eq!(net.nft.scripts().len(), 1);
    assert!(net.nft.scripts()[0].contains("ip saddr 10.42.5.0/24 ip daddr != 10.42.0.0/16"));

    // A second sandbox does not redo the host part.
    net.ops().clear_calls();
    let ip2 = net.setup("sb2", &netns("sb2")).await.unwrap();
    assert_eq!(ip2, Some(IpAddr::V4(Ipv4Addr::new(10, 42, 5, 3))));
    let calls = net.ops().calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(matches!(calls[0], NetCall::CreateVeth(_)));
    assert!(matches!(calls[1], NetCall::ConfigurePodInterface(_)));
    assert_eq!(net.nft.scripts().len(), 1);
}

#[tokio::test]
async fn setup_is_idempotent_per_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let net = network(dir.path());
    let first = net.setup("sb1", &netns("sb1")).await.unwrap();
    let again = net.setup("sb1", &netns("sb1")).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(net.ipam().allocations().unwrap().len(), 1);
}

#[tokio::test]
async fn teardown_deletes_veth_and_releases_address() {
    let dir = tempfile::tempdir().unwrap();
    let net = network(dir.path());
    net.setup("sb1", &netns("sb1")).await.unwrap();
    let veth = host_veth_name("sb1");
    assert!(net.ops().links().contains(&veth));
    net.teardown("sb1", &netns("sb1")).await.unwrap();
    assert!(!net.ops().links().contains(&veth));
    assert!(net.ipam().allocations().unwrap().is_empty());
    assert_eq!(net.ops().calls().last(), Some(&NetCall::DeleteLink(veth)));
    // Again, and for a sandbox never seen: both fine.
    net.teardown("sb1", &netns("sb1")).await.unwrap();
    net.teardown("unknown", &netns("unknown")).await.unwrap();
}

#[tokio::test]
async fn failed_wiring_rolls_back_veth_and_address() {
    let dir = tempfile::tempdir().unwrap();
    let net = network(dir.path());
    net.ops().fail(Some(FailOp::ConfigurePodInterface));
    let err = net.setup("sb1", &netns("sb1")).await.unwrap_err();
    assert!(matches!(err, NetworkError::Net(_)), "{err}");
    assert!(!net.ops().links().contains(&host_veth_name("sb1")));
    assert!(net.ipam().allocations().unwrap().is_empty());
    net.ops().fail(None);
    assert!(net.setup("sb1", &netns("sb1")).await.unwrap().is_some());
}

#[tokio::test]
async fn host_setup_failure_is_retried_on_next_setup() {
    let dir = tempfile::tempdir().unwrap();
    let net = network(dir.path());
    net.ops().fail(Some(FailOp::EnsureBridge));
    assert!(net.setup("sb1", &netns("sb1")).await.is_err());
    assert!(net.ipam().allocations().unwrap().is_empty());
    net.ops().fail(None);
    net.nft.reject(Some("Error: Could not process rule"));
    let err = net.setup("sb1", &netns("sb1")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "masquerade rules: nft -f - failed: Error: Could not process rule"
    );
    net.nft.reject(None);
    assert!(net.setup("sb1", &netns("sb1")).await.unwrap().is_some());
    let bridges = net
        .ops()
        .calls()
        .iter()
        .filter(|c| matches!(c, NetCall::EnsureBridge(_)))
        .count();
    assert_eq!(bridges, 3);
}

#[tokio::test]
async fn exhaustion_surfaces_ipam_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = BridgeNetworkConfig::new(
        "10.42.7.0/30".parse().unwrap(),
        "10.42.0.0/16".parse().unwrap(),
        dir.path(),
    );
    let net =
        BridgeNetwork::with_ops(config, RecordingNetOps::new(), RecordingNftables::new()).unwrap();
    net.setup("a", &netns("a")).await.unwrap();
    let err = net.setup("b", &netns("b")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "no IP addresses available in range set: 10.42.7.2-10.42.7.2"
    );
}

#[test]
fn config_validation() {
    let dir = tempfile::tempdir().unwrap();
    let base = BridgeNetworkConfig::new(
        "10.42.5.0/24".parse().unwrap(),
        "10.42.0.0/16".parse().unwrap(),
        dir.path(),
    );
    let cases: Vec<(&str, BridgeNetworkConfig)> = vec![
        (
            "pod CIDR outside cluster",
            BridgeNetworkConfig {
                pod_cidr: "10.43.0.0/24".parse().unwrap(),
                ..base.clone()
            },
        ),
        (
            "pod CIDR wider than cluster",
            BridgeNetworkConfig {
                pod_cidr: "10.0.0.0/8".parse().unwrap(),
                ..base.clone()
            },
        ),
        (
            "long bridge name",
            BridgeNetworkConfig {
                bridge_name: "a-very-long-bridge".into(),
                ..base.clone()
            },
        ),
        (
            "bad table",
            BridgeNetworkConfig {
                nat_table: "x; flush ruleset".into(),
                ..base.clone()
            },
        ),
    ];
    for (name, config) in cases {
        let got = BridgeNetwork::with_ops(config, RecordingNetOps::new(), RecordingNftables::new());
        assert!(matches!(got, Err(NetworkError::InvalidConfig(_))), "{name}");
    }
    assert!(
        BridgeNetwork::with_ops(base, RecordingNetOps::new(), RecordingNftables::new()).is_ok()
    );
}

#[test]
fn veth_names_are_stable_distinct_and_short() {
    let a = host_veth_name("0123456789abcdef");
    assert_eq!(a, host_veth_name("0123456789abcdef"));
    assert_ne!(a, host_veth_name("0123456789abcdee"));
    assert_eq!(a.len(), 15);
    assert!(a.starts_with("veth"));
}

#[tokio::test]
async fn node_network_without_its_bridge_keeps_addresses_for_later() {
    use crate::sandbox::PodNetwork as _;
    let dir = tempfile::tempdir().unwrap();
    // An earlier agent's allocation, on the disk.
    let earlier = Ipam::new(ipam_dir(dir.path()), "10.42.0.0/24".parse().unwrap()).unwrap();
    earlier.allocate("held").unwrap();
    let net = NodePodNetwork::new("10.42.0.0/16".parse().unwrap(), dir.path());
    let err = net.teardown("held", Path::new("")).await.unwrap_err();
    assert!(err.to_string().contains("not ready"), "{err}");
    assert_eq!(earlier.allocations().unwrap().len(), 1);
    // Nothing to release: nothing to wait for.
    net.teardown("other", Path::new("")).await.unwrap();
    let fresh = NodePodNetwork::new("10.42.0.0/16".parse().unwrap(), &dir.path().join("none"));
    fresh.teardown("held", Path::new("")).await.unwrap();
}
