#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default,
    clippy::type_complexity
)]

use serde_json::{Value, json};

use super::super::tests::{first, pod};
use super::*;

const GI: i64 = 1 << 30;

#[test]
fn shares_from_milli_cpu() {
    let cases = [
        (0, 2),
        (1, 2),
        (5, 5),
        (100, 102),
        (250, 256),
        (1000, 1024),
        (2500, 2560),
        (1_000_000, 262_144),
    ];
    for (milli, shares) in cases {
        assert_eq!(milli_cpu_to_shares(milli), shares, "{milli}m");
    }
}

#[test]
fn quota_from_milli_cpu() {
    let cases = [
        (0, 0),
        (1, 1000),
        (5, 1000),
        (10, 1000),
        (200, 20_000),
        (500, 50_000),
        (1500, 150_000),
    ];
    for (milli, quota) in cases {
        assert_eq!(milli_cpu_to_quota(milli, QUOTA_PERIOD), quota, "{milli}m");
    }
}

fn resources_of(resources: Value) -> LinuxContainerResources {
    let p = pod(json!({"spec": {"containers": [{"name": "c", "resources": resources}]}}));
    linux_container_resources(&p, first(&p), 8 * GI).unwrap()
}

#[test]
fn linux_resources_table() {
    // (resources, shares, quota, memory limit)
    let cases = [
        (json!({}), 2, 0, 0),
        (json!({"requests": {"cpu": "500m"}}), 512, 0, 0),
        (
            json!({"limits": {"cpu": "2", "memory": "128Mi"}}),
            2048,
            200_000,
            128 << 20,
        ),
        (
            json!({"requests": {"cpu": "100m"}, "limits": {"cpu": "300m"}}),
            102,
            30_000,
            0,
        ),
        (
            json!({"requests": {"cpu": "0"}, "limits": {"cpu": "1"}}),
            2,
            100_000,
            0,
        ),
        (
            json!({"requests": {"memory": "1Gi"}, "limits": {"memory": "2G"}}),
            2,
            0,
            2_000_000_000,
        ),
    ];
    for (res, shares, quota, memory) in cases {
        let r = resources_of(res.clone());
        assert_eq!(
            (
                r.cpu_shares,
                r.cpu_quota,
                r.cpu_period,
                r.memory_limit_in_bytes
            ),
            (shares, quota, QUOTA_PERIOD, memory),
            "{res}"
        );
    }
}

#[test]
fn oom_score_adjust_by_qos() {
    let guaranteed =
        json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}});
    let cases: Vec<(Value, i64)> = vec![
        (json!({}), 1000),
        (guaranteed, -997),
        // 1000 - 1000 * 1Gi / 8Gi = 875
        (json!({"requests": {"memory": "1Gi"}}), 875),
        // Nothing requested: 1000 would equal BestEffort, so 999.
        (json!({"requests": {"cpu": "100m"}}), 999),
        // Requests the whole machine: floored at 3.
        (json!({"requests": {"memory": "8Gi"}}), 3),
        (json!({"requests": {"memory": "16Gi"}}), 3),
    ];
    for (res, want) in cases {
        let p = pod(json!({"spec": {"containers": [{"name": "c", "resources": res}]}}));
        assert_eq!(
            oom_score_adjust(&p, first(&p), 8 * GI).unwrap(),
            want,
            "{res}"
        );
        // What goes to the runtime never is negative on this host.
        let sent = linux_container_resources(&p, first(&p), 8 * GI)
            .unwrap()
            .oom_score_adj;
        assert_eq!(sent, want.max(0), "{res}");
    }
}

#[test]
fn node_critical_pods_score_as_guaranteed() {
    let p = pod(
        json!({"spec": {"priority": 2_000_001_000, "priorityClassName": "system-node-critical"}}),
    );
    assert_eq!(oom_score_adjust(&p, first(&p), 8 * GI).unwrap(), -997);
    // Cluster-critical is not node-critical.
    let p = pod(
        json!({"spec": {"priority": 2_000_000_000, "priorityClassName": "system-cluster-critical"}}),
    );
    assert_eq!(oom_score_adjust(&p, first(&p), 8 * GI).unwrap(), 1000);
}

#[test]
fn sidecar_takes_the_lowest_regular_score() {
    let p = pod(json!({"spec": {
        "initContainers": [{"name": "side", "restartPolicy": "Always", "resources": {"requests": {"memory": "512Mi"}}}],
        "containers": [
            {"name": "a", "resources": {"requests": {"memory": "2Gi"}}},
            {"name": "b", "resources": {"requests": {"memory": "4Gi"}}}
        ]
    }}));
    let side = &p.spec.as_ref().unwrap().init_containers.as_ref().unwrap()[0];
    // Its own request would give 938; regular container a gives 750.
    assert_eq!(oom_score_adjust(&p, side, 8 * GI).unwrap(), 750);
    assert_eq!(oom_score_adjust(&p, first(&p), 8 * GI).unwrap(), 750);
}
