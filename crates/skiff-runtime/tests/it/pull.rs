//! Pulls from a real `docker-registry` on 127.0.0.1: by tag, by digest, through
//! a multi-arch index, with basic auth, and through the CRI.
use crate::support;

use std::sync::Arc;

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{OciImageIndex, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use serde_json::json;
use skiff_runtime::images::PullAuth;
use skiff_runtime::{ImageError, ImageStore, RegistryConfig};
use support::TestImage;
use support::registry::{self, Registry};

fn client() -> oci_client::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    })
}

/// Pushes `image` as `reference`; returns the manifest digest the registry serves.
async fn push(image: &TestImage, reference: &str, auth: &RegistryAuth) -> String {
    let client = client();
    let r: oci_client::Reference = reference.parse().unwrap();
    let layers: Vec<ImageLayer> = image
        .layers
        .iter()
        .map(|l| ImageLayer::new(l.blob.clone(), l.media_type.to_owned(), None))
        .collect();
    let config = Config::new(
        image.config.clone(),
        "application/vnd.oci.image.config.v1+json".into(),
        None,
    );
    let manifest: OciImageManifest = serde_json::from_slice(&image.manifest).unwrap();
    client
        .push(&r, &layers, config, auth, Some(manifest))
        .await
        .unwrap();
    client.fetch_manifest_digest(&r, auth).await.unwrap()
}

