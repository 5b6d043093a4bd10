//! The sync loop's bookkeeping against the recording fakes.

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use skiff_sys::conntrack::UdpFlowFilter;
use skiff_sys::conntrack::fake::RecordingConntrack;
use skiff_sys::nft::fake::RecordingNftables;

use super::{config, ready, service, slice};
use crate::Proxier;

fn dns(eps: &[&str]) -> (Service, EndpointSlice) {
    let svc = service(
        "dns",
        json!({"type": "NodePort", "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}]}),
    );
    let s = slice(
        "dns",
        "a",
        json!([{"name": "dns", "port": 5353, "protocol": "UDP"}]),
        eps.iter().map(|ip| ready(ip, "node-a")).collect(),
    );
    (svc, s)
}

#[tokio::test]
async fn first_sync_is_full_then_diffs_and_a_failure_forces_full() {
    let mut p = Proxier::new(
        config(),
        RecordingNftables::new(),
        RecordingConntrack::new(),
    )
    .unwrap();
    let (svc, s) = dns(&["10.42.0.7"]);
    let out = p.sync(&[&svc], &[&s], None).await.unwrap();
    assert!(out.applied && out.full);
    assert!(
        p.nft().scripts()[0].starts_with("add table ip skiff-proxy\ndelete table ip skiff-proxy\n")
    );

    // Nothing changed: nothing applied.
    let out = p.sync(&[&svc], &[&s], None).await.unwrap();
    assert!(!out.applied);
    assert_eq!(p.nft().scripts().len(), 1);

    // A change is a diff.
    let (_, s2) = dns(&["10.42.0.7", "10.42.0.8"]);
    let out = p.sync(&[&svc], &[&s2], None).await.unwrap();
    assert!(out.applied && !out.full);
    assert!(!p.nft().scripts()[1].contains("table"));

    // nft refuses: the error surfaces and is counted...
    p.nft().reject(Some("Error: Could not process rule"));
    let err = p.sync(&[&svc], &[&s], None).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "nft -f - failed: Error: Could not process rule"
    );
    assert_eq!(p.stats().sync_errors.load(Ordering::Relaxed), 1);
    // ...and the retry replaces the whole table, even with no new change.
    p.nft().reject(None);
    let out = p.sync(&[&svc], &[&s], None).await.unwrap();
    assert!(out.applied && out.full);
    assert_eq!(p.stats().full_syncs.load(Ordering::Relaxed), 2);
    assert_eq!(p.stats().syncs.load(Ordering::Relaxed), 3);
}

#[tokio::test]
async fn udp_endpoint_changes_delete_stale_flows() {
    let mut p = Proxier::new(
        config(),
        RecordingNftables::new(),
        RecordingConntrack::new(),
    )
    .unwrap();
    let svc_ip = Some(Ipv4Addr::new(10, 43, 0, 5));
    // No endpoints first: traffic is rejected, no flow to clean.
    let (svc, none) = dns(&[]);
    p.sync(&[&svc], &[&none], None).await.unwrap();
    assert!(p.conntrack().deleted().is_empty());
    // First endpoint: flows set up while there was none go.
    let (_, one) = dns(&["10.42.0.7"]);
    p.sync(&[&svc], &[&one], None).await.unwrap();
    assert_eq!(
        p.conntrack().deleted(),
        [
            UdpFlowFilter {
                orig_dst: None,
                orig_dport: Some(30053),
                dst_nat: None
            },
            UdpFlowFilter {
                orig_dst: svc_ip,
                orig_dport: Some(53),
                dst_nat: None
            },
        ]
    );
    // Endpoint replaced: flows DNATed to the old one go, via the ClusterIP
    // and the NodePort.
    let (_, other) = dns(&["10.42.0.8"]);
    p.sync(&[&svc], &[&other], None).await.unwrap();
    let old = Some(Ipv4Addr::new(10, 42, 0, 7));
    assert_eq!(
        p.conntrack().deleted()[2..],
        [
            UdpFlowFilter {
                orig_dst: None,
                orig_dport: Some(30053),
                dst_nat: old
            },
            UdpFlowFilter {
                orig_dst: svc_ip,
                orig_dport: None,
                dst_nat: old
            },
        ]
    );
    // A failed sync deletes nothing; its successful retry (a full
    // replacement) still cleans up against the last good rules.
    p.nft().reject(Some("boom"));
    let (_, back) = dns(&["10.42.0.7"]);
    assert!(p.sync(&[&svc], &[&back], None).await.is_err());
    assert_eq!(p.conntrack().deleted().len(), 4);
    p.nft().reject(None);
    assert!(p.sync(&[&svc], &[&back], None).await.unwrap().full);
    let new_gone = Some(Ipv4Addr::new(10, 42, 0, 8));
    assert_eq!(
        p.conntrack().deleted()[4..],
        [
            UdpFlowFilter {
                orig_dst: None,
                orig_dport: Some(30053),
                dst_nat: new_gone
            },
            UdpFlowFilter {
                orig_dst: svc_ip,
                orig_dport: None,
                dst_nat: new_gone
            },
        ]
    );
}

#[tokio::test]
async fn cleanup_and_preflight_scripts() {
    let nft = RecordingNftables::new();
    crate::proxier::cleanup(&nft, "skiff-proxy").await.unwrap();
    crate::proxier::preflight(&nft, "skiff-proxy")
        .await
        .unwrap();
    assert_eq!(
        nft.scripts(),
        [
            "add table ip skiff-proxy\ndelete table ip skiff-proxy\n",
            "add table ip skiff-proxy\n"
        ]
    );
    assert!(
        crate::proxier::cleanup(&nft, "x; flush ruleset")
            .await
            .is_err()
    );
    assert_eq!(nft.scripts().len(), 2);
}
