//! `skiff sim bench-pods`: pod startup on one real node (issue 5). A
//! `skiff server` child with its agent runs N `sleep` pods from a busybox
//! image already present; measured: pod created → phase Running seen by a
//! watch, the runtime's own per-container cost over CRI, and memory.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use skiff_kubelet::cri::Cri;

use super::agent::{AgentServer, NODE};
use super::image::{BUSYBOX, IMAGE};
use super::percentile;

/// The namespace the bench's pods live in.
pub const NAMESPACE: &str = "bench-pods";

/// How to run the pod benchmark.
#[derive(Debug, Clone)]
pub struct PodBenchConfig {
    /// The `skiff` binary to start as the server.
    pub skiff_bin: PathBuf,
    /// Pods to run on the node.
    pub pods: usize,
    /// Pod creations in flight at once (the burst phase).
    pub clients: usize,
    /// Pods per second in the paced phase (upstream's SLO shape: pods
    /// created at a steady rate); `None` skips it.
    pub paced_rate: Option<f64>,
    /// Containers created and removed directly over CRI.
    pub cri_containers: usize,
    /// Give up waiting for Running (or for deletion) after this long.
    pub timeout: Duration,
}

/// What the benchmark measured.
#[derive(Debug, Clone, Default)]
pub struct PodBenchReport {
    /// Pods created.
    pub pods: usize,
    /// Of them, seen Running.
    pub running: usize,
    /// Created → Running latencies, sorted.
    pub startup: Vec<Duration>,
    /// Running pods per second, first creation to last Running.
    pub pods_per_sec: f64,
    /// The host's busy CPU time (every process and the kernel), first
    /// creation to last Running, per pod: a figure that depends less on
    /// how fast the shared machine happens to be than the latencies do.
    pub burst_cpu_per_pod: Option<Duration>,
    /// API requests served during the burst, by verb and resource.
    pub burst_requests: Vec<(String, u64)>,
    /// The paced phase's rate, if it ran.
    pub paced_rate: Option<f64>,
    /// Its created → Running latencies, sorted.
    pub paced_startup: Vec<Duration>,
    /// Delete of all pods → none left.
    pub teardown: Option<Duration>,
    /// CRI CreateContainer+StartContainer latencies, sorted.
    pub create_start: Vec<Duration>,
    /// CRI StopContainer+RemoveContainer latencies, sorted.
    pub stop_remove: Vec<Duration>,
    /// Server RSS with `--disable-agent`, idle, KiB.
    pub server_only_rss_kib: Option<u64>,
    /// Server+agent RSS at node Ready, no pods, KiB.
    pub idle_rss_kib: Option<u64>,
    /// Server+agent RSS with every pod Running, KiB.
    pub loaded_rss_kib: Option<u64>,
    /// Problems met on the way (timeouts), for the table.
    pub notes: Vec<String>,
}

/// Why the benchmark cannot run here, if it cannot: it needs root (the
/// runtime makes namespaces, mounts and a bridge) and busybox-static.
pub fn preflight() -> Result<(), String> {
    if !super::agent::is_root() {
        return Err("skiff sim bench-pods must run as root (it runs real containers)".into());
    }
    if !std::path::Path::new(BUSYBOX).is_file() {
        return Err(format!(
            "skiff sim bench-pods needs busybox-static at {BUSYBOX} for its test image"
        ));
    }
    Ok(())
}

