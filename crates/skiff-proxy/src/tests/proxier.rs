//! The sync loop's bookkeeping against the recording fakes.

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use skiff_sys::conntrack::UdpFlowFilter;
use skiff_sys::conntrack::fake::RecordingConntrack;
use skiff_sys::nft::Nftables as _;
use skiff_sys::nft::fake::RecordingNftables;

use super::{config, http, ready, service, slice};
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
    assert_eq!(p.stats().sync.sync_errors.load(Ordering::Relaxed), 1);
    // ...and the retry replaces the whole table, even with no new change.
    p.nft().reject(None);
    let out = p.sync(&[&svc], &[&s], None).await.unwrap();
    assert!(out.applied && out.full);
    assert_eq!(p.stats().full_syncs.load(Ordering::Relaxed), 2);
    assert_eq!(p.stats().sync.syncs.load(Ordering::Relaxed), 3);
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

/// `obj` with this resourceVersion, as an API server would hand it out.
fn at<K: kube::Resource>(mut obj: K, version: u32) -> K {
    obj.meta_mut().resource_version = Some(version.to_string());
    obj
}

/// The objects of one step: Services and their slices.
type Objects = (Vec<Service>, Vec<EndpointSlice>);

/// Five Services of different kinds with versioned objects; each step
/// changes one more of them (see the test).
fn cluster(step: u32) -> Objects {
    let mut services = vec![
        at(service("web", json!({})), 1),
        at(
            service(
                "api",
                json!({"clusterIP": "10.43.0.6", "clusterIPs": ["10.43.0.6"], "type": "NodePort",
                       "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
            ),
            1,
        ),
        at(
            service(
                "sticky",
                json!({"clusterIP": "10.43.0.7", "clusterIPs": ["10.43.0.7"], "sessionAffinity": "ClientIP"}),
            ),
            1,
        ),
        at(
            service(
                "local",
                json!({"clusterIP": "10.43.0.8", "clusterIPs": ["10.43.0.8"], "internalTrafficPolicy": "Local"}),
            ),
            1,
        ),
    ];
    let eps = |a: &str, b: &str| vec![ready(a, "node-a"), ready(b, "node-b")];
    let mut slices = vec![
        at(
            slice("web", "a", http(8080), eps("10.42.0.1", "10.42.1.1")),
            1,
        ),
        at(
            slice("api", "a", http(8080), eps("10.42.0.2", "10.42.1.2")),
            1,
        ),
        at(
            slice("sticky", "a", http(8080), eps("10.42.0.3", "10.42.1.3")),
            1,
        ),
        at(
            slice("local", "a", http(8080), eps("10.42.0.4", "10.42.1.4")),
            1,
        ),
    ];
    for s in 1..=step {
        match s {
            // web: one endpoint replaced, one added (the slice moves on).
            1 => {
                slices[0] = at(
                    slice(
                        "web",
                        "a",
                        http(8080),
                        vec![
                            ready("10.42.0.1", "node-a"),
                            ready("10.42.0.9", "node-a"),
                            ready("10.42.2.9", "node-c"),
                        ],
                    ),
                    2,
                );
            }
            // sticky: loses every endpoint.
            2 => slices[2] = at(slice("sticky", "a", http(8080), vec![]), 2),
            // api: becomes a plain ClusterIP Service.
            3 => {
                services[1] = at(
                    service(
                        "api",
                        json!({"clusterIP": "10.43.0.6", "clusterIPs": ["10.43.0.6"]}),
                    ),
                    2,
                );
            }
            // local: deleted, Service and slice.
            4 => {
                services.remove(3);
                slices.remove(3);
            }
            // dns: a new UDP Service.
            _ => {
                let (mut svc, s) = dns(&["10.42.0.5"]);
                let spec = svc.spec.as_mut().unwrap();
                spec.cluster_ip = Some("10.43.0.9".into());
                spec.cluster_ips = Some(vec!["10.43.0.9".into()]);
                services.push(at(svc, 1));
                slices.push(at(s, 1));
            }
        }
    }
    (services, slices)
}

/// Addresses and names of the Service `name` in [`cluster`] (all steps).
fn marks(name: &str) -> &'static [&'static str] {
    match name {
        "web" => &[
            "web",
            "10.43.0.5",
            "10.42.0.1",
            "10.42.1.1",
            "10.42.0.9",
            "10.42.2.9",
        ],
        "api" => &["api", "10.43.0.6", "10.42.0.2", "10.42.1.2", "30080"],
        "sticky" => &["sticky", "10.43.0.7", "10.42.0.3", "10.42.1.3"],
        "local" => &["local-", "/local/", "10.43.0.8", "10.42.0.4", "10.42.1.4"],
        _ => &["dns", "10.43.0.9", "10.42.0.5", "30053"],
    }
}

async fn sync_objects(
    p: &mut Proxier<RecordingNftables, RecordingConntrack>,
    (services, slices): &Objects,
) -> crate::proxier::SyncOutcome {
    let s: Vec<&Service> = services.iter().collect();
    let e: Vec<&EndpointSlice> = slices.iter().collect();
    p.sync(&s, &e, None).await.unwrap()
}

fn modelled() -> Proxier<RecordingNftables, RecordingConntrack> {
    Proxier::new(
        config(),
        RecordingNftables::modelled(),
        RecordingConntrack::new(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_change_to_one_service_touches_only_it_and_ends_as_a_full_sync_does() {
    let mut p = modelled();
    assert!(sync_objects(&mut p, &cluster(0)).await.full);
    let changed = ["web", "sticky", "api", "local", "dns"];
    for (step, name) in (1..).zip(changed) {
        let objects = cluster(step);
        let out = sync_objects(&mut p, &objects).await;
        assert!(out.applied && !out.full, "step {step}");
        let script = p.nft().scripts().last().unwrap().clone();
        // Every command is about the changed Service or shared objects
        // (pick chains); nothing names another Service.
        for other in changed.iter().filter(|o| **o != name) {
            for mark in marks(other) {
                assert!(
                    !script.contains(mark),
                    "step {step} ({name}) touches {other} ({mark}):\n{script}"
                );
            }
        }
        assert!(!script.contains("table"), "{script}");
        // The kernel ends where a fresh proxier's full sync puts it.
        let mut fresh = modelled();
        assert!(sync_objects(&mut fresh, &objects).await.full);
        assert_eq!(
            p.nft().model().unwrap(),
            fresh.nft().model().unwrap(),
            "step {step} ({name})"
        );
        // Same versions: nothing to do.
        assert!(!sync_objects(&mut p, &objects).await.applied);
    }
    // The periodic resync recomputes everything and finds nothing to do.
    p.recompute_all();
    assert!(!sync_objects(&mut p, &cluster(5)).await.applied);
}

#[tokio::test]
async fn a_table_deleted_by_hand_is_replaced_after_the_check() {
    let mut p = modelled();
    let objects = cluster(0);
    sync_objects(&mut p, &objects).await;
    let installed = p.nft().model().unwrap();
    assert!(p.verify().await.unwrap());
    assert!(!sync_objects(&mut p, &objects).await.applied);

    // Someone deletes a chain of it.
    p.nft()
        .apply(
            "flush chain ip skiff-proxy filter-output\ndelete chain ip skiff-proxy filter-output\n",
        )
        .await
        .unwrap();
    assert!(!p.verify().await.unwrap());
    assert!(sync_objects(&mut p, &objects).await.full);
    assert_eq!(p.nft().model().unwrap(), installed);

    // Someone deletes it.
    p.nft()
        .apply("delete table ip skiff-proxy\n")
        .await
        .unwrap();
    assert!(!p.verify().await.unwrap());
    let out = sync_objects(&mut p, &objects).await;
    assert!(out.applied && out.full);
    assert_eq!(p.nft().model().unwrap(), installed);
    assert!(p.verify().await.unwrap());
}

#[test]
fn the_table_kept_in_parts_is_the_table_computed_at_once() {
    use crate::model::{self, ServiceKey};
    use crate::rules;
    use crate::table::Table;
    // Two Services sharing an endpoint (one hairpin element, two owners)
    // and a pick chain, plus the rest of the cluster.
    let (mut services, mut slices) = cluster(5);
    services.push(at(
        service(
            "twin",
            json!({"clusterIP": "10.43.0.10", "clusterIPs": ["10.43.0.10"]}),
        ),
        1,
    ));
    slices.push(at(
        slice(
            "twin",
            "a",
            http(8080),
            vec![ready("10.42.0.1", "node-a"), ready("10.42.0.9", "node-a")],
        ),
        1,
    ));
    let s: Vec<&Service> = services.iter().collect();
    let e: Vec<&EndpointSlice> = slices.iter().collect();
    let config = config();
    let ports = model::build(&s, &e, &config.node_name);
    let whole = rules::compute(&config, &ports);
    // Added in reverse order, some twice, one removed and added back.
    let groups: Vec<&[crate::model::ServicePortInfo]> = ports
        .chunk_by(|a, b| (&a.namespace, &a.name) == (&b.namespace, &b.name))
        .collect();
    let mut table = Table::new(rules::base(&config));
    for group in groups.iter().rev().chain(&groups) {
        let key = ServiceKey::new(&group[0].namespace, &group[0].name);
        table.replace(&key, Some(rules::service(&config, group)), None);
    }
    let web = ServiceKey::new("default", "web");
    table.replace(&web, None, None);
    assert_ne!(table.to_ruleset(), whole);
    let web_ports = groups.iter().find(|g| g[0].name == "web").unwrap();
    table.replace(&web, Some(rules::service(&config, web_ports)), None);
    assert_eq!(table.to_ruleset(), whole);
    assert_eq!(table.rule_count(), whole.rule_count());
    // Its full script installs the same thing.
    let (mut a, mut b) = (
        skiff_sys::nft::model::NftModel::new(),
        skiff_sys::nft::model::NftModel::new(),
    );
    a.apply(&table.render_full()).unwrap();
    b.apply(&whole.render_full()).unwrap();
    assert_eq!(a, b);
}

/// `model` with the staged sets' suffix taken off their names (and off the
/// rules naming them), to compare with a table installed in one script.
fn unsuffixed(mut model: skiff_sys::nft::model::NftModel) -> skiff_sys::nft::model::NftModel {
    let strip = |name: &str| name.strip_suffix("-g1").unwrap_or(name).to_string();
    for table in model.tables.values_mut() {
        table.sets = std::mem::take(&mut table.sets)
            .into_iter()
            .map(|(name, set)| (strip(&name), set))
            .collect();
        for chain in table.chains.values_mut() {
            for rule in &mut chain.rules {
                *rule = rule
                    .split(' ')
                    .map(|w| match w.strip_prefix('@') {
                        Some(set) => format!("@{}", strip(set)),
                        None => w.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(" ");
            }
        }
    }
    model
}

#[tokio::test]
async fn a_staged_full_sync_ends_as_a_one_script_one_does() {
    let mut p = modelled().with_staged_elements(0);
    // What an earlier run left: objects the new table does not have, a
    // chain it has (with other rules) and a verdict map into both.
    p.nft()
        .apply(
            "add table ip skiff-proxy\nadd chain ip skiff-proxy old\nadd chain ip skiff-proxy services\n\
             add map ip skiff-proxy old-ips { type ipv4_addr : verdict; }\n\
             add element ip skiff-proxy old-ips { 10.43.9.9 : goto old, 10.43.9.8 : goto services }\n\
             add rule ip skiff-proxy services ip daddr vmap @old-ips\n",
        )
        .await
        .unwrap();
    for step in 0..5 {
        let objects = cluster(step);
        let before = (p.nft().scripts().len(), p.nft().loads().len());
        let out = sync_objects(&mut p, &objects).await;
        assert!(out.applied && out.full, "step {step}");
        // Elements went over the element seam; no script deletes the
        // table or adds those elements.
        let loads = p.nft().loads();
        assert_eq!(loads.len(), before.1 + 1, "step {step}");
        assert!(
            loads[before.1].contains("service-ips"),
            "{}",
            loads[before.1]
        );
        let scripts = &p.nft().scripts()[before.0..];
        assert_eq!(scripts.len(), 2, "prepare and switch: {scripts:#?}");
        for script in scripts {
            assert!(!script.contains("delete table"), "{script}");
            assert!(
                !script.contains("add element ip skiff-proxy service-ips"),
                "{script}"
            );
        }
        // Fresh set names alternate, so the new sets never collide with
        // the ones still serving.
        let model = p.nft().model().unwrap();
        let sets = &model.tables["ip skiff-proxy"].sets;
        let suffixed = sets.contains_key("service-ips-g1");
        assert_eq!(suffixed, step % 2 == 1, "step {step}: {:?}", sets.keys());
        assert_ne!(sets.contains_key("service-ips"), suffixed);
        // The same table as a one-script replacement.
        let mut text = modelled();
        assert!(sync_objects(&mut text, &objects).await.full);
        assert_eq!(
            unsuffixed(model),
            text.nft().model().unwrap(),
            "step {step}"
        );
        // Changes after it are diffs against the suffixed sets.
        let next = cluster(step + 1);
        let out = sync_objects(&mut p, &next).await;
        assert!(out.applied && !out.full, "step {step}");
        let mut text = modelled();
        sync_objects(&mut text, &next).await;
        assert_eq!(
            unsuffixed(p.nft().model().unwrap()),
            text.nft().model().unwrap(),
            "step {step}, then a change"
        );
        // Force the next sync to be full again.
        p.nft().reject(Some("Error: injected"));
        sync_objects_err(&mut p, &cluster(0)).await;
        p.nft().reject(None);
    }
}

async fn sync_objects_err(
    p: &mut Proxier<RecordingNftables, RecordingConntrack>,
    (services, slices): &Objects,
) {
    let s: Vec<&Service> = services.iter().collect();
    let e: Vec<&EndpointSlice> = slices.iter().collect();
    p.sync(&s, &e, None).await.unwrap_err();
}

#[tokio::test]
async fn a_failed_staged_replacement_falls_back_to_one_script() {
    let mut p = modelled().with_staged_elements(0);
    // Both names of a set taken (stages left half done, twice): no fresh
    // names, so the one-script path, which deletes the table first.
    p.nft()
        .apply("add table ip skiff-proxy\nadd map ip skiff-proxy service-ips { type ipv4_addr : verdict; }\nadd map ip skiff-proxy service-ips-g1 { type ipv4_addr : verdict; }\n")
        .await
        .unwrap();
    let objects = cluster(0);
    let out = sync_objects(&mut p, &objects).await;
    assert!(out.applied && out.full);
    assert!(p.nft().loads().is_empty());
    assert!(
        p.nft()
            .scripts()
            .last()
            .unwrap()
            .starts_with("add table ip skiff-proxy\ndelete table ip skiff-proxy\n")
    );
    let mut text = modelled();
    sync_objects(&mut text, &objects).await;
    assert_eq!(p.nft().model().unwrap(), text.nft().model().unwrap());
}
