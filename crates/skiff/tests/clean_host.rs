//! End to end: after 100 pods come and go, the node agent has left nothing
//! behind on the host — no mounts, runtime records, pinned namespaces, veths,
//! pod cgroups, IPAM allocations or supervisor processes. Skipped without
//! root or busybox-static.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cluster::{Cluster, Names, container, phase};
use serde_json::{Value, json};

const NAMES: Names = Names {
    node: "skiff-clean",
    bridge: "skiffclean0",
    nat_table: "skiff-clean-nat",
    cluster_cidr: "10.248.0.0/16",
    scheduler: false,
};
const PODS: usize = 100;

/// Where the agent keeps what this test inspects, under the cluster's temp dir.
struct Layout {
    root: PathBuf,
    runtime: PathBuf,
    run: PathBuf,
    kubelet_pods: PathBuf,
    pod_logs: PathBuf,
}

impl Layout {
    fn new(root: &Path) -> Self {
        let agent = root.join("data/agent");
        Self {
            root: root.to_path_buf(),
            runtime: agent.join("runtime"),
            run: agent.join("run"),
            kubelet_pods: agent.join("kubelet/pods"),
            pod_logs: root.join("logs"),
        }
    }
}

/// Mount points under `root` (with their fs type), from our mountinfo.
fn mounts_under(root: &Path) -> BTreeSet<String> {
    let root = root.to_string_lossy().into_owned();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = left.split(' ').nth(4)?;
            let fstype = right.split(' ').next()?;
            point
                .starts_with(&root)
                .then(|| format!("{point} ({fstype})"))
        })
        .collect()
}

/// Entry names of `dir` (empty when it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Interfaces enslaved to `bridge`, by name.
fn bridge_ports(bridge: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show", "master", bridge])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .collect()
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", name])
        .output()
        .unwrap()
        .status
        .success()
}

/// Every IPAM record (address file) the bridge network holds, with its owner.
fn ipam_allocations(layout: &Layout) -> Vec<String> {
    let networks = layout.runtime.join("network/networks");
    let mut out = Vec::new();
    for net in entries(&networks) {
        let dir = networks.join(&net);
        for name in entries(&dir) {
            if name.parse::<std::net::Ipv4Addr>().is_ok() {
                let owner = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
                let owner = owner.lines().next().unwrap_or_default().to_owned();
                out.push(format!("{net}/{name} (owner {owner})"));
            }
        }
    }
    out
}

/// This cluster's runtime supervisors: forked ones by their stderr (a
/// shim.log below the cluster dir), executed ones by their command line.
fn shim_processes(root: &Path) -> Vec<String> {
    let root = root.to_string_lossy().into_owned();
    let mut out = Vec::new();
    for pid in entries(Path::new("/proc")) {
        if pid.parse::<u32>().is_err() {
            continue;
        }
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        // A supervisor forked by the zygote has the zygote's command line
        // (no root in it); its stderr is its shim.log below the root.
        let log = std::fs::read_link(format!("/proc/{pid}/fd/2")).unwrap_or_default();
        let forked = log.starts_with(&root) && log.ends_with("shim.log");
        if forked || (cmdline.contains("runtime-shim") && cmdline.contains(&root)) {
            let short: String = cmdline.chars().take(120).collect();
            out.push(format!("pid {pid}: {short}"));
        }
    }
    out
}

/// The QoS cgroups of this test's kubelet (`--cgroup-root`, cgroupfs
/// naming): pod cgroups `pod<uid>` sit directly under one of them.
fn qos_cgroups() -> [String; 3] {
    let kubepods = cluster::kubepods(NAMES.node);
    [
        kubepods.clone(),
        format!("{kubepods}/burstable"),
        format!("{kubepods}/besteffort"),
    ]
}

/// Whether cgroup `path` (from /proc/<pid>/cgroup) lies in a pod cgroup.
fn in_pod_cgroup(path: &str) -> bool {
    qos_cgroups().iter().any(|qos| {
        path.strip_prefix(qos.as_str())
            .and_then(|rest| rest.strip_prefix("/pod"))
            .is_some_and(|rest| !rest.is_empty())
    })
}

/// Pids whose cgroup lies inside a pod cgroup of this test's kubelet.
fn processes_in_pod_cgroups() -> Vec<String> {
    let mut out = Vec::new();
    for pid in entries(Path::new("/proc")) {
        if pid.parse::<u32>().is_err() {
            continue;
        }
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        if let Some(line) = cgroups
            .lines()
            .find(|l| l.splitn(3, ':').nth(2).is_some_and(in_pod_cgroup))
        {
            out.push(format!("pid {pid} in {line}"));
        }
    }
    out
}