/// Runs the whole benchmark; servers are cleaned up on every path.
pub async fn run(cfg: &PodBenchConfig) -> anyhow::Result<PodBenchReport> {
    let mut report = PodBenchReport {
        pods: cfg.pods,
        ..PodBenchReport::default()
    };

    eprintln!("bench-pods: server without agent (baseline RSS)");
    {
        let mut server = AgentServer::start(&cfg.skiff_bin, false)?;
        server.wait_ready(Duration::from_secs(60)).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        report.server_only_rss_kib = server.rss_kib();
    }

    eprintln!("bench-pods: server with agent, waiting for node {NODE} Ready");
    let mut server = AgentServer::start(&cfg.skiff_bin, true)?;
    let client = server.wait_ready(Duration::from_secs(120)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    report.idle_rss_kib = server.rss_kib();
    prepare_namespace(&client).await?;

    eprintln!(
        "bench-pods: creating {} pods, {} at a time",
        cfg.pods, cfg.clients
    );
    let burst = startup(&client, cfg, "pod", Pace::Burst(cfg.clients)).await?;
    report.running = burst.latencies.len();
    report.pods_per_sec = burst.pods_per_sec;
    report.burst_cpu_per_pod = burst.cpu_per_pod;
    report.burst_requests = burst.requests;
    report.startup = burst.latencies;
    report.notes.extend(burst.note);
    tokio::time::sleep(Duration::from_secs(2)).await;
    report.loaded_rss_kib = server.rss_kib();

    eprintln!("bench-pods: deleting the pods");
    report.teardown = teardown(&client, cfg.timeout).await?;
    if report.teardown.is_none() {
        report
            .notes
            .push(format!("pods not all gone {:?} after delete", cfg.timeout));
    }

    if let Some(rate) = cfg.paced_rate.filter(|r| *r > 0.0) {
        eprintln!("bench-pods: creating {} pods at {rate} pods/s", cfg.pods);
        let every = Duration::from_secs_f64(1.0 / rate);
        let paced = startup(&client, cfg, "paced", Pace::Every(every)).await?;
        report.paced_rate = Some(rate);
        report.paced_startup = paced.latencies;
        report.notes.extend(paced.note);
        if teardown(&client, cfg.timeout).await?.is_none() {
            report.notes.push(format!(
                "paced pods not all gone {:?} after delete",
                cfg.timeout
            ));
        }
    }

    eprintln!(
        "bench-pods: {} containers over CRI at {}",
        cfg.cri_containers,
        server.cri_socket().display()
    );
    let logs = server.dir().join("logs/cri-bench");
    runtime_cost(&server, &logs, cfg.cri_containers, &mut report)
        .await
        .with_context(|| format!("CRI measurements; server log:\n{}", server.log_tail()))?;
    Ok(report)
}

async fn prepare_namespace(client: &kube::Client) -> anyhow::Result<()> {
    let ns: Api<Namespace> = Api::all(client.clone());
    let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?;
    ns.create(&PostParams::default(), &obj)
        .await
        .context("creating the namespace")?;
    Ok(())
}

/// The measured pod: one `sleep` container, image present, quick to stop.
pub fn pod_manifest(prefix: &str, i: usize) -> serde_json::Value {
    json!({
        "metadata": {"name": format!("{prefix}-{i:04}"), "namespace": NAMESPACE},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "sleep",
                "image": IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "3600"],
            }],
        },
    })
}

type Seen = Arc<Mutex<HashMap<String, Instant>>>;

fn running_count(seen: &Seen) -> usize {
    seen.lock().map(|m| m.len()).unwrap_or(0)
}

/// How the pods of one phase are created.
#[derive(Debug, Clone, Copy)]
enum Pace {
    /// As fast as possible, this many creations in flight.
    Burst(usize),
    /// One creation started every interval, whatever the earlier ones do.
    Every(Duration),
}

/// What one phase measured.
struct Phase {
    /// Created → Running, sorted.
    latencies: Vec<Duration>,
    /// Running pods per second, first creation to last Running.
    pods_per_sec: f64,
    /// Host busy CPU time per pod, first creation to last Running.
    cpu_per_pod: Option<Duration>,
    /// API requests served from first creation to last Running, largest
    /// first (empty when the counters could not be read).
    requests: Vec<(String, u64)>,
    /// Why it fell short, if it did.
    note: Option<String>,
}

