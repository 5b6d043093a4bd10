//! Pod READY / STATUS / RESTARTS, checked against what upstream's printer shows
//! for the same objects.

use serde_json::{Value, json};

use super::testutil::{ago, default_cells, header, res, wide_cells};

fn pod_res() -> &'static crate::resources::ResourceInfo {
    res("", "Pod")
}

/// A pod created 3h2m ago with `spec` and `status` merged over a one-container base.
fn pod(spec: Value, status: Value) -> Value {
    let mut p = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-0",
            "namespace": "default",
            "uid": "5f6c2a4e-1b7d-4c59-9a5e-2f1c0d7b8e11",
            "creationTimestamp": ago(3 * 3600 + 120),
        },
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
        "status": {},
    });
    merge(&mut p["spec"], spec);
    merge(&mut p["status"], status);
    p
}

fn merge(target: &mut Value, patch: Value) {
    if let (Some(t), Value::Object(p)) = (target.as_object_mut(), patch) {
        t.extend(p);
    }
}

fn running(ready: bool) -> Value {
    json!({"name": "app", "ready": ready, "started": true, "restartCount": 0,
           "state": {"running": {"startedAt": ago(600)}}})
}

/// READY, STATUS, RESTARTS of `p`.
fn summary(p: &Value) -> (String, String, String) {
    let cells = default_cells(pod_res(), p);
    let s = |i: usize| cells[i].as_str().unwrap_or("?").to_owned();
    assert_eq!(cells[0], "web-0");
    assert_eq!(cells[4], "3h2m");
    (s(1), s(2), s(3))
}

#[test]
fn columns_match_kubectl_headers() {
    assert_eq!(
        header(pod_res(), false),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    assert_eq!(
        header(pod_res(), true),
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED NODE",
            "READINESS GATES"
        ]
    );
    let cols = super::columns(pod_res());
    assert_eq!((cols[0].type_, cols[0].format), ("string", "name"));
    assert_eq!(
        cols[3].type_, "string",
        "RESTARTS carries the '(Xm ago)' suffix"
    );
}

