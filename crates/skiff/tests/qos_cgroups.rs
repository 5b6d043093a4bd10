//! End to end: the kubelet puts each pod in a cgroup by QoS class under
//! `kubepods` (cgroupfs naming), with the pod-level limits upstream's
//! `ResourceConfigForPod` gives, the containers' cgroups inside, and removes
//! the pod cgroup after the pod is deleted. Skipped without root or
//! busybox-static.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::time::Duration;

use cluster::{Cluster, Names, container, phase};
use serde_json::{Value, json};
use skiff_sys::cgroups::{CgroupMode, cgroup_dir, cgroup_mode};

const NAMES: Names = Names {
    node: "skiff-qos",
    bridge: "skiffqos0",
    nat_table: "skiff-qos-nat",
    cluster_cidr: "10.251.0.0/16",
    scheduler: false,
};

/// Directory of cgroup `path` in the hierarchy holding `controller` (v1),
/// or in the unified hierarchy (v2).
fn dir(controller: &str, path: &str) -> PathBuf {
    let root = match cgroup_mode() {
        CgroupMode::Unified => PathBuf::from("/sys/fs/cgroup"),
        CgroupMode::Hybrid | CgroupMode::Legacy => PathBuf::from("/sys/fs/cgroup").join(controller),
    };
    cgroup_dir(&root, path)
}

fn read(controller: &str, path: &str, file: &str) -> String {
    let f = dir(controller, path).join(file);
    std::fs::read_to_string(&f)
        .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
        .trim()
        .to_owned()
}

/// The CPU weight as the host's layout writes it: v1 shares, v2 weight.
fn cpu_weight(path: &str) -> String {
    match cgroup_mode() {
        CgroupMode::Unified => read("cpu", path, "cpu.weight"),
        _ => read("cpu", path, "cpu.shares"),
    }
}

fn want_weight(shares: u64) -> String {
    match cgroup_mode() {
        CgroupMode::Unified => skiff_sys::cgroups::cpu_shares_to_weight(shares).to_string(),
        _ => shares.to_string(),
    }
}

fn memory_limit(path: &str) -> String {
    match cgroup_mode() {
        CgroupMode::Unified => read("memory", path, "memory.max"),
        _ => read("memory", path, "memory.limit_in_bytes"),
    }
}

/// `(quota, period)`; a quota of `None` is unlimited.
fn cpu_quota(path: &str) -> (Option<i64>, i64) {
    match cgroup_mode() {
        CgroupMode::Unified => {
            let max = read("cpu", path, "cpu.max");
            let (q, p) = max.split_once(' ').unwrap();
            (q.parse().ok(), p.parse().unwrap())
        }
        _ => {
            let q: i64 = read("cpu", path, "cpu.cfs_quota_us").parse().unwrap();
            let p = read("cpu", path, "cpu.cfs_period_us").parse().unwrap();
            ((q > 0).then_some(q), p)
        }
    }
}

fn sleeper(resources: Value) -> Value {
    let mut c = container("c", "sleep 3600");
    c["resources"] = resources;
    c
}

fn uid(p: &Value) -> String {
    p["metadata"]["uid"].as_str().unwrap().to_owned()
}

/// The runtime's id of the pod's container `c`.
fn container_id(p: &Value) -> String {
    let id = cluster::state(p, "c")["containerID"].as_str().unwrap();
    id.split_once("://").unwrap().1.to_owned()
}

