//! `skiff sim bench-controllers`: the controller manager measured end to
//! end on hollow nodes, as issue 6 asks. A `skiff server --disable-agent
//! --disable-controller-manager` child process serves the API and runs the
//! scheduler; `skiff controller-manager` runs as a second child so its
//! memory is its own; this process serves the hollow nodes and watches.
//!
//! Phases, each timed from its first request to the state it waits for:
//! - **wave**: create the Deployments; until every one has all replicas
//!   available (and when the last pod was created).
//! - **update**: change every Deployment's pod template; until every
//!   rollout is complete (all replicas updated and available, no old pods).
//! - **namespace**: delete the namespace holding all of the above; until
//!   the Namespace is gone.
//! - **node-failure**: a Deployment of 100 pods all on one hollow node
//!   (required node affinity to a label only it has, tolerating the
//!   unreachable and not-ready taints for 0 s); a second node gets the label,
//!   the first stops heartbeating; until 100 Ready replacement pods run
//!   elsewhere. The controller manager's default node-monitor grace period
//!   (40 s) is part of the time, and the note splits it off.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use super::{ServerProcess, proc_status_kib};
use crate::hollow::{HollowNodeConfig, HollowNodes};

/// How to run the benchmark.
#[derive(Debug, Clone)]
pub struct ControllerBenchConfig {
    /// The `skiff` binary to start as server and controller manager.
    pub skiff_bin: PathBuf,
    /// Hollow nodes.
    pub nodes: usize,
    /// Deployments in the wave.
    pub deployments: usize,
    /// Replicas of each.
    pub replicas: i32,
    /// Creations and patches in flight at once.
    pub clients: usize,
    /// Give up on a phase when nothing progresses for this long.
    pub stall_timeout: Duration,
}

/// One line of the result table.
#[derive(Debug, Clone, Default)]
pub struct PhaseRow {
    /// Phase name.
    pub phase: String,
    /// What was measured, e.g. "1000 deployments × 10".
    pub scale: String,
    /// Until the phase's end state.
    pub elapsed: Option<Duration>,
    /// Pods per second, where it applies.
    pub pods_per_sec: Option<f64>,
    /// Why the row is incomplete, if it is.
    pub note: String,
}

/// The whole report.
#[derive(Debug, Clone, Default)]
pub struct ControllerBenchReport {
    /// One row per phase.
    pub rows: Vec<PhaseRow>,
    /// Controller manager VmRSS once the wave is available, KiB.
    pub cm_rss_wave_kib: Option<u64>,
    /// Controller manager VmRSS at the end, KiB.
    pub cm_rss_kib: Option<u64>,
    /// Controller manager VmHWM (peak RSS), KiB.
    pub cm_hwm_kib: Option<u64>,
    /// Server VmHWM, KiB.
    pub server_hwm_kib: Option<u64>,
}

const NAMESPACE: &str = "bench-controllers";

/// `skiff controller-manager` as a child process, killed when dropped.
struct ManagerProcess {
    child: Child,
}

impl ManagerProcess {
    fn start(bin: &Path, kubeconfig: &Path, log: &Path) -> anyhow::Result<ManagerProcess> {
        let log = File::create(log).context("creating the controller manager's log")?;
        let child = Command::new(bin)
            .arg("controller-manager")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--leader-elect=false")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} controller-manager", bin.display()))?;
        Ok(ManagerProcess { child })
    }

    fn status_kib(&self, field: &str) -> Option<u64> {
        proc_status_kib(&format!("/proc/{}/status", self.child.id()), field)
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for ManagerProcess {
    fn drop(&mut self) {
        // Only the child this struct started, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the bench knows of one Deployment, from its watch.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    generation: i64,
    observed: i64,
    replicas: i32,
    updated: i32,
    available: i32,
}

type SeenMap = Arc<Mutex<HashMap<String, Seen>>>;

fn watch_deployments(client: kube::Client) -> (SeenMap, tokio::task::JoinHandle<()>) {
    let seen: SeenMap = Arc::default();
    let api: Api<Deployment> = Api::namespaced(client, NAMESPACE);
    let map = seen.clone();
    let task = tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(ev) = events.next().await {
            let Ok(d) = ev else { continue };
            let status = d.status.unwrap_or_default();
            let s = Seen {
                generation: d.metadata.generation.unwrap_or(0),
                observed: status.observed_generation.unwrap_or(0),
                replicas: status.replicas.unwrap_or(0),
                updated: status.updated_replicas.unwrap_or(0),
                available: status.available_replicas.unwrap_or(0),
            };
            if let (Some(name), Ok(mut m)) = (d.metadata.name, map.lock()) {
                m.insert(name, s);
            }
        }
    });
    (seen, task)
}