/// Pod cgroup directories (`pod<uid>` under a QoS cgroup) still present,
/// in any hierarchy.
fn pod_cgroups() -> Vec<String> {
    let roots = skiff_sys::cgroups::hierarchy_roots().unwrap();
    let mut out = Vec::new();
    for root in roots {
        for qos in qos_cgroups() {
            let dir = skiff_sys::cgroups::cgroup_dir(root, &qos);
            for name in entries(&dir) {
                if name.starts_with("pod") && dir.join(&name).is_dir() {
                    out.push(dir.join(name).display().to_string());
                }
            }
        }
    }
    out
}

/// What the pods leave on the host, each item naming itself.
#[derive(Debug, Default)]
struct Footprint {
    mounts: Vec<String>,
    sandbox_dirs: Vec<String>,
    container_dirs: Vec<String>,
    /// OCI bundles on the run dir's tmpfs.
    bundles: Vec<String>,
    /// Files a pod's containers share, on the run dir's tmpfs.
    sandbox_run_dirs: Vec<String>,
    pinned_namespaces: Vec<String>,
    kubelet_pod_dirs: Vec<String>,
    pod_log_dirs: Vec<String>,
    bridge_veths: Vec<String>,
    sandbox_veths: Vec<String>,
    pod_cgroups: Vec<String>,
    ipam: Vec<String>,
    shims: Vec<String>,
    pod_processes: Vec<String>,
}

impl Footprint {
    /// Takes stock. `mounts_before` are mounts that predate the pods;
    /// `sandboxes` are the sandbox ids the run has seen.
    fn take(
        layout: &Layout,
        mounts_before: &BTreeSet<String>,
        sandboxes: &BTreeSet<String>,
    ) -> Self {
        let under = |dir: &Path| -> Vec<String> {
            entries(dir)
                .into_iter()
                .map(|n| dir.join(n).display().to_string())
                .collect()
        };
        let pinned_namespaces = ["netns", "ipcns", "utsns"]
            .iter()
            .flat_map(|k| under(&layout.run.join(k)))
            .collect();
        Self {
            mounts: mounts_under(&layout.root)
                .difference(mounts_before)
                .cloned()
                .collect(),
            sandbox_dirs: under(&layout.runtime.join("sandboxes")),
            container_dirs: under(&layout.runtime.join("containers")),
            bundles: under(&layout.run.join("containers")),
            sandbox_run_dirs: under(&layout.run.join("sandboxes")),
            pinned_namespaces,
            kubelet_pod_dirs: under(&layout.kubelet_pods),
            pod_log_dirs: under(&layout.pod_logs),
            bridge_veths: bridge_ports(NAMES.bridge),
            sandbox_veths: sandboxes
                .iter()
                .map(|id| skiff_runtime::network::host_veth_name(id))
                .filter(|name| link_exists(name))
                .collect(),
            pod_cgroups: pod_cgroups(),
            ipam: ipam_allocations(layout),
            shims: shim_processes(&layout.root),
            pod_processes: processes_in_pod_cgroups(),
        }
    }

    /// Every leftover, as "kind: item" lines.
    fn leaks(&self) -> Vec<String> {
        let kinds: [(&str, &Vec<String>); 14] = [
            ("mount", &self.mounts),
            ("sandbox dir", &self.sandbox_dirs),
            ("container dir", &self.container_dirs),
            ("container bundle", &self.bundles),
            ("sandbox run dir", &self.sandbox_run_dirs),
            ("pinned namespace", &self.pinned_namespaces),
            ("kubelet pod dir", &self.kubelet_pod_dirs),
            ("pod log dir", &self.pod_log_dirs),
            ("veth on the bridge", &self.bridge_veths),
            ("sandbox veth", &self.sandbox_veths),
            ("pod cgroup", &self.pod_cgroups),
            ("IPAM allocation", &self.ipam),
            ("runtime-shim process", &self.shims),
            ("process in a pod cgroup", &self.pod_processes),
        ];
        kinds
            .iter()
            .flat_map(|(kind, items)| items.iter().map(move |i| format!("{kind}: {i}")))
            .collect()
    }
}

