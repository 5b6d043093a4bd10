//! CRI stats over the unix socket with a real container burning CPU and
//! holding memory (root only; skipped elsewhere).
use crate::cri;

use std::time::Duration;

use cri::Env;
use skiff_runtime::cri::api;
use tonic::Code;

#[tokio::test]
async fn stats_of_a_busy_container() {
    let Some(env) = Env::new() else { return };
    let mut server = env.serve("cri").await;
    let (sandbox, sandbox_config) = server
        .run_sandbox(api::PodSandboxConfig {
            labels: [("app".to_owned(), "burn".to_owned())].into(),
            log_directory: env.log_dir().to_string_lossy().into_owned(),
            ..cri::sandbox_config("stats")
        })
        .await;
    let client = &mut server.client;
    let create = |name: &str, command: &[&str]| api::CreateContainerRequest {
        pod_sandbox_id: sandbox.clone(),
        config: Some(api::ContainerConfig {
            labels: [("role".to_owned(), name.to_owned())].into(),
            ..cri::container_config(name, command)
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
    // The busy loop may get little CPU on a loaded machine: sample until
    // its usage grows between two samples (each sample is the previous one
    // of the next, for the rate).
    let base = client.clone();
    let sample = |id: String| {
        let mut client = base.clone();
        async move {
            client
                .container_stats(stats(&id))
                .await
                .unwrap()
                .into_inner()
                .stats
                .unwrap()
        }
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut first = sample(burn.clone()).await;
    assert!(
        first.cpu.as_ref().unwrap().usage_nano_cores.is_none(),
        "no rate on the first sample"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let second = loop {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let next = sample(burn.clone()).await;
        let usage = |s: &api::ContainerStats| {
            s.cpu
                .as_ref()
                .unwrap()
                .usage_core_nano_seconds
                .unwrap()
                .value
        };
        if usage(&next) > usage(&first) {
            break next;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "CPU usage of the busy loop never grew: {}",
            usage(&next)
        );
        first = next;
    };

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
    assert!(cpu2.timestamp > cpu1.timestamp);
    // The rate is the usage between the two samples over their interval;
    // a busy loop uses at most the host's two cores.
    let rate = cpu2.usage_nano_cores.unwrap().value;
    let expected = (u2 - u1) as f64 * 1e9 / (cpu2.timestamp - cpu1.timestamp) as f64;
    assert!(
        rate > 0 && rate < 2_100_000_000 && (rate as f64 - expected).abs() <= expected * 0.05 + 1.0,
        "nano cores {rate}, from the samples {expected}"
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

    server.remove_sandbox(&sandbox).await;
    server.shutdown().await;
}