/// Pods seen in the namespace, and when the `want`th was first seen,
/// bound to a node and Ready: the wave's time after the last of these is
/// the controllers' own (status reporting), before it the scheduler's and
/// the nodes' share.
#[derive(Default)]
struct PodCount {
    names: std::collections::HashSet<String>,
    bound: std::collections::HashSet<String>,
    ready: std::collections::HashSet<String>,
    all_at: Option<Instant>,
    bound_at: Option<Instant>,
    ready_at: Option<Instant>,
}

impl PodCount {
    /// Notes `set` reaching `want` at `now` in `at`, once.
    fn reached(
        set: &mut std::collections::HashSet<String>,
        name: &str,
        want: usize,
        at: &mut Option<Instant>,
    ) {
        set.insert(name.to_owned());
        if set.len() >= want && at.is_none() {
            *at = Some(Instant::now());
        }
    }
}

fn watch_pods(
    client: kube::Client,
    want: usize,
) -> (Arc<Mutex<PodCount>>, tokio::task::JoinHandle<()>) {
    let count: Arc<Mutex<PodCount>> = Arc::default();
    let api: Api<Pod> = Api::namespaced(client, NAMESPACE);
    let c = count.clone();
    let task = tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(ev) = events.next().await {
            let Ok(pod) = ev else { continue };
            let bound = pod.spec.as_ref().is_some_and(|s| s.node_name.is_some());
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if let (Some(name), Ok(mut c)) = (pod.metadata.name, c.lock()) {
                let c = &mut *c;
                PodCount::reached(&mut c.names, &name, want, &mut c.all_at);
                if bound {
                    PodCount::reached(&mut c.bound, &name, want, &mut c.bound_at);
                }
                if ready {
                    PodCount::reached(&mut c.ready, &name, want, &mut c.ready_at);
                }
            }
        }
    });
    (count, task)
}

/// Waits until `done` holds for `want` deployments of `seen`. Gives up
/// when neither the count of done ones nor the replicas updated and
/// available (a rollout's progress before any completes) changed for
/// `stall`.
async fn wait_all(
    seen: &SeenMap,
    want: usize,
    stall: Duration,
    done: impl Fn(&Seen) -> bool,
) -> Result<(), String> {
    let state = || {
        seen.lock()
            .map(|m| {
                let done_count = m.values().filter(|s| done(s)).count();
                let progress: i64 = m
                    .values()
                    .map(|s| i64::from(s.updated) + i64::from(s.available) + s.observed)
                    .sum();
                (done_count, progress)
            })
            .unwrap_or((0, 0))
    };
    let (mut last, mut since) = (state(), Instant::now());
    loop {
        let now = state();
        if now.0 >= want {
            return Ok(());
        }
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= stall {
            return Err(format!(
                "timed out: {}/{want} done, no progress for {stall:?}",
                now.0
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn deployment(i: usize, replicas: i32) -> anyhow::Result<Deployment> {
    let name = format!("d-{i:05}");
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "c",
                    "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                }]},
            },
        },
    }))?)
}