/// Pod `i` of the run: mostly plain sleepers, every tenth with an emptyDir and
/// a configMap volume, every tenth (offset) with an init container.
fn pod_manifest(c: &Cluster, i: usize) -> Value {
    let name = format!("p-{i:03}");
    let mut spec = match i % 10 {
        0 => {
            let mut main = container("main", "echo hi > /scratch/f; sleep 3600");
            main["volumeMounts"] = json!([{"name": "scratch", "mountPath": "/scratch"},
                                          {"name": "cfg", "mountPath": "/cfg"}]);
            json!({"containers": [main],
                   "volumes": [{"name": "scratch", "emptyDir": {}},
                               {"name": "cfg", "configMap": {"name": "clean-settings"}}]})
        }
        1 => json!({"initContainers": [container("init", "true")],
                    "containers": [container("main", "sleep 3600")]}),
        _ => json!({"containers": [container("main", "sleep 3600")]}),
    };
    spec["terminationGracePeriodSeconds"] = json!(1);
    c.pod(&name, spec)
}

fn pods(c: &Cluster) -> Vec<Value> {
    c.get_json(&["get", "pods"])
        .and_then(|l| l["items"].as_array().cloned())
        .unwrap_or_default()
}

#[test]
fn the_host_is_clean_after_100_pods_come_and_go() {
    let Some(c) = Cluster::start(NAMES) else {
        return;
    };
    let layout = Layout::new(c.dir.path());
    let mounts_before = mounts_under(&layout.root);
    let before = Footprint::take(&layout, &mounts_before, &BTreeSet::new());
    // Only the run is blamed: nothing of it may exist yet.
    assert!(before.leaks().is_empty(), "{:#?}", before.leaks());

    c.apply(
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "clean-settings"},
                "data": {"colour": "blue"}}),
    );
    let items: Vec<Value> = (0..PODS).map(|i| pod_manifest(&c, i)).collect();
    c.apply(&json!({"apiVersion": "v1", "kind": "List", "items": items}));
    c.wait_for(
        &format!("{PODS} pods Running"),
        Duration::from_secs(240),
        || {
            let running = pods(&c).iter().filter(|p| phase(p) == "Running").count();
            (running == PODS).then_some(())
        },
    );

    // While they run, the state is really there: the final check cannot pass vacuously.
    let sandboxes: BTreeSet<String> = entries(&layout.runtime.join("sandboxes"))
        .into_iter()
        .collect();
    let during = Footprint::take(&layout, &mounts_before, &sandboxes);
    assert_eq!(sandboxes.len(), PODS, "sandboxes while running");
    assert_eq!(during.bridge_veths.len(), PODS, "{:?}", during.bridge_veths);
    assert_eq!(during.sandbox_veths.len(), PODS);
    assert_eq!(during.ipam.len(), PODS, "{:?}", during.ipam);
    assert_eq!(during.pinned_namespaces.len(), 3 * PODS);
    assert_eq!(during.kubelet_pod_dirs.len(), PODS);
    assert_eq!(during.pod_log_dirs.len(), PODS);
    // One rootfs per running container; init containers may be removed already.
    assert!(
        during.container_dirs.len() >= PODS,
        "{:?}",
        during.container_dirs
    );
    assert!(during.bundles.len() >= PODS, "{:?}", during.bundles);
    assert_eq!(during.sandbox_run_dirs.len(), PODS);
    assert!(during.mounts.len() >= PODS, "{:#?}", during.mounts);
    assert!(during.shims.len() >= PODS, "{} shims", during.shims.len());
    // One pod cgroup per pod (in each hierarchy), every container process in one.
    let pod_uids: BTreeSet<&str> = during
        .pod_cgroups
        .iter()
        .filter_map(|p| p.rsplit('/').next())
        .collect();
    assert_eq!(pod_uids.len(), PODS, "{:?}", during.pod_cgroups);
    assert!(during.pod_processes.len() >= PODS);

    let out = c.kubectl(&["delete", "pods", "--all", "--wait=false"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.wait_for("every pod gone", Duration::from_secs(240), || {
        pods(&c).is_empty().then_some(())
    });

    // The agent may finish its clean-up (sandbox removal) shortly after the
    // API objects go: allow it a settle time, then name every leftover.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let leaks = loop {
        let leaks = Footprint::take(&layout, &mounts_before, &sandboxes).leaks();
        if leaks.is_empty() || std::time::Instant::now() > deadline {
            break leaks;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(
        leaks.is_empty(),
        "{} leftovers after {PODS} pods came and went:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
}
