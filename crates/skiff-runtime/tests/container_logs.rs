//! Container logs with real containers (root only; skipped elsewhere):
//! CRI `ReopenContainerLog`, a log directory on a full (tiny tmpfs) disk, and
//! the kubelet's log rotation driving the runtime over CRI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_kubelet::cri::Cri;
use skiff_kubelet::logrotate::{ContainerLogManager, LogRotatePolicy};
use skiff_runtime::cri::api::runtime_service_client::RuntimeServiceClient;
use skiff_runtime::cri::api::{self, ContainerState};
use skiff_runtime::cri::{CriRuntimeService, connect, serve_unix};
use skiff_runtime::{ImageStore, NoopPodNetwork, Runtime, RuntimeConfig, RuntimeDeps};
use tonic::transport::Channel;

const IMAGE: &str = "docker.io/library/busybox:latest";

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A runtime served on a unix socket in a temp dir, with busybox imported.
/// Dropping it kills what still runs and unmounts what the test mounted.
struct Env {
    tmp: tempfile::TempDir,
    socket: PathBuf,
    client: RuntimeServiceClient<Channel>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Env {
    async fn new() -> Option<Self> {
        if !support::have_busybox() || !is_root() {
            eprintln!("skipping: needs root and busybox-static");
            return None;
        }
        let tmp = tempfile::tempdir().unwrap();
        let archive = tmp.path().join("busybox.tar");
        support::write_oci_archive(&archive, &[(&support::busybox_image(), Some(IMAGE))]);
        let store = Arc::new(ImageStore::open(&tmp.path().join("images")).unwrap());
        store.import(&archive).unwrap();
        let runtime = Runtime::open(
            RuntimeConfig {
                root: tmp.path().join("runtime"),
                run_dir: tmp.path().join("run"),
                shim: vec![env!("CARGO_BIN_EXE_skiff-runtime-shim").into()],
            },
            RuntimeDeps {
                images: store,
                namespaces: Arc::new(skiff_sys::LinuxPodNamespaces),
                mounter: Arc::new(skiff_sys::LinuxMounter),
                network: Arc::new(NoopPodNetwork),
            },
        )
        .unwrap();
        let socket = tmp.path().join("cri.sock");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = tonic::transport::Server::builder().add_service(
            api::runtime_service_server::RuntimeServiceServer::new(CriRuntimeService::new(
                Arc::new(runtime),
            )),
        );
        let path = socket.clone();
        tokio::spawn(async move {
            let _ = serve_unix(router, &path, async {
                let _ = stopped.await;
            })
            .await;
        });
        let channel = loop {
            if let Ok(c) = connect(&socket).await {
                break c;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        Some(Self {
            tmp,
            socket,
            client: RuntimeServiceClient::new(channel),
            stop: Some(stop),
        })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// A sandbox logging under `log_dir`, and a container in it running
    /// `script` with the host dir `ctl` at `/ctl`; started.
    async fn run(&mut self, log_dir: &Path, ctl: &Path, script: &str) -> (String, String) {
        let sandbox_config = api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: "logs".into(),
                uid: "uid-logs".into(),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: "logs".into(),
            log_directory: log_dir.to_string_lossy().into_owned(),
            ..Default::default()
        };
        let sandbox = self
            .client
            .run_pod_sandbox(api::RunPodSandboxRequest {
                config: Some(sandbox_config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        let config = api::ContainerConfig {
            metadata: Some(api::ContainerMetadata {
                name: "c".into(),
                attempt: 0,
            }),
            image: Some(api::ImageSpec {
                image: IMAGE.into(),
                ..Default::default()
            }),
            command: vec!["sh".into(), "-c".into(), script.into()],
            log_path: "c/0.log".into(),
            mounts: vec![api::Mount {
                container_path: "/ctl".into(),
                host_path: ctl.to_string_lossy().into_owned(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let id = self
            .client
            .create_container(api::CreateContainerRequest {
                pod_sandbox_id: sandbox.clone(),
                config: Some(config),
                sandbox_config: Some(sandbox_config),
            })
            .await
            .unwrap()
            .into_inner()
            .container_id;
        self.client
            .start_container(api::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap();
        (sandbox, id)
    }

    async fn status(&mut self, id: &str) -> api::ContainerStatus {
        self.client
            .container_status(api::ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap()
    }

    async fn wait_exited(&mut self, id: &str) -> api::ContainerStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let s = self.status(id).await;
            if s.state == ContainerState::ContainerExited as i32 {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("container {id} did not exit");
    }

    async fn reopen(&mut self, id: &str) -> Result<(), tonic::Status> {
        self.client
            .reopen_container_log(api::ReopenContainerLogRequest {
                container_id: id.into(),
            })
            .await
            .map(|_| ())
    }

    async fn remove_sandbox(&mut self, id: &str) {
        let id = id.to_owned();
        self.client
            .stop_pod_sandbox(api::StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            .unwrap();
        self.client
            .remove_pod_sandbox(api::RemovePodSandboxRequest { pod_sandbox_id: id })
            .await
            .unwrap();
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        for entry in std::fs::read_dir(self.path("runtime/containers"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let record = std::fs::read(entry.path().join("container.json")).unwrap_or_default();
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&record)
                && let Some(pid) = v["pid"].as_i64()
            {
                let _ = skiff_sys::process::kill(pid as i32, 9);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
            .filter(|p| Path::new(p).starts_with(self.tmp.path()))
            .collect();
        mounts.reverse();
        for m in mounts {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
        for entry in std::fs::read_dir(self.path("runtime/sandboxes"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let id = entry.file_name().to_string_lossy().into_owned();
            let _ = skiff_sys::cgroups::remove_cgroup(&format!("/skiff/{id}"));
        }
    }
}

/// Waits for the file the container creates to say where it is.
async fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The contents of a CRI log's entries, each checked to be a whole entry.
fn entries(text: &str) -> Vec<String> {
    assert!(text.is_empty() || text.ends_with('\n'), "torn last entry");
    text.lines()
        .map(|l| {
            let parts: Vec<&str> = l.splitn(4, ' ').collect();
            assert_eq!(parts.len(), 4, "bad CRI log line {l:?}");
            assert!(
                time::OffsetDateTime::parse(
                    parts[0],
                    &time::format_description::well_known::Rfc3339
                )
                .is_ok(),
                "bad timestamp in {l:?}"
            );
            assert!(parts[1] == "stdout" || parts[1] == "stderr", "{l:?}");
            assert_eq!(parts[2], "F", "{l:?}");
            parts[3].to_owned()
        })
        .collect()
}

/// Entries written so far (polling: the last may be in flight, so no parsing).
fn line_count(path: &Path) -> usize {
    std::fs::read(path)
        .unwrap_or_default()
        .iter()
        .filter(|b| **b == b'\n')
        .count()
}

/// Waits until `path` holds at least `n` entries.
async fn wait_lines(path: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while line_count(path) < n {
        assert!(
            Instant::now() < deadline,
            "{} never got {n} entries",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn read_entries(path: &Path) -> Vec<String> {
    entries(&std::fs::read_to_string(path).unwrap())
}

const PAD: &str = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_container_log_follows_upstream_semantics() {
    let Some(mut env) = Env::new().await else {
        return;
    };
    let ctl = env.path("ctl");
    std::fs::create_dir_all(&ctl).unwrap();
    let script = "echo before; while [ ! -e /ctl/go ]; do sleep 0.05; done; echo after; \
                  while [ ! -e /ctl/end ]; do sleep 0.05; done";
    let (sandbox, id) = env.run(&env.path("pods"), &ctl, script).await;
    let log = env.path("pods/c/0.log");
    wait_lines(&log, 1).await;
    assert_eq!(read_entries(&log), ["before"]);
    let rotated = env.path("pods/c/0.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    env.reopen(&id).await.unwrap();
    // Synchronous: the fresh file exists as soon as the call returns.
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "");
    std::fs::write(ctl.join("go"), "").unwrap();
    wait_lines(&log, 1).await;
    assert_eq!(read_entries(&log), ["after"]);
    assert_eq!(read_entries(&rotated), ["before"]);

    // A supervisor without a control socket (started by an older skiff).
    let socket = env.path(&format!("runtime/containers/{id}/control.sock"));
    let saved = env.path("control.sock.saved");
    std::fs::rename(&socket, &saved).unwrap();
    let err = env.reopen(&id).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("older skiff"), "{err:?}");
    std::fs::rename(&saved, &socket).unwrap();
    env.reopen(&id).await.unwrap();

    let err = env.reopen("no-such-container").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    std::fs::write(ctl.join("end"), "").unwrap();
    env.wait_exited(&id).await;
    let err = env.reopen(&id).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("is not running"), "{err:?}");
    env.remove_sandbox(&sandbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_log_disk_loses_lines_not_the_container() {
    let Some(mut env) = Env::new().await else {
        return;
    };
    let disk = env.path("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&disk)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount tmpfs");
    // Room to free later, so the test can watch writing resume.
    let filler = disk.join("filler");
    std::fs::write(&filler, vec![0u8; 16 * 1024]).unwrap();
    let ctl = env.path("ctl");
    std::fs::create_dir_all(&ctl).unwrap();
    let script = format!(
        "i=0; while [ $i -lt 3000 ]; do echo \"line $i {PAD}\"; i=$((i+1)); done; \
         echo > /ctl/wrote; while [ ! -e /ctl/go ]; do sleep 0.05; done; echo resumed; exit 3"
    );
    let (sandbox, id) = env.run(&disk.join("pods"), &ctl, &script).await;
    wait_for(&ctl.join("wrote")).await;
    let log = disk.join("pods/c/0.log");
    // The supervisor may still be draining the pipe: wait for the log to settle.
    let mut size = std::fs::metadata(&log).unwrap().len();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = std::fs::metadata(&log).unwrap().len();
        if now == size {
            break;
        }
        size = now;
    }
    let full = read_entries(&log);
    assert!(
        !full.is_empty() && full.len() < 3000,
        "{} entries fitted",
        full.len()
    );
    for (i, line) in full.iter().enumerate() {
        assert_eq!(
            line,
            &format!("line {i} {PAD}"),
            "entries are whole and in order"
        );
    }
    assert_eq!(
        env.status(&id).await.state,
        ContainerState::ContainerRunning as i32,
        "a full disk stopped the container"
    );

    std::fs::remove_file(&filler).unwrap();
    std::fs::write(ctl.join("go"), "").unwrap();
    let status = env.wait_exited(&id).await;
    assert_eq!(status.exit_code, 3);
    assert_eq!(status.reason, "Error");
    let after = read_entries(&log);
    assert_eq!(after.len(), full.len() + 1);
    assert_eq!(after[..full.len()], full[..]);
    assert_eq!(after.last().map(String::as_str), Some("resumed"));
    env.remove_sandbox(&sandbox).await;
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn gunzip(path: &Path) -> String {
    let mut s = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut s)
        .unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_rotation_through_cri_keeps_max_files() {
    let Some(mut env) = Env::new().await else {
        return;
    };
    let ctl = env.path("ctl");
    std::fs::create_dir_all(&ctl).unwrap();
    // Three rounds of ~80 KiB each, each waiting for the test to rotate.
    let script = format!(
        "for r in 1 2 3; do i=0; while [ $i -lt 700 ]; do echo \"round $r line $i {PAD}\"; \
         i=$((i+1)); done; echo > /ctl/wrote$r; while [ ! -e /ctl/go$r ]; do sleep 0.05; done; \
         done; echo final; while [ ! -e /ctl/end ]; do sleep 0.05; done"
    );
    let (sandbox, id) = env.run(&env.path("pods"), &ctl, &script).await;
    let dir = env.path("pods/c");
    let log = dir.join("0.log");
    let cri = Cri::connect(&env.socket).await.unwrap();
    let mut manager = ContainerLogManager::new(
        cri,
        LogRotatePolicy {
            max_size: 64 * 1024,
            max_files: 3,
        },
    );
    let round_lines = |r: u32| -> Vec<String> {
        (0..700)
            .map(|i| format!("round {r} line {i} {PAD}"))
            .collect()
    };
    for r in 1..=3u32 {
        wait_for(&ctl.join(format!("wrote{r}"))).await;
        // The round is rotated once the supervisor has logged all of it.
        wait_lines(&log, 700).await;
        assert!(std::fs::metadata(&log).unwrap().len() > 64 * 1024);
        manager.rotate_logs().await.unwrap();
        // Below the size limit now: another pass changes nothing.
        let names = dir_names(&dir);
        manager.rotate_logs().await.unwrap();
        assert_eq!(dir_names(&dir), names);
        assert!(names.len() <= 3, "round {r}: {names:?}");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "", "round {r}");
        let rotated: Vec<&String> = names
            .iter()
            .filter(|n| n.starts_with("0.log.") && !n.ends_with(".gz"))
            .collect();
        assert_eq!(rotated.len(), 1, "round {r}: {names:?}");
        let stamp = &rotated[0]["0.log.".len()..];
        assert!(
            stamp.len() == 15 && stamp.as_bytes()[8] == b'-',
            "round {r}: {stamp}"
        );
        assert_eq!(read_entries(&dir.join(rotated[0])), round_lines(r));
        let gz: Vec<&String> = names.iter().filter(|n| n.ends_with(".gz")).collect();
        assert_eq!(gz.len(), usize::from(r > 1), "round {r}: {names:?}");
        if let Some(gz) = gz.first() {
            assert_eq!(entries(&gunzip(&dir.join(gz))), round_lines(r - 1));
        }
        // The rotated name has second resolution: let the clock move on.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        std::fs::write(ctl.join(format!("go{r}")), "").unwrap();
    }
    wait_lines(&log, 1).await;
    assert_eq!(read_entries(&log), ["final"]);
    // A live log that went missing is reopened (recreated) by the next pass.
    std::fs::remove_file(&log).unwrap();
    manager.rotate_logs().await.unwrap();
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "");
    std::fs::write(ctl.join("end"), "").unwrap();
    env.wait_exited(&id).await;
    env.remove_sandbox(&sandbox).await;
}
