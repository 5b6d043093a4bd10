//! Importing OCI archives and docker-archives into the image store.
use crate::support;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use skiff_runtime::images::import_dir;
use skiff_runtime::{ImageError, ImageStore};
use support::{Compression, Layer, TestImage, busybox_image, have_busybox, sha256};

macro_rules! require_busybox {
    () => {
        if !have_busybox() {
            eprintln!(
                "skipping: {} is missing (apt-get install busybox-static)",
                support::BUSYBOX
            );
            return;
        }
    };
}

fn snapshot_count(root: &Path) -> usize {
    std::fs::read_dir(root.join("snapshots")).unwrap().count()
}

#[test]
fn import_oci_archive_unpacks_busybox() {
    require_busybox!();
    let tmp = tempfile::tempdir().unwrap();
    let image = busybox_image();
    let archive = tmp.path().join("busybox.tar");
    support::write_oci_archive(&archive, &[(&image, Some("busybox"))]);
    let store = ImageStore::open(&tmp.path().join("root")).unwrap();

    let imported = store.import(&archive).unwrap();
    assert_eq!(imported.len(), 1);
    let record = &imported[0];
    // A ref.name without '/' or ':' is only a tag; with them it is a full name.
    assert!(record.repo_tags.is_empty(), "{:?}", record.repo_tags);
    assert_eq!(record.id.to_string(), image.id());
    assert_eq!(record.manifest_digest.to_string(), image.manifest_digest());
    assert_eq!(
        record.layers[0].diff_id.to_string(),
        sha256(&image.layers[0].tar)
    );

    support::write_oci_archive(
        &archive,
        &[(&image, Some("docker.io/library/busybox:latest"))],
    );
    let record = store.import(&archive).unwrap().remove(0);
    assert_eq!(record.repo_tags, ["docker.io/library/busybox:latest"]);
    assert!(
        record.repo_digests.is_empty(),
        "imports carry no repo digests, as in containerd"
    );
    let expected_size =
        (image.manifest.len() + image.config.len() + image.layers[0].blob.len()) as u64;
    assert_eq!(record.size, expected_size);

    let lower = store.rootfs_lowerdirs(&record).unwrap();
    assert_eq!(lower.len(), 1);
    assert_eq!(lower[0], store.snapshot_dir(&record.layers[0].chain_id));
    assert!(
        !lower[0].display().to_string().contains(':'),
        "lowerdirs must not contain ':'"
    );
    let busybox = lower[0].join("bin/busybox");
    assert_eq!(
        std::fs::read(&busybox).unwrap(),
        std::fs::read(support::BUSYBOX).unwrap()
    );
    assert_eq!(
        std::fs::metadata(&busybox).unwrap().permissions().mode() & 0o777,
        0o755
    );
    assert_eq!(
        std::fs::read_link(lower[0].join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        std::fs::metadata(lower[0].join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );

    // Found by every spelling of its name and by ID.
    for spec in [
        "busybox",
        "busybox:latest",
        "docker.io/library/busybox",
        &image.id(),
        &image.id()[7..],
    ] {
        assert_eq!(
            store.resolve(spec).unwrap().map(|r| r.id),
            Some(record.id.clone()),
            "{spec}"
        );
    }
    assert_eq!(store.resolve("busybox:1.0").unwrap(), None);

    let config = store.config(&record).unwrap();
    assert_eq!(config.config.unwrap().cmd, Some(vec!["sh".to_owned()]));

    // Pinning is recorded (and survives a restart with the index).
    assert!(!record.pinned);
    store.set_pinned(&record.id, true).unwrap();
    let mut record = record;
    record.pinned = true;

    // The index survives a restart.
    drop(store);
    let store = ImageStore::open(&tmp.path().join("root")).unwrap();
    assert_eq!(store.list().unwrap(), vec![record]);
}

#[test]
fn import_docker_archive_with_tags() {
    require_busybox!();
    let tmp = tempfile::tempdir().unwrap();
    let image = busybox_image();
    let archive = tmp.path().join("docker.tar");
    support::write_docker_archive(
        &archive,
        &[(&image, &["busybox:1.36", "example.com/team/app:v1"])],
    );
    let store = ImageStore::open(&tmp.path().join("root")).unwrap();
    let record = store.import(&archive).unwrap().remove(0);
    assert_eq!(
        record.repo_tags,
        ["docker.io/library/busybox:1.36", "example.com/team/app:v1"]
    );
    assert_eq!(record.id.to_string(), image.id());
    // The implied manifest was written to the content store.
    let manifest: serde_json::Value =
        serde_json::from_slice(&store.content().read(&record.manifest_digest).unwrap()).unwrap();
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(manifest["config"]["digest"], image.id());
    let lower = store.rootfs_lowerdirs(&record).unwrap();
    assert!(lower[0].join("bin/busybox").is_file());
}

#[test]
fn layers_stack_with_whiteouts_and_share_snapshots() {
    require_busybox!();
    let tmp = tempfile::tempdir().unwrap();
    let base = Layer::new(support::busybox_layer_tar(), Compression::Gzip);
    let mut b = tar::Builder::new(Vec::new());
    let mut h = support::header(tar::EntryType::Regular, 0o644);
    b.append_data(&mut h, "bin/.wh.cat", std::io::empty())
        .unwrap();
    let mut h = support::header(tar::EntryType::Regular, 0o644);
    b.append_data(&mut h, "etc/.wh..wh..opq", std::io::empty())
        .unwrap();
    let mut h = support::header(tar::EntryType::Regular, 0o644);
    h.set_size(5);
    b.append_data(&mut h, "etc/motd", &b"hello"[..]).unwrap();
    let top = Layer::new(b.into_inner().unwrap(), Compression::Zstd);
    let plain = Layer::new(
        support::files_tar(&[("srv/", None), ("srv/x", Some("x"))]),
        Compression::None,
    );

    let app = TestImage::new(vec![base.clone(), top], &["cat", "/etc/motd"]);
    let other = TestImage::new(vec![base, plain], &["sh"]);
    let archive = tmp.path().join("two.tar");
    support::write_oci_archive(
        &archive,
        &[
            (&app, Some("example.com/app:1")),
            (&other, Some("example.com/other:1")),
        ],
    );
    let store = ImageStore::open(&tmp.path().join("root")).unwrap();
    let records = store.import(&archive).unwrap();
    assert_eq!(records.len(), 2);
    // Same base layer, one snapshot: 3 snapshots for 4 layers.
    assert_eq!(records[0].layers[0].chain_id, records[1].layers[0].chain_id);
    assert_eq!(snapshot_count(store.root()), 3);

    let lower = store.rootfs_lowerdirs(&records[0]).unwrap();
    assert_eq!(lower.len(), 2);
    let (top_dir, base_dir) = (&lower[0], &lower[1]);
    assert!(
        base_dir.join("bin/busybox").is_file(),
        "top layer first, base last"
    );
    let cat = std::fs::symlink_metadata(top_dir.join("bin/cat")).unwrap();
    assert!(cat.file_type().is_char_device() && cat.rdev() == 0);
    let mut buf = [0u8; 4];
    let n = rustix::fs::lgetxattr(top_dir.join("etc"), "trusted.overlay.opaque", &mut buf).unwrap();
    assert_eq!(&buf[..n], b"y");
    assert_eq!(std::fs::read(top_dir.join("etc/motd")).unwrap(), b"hello");

    // Removing one image keeps what the other uses.
    let removed = store.remove("example.com/app:1").unwrap().unwrap();
    assert_eq!(removed.id, records[0].id);
    assert_eq!(snapshot_count(store.root()), 2);
    assert!(!store.content().contains(&records[0].id));
    assert!(!store.content().contains(&records[0].layers[1].digest));
    assert!(store.content().contains(&records[1].layers[0].digest));
    assert!(store.rootfs_lowerdirs(&records[1]).is_ok());
    assert_eq!(store.remove("example.com/app:1").unwrap(), None);
    store.remove(&records[1].id.to_string()).unwrap().unwrap();
    assert_eq!(snapshot_count(store.root()), 0);
    assert!(store.content().list().unwrap().is_empty());
}

#[test]
fn tampered_blob_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let layer = Layer::new(support::files_tar(&[("a", Some("a"))]), Compression::Gzip);
    let mut image = TestImage::new(vec![layer], &["sh"]);
    let good = image.clone();
    // The layer blob's content no longer matches the digest naming it.
    let mut bad_layer = image.layers[0].clone();
    bad_layer.blob = Layer::new(support::files_tar(&[("b", Some("b"))]), Compression::Gzip).blob;
    image.layers[0] = bad_layer;
    let archive = tmp.path().join("bad.tar");
    // Write the good manifest/config with the bad blob under the good name.
    let mut b = tar::Builder::new(std::fs::File::create(&archive).unwrap());
    let mut add = |path: String, data: &[u8]| {
        let mut h = support::header(tar::EntryType::Regular, 0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data).unwrap();
    };
    add("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#);
    add(
        format!("blobs/sha256/{}", &sha256(&good.layers[0].blob)[7..]),
        &image.layers[0].blob,
    );
    add(format!("blobs/sha256/{}", &good.id()[7..]), &good.config);
    add(
        format!("blobs/sha256/{}", &good.manifest_digest()[7..]),
        &good.manifest,
    );
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{}}}]}}"#,
        good.manifest_digest(),
        good.manifest.len()
    );
    add("index.json".into(), index.as_bytes());
    b.finish().unwrap();
    drop(b);

    let store = ImageStore::open(&tmp.path().join("root")).unwrap();
    let err = store.import(&archive).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(store.list().unwrap().is_empty());
    assert!(
        !store
            .content()
            .contains(&sha256(&good.layers[0].blob).parse().unwrap())
    );
}

