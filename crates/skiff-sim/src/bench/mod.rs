//! `skiff sim bench-scheduler`: scheduler_perf-style workloads measured end
//! to end — pod created → binding persisted, seen through a watch — on
//! hollow nodes, against a `skiff server --disable-agent` child process
//! (a fresh one per workload, so each starts clean and its RSS is its own).
//!
//! [`pods`] is `skiff sim bench-pods`: pod startup on one real node.

pub mod agent;
pub mod controllers;
pub mod image;
pub mod placement;
pub mod pods;
pub mod requests;
mod server;
pub mod workloads;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::Resource;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

pub use server::{ServerProcess, proc_status_kib};
use skiff_client::Lean;
pub use skiff_client::kubeconfig::client_from;
use workloads::{INIT_NAMESPACE, MEASURED_NAMESPACE, Workload};

use crate::hollow::{HollowNodeConfig, HollowNodes, PodHead};

/// How to run the benchmark.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The `skiff` binary to start as the server.
    pub skiff_bin: PathBuf,
    /// SchedulingBasic's node count (the others scale from it).
    pub nodes: usize,
    /// SchedulingBasic's measured pods.
    pub pods: usize,
    /// Only these workloads (all when empty).
    pub only: Vec<String>,
    /// Pod creations in flight at once.
    pub clients: usize,
    /// Give up on a workload when no pod gets bound for this long.
    pub stall_timeout: Duration,
    /// Hollow nodes act as kubelets: Lease renewals and pod status (off:
    /// bare nodes, as upstream's scheduler_perf registers them).
    pub kubelets: bool,
}

/// One line of the result table.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// Workload name.
    pub workload: String,
    /// Hollow nodes.
    pub nodes: usize,
    /// Measured pods.
    pub pods: usize,
    /// Of them, bound.
    pub scheduled: usize,
    /// Bound pods per second, first creation to last binding.
    pub pods_per_sec: f64,
    /// Median create→bound latency.
    pub p50: Option<Duration>,
    /// 99th percentile create→bound latency.
    pub p99: Option<Duration>,
    /// Server RSS after the workload, KiB.
    pub server_rss_kib: Option<u64>,
    /// The server's CPU time (user + system, all its threads) per bound
    /// pod over the measured phase.
    pub server_cpu_per_pod: Option<Duration>,
    /// This driver's CPU time per bound pod over the measured phase: the
    /// creations, the hollow nodes and the watch that times the bindings.
    pub driver_cpu_per_pod: Option<Duration>,
    /// Init pods gone after the workload (preemption victims), for
    /// workloads whose measured pods outrank the init pods.
    pub evicted: Option<usize>,
    /// Where the pods landed, read back after the workload.
    pub placement: Option<placement::Placement>,
    /// Why the row is incomplete, if it is.
    pub note: String,
}

/// Runs the selected workloads one after the other.
pub async fn run(cfg: &BenchConfig) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for w in workloads::all(cfg.nodes, cfg.pods) {
        if !cfg.only.is_empty() && !cfg.only.iter().any(|o| o.eq_ignore_ascii_case(w.name)) {
            continue;
        }
        eprintln!(
            "{}: {} nodes, {} init pods, {} measured pods",
            w.name, w.nodes, w.init_pods, w.pods
        );
        let row = run_workload(cfg, &w)
            .await
            .with_context(|| format!("workload {}", w.name))?;
        if !row.note.is_empty() {
            eprintln!("{}: {}", w.name, row.note);
        }
        rows.push(row);
    }
    Ok(rows)
}

/// When each pod of a namespace was first seen bound.
type Bound = Arc<Mutex<HashMap<String, Instant>>>;

fn watch_bindings(client: kube::Client, namespace: &str) -> (Bound, tokio::task::JoinHandle<()>) {
    let bound: Bound = Arc::default();
    // Metadata and node only: the driver shares the cores it measures.
    let api: Api<Lean<PodHead>> = Api::namespaced(client, namespace);
    let b = bound.clone();
    let task = tokio::spawn(async move {
        // Only bound pods: the server leaves out the creations, which the
        // driver would otherwise decode.
        let config = watcher::Config::default().fields("spec.nodeName!=");
        let mut events = watcher(api, config)
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(ev) = events.next().await {
            let Ok(Lean(pod)) = ev else { continue };
            let now = Instant::now();
            if let (Some(name), Ok(mut map)) = (pod.metadata.name, b.lock()) {
                map.entry(name).or_insert(now);
            }
        }
    });
    (bound, task)
}

