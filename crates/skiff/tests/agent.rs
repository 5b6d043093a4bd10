//! End to end: `skiff server` (as root, with its agent) runs pods as real
//! containers of the built-in runtime, driven by the real kubectl. Skipped
//! without root or busybox-static.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../skiff-runtime/tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const IMAGE: &str = "docker.io/library/busybox:latest";
const NODE: &str = "skiff-e2e";
const BRIDGE: &str = "skiffe2e0";
const NAT_TABLE: &str = "skiff-e2e-nat";
const CLUSTER_CIDR: &str = "10.244.0.0/16";

struct Cluster {
    dir: tempfile::TempDir,
    server: Child,
    ports: (u16, u16),
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    fn start() -> Option<Cluster> {
        if !is_root() || !support::have_busybox() {
            eprintln!("skipped: needs root and busybox-static");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("data/agent/images");
        std::fs::create_dir_all(&images).unwrap();
        support::write_oci_archive(
            &images.join("busybox.tar"),
            &[(&support::busybox_image(), Some(IMAGE))],
        );
        let ports = (free_port(), free_port());
        let server = spawn_server(dir.path(), ports);
        let cluster = Cluster { dir, server, ports };
        cluster.wait_ready();
        Some(cluster)
    }

    fn wait_ready(&self) {
        self.wait_for("node Ready with a podCIDR", Duration::from_secs(90), || {
            let node = self.get_json(&["get", "node", NODE])?;
            let ready = node["status"]["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            (ready && node["spec"]["podCIDR"].is_string()).then_some(())
        });
    }

    /// Stops the server (SIGTERM) and starts it again on the same data.
    fn restart(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.server.id().to_string()])
            .status();
        let status = self.server.wait().unwrap();
        assert!(status.success(), "server exited with {status}");
        self.server = spawn_server(self.dir.path(), self.ports);
        self.wait_ready();
    }

    fn kubectl(&self, args: &[&str]) -> std::process::Output {
        Command::new("/usr/bin/kubectl")
            .arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .args(args)
            .output()
            .unwrap()
    }

