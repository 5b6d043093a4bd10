//! Proxy sync benchmark (`cargo bench -p skiff-proxy`; root, nft): rule
//! computation and `nft -f` apply time for 1,000 and 10,000 ClusterIP
//! Services with 10 hollow endpoints each, in a network namespace this
//! benchmark creates; then the time for one endpoint change to be live
//! (an incremental sync, 100 times by default for a p99). Prints a table;
//! asserts nothing about speed.
//! The objects carry resourceVersions as an API server's do (the one
//! changed slice gets a new one), which is what the proxier goes by.
//!
//! Each size runs twice: the full sync as one `nft -f` script ("script"),
//! and staged with the elements sent over netlink ("netlink", what the
//! proxier does from `DEFAULT_STAGED_ELEMENTS` elements on).
//!
//! The machine may be shared: besides wall time the table shows CPU time,
//! which other load barely moves: this process's (ours: computing and
//! rendering, and for "netlink" the kernel's work on the element batch,
//! which runs in our send) and `nft`'s (user + system of our finished
//! child processes, which includes the kernel's work on their
//! transactions).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use skiff_proxy::{Cidr, Proxier, ProxyConfig};
use skiff_sys::conntrack::fake::RecordingConntrack;
use skiff_sys::nft::NftCli;

const ENDPOINTS: u32 = 10;

fn objects(n: u32, generation: u32) -> (Vec<Service>, Vec<EndpointSlice>) {
    (0..n).map(|i| (service(i), slice(i, generation))).unzip()
}

fn service(i: u32) -> Service {
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + i + 1);
    serde_json::from_value(
        json!({"metadata": {"name": format!("svc-{i}"), "namespace": "bench", "resourceVersion": "1"},
        "spec": {"clusterIP": ip.to_string(), "clusterIPs": [ip.to_string()],
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}),
    )
    .unwrap()
}

