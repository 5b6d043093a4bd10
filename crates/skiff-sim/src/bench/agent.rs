//! A `skiff server` child process WITH its agent, as root, for the pod
//! benchmark: a private bridge, nft table, pod CIDR and data dir. Dropping
//! it cleans up what it created even after an error: leftover container
//! processes (pids the runtime recorded under the data dir), the server,
//! mounts under the temp dir, the bridge and the nft table.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;

use super::client_from;
use super::server::proc_status_kib;

/// The node the agent registers.
pub const NODE: &str = "skiff-bench";
/// The bench's private pod bridge.
pub const BRIDGE: &str = "skiffbench0";
/// The bench's private nft NAT table.
pub const NAT_TABLE: &str = "skiff-bench-nat";
/// The Service proxy's table of the benchmark's agent.
pub const PROXY_TABLE: &str = "skiff-bench-proxy";
/// The bench's cluster CIDR (distinct from the e2e tests' 10.244/16).
pub const CLUSTER_CIDR: &str = "10.245.0.0/16";

/// Whether this process runs as uid 0.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .context("finding a free loopback port")?
        .port())
}

/// A running `skiff server`, with or without its agent.
#[derive(Debug)]
pub struct AgentServer {
    child: Child,
    dir: tempfile::TempDir,
    agent: bool,
}

impl AgentServer {
    /// Starts `bin server` in a fresh temp dir. With `agent`, the node runs
    /// pods (no scheduler: the bench's pods name their node) and the busybox
    /// image is dropped into `<data-dir>/agent/images/` first.
    pub fn start(bin: &Path, agent: bool) -> anyhow::Result<AgentServer> {
        let dir = tempfile::tempdir().context("creating the server's temp dir")?;
        if agent {
            super::image::install_busybox(&dir.path().join("data/agent/images"))?;
        }
        // SKIFF_BENCH_SERVER_LOG keeps the server's log (with the filter in
        // SKIFF_BENCH_RUST_LOG) after the temp dir goes, for profiling.
        let log_path = std::env::var_os("SKIFF_BENCH_SERVER_LOG")
            .map_or_else(|| dir.path().join("server.log"), PathBuf::from);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let mut cmd = Command::new(bin);
        cmd.arg("server")
            .args(["--bind-address", "127.0.0.1"])
            .arg("--https-listen-port")
            .arg(free_port()?.to_string())
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--write-kubeconfig")
            .arg(dir.path().join("kubeconfig.yaml"));
        if agent {
            cmd.args(["--node-name", NODE, "--node-ip", "127.0.0.1"])
                .args(["--cluster-cidr", CLUSTER_CIDR, "--disable-scheduler"])
                .args(["--pod-bridge", BRIDGE, "--pod-nat-table", NAT_TABLE])
                .args(["--proxy-table", PROXY_TABLE])
                .arg("--kubelet-port")
                .arg(free_port()?.to_string())
                .arg("--pod-log-dir")
                .arg(dir.path().join("logs"));
        } else {
            cmd.arg("--disable-agent");
        }
        let child = cmd
            .env(
                "RUST_LOG",
                std::env::var("SKIFF_BENCH_RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(AgentServer { child, dir, agent })
    }

    /// The temp dir everything lives in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The data dir.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The built-in runtime's CRI socket.
    pub fn cri_socket(&self) -> PathBuf {
        self.data_dir().join("agent/run/cri.sock")
    }

    /// `VmRSS` of the server process, KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        proc_status_kib(&format!("/proc/{}/status", self.child.id()), "VmRSS")
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let path = std::env::var_os("SKIFF_BENCH_SERVER_LOG")
            .map_or_else(|| self.dir.path().join("server.log"), PathBuf::from);
        let log = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Waits until the API answers (and, with the agent, the node is Ready
    /// with a podCIDR); returns a client.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<kube::Client> {
        let deadline = Instant::now() + timeout;
        let kubeconfig = self.dir.path().join("kubeconfig.yaml");
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("skiff server exited ({status}):\n{}", self.log_tail());
            }
            if kubeconfig.is_file()
                && let Ok(client) = client_from(&kubeconfig).await
            {
                let nodes: Api<Node> = Api::all(client.clone());
                match nodes.get_opt(NODE).await {
                    Ok(_) if !self.agent => return Ok(client),
                    Ok(Some(node)) if node_ready(&node) => return Ok(client),
                    _ => {}
                }
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "skiff server not ready after {timeout:?}:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Container pids the runtime recorded under the data dir.
    fn container_pids(&self) -> Vec<i64> {
        let dir = self.data_dir().join("agent/runtime/containers");
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("container.json")).ok())
            .filter_map(|d| serde_json::from_slice::<serde_json::Value>(&d).ok())
            .filter_map(|v| v["pid"].as_i64())
            .filter(|pid| *pid > 1)
            .collect()
    }
}

fn node_ready(node: &Node) -> bool {
    let status = node.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let cidr = node.spec.as_ref().and_then(|s| s.pod_cidr.as_ref());
    ready && cidr.is_some()
}

impl Drop for AgentServer {
    fn drop(&mut self) {
        // Containers outlive the agent by design: kill the ones this run
        // left, then the server (TERM, then KILL), then host network bits.
        for pid in self.container_pids() {
            let _ = Command::new("kill")
                .args(["-9", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.agent {
            return;
        }
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
        let _ = Command::new("ip")
            .args(["link", "del", BRIDGE])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", NAT_TABLE])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", PROXY_TABLE])
            .stderr(Stdio::null())
            .status();
    }
}
