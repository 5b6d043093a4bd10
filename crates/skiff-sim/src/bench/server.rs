//! The `skiff server --disable-agent` under test, as a child process on
//! 127.0.0.1 with a fresh data dir and a free port (so its memory is its
//! own), killed when dropped.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};

use super::client_from;

/// A running server process.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts `bin server` on a free loopback port; its log goes to
    /// `server.log` in its data dir.
    pub fn start(bin: &Path) -> anyhow::Result<ServerProcess> {
        let dir = tempfile::tempdir().context("creating the server's data dir")?;
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .context("finding a free loopback port")?
            .port();
        let log = File::create(dir.path().join("server.log")).context("creating server.log")?;
        let child = Command::new(bin)
            .arg("server")
            .arg("--disable-agent")
            // The scheduler is measured alone: no controllers (the garbage
            // collector would watch every pod too).
            .arg("--disable-controller-manager")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--bind-address", "127.0.0.1"])
            .args(["--https-listen-port", &port.to_string()])
            .arg("--write-kubeconfig")
            .arg(dir.path().join("kubeconfig.yaml"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(ServerProcess { child, dir })
    }

    /// The admin kubeconfig the server writes once it is up.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    /// Waits until the API answers, then returns a client.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<kube::Client> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("skiff server exited ({status}):\n{}", self.log_tail());
            }
            if self.kubeconfig().is_file()
                && let Ok(client) = client_from(&self.kubeconfig()).await
            {
                let ns: Api<Namespace> = Api::all(client.clone());
                if ns.list(&ListParams::default().limit(1)).await.is_ok() {
                    return Ok(client);
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

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The server's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
    pub fn status_kib(&self, field: &str) -> Option<u64> {
        proc_status_kib(&format!("/proc/{}/status", self.pid()), field)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Only the child this struct started, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A field of a `/proc/*/status` file in KiB.
pub fn proc_status_kib(path: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(path).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
