//! Real etcd processes for tests and benchmarks: a single member
//! ([`EtcdProcess`]) or a static multi-member cluster ([`EtcdCluster`]), on
//! free loopback ports with temporary data directories.
//!
//! Self-contained (std, tokio, tempfile, etcd-client only), so benchmarks can
//! include it with `#[path = "../tests/support/etcd.rs"] mod etcd;`.
//!
//! Each member runs `/usr/bin/etcd` (override with `SKIFF_TEST_ETCD`) with
//! short raft timings (50 ms heartbeat, 500 ms election timeout) so that
//! failover takes well under a second, and with `--max-request-bytes` raised
//! by 8 KiB so that a value of exactly `MAX_VALUE_BYTES` plus its key and
//! transaction framing fits. Its output goes to `etcd.log` in its temporary
//! directory; a failed start panics with the tail of that log. Members are
//! killed with SIGKILL (by PID, through `std::process::Child`) and reaped on
//! drop.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions};
use tempfile::TempDir;

/// How long a member or cluster may take to become healthy.
const START_DEADLINE: Duration = Duration::from_secs(20);
/// How many times to retry a start that failed (e.g. a port taken meanwhile).
const START_ATTEMPTS: usize = 3;
/// 1.5 MiB (Skiff's value limit) + 8 KiB for the key and txn framing.
const MAX_REQUEST_BYTES: usize = 1536 * 1024 + 8 * 1024;

/// One etcd member process. Killed (SIGKILL) and reaped on drop.
pub struct EtcdProcess {
    name: String,
    client_url: String,
    peer_url: String,
    initial_cluster: String,
    token: String,
    child: Option<Child>,
    dir: TempDir,
}

impl std::fmt::Debug for EtcdProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdProcess")
            .field("name", &self.name)
            .field("client_url", &self.client_url)
            .field("pid", &self.pid())
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl EtcdProcess {
    /// Starts a single-member etcd and waits until it serves requests.
    /// Panics (with the tail of etcd's log) if it does not within 20 s.
    pub async fn start() -> EtcdProcess {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let ports = free_ports(2);
            let (client, peer) = (ports[0], ports[1]);
            let name = "m0".to_string();
            let initial = format!("{name}=http://127.0.0.1:{peer}");
            let mut member = spawn_member(&name, client, peer, &initial, &unique_token());
            match wait_healthy(&mut [&mut member], START_DEADLINE).await {
                Ok(()) => return member,
                Err(e) => {
                    failures.push(format!("{e}\n--- etcd log tail ---\n{}", member.log_tail()))
                }
            }
        }
        panic!(
            "etcd did not start after {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n\n")
        );
    }

    /// The URL clients connect to, e.g. `http://127.0.0.1:41234`.
    pub fn client_url(&self) -> &str {
        &self.client_url
    }

    /// The member's peer URL.
    pub fn peer_url(&self) -> &str {
        &self.peer_url
    }

    /// The member's name in its cluster.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The member's temporary directory (data in `data/`, output in `etcd.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The path of etcd's output.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills the process with SIGKILL and reaps it. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `Child::kill` sends SIGKILL to exactly this PID.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again (after [`EtcdProcess::kill`]) on the same
    /// ports and data, and waits until it serves requests (for a cluster
    /// member: until it has a leader). Panics if it does not within 20 s.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn();
        if let Err(e) = wait_healthy(&mut [&mut *self], START_DEADLINE).await {
            panic!(
                "etcd did not restart: {e}\n--- etcd log tail ---\n{}",
                self.log_tail()
            );
        }
    }

    /// Launches etcd; with an existing data dir, etcd ignores the
    /// initial-cluster flags and resumes its member.
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open etcd log");
        let log_err = log.try_clone().expect("clone etcd log handle");
        let binary = std::env::var("SKIFF_TEST_ETCD").unwrap_or_else(|_| "/usr/bin/etcd".into());
        let child = Command::new(&binary)
            .arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .arg("--listen-client-urls")
            .arg(&self.client_url)
            .arg("--advertise-client-urls")
            .arg(&self.client_url)
            .arg("--listen-peer-urls")
            .arg(&self.peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&self.peer_url)
            .arg("--initial-cluster")
            .arg(&self.initial_cluster)
            .arg("--initial-cluster-state")
            .arg("new")
            .arg("--initial-cluster-token")
            .arg(&self.token)
            .arg("--heartbeat-interval")
            .arg("50")
            .arg("--election-timeout")
            .arg("500")
            .arg("--max-request-bytes")
            .arg(MAX_REQUEST_BYTES.to_string())
            .arg("--logger")
            .arg("zap")
            .arg("--log-outputs")
            .arg("stderr")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {binary}: {e}"));
        self.child = Some(child);
    }

    /// The last 4 KiB of etcd's output.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path(), 4096)
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A static etcd cluster on loopback.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<EtcdProcess>,
}