#[test]
fn diff_id_mismatch_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let layer = Layer::new(support::files_tar(&[("a", Some("a"))]), Compression::Gzip);
    // A config whose diff_id describes some other layer.
    let other = TestImage::new(
        vec![Layer::new(
            support::files_tar(&[("z", Some("z"))]),
            Compression::None,
        )],
        &["sh"],
    );
    let forged = TestImage::from_parts(vec![layer], other.config);
    let archive = tmp.path().join("forged.tar");
    support::write_oci_archive(&archive, &[(&forged, Some("example.com/forged:1"))]);
    let store = ImageStore::open(&tmp.path().join("root")).unwrap();
    let err = store.import(&archive).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(store.list().unwrap().is_empty());
    assert_eq!(
        snapshot_count(store.root()),
        0,
        "no half-unpacked snapshot remains"
    );
}

#[test]
fn import_dir_imports_each_tar() {
    require_busybox!();
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("agent/images");
    std::fs::create_dir_all(&images).unwrap();
    let image = busybox_image();
    support::write_oci_archive(
        &images.join("a.tar"),
        &[(&image, Some("docker.io/library/busybox:latest"))],
    );
    support::write_docker_archive(&images.join("b.tar"), &[(&image, &["busybox:stable"])]);
    std::fs::write(images.join("c.tar"), b"not an archive").unwrap();
    std::fs::write(images.join("notes.txt"), b"ignored").unwrap();
    let store = ImageStore::open(&tmp.path().join("root")).unwrap();
    let results = import_dir(&store, &images);
    let names: Vec<_> = results
        .iter()
        .map(|(p, r)| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                r.is_ok(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("a.tar".into(), true),
            ("b.tar".into(), true),
            ("c.tar".into(), false)
        ]
    );
    // Same image from both archives: one record with both tags.
    let list = store.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        list[0].repo_tags,
        [
            "docker.io/library/busybox:latest",
            "docker.io/library/busybox:stable"
        ]
    );
}

