//! The CRI ImageService over a unix socket, driven by the k8s-cri tonic client.
use crate::support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use skiff_runtime::cri::api::image_service_client::ImageServiceClient;
use skiff_runtime::cri::api::{
    ImageFilter, ImageFsInfoRequest, ImageSpec, ImageStatusRequest, ListImagesRequest,
    PullImageRequest, RemoveImageRequest,
};
use skiff_runtime::cri::{connect, serve_image_service};
use skiff_runtime::{ImageStore, RegistryConfig};
use tonic::transport::Channel;

/// A CRI server on a temp socket; stops when `stop` is sent.
struct Server {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    socket: PathBuf,
}

impl Server {
    async fn start(store: Arc<ImageStore>, socket: &Path) -> (Self, ImageServiceClient<Channel>) {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let path = socket.to_path_buf();
        let task = tokio::spawn(async move {
            serve_image_service(store, RegistryConfig::default(), &path, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        let mut attempts = 0;
        let channel = loop {
            match connect(socket).await {
                Ok(c) => break c,
                Err(e) => {
                    attempts += 1;
                    assert!(attempts < 100, "CRI socket never came up: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        let server = Self {
            stop: Some(stop),
            task,
            socket: socket.to_path_buf(),
        };
        (server, ImageServiceClient::new(channel))
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        (&mut self.task).await.unwrap();
        assert!(!self.socket.exists(), "socket removed on shutdown");
    }
}

fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: image.into(),
        ..Default::default()
    })
}

#[tokio::test]
async fn list_status_remove_over_the_socket() {
    if !support::have_busybox() {
        eprintln!("skipping: {} is missing", support::BUSYBOX);
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(ImageStore::open(&tmp.path().join("root")).unwrap());
    let busybox = support::busybox_image();
    let other = support::TestImage::new(
        vec![support::Layer::new(
            support::files_tar(&[("data/", None), ("data/x", Some("x"))]),
            support::Compression::None,
        )],
        &["/data/x"],
    );
    let archive = tmp.path().join("images.tar");
    support::write_oci_archive(
        &archive,
        &[
            (&busybox, Some("docker.io/library/busybox:latest")),
            (&other, Some("example.com/data:1")),
        ],
    );
    store.import(&archive).unwrap();
    // A stale socket file from an earlier run is replaced.
    let socket = tmp.path().join("run/cri.sock");
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    std::fs::write(&socket, b"stale").unwrap();
    let (server, mut client) = Server::start(Arc::clone(&store), &socket).await;

    let list = client
        .list_images(ListImagesRequest { filter: None })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.images.len(), 2);
    let image = list.images.iter().find(|i| i.id == busybox.id()).unwrap();
    assert_eq!(image.repo_tags, ["docker.io/library/busybox:latest"]);
    assert_eq!(
        image.uid.as_ref().map(|u| u.value),
        Some(0),
        "User 0:0 is uid 0"
    );
    assert_eq!(image.username, "");
    assert_eq!(image.spec.as_ref().unwrap().image, busybox.id());
    assert_eq!(
        image.size,
        (busybox.manifest.len() + busybox.config.len() + busybox.layers[0].blob.len()) as u64
    );

    let filtered = client
        .list_images(ListImagesRequest {
            filter: Some(ImageFilter {
                image: spec("busybox"),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        filtered.images.iter().map(|i| &i.id).collect::<Vec<_>>(),
        [&busybox.id()]
    );

    let status = client
        .image_status(ImageStatusRequest {
            image: spec("busybox:latest"),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.image.unwrap().id, busybox.id());
    // Unknown images are "no image", not an error (CRI contract).
    let status = client
        .image_status(ImageStatusRequest {
            image: spec("busybox:nope"),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(status.image.is_none());
    let err = client
        .image_status(ImageStatusRequest {
            image: spec(""),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    let fs_before = client
        .image_fs_info(ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let usage = &fs_before.image_filesystems[0];
    assert_eq!(
        usage.fs_id.as_ref().unwrap().mountpoint,
        store.root().display().to_string()
    );
    let used_before = usage.used_bytes.as_ref().unwrap().value;
    let busybox_len = std::fs::metadata(support::BUSYBOX).unwrap().len();
    assert!(used_before > busybox_len, "{used_before} <= {busybox_len}");
    assert!(usage.inodes_used.as_ref().unwrap().value > support::APPLETS.len() as u64);

    // Malformed references are the caller's error.
    let err = client
        .pull_image(PullImageRequest {
            image: spec("Not/A:valid:ref"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");

    client
        .remove_image(RemoveImageRequest {
            image: spec("busybox"),
        })
        .await
        .unwrap();
    let list = client
        .list_images(ListImagesRequest { filter: None })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        list.images
            .iter()
            .map(|i| i.id.as_str())
            .collect::<Vec<_>>(),
        [other.id()]
    );
    // Idempotent, as the CRI requires.
    client
        .remove_image(RemoveImageRequest {
            image: spec("busybox"),
        })
        .await
        .unwrap();
    let fs_after = client
        .image_fs_info(ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let used_after = fs_after.image_filesystems[0]
        .used_bytes
        .as_ref()
        .unwrap()
        .value;
    assert!(
        used_before - used_after >= busybox_len,
        "removing busybox freed its blob and snapshot: {used_before} -> {used_after}"
    );
    // Removal by ID.
    client
        .remove_image(RemoveImageRequest {
            image: spec(&other.id()),
        })
        .await
        .unwrap();
    assert!(
        client
            .list_images(ListImagesRequest { filter: None })
            .await
            .unwrap()
            .into_inner()
            .images
            .is_empty()
    );
    server.stop().await;
}