impl EtcdCluster {
    /// Starts `size` members with a static `--initial-cluster` and waits until
    /// every member answers and a leader is elected. Panics (with each
    /// member's log tail) if that does not happen within 20 s.
    pub async fn start(size: usize) -> EtcdCluster {
        assert!(size > 0, "a cluster needs a member");
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let ports = free_ports(2 * size);
            let names: Vec<String> = (0..size).map(|i| format!("m{i}")).collect();
            let initial = names
                .iter()
                .enumerate()
                .map(|(i, name)| format!("{name}=http://127.0.0.1:{}", ports[2 * i + 1]))
                .collect::<Vec<_>>()
                .join(",");
            let token = unique_token();
            let mut members: Vec<EtcdProcess> = names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    spawn_member(name, ports[2 * i], ports[2 * i + 1], &initial, &token)
                })
                .collect();
            let mut refs: Vec<&mut EtcdProcess> = members.iter_mut().collect();
            match wait_healthy(&mut refs, START_DEADLINE).await {
                Ok(()) => return EtcdCluster { members },
                Err(e) => {
                    let logs = members
                        .iter()
                        .map(|m| format!("--- {} log tail ---\n{}", m.name, m.log_tail()))
                        .collect::<Vec<_>>()
                        .join("\n");
                    failures.push(format!("{e}\n{logs}"));
                }
            }
        }
        panic!(
            "etcd cluster did not start after {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n\n")
        );
    }

    /// Every member's client URL, in member order (killed ones included).
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// The members.
    pub fn members(&self) -> &[EtcdProcess] {
        &self.members
    }

    /// Member `i`.
    pub fn member(&self, i: usize) -> &EtcdProcess {
        &self.members[i]
    }

    /// The index of the current leader, asking the running members (each
    /// member's status names the leader's id; the leader is the member whose
    /// own id that is). Waits up to 10 s for a leader; `None` if there is none.
    pub async fn leader_index(&mut self) -> Option<usize> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for i in 0..self.members.len() {
                if !self.members[i].is_running() {
                    continue;
                }
                if let Ok(status) = member_status(&self.members[i].client_url).await
                    && status.leader != 0
                    && status.leader == status.member_id
                {
                    return Some(i);
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills member `i` with SIGKILL and reaps it.
    pub fn kill(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// Starts member `i` again on its ports and data (see
    /// [`EtcdProcess::restart`]).
    pub async fn restart(&mut self, i: usize) {
        self.members[i].restart().await;
    }
}

struct Status {
    member_id: u64,
    leader: u64,
}

async fn member_status(url: &str) -> Result<Status, String> {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_millis(500))
        .with_timeout(Duration::from_secs(1));
    let attempt = async {
        let client = Client::connect([url], Some(options))
            .await
            .map_err(|e| e.to_string())?;
        let status = client
            .maintenance_client()
            .status()
            .await
            .map_err(|e| e.to_string())?;
        let member_id = status.header().map(|h| h.member_id()).ok_or("no header")?;
        Ok(Status {
            member_id,
            leader: status.leader(),
        })
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .map_err(|_| "status timed out".to_string())?
}

/// Waits until each member answers a linearizable read (which needs a leader).
async fn wait_healthy(members: &mut [&mut EtcdProcess], limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut pending: Vec<usize> = (0..members.len()).collect();
    let mut last_error = String::from("not tried");
    while !pending.is_empty() {
        for m in members.iter_mut() {
            if !m.is_running() {
                return Err(format!("etcd member {} exited during start", m.name));
            }
        }
        let mut still = Vec::new();
        for &i in &pending {
            match probe(&members[i].client_url).await {
                Ok(()) => {}
                Err(e) => {
                    last_error = format!("{}: {e}", members[i].name);
                    still.push(i);
                }
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "etcd not healthy within {limit:?}; last error: {last_error}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn probe(url: &str) -> Result<(), String> {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_millis(500))
        .with_timeout(Duration::from_secs(2))
        .with_require_leader(true);
    let attempt = async {
        let mut client = Client::connect([url], Some(options))
            .await
            .map_err(|e| e.to_string())?;
        client
            .get("/", Some(GetOptions::new().with_count_only()))
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(3), attempt)
        .await
        .map_err(|_| "probe timed out".to_string())?
}

fn spawn_member(
    name: &str,
    client: u16,
    peer: u16,
    initial_cluster: &str,
    token: &str,
) -> EtcdProcess {
    let dir = tempfile::Builder::new()
        .prefix("skiff-etcd-")
        .tempdir()
        .expect("create etcd temp dir");
    let mut member = EtcdProcess {
        name: name.to_string(),
        client_url: format!("http://127.0.0.1:{client}"),
        peer_url: format!("http://127.0.0.1:{peer}"),
        initial_cluster: initial_cluster.to_string(),
        token: token.to_string(),
        child: None,
        dir,
    };
    member.spawn();
    member
}

/// `n` distinct free loopback ports: all bound at once (so they differ), then
/// released for etcd to take. Another process may grab one in between; a
/// failed start is retried with new ports.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

fn unique_token() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "skiff-test-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn log_tail(path: &Path, bytes: u64) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(bytes)));
    let mut buf = Vec::new();
    let _ = file.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}