#[test]
fn two_processes_share_one_store() {
    // Two handles on one root stand in for the agent and `skiff images import`.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let agent = ImageStore::open(&root).unwrap();
    let partial = agent.content().temp_file().unwrap();
    let cli = ImageStore::open(&root).unwrap();
    assert!(
        partial.path().exists(),
        "opening a second handle keeps in-flight writes"
    );

    let one = TestImage::new(
        vec![Layer::new(
            support::files_tar(&[("one", Some("1"))]),
            Compression::None,
        )],
        &["one"],
    );
    let two = TestImage::new(
        vec![Layer::new(
            support::files_tar(&[("two", Some("2"))]),
            Compression::None,
        )],
        &["two"],
    );
    let (a, b) = (tmp.path().join("one.tar"), tmp.path().join("two.tar"));
    support::write_oci_archive(&a, &[(&one, Some("example.com/one:1"))]);
    support::write_oci_archive(&b, &[(&two, Some("example.com/two:1"))]);
    agent.import(&a).unwrap();
    cli.import(&b).unwrap();
    // Neither update is lost, and each handle sees the other's.
    for store in [&agent, &cli] {
        let mut tags: Vec<String> = store
            .list()
            .unwrap()
            .into_iter()
            .flat_map(|i| i.repo_tags)
            .collect();
        tags.sort();
        assert_eq!(tags, ["example.com/one:1", "example.com/two:1"]);
    }
    cli.remove("example.com/one:1").unwrap().unwrap();
    assert_eq!(agent.resolve("example.com/one:1").unwrap(), None);
    assert!(agent.resolve("example.com/two:1").unwrap().is_some());

    // Once every handle is closed, partial writes are crash leftovers.
    let leftover = partial.path().to_path_buf();
    std::mem::forget(partial); // as a crash would leave it
    drop((agent, cli));
    let _reopened = ImageStore::open(&root).unwrap();
    assert!(!leftover.exists());
}