macro_rules! setup {
    ($auth:expr) => {{
        if !support::have_busybox() {
            eprintln!("skipping: {} is missing", support::BUSYBOX);
            return;
        }
        let Some(registry) = Registry::start($auth) else {
            return;
        };
        registry
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_by_tag_and_by_digest() {
    let registry = setup!(false);
    let image = support::busybox_image();
    let name = format!("{}/library/busybox", registry.addr);
    let digest = push(&image, &format!("{name}:1.36"), &RegistryAuth::Anonymous).await;

    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(ImageStore::open(tmp.path()).unwrap());
    let config = RegistryConfig::default();
    let record = store
        .pull(&format!("{name}:1.36"), &PullAuth::Anonymous, &config)
        .await
        .unwrap();
    assert_eq!(record.id.to_string(), image.id());
    assert_eq!(record.repo_tags, [format!("{name}:1.36")]);
    assert_eq!(record.repo_digests, [format!("{name}@{digest}")]);
    assert_eq!(record.manifest_digest.to_string(), digest);
    let lower = store.rootfs_lowerdirs(&record).unwrap();
    assert_eq!(
        std::fs::read(lower[0].join("bin/busybox")).unwrap(),
        std::fs::read(support::BUSYBOX).unwrap()
    );
    assert_eq!(
        store
            .resolve(&format!("{name}@{digest}"))
            .unwrap()
            .unwrap()
            .id,
        record.id
    );

    // By digest, into an empty store: no tag, only the repo digest.
    let tmp2 = tempfile::tempdir().unwrap();
    let store2 = Arc::new(ImageStore::open(tmp2.path()).unwrap());
    let by_digest = store2
        .pull(&format!("{name}@{digest}"), &PullAuth::Anonymous, &config)
        .await
        .unwrap();
    assert_eq!(by_digest.id, record.id);
    assert!(by_digest.repo_tags.is_empty());
    assert_eq!(by_digest.repo_digests, [format!("{name}@{digest}")]);

    // Pulling again is cheap and changes nothing.
    let again = store
        .pull(&format!("{name}:1.36"), &PullAuth::Anonymous, &config)
        .await
        .unwrap();
    assert_eq!(again, record);

    // Unknown tag and unknown repository: NotFound-class errors.
    for missing in [
        format!("{name}:nope"),
        format!("{}/nobody/here:1", registry.addr),
    ] {
        let err = store
            .pull(&missing, &PullAuth::Anonymous, &config)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::Pull {
                    not_found: true,
                    ..
                }
            ),
            "{missing}: {err}"
        );
    }
    // A digest the registry does not have.
    let absent = format!("{name}@sha256:{}", "0".repeat(64));
    assert!(
        store
            .pull(&absent, &PullAuth::Anonymous, &config)
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_selects_host_platform_from_index() {
    let registry = setup!(false);
    let amd64 = support::busybox_image();
    let arm64 = TestImage::new(
        vec![support::Layer::new(
            support::files_tar(&[("arm", Some("arm64"))]),
            support::Compression::Gzip,
        )],
        &["true"],
    );
    let name = format!("{}/multi/arch", registry.addr);
    let auth = RegistryAuth::Anonymous;
    let d_arm = push(&arm64, &format!("{name}:arm64"), &auth).await;
    let d_amd = push(&amd64, &format!("{name}:amd64"), &auth).await;
    let entry = |digest: &str, arch: &str| {
        json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": amd64.manifest.len(),
            "platform": {"architecture": arch, "os": "linux"},
        })
    };
    // The size field must match what the registry stores; fetch the real ones.
    let client = client();
    let mut manifests = Vec::new();
    for (digest, arch) in [(&d_arm, "arm64"), (&d_amd, "amd64")] {
        let r: oci_client::Reference = format!("{name}@{digest}").parse().unwrap();
        let (raw, _) = client
            .pull_manifest_raw(&r, &auth, &["application/vnd.oci.image.manifest.v1+json"])
            .await
            .unwrap();
        let mut e = entry(digest, arch);
        e["size"] = json!(raw.len());
        manifests.push(e);
    }
    let index: OciImageIndex = serde_json::from_value(json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))
    .unwrap();
    let index_ref: oci_client::Reference = format!("{name}:multi").parse().unwrap();
    client
        .push_manifest_list(&index_ref, &auth, index)
        .await
        .unwrap();
    let index_digest = client
        .fetch_manifest_digest(&index_ref, &auth)
        .await
        .unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(ImageStore::open(tmp.path()).unwrap());
    let record = store
        .pull(
            &format!("{name}:multi"),
            &PullAuth::Anonymous,
            &RegistryConfig::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        std::env::consts::ARCH,
        "x86_64",
        "this test expects an amd64 host"
    );
    assert_eq!(record.id.to_string(), amd64.id());
    assert_eq!(record.manifest_digest.to_string(), d_amd);
    // The repo digest names what the tag resolved to: the index.
    assert_eq!(record.repo_digests, [format!("{name}@{index_digest}")]);
    // Only the chosen platform's blobs were fetched and kept.
    assert!(!store.content().contains(&arm64.id().parse().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_with_basic_auth_through_the_cri() {
    use skiff_runtime::cri::api::image_service_client::ImageServiceClient;
    use skiff_runtime::cri::api::{AuthConfig, ImageSpec, PullImageRequest};

    let registry = setup!(true);
    let image = support::busybox_image();
    let good = RegistryAuth::Basic(registry::USER.into(), registry::PASSWORD.into());
    let name = format!("{}/private/busybox:1", registry.addr);
    push(&image, &name, &good).await;

    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(ImageStore::open(&tmp.path().join("root")).unwrap());
    let socket = tmp.path().join("cri.sock");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = {
        let (store, socket) = (Arc::clone(&store), socket.clone());
        tokio::spawn(async move {
            skiff_runtime::cri::serve_image_service(
                store,
                RegistryConfig::default(),
                &socket,
                async {
                    let _ = stopped.await;
                },
            )
            .await
        })
    };
    let channel = loop {
        if let Ok(c) = skiff_runtime::cri::connect(&socket).await {
            break c;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let mut client = ImageServiceClient::new(channel);
    let request = |auth: Option<AuthConfig>| PullImageRequest {
        image: Some(ImageSpec {
            image: name.clone(),
            ..Default::default()
        }),
        auth,
        sandbox_config: None,
    };

    let err = client.pull_image(request(None)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    let wrong = AuthConfig {
        username: registry::USER.into(),
        password: "wrong".into(),
        ..Default::default()
    };
    let err = client.pull_image(request(Some(wrong))).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");

    // What the kubelet passes from an imagePullSecret's docker config.
    let docker_config = format!(
        r#"{{"auths":{{"{}":{{"username":"{}","password":"{}"}}}}}}"#,
        registry.addr,
        registry::USER,
        registry::PASSWORD
    );
    let creds = skiff_runtime::images::credentials_from_docker_config(
        docker_config.as_bytes(),
        &registry.addr,
    )
    .unwrap()
    .unwrap();
    let PullAuth::Basic { username, password } = creds else {
        panic!("expected basic credentials");
    };
    let response = client
        .pull_image(request(Some(AuthConfig {
            username,
            password,
            ..Default::default()
        })))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.image_ref, image.id());
    assert_eq!(
        store.resolve(&name).unwrap().unwrap().id.to_string(),
        image.id()
    );

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