async fn startup(
    client: &kube::Client,
    cfg: &PodBenchConfig,
    prefix: &'static str,
    pace: Pace,
) -> anyhow::Result<Phase> {
    let api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let watch_api = api.clone();
    // The host's busy CPU when the last pod is seen Running.
    let cpu_at_end: Arc<Mutex<Option<Duration>>> = Arc::default();
    let cpu_end = cpu_at_end.clone();
    let pods = cfg.pods;
    let watch = tokio::spawn(async move {
        let mut events = watcher(watch_api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(ev) = events.next().await {
            let Ok(pod) = ev else { continue };
            let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            if running {
                let now = Instant::now();
                if let (Some(name), Ok(mut map)) = (pod.metadata.name, s.lock()) {
                    map.entry(name).or_insert(now);
                    if map.len() == pods
                        && let Ok(mut end) = cpu_end.lock()
                    {
                        end.get_or_insert_with(|| {
                            skiff_sys::process::host_busy_cpu_time().unwrap_or_default()
                        });
                    }
                }
            }
        }
    });
    // Let the watch's initial list finish before the clock starts.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let requests_before = super::requests::snapshot(client).await;
    let cpu_at_start = skiff_sys::process::host_busy_cpu_time().ok();
    let start = Instant::now();
    let start_wall = std::time::SystemTime::now();
    let created: Vec<anyhow::Result<(String, Instant)>> = match pace {
        Pace::Burst(clients) => {
            futures::stream::iter(0..cfg.pods)
                .map(|i| super::create_timed(client.clone(), NAMESPACE, pod_manifest(prefix, i)))
                .buffer_unordered(clients.max(1))
                .collect()
                .await
        }
        Pace::Every(every) => {
            let mut tick = tokio::time::interval(every);
            let mut tasks = Vec::with_capacity(cfg.pods);
            for i in 0..cfg.pods {
                tick.tick().await;
                tasks.push(tokio::spawn(super::create_timed(
                    client.clone(),
                    NAMESPACE,
                    pod_manifest(prefix, i),
                )));
            }
            let mut out = Vec::with_capacity(tasks.len());
            for t in tasks {
                out.push(
                    t.await
                        .unwrap_or_else(|e| Err(anyhow::anyhow!("create task: {e}"))),
                );
            }
            out
        }
    };
    let created: HashMap<String, Instant> = match created.into_iter().collect() {
        Ok(c) => c,
        Err(e) => {
            watch.abort();
            return Err(e);
        }
    };

    let deadline = Instant::now() + cfg.timeout;
    while running_count(&seen) < cfg.pods && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    watch.abort();
    let requests = match (requests_before, super::requests::snapshot(client).await) {
        (Some(before), Some(after)) => super::requests::added(&before, &after),
        _ => Vec::new(),
    };
    let seen = seen.lock().map(|m| m.clone()).unwrap_or_default();
    let mut latencies: Vec<Duration> = seen
        .iter()
        .filter_map(|(name, at)| created.get(name).map(|t| at.saturating_duration_since(*t)))
        .collect();
    latencies.sort();
    if let Some(path) = std::env::var_os("SKIFF_BENCH_TIMELINE") {
        write_timeline(
            &PathBuf::from(path),
            prefix,
            start,
            start_wall,
            &created,
            &seen,
        );
    }
    let note = (latencies.len() < cfg.pods).then(|| {
        format!(
            "only {}/{} {prefix} pods Running after {:?}",
            latencies.len(),
            cfg.pods,
            cfg.timeout
        )
    });
    let pods_per_sec = seen
        .values()
        .max()
        .map(|last| last.saturating_duration_since(start).as_secs_f64())
        .filter(|secs| *secs > 0.0)
        .map_or(0.0, |secs| latencies.len() as f64 / secs);
    let cpu_at_end = cpu_at_end.lock().ok().and_then(|end| *end);
    let cpu_per_pod = match (cpu_at_start, cpu_at_end, u32::try_from(latencies.len())) {
        (Some(a), Some(b), Ok(n)) if n > 0 && b > a => Some((b - a) / n),
        _ => None,
    };
    Ok(Phase {
        latencies,
        pods_per_sec,
        cpu_per_pod,
        requests,
        note,
    })
}

/// Appends each pod's creation and Running times (Unix ms) to `path`, for
/// lining a burst up with the server's log when profiling.
fn write_timeline(
    path: &std::path::Path,
    prefix: &str,
    start: Instant,
    start_wall: std::time::SystemTime,
    created: &HashMap<String, Instant>,
    seen: &HashMap<String, Instant>,
) {
    let unix_ms = |at: Instant| {
        (start_wall + at.saturating_duration_since(start))
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let mut rows: Vec<(&String, &Instant)> = created.iter().collect();
    rows.sort();
    let mut out = String::new();
    for (name, at) in rows {
        let running = seen.get(name).map_or(-1.0, |at| unix_ms(*at));
        out.push_str(&format!(
            "{prefix} {name} {:.1} {running:.1}\n",
            unix_ms(*at)
        ));
    }
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, out.as_bytes()));
    if let Err(e) = written {
        eprintln!(
            "bench-pods: writing the timeline to {}: {e}",
            path.display()
        );
    }
}