/// Runs every phase against fresh server and controller-manager processes.
pub async fn run(cfg: &ControllerBenchConfig) -> anyhow::Result<ControllerBenchReport> {
    let mut server = ServerProcess::start(&cfg.skiff_bin)?;
    let client = server.wait_ready(Duration::from_secs(60)).await?;
    let cm_log = server.kubeconfig().with_file_name("controller-manager.log");
    let mut cm = ManagerProcess::start(&cfg.skiff_bin, &server.kubeconfig(), &cm_log)?;
    let mut clients = vec![client.clone()];
    for _ in 1..4 {
        clients.push(super::client_from(&server.kubeconfig()).await?);
    }
    eprintln!("registering {} hollow nodes", cfg.nodes);
    let hollow = HollowNodes::start(
        client.clone(),
        HollowNodeConfig {
            count: cfg.nodes,
            ..HollowNodeConfig::default()
        },
    )
    .await?;
    let ns: Api<Namespace> = Api::all(client.clone());
    let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?;
    ns.create(&PostParams::default(), &obj).await?;

    let mut report = ControllerBenchReport::default();
    let (n, r) = (cfg.deployments, cfg.replicas);
    let pods = n * usize::try_from(r).unwrap_or(0);
    let (seen, seen_task) = watch_deployments(client.clone());
    let (pod_count, pod_task) = watch_pods(client.clone(), pods);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Wave: create, then wait for all available.
    eprintln!("wave: {n} deployments × {r}");
    let start = Instant::now();
    let created: Vec<anyhow::Result<()>> = futures::stream::iter(0..n)
        .map(|i| {
            let api: Api<Deployment> =
                Api::namespaced(clients[i % clients.len()].clone(), NAMESPACE);
            async move {
                api.create(&PostParams::default(), &deployment(i, r)?)
                    .await
                    .with_context(|| format!("creating deployment {i}"))?;
                Ok(())
            }
        })
        .buffer_unordered(cfg.clients.max(1))
        .collect()
        .await;
    created.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    let waited = wait_all(&seen, n, cfg.stall_timeout, |s| {
        s.available >= r && s.observed >= s.generation
    })
    .await;
    let (pods_at, bound_at, ready_at) = pod_count
        .lock()
        .map(|c| (c.all_at, c.bound_at, c.ready_at))
        .unwrap_or_default();
    let mut row = PhaseRow {
        phase: "wave".into(),
        scale: format!("{n} deployments × {r} replicas ({pods} pods)"),
        elapsed: waited.is_ok().then(|| start.elapsed()),
        pods_per_sec: pods_at.map(|at| pods as f64 / at.duration_since(start).as_secs_f64()),
        note: waited.err().unwrap_or_default(),
    };
    if let Some(at) = pods_at {
        row.note = format!(
            "{}last pod created at {:.1} s",
            if row.note.is_empty() {
                String::new()
            } else {
                format!("{}; ", row.note)
            },
            at.duration_since(start).as_secs_f64()
        );
    }
    for (what, at) in [("bound", bound_at), ("Ready", ready_at)] {
        if let Some(at) = at {
            row.note.push_str(&format!(
                ", last {what} at {:.1} s",
                at.duration_since(start).as_secs_f64()
            ));
        }
    }
    report.rows.push(row);
    report.cm_rss_wave_kib = cm.status_kib("VmRSS");
    pod_task.abort();

    // Rolling update of every deployment.
    if report.rows.iter().all(|r| r.elapsed.is_some()) {
        eprintln!("update: rolling update of {n} deployments");
        let start = Instant::now();
        let patched: Vec<anyhow::Result<()>> = futures::stream::iter(0..n)
            .map(|i| {
                let api: Api<Deployment> =
                    Api::namespaced(clients[i % clients.len()].clone(), NAMESPACE);
                async move {
                    let patch = json!({"spec": {"template": {"metadata": {
                        "annotations": {"bench/rev": "2"}}}}});
                    api.patch(
                        &format!("d-{i:05}"),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                    .with_context(|| format!("patching deployment {i}"))?;
                    Ok(())
                }
            })
            .buffer_unordered(cfg.clients.max(1))
            .collect()
            .await;
        patched.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
        // Every deployment is at generation 2 now; complete = observed it,
        // all replicas updated and available, and no old pods left.
        let waited = wait_all(&seen, n, cfg.stall_timeout, |s| {
            s.generation >= 2
                && s.observed >= s.generation
                && s.updated == r
                && s.available == r
                && s.replicas == r
        })
        .await;
        let elapsed = waited.is_ok().then(|| start.elapsed());
        report.rows.push(PhaseRow {
            phase: "update".into(),
            scale: format!("{n} deployments × {r} replicas"),
            elapsed,
            pods_per_sec: elapsed.map(|e| pods as f64 / e.as_secs_f64()),
            note: waited.err().unwrap_or_default(),
        });
    }
    seen_task.abort();

    // Namespace deletion of everything above.
    let objects = count_objects(&client).await?;
    eprintln!("namespace: deleting {NAMESPACE} with {objects} objects");
    let start = Instant::now();
    ns.delete(NAMESPACE, &DeleteParams::default()).await?;
    let gone = wait_gone(
        &ns,
        NAMESPACE,
        cfg.stall_timeout.max(Duration::from_secs(120)),
    )
    .await;
    report.rows.push(PhaseRow {
        phase: "namespace".into(),
        scale: format!("{objects} objects"),
        elapsed: gone.is_ok().then(|| start.elapsed()),
        pods_per_sec: None,
        note: gone.err().unwrap_or_default(),
    });

    let failover = node_failure(&client, &hollow, cfg.stall_timeout).await;
    report.rows.push(failover.unwrap_or_else(|e| PhaseRow {
        phase: "node-fail".into(),
        note: format!("{e:#}"),
        ..PhaseRow::default()
    }));

    report.cm_rss_kib = cm.status_kib("VmRSS");
    report.cm_hwm_kib = cm.status_kib("VmHWM");
    report.server_hwm_kib = server.status_kib("VmHWM");
    if let Some(status) = cm.exited() {
        anyhow::bail!(
            "the controller manager exited early ({status}); log: {}",
            cm_log.display()
        );
    }
    hollow.shutdown().await;
    Ok(report)
}

const FAILOVER_NAMESPACE: &str = "bench-failover";
const FAILOVER_LABEL: &str = "bench.skiff.dev/failover";
const FAILOVER_PODS: usize = 100;

/// The node-failure phase: see the module docs.
async fn node_failure(
    client: &kube::Client,
    hollow: &HollowNodes,
    stall: Duration,
) -> anyhow::Result<PhaseRow> {
    use k8s_openapi::api::core::v1::Node;
    anyhow::ensure!(hollow.count() >= 2, "needs at least two hollow nodes");
    let (failing, spare) = (hollow.node_name(0), hollow.node_name(1));
    eprintln!("node-fail: {FAILOVER_PODS} pods on {failing}, then its heartbeats stop");
    let nodes: Api<Node> = Api::all(client.clone());
    let label = |node: &str, value: &str| {
        let nodes = nodes.clone();
        let (node, value) = (node.to_owned(), value.to_owned());
        async move {
            let patch = json!({"metadata": {"labels": {FAILOVER_LABEL: value}}});
            nodes
                .patch(&node, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .with_context(|| format!("labelling node {node}"))
        }
    };
    label(&failing, "yes").await?;
    let ns: Api<Namespace> = Api::all(client.clone());
    let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": FAILOVER_NAMESPACE}}))?;
    ns.create(&PostParams::default(), &obj).await?;
    let mut d = deployment(0, i32::try_from(FAILOVER_PODS)?)?;
    d.metadata.name = Some("failover".into());
    let template = d
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .context("deployment template")?;
    template.affinity = Some(serde_json::from_value(json!({"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{
            "matchExpressions": [{"key": FAILOVER_LABEL, "operator": "In", "values": ["yes"]}],
        }]},
    }}))?);
    template.tolerations = Some(serde_json::from_value(json!([
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
         "effect": "NoExecute", "tolerationSeconds": 0},
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
         "effect": "NoExecute", "tolerationSeconds": 0},
    ]))?);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), FAILOVER_NAMESPACE);
    deployments.create(&PostParams::default(), &d).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), FAILOVER_NAMESPACE);
    // Ready pods on `failing` and elsewhere, counting only pods not being
    // deleted.
    let ready_where = || {
        let pods = pods.clone();
        let failing = failing.clone();
        async move {
            let list = pods.list(&Default::default()).await?;
            let (mut on, mut off) = (0usize, 0usize);
            for p in list.items {
                let ready = p.metadata.deletion_timestamp.is_none()
                    && p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| {
                            c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        });
                let node = p.spec.as_ref().and_then(|s| s.node_name.as_deref());
                match (ready, node == Some(failing.as_str())) {
                    (true, true) => on += 1,
                    (true, false) => off += 1,
                    _ => {}
                }
            }
            anyhow::Ok((on, off))
        }
    };
    let wait = |want_on: usize, want_off: usize, what: &'static str| {
        let ready_where = &ready_where;
        async move {
            let (mut last, mut since) = ((0, 0), Instant::now());
            loop {
                let now = ready_where().await?;
                if now.0 >= want_on && now.1 >= want_off {
                    return anyhow::Ok(());
                }
                if now != last {
                    (last, since) = (now, Instant::now());
                } else if since.elapsed() >= stall {
                    anyhow::bail!(
                        "{what}: {now:?} ready (on, off) the failing node after {stall:?} without progress"
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    wait(FAILOVER_PODS, 0, "placing the pods").await?;
    label(&spare, "yes").await?;

    let start = Instant::now();
    hollow.stop_heartbeats(0);
    // Note when the node controller taints the node, while waiting for the
    // replacements.
    let tainted_at = {
        let nodes = nodes.clone();
        let failing = failing.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(n) = nodes.get(&failing).await
                    && n.spec.and_then(|s| s.taints).is_some_and(|t| {
                        t.iter().any(|t| {
                            t.key == "node.kubernetes.io/unreachable" && t.effect == "NoExecute"
                        })
                    })
                {
                    return start.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    // The grace period passes with no visible progress: allow for it.
    let replaced = tokio::time::timeout(
        stall + Duration::from_secs(60),
        wait(0, FAILOVER_PODS, "replacing the pods"),
    )
    .await;
    let elapsed = start.elapsed();
    let tainted = if tainted_at.is_finished() {
        tainted_at.await.ok()
    } else {
        tainted_at.abort();
        None
    };
    hollow.resume_heartbeats(0).await?;
    let note = match (&replaced, tainted) {
        (Ok(Ok(())), Some(t)) => format!(
            "tainted unreachable at {:.1} s; replaced {:.1} s after the taint",
            t.as_secs_f64(),
            (elapsed - t).as_secs_f64()
        ),
        (Ok(Ok(())), None) => "replaced; taint not seen".to_owned(),
        (Ok(Err(e)), _) => format!("{e:#}"),
        (Err(_), _) => "timed out".to_owned(),
    };
    let ok = matches!(replaced, Ok(Ok(())));
    Ok(PhaseRow {
        phase: "node-fail".into(),
        scale: format!("{FAILOVER_PODS} pods on 1 of {} nodes", hollow.count()),
        elapsed: ok.then_some(elapsed),
        pods_per_sec: None,
        note,
    })
}

/// Deployments, ReplicaSets and Pods in the namespace.
async fn count_objects(client: &kube::Client) -> anyhow::Result<usize> {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    let lp = kube::api::ListParams::default();
    let d = Api::<Deployment>::namespaced(client.clone(), NAMESPACE)
        .list_metadata(&lp)
        .await?;
    let rs = Api::<ReplicaSet>::namespaced(client.clone(), NAMESPACE)
        .list_metadata(&lp)
        .await?;
    let p = Api::<Pod>::namespaced(client.clone(), NAMESPACE)
        .list_metadata(&lp)
        .await?;
    Ok(d.items.len() + rs.items.len() + p.items.len())
}

async fn wait_gone(ns: &Api<Namespace>, name: &str, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        match ns.get_opt(name).await {
            Ok(None) => return Ok(()),
            Ok(Some(_)) | Err(_) if Instant::now() >= deadline => {
                return Err(format!("namespace still present after {timeout:?}"));
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The report as a table.
pub fn format_table(r: &ControllerBenchReport) -> String {
    let secs =
        |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()));
    let mut out = format!(
        "{:<10} {:<44} {:>9} {:>9}  note\n",
        "phase", "scale", "time", "pods/s"
    );
    for row in &r.rows {
        out.push_str(&format!(
            "{:<10} {:<44} {:>9} {:>9}  {}\n",
            row.phase,
            row.scale,
            secs(row.elapsed),
            row.pods_per_sec
                .map_or("-".to_owned(), |p| format!("{p:.0}")),
            row.note
        ));
    }
    let mib =
        |k: Option<u64>| k.map_or("-".to_owned(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    out.push_str(&format!(
        "controller-manager RSS {} after the wave, {} at the end (peak {}); server peak RSS {}\n",
        mib(r.cm_rss_wave_kib),
        mib(r.cm_rss_kib),
        mib(r.cm_hwm_kib),
        mib(r.server_hwm_kib)
    ));
    out
}
