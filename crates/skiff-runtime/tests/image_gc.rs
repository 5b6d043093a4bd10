//! The kubelet's image garbage collector against the built-in runtime:
//! with usage forced over the high threshold, the image no container uses
//! is removed and the used one stays (root only; skipped elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use skiff_kubelet::cri::Cri;
use skiff_kubelet::images_gc::{
    FREE_DISK_SPACE_FAILED, FsCapacity, FsStats, IMAGE_GC_FAILED, ImageGcError, ImageGcManager,
    ImageGcPolicy,
};
use skiff_runtime::cri::api::image_service_server::ImageServiceServer;
use skiff_runtime::cri::api::runtime_service_server::RuntimeServiceServer;
use skiff_runtime::cri::{CriImageService, CriRuntimeService, api, serve_unix};
use skiff_runtime::{
    ImageStore, NoopPodNetwork, RegistryConfig, Runtime, RuntimeConfig, RuntimeDeps,
};
use support::{Compression, Layer, TestImage};

const USED: &str = "docker.io/library/busybox:latest";
const UNUSED: &str = "example.com/other:1";

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        .unwrap_or(false)
}

/// A filesystem 90% full, whatever the host's is.
#[derive(Debug)]
struct NinetyPercentFull;

impl FsStats for NinetyPercentFull {
    fn stat(&self, path: &Path) -> std::io::Result<FsCapacity> {
        assert!(
            path.is_dir(),
            "GC measures the runtime's image fs: {path:?}"
        );
        Ok(FsCapacity {
            capacity_bytes: 1000,
            available_bytes: 100,
        })
    }
}

/// Detaches mounts left under the temp dir by a failed run.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
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
    }
}

#[tokio::test]
async fn unused_image_is_collected_and_used_one_stays() {
    if !support::have_busybox() || !is_root() {
        eprintln!("skipping: needs root and busybox-static");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(tmp.path().to_path_buf());
    let busybox = support::busybox_image();
    let other = TestImage::new(
        vec![
            Layer::new(support::busybox_layer_tar(), Compression::Gzip),
            Layer::new(
                support::files_tar(&[("data.txt", Some(&"x".repeat(64 * 1024)))]),
                Compression::None,
            ),
        ],
        &["sh"],
    );
    let archive = tmp.path().join("images.tar");
    support::write_oci_archive(&archive, &[(&busybox, Some(USED)), (&other, Some(UNUSED))]);
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
    let router = tonic::transport::Server::builder()
        .add_service(RuntimeServiceServer::new(CriRuntimeService::new(Arc::new(
            runtime,
        ))))
        .add_service(ImageServiceServer::new(CriImageService::new(
            store.clone(),
            RegistryConfig::default(),
        )));
    let path = socket.clone();
    let server = tokio::spawn(async move {
        serve_unix(router, &path, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    let mut cri = loop {
        if let Ok(c) = Cri::connect(&socket).await {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    // A created container of the busybox image (created is "in use" too).
    let sandbox_config = api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: "gc".into(),
            uid: "uid-gc".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        ..Default::default()
    };
    let sandbox = cri
        .runtime
        .run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(sandbox_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    cri.runtime
        .create_container(api::CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(api::ContainerConfig {
                metadata: Some(api::ContainerMetadata {
                    name: "c".into(),
                    attempt: 0,
                }),
                image: Some(api::ImageSpec {
                    image: USED.into(),
                    ..Default::default()
                }),
                command: vec!["true".into()],
                ..Default::default()
            }),
            sandbox_config: Some(sandbox_config),
        })
        .await
        .unwrap();

    let (gc_events, mut event_rx) = skiff_client::events::EventRecorder::channel(8);
    let policy = ImageGcPolicy {
        min_age: Duration::ZERO,
        ..ImageGcPolicy::default()
    };
    let mut gc = ImageGcManager::new(
        cri.clone(),
        policy,
        Arc::new(NinetyPercentFull),
        Arc::new(gc_events.clone()),
        "node-a",
    );
    let now = tokio::time::Instant::now();
    gc.detect(now).await.unwrap();
    // 90% used, low threshold 80%: 100 bytes to free; the unused image has more.
    gc.garbage_collect(now + Duration::from_secs(1))
        .await
        .unwrap();

    let images = cri
        .images
        .list_images(api::ListImagesRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .images;
    let ids: Vec<&str> = images.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, [busybox.id()], "the unused image is gone");
    assert!(event_rx.try_recv().is_err(), "enough was freed: no event");

    // Still 90% used and nothing left to free: upstream's failure event.
    let err = gc
        .garbage_collect(now + Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(matches!(err, ImageGcError::Failed(_)), "{err:?}");
    let event = event_rx.try_recv().unwrap();
    assert_eq!(event.reason, FREE_DISK_SPACE_FAILED);
    assert!(!event.normal);
    assert_eq!(
        event.note,
        "Failed to garbage collect required amount of images. Attempted to free 100 bytes, but only found 0 bytes eligible to free."
    );
    assert_eq!(event.regarding.kind.as_deref(), Some("Node"));
    let still = cri
        .images
        .image_status(api::ImageStatusRequest {
            image: Some(api::ImageSpec {
                image: USED.into(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(still.image.is_some(), "the used image stays");

    // The loop: the first failure only logs; a second in a row raises
    // ImageGCFailed (each pass still reports FreeDiskSpaceFailed).
    let (shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
    let looping = tokio::spawn(
        ImageGcManager::new(
            cri.clone(),
            policy,
            Arc::new(NinetyPercentFull),
            Arc::new(gc_events.clone()),
            "node-a",
        )
        .run(Duration::from_millis(100), shutdown),
    );
    let mut reasons = Vec::new();
    while reasons.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(10), event_rx.recv())
            .await
            .expect("GC loop events")
            .unwrap();
        reasons.push(event.reason);
    }
    assert_eq!(
        reasons,
        [
            FREE_DISK_SPACE_FAILED,
            FREE_DISK_SPACE_FAILED,
            IMAGE_GC_FAILED
        ]
    );
    shutdown_tx.send(true).unwrap();
    looping.await.unwrap();

    cri.runtime
        .stop_pod_sandbox(api::StopPodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .unwrap();
    cri.runtime
        .remove_pod_sandbox(api::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox,
        })
        .await
        .unwrap();
    drop(gc);
    drop(cri);
    let _ = stop.send(());
    let _ = server.await;
}