/// Service `i`'s slice; Service 0 moves one endpoint per `generation` (to
/// addresses past every other Service's).
fn slice(i: u32, generation: u32) -> EndpointSlice {
    let endpoints: Vec<serde_json::Value> = (0..ENDPOINTS)
        .map(|j| {
            let ep = if i == 0 && j == 0 && generation > 0 {
                Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 100, 0, 0)) + generation)
            } else {
                Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 64, 0, 0)) + i * 16 + j)
            };
            json!({"addresses": [ep.to_string()], "conditions": {"ready": true},
                   "nodeName": format!("hollow-{}", j % 5)})
        })
        .collect();
    serde_json::from_value(
        json!({"metadata": {"name": format!("svc-{i}-x"), "namespace": "bench",
            "resourceVersion": if i == 0 { (generation + 1).to_string() } else { "1".to_string() },
            "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints}),
    )
    .unwrap()
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

/// User + system CPU time from /proc/self/stat (in USER_HZ = 100 ticks):
/// this process's own (`utime` + `stime`, fields 14 and 15 of the whole
/// line) or its waited-for children's (`cutime` + `cstime`, 16 and 17).
fn cpu(children: bool) -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the parenthesised command name.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<u64> = rest
        .split(' ')
        .skip(if children { 13 } else { 11 })
        .take(2)
        .map(|f| f.parse().unwrap())
        .collect();
    Duration::from_millis((fields[0] + fields[1]) * 10)
}

fn children_cpu() -> Duration {
    cpu(true)
}

fn median(v: Vec<Duration>) -> Duration {
    percentile(v, 50)
}

/// The `p`th percentile (nearest rank).
fn percentile(mut v: Vec<Duration>, p: usize) -> Duration {
    v.sort();
    v[(p * v.len()).div_ceil(100).max(1) - 1]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let Some(pair) = support::Pair::create("bn") else {
        return;
    };
    let config = ProxyConfig {
        table: "skiff-proxy-bench".into(),
        node_name: "hollow-0".into(),
        nodeport_addresses: vec![pair.client_ip],
        cluster_cidr: Some(Cidr::new(Ipv4Addr::new(10, 64, 0, 0), 10).unwrap()),
    };
    println!(
        "| services | endpoints | full sync via | rules | chains | script KiB | compute ms | full sync ms | full sync CPU ms, ours / nft | no-op sync ms | endpoint change live ms, median / p99 / max | change CPU ms, ours / nft, median | full sync over the installed table ms |"
    );
    println!("|---:|---:|:--|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    // SKIFF_BENCH_PROXY_SERVICES=1000,10000 (the default) picks the sizes.
    let sizes: Vec<u32> = std::env::var("SKIFF_BENCH_PROXY_SERVICES")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    // SKIFF_BENCH_PROXY_CHANGES=N endpoint changes per size (default 100).
    let changes: u32 = std::env::var("SKIFF_BENCH_PROXY_CHANGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(100);
    // SKIFF_BENCH_PROXY_VIA=script or netlink runs only that path.
    let via = std::env::var("SKIFF_BENCH_PROXY_VIA").unwrap_or_default();
    let paths: Vec<bool> = [false, true]
        .into_iter()
        .filter(|staged| via.is_empty() || (via == "netlink") == *staged)
        .collect();
    for (n, staged) in sizes
        .into_iter()
        .flat_map(|n| paths.iter().map(move |s| (n, *s)))
    {
        let (services, slices) = objects(n, 0);
        let svc: Vec<&Service> = services.iter().collect();
        let eps: Vec<&EndpointSlice> = slices.iter().collect();
        // The proxier (and, later, the restarted agent's) on this path.
        let new_proxier = || {
            Proxier::new(
                config.clone(),
                NftCli::new().in_netns(&pair.client),
                RecordingConntrack::new(),
            )
            .unwrap()
            .with_staged_elements(if staged { 0 } else { usize::MAX })
        };
        let mut proxier = new_proxier();

        let started = Instant::now();
        let (ruleset, _) = proxier.compute(&svc, &eps, None);
        let script = ruleset.render_full();
        let compute = started.elapsed();
        // SKIFF_BENCH_PROXY_DUMP=DIR writes each full script there, to study
        // with `nft -c -f` or perf.
        if let Ok(dir) = std::env::var("SKIFF_BENCH_PROXY_DUMP") {
            std::fs::write(format!("{dir}/proxy-{n}.nft"), &script).unwrap();
        }

        let started = Instant::now();
        let (nft_before, ours_before) = (children_cpu(), cpu(false));
        let out = proxier.sync(&svc, &eps, None).await.unwrap();
        let full = started.elapsed();
        let full_cpu = children_cpu() - nft_before;
        let full_ours = cpu(false) - ours_before;
        assert!(out.full);

        let started = Instant::now();
        let out = proxier.sync(&svc, &eps, None).await.unwrap();
        let noop = started.elapsed();
        assert!(!out.applied);

        // One endpoint of one Service replaced, `changes` times.
        let mut change = Vec::new();
        let mut change_cpu = Vec::new();
        let mut change_ours = Vec::new();
        let mut slices2 = slices.clone();
        for generation in 1..=changes {
            slices2[0] = slice(0, generation);
            let eps2: Vec<&EndpointSlice> = slices2.iter().collect();
            let started = Instant::now();
            let (nft_before, ours_before) = (children_cpu(), cpu(false));
            let out = proxier.sync(&svc, &eps2, None).await.unwrap();
            change.push(started.elapsed());
            change_cpu.push(children_cpu() - nft_before);
            change_ours.push(cpu(false) - ours_before);
            assert!(out.applied && !out.full);
        }
        // A restarted agent: a new proxier replaces the table in place.
        let mut restarted = new_proxier();
        let started = Instant::now();
        let out = restarted.sync(&svc, &eps, None).await.unwrap();
        let replace = started.elapsed();
        assert!(out.full);
        println!(
            "| {n} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} / {} / {} (n={changes}) | {} / {} | {} |",
            n * ENDPOINTS,
            if staged { "netlink" } else { "script" },
            ruleset.rule_count(),
            ruleset.chains.len(),
            script.len() / 1024,
            ms(compute),
            ms(full),
            ms(full_ours),
            ms(full_cpu),
            ms(noop),
            ms(median(change.clone())),
            ms(percentile(change.clone(), 99)),
            ms(change.iter().copied().max().unwrap_or_default()),
            ms(median(change_ours)),
            ms(median(change_cpu)),
            ms(replace),
        );
        skiff_proxy::proxier::cleanup(&NftCli::new().in_netns(&pair.client), &config.table)
            .await
            .unwrap();
    }
}
