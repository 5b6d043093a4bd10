//! CRI stats over the unix socket with a real container burning CPU and
//! holding memory (root only; skipped elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use skiff_runtime::cri::api;
use skiff_runtime::cri::api::runtime_service_client::RuntimeServiceClient;
use skiff_runtime::cri::{CriRuntimeService, connect, serve_unix};
use skiff_runtime::{ImageStore, NoopPodNetwork, Runtime, RuntimeConfig, RuntimeDeps};
use tonic::Code;

const IMAGE: &str = "docker.io/library/busybox:latest";

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        .unwrap_or(false)
}

/// Kills what still runs and detaches mounts under the temp dir, so a failed
/// test leaves nothing behind.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let containers = self.0.join("runtime/containers");
        for entry in std::fs::read_dir(&containers)
            .into_iter()
            .flatten()
            .flatten()
        {
            let Ok(data) = std::fs::read(entry.path().join("container.json")) else {
                continue;
            };
            let Ok(record) = serde_json::from_slice::<serde_json::Value>(&data) else {
                continue;
            };
            if let Some(pid) = record["pid"].as_i64() {
                let _ = skiff_sys::process::kill(pid as i32, 9);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
            .filter(|p| Path::new(p).starts_with(&self.0))
            .collect();
        mounts.reverse();
        for m in mounts {
            let _ = skiff_sys::Mounter::unmount(&skiff_sys::LinuxMounter, Path::new(&m));
        }
        for entry in std::fs::read_dir(self.0.join("runtime/sandboxes"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let id = entry.file_name().to_string_lossy().into_owned();
            let _ = skiff_sys::cgroups::remove_cgroup(&format!("/skiff/{id}"));
        }
    }
}

#[tokio::test]
async fn stats_of_a_busy_container() {
    if !support::have_busybox() || !is_root() {
        eprintln!("skipping: needs root and busybox-static");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(tmp.path().to_path_buf());
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
            images: store.clone(),
            namespaces: Arc::new(skiff_sys::LinuxPodNamespaces),
            mounter: Arc::new(skiff_sys::LinuxMounter),
            network: Arc::new(NoopPodNetwork),
        },
    )
    .unwrap();
    let socket = tmp.path().join("cri.sock");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let router = tonic::transport::Server::builder().add_service(
        api::runtime_service_server::RuntimeServiceServer::new(CriRuntimeService::new(Arc::new(
            runtime,
        ))),
    );
    let path = socket.clone();
    let server = tokio::spawn(async move {
        serve_unix(router, &path, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    let channel = loop {
        if let Ok(c) = connect(&socket).await {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mut client = RuntimeServiceClient::new(channel);

    let sandbox_config = api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: "stats".into(),
            uid: "uid-stats".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        labels: [("app".to_owned(), "burn".to_owned())].into(),
        log_directory: tmp.path().join("pods").to_string_lossy().into_owned(),
        ..Default::default()
    };
    let sandbox = client
        .run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(sandbox_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let create = |name: &str, command: &[&str]| api::CreateContainerRequest {
        pod_sandbox_id: sandbox.clone(),
        config: Some(api::ContainerConfig {
            metadata: Some(api::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(api::ImageSpec {
                image: IMAGE.into(),
                ..Default::default()
            }),
            command: command.iter().map(|s| s.to_string()).collect(),
            labels: [("role".to_owned(), name.to_owned())].into(),
            ..Default::default()
        }),
        sandbox_config: Some(sandbox_config.clone()),
    };
    // 4 MB held in a shell variable, then a busy loop.
    let burn = client
        .create_container(create(
            "burn",
            &[
                "sh",
                "-c",
                "a=$(head -c 4000000 /dev/zero | tr '\\0' x); while :; do :; done",
            ],
        ))
        .await
        .unwrap()
        .into_inner()
        .container_id;
    client
        .start_container(api::StartContainerRequest {
            container_id: burn.clone(),
        })
        .await
        .unwrap();
    let idle = client
        .create_container(create("idle", &["sleep", "1"]))
        .await
        .unwrap()
        .into_inner()
        .container_id;

    let stats = |id: &str| api::ContainerStatsRequest {
        container_id: id.to_owned(),
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first = client
        .container_stats(stats(&burn))
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let second = client
        .container_stats(stats(&burn))
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();

    let attrs = second.attributes.as_ref().unwrap();
    assert_eq!(attrs.id, burn);
    assert_eq!(attrs.metadata.as_ref().unwrap().name, "burn");
    assert_eq!(attrs.labels.get("role").map(String::as_str), Some("burn"));
    let cpu1 = first.cpu.unwrap();
    let cpu2 = second.cpu.as_ref().unwrap();
    let (u1, u2) = (
        cpu1.usage_core_nano_seconds.unwrap().value,
        cpu2.usage_core_nano_seconds.unwrap().value,
    );
    assert!(u2 > u1, "CPU usage grows: {u1} then {u2}");
    assert!(cpu2.timestamp > cpu1.timestamp);
    assert!(
        cpu1.usage_nano_cores.is_none(),
        "no rate on the first sample"
    );
    let rate = cpu2.usage_nano_cores.unwrap().value;
    // A busy loop uses about one core (the host has two, shared).
    assert!(
        rate > 100_000_000 && rate < 2_100_000_000,
        "nano cores {rate}"
    );
    let mem = second.memory.as_ref().unwrap();
    let working_set = mem.working_set_bytes.unwrap().value;
    assert!(working_set > 0);
    assert!(mem.usage_bytes.unwrap().value >= working_set);
    assert!(mem.rss_bytes.unwrap().value > 3_000_000, "{mem:?}");
    assert!(
        second
            .writable_layer
            .as_ref()
            .unwrap()
            .inodes_used
            .unwrap()
            .value
            >= 1
    );

    // A created container: attributes and writable layer, no CPU or memory.
    let created = client
        .container_stats(stats(&idle))
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    assert_eq!(created.attributes.unwrap().id, idle);
    assert!(created.cpu.is_none() && created.memory.is_none());
    assert!(created.writable_layer.is_some());

    let err = client.container_stats(stats("nope")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let list = |filter: api::ContainerStatsFilter| api::ListContainerStatsRequest {
        filter: Some(filter),
    };
    let all = client
        .list_container_stats(list(Default::default()))
        .await
        .unwrap()
        .into_inner()
        .stats;
    assert_eq!(all.len(), 2);
    let by_label = client
        .list_container_stats(list(api::ContainerStatsFilter {
            label_selector: [("role".to_owned(), "idle".to_owned())].into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .stats;
    assert_eq!(by_label.len(), 1);
    assert_eq!(by_label[0].attributes.as_ref().unwrap().id, idle);
    let other_pod = client
        .list_container_stats(list(api::ContainerStatsFilter {
            pod_sandbox_id: "ffff".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .stats;
    assert!(other_pod.is_empty());

    // The pod: its cgroup's counters cover the busy container.
    let pod = client
        .pod_sandbox_stats(api::PodSandboxStatsRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    assert_eq!(pod.attributes.as_ref().unwrap().id, sandbox);
    let linux = pod.linux.unwrap();
    assert_eq!(linux.containers.len(), 2);
    let pod_cpu = linux.cpu.unwrap().usage_core_nano_seconds.unwrap().value;
    assert!(
        pod_cpu >= u2,
        "pod CPU {pod_cpu} covers the container's {u2}"
    );
    assert!(linux.memory.unwrap().working_set_bytes.unwrap().value > 0);
    assert!(linux.process.unwrap().process_count.unwrap().value >= 1);
    let pods = client
        .list_pod_sandbox_stats(api::ListPodSandboxStatsRequest {
            filter: Some(api::PodSandboxStatsFilter {
                label_selector: [("app".to_owned(), "burn".to_owned())].into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .stats;
    assert_eq!(pods.len(), 1);
    let err = client
        .pod_sandbox_stats(api::PodSandboxStatsRequest {
            pod_sandbox_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    client
        .stop_pod_sandbox(api::StopPodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .unwrap();
    client
        .remove_pod_sandbox(api::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox,
        })
        .await
        .unwrap();
    drop(client);
    let _ = stop.send(());
    let _ = server.await;
}
