//! Cluster DNS throughput and latency on loopback: the real UDP/TCP
//! listeners over a cluster of 1,000 / 10,000 Services (each with a
//! 10-endpoint slice, a tenth headless), queried by concurrent UDP clients.
//! Prints a table: queries/s, p50 and p99 per question kind.
//!
//! `cargo bench -p skiff-proxy --bench dns` (env `DNS_BENCH_SECONDS`,
//! default 3, per row).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use skiff_proxy::dns::serve::Listener;
use skiff_proxy::dns::{ClusterData, Resolver, Zone};
use tokio::net::UdpSocket;

const CLIENTS: usize = 8;

/// The i-th question of a kind.
type NameMaker = Box<dyn Fn(usize) -> (String, RecordType)>;

fn cluster(services: usize) -> ClusterData {
    let mut d = ClusterData::default();
    d.replace_namespaces(["default"]);
    let svcs: Vec<Service> = (0..services)
        .map(|i| {
            let spec = if i % 10 == 0 {
                json!({"clusterIP": "None", "ports": [{"name": "http", "port": 80}]})
            } else {
                let ip = format!("10.43.{}.{}", 1 + i / 250, i % 250 + 1);
                json!({"clusterIP": ip, "clusterIPs": [ip], "ports": [{"name": "http", "port": 80}]})
            };
            serde_json::from_value(json!({"metadata": {"name": format!("svc-{i}"), "namespace": "default"}, "spec": spec}))
                .unwrap()
        })
        .collect();
    d.replace_services(&svcs);
    let slices: Vec<EndpointSlice> = (0..services)
        .map(|i| {
            let eps: Vec<_> = (0..10)
                .map(|j| {
                    let n = i * 10 + j;
                    json!({"addresses": [format!("10.42.{}.{}", n / 250 % 256, n % 250 + 1)], "conditions": {"ready": true}})
                })
                .collect();
            serde_json::from_value(json!({
                "metadata": {"name": format!("svc-{i}-x"), "namespace": "default",
                             "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
                "addressType": "IPv4", "endpoints": eps,
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}))
            .unwrap()
        })
        .collect();
    d.replace_slices(&slices);
    d
}

fn query(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m.to_vec().unwrap()
}

/// Runs `CLIENTS` closed-loop UDP clients for `secs`; (queries/s, p50, p99).
async fn load(
    server: SocketAddr,
    names: Arc<Vec<(String, RecordType)>>,
    secs: f64,
) -> (f64, Duration, Duration) {
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let names = names.clone();
        tasks.push(tokio::spawn(async move {
            let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            sock.connect(server).await.unwrap();
            let mut buf = vec![0u8; 4096];
            let mut lat = Vec::new();
            let mut i = c;
            while Instant::now() < until {
                let (name, qtype) = &names[i % names.len()];
                i += CLIENTS;
                let q = query(i as u16, name, *qtype);
                let t = Instant::now();
                sock.send(&q).await.unwrap();
                match tokio::time::timeout(Duration::from_secs(1), sock.recv(&mut buf)).await {
                    Ok(Ok(_)) => lat.push(t.elapsed()),
                    _ => continue,
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    (all.len() as f64 / secs, pct(0.50), pct(0.99))
}

fn main() {
    let secs: f64 = std::env::var("DNS_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let rt = tokio::runtime::Runtime::new().unwrap();
    println!("| services | question | queries/s | p50 | p99 |");
    println!("|---:|---|---:|---:|---:|");
    for services in [1_000, 10_000] {
        rt.block_on(async {
            let data = Arc::new(RwLock::new(cluster(services)));
            let zone = Zone::new("cluster.local", None).unwrap();
            let resolver = Arc::new(Resolver::new(
                data,
                Arc::new(AtomicBool::new(true)),
                zone,
                Vec::new(),
            ));
            let listener = Listener::bind("127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
            let addr = listener.local_addr();
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let server = tokio::spawn(listener.serve(resolver, stop_rx));
            let kinds: [(&str, NameMaker); 4] = [
                (
                    "A ClusterIP",
                    Box::new(|i| {
                        (
                            format!("svc-{}.default.svc.cluster.local.", i * 10 + 1),
                            RecordType::A,
                        )
                    }),
                ),
                (
                    "A headless (10)",
                    Box::new(|i| {
                        (
                            format!("svc-{}.default.svc.cluster.local.", i * 10),
                            RecordType::A,
                        )
                    }),
                ),
                (
                    "NXDOMAIN",
                    Box::new(|i| {
                        (
                            format!("nope-{i}.default.svc.cluster.local."),
                            RecordType::A,
                        )
                    }),
                ),
                (
                    "PTR ClusterIP",
                    Box::new(|i| {
                        let k = i * 10 + 1;
                        (
                            format!("{}.{}.43.10.in-addr.arpa.", k % 250 + 1, 1 + k / 250),
                            RecordType::PTR,
                        )
                    }),
                ),
            ];
            for (label, make) in kinds {
                let names: Vec<(String, RecordType)> = (0..services / 10).map(&make).collect();
                let (qps, p50, p99) = load(addr, Arc::new(names), secs).await;
                println!("| {services} | {label} | {qps:.0} | {p50:.1?} | {p99:.1?} |");
            }
            stop_tx.send_replace(true);
            let _ = server.await;
        });
    }
}