/// Deletes every bench pod; the time until none is left, if within `timeout`.
async fn teardown(client: &kube::Client, timeout: Duration) -> anyhow::Result<Option<Duration>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let start = Instant::now();
    api.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .context("deleting the pods")?;
    while start.elapsed() < timeout {
        if api.list(&ListParams::default()).await?.items.is_empty() {
            return Ok(Some(start.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(None)
}

/// Per-container runtime cost, straight over CRI in one extra sandbox
/// (no kubelet labels, so the kubelet's relist ignores it).
async fn runtime_cost(
    server: &AgentServer,
    logs: &std::path::Path,
    count: usize,
    report: &mut PodBenchReport,
) -> anyhow::Result<()> {
    let mut cri = Cri::connect(&server.cri_socket())
        .await
        .context("connecting to the CRI socket")?;
    std::fs::create_dir_all(logs).with_context(|| format!("creating {}", logs.display()))?;
    let sandbox_config = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "cri-bench".into(),
            uid: "skiff-bench-cri".into(),
            namespace: NAMESPACE.into(),
            attempt: 0,
        }),
        hostname: "cri-bench".into(),
        log_directory: logs.to_string_lossy().into_owned(),
        ..Default::default()
    };
    let sandbox = cri
        .runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(sandbox_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .context("RunPodSandbox")?
        .into_inner()
        .pod_sandbox_id;
    let result = measure_containers(&mut cri, &sandbox, &sandbox_config, count, report).await;
    // The sandbox goes either way (stop kills what a failure left in it).
    let stopped = cri
        .runtime
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await;
    let removed = cri
        .runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox,
        })
        .await;
    result?;
    stopped.context("StopPodSandbox")?;
    removed.context("RemovePodSandbox")?;
    Ok(())
}