#[test]
fn pod_status_table() {
    let two = json!({"containers": [
        {"name": "app", "image": "nginx"}, {"name": "log", "image": "busybox"}]});
    let init2 = json!({"initContainers": [
        {"name": "init-a", "image": "busybox"}, {"name": "init-b", "image": "busybox"}]});
    let sidecar_spec = json!({"initContainers": [
        {"name": "setup", "image": "busybox"},
        {"name": "proxy", "image": "envoy", "restartPolicy": "Always"}]});
    let done_init = |name: &str| {
        json!({"name": name, "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}})
    };
    let cases: Vec<(&str, Value, (&str, &str, &str))> = vec![
        (
            "unscheduled",
            pod(json!({}), json!({"phase": "Pending"})),
            ("0/1", "Pending", "0"),
        ),
        (
            "scheduling gated",
            pod(
                json!({}),
                json!({"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
            ),
            ("0/1", "SchedulingGated", "0"),
        ),
        (
            "container creating",
            pod(
                json!({"nodeName": "n1"}),
                json!({"phase": "Pending", "containerStatuses": [
                {"name": "app", "ready": false, "restartCount": 0,
                 "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
            ),
            ("0/1", "ContainerCreating", "0"),
        ),
        (
            "running and ready",
            pod(
                two.clone(),
                json!({"phase": "Running", "containerStatuses": [
                running(true), {"name": "log", "ready": true, "restartCount": 0,
                    "state": {"running": {}}}]}),
            ),
            ("2/2", "Running", "0"),
        ),
        (
            "running, one not ready",
            pod(
                two.clone(),
                json!({"phase": "Running", "containerStatuses": [
                running(true), running(false)]}),
            ),
            ("1/2", "Running", "0"),
        ),
        (
            "completed",
            pod(
                json!({}),
                json!({"phase": "Succeeded", "containerStatuses": [
                {"name": "app", "ready": false, "restartCount": 0, "state": {"terminated":
                    {"exitCode": 0, "reason": "Completed", "finishedAt": ago(60)}}}]}),
            ),
            ("0/1", "Completed", "0"),
        ),
        (
            "error",
            pod(
                json!({}),
                json!({"phase": "Failed", "containerStatuses": [
                {"name": "app", "ready": false, "restartCount": 0, "state": {"terminated":
                    {"exitCode": 1, "reason": "Error"}}}]}),
            ),
            ("0/1", "Error", "0"),
        ),
        (
            "exit code without reason",
            pod(
                json!({}),
                json!({"phase": "Failed", "containerStatuses": [
                {"name": "app", "restartCount": 0, "state": {"terminated": {"exitCode": 137}}}]}),
            ),
            ("0/1", "ExitCode:137", "0"),
        ),
        (
            "signal without reason",
            pod(
                json!({}),
                json!({"phase": "Failed", "containerStatuses": [
                {"name": "app", "restartCount": 0,
                 "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}),
            ),
            ("0/1", "Signal:9", "0"),
        ),
        (
            "crash loop with last restart time",
            pod(
                json!({}),
                json!({"phase": "Running", "containerStatuses": [
                {"name": "app", "ready": false, "restartCount": 3,
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                 "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                    "finishedAt": ago(5 * 60)}}}]}),
            ),
            ("0/1", "CrashLoopBackOff", "3 (5m ago)"),
        ),
        (
            "restarts without a termination time",
            pod(
                json!({}),
                json!({"phase": "Running", "containerStatuses": [
                {"name": "app", "ready": true, "restartCount": 2,
                 "state": {"running": {}}}]}),
            ),
            ("1/1", "Running", "2"),
        ),
        (
            "first init container running",
            pod(
                init2.clone(),
                json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "init-a", "ready": false, "restartCount": 0, "state": {"running": {}}},
                {"name": "init-b", "ready": false, "restartCount": 0,
                 "state": {"waiting": {"reason": "PodInitializing"}}}]}),
            ),
            ("0/1", "Init:0/2", "0"),
        ),
        (
            "second init container running",
            pod(
                init2.clone(),
                json!({"phase": "Pending", "initContainerStatuses": [
                done_init("init-a"),
                {"name": "init-b", "ready": false, "restartCount": 0, "state": {"running": {}}}]}),
            ),
            ("0/1", "Init:1/2", "0"),
        ),
        (
            "init waiting for PodInitializing counts as progress",
            pod(
                init2.clone(),
                json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "init-a", "restartCount": 0,
                 "state": {"waiting": {"reason": "PodInitializing"}}}]}),
            ),
            ("0/1", "Init:0/2", "0"),
        ),
        (
            "init crash loop",
            pod(
                init2.clone(),
                json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "init-a", "ready": false, "restartCount": 4,
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(30)}}}],
                "containerStatuses": [{"name": "app", "restartCount": 0,
                    "state": {"waiting": {"reason": "PodInitializing"}}}]}),
            ),
            ("0/1", "Init:CrashLoopBackOff", "4 (30s ago)"),
        ),
        (
            "init error",
            pod(
                init2.clone(),
                json!({"phase": "Failed", "initContainerStatuses": [
                {"name": "init-a", "restartCount": 0,
                 "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}),
            ),
            ("0/1", "Init:Error", "0"),
        ),
        (
            "init exit code",
            pod(
                init2.clone(),
                json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "init-a", "restartCount": 0,
                 "state": {"terminated": {"exitCode": 2}}}]}),
            ),
            ("0/1", "Init:ExitCode:2", "0"),
        ),
        (
            "init signal",
            pod(
                init2.clone(),
                json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "init-a", "restartCount": 0,
                 "state": {"terminated": {"exitCode": 0, "signal": 15, "reason": ""}}},
                ]}),
            ),
            // Exit code 0 wins: the container succeeded.
            ("0/1", "Pending", "0"),
        ),
        (
            "init signal with failure",
            pod(
                init2.clone(),
                json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "init-a", "restartCount": 0,
                 "state": {"terminated": {"exitCode": 143, "signal": 15}}}]}),
            ),
            ("0/1", "Init:Signal:15", "0"),
        ),
        (
            "pod initializing",
            pod(
                init2.clone(),
                json!({"phase": "Pending",
                "initContainerStatuses": [done_init("init-a"), done_init("init-b")],
                "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": "PodInitializing"}}}]}),
            ),
            ("0/1", "PodInitializing", "0"),
        ),
        (
            "terminating",
            {
                let mut p = pod(
                    json!({}),
                    json!({"phase": "Running",
                    "containerStatuses": [running(true)]}),
                );
                p["metadata"]["deletionTimestamp"] = json!(ago(-30));
                p
            },
            ("1/1", "Terminating", "0"),
        ),
        (
            "deleted after success stays Completed",
            {
                let mut p = pod(
                    json!({}),
                    json!({"phase": "Succeeded", "containerStatuses": [
                    {"name": "app", "restartCount": 0,
                     "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
                );
                p["metadata"]["deletionTimestamp"] = json!(ago(10));
                p
            },
            ("0/1", "Completed", "0"),
        ),
        (
            "node lost",
            {
                let mut p = pod(
                    json!({}),
                    json!({"phase": "Running", "reason": "NodeLost",
                    "containerStatuses": [running(true)]}),
                );
                p["metadata"]["deletionTimestamp"] = json!(ago(10));
                p
            },
            ("1/1", "Unknown", "0"),
        ),
        (
            "evicted",
            pod(
                json!({}),
                json!({"phase": "Failed", "reason": "Evicted",
                "message": "The node was low on resource: memory."}),
            ),
            ("0/1", "Evicted", "0"),
        ),
        (
            "completed container while another runs, pod ready",
            pod(
                two.clone(),
                json!({"phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [running(true), {"name": "log", "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
            ),
            ("1/2", "Running", "0"),
        ),
        (
            "completed container while another runs, pod not ready",
            pod(
                two.clone(),
                json!({"phase": "Running",
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [running(true), {"name": "log", "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
            ),
            ("1/2", "NotReady", "0"),
        ),
        (
            "any True Ready condition counts",
            pod(
                two.clone(),
                json!({"phase": "Running",
                "conditions": [{"type": "Ready", "status": "False"},
                    {"type": "Ready", "status": "True"}],
                "containerStatuses": [running(true), {"name": "log", "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
            ),
            ("1/2", "Running", "0"),
        ),
        (
            "sidecar running and ready",
            pod(
                sidecar_spec.clone(),
                json!({"phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}],
                "initContainerStatuses": [
                    {"name": "setup", "restartCount": 1,
                     "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                     "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(7200)}}},
                    {"name": "proxy", "ready": true, "started": true, "restartCount": 2,
                     "state": {"running": {}},
                     "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(600)}}}],
                "containerStatuses": [{"name": "app", "ready": true, "started": true,
                    "restartCount": 1, "state": {"running": {}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(3600)}}}]}),
            ),
            // The plain init container's restart no longer counts once initialized.
            ("2/2", "Running", "3 (10m ago)"),
        ),
        (
            "sidecar not started yet",
            pod(
                sidecar_spec.clone(),
                json!({"phase": "Pending", "initContainerStatuses": [
                done_init("setup"),
                {"name": "proxy", "ready": false, "started": false, "restartCount": 0,
                 "state": {"running": {}}}]}),
            ),
            ("0/2", "Init:1/2", "0"),
        ),
        (
            "sidecar crashing after initialization",
            pod(
                sidecar_spec.clone(),
                json!({"phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}],
                "initContainerStatuses": [
                    done_init("setup"),
                    {"name": "proxy", "ready": false, "started": false, "restartCount": 5,
                     "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                     "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(45)}}}],
                "containerStatuses": [running(true)]}),
            ),
            ("1/2", "Init:CrashLoopBackOff", "5 (45s ago)"),
        ),
        (
            "status for an unknown init container is not a sidecar",
            pod(
                json!({}),
                json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "ghost", "started": true, "ready": true, "restartCount": 0,
                 "state": {"running": {}}}]}),
            ),
            ("0/1", "Init:0/0", "0"),
        ),
    ];
    for (what, p, (ready, status, restarts)) in cases {
        let got = summary(&p);
        assert_eq!(
            (got.0.as_str(), got.1.as_str(), got.2.as_str()),
            (ready, status, restarts),
            "{what}"
        );
    }
}

#[test]
fn wide_columns() {
    let mut p = pod(
        json!({"nodeName": "node-a", "readinessGates": [
            {"conditionType": "example.com/lb-ready"},
            {"conditionType": "example.com/feature"}]}),
        json!({"phase": "Running", "podIP": "10.42.0.7",
            "podIPs": [{"ip": "10.42.0.7"}, {"ip": "fd00::7"}],
            "nominatedNodeName": "node-b",
            "conditions": [
                {"type": "example.com/lb-ready", "status": "True"},
                {"type": "example.com/feature", "status": "False"},
                {"type": "Ready", "status": "True"}],
            "containerStatuses": [running(true)]}),
    );
    let cells = wide_cells(pod_res(), &p);
    assert_eq!(
        cells,
        crate::cells![
            "web-0",
            "1/1",
            "Running",
            "0",
            "3h2m",
            "10.42.0.7",
            "node-a",
            "node-b",
            "1/2"
        ]
    );

    // Nothing set: <none> everywhere; podIPs alone still give the IP.
    p = pod(json!({}), json!({"phase": "Pending"}));
    assert_eq!(
        &wide_cells(pod_res(), &p)[5..],
        &crate::cells!["<none>", "<none>", "<none>", "<none>"][..]
    );
    p = pod(json!({}), json!({"podIPs": [{"ip": "fd00::9"}]}));
    assert_eq!(wide_cells(pod_res(), &p)[5], "fd00::9");
}

#[test]
fn missing_creation_timestamp_is_unknown() {
    let p = json!({"metadata": {"name": "x"}, "spec": {"containers": []}});
    assert_eq!(
        default_cells(pod_res(), &p),
        crate::cells!["x", "0/0", "", "0", "<unknown>"]
    );
}

#[test]
fn restart_suffix_uses_the_latest_termination() {
    let p = pod(
        json!({"containers": [{"name": "a"}, {"name": "b"}]}),
        json!({"phase": "Running", "containerStatuses": [
            {"name": "a", "ready": true, "restartCount": 1, "state": {"running": {}},
             "lastState": {"terminated": {"finishedAt": ago(3 * 86400)}}},
            {"name": "b", "ready": true, "restartCount": 10, "state": {"running": {}},
             "lastState": {"terminated": {"finishedAt": ago(90)}}}]}),
    );
    assert_eq!(summary(&p).2, "11 (90s ago)");
}
