//! `cargo bench -p skiff-apiserver --bench apiserver`: the API server end to
//! end, through HTTPS, on the embedded store, printed as one table.
//!
//! The server is a separate `skiff server --disable-agent` process (built
//! here with the same profile and target dir; `SKIFF_BIN` names another),
//! so its memory is its own. Clients are raw HTTP/2 over TLS with the admin
//! kubeconfig's certificate, in this process, on the same machine.
//!
//! Workloads:
//! - creates/s and p50/p99 latency of small ConfigMaps and of realistic
//!   ~2 KB Pods, 64 concurrent clients over 8 connections;
//! - listing the 10,000 pods: whole, and paged by 500 (medians);
//! - watch fan-out: 1,000 and 10,000 watchers of one namespace's
//!   ConfigMaps, one ConfigMap updated; delivery latency from the update
//!   being sent to each watcher having it (p50/p99 per update, median over
//!   the updates);
//! - the server's RSS idle after start and with 100,000 objects.
//!
//! `SKIFF_BENCH_QUICK=1` runs everything at a tenth of the size (well
//! under a minute).

#[path = "apiserver_support/client.rs"]
mod client;
#[path = "apiserver_support/fanout.rs"]
mod fanout;
#[path = "apiserver_support/load.rs"]
mod load;
#[path = "apiserver_support/objects.rs"]
mod objects;
#[path = "apiserver_support/process.rs"]
mod process;

use std::time::{Duration, Instant};

use anyhow::Context;
use http::StatusCode;

use client::{Conn, Target};
use fanout::FanoutStats;
use load::CreateStats;
use process::ServerProcess;

/// Concurrent client tasks for creates.
const CLIENTS: usize = 64;
/// HTTP/2 connections they share.
const CONNECTIONS: usize = 8;
/// Page size of the paged list.
const PAGE: usize = 500;

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    configmaps: usize,
    pods: usize,
    list_runs: usize,
    watchers: [usize; 2],
    updates: usize,
    objects: usize,
}

const FULL: Sizes = Sizes {
    configmaps: 20_000,
    pods: 10_000,
    list_runs: 5,
    watchers: [1_000, 10_000],
    updates: 5,
    objects: 100_000,
};

const QUICK: Sizes = Sizes {
    configmaps: 2_000,
    pods: 1_000,
    list_runs: 3,
    watchers: [100, 1_000],
    updates: 3,
    objects: 10_000,
};

#[derive(Debug, Default)]
struct Results {
    rss_idle_kib: u64,
    configmaps: CreateStats,
    pods: CreateStats,
    list_full: Duration,
    list_paged: Duration,
    fanout: Vec<FanoutStats>,
    fill: CreateStats,
    objects: usize,
    rss_loaded_kib: u64,
    rss_peak_kib: u64,
}