    fn get_json(&self, args: &[&str]) -> Option<Value> {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let out = self.kubectl(&a);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    fn apply(&self, manifest: &Value) {
        let path = self.dir.path().join("manifest.json");
        std::fs::write(&path, manifest.to_string()).unwrap();
        let out = self.kubectl(&["apply", "-f", path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn wait_for<T>(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f() {
                return v;
            }
            if Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
                let tail: String = log
                    .lines()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                panic!("timed out waiting for {what}\nserver log tail:\n{tail}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn pod(&self, name: &str) -> Option<Value> {
        self.get_json(&["get", "pod", name])
    }

    fn wait_pod(&self, name: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        self.wait_for(
            &format!("pod {name}: {what}"),
            Duration::from_secs(60),
            || self.pod(name).filter(|p| f(p)),
        )
    }

    fn logs(&self, args: &[&str]) -> String {
        let mut a = vec!["logs"];
        a.extend(args);
        let out = self.kubectl(&a);
        assert!(
            out.status.success(),
            "kubectl logs {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The container's log file as the kubelet laid it out.
    fn log(&self, pod: &Value, container: &str, n: u32) -> String {
        let dir = format!(
            "default_{}_{}",
            pod["metadata"]["name"].as_str().unwrap(),
            pod["metadata"]["uid"].as_str().unwrap()
        );
        let path = self
            .dir
            .path()
            .join("logs")
            .join(dir)
            .join(container)
            .join(format!("{n}.log"));
        std::fs::read_to_string(path).unwrap_or_default()
    }

    fn runtime_containers(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.dir.path().join("data/agent/runtime/containers"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The agent leaves containers running by design: kill what is left
        // (a failed test), then the server, then the host network bits.
        for dir in self.runtime_containers() {
            if let Ok(data) = std::fs::read(dir.join("container.json"))
                && let Ok(v) = serde_json::from_slice::<Value>(&data)
                && let Some(pid) = v["pid"].as_i64()
            {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.server.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.server.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let root = self.dir.path().to_string_lossy().into_owned();
        let mut targets: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4))
            .filter(|m| m.starts_with(&root))
            .collect();
        targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
        for t in targets {
            let _ = Command::new("umount").args(["-l", t]).status();
        }
        let _ = Command::new("ip").args(["link", "del", BRIDGE]).status();
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", NAT_TABLE])
            .status();
    }
}

fn spawn_server(dir: &Path, (port, kubelet_port): (u16, u16)) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["server", "--bind-address", "127.0.0.1"])
        .arg("--https-listen-port")
        .arg(port.to_string())
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--write-kubeconfig")
        .arg(dir.join("kubeconfig"))
        .args(["--node-name", NODE, "--node-ip", "127.0.0.1"])
        .args(["--cluster-cidr", CLUSTER_CIDR, "--disable-scheduler"])
        .args(["--pod-bridge", BRIDGE, "--pod-nat-table", NAT_TABLE])
        .arg("--kubelet-port")
        .arg(kubelet_port.to_string())
        .arg("--pod-log-dir")
        .arg(dir.join("logs"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn pod(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
           "spec": merge(json!({"nodeName": NODE, "terminationGracePeriodSeconds": 2}), spec)})
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

fn container(name: &str, command: &str) -> Value {
    json!({"name": name, "image": IMAGE, "imagePullPolicy": "IfNotPresent",
           "command": ["sh", "-c", command]})
}

fn state<'a>(p: &'a Value, container: &str) -> &'a Value {
    let statuses = p["status"]["containerStatuses"].as_array();
    statuses
        .and_then(|s| s.iter().find(|c| c["name"] == container))
        .unwrap_or(&Value::Null)
}

fn phase(p: &Value) -> &str {
    p["status"]["phase"].as_str().unwrap_or_default()
}

#[test]
fn a_single_node_cluster_runs_pods_as_containers() {
    let Some(mut c) = Cluster::start() else {
        return;
    };

    // Command, args and env expansion; a Never pod that completes.
    let mut echo = container("c", "echo hello $(GREETING) $0; echo done");
    echo["args"] = json!(["$(GREETING)-arg"]);
    echo["env"] = json!([{"name": "GREETING", "value": "world"},
                         {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]);
    echo["command"] = json!(["sh", "-c", "echo hello $(GREETING) $0 on $NODE"]);
    c.apply(&pod(
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

    // Init containers run in order and share an emptyDir with the main container.
    let mut main = container("main", "cat /work/order");
    main["volumeMounts"] = json!([{"name": "work", "mountPath": "/work"}]);
    let mut i1 = container("first", "echo first >> /work/order");
    i1["volumeMounts"] = main["volumeMounts"].clone();
    let mut i2 = container("second", "echo second >> /work/order");
    i2["volumeMounts"] = main["volumeMounts"].clone();
    c.apply(&pod(
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
    c.apply(&pod(
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
    c.apply(&pod("missing", json!({"containers": [missing]})));
    let p = c.wait_pod("missing", "CreateContainerConfigError", |p| {
        state(p, "m")["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    });
    assert_eq!(
        state(&p, "m")["state"]["waiting"]["message"],
        "configmap \"nope\" not found"
    );

    // A crashing container restarts with back-off.
    c.apply(&pod(
        "crash",
        json!({"containers": [container("c", "exit 3")]}),
    ));
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
    c.apply(&pod("badimage", json!({"containers": [bad]})));
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
    c.apply(&pod("probes", json!({"containers": [web, late, dying]})));
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
    c.apply(&pod(
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
        c.pod("web").is_none().then_some(())
    });

    // Restarting the server (and its agent) leaves running containers alone:
    // the new kubelet adopts them.
    c.apply(&pod(
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
