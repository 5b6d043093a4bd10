//! The end-to-end harness: `skiff server` (as root, with its agent) in a
//! temp dir, driven by the real kubectl. Shared by the e2e test binaries.
//! `multinode` builds on it: several agents, each in its own network
//! namespace, for traffic across nodes (see its module docs).
#![allow(dead_code)]

#[path = "../../../skiff-runtime/tests/it/support/mod.rs"]
pub mod support;

pub mod multinode;

pub use skiff_sys::process::is_root;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const IMAGE: &str = "docker.io/library/busybox:latest";

/// What keeps clusters of different test binaries apart on one host (they
/// run at the same time): node name, bridge, NAT table and cluster CIDR.
#[derive(Debug, Clone, Copy)]
pub struct Names {
    pub node: &'static str,
    pub bridge: &'static str,
    pub nat_table: &'static str,
    pub cluster_cidr: &'static str,
    /// Run the scheduler (pods without a nodeName get placed).
    pub scheduler: bool,
}

/// How the server runs beyond [`Names`]; the default is on loopback with its
/// own agent.
#[derive(Debug, Clone, Default)]
pub struct ServerOpts {
    /// Address the API server binds and its kubeconfig names (default 127.0.0.1).
    pub bind_address: Option<String>,
    /// No in-process agent: nodes join with `skiff agent` (see `multinode`).
    pub disable_agent: bool,
    /// Further `skiff server` flags.
    pub extra_args: Vec<String>,
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub names: Names,
    server: Child,
    /// API server, kubelet and proxy-metrics ports.
    ports: (u16, u16, u16),
    opts: ServerOpts,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    pub fn start(names: Names) -> Option<Cluster> {
        if !is_root() || !support::have_busybox() {
            eprintln!("skipped: needs root and busybox-static");
            return None;
        }
        Some(Self::start_with(names, ServerOpts::default()))
    }

