//! CRI RuntimeService conformance-style tests over the unix socket, with real
//! containers (root only; skipped elsewhere). Each test has its own runtime
//! root, run dir and socket.
use crate::cri;

use std::path::{Path, PathBuf};
use std::time::Duration;

use cri::{Env, mounts_under, wait_until};
use skiff_runtime::cri::api::{self, ContainerState};
use skiff_runtime::network::{BridgeNetwork, BridgeNetworkConfig, host_veth_name};

/// Runs sandbox `name` with a hostname, DNS, and its logs under the env's
/// log dir.
async fn run_sandbox(
    server: &mut cri::Server,
    env: &Env,
    name: &str,
) -> (String, api::PodSandboxConfig) {
    server
        .run_sandbox(api::PodSandboxConfig {
            hostname: format!("{name}-host"),
            dns_config: Some(api::DnsConfig {
                servers: vec!["10.43.0.10".into()],
                searches: vec!["default.svc.cluster.local".into()],
                options: vec![],
            }),
            log_directory: env.log_dir().join(name).to_string_lossy().into_owned(),
            ..cri::sandbox_config(name)
        })
        .await
}

fn log_lines(path: &Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
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
            (
                parts[1].to_owned(),
                parts[2].to_owned(),
                parts[3].to_owned(),
            )
        })
        .collect()
}

