//! The `skiff server` under test, as a separate process (so its memory can
//! be read from `/proc/<pid>/status`), built with the same profile and
//! target directory as the benchmark itself.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context;

/// Builds the `skiff` binary next to this benchmark's executable (same
/// target directory and profile) and returns its path. `SKIFF_BIN` names a
/// prebuilt binary instead.
pub fn build_skiff() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("SKIFF_BIN") {
        return Ok(PathBuf::from(bin));
    }
    // <target>/<profile dir>/deps/apiserver-<hash>
    let exe = std::env::current_exe().context("locating the benchmark executable")?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the benchmark executable is not under <target>/<profile>/deps")?;
    let target_dir = profile_dir
        .parent()
        .context("the benchmark executable is not under <target>/<profile>/deps")?;
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        // `cargo bench` writes the bench profile into `release`.
        Some("release") => "bench",
        Some(other) => other,
        None => "bench",
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!(
        "building skiff (--profile {profile}) into {}",
        target_dir.display()
    );
    let mut build = Command::new(cargo);
    // Without the variables `cargo bench` set for this run, so the build
    // sees what a plain `cargo build` does and reuses its artifacts.
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if RUN_ENV_PREFIXES.iter().any(|p| name.starts_with(p)) || RUN_ENV.contains(&name) {
            build.env_remove(name);
        }
    }
    let status = build
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_TARGET_DIR", target_dir)
        .args([
            "build",
            "--profile",
            profile,
            "-p",
            "skiff",
            "--bin",
            "skiff",
        ])
        .status()
        .context("running cargo build for the skiff binary")?;
    anyhow::ensure!(status.success(), "cargo build -p skiff failed: {status}");
    let bin = profile_dir.join("skiff");
    anyhow::ensure!(bin.is_file(), "no skiff binary at {}", bin.display());
    Ok(bin)
}

/// Variables cargo sets for the benchmark's run (not for builds).
const RUN_ENV_PREFIXES: &[&str] = &["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_BIN_"];
const RUN_ENV: &[&str] = &[
    "CARGO_CRATE_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "OUT_DIR",
];

/// A running `skiff server --disable-agent` on 127.0.0.1, killed when
/// dropped (on every exit path, panics included).
pub struct ServerProcess {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts `bin` on a free loopback port with a fresh data dir; its log
    /// goes to `server.log` in that dir.
    pub fn start(bin: &Path) -> anyhow::Result<ServerProcess> {
        let dir = tempfile::tempdir().context("creating the server's data dir")?;
        let port = free_port()?;
        let log = File::create(dir.path().join("server.log")).context("creating server.log")?;
        let child = Command::new(bin)
            .arg("server")
            .arg("--disable-agent")
            // The API server alone: an in-process scheduler would answer
            // every created pod with a status patch and an event, and the
            // controller manager would watch every resource.
            .arg("--disable-scheduler")
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
        Ok(ServerProcess { child, port, dir })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The HTTPS port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin kubeconfig the server writes once it is up.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    /// Errors if the process has exited, with the end of its log.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => anyhow::bail!(
                "skiff server exited ({status}); its log ends with:\n{}",
                self.log_tail()
            ),
        }
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
    pub fn status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find(|l| l.starts_with(field))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Only the child this struct started, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}
