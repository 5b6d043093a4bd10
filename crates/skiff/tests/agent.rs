//! End to end: `skiff server` (as root, with its agent) runs pods as real
//! containers of the built-in runtime, driven by the real kubectl. Skipped
//! without root or busybox-static.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;

use std::time::Duration;

use cluster::{Cluster, Names, container, phase, state};
use serde_json::{Value, json};

const NODE: &str = "skiff-e2e";
const NAMES: Names = Names {
    node: NODE,
    bridge: "skiffe2e0",
    nat_table: "skiff-e2e-nat",
    cluster_cidr: "10.244.0.0/16",
    scheduler: false,
};

#[test]
fn a_single_node_cluster_runs_pods_as_containers() {
    let Some(mut c) = Cluster::start(NAMES) else {
        return;
    };

    // The in-process controller manager's metrics are on the API server's
    // /metrics (kubectl get --raw), next to the API server's own.
    let metrics = c.wait_for(
        "serviceaccount syncs on /metrics",
        Duration::from_secs(30),
        || {
            let out = c.kubectl(&["get", "--raw", "/metrics"]);
            let text = String::from_utf8(out.stdout).ok()?;
            text.lines()
                .any(|l| {
                    l.strip_prefix(
                        r#"skiff_controller_syncs_total{controller="serviceaccount",result="success"} "#,
                    )
                    .is_some_and(|n| n != "0")
                })
                .then_some(text)
        },
    );
    for line in [
        r#"leader_election_master_status{name="kube-controller-manager"} 1"#,
        r#"skiff_controller_workers{controller="namespace"} 10"#,
        r#"workqueue_depth{name="replicaset"} "#,
        "# TYPE workqueue_adds_total counter",
        "# TYPE apiserver_request_total counter",
    ] {
        assert!(metrics.contains(line), "no {line} in\n{metrics}");
    }

    // Command, args and env expansion; a Never pod that completes.
    let mut echo = container("c", "echo hello $(GREETING) $0; echo done");
    echo["args"] = json!(["$(GREETING)-arg"]);
    echo["env"] = json!([{"name": "GREETING", "value": "world"},
                         {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]);
    echo["command"] = json!(["sh", "-c", "echo hello $(GREETING) $0 on $NODE"]);
    c.apply(&c.pod(
        "echo",
        json!({"restartPolicy": "Never", "containers": [echo]}),
    ));
    let p = c.wait_pod("echo", "Succeeded", |p| phase(p) == "Succeeded");
    let term = &state(&p, "c")["state"]["terminated"];
    assert_eq!(term["exitCode"], 0, "{p}");
    assert_eq!(term["reason"], "Completed");
    assert!(
        p["status"]["podIP"]
            .as_str()
            .unwrap_or_default()
            .starts_with("10.244."),
        "{p}"
    );
    let log = c.log(&p, "c", 0);
    assert!(
        log.contains(&format!("hello world world-arg on {NODE}")),
        "{log}"
    );
    // kubectl logs goes API server -> kubelet.
    assert_eq!(
        c.logs(&["echo"]),
        format!("hello world world-arg on {NODE}\n")
    );

    // Service environment variables: the Services of the pod's namespace,
    // and the API server's `kubernetes` Service even with links off.
    c.apply(&json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "echo-svc", "namespace": "default"},
        "spec": {"ports": [{"name": "http", "port": 8080}]}}));
    let cluster_ip = |name: &str| {
        let s = c.get_json(&["get", "service", name]).unwrap();
        let port = s["spec"]["ports"][0]["port"].as_i64().unwrap();
        (s["spec"]["clusterIP"].as_str().unwrap().to_owned(), port)
    };
    let ((kip, kport), (sip, _)) = (cluster_ip("kubernetes"), cluster_ip("echo-svc"));
    let show = "echo k=$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT \
                s=$ECHO_SVC_SERVICE_HOST:$ECHO_SVC_SERVICE_PORT_HTTP l=$ECHO_SVC_PORT";
    for (name, links) in [("links", true), ("no-links", false)] {
        c.apply(&c.pod(
            name,
            json!({"restartPolicy": "Never", "enableServiceLinks": links,
                   "containers": [container("c", show)]}),
        ));
        let p = c.wait_pod(name, "Succeeded", |p| phase(p) == "Succeeded");
        let want = if links {
            format!("k={kip}:{kport} s={sip}:8080 l=tcp://{sip}:8080")
        } else {
            format!("k={kip}:{kport} s=: l=")
        };
        let log = c.log(&p, "c", 0);
        assert!(
            log.trim_end().ends_with(&want),
            "{name}: {log:?} want {want:?}"
        );
    }

    // Init containers run in order and share an emptyDir with the main container.
    let mut main = container("main", "cat /work/order");
    main["volumeMounts"] = json!([{"name": "work", "mountPath": "/work"}]);
    let mut i1 = container("first", "echo first >> /work/order");
    i1["volumeMounts"] = main["volumeMounts"].clone();
    let mut i2 = container("second", "echo second >> /work/order");
    i2["volumeMounts"] = main["volumeMounts"].clone();
    c.apply(&c.pod(
        "init",
        json!({"restartPolicy": "Never", "initContainers": [i1, i2],
        "containers": [main], "volumes": [{"name": "work", "emptyDir": {}}]}),
    ));
    let p = c.wait_pod("init", "Succeeded", |p| phase(p) == "Succeeded");
    let log = c.log(&p, "main", 0);
    let lines: Vec<&str> = log
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap_or_default())
        .collect();
    assert_eq!(lines, ["first", "second"], "{log}");

    // ConfigMap as env and as a volume.
    c.apply(
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
        "data": {"colour": "blue", "size": "large"}}),
    );
    let mut reader = container("r", "echo env=$COLOUR; cat /cfg/size");
    reader["env"] = json!([{"name": "COLOUR", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "colour"}}}]);
    reader["volumeMounts"] = json!([{"name": "cfg", "mountPath": "/cfg"}]);
    c.apply(&c.pod(
        "cfg",
        json!({"restartPolicy": "Never", "containers": [reader],
        "volumes": [{"name": "cfg", "configMap": {"name": "settings"}}]}),
    ));
    let p = c.wait_pod("cfg", "Succeeded", |p| phase(p) == "Succeeded");
    let log = c.log(&p, "r", 0);
    assert!(log.contains("env=blue") && log.contains("large"), "{log}");

    // A missing ConfigMap: CreateContainerConfigError, as upstream.
    let mut missing = container("m", "true");
    missing["env"] =
        json!([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}]);
    c.apply(&c.pod("missing", json!({"containers": [missing]})));
    let p = c.wait_pod("missing", "CreateContainerConfigError", |p| {
        state(p, "m")["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    });
    assert_eq!(
        state(&p, "m")["state"]["waiting"]["message"],
        "configmap \"nope\" not found"
    );

    // A crashing container restarts with back-off.
    c.apply(&c.pod("crash", json!({"containers": [container("c", "exit 3")]})));
    let p = c.wait_pod("crash", "CrashLoopBackOff", |p| {
        state(p, "c")["state"]["waiting"]["reason"] == "CrashLoopBackOff"
            && state(p, "c")["restartCount"].as_i64() >= Some(1)
    });
    assert_eq!(
        state(&p, "c")["lastState"]["terminated"]["exitCode"],
        3,
        "{p}"
    );
    assert_eq!(c.logs(&["crash", "--previous"]), "");
    assert!(
        c.kubectl(&["logs", "crash", "-c", "nope"])
            .stderr
            .starts_with(b"error: container nope is not valid for pod crash")
    );
    assert!(
        state(&p, "c")["state"]["waiting"]["message"]
            .as_str()
            .unwrap()
            .starts_with("back-off 10s restarting failed container=c pod=crash_default("),
        "{p}"
    );

    // An unpullable image: ErrImagePull, then ImagePullBackOff.
    let mut bad = container("b", "true");
    bad["image"] = json!("127.0.0.1:1/nothing/here:v1");
    c.apply(&c.pod("badimage", json!({"containers": [bad]})));
    c.wait_pod("badimage", "ErrImagePull or ImagePullBackOff", |p| {
        matches!(
            state(p, "b")["state"]["waiting"]["reason"].as_str(),
            Some("ErrImagePull" | "ImagePullBackOff")
        )
    });

    // Probes: readiness over HTTP to the pod's address (busybox httpd) and
    // by exec; a failing liveness probe restarts its container.
    let mut web = container(
        "httpd",
        "mkdir -p /www && echo ok > /www/index.html && httpd -f -p 8080 -h /www",
    );
    web["readinessProbe"] =
        json!({"httpGet": {"path": "/index.html", "port": 8080}, "periodSeconds": 1});
    let mut late = container("late", "sleep 2; touch /tmp/ready; sleep 3600");
    late["readinessProbe"] =
        json!({"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1});
    let mut dying = container("dying", "sleep 3600");
    dying["livenessProbe"] = json!({"exec": {"command": ["cat", "/tmp/never"]},
        "periodSeconds": 1, "failureThreshold": 2});
    c.apply(&c.pod("probes", json!({"containers": [web, late, dying]})));
    let p = c.wait_pod("probes", "httpd and late ready, dying restarted", |p| {
        state(p, "httpd")["ready"] == true
            && state(p, "late")["ready"] == true
            && state(p, "dying")["restartCount"].as_i64() >= Some(1)
    });
    assert_eq!(
        state(&p, "dying")["ready"],
        true,
        "no readiness probe: ready while running"
    );
    let events = c.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=probes",
        "-o",
        "json",
    ]);
    let events: Value = serde_json::from_slice(&events.stdout).unwrap();
    let notes: Vec<String> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["reason"].as_str().unwrap_or_default(),
                e["message"].as_str().unwrap_or_default()
            )
        })
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("Unhealthy Liveness probe failed")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n == "Killing Container dying failed liveness probe, will be restarted"),
        "{notes:?}"
    );

    // A long-running pod is Running and Ready; deleting it stops the
    // container within the grace period and removes the object.
    c.apply(&c.pod(
        "web",
        json!({"containers": [container("w", "trap 'exit 0' TERM; while true; do sleep 1; done")]}),
    ));
    let p = c.wait_pod("web", "Ready", |p| {
        phase(p) == "Running"
            && p["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
    });
    assert_eq!(state(&p, "w")["ready"], true);
    assert_eq!(p["status"]["qosClass"], "BestEffort");
    let before = c.runtime_containers().len();
    assert!(before > 0);
    let out = c.kubectl(&["delete", "pod", "web", "--wait=false"]);
    assert!(out.status.success());
    c.wait_for("pod web gone", Duration::from_secs(30), || {
        c.get_pod("web").is_none().then_some(())
    });

    // Restarting the server (and its agent) leaves running containers alone:
    // the new kubelet adopts them.
    c.apply(&c.pod(
        "survivor",
        json!({"containers": [container("s", "sleep 3600")]}),
    ));
    let before = c.wait_pod("survivor", "Running", |p| {
        state(p, "s")["state"]["running"].is_object()
    });
    c.restart();
    std::thread::sleep(Duration::from_secs(3));
    let after = c.wait_pod("survivor", "Running after restart", |p| {
        state(p, "s")["state"]["running"].is_object()
    });
    assert_eq!(
        state(&after, "s")["containerID"],
        state(&before, "s")["containerID"],
        "{after}"
    );
    assert_eq!(state(&after, "s")["restartCount"], 0);
    // Its pod cgroup stays too: the clean-up of orphaned pod cgroups at
    // start knows the pod.
    let pod_cgroup = format!(
        "{}/besteffort/pod{}",
        cluster::kubepods(NODE),
        after["metadata"]["uid"].as_str().unwrap()
    );
    let roots = skiff_sys::cgroups::hierarchy_roots().unwrap();
    assert!(
        roots
            .iter()
            .any(|r| skiff_sys::cgroups::cgroup_dir(r, &pod_cgroup).is_dir()),
        "{pod_cgroup} gone after the restart"
    );

    // A sandbox that died while the agent was away (here its network
    // namespace's pin is gone, as after a restart of the host) is not ready
    // when the agent comes back: the kubelet stops it, which gives its
    // address back, and runs the pod's containers again in a new one.
    let uid = after["metadata"]["uid"].as_str().unwrap().to_owned();
    let old_ip = after["status"]["podIP"].as_str().unwrap().to_owned();
    let agent_dir = c.dir.path().join("data/agent");
    let owners = || {
        // The addresses on record and the sandbox holding each.
        let networks = agent_dir.join("runtime/network/networks");
        let mut held = Vec::new();
        for dir in std::fs::read_dir(&networks).unwrap().flatten() {
            let on_record = skiff_runtime::network::ipam::allocations_in(&dir.path()).unwrap();
            held.extend(
                on_record
                    .into_iter()
                    .map(|(ip, owner)| (ip.to_string(), owner)),
            );
        }
        held
    };
    let sandboxes_of_pod = || {
        std::fs::read_dir(agent_dir.join("runtime/sandboxes"))
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read_to_string(e.path().join("sandbox.json"))
                    .is_ok_and(|r| r.contains(&uid))
            })
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
    };
    let old_sandboxes = sandboxes_of_pod();
    assert_eq!(old_sandboxes.len(), 1, "{old_sandboxes:?}");
    assert!(
        owners().contains(&(old_ip.clone(), old_sandboxes[0].clone())),
        "{:?}",
        owners()
    );
    c.stop();
    let pin = agent_dir.join("run/netns").join(&old_sandboxes[0]);
    let out = std::process::Command::new("umount")
        .arg("-l")
        .arg(&pin)
        .output()
        .unwrap();
    assert!(out.status.success(), "umount {}: {out:?}", pin.display());
    c.start_again();
    let renewed = c.wait_pod("survivor", "Running in a new sandbox", |p| {
        state(p, "s")["state"]["running"].is_object()
            && state(p, "s")["containerID"] != state(&after, "s")["containerID"]
    });
    assert_eq!(state(&renewed, "s")["restartCount"], 1, "{renewed}");
    let new_ip = renewed["status"]["podIP"].as_str().unwrap().to_owned();
    let now = sandboxes_of_pod();
    let new_sandbox = now
        .iter()
        .find(|s| **s != old_sandboxes[0])
        .unwrap()
        .clone();
    let held = owners();
    assert!(held.contains(&(new_ip, new_sandbox)), "{held:?}");
    assert!(
        !held.iter().any(|(_, owner)| *owner == old_sandboxes[0]),
        "the dead sandbox still holds an address: {held:?}"
    );

    // Every pod deleted: the runtime holds nothing afterwards.
    let out = c.kubectl(&["delete", "pods", "--all", "--wait=false"]);
    assert!(out.status.success());
    c.wait_for("all pods gone", Duration::from_secs(60), || {
        let list = c.get_json(&["get", "pods"])?;
        list["items"].as_array()?.is_empty().then_some(())
    });
    c.wait_for("runtime empty", Duration::from_secs(20), || {
        c.runtime_containers().is_empty().then_some(())
    });
    let node = c.get_json(&["get", "node", NODE]).unwrap();
    assert!(
        node["status"]["nodeInfo"]["containerRuntimeVersion"]
            .as_str()
            .unwrap()
            .starts_with("skiff://")
    );
    assert!(
        node["status"]["images"]
            .as_array()
            .is_some_and(|i| !i.is_empty()),
        "{node}"
    );
}