fn bound_count(b: &Bound) -> usize {
    b.lock().map(|m| m.len()).unwrap_or(0)
}

/// Waits for `want` bound pods; false when progress stalled for `stall`.
async fn wait_bound(b: &Bound, want: usize, stall: Duration) -> bool {
    let (mut last, mut since) = (bound_count(b), Instant::now());
    loop {
        let n = bound_count(b);
        if n >= want {
            return true;
        }
        if n != last {
            (last, since) = (n, Instant::now());
        } else if since.elapsed() >= stall {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates the pod `manifest` in `namespace`; returns its name and when
/// the request was sent (the start of its startup latency). The template's
/// JSON is sent as it is and the answer only checked, not decoded: the
/// driver shares the machine's cores with the server it measures.
pub(crate) async fn create_timed(
    client: kube::Client,
    namespace: &'static str,
    manifest: serde_json::Value,
) -> anyhow::Result<(String, Instant)> {
    let name = manifest
        .pointer("/metadata/name")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let body = serde_json::to_vec(&manifest)?;
    let request = kube::core::Request::new(Pod::url_path(&(), Some(namespace)))
        .create(&PostParams::default(), body)?;
    let sent = Instant::now();
    client
        .request_text(request)
        .await
        .with_context(|| format!("creating pod {name}"))?;
    Ok((name, sent))
}

/// Creates `count` pods from `template` in `namespace`, `clients` at a
/// time; returns when each creation was sent.
async fn create_pods(
    clients: &[kube::Client],
    namespace: &'static str,
    count: usize,
    template: fn(usize) -> serde_json::Value,
    concurrency: usize,
) -> anyhow::Result<HashMap<String, Instant>> {
    let results: Vec<anyhow::Result<(String, Instant)>> = futures::stream::iter(0..count)
        .map(|i| create_timed(clients[i % clients.len()].clone(), namespace, template(i)))
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

async fn prepare(client: &kube::Client, w: &Workload) -> anyhow::Result<()> {
    let ns: Api<Namespace> = Api::all(client.clone());
    for name in [INIT_NAMESPACE, MEASURED_NAMESPACE] {
        let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
        ns.create(&PostParams::default(), &obj).await?;
    }
    let pcs: Api<PriorityClass> = Api::all(client.clone());
    for (name, value) in w.priority_classes {
        let obj: PriorityClass =
            serde_json::from_value(json!({"metadata": {"name": name}, "value": value}))?;
        pcs.create(&PostParams::default(), &obj).await?;
    }
    Ok(())
}

async fn run_workload(cfg: &BenchConfig, w: &Workload) -> anyhow::Result<Row> {
    let mut server = ServerProcess::start(&cfg.skiff_bin)?;
    let client = server.wait_ready(Duration::from_secs(60)).await?;
    // Several clients, each with its own connections.
    let mut clients = vec![client];
    for _ in 1..4 {
        clients.push(client_from(&server.kubeconfig()).await?);
    }
    let mut row = run_workload_on(
        &clients,
        w,
        cfg.clients,
        cfg.stall_timeout,
        cfg.kubelets,
        Some(server.pid()),
    )
    .await?;
    row.server_rss_kib = server.status_kib("VmRSS");
    Ok(row)
}

/// Runs workload `w` on the cluster behind `clients` (the first also
/// serves the hollow nodes and the watches): hollow nodes, namespaces and
/// PriorityClasses, init pods, then the measured pods. Gives up, with a
/// note in the row, when no pod gets bound for `stall`. With `kubelets`
/// the hollow nodes renew their Leases and report bound pods Running.
/// With `server_pid` (a server on this host) the row also tells the
/// server's CPU time per pod; the driver's is always told.
pub async fn run_workload_on(
    clients: &[kube::Client],
    w: &Workload,
    concurrency: usize,
    stall: Duration,
    kubelets: bool,
    server_pid: Option<u32>,
) -> anyhow::Result<Row> {
    let client = clients.first().context("no client")?.clone();
    let mut row = Row {
        workload: w.name.to_owned(),
        nodes: w.nodes,
        pods: w.pods,
        ..Row::default()
    };
    let hollow = HollowNodes::start(
        client.clone(),
        HollowNodeConfig {
            count: w.nodes,
            // scheduler_perf's node-default.yaml: 4 CPU, 32Gi, 110 pods.
            memory: "32Gi".to_owned(),
            kubelets,
            ..HollowNodeConfig::default()
        },
    )
    .await?;
    prepare(&client, w).await?;
    let no_scheduler = |what: &str, n: usize, of: usize| {
        format!(
            "timed out: {n}/{of} {what} pods bound, none for {stall:?} \
             (is a scheduler running in the server?)"
        )
    };

    if w.init_pods > 0 {
        let (bound, task) = watch_bindings(client.clone(), INIT_NAMESPACE);
        create_pods(
            clients,
            INIT_NAMESPACE,
            w.init_pods,
            w.init_template,
            concurrency,
        )
        .await?;
        let done = wait_bound(&bound, w.init_pods, stall).await;
        task.abort();
        if !done {
            row.note = no_scheduler("init", bound_count(&bound), w.init_pods);
            hollow.shutdown().await;
            return Ok(row);
        }
    }

    let (bound, task) = watch_bindings(client.clone(), MEASURED_NAMESPACE);
    // Let the watch's initial list finish before the clock starts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cpu = CpuClock::start(server_pid);
    let start = Instant::now();
    let created = create_pods(clients, MEASURED_NAMESPACE, w.pods, w.template, concurrency).await?;
    let done = wait_bound(&bound, w.pods, stall).await;
    task.abort();
    let (server_cpu, driver_cpu) = cpu.elapsed();
    let bound = bound.lock().map(|m| m.clone()).unwrap_or_default();
    let mut latencies: Vec<Duration> = bound
        .iter()
        .filter_map(|(name, at)| {
            created
                .get(name)
                .map(|sent| at.saturating_duration_since(*sent))
        })
        .collect();
    latencies.sort();
    row.scheduled = latencies.len();
    if let Some(last) = bound.values().max() {
        let secs = last.saturating_duration_since(start).as_secs_f64();
        if secs > 0.0 {
            row.pods_per_sec = row.scheduled as f64 / secs;
        }
    }
    if let Ok(n) = u32::try_from(row.scheduled)
        && n > 0
    {
        row.server_cpu_per_pod = server_cpu.map(|d| d / n);
        row.driver_cpu_per_pod = driver_cpu.map(|d| d / n);
    }
    row.p50 = percentile(&latencies, 50);
    row.p99 = percentile(&latencies, 99);
    if !done {
        row.note = no_scheduler("measured", row.scheduled, w.pods);
    }
    if !w.priority_classes.is_empty() {
        // Victims are deleted by the hollow nodes once preemption asks.
        let init: Api<Pod> = Api::namespaced(client.clone(), INIT_NAMESPACE);
        let left = init.list(&Default::default()).await?.items.len();
        row.evicted = Some(w.init_pods.saturating_sub(left));
    }
    match placement::observe(&client, w.rule).await {
        Ok(p) => row.placement = Some(p),
        Err(e) => {
            if !row.note.is_empty() {
                row.note.push_str("; ");
            }
            row.note.push_str(&format!("placement not read: {e:#}"));
        }
    }
    hollow.shutdown().await;
    Ok(row)
}

/// CPU time spent by the server and by this driver since a phase began.
struct CpuClock {
    server: Option<(u32, Duration)>,
    driver: Option<Duration>,
}

impl CpuClock {
    fn start(server_pid: Option<u32>) -> CpuClock {
        CpuClock {
            server: server_pid.and_then(|pid| {
                let at = skiff_sys::process::process_cpu_time(pid).ok()?;
                Some((pid, at))
            }),
            driver: skiff_sys::process::process_cpu_time(std::process::id()).ok(),
        }
    }

    /// (server, driver) CPU time since [`CpuClock::start`], where known.
    fn elapsed(&self) -> (Option<Duration>, Option<Duration>) {
        let since = |pid: u32, at: Duration| {
            let now = skiff_sys::process::process_cpu_time(pid).ok()?;
            Some(now.saturating_sub(at))
        };
        (
            self.server.and_then(|(pid, at)| since(pid, at)),
            self.driver.and_then(|at| since(std::process::id(), at)),
        )
    }
}

/// The `p`th percentile (nearest rank) of sorted values.
pub fn percentile(sorted: &[Duration], p: usize) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// The result table.
pub fn format_table(rows: &[Row]) -> String {
    let ms = |d: Option<Duration>| {
        d.map_or("-".to_owned(), |d| {
            format!("{:.1} ms", d.as_secs_f64() * 1e3)
        })
    };
    let us = |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{} µs", d.as_micros()));
    let mut out = format!(
        "{:<18} {:>6} {:>7} {:>9} {:>9} {:>11} {:>11} {:>11} {:>12} {:>12} {:>8} {:>10} {:>9}  {}\n",
        "workload",
        "nodes",
        "pods",
        "bound",
        "pods/s",
        "p50",
        "p99",
        "server RSS",
        "server CPU",
        "driver CPU",
        "evicted",
        "pods/node",
        "zone skew",
        "placement"
    );
    for r in rows {
        let p = r.placement.as_ref();
        out.push_str(&format!(
            "{:<18} {:>6} {:>7} {:>9} {:>9.0} {:>11} {:>11} {:>11} {:>12} {:>12} {:>8} {:>10} {:>9}  {}\n",
            r.workload,
            r.nodes,
            r.pods,
            r.scheduled,
            r.pods_per_sec,
            ms(r.p50),
            ms(r.p99),
            r.server_rss_kib
                .map_or("-".to_owned(), |k| format!("{} MiB", k / 1024)),
            us(r.server_cpu_per_pod),
            us(r.driver_cpu_per_pod),
            r.evicted.map_or("-".to_owned(), |n| n.to_string()),
            p.map_or("-".to_owned(), |p| format!("{}-{}", p.min_per_node, p.max_per_node)),
            p.map_or("-".to_owned(), |p| p.zone_skew.to_string()),
            p.map_or("-".to_owned(), placement::Placement::verdict),
        ));
        if !r.note.is_empty() {
            out.push_str(&format!("  {}\n", r.note));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&v, 99), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&v[..1], 99), Some(Duration::from_millis(1)));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn table_shows_timeouts() {
        let rows = [Row {
            workload: "SchedulingBasic".into(),
            nodes: 10,
            pods: 20,
            note: "timed out".into(),
            ..Row::default()
        }];
        let t = format_table(&rows);
        assert!(
            t.contains("SchedulingBasic") && t.contains("timed out"),
            "{t}"
        );
        let rows = [Row {
            workload: "Preemption".into(),
            evicted: Some(7),
            server_cpu_per_pod: Some(Duration::from_micros(412)),
            ..Row::default()
        }];
        let t = format_table(&rows);
        assert!(t.lines().next().unwrap().contains("server CPU"), "{t}");
        let line = t.lines().nth(1).unwrap();
        assert!(
            line.starts_with("Preemption") && line.contains(" 7 ") && line.contains(" 412 µs "),
            "{t}"
        );
        assert!(line.ends_with("  -"), "no placement read: {t}");
        let placed = |p| {
            let rows = [Row {
                workload: "PodAntiAffinity".into(),
                placement: Some(p),
                ..Row::default()
            }];
            format_table(&rows).lines().nth(1).unwrap().to_owned()
        };
        let good = placement::Placement {
            min_per_node: 0,
            max_per_node: 1,
            zone_skew: 2,
            ..Default::default()
        };
        let line = placed(good.clone());
        assert!(line.ends_with("        0-1         2  ok"), "{line}");
        let line = placed(placement::Placement {
            overcommitted_nodes: 3,
            violations: 4,
            ..good
        });
        assert!(
            line.ends_with("  3 nodes overcommitted, 4 pods against the rule"),
            "{line}"
        );
    }
}
