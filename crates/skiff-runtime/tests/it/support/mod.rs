//! Test helpers shared by the runtime's integration tests: a busybox image built
//! in Rust from the host's busybox-static, written as an OCI archive or a
//! docker-archive, and a throwaway `docker-registry` on loopback.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod registry;

use std::io::Write;
use std::path::Path;

use serde_json::json;
use sha2::{Digest as _, Sha256};

/// Where busybox-static installs its binary.
pub const BUSYBOX: &str = "/bin/busybox";
/// Applets linked in the test image.
pub const APPLETS: &[&str] = &[
    "sh", "ls", "cat", "echo", "sleep", "true", "false", "env", "id", "wget", "httpd",
];

/// `sha256:<hex>` of `data`.
pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

/// One layer: its tar and the blob stored for it.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The uncompressed tar (its digest is the diffID).
    pub tar: Vec<u8>,
    /// The blob as stored and shipped.
    pub blob: Vec<u8>,
    /// The blob's media type.
    pub media_type: &'static str,
}

impl Layer {
    /// Compresses `tar` as asked.
    pub fn new(tar: Vec<u8>, compression: Compression) -> Self {
        let (blob, media_type) = match compression {
            Compression::None => (tar.clone(), "application/vnd.oci.image.layer.v1.tar"),
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&tar).unwrap();
                (
                    e.finish().unwrap(),
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                )
            }
            Compression::Zstd => (
                zstd::encode_all(&tar[..], 3).unwrap(),
                "application/vnd.oci.image.layer.v1.tar+zstd",
            ),
        };
        Self {
            tar,
            blob,
            media_type,
        }
    }
}

/// A complete single-platform image: config, manifest and layers.
#[derive(Debug, Clone)]
pub struct TestImage {
    /// Layers, base first.
    pub layers: Vec<Layer>,
    /// The config JSON.
    pub config: Vec<u8>,
    /// The OCI manifest JSON.
    pub manifest: Vec<u8>,
}

impl TestImage {
    /// An image of `layers` whose config runs `cmd`.
    pub fn new(layers: Vec<Layer>, cmd: &[&str]) -> Self {
        let diff_ids: Vec<String> = layers.iter().map(|l| sha256(&l.tar)).collect();
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": cmd,
                "User": "0:0",
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        Self::from_parts(layers, config)
    }

    /// An image of `layers` with exactly this config (which may lie about them).
    pub fn from_parts(layers: Vec<Layer>, config: Vec<u8>) -> Self {
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(&config),
                "size": config.len(),
            },
            "layers": layers.iter().map(|l| json!({
                "mediaType": l.media_type,
                "digest": sha256(&l.blob),
                "size": l.blob.len(),
            })).collect::<Vec<_>>(),
        }))
        .unwrap();
        Self {
            layers,
            config,
            manifest,
        }
    }

    /// The image ID the runtime reports: the config digest.
    pub fn id(&self) -> String {
        sha256(&self.config)
    }

    /// The manifest digest.
    pub fn manifest_digest(&self) -> String {
        sha256(&self.manifest)
    }
}

/// Whether the host has busybox-static (the CI installs it).
pub fn have_busybox() -> bool {
    Path::new(BUSYBOX).is_file()
}

/// The busybox rootfs as a layer tar: /bin/busybox, applet symlinks, a few
/// directories and /etc/passwd, /etc/group.
pub fn busybox_layer_tar() -> Vec<u8> {
    let busybox = std::fs::read(BUSYBOX).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for dir in ["bin", "etc", "tmp", "root", "proc", "sys", "dev"] {
        let mut h = header(
            tar::EntryType::Directory,
            if dir == "tmp" { 0o1777 } else { 0o755 },
        );
        b.append_data(&mut h, format!("{dir}/"), std::io::empty())
            .unwrap();
    }
    let mut h = header(tar::EntryType::Regular, 0o755);
    h.set_size(busybox.len() as u64);
    b.append_data(&mut h, "bin/busybox", &busybox[..]).unwrap();
    for applet in APPLETS {
        let mut h = header(tar::EntryType::Symlink, 0o777);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    for (path, text) in [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
    ] {
        let mut h = header(tar::EntryType::Regular, 0o644);
        h.set_size(text.len() as u64);
        b.append_data(&mut h, path, text.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

/// A tar header with fixed owner and mtime (reproducible digests).
pub fn header(kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(0);
    h
}

/// A tar of small files (`path`, contents); `None` contents make directories.
pub fn files_tar(entries: &[(&str, Option<&str>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, contents) in entries {
        match contents {
            Some(text) => {
                let mut h = header(tar::EntryType::Regular, 0o644);
                h.set_size(text.len() as u64);
                b.append_data(&mut h, path, text.as_bytes()).unwrap();
            }
            None => {
                let mut h = header(tar::EntryType::Directory, 0o755);
                b.append_data(&mut h, path, std::io::empty()).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// The busybox test image (one gzip layer, `sh` as its command).
pub fn busybox_image() -> TestImage {
    TestImage::new(
        vec![Layer::new(busybox_layer_tar(), Compression::Gzip)],
        &["sh"],
    )
}

fn append_file(b: &mut tar::Builder<std::fs::File>, path: &str, data: &[u8]) {
    let mut h = header(tar::EntryType::Regular, 0o644);
    h.set_size(data.len() as u64);
    b.append_data(&mut h, path, data).unwrap();
}

/// Writes an OCI archive (oci-layout, index.json, blobs/sha256/*) with one
/// entry per image, named by `org.opencontainers.image.ref.name` when given.
pub fn write_oci_archive(path: &Path, images: &[(&TestImage, Option<&str>)]) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    append_file(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    let mut manifests = Vec::new();
    let mut written = std::collections::HashSet::new();
    for (image, name) in images {
        let blobs = image
            .layers
            .iter()
            .map(|l| &l.blob)
            .chain([&image.config, &image.manifest]);
        for blob in blobs {
            let digest = sha256(blob);
            if written.insert(digest.clone()) {
                append_file(&mut b, &format!("blobs/sha256/{}", &digest[7..]), blob);
            }
        }
        let mut entry = json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": image.manifest_digest(),
            "size": image.manifest.len(),
        });
        if let Some(name) = name {
            entry["annotations"] = json!({"org.opencontainers.image.ref.name": name});
        }
        manifests.push(entry);
    }
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": manifests})).unwrap();
    append_file(&mut b, "index.json", &index);
    b.finish().unwrap();
}

/// Writes a docker-archive (`docker save` layout: manifest.json, `<id>.json`
/// configs, `<n>/layer.tar` layers) with `repo_tags` per image.
pub fn write_docker_archive(path: &Path, images: &[(&TestImage, &[&str])]) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut entries = Vec::new();
    for (i, (image, tags)) in images.iter().enumerate() {
        let config_name = format!("{}.json", &image.id()[7..]);
        append_file(&mut b, &config_name, &image.config);
        let mut layers = Vec::new();
        for (j, layer) in image.layers.iter().enumerate() {
            let name = format!("layer{i}-{j}/layer.tar");
            append_file(&mut b, &name, &layer.blob);
            layers.push(name);
        }
        entries.push(json!({"Config": config_name, "RepoTags": tags, "Layers": layers}));
    }
    append_file(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&entries).unwrap(),
    );
    b.finish().unwrap();
}
