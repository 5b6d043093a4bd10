//! Container logs with real containers (root only; skipped elsewhere):
//! CRI `ReopenContainerLog`, a log directory on a full (tiny tmpfs) disk, and
//! the kubelet's log rotation driving the runtime over CRI.
use crate::cri;

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cri::{Env, Server};
use skiff_kubelet::logrotate::{ContainerLogManager, LogRotatePolicy};
use skiff_runtime::cri::api::{self, ContainerState};

/// A sandbox logging under `log_dir`, and a container `c` in it running
/// `script` with the host dir `ctl` at `/ctl`; started.
async fn run(server: &mut Server, log_dir: &Path, ctl: &Path, script: &str) -> (String, String) {
    let sandbox = server
        .run_sandbox(api::PodSandboxConfig {
            hostname: "logs".into(),
            log_directory: log_dir.to_string_lossy().into_owned(),
            ..cri::sandbox_config("logs")
        })
        .await;
    let id = server
        .create(&sandbox, "c", &["sh", "-c", script], |c| {
            c.mounts = vec![api::Mount {
                container_path: "/ctl".into(),
                host_path: ctl.to_string_lossy().into_owned(),
                ..Default::default()
            }];
        })
        .await;
    server.start(&id).await;
    (sandbox.0, id)
}

async fn reopen(server: &mut Server, id: &str) -> Result<(), tonic::Status> {
    server
        .client
        .reopen_container_log(api::ReopenContainerLogRequest {
            container_id: id.into(),
        })
        .await
        .map(|_| ())
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
    let Some(env) = Env::new() else { return };
    let mut server = env.serve("cri").await;
    let ctl = env.path("ctl");
    std::fs::create_dir_all(&ctl).unwrap();
    let script = "echo before; while [ ! -e /ctl/go ]; do sleep 0.05; done; echo after; \
                  while [ ! -e /ctl/end ]; do sleep 0.05; done";
    let (sandbox, id) = run(&mut server, &env.path("pods"), &ctl, script).await;
    let log = env.path("pods/c/0.log");
    wait_lines(&log, 1).await;
    assert_eq!(read_entries(&log), ["before"]);
    let rotated = env.path("pods/c/0.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    reopen(&mut server, &id).await.unwrap();
    // Synchronous: the fresh file exists as soon as the call returns.
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "");
    std::fs::write(ctl.join("go"), "").unwrap();
    wait_lines(&log, 1).await;
    assert_eq!(read_entries(&log), ["after"]);
    assert_eq!(read_entries(&rotated), ["before"]);

    // A supervisor without a control socket (started by an older skiff).
    let socket = env.run_dir().join(format!("containers/{id}/control.sock"));
    // Beside it: the run dir is a mount root, renames out of it cross mounts.
    let saved = socket.with_extension("sock.saved");
    std::fs::rename(&socket, &saved).unwrap();
    let err = reopen(&mut server, &id).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("older skiff"), "{err:?}");
    std::fs::rename(&saved, &socket).unwrap();
    reopen(&mut server, &id).await.unwrap();

    let err = reopen(&mut server, "no-such-container").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    std::fs::write(ctl.join("end"), "").unwrap();
    server.wait_exited(&id).await;
    let err = reopen(&mut server, &id).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("is not running"), "{err:?}");
    server.remove_sandbox(&sandbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_log_disk_loses_lines_not_the_container() {
    let Some(env) = Env::new() else { return };
    let mut server = env.serve("cri").await;
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
    let (sandbox, id) = run(&mut server, &disk.join("pods"), &ctl, &script).await;
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
        server.status(&id).await.state,
        ContainerState::ContainerRunning as i32,
        "a full disk stopped the container"
    );

    std::fs::remove_file(&filler).unwrap();
    std::fs::write(ctl.join("go"), "").unwrap();
    let status = server.wait_exited(&id).await;
    assert_eq!(status.exit_code, 3);
    assert_eq!(status.reason, "Error");
    let after = read_entries(&log);
    assert_eq!(after.len(), full.len() + 1);
    assert_eq!(after[..full.len()], full[..]);
    assert_eq!(after.last().map(String::as_str), Some("resumed"));
    server.remove_sandbox(&sandbox).await;
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
    let Some(env) = Env::new() else { return };
    let mut server = env.serve("cri").await;
    let ctl = env.path("ctl");
    std::fs::create_dir_all(&ctl).unwrap();
    // Three rounds of ~80 KiB each, each waiting for the test to rotate.
    let script = format!(
        "for r in 1 2 3; do i=0; while [ $i -lt 700 ]; do echo \"round $r line $i {PAD}\"; \
         i=$((i+1)); done; echo > /ctl/wrote$r; while [ ! -e /ctl/go$r ]; do sleep 0.05; done; \
         done; echo final; while [ ! -e /ctl/end ]; do sleep 0.05; done"
    );
    let (sandbox, id) = run(&mut server, &env.path("pods"), &ctl, &script).await;
    let dir = env.path("pods/c");
    let log = dir.join("0.log");
    let cri = server.kubelet_cri().await;
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
    server.wait_exited(&id).await;
    server.remove_sandbox(&sandbox).await;
}