fn main() -> anyhow::Result<()> {
    let quick = std::env::var("SKIFF_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let sizes = if quick { QUICK } else { FULL };
    let bin = process::build_skiff()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut server = ServerProcess::start(&bin)?;
    eprintln!(
        "skiff server pid {} on 127.0.0.1:{}",
        server.pid(),
        server.port()
    );
    let results = rt.block_on(run(&mut server, sizes));
    let results = match results {
        Ok(r) => r,
        Err(err) => {
            eprintln!("server log tail:\n{}", server.log_tail());
            return Err(err);
        }
    };
    drop(server);
    print_table(&results, sizes, quick);
    Ok(())
}

async fn run(server: &mut ServerProcess, sizes: Sizes) -> anyhow::Result<Results> {
    let admin = wait_ready(server).await?;
    let target = Target::from_kubeconfig(&server.kubeconfig(), server.port())?;
    let mut r = Results::default();
    // Bootstrap done; let it settle before reading the idle footprint.
    tokio::time::sleep(Duration::from_secs(2)).await;
    r.rss_idle_kib = server.status_kib("VmRSS").unwrap_or(0);
    eprintln!("idle RSS: {} KiB", r.rss_idle_kib);

    for ns in ["bench-cm", "bench-pods", "bench-fill"] {
        let (status, body) = admin
            .post_json("/api/v1/namespaces", objects::namespace(ns))
            .await?;
        anyhow::ensure!(
            status == StatusCode::CREATED,
            "namespace {ns}: {status}: {body:?}"
        );
    }
    let conns = target.connect_many(CONNECTIONS).await?;

    r.configmaps = load::create_many(
        &conns,
        CLIENTS,
        "/api/v1/namespaces/bench-cm/configmaps",
        sizes.configmaps,
        |i| objects::configmap("bench-cm", &format!("cm-{i:06}")),
    )
    .await?;
    report("configmap creates", &r.configmaps);

    let pod_bytes = objects::pod("bench-pods", "pod-000000").len();
    eprintln!("pod JSON: {pod_bytes} bytes");
    r.pods = load::create_many(
        &conns,
        CLIENTS,
        "/api/v1/namespaces/bench-pods/pods",
        sizes.pods,
        |i| objects::pod("bench-pods", &format!("pod-{i:06}")),
    )
    .await?;
    report("pod creates", &r.pods);
    anyhow::ensure!(
        r.pods.created == sizes.pods,
        "only {} of {} pods were created; first failure: {}",
        r.pods.created,
        sizes.pods,
        r.pods.first_failure.as_deref().unwrap_or("-")
    );

    (r.list_full, r.list_paged) = load::list_timings(
        &conns[0],
        "/api/v1/namespaces/bench-pods/pods",
        PAGE,
        sizes.pods,
        sizes.list_runs,
    )
    .await?;
    eprintln!(
        "list {} pods: {:?} full, {:?} paged by {PAGE}",
        sizes.pods, r.list_full, r.list_paged
    );

    for watchers in sizes.watchers {
        let ns = format!("bench-watch-{watchers}");
        let f = fanout::fanout(&target, &admin, &ns, watchers, sizes.updates).await?;
        eprintln!(
            "fan-out to {}/{} watchers (open in {:?}): p50 {:?} p99 {:?}, {} deliveries",
            f.ready, f.watchers, f.open_time, f.p50, f.p99, f.delivered
        );
        r.fanout.push(f);
        server.check_alive()?;
    }

    // Top up to the object count with more small ConfigMaps.
    let made = r.configmaps.created + r.pods.created + 3 + 2 * sizes.watchers.len();
    let fill = sizes.objects.saturating_sub(made);
    r.fill = load::create_many(
        &conns,
        CLIENTS,
        "/api/v1/namespaces/bench-fill/configmaps",
        fill,
        |i| objects::configmap("bench-fill", &format!("fill-{i:06}")),
    )
    .await?;
    report("fill creates", &r.fill);
    r.objects = made + r.fill.created;
    tokio::time::sleep(Duration::from_secs(3)).await;
    r.rss_loaded_kib = server.status_kib("VmRSS").unwrap_or(0);
    r.rss_peak_kib = server.status_kib("VmHWM").unwrap_or(0);
    server.check_alive()?;
    Ok(r)
}

/// Waits for the kubeconfig and a 200 from `/readyz`; returns a connection.
async fn wait_ready(server: &mut ServerProcess) -> anyhow::Result<Conn> {
    let start = Instant::now();
    let mut last_err = String::new();
    while start.elapsed() < Duration::from_secs(60) {
        server.check_alive()?;
        if server.kubeconfig().is_file() {
            let attempt = async {
                let target = Target::from_kubeconfig(&server.kubeconfig(), server.port())?;
                let conn = target.connect().await?;
                conn.get_ok("/readyz").await?;
                anyhow::Ok(conn)
            };
            match attempt.await {
                Ok(conn) => {
                    eprintln!("server ready after {:?}", start.elapsed());
                    return Ok(conn);
                }
                Err(err) => last_err = format!("{err:#}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(anyhow::anyhow!("{last_err}")).context("the server did not become ready in 60 s")
}

fn report(what: &str, s: &CreateStats) {
    eprintln!(
        "{what}: {} in {:?} = {:.0}/s, p50 {:?} p99 {:?}, {} failed{}",
        s.created,
        s.elapsed,
        s.rate(),
        s.p50,
        s.p99,
        s.failed,
        s.first_failure
            .as_deref()
            .map(|f| format!(" (first: {f})"))
            .unwrap_or_default()
    );
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn met(ok: bool) -> &'static str {
    if ok { "yes" } else { "**no**" }
}

fn print_table(r: &Results, sizes: Sizes, quick: bool) {
    const MS_50: Duration = Duration::from_millis(50);
    const MS_200: Duration = Duration::from_millis(200);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!();
    println!(
        "skiff-apiserver benchmark{}: one `skiff server` process on the embedded store, \
         HTTPS/HTTP2 clients in the benchmark process on the same machine ({cores} cores, \
         shared by server and clients); {CLIENTS} clients over {CONNECTIONS} connections.",
        if quick { " (QUICK: reduced sizes)" } else { "" }
    );
    println!("| metric | value | target | met? |");
    println!("|---|---:|---|---|");
    let creates = |name: &str, s: &CreateStats, rate_target: Option<f64>| {
        let rate = s.rate();
        match rate_target {
            Some(t) => println!(
                "| {name} creates/s ({} created, {} failed) | {rate:.0} | >= {t:.0} | {} |",
                s.created,
                s.failed,
                met(rate >= t && s.failed == 0)
            ),
            None => println!(
                "| {name} creates/s ({} created, {} failed) | {rate:.0} | | |",
                s.created, s.failed
            ),
        }
        println!(
            "| {name} create latency p50 / p99 ms | {} / {} | p99 < 50 | {} |",
            ms(s.p50),
            ms(s.p99),
            met(s.p99 < MS_50)
        );
    };
    creates("small ConfigMap", &r.configmaps, Some(10_000.0));
    creates("~2 KB Pod", &r.pods, None);
    println!(
        "| list {} pods, median ms | {} | | |",
        sizes.pods,
        ms(r.list_full)
    );
    println!(
        "| list {} pods paged by {PAGE}, median ms (all pages) | {} | | |",
        sizes.pods,
        ms(r.list_paged)
    );
    for f in &r.fanout {
        let all = f.ready == f.watchers && f.delivered == f.ready * f.updates;
        let target = (f.watchers >= 10_000).then_some(MS_200);
        println!(
            "| watch fan-out to {} watchers: delivery p50 / p99 ms ({} updates, {} of {} delivered) | {} / {} | {} | {} |",
            f.watchers,
            f.updates,
            f.delivered,
            f.watchers * f.updates,
            ms(f.p50),
            ms(f.p99),
            if target.is_some() { "p99 < 200" } else { "" },
            match target {
                Some(t) => met(f.p99 < t && all),
                None if all => "",
                None => "**lost events**",
            }
        );
        println!(
            "| time to open {} watches, s | {:.2} | | |",
            f.watchers,
            f.open_time.as_secs_f64()
        );
    }
    println!(
        "| server RSS idle, MiB | {} | < 60 MB | {} |",
        mib(r.rss_idle_kib),
        met(r.rss_idle_kib > 0 && r.rss_idle_kib * 1024 < 60_000_000)
    );
    println!(
        "| server RSS with {} objects, MiB | {} | | |",
        r.objects,
        mib(r.rss_loaded_kib)
    );
    println!(
        "| server peak RSS over the run (VmHWM), MiB | {} | | |",
        mib(r.rss_peak_kib)
    );
    println!(
        "| small ConfigMap creates/s while filling to {} objects | {:.0} | | |",
        r.objects,
        r.fill.rate()
    );
}