async fn measure_containers(
    cri: &mut Cri,
    sandbox: &str,
    sandbox_config: &cri::PodSandboxConfig,
    count: usize,
    report: &mut PodBenchReport,
) -> anyhow::Result<()> {
    for i in 0..count {
        let name = format!("c{i:03}");
        let config = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.clone(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: IMAGE.into(),
                ..Default::default()
            }),
            command: vec!["sleep".into(), "3600".into()],
            log_path: format!("{name}/0.log"),
            ..Default::default()
        };
        let t = Instant::now();
        let id = cri
            .runtime
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sandbox.to_owned(),
                config: Some(config),
                sandbox_config: Some(sandbox_config.clone()),
            })
            .await
            .with_context(|| format!("CreateContainer {name}"))?
            .into_inner()
            .container_id;
        cri.runtime
            .start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .with_context(|| format!("StartContainer {name}"))?;
        report.create_start.push(t.elapsed());

        let t = Instant::now();
        // Timeout 0: straight to SIGKILL (sleep as pid 1 ignores TERM), so
        // this measures the runtime, not a grace period.
        cri.runtime
            .stop_container(cri::StopContainerRequest {
                container_id: id.clone(),
                timeout: 0,
            })
            .await
            .with_context(|| format!("StopContainer {name}"))?;
        cri.runtime
            .remove_container(cri::RemoveContainerRequest { container_id: id })
            .await
            .with_context(|| format!("RemoveContainer {name}"))?;
        report.stop_remove.push(t.elapsed());
    }
    report.create_start.sort();
    report.stop_remove.sort();
    Ok(())
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".to_owned(), |d| {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    })
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("-".to_owned(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

/// The result as a markdown table, with issue 5's targets.
pub fn format_table(r: &PodBenchReport) -> String {
    // The agent runs inside the server's process: its share is the
    // difference from the server alone (0 when the allocator's noise makes
    // it negative).
    let above_server = |with_agent: Option<u64>| match (with_agent, r.server_only_rss_kib) {
        (Some(a), Some(b)) => Some(a.saturating_sub(b)),
        _ => None,
    };
    let n = r.pods;
    let rows: Vec<(String, String, &str)> = vec![
        (
            "pods Running / created (1 node, image present)".into(),
            format!("{}/{}", r.running, r.pods),
            "",
        ),
        (
            "burst: startup p50 (created → Running seen by watch)".into(),
            ms(percentile(&r.startup, 50)),
            "",
        ),
        (
            "burst: startup p99".into(),
            ms(percentile(&r.startup, 99)),
            "< 1 s",
        ),
        (
            "burst: startup max".into(),
            ms(r.startup.last().copied()),
            "",
        ),
        (
            "throughput (first create → last Running)".into(),
            format!("{:.1} pods/s", r.pods_per_sec),
            "",
        ),
        (
            "burst: host CPU busy per pod (all processes)".into(),
            ms(r.burst_cpu_per_pod),
            "",
        ),
        (
            "burst: API requests per pod, by verb and resource".into(),
            super::requests::per_pod(&r.burst_requests, r.running, 6),
            "",
        ),
        (
            format!(
                "paced ({}): startup p50",
                r.paced_rate.map_or("off".to_owned(), |p| format!(
                    "{p} pods/s, n={}",
                    r.paced_startup.len()
                ))
            ),
            ms(percentile(&r.paced_startup, 50)),
            "",
        ),
        (
            "paced: startup p99".into(),
            ms(percentile(&r.paced_startup, 99)),
            "< 1 s",
        ),
        (
            format!("teardown: delete {n} pods → none left"),
            ms(r.teardown),
            "",
        ),
        (
            format!(
                "CRI create+start per container, median (n={})",
                r.create_start.len()
            ),
            ms(percentile(&r.create_start, 50)),
            "< 100 ms",
        ),
        (
            "CRI create+start, p99".into(),
            ms(percentile(&r.create_start, 99)),
            "",
        ),
        (
            "CRI stop+remove per container, median".into(),
            ms(percentile(&r.stop_remove, 50)),
            "",
        ),
        (
            "CRI stop+remove, p99".into(),
            ms(percentile(&r.stop_remove, 99)),
            "",
        ),
        (
            "server RSS, --disable-agent, idle".into(),
            mib(r.server_only_rss_kib),
            "",
        ),
        (
            "server+agent RSS, node Ready, 0 pods".into(),
            mib(r.idle_rss_kib),
            "",
        ),
        (
            "  of which above server alone (≈ agent), 0 pods".into(),
            mib(above_server(r.idle_rss_kib)),
            "",
        ),
        (
            format!("server+agent RSS, {n} pods Running"),
            mib(r.loaded_rss_kib),
            "",
        ),
        (
            format!("  of which above server alone (≈ agent), {n} pods"),
            mib(above_server(r.loaded_rss_kib)),
            "< 50 MB",
        ),
    ];
    let mut out = String::from("| measurement | value | target |\n|---|---:|---|\n");
    for (what, value, target) in rows {
        out.push_str(&format!("| {what} | {value} | {target} |\n"));
    }
    for note in &r.notes {
        out.push_str(&format!("\nnote: {note}\n"));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn manifest_names_the_node_and_the_present_image() {
        let pod: Pod = serde_json::from_value(pod_manifest("paced", 7)).unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("paced-0007"));
        let spec = pod.spec.unwrap();
        assert_eq!(spec.node_name.as_deref(), Some(NODE));
        assert_eq!(spec.termination_grace_period_seconds, Some(1));
        let c = &spec.containers[0];
        assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
        assert_eq!(c.image.as_deref(), Some(IMAGE));
    }

    #[test]
    fn table_reports_figures_targets_and_shortfalls() {
        let r = PodBenchReport {
            pods: 4,
            running: 3,
            startup: [100, 200, 300].map(Duration::from_millis).to_vec(),
            burst_cpu_per_pod: Some(Duration::from_micros(23_500)),
            paced_rate: Some(10.0),
            paced_startup: [40, 50, 60, 70].map(Duration::from_millis).to_vec(),
            create_start: [10, 20, 30].map(Duration::from_millis).to_vec(),
            server_only_rss_kib: Some(10 * 1024),
            // Below the server alone: allocator noise, shown as no share.
            idle_rss_kib: Some(9 * 1024),
            loaded_rss_kib: Some(40 * 1024),
            notes: vec!["only 3/4 pods Running after 60s".into()],
            ..PodBenchReport::default()
        };
        let t = format_table(&r);
        let line = |prefix: &str| {
            t.lines()
                .find(|l| l.starts_with(&format!("| {prefix}")))
                .unwrap_or_else(|| panic!("no {prefix} in\n{t}"))
                .to_owned()
        };
        assert!(line("pods Running").contains("| 3/4 |"), "{t}");
        assert!(
            line("burst: host CPU busy per pod").contains("| 23.5 ms |"),
            "{t}"
        );
        assert!(line("burst: startup p50").contains("| 200.0 ms |"), "{t}");
        assert!(
            line("burst: startup p99").contains("| 300.0 ms | < 1 s |"),
            "{t}"
        );
        assert!(
            line("paced (10 pods/s, n=4): startup p50").contains("| 50.0 ms |"),
            "{t}"
        );
        assert!(
            line("paced: startup p99").contains("| 70.0 ms | < 1 s |"),
            "{t}"
        );
        assert!(
            line("CRI create+start per").contains("20.0 ms | < 100 ms"),
            "{t}"
        );
        assert!(
            line("  of which above server alone (≈ agent), 4 pods")
                .contains("| 30.0 MiB | < 50 MB |"),
            "{t}"
        );
        assert!(
            line("  of which above server alone (≈ agent), 0 pods").contains("| 0.0 MiB |"),
            "{t}"
        );
        assert!(line("teardown").contains("| - |"), "{t}");
        assert!(t.contains("note: only 3/4"), "{t}");
    }
}
