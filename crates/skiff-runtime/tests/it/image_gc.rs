//! The kubelet's image garbage collector against the built-in runtime:
//! with usage forced over the high threshold, the image no container uses
//! is removed and the used one stays (root only; skipped elsewhere).
use crate::cri;
use crate::support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cri::{Env, Services};
use skiff_kubelet::images_gc::{
    FREE_DISK_SPACE_FAILED, FsCapacity, FsStats, IMAGE_GC_FAILED, ImageGcError, ImageGcManager,
    ImageGcPolicy,
};
use skiff_runtime::cri::api;
use support::{Compression, Layer, TestImage};

const USED: &str = cri::IMAGE;
const UNUSED: &str = "example.com/other:1";

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

#[tokio::test]
async fn unused_image_is_collected_and_used_one_stays() {
    if !cri::runnable() {
        return;
    }
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
    let env = Env::with_images(&[(&busybox, Some(USED)), (&other, Some(UNUSED))]);
    let server = env.serve_with("cri", Services::RuntimeAndImages).await;
    let mut kubelet_cri = server.kubelet_cri().await;

    // A created container of the busybox image (created is "in use" too).
    let sandbox_config = cri::sandbox_config("gc");
    let sandbox = kubelet_cri
        .runtime
        .run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(sandbox_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    kubelet_cri
        .runtime
        .create_container(api::CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(cri::container_config("c", &["true"])),
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
        kubelet_cri.clone(),
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

    let images = kubelet_cri
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
    let still = kubelet_cri
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
            kubelet_cri.clone(),
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

    kubelet_cri
        .runtime
        .stop_pod_sandbox(api::StopPodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .unwrap();
    kubelet_cri
        .runtime
        .remove_pod_sandbox(api::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox,
        })
        .await
        .unwrap();
    drop(gc);
    drop(kubelet_cri);
    server.shutdown().await;
}