    /// Starts the server with `opts` (the caller checked root and busybox).
    pub fn start_with(names: Names, opts: ServerOpts) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        if !opts.disable_agent {
            write_airgap_busybox(&dir.path().join("data"));
        }
        let ports = (free_port(), free_port(), free_port());
        let server = spawn_server(dir.path(), ports, names, &opts);
        let cluster = Cluster {
            dir,
            names,
            server,
            ports,
            opts,
        };
        cluster.wait_ready();
        cluster
    }

    /// Where the agent serves the proxy's metrics (127.0.0.1).
    pub fn proxy_metrics_port(&self) -> u16 {
        self.ports.2
    }

    pub fn wait_ready(&self) {
        if self.opts.disable_agent {
            self.wait_for("API server ready", Duration::from_secs(60), || {
                let out = self.kubectl(&["get", "--raw", "/readyz"]);
                out.status.success().then_some(())
            });
            return;
        }
        self.wait_for("node Ready with a podCIDR", Duration::from_secs(90), || {
            let node = self.get_json(&["get", "node", self.names.node])?;
            let ready = node["status"]["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            (ready && node["spec"]["podCIDR"].is_string()).then_some(())
        });
    }

    /// Stops the server (SIGTERM) and starts it again on the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Stops the server (SIGTERM); containers keep running.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.server.id().to_string()])
            .status();
        let status = self.server.wait().unwrap();
        assert!(status.success(), "server exited with {status}");
    }

    /// Starts the server again on the same data after [`Cluster::stop`].
    pub fn start_again(&mut self) {
        self.server = spawn_server(self.dir.path(), self.ports, self.names, &self.opts);
        self.wait_ready();
    }

    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        Command::new("/usr/bin/kubectl")
            .arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .args(args)
            .output()
            .unwrap()
    }

    /// `kubectl` (or another kubectl binary) with `env` set and `stdin` fed.
    pub fn kubectl_with(
        &self,
        kubectl: &str,
        env: &[(&str, &str)],
        args: &[&str],
        stdin: &[u8],
    ) -> std::process::Output {
        use std::io::Write;
        let mut child = Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin).unwrap();
        drop(input);
        child.wait_with_output().unwrap()
    }

    pub fn get_json(&self, args: &[&str]) -> Option<Value> {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let out = self.kubectl(&a);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    pub fn apply(&self, manifest: &Value) {
        let path = self.dir.path().join("manifest.json");
        std::fs::write(&path, manifest.to_string()).unwrap();
        let out = self.kubectl(&["apply", "-f", path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut() -> Option<T>,
    ) -> T {
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

    pub fn get_pod(&self, name: &str) -> Option<Value> {
        self.get_json(&["get", "pod", name])
    }

    pub fn wait_pod(&self, name: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        self.wait_for(
            &format!("pod {name}: {what}"),
            Duration::from_secs(60),
            || self.get_pod(name).filter(|p| f(p)),
        )
    }

    pub fn logs(&self, args: &[&str]) -> String {
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
    pub fn log(&self, pod: &Value, container: &str, n: u32) -> String {
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

    pub fn runtime_containers(&self) -> Vec<PathBuf> {
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
        // The kubelet leaves its node and QoS cgroups (as upstream's does).
        remove_cgroup_root(self.names.node);
        let _ = Command::new("ip")
            .args(["link", "del", self.names.bridge])
            .status();
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", self.names.nat_table])
            .status();
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &proxy_table(&self.names)])
            .status();
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &netpol_table(&self.names)])
            .status();
    }
}

/// The `--cgroup-root` of node `node`'s kubelet: clusters of different test
/// binaries share the host's cgroups, and each kubelet removes the pod
/// cgroups it does not know under its own root.
pub fn cgroup_root(node: &str) -> String {
    format!("/skiff-test-{node}")
}

/// The node's cgroup hierarchy, path → its `kubepods` cgroup.
pub fn kubepods(node: &str) -> String {
    format!("{}/kubepods", cgroup_root(node))
}

/// Removes what is left of node `node`'s cgroups (its pods' processes are gone).
pub fn remove_cgroup_root(node: &str) {
    let root = cgroup_root(node);
    for _ in 0..20 {
        if skiff_sys::cgroups::remove_cgroup(&root).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The Service proxy's table of this cluster (apart from other tests').
pub fn proxy_table(names: &Names) -> String {
    format!("{}-proxy", names.nat_table)
}

/// The NetworkPolicy enforcer's table of this cluster.
pub fn netpol_table(names: &Names) -> String {
    format!("{}-netpol", names.nat_table)
}

/// Puts the busybox image where an agent with data dir `data_dir` imports it
/// at start (air-gap images).
pub fn write_airgap_busybox(data_dir: &Path) {
    let images = data_dir.join("agent/images");
    std::fs::create_dir_all(&images).unwrap();
    support::write_oci_archive(
        &images.join("busybox.tar"),
        &[(&support::busybox_image(), Some(IMAGE))],
    );
}

fn spawn_server(
    dir: &Path,
    (port, kubelet_port, metrics_port): (u16, u16, u16),
    names: Names,
    opts: &ServerOpts,
) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["server", "--bind-address"])
        .arg(opts.bind_address.as_deref().unwrap_or("127.0.0.1"))
        .args(if opts.disable_agent {
            &["--disable-agent"][..]
        } else {
            &[][..]
        })
        .args(&opts.extra_args)
        .arg("--https-listen-port")
        .arg(port.to_string())
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--write-kubeconfig")
        .arg(dir.join("kubeconfig"))
        .args(["--node-name", names.node, "--node-ip", "127.0.0.1"])
        .args(["--cluster-cidr", names.cluster_cidr])
        .args(if names.scheduler {
            &[][..]
        } else {
            &["--disable-scheduler"][..]
        })
        .args([
            "--pod-bridge",
            names.bridge,
            "--pod-nat-table",
            names.nat_table,
        ])
        .arg("--proxy-table")
        .arg(proxy_table(&names))
        .arg("--network-policy-table")
        .arg(netpol_table(&names))
        .arg("--kubelet-port")
        .arg(kubelet_port.to_string())
        .arg("--proxy-metrics-bind-address")
        .arg(format!("127.0.0.1:{metrics_port}"))
        .arg("--pod-log-dir")
        .arg(dir.join("logs"))
        .arg("--cgroup-root")
        .arg(cgroup_root(names.node))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

impl Cluster {
    /// A pod manifest bound to this cluster's node.
    pub fn pod(&self, name: &str, spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
               "spec": merge(json!({"nodeName": self.names.node, "terminationGracePeriodSeconds": 2}), spec)})
    }
}

pub fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

pub fn container(name: &str, command: &str) -> Value {
    json!({"name": name, "image": IMAGE, "imagePullPolicy": "IfNotPresent",
           "command": ["sh", "-c", command]})
}

pub fn state<'a>(p: &'a Value, container: &str) -> &'a Value {
    let statuses = p["status"]["containerStatuses"].as_array();
    statuses
        .and_then(|s| s.iter().find(|c| c["name"] == container))
        .unwrap_or(&Value::Null)
}

pub fn phase(p: &Value) -> &str {
    p["status"]["phase"].as_str().unwrap_or_default()
}