#[test]
fn pods_get_cgroups_by_qos_class_with_pod_level_limits() {
    let Some(mut c) = Cluster::start(NAMES) else {
        return;
    };
    let kubepods = cluster::kubepods(NAMES.node);
    let (burstable, besteffort) = (
        format!("{kubepods}/burstable"),
        format!("{kubepods}/besteffort"),
    );
    // The node cgroup carries the node's CPUs and memory; besteffort the
    // minimum shares.
    let node = c.get_json(&["get", "node", NAMES.node]).unwrap();
    let cpus: u64 = node["status"]["capacity"]["cpu"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(cpu_weight(&kubepods), want_weight(cpus * 1024));
    // The node's memory in whole pages, against the capacity in KiB.
    let capacity_ki: u64 = node["status"]["capacity"]["memory"]
        .as_str()
        .unwrap()
        .trim_end_matches("Ki")
        .parse()
        .unwrap();
    let limit_ki = memory_limit(&kubepods).parse::<u64>().unwrap() / 1024;
    assert!(
        limit_ki <= capacity_ki && capacity_ki - limit_ki < 4,
        "kubepods memory limit {limit_ki}Ki, node capacity {capacity_ki}Ki"
    );
    assert_eq!(cpu_weight(&besteffort), want_weight(2));

    let both = json!({"cpu": "200m", "memory": "48Mi"});
    c.apply(&c.pod(
        "guaranteed",
        json!({"containers": [sleeper(json!({"requests": both, "limits": both}))]}),
    ));
    c.apply(&c.pod(
        "burstable",
        json!({"containers": [sleeper(json!({"requests": {"cpu": "300m"},
                                             "limits": {"memory": "64Mi"}}))]}),
    ));
    c.apply(&c.pod("besteffort", json!({"containers": [sleeper(json!({}))]})));
    let running = |name: &str| c.wait_pod(name, "Running", |p| phase(p) == "Running");
    let (g, b, e) = (
        running("guaranteed"),
        running("burstable"),
        running("besteffort"),
    );
    assert_eq!(g["status"]["qosClass"], "Guaranteed");
    assert_eq!(b["status"]["qosClass"], "Burstable");
    assert_eq!(e["status"]["qosClass"], "BestEffort");

    // Guaranteed: directly under kubepods, with the pod's memory limit and
    // CFS quota (200m of a 100 ms period).
    let g_cg = format!("{kubepods}/pod{}", uid(&g));
    assert_eq!(memory_limit(&g_cg), (48u64 << 20).to_string());
    assert_eq!(cpu_quota(&g_cg), (Some(20_000), 100_000));
    assert_eq!(cpu_weight(&g_cg), want_weight(204));

    // Burstable: shares from its request, the memory limit (its only
    // container has one) and no CFS quota (no CPU limit).
    let b_cg = format!("{burstable}/pod{}", uid(&b));
    assert_eq!(cpu_weight(&b_cg), want_weight(307));
    assert_eq!(cpu_quota(&b_cg).0, None);
    assert_eq!(memory_limit(&b_cg), (64u64 << 20).to_string());
    // The Burstable QoS cgroup's shares are the sum of its pods' requests.
    assert_eq!(cpu_weight(&burstable), want_weight(307));

    // BestEffort: the minimum shares.
    let e_cg = format!("{besteffort}/pod{}", uid(&e));
    assert_eq!(cpu_weight(&e_cg), want_weight(2));

    // Each container's cgroup is inside its pod's, with the container's
    // process in it.
    for (p, cg) in [(&g, &g_cg), (&b, &b_cg), (&e, &e_cg)] {
        let inner = format!("{cg}/{}", container_id(p));
        let procs = read("memory", &inner, "cgroup.procs");
        assert!(!procs.is_empty(), "no process in {inner}");
        let pid = procs.lines().next().unwrap();
        let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        assert!(own.contains(&inner), "{own}");
    }

    // A second Burstable pod adds to the QoS cgroup's shares.
    c.apply(&c.pod(
        "burstable-2",
        json!({"containers": [sleeper(json!({"requests": {"cpu": "200m"}}))]}),
    ));
    let b2 = running("burstable-2");
    let b2_cg = format!("{burstable}/pod{}", uid(&b2));
    assert_eq!(cpu_weight(&b2_cg), want_weight(204));
    assert_eq!(cpu_weight(&burstable), want_weight(512));

    // Deleted pods' cgroups go, and the Burstable shares with them.
    let out = c.kubectl(&["delete", "pods", "--all", "--wait=false"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gone = [g_cg, b_cg, e_cg, b2_cg];
    c.wait_for("the pod cgroups removed", Duration::from_secs(45), || {
        gone.iter()
            .all(|cg| !dir("memory", cg).exists() && !dir("cpu", cg).exists())
            .then_some(())
    });
    assert_eq!(cpu_weight(&burstable), want_weight(2));

    // A pod cgroup no pod owns, with a process in it (a kubelet that died
    // mid clean-up): the next start kills the process and removes it.
    let stale = format!("{besteffort}/pod00000000-stale");
    skiff_sys::cgroups::Cgroups::ensure(
        &skiff_sys::cgroups::LinuxCgroups::new(),
        &stale,
        &Default::default(),
    )
    .unwrap();
    let mut child = std::process::Command::new("sleep")
        .arg("120")
        .spawn()
        .unwrap();
    let pid = child.id();
    std::fs::write(dir("memory", &stale).join("cgroup.procs"), pid.to_string()).unwrap();
    let waiter = std::thread::spawn(move || child.wait().unwrap());
    c.restart();
    c.wait_for(
        "the stale pod cgroup removed",
        Duration::from_secs(30),
        || (!dir("memory", &stale).exists() && !dir("cpu", &stale).exists()).then_some(()),
    );
    let status = waiter.join().unwrap();
    assert_eq!(status.signal(), Some(9), "{status}");
}
