//! End to end: `kubectl port-forward` through the API server (SPDY tunnelled
//! in a WebSocket, and plain SPDY), the kubelet and the built-in runtime's
//! streaming server into a pod's network namespace, with the real kubectl:
//! several connections at once, bytes intact both ways, `svc/NAME`, and
//! upstream's error when nothing listens on the port.
//! Skipped without root or busybox-static.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use cluster::{Cluster, Names, container, phase};
use serde_json::json;

const NAMES: Names = Names {
    node: "skiff-portfwd",
    bridge: "skiffpf0",
    nat_table: "skiff-portfwd-nat",
    cluster_cidr: "10.249.0.0/16",
    scheduler: true,
};
const KUBECTL: &str = "/usr/bin/kubectl";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `kubectl port-forward`; killed (by its PID) on drop.
struct Forward {
    child: Child,
    stderr: mpsc::Receiver<String>,
}

impl Forward {
    /// Starts `kubectl port-forward TARGET MAPPINGS...` and waits until it
    /// listens on every mapping.
    fn start(c: &Cluster, env: &[(&str, &str)], target: &str, mappings: &[String]) -> Forward {
        let mut cmd = Command::new(KUBECTL);
        cmd.arg("--kubeconfig")
            .arg(c.dir.path().join("kubeconfig"))
            // -v=4 shows a fallback from the WebSocket tunnel to SPDY.
            .args(["-v=4", "port-forward", "--address", "127.0.0.1", target])
            .args(mappings)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let (err_tx, err_rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = err_tx.send(line);
            }
        });
        let (out_tx, out_rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = out_tx.send(line);
            }
        });
        let mut forward = Forward {
            child,
            stderr: err_rx,
        };
        let mut listening = 0;
        while listening < mappings.len() {
            match out_rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) if line.starts_with("Forwarding from 127.0.0.1:") => listening += 1,
                Ok(_) => {}
                Err(_) => panic!(
                    "kubectl port-forward {target} did not start: {}",
                    forward.stderr_text()
                ),
            }
        }
        forward
    }

    fn stderr_text(&mut self) -> String {
        let _ = self.child.try_wait();
        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Bytes unlike their neighbours, so a lost or repeated chunk shows.
fn payload(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// Sends `data` through 127.0.0.1:`port`, closes the sending side and
/// returns everything that came back until the other side closed.
fn round_trip(port: u16, data: &[u8]) -> Vec<u8> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = conn.try_clone().unwrap();
    let data = data.to_vec();
    // Write and read at once: the echo answers while we still send.
    let sender = std::thread::spawn(move || {
        writer.write_all(&data).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    conn.read_to_end(&mut back).unwrap();
    sender.join().unwrap();
    back
}

/// Several connections at once through `port` to the echo server, each
/// with its own bytes.
fn check_echo(port: u16, connections: u32, len: usize) {
    let threads: Vec<_> = (0..connections)
        .map(|i| {
            std::thread::spawn(move || {
                let data = payload(i + 1, len);
                let back = round_trip(port, &data);
                assert_eq!(back.len(), data.len(), "connection {i}: length");
                assert!(back == data, "connection {i}: bytes differ");
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn kubectl_port_forward_carries_connections_into_the_pod() {
    let Some(c) = Cluster::start(NAMES) else {
        return;
    };
    // An echo server on the pod's port 80 (bound to every address, so
    // also the pod's loopback); nothing on 81.
    let mut pod = c.pod(
        "echo",
        json!({"containers": [merge_port(container("main", "exec nc -ll -p 80 -e cat"), 80)]}),
    );
    pod["metadata"]["labels"] = json!({"app": "echo"});
    // Running means nc was started, not that it listens yet: wait for a
    // probe to reach the port.
    pod["spec"]["containers"][0]["readinessProbe"] =
        json!({"tcpSocket": {"port": 80}, "periodSeconds": 1});
    c.apply(&pod);
    c.apply(&json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "echo", "namespace": "default"},
        "spec": {"selector": {"app": "echo"},
                 "ports": [{"name": "web", "port": 8080, "targetPort": 80}]}
    }));
    c.wait_pod("echo", "Ready", |p| {
        p["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
    });

    // kubectl 1.33: SPDY tunnelled through a WebSocket to the API server.
    let (local, refused) = (free_port(), free_port());
    let mut fwd = Forward::start(
        &c,
        &[],
        "pod/echo",
        &[format!("{local}:80"), format!("{refused}:81")],
    );
    check_echo(local, 4, 300_000);
    // Short exchanges on fresh connections, one after another.
    for i in 0..5 {
        let data = payload(100 + i, 10 + i as usize);
        assert!(round_trip(local, &data) == data, "short exchange {i}");
    }

    // The tunnel was used: no fallback to plain SPDY.
    let stderr = fwd.stderr_text();
    assert!(!stderr.to_lowercase().contains("fallback"), "{stderr}");

    // Nothing listens on 81: the connection closes without data and
    // kubectl prints the error the runtime put on the error stream.
    let mut conn = TcpStream::connect(("127.0.0.1", refused)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // kubectl may close the connection before or after this arrives.
    let _ = conn.write_all(b"anyone?");
    let mut back = Vec::new();
    let _ = conn.read_to_end(&mut back);
    assert!(back.is_empty(), "{} bytes from a closed port", back.len());
    let mut stderr = stderr;
    for _ in 0..100 {
        stderr.push_str(&fwd.stderr_text());
        if stderr.contains("connection refused") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        stderr.contains("error forwarding port 81 to pod")
            && stderr.contains("failed to connect to localhost:81")
            && stderr.contains("connection refused"),
        "{stderr}"
    );
    drop(fwd);

    // SPDY straight through (kubectl's fallback), to the Service's port:
    // kubectl picks a pod behind it and its target port.
    let local = free_port();
    let _fwd = Forward::start(
        &c,
        &[("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")],
        "svc/echo",
        &[format!("{local}:8080")],
    );
    check_echo(local, 3, 200_000);

    // The official Python client: WebSocket `v4.channel.k8s.io`, proxied
    // as it is to the runtime.
    let python =
        std::env::var("SKIFF_PYTHON").unwrap_or_else(|_| "/opt/skiff-py/bin/python".into());
    // Bounded: a hang shows as a traceback, not a stuck test.
    let out = Command::new("timeout")
        .args(["-s", "ABRT", "60"])
        .arg(&python)
        .args(["-X", "faulthandler"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/port_forward.py"
        ))
        .arg(c.dir.path().join("kubeconfig"))
        .arg("echo")
        .output()
        .unwrap_or_else(|e| panic!("running {python} (install it with scripts/test): {e}"));
    assert!(
        out.status.success(),
        "python portforward():\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A pod that is not running is refused by kubectl, from its status.
    c.apply(&c.pod(
        "done",
        json!({"restartPolicy": "Never", "containers": [container("main", "true")]}),
    ));
    c.wait_pod("done", "Succeeded", |p| phase(p) == "Succeeded");
    let out = c.kubectl(&["port-forward", "pod/done", &format!("{}:80", free_port())]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pod is not running"), "{stderr}");
}

fn merge_port(mut container: serde_json::Value, port: u16) -> serde_json::Value {
    container["ports"] = json!([{"containerPort": port}]);
    container
}