fn memory_cgroup_file(cgroup: &str) -> PathBuf {
    let rel = cgroup.trim_start_matches('/');
    let v1 = Path::new("/sys/fs/cgroup/memory")
        .join(rel)
        .join("memory.limit_in_bytes");
    if Path::new("/sys/fs/cgroup/memory").is_dir() {
        v1
    } else {
        Path::new("/sys/fs/cgroup").join(rel).join("memory.max")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_hello_exits_zero_with_cri_log_then_host_is_clean() {
    let Some(env) = Env::new() else { return };
    let mut server = env.serve("a").await;
    let v = server
        .client
        .version(api::VersionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.runtime_api_version, "v1");

    let sandbox = run_sandbox(&mut server, &env, "echo").await;
    let id = server
        .create(&sandbox, "hello", &["echo", "hello"], |_| {})
        .await;
    assert_eq!(
        server.status(&id).await.state,
        ContainerState::ContainerCreated as i32
    );
    server.start(&id).await;
    let s = server.wait_exited(&id).await;
    assert_eq!((s.exit_code, s.reason.as_str()), (0, "Completed"));
    assert!(s.started_at > 0 && s.finished_at >= s.started_at);
    let log = env.log_dir().join("echo/hello/0.log");
    assert_eq!(s.log_path, log.to_string_lossy());
    assert_eq!(
        log_lines(&log),
        vec![("stdout".to_owned(), "F".to_owned(), "hello".to_owned())]
    );

    // Numeric user and group from the security context; cgroupfs is visible.
    let user = server
        .create(
            &sandbox,
            "nobody",
            &[
                "sh",
                "-c",
                "id -u; id -g; ls /sys/fs/cgroup | grep -q memory && echo cgroupfs",
            ],
            |c| {
                c.linux = Some(api::LinuxContainerConfig {
                    resources: None,
                    security_context: Some(api::LinuxContainerSecurityContext {
                        run_as_user: Some(api::Int64Value { value: 65534 }),
                        run_as_group: Some(api::Int64Value { value: 65534 }),
                        ..Default::default()
                    }),
                });
            },
        )
        .await;
    server.start(&user).await;
    let s = server.wait_exited(&user).await;
    let lines = log_lines(&env.log_dir().join("echo/nobody/0.log"));
    let out: Vec<&str> = lines.iter().map(|l| l.2.as_str()).collect();
    assert_eq!(out, ["65534", "65534", "cgroupfs"], "exit {}", s.exit_code);

    // While the sandbox exists its namespaces are pinned and the rootfs mounted.
    assert!(!env.pod_mounts().is_empty());
    server.remove_sandbox(&sandbox.0).await;
    assert!(env.pod_mounts().is_empty(), "{:?}", env.pod_mounts());
    for kind in ["netns", "ipcns", "utsns"] {
        assert!(!env.run_dir().join(kind).join(&sandbox.0).exists());
    }
    for root in ["memory", "cpu", "pids", "unified", ""] {
        let dir = Path::new("/sys/fs/cgroup")
            .join(root)
            .join("skiff")
            .join(&sandbox.0);
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    let err = server
        .client
        .container_status(api::ContainerStatusRequest {
            container_id: id.clone(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = server
        .client
        .pod_sandbox_status(api::PodSandboxStatusRequest {
            pod_sandbox_id: sandbox.0.clone(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    // Removing again is idempotent.
    server.remove_sandbox(&sandbox.0).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_code_env_workdir_and_unknown_ids() {
    let Some(env) = Env::new() else { return };
    let mut server = env.serve("b").await;
    let sandbox = run_sandbox(&mut server, &env, "exit").await;
    let id = server
        .create(
            &sandbox,
            "three",
            &[
                "sh",
                "-c",
                "echo $GREETING; busybox pwd; echo $HOSTNAME; cat /etc/resolv.conf /etc/hostname; echo oops >&2; exit 3",
            ],
            |c| {
                c.envs = vec![api::KeyValue {
                    key: "GREETING".into(),
                    value: "hi there".into(),
                }];
                c.working_dir = "/tmp".into();
            },
        )
        .await;
    server.start(&id).await;
    let s = server.wait_exited(&id).await;
    assert_eq!((s.exit_code, s.reason.as_str()), (3, "Error"));
    let lines = log_lines(&env.log_dir().join("exit/three/0.log"));
    let stdout: Vec<&str> = lines
        .iter()
        .filter(|l| l.0 == "stdout")
        .map(|l| l.2.as_str())
        .collect();
    let stderr: Vec<&str> = lines
        .iter()
        .filter(|l| l.0 == "stderr")
        .map(|l| l.2.as_str())
        .collect();
    assert_eq!(
        stdout,
        [
            "hi there",
            "/tmp",
            "exit-host",
            "search default.svc.cluster.local",
            "nameserver 10.43.0.10",
            "exit-host"
        ]
    );
    assert_eq!(stderr, ["oops"]);

    // Capabilities: containerd's default set, or the whole bounding set
    // (which lacks CAP_SYS_RESOURCE on these hosts) when privileged.
    let host_bounding = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("CapBnd:")
                .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        })
        .unwrap();
    for (name, privileged, want) in [
        ("plain", false, 0xa804_25fb_u64),
        ("privileged", true, host_bounding & !(1 << 24)),
    ] {
        let id = server
            .create(
                &sandbox,
                name,
                &["sh", "-c", "grep CapEff /proc/self/status"],
                |c| {
                    c.linux = Some(api::LinuxContainerConfig {
                        resources: None,
                        security_context: Some(api::LinuxContainerSecurityContext {
                            privileged,
                            ..Default::default()
                        }),
                    });
                },
            )
            .await;
        server.start(&id).await;
        let s = server.wait_exited(&id).await;
        assert_eq!(s.exit_code, 0, "{name}");
        let lines = log_lines(&env.log_dir().join(format!("exit/{name}/0.log")));
        let got = lines[0]
            .2
            .strip_prefix("CapEff:")
            .unwrap()
            .trim()
            .to_owned();
        assert_eq!(u64::from_str_radix(&got, 16).unwrap(), want, "{name}");
    }

    for code in [
        server
            .client
            .start_container(api::StartContainerRequest {
                container_id: "nope".into(),
            })
            .await
            .unwrap_err()
            .code(),
        server
            .client
            .stop_container(api::StopContainerRequest {
                container_id: "nope".into(),
                timeout: 0,
            })
            .await
            .unwrap_err()
            .code(),
        server
            .client
            .exec_sync(api::ExecSyncRequest {
                container_id: "nope".into(),
                cmd: vec!["true".into()],
                timeout: 0,
            })
            .await
            .unwrap_err()
            .code(),
    ] {
        assert_eq!(code, tonic::Code::NotFound);
    }
    server
        .client
        .remove_container(api::RemoveContainerRequest {
            container_id: "nope".into(),
        })
        .await
        .unwrap();
    server.remove_sandbox(&sandbox.0).await;
    server.shutdown().await;
}

/// What an unprivileged container sees of the host: its own PID namespace
/// and cgroups, the default devices only (the devices cgroup refuses a
/// host disk it made a node for), masked and read-only kernel paths, a
/// read-only root when asked; and an exec'd process gets the same view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_sees_its_own_view_of_the_host() {
    let Some(env) = Env::new() else { return };
    let mut server = env.serve("v").await;
    let sandbox = run_sandbox(&mut server, &env, "view").await;
    // A block device the host has, as "major minor".
    let disk = std::fs::read_dir("/sys/dev/block")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .find(|n| !n.starts_with("7:"))
        .unwrap_or_else(|| "7:0".to_owned())
        .replace(':', " ");
    let script = format!(
        "test -c /dev/null && test -c /dev/urandom && test -L /dev/fd && test -L /dev/ptmx && echo devices-ok
[ \"$(wc -c < /proc/timer_list)\" = 0 ] && echo timer-list-masked
(echo 1 > /proc/sys/vm/overcommit_memory) 2>/dev/null && echo sys-writable || echo sys-readonly
cat /sys/fs/cgroup/memory/memory.limit_in_bytes
(touch /sys/fs/cgroup/memory/x) 2>/dev/null && echo cgroup-writable || echo cgroup-readonly
mknod /dev/disk b {disk} && ((head -c 1 /dev/disk > /dev/null) 2>/dev/null && echo disk-readable || echo disk-denied)
(touch /file) 2>/dev/null && echo root-writable || echo root-readonly
echo pid $$
exec sleep 1000"
    );
    let id = server
        .create(&sandbox, "look", &["sh", "-c", &script], |c| {
            c.linux = Some(api::LinuxContainerConfig {
                resources: Some(api::LinuxContainerResources {
                    memory_limit_in_bytes: 48 << 20,
                    ..Default::default()
                }),
                security_context: Some(api::LinuxContainerSecurityContext {
                    readonly_rootfs: true,
                    ..Default::default()
                }),
            });
        })
        .await;
    server.start(&id).await;
    let log = env.log_dir().join("view/look/0.log");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let stdout = loop {
        let lines: Vec<String> = log_lines(&log)
            .into_iter()
            .filter(|l| l.0 == "stdout")
            .map(|l| l.2)
            .collect();
        if lines.iter().any(|l| l.starts_with("pid ")) {
            break lines;
        }
        assert!(std::time::Instant::now() < deadline, "{lines:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        stdout,
        [
            "devices-ok",
            "timer-list-masked",
            "sys-readonly",
            &(48u64 << 20).to_string(),
            "cgroup-readonly",
            "disk-denied",
            "root-readonly",
            "pid 1",
        ]
    );
    let r = server
        .client
        .exec_sync(api::ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; (touch /f) 2>&1 | grep -c Read-only; ps -o pid,comm | grep -c sleep".into(),
            ],
            timeout: 10,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        String::from_utf8_lossy(&r.stdout),
        format!("{}\n1\n1\n", 48u64 << 20),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert_eq!(r.exit_code, 0);
    server.remove_sandbox(&sandbox.0).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_sync_memory_limit_and_stop_with_timeout() {
    let Some(env) = Env::new() else { return };
    let mut server = env.serve("c").await;
    let sandbox = run_sandbox(&mut server, &env, "sleeper").await;
    let id = server
        .create(&sandbox, "sleep", &["sleep", "1000"], |c| {
            c.linux = Some(api::LinuxContainerConfig {
                resources: Some(api::LinuxContainerResources {
                    memory_limit_in_bytes: 64 << 20,
                    ..Default::default()
                }),
                security_context: None,
            });
        })
        .await;
    server.start(&id).await;
    let s = server.status(&id).await;
    assert_eq!(s.state, ContainerState::ContainerRunning as i32);
    let list = server
        .client
        .list_containers(api::ListContainersRequest {
            filter: Some(api::ContainerFilter {
                state: Some(api::ContainerStateValue {
                    state: ContainerState::ContainerRunning as i32,
                }),
                pod_sandbox_id: sandbox.0.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(
        list.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        [id.as_str()]
    );
    // The record filters (id, sandbox, labels) pick before anything is observed.
    for (filter, want) in [
        (
            api::ContainerFilter {
                id: id.clone(),
                ..Default::default()
            },
            vec![id.as_str()],
        ),
        (
            api::ContainerFilter {
                pod_sandbox_id: "no-such-sandbox".into(),
                ..Default::default()
            },
            vec![],
        ),
        (
            api::ContainerFilter {
                label_selector: [("no-such-label".to_owned(), "x".to_owned())].into(),
                ..Default::default()
            },
            vec![],
        ),
    ] {
        let list = server
            .client
            .list_containers(api::ListContainersRequest {
                filter: Some(filter.clone()),
            })
            .await
            .unwrap()
            .into_inner()
            .containers;
        let got: Vec<&str> = list.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(got, want, "{filter:?}");
    }

    let cgroup = format!("/skiff/{}/{id}", sandbox.0);
    let limit = std::fs::read_to_string(memory_cgroup_file(&cgroup)).unwrap();
    assert_eq!(limit.trim(), (64u64 << 20).to_string());

    server
        .client
        .update_container_resources(api::UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(api::LinuxContainerResources {
                memory_limit_in_bytes: 128 << 20,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let limit = std::fs::read_to_string(memory_cgroup_file(&cgroup)).unwrap();
    assert_eq!(limit.trim(), (128u64 << 20).to_string());
    let status = server.status(&id).await;
    let reported = status
        .resources
        .unwrap()
        .linux
        .unwrap()
        .memory_limit_in_bytes;
    assert_eq!(reported, 128 << 20);

    let r = server
        .client
        .exec_sync(api::ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "echo out; hostname; echo err >&2; exit 4".into(),
            ],
            timeout: 10,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(String::from_utf8_lossy(&r.stdout), "out\nsleeper-host\n");
    assert_eq!(String::from_utf8_lossy(&r.stderr), "err\n");
    assert_eq!(r.exit_code, 4);
    let err = server
        .client
        .exec_sync(api::ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec!["sleep".into(), "30".into()],
            timeout: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded);

    // sleep as PID 1 ignores SIGTERM: the stop falls back to SIGKILL after 1 s.
    let started = std::time::Instant::now();
    server.stop(&id, 1).await;
    assert!(started.elapsed() >= Duration::from_millis(900));
    let s = server.status(&id).await;
    assert_eq!(s.state, ContainerState::ContainerExited as i32);
    assert_eq!((s.exit_code, s.reason.as_str()), (137, "Error"));
    server.remove_sandbox(&sandbox.0).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_runtime_readopts_running_container() {
    let Some(env) = Env::new() else { return };
    let mut first = env.serve("d1").await;
    let sandbox = run_sandbox(&mut first, &env, "survivor").await;
    let id = first
        .create(&sandbox, "sleep", &["sleep", "1000"], |_| {})
        .await;
    first.start(&id).await;
    let graceful = first
        .create(
            &sandbox,
            "graceful",
            &[
                "sh",
                "-c",
                "trap 'echo bye; exit 0' TERM; echo armed; while true; do sleep 0.2; done",
            ],
            |_| {},
        )
        .await;
    first.start(&graceful).await;
    // The shell is PID 1 of its pid namespace: a SIGTERM that arrives before the
    // trap is set is dropped by the kernel. Wait until the trap is in place.
    let graceful_log = env.log_dir().join("survivor/graceful/0.log");
    wait_until(
        "the graceful container never set its trap",
        Duration::from_secs(30),
        || log_lines(&graceful_log).iter().any(|l| l.2 == "armed"),
    )
    .await;
    first.shutdown().await;

    let mut second = env.serve("d2").await;
    let sandboxes = second.sandboxes().await;
    assert_eq!(sandboxes.len(), 1);
    assert_eq!(
        sandboxes[0].state,
        api::PodSandboxState::SandboxReady as i32
    );
    let s = second.status(&id).await;
    assert_eq!(s.state, ContainerState::ContainerRunning as i32);

    // A container that handles SIGTERM stops with it: exit 0 from its trap,
    // not 137 from the SIGKILL after the timeout.
    second.stop(&graceful, 30).await;
    let s = second.status(&graceful).await;
    assert_eq!((s.exit_code, s.reason.as_str()), (0, "Completed"));
    let lines = log_lines(&graceful_log);
    assert_eq!(lines.last().map(|l| l.2.as_str()), Some("bye"));
    second.stop(&id, 0).await;
    let s = second.status(&id).await;
    assert_eq!(
        (s.state, s.exit_code),
        (ContainerState::ContainerExited as i32, 137)
    );
    second.remove_sandbox(&sandbox.0).await;
    assert!(env.pod_mounts().is_empty(), "{:?}", env.pod_mounts());
    second.shutdown().await;
}

/// A created container's record lives beside its bundle on the run dir
/// (nothing but its empty writable layer on the disk) until it starts, then
/// on the disk only. A restarted runtime finds and starts it; after a restart
/// of the host (the run dir's tmpfs is empty) it is gone, and so is its
/// writable layer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_container_is_recorded_on_the_run_dir_until_it_starts() {
    let Some(env) = Env::new() else { return };
    let disk = |id: &str| env.root().join("containers").join(id);
    let run = |id: &str| env.run_dir().join("containers").join(id);
    let sorted = |dir: PathBuf| {
        let mut names = entries(&dir);
        names.sort();
        names
    };
    let mut first = env.serve("r1").await;
    let sandbox = run_sandbox(&mut first, &env, "records").await;
    let started = first
        .create(&sandbox, "started", &["sleep", "1000"], |_| {})
        .await;
    let waiting = first
        .create(&sandbox, "waiting", &["echo", "late"], |_| {})
        .await;
    assert_eq!(sorted(disk(&waiting)), ["upper", "work"]);
    assert_eq!(
        sorted(run(&waiting)),
        ["config.json", "container.json", "rootfs"]
    );
    first.start(&started).await;
    assert_eq!(sorted(disk(&started)), ["container.json", "upper", "work"]);
    assert!(!run(&started).join("container.json").exists());
    first.shutdown().await;

    // The agent restarts.
    let mut second = env.serve("r2").await;
    let s = second.status(&waiting).await;
    assert_eq!(s.state, ContainerState::ContainerCreated as i32);
    let s = second.status(&started).await;
    assert_eq!(s.state, ContainerState::ContainerRunning as i32);
    second.start(&waiting).await;
    let s = second.wait_exited(&waiting).await;
    assert_eq!((s.exit_code, s.reason.as_str()), (0, "Completed"));
    let lines = log_lines(&env.log_dir().join("records/waiting/0.log"));
    assert_eq!(lines.last().map(|l| l.2.as_str()), Some("late"));
    let lost = second.create(&sandbox, "lost", &["true"], |_| {}).await;
    second.shutdown().await;

    // The host restarts: what was on the run dir is gone.
    env.restart_host();
    let mut third = env.serve("r3").await;
    let err = third
        .client
        .container_status(api::ContainerStatusRequest {
            container_id: lost.clone(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err}");
    assert!(!disk(&lost).exists());
    for id in [&started, &waiting] {
        assert!(disk(id).join("container.json").exists(), "{id}");
    }
    third.remove_sandbox(&sandbox.0).await;
    assert!(env.pod_mounts().is_empty(), "{:?}", env.pod_mounts());
    assert!(entries(&env.root().join("containers")).is_empty());
    third.shutdown().await;
}

/// The names in `dir`.
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// The mounts in `pid`'s mount namespace under `dir`.
fn mounts_seen_by(pid: i64, dir: &Path) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|p| Path::new(p).starts_with(dir))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisor_sees_only_its_own_pods_mounts() {
    let Some(env) = Env::new() else { return };
    let mut server = env.serve("trim").await;
    let mut ids = Vec::new();
    for name in ["first", "second"] {
        let sandbox = run_sandbox(&mut server, &env, name).await;
        let id = server
            .create(&sandbox, "sleep", &["sleep", "1000"], |_| {})
            .await;
        server.start(&id).await;
        ids.push((sandbox.0, id));
    }
    // The host sees the mount roots (the run dir's over its tmpfs) and both
    // pods' pins and rootfs.
    let host = mounts_under(env.tmp.path());
    assert_eq!(host.len(), 3 + 2 * 4, "{host:#?}");
    for root in env.mount_roots() {
        assert!(host.iter().any(|m| Path::new(m) == root), "{host:#?}");
    }
    for (sandbox, id) in &ids {
        let record: serde_json::Value = serde_json::from_slice(
            &std::fs::read(
                env.root()
                    .join("containers")
                    .join(id)
                    .join("container.json"),
            )
            .unwrap(),
        )
        .unwrap();
        let shim = record["shim"][0].as_i64().unwrap();
        let mut seen = mounts_seen_by(shim, env.tmp.path());
        seen.sort();
        let mut own: Vec<String> = ["netns", "ipcns", "utsns"]
            .iter()
            .map(|k| env.run_dir().join(k).join(sandbox))
            .chain([env.run_dir().join("containers").join(id).join("rootfs")])
            // The tmpfs under the run dir's root: its pins are files there.
            .chain([env.run_dir()])
            // Where the host's `/` is private, mounts made after the runtime
            // started do not reach its mount template: the supervisor keeps
            // its log directory from the host's view.
            .chain(
                (!skiff_sys::mount_view::host_root_is_shared().unwrap())
                    .then(|| Path::new(record["log_path"].as_str().unwrap()).parent())
                    .flatten()
                    .map(Path::to_path_buf),
            )
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        own.sort();
        assert_eq!(seen, own, "supervisor of {id}");
        // On the disk only what must outlive the host: the record and the
        // writable layer; the bundle and the supervisor's files are on the
        // run dir's tmpfs.
        let mut on_disk = entries(&env.root().join("containers").join(id));
        on_disk.sort();
        assert_eq!(on_disk, ["container.json", "upper", "work"], "{id}");
        let mut in_run_dir = entries(&env.run_dir().join("containers").join(id));
        in_run_dir.sort();
        assert_eq!(
            in_run_dir,
            ["config.json", "control.sock", "rootfs", "shim.log"],
            "{id}"
        );
        // No OCI runtime state anywhere: the supervisor is the runtime.
        assert!(!env.run_dir().join("oci").exists());
        assert!(!env.root().join("oci").exists());
        let sandbox_on_disk = entries(&env.root().join("sandboxes").join(sandbox));
        assert_eq!(sandbox_on_disk, ["sandbox.json"], "{sandbox}");
        let mut shared = entries(&env.run_dir().join("sandboxes").join(sandbox));
        shared.sort();
        assert_eq!(shared, ["hostname", "resolv.conf"], "{sandbox}");
    }
    // And the containers run in their pods' namespaces.
    let r = server
        .client
        .exec_sync(api::ExecSyncRequest {
            container_id: ids[1].1.clone(),
            cmd: vec!["sh".into(), "-c".into(), "hostname".into()],
            timeout: 10,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(String::from_utf8_lossy(&r.stdout), "second-host\n");
    for (sandbox, _) in &ids {
        server.remove_sandbox(sandbox).await;
    }
    assert!(env.pod_mounts().is_empty(), "{:?}", env.pod_mounts());
    for dir in ["containers", "sandboxes"] {
        let left = entries(&env.run_dir().join(dir));
        assert!(left.is_empty(), "{dir}: {left:?}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_hog_is_oom_killed() {
    let Some(env) = Env::new() else { return };
    let mut server = env.serve("e").await;
    let sandbox = run_sandbox(&mut server, &env, "hog").await;
    let id = server
        .create(
            &sandbox,
            "hog",
            &[
                "sh",
                "-c",
                "exec busybox dd if=/dev/zero of=/dev/shm/fill bs=1M count=60",
            ],
            |c| {
                c.linux = Some(api::LinuxContainerConfig {
                    resources: Some(api::LinuxContainerResources {
                        memory_limit_in_bytes: 16 << 20,
                        ..Default::default()
                    }),
                    security_context: None,
                });
            },
        )
        .await;
    server.start(&id).await;
    let s = server.wait_exited(&id).await;
    let shim_log =
        std::fs::read_to_string(env.run_dir().join("containers").join(&id).join("shim.log"));
    assert_eq!(
        (s.exit_code, s.reason.as_str()),
        (137, "OOMKilled"),
        "{shim_log:?}"
    );
    server.remove_sandbox(&sandbox.0).await;
    server.shutdown().await;
}

/// A container an older agent created keeps its bundle (config.json, the
/// rootfs mount point) beside its record, and its sandbox's shared files beside the sandbox record: a new
/// runtime starts it from there, creates new containers in that sandbox
/// from its files, and removes all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_of_an_older_layout_starts_from_its_old_bundle() {
    let Some(env) = Env::new() else { return };
    let mut first = env.serve("new").await;
    let sandbox = run_sandbox(&mut first, &env, "older").await;
    let id = first
        .create(
            &sandbox,
            "old",
            &["sh", "-c", "echo from-old-bundle"],
            |_| {},
        )
        .await;
    first.shutdown().await;

    // Rewrite what the first runtime made into the older layout.
    let (bundle, disk) = (
        env.run_dir().join("containers").join(&id),
        env.root().join("containers").join(&id),
    );
    std::fs::create_dir_all(disk.join("rootfs")).unwrap();
    let moved = std::process::Command::new("mount")
        .arg("--move")
        .arg(bundle.join("rootfs"))
        .arg(disk.join("rootfs"))
        .status()
        .unwrap();
    assert!(moved.success());
    let shared = env.run_dir().join("sandboxes").join(&sandbox.0);
    let old_shared = env.root().join("sandboxes").join(&sandbox.0);
    let spec = std::fs::read_to_string(bundle.join("config.json"))
        .unwrap()
        .replace(
            &bundle.to_string_lossy().into_owned(),
            &disk.to_string_lossy(),
        )
        .replace(
            &shared.to_string_lossy().into_owned(),
            &old_shared.to_string_lossy(),
        );
    std::fs::write(disk.join("config.json"), spec).unwrap();
    // A created container's record is beside its bundle now; an older
    // agent kept it on the disk.
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("container.json")).unwrap()).unwrap();
    std::fs::remove_dir_all(&bundle).unwrap();
    assert!(!disk.join("container.json").exists());
    record.as_object_mut().unwrap().remove("bundle_in_run_dir");
    std::fs::write(disk.join("container.json"), record.to_string()).unwrap();
    for f in ["resolv.conf", "hostname"] {
        std::fs::copy(shared.join(f), old_shared.join(f)).unwrap();
    }
    std::fs::remove_dir_all(&shared).unwrap();

    let mut second = env.serve("older").await;
    second.start(&id).await;
    let s = second.wait_exited(&id).await;
    assert_eq!((s.exit_code, s.reason.as_str()), (0, "Completed"));
    let lines = log_lines(&env.log_dir().join("older/old/0.log"));
    assert_eq!(lines.last().map(|l| l.2.as_str()), Some("from-old-bundle"));
    assert!(disk.join("shim.log").exists());
    assert!(!bundle.exists());

    let fresh = second
        .create(&sandbox, "fresh", &["cat", "/etc/hostname"], |_| {})
        .await;
    second.start(&fresh).await;
    let s = second.wait_exited(&fresh).await;
    assert_eq!(s.exit_code, 0);
    let lines = log_lines(&env.log_dir().join("older/fresh/0.log"));
    assert_eq!(lines.last().map(|l| l.2.as_str()), Some("older-host"));

    second.remove_sandbox(&sandbox.0).await;
    assert!(env.pod_mounts().is_empty(), "{:?}", env.pod_mounts());
    for dir in [env.root().join("containers"), env.root().join("sandboxes")] {
        let left = entries(&dir);
        assert!(left.is_empty(), "{}: {left:?}", dir.display());
    }
    second.shutdown().await;
}

/// Removes a test's bridge and masquerade table, whatever happened.
struct BridgeGuard(std::sync::Arc<BridgeNetwork>);

impl Drop for BridgeGuard {
    fn drop(&mut self) {
        let net = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(net.remove_host_network())
        })
        .join();
    }
}

/// Rewrites the JSON record at `path` with `edit`.
fn edit_record(path: &Path, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(record.as_object_mut().unwrap());
    std::fs::write(path, record.to_string()).unwrap();
}

/// After a restart of the host a sandbox recorded Ready is dead (its
/// namespaces and veth went with the host): the runtime reports it
/// NotReady, found by the boot id it recorded or, in an older agent's record
/// without one, by its namespace pins being gone; its running container
/// shows exited with an unknown status (no exit was recorded), one that had
/// ended keeps its exit. Stop and remove then work and release the pods'
/// addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandboxes_of_a_previous_boot_are_not_ready_and_their_containers_exited() {
    let Some(mut env) = Env::new() else { return };
    let tag = std::process::id() % 250;
    let state = env.path("net");
    let mut config = BridgeNetworkConfig::new(
        format!("10.246.{tag}.0/24").parse().unwrap(),
        "10.246.0.0/16".parse().unwrap(),
        &state,
    );
    config.bridge_name = format!("sktrb{tag}");
    config.nat_table = format!("skiff-test-rb{tag}");
    // Each boot's agent makes its network anew, from the records on the disk.
    let network = || std::sync::Arc::new(BridgeNetwork::new(config.clone()).unwrap());
    let net = network();
    let _guard = BridgeGuard(net.clone());
    env.network = net.clone();
    let veth_exists = |id: &str| {
        Path::new("/sys/class/net")
            .join(host_veth_name(id))
            .exists()
    };

    let mut first = env.serve("boot1").await;
    let current = run_sandbox(&mut first, &env, "current").await;
    let older = run_sandbox(&mut first, &env, "older").await;
    let sleeper = first
        .create(&current, "sleep", &["sleep", "1000"], |_| {})
        .await;
    first.start(&sleeper).await;
    let done = first.create(&current, "done", &["true"], |_| {}).await;
    first.start(&done).await;
    first.wait_exited(&done).await;
    let old_sleeper = first
        .create(&older, "sleep", &["sleep", "1000"], |_| {})
        .await;
    first.start(&old_sleeper).await;
    first.shutdown().await;
    assert_eq!(net.ipam().allocations().unwrap().len(), 2);
    assert!(veth_exists(&current.0) && veth_exists(&older.0));

    env.restart_host();
    // The records of `current` say they are from another boot; `older`'s
    // are an older agent's, without a boot id.
    let root = env.root();
    let sandbox_record = |id: &str| root.join("sandboxes").join(id).join("sandbox.json");
    let container_record = |id: &str| root.join("containers").join(id).join("container.json");
    let other_boot = serde_json::Value::from("00000000-0000-0000-0000-000000000000");
    for path in [sandbox_record(&current.0), container_record(&sleeper)] {
        edit_record(&path, |r| {
            assert!(r["boot_id"].is_string(), "{r:?}");
            r.insert("boot_id".into(), other_boot.clone());
        });
    }
    for path in [sandbox_record(&older.0), container_record(&old_sleeper)] {
        edit_record(&path, |r| {
            r.remove("boot_id");
            r.remove("network_torn_down");
        });
    }
    // The veths die with the pods' network namespaces (the kernel cleans up
    // a namespace in the background).
    wait_until(
        "the pods' veths outlived their namespaces",
        Duration::from_secs(20),
        || !veth_exists(&current.0) && !veth_exists(&older.0),
    )
    .await;

    let net = network();
    env.network = net.clone();
    let mut second = env.serve("boot2").await;
    let sandboxes = second.sandboxes().await;
    assert_eq!(sandboxes.len(), 2);
    for s in &sandboxes {
        assert_eq!(
            s.state,
            api::PodSandboxState::SandboxNotready as i32,
            "{}",
            s.metadata.as_ref().unwrap().name
        );
    }
    let status = second
        .client
        .pod_sandbox_status(api::PodSandboxStatusRequest {
            pod_sandbox_id: current.0.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(status.state, api::PodSandboxState::SandboxNotready as i32);
    // Persisted: the record says so too.
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sandbox_record(&older.0)).unwrap()).unwrap();
    assert_eq!(record["state"], "NotReady");
    for id in [&sleeper, &old_sleeper] {
        let s = second.status(id).await;
        assert_eq!(
            (s.state, s.exit_code, s.reason.as_str()),
            (ContainerState::ContainerExited as i32, 255, "Unknown"),
            "{id} of {sleeper} {old_sleeper}: {}",
            std::fs::read_to_string(container_record(id)).unwrap()
        );
    }
    let s = second.status(&done).await;
    assert_eq!((s.exit_code, s.reason.as_str()), (0, "Completed"));
    // No container starts in a dead sandbox.
    let err = second
        .client
        .create_container(api::CreateContainerRequest {
            pod_sandbox_id: current.0.clone(),
            config: Some(cri::container_config("late", &["true"])),
            sandbox_config: Some(current.1.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
    // Each keeps its address until it is stopped.
    assert_eq!(net.ipam().allocations().unwrap().len(), 2);

    second.remove_sandbox(&current.0).await;
    assert_eq!(net.ipam().allocations().unwrap().len(), 1);
    second.remove_sandbox(&older.0).await;
    assert!(net.ipam().allocations().unwrap().is_empty());
    assert!(second.sandboxes().await.is_empty());
    assert!(env.pod_mounts().is_empty(), "{:?}", env.pod_mounts());
    for dir in [env.root().join("containers"), env.root().join("sandboxes")] {
        let left = entries(&dir);
        assert!(left.is_empty(), "{}: {left:?}", dir.display());
    }
    second.shutdown().await;
}

/// The supervisor's PID, as the runtime recorded it when it started `id`.
fn shim_pid(env: &Env, id: &str) -> i32 {
    let path = env
        .root()
        .join("containers")
        .join(id)
        .join("container.json");
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    i32::try_from(record["shim"][0].as_i64().unwrap()).unwrap()
}

/// Parent PID and command name of a live process.
fn parent_and_name(pid: i32) -> (i32, String) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (head, rest) = stat.rsplit_once(')').unwrap();
    let name = head.split_once('(').unwrap().1.to_owned();
    let ppid = rest.split_whitespace().nth(1).unwrap().parse().unwrap();
    (ppid, name)
}

/// Supervisors are forked by one zygote per runtime, a child of the
/// runtime's process. When the zygote dies, running containers carry on;
/// the next supervisor is executed directly and the one after that comes
/// from a new zygote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisors_are_forked_by_a_zygote_and_outlive_it() {
    let Some(env) = Env::new() else { return };
    let me = i32::try_from(std::process::id()).unwrap();
    let mut server = env.serve("zygote").await;
    let sandbox = run_sandbox(&mut server, &env, "forked").await;
    let mut started = Vec::new();
    let mut start = async |server: &mut cri::Server, name: &str| {
        let id = server
            .create(&sandbox, name, &["sleep", "1000"], |_| {})
            .await;
        server.start(&id).await;
        let s = server.status(&id).await;
        assert_eq!(s.state, ContainerState::ContainerRunning as i32, "{name}");
        started.push(id.clone());
        id
    };

    let a = start(&mut server, "a").await;
    let b = start(&mut server, "b").await;
    let (zygote, shim_name) = parent_and_name(shim_pid(&env, &a));
    assert_eq!(shim_name, "skiff-shim");
    assert_eq!(parent_and_name(shim_pid(&env, &b)).0, zygote, "one zygote");
    assert_eq!(parent_and_name(zygote), (me, "skiff-zygote".to_owned()));

    skiff_sys::process::kill(zygote, 9).unwrap();
    wait_until("the zygote never died", Duration::from_secs(10), || {
        skiff_sys::process::live_process_start_ticks(zygote).is_none()
    })
    .await;
    let c = start(&mut server, "c").await;
    let (parent, name) = parent_and_name(shim_pid(&env, &c));
    assert_eq!(parent, me, "executed directly, as {name}");
    let d = start(&mut server, "d").await;
    let (new_zygote, _) = parent_and_name(shim_pid(&env, &d));
    assert_ne!(new_zygote, zygote);
    assert_eq!(parent_and_name(new_zygote), (me, "skiff-zygote".to_owned()));

    // The containers whose zygote died still run and stop as usual.
    assert_eq!(
        server.status(&a).await.state,
        ContainerState::ContainerRunning as i32
    );
    for id in &started {
        server.stop(id, 0).await;
        let s = server.status(id).await;
        assert_eq!(
            (s.state, s.exit_code),
            (ContainerState::ContainerExited as i32, 137)
        );
    }
    server.remove_sandbox(&sandbox.0).await;
    assert!(env.pod_mounts().is_empty(), "{:?}", env.pod_mounts());
    server.shutdown().await;
    // With its runtime gone, the zygote ends by itself.
    wait_until(
        "the zygote outlived its runtime",
        Duration::from_secs(10),
        || skiff_sys::process::live_process_start_ticks(new_zygote).is_none(),
    )
    .await;
}
