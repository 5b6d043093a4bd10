//! The busybox test image, built from the host's busybox-static as an OCI
//! archive the agent imports from `<data-dir>/agent/images/` at start (so
//! the pod benchmark never pulls).

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde_json::json;
use sha2::{Digest as _, Sha256};

/// Where busybox-static installs its binary.
pub const BUSYBOX: &str = "/bin/busybox";
/// The name the image is imported under.
pub const IMAGE: &str = "docker.io/library/busybox:latest";
/// Applets linked in the image.
const APPLETS: &[&str] = &["sh", "cat", "echo", "sleep", "true", "false", "env"];

/// `sha256:<hex>` of `data`.
fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A tar header with fixed owner and mtime (reproducible digests).
fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(size);
    h
}

/// The rootfs layer (uncompressed tar): /bin/busybox, applet symlinks, a
/// few directories and /etc/passwd, /etc/group.
pub fn busybox_layer_tar(busybox: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for dir in ["bin", "etc", "tmp", "root", "proc", "sys", "dev"] {
        let mode = if dir == "tmp" { 0o1777 } else { 0o755 };
        let mut h = header(tar::EntryType::Directory, mode, 0);
        b.append_data(&mut h, format!("{dir}/"), std::io::empty())?;
    }
    let mut h = header(tar::EntryType::Regular, 0o755, busybox.len() as u64);
    b.append_data(&mut h, "bin/busybox", busybox)?;
    for applet in APPLETS {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")?;
    }
    for (path, text) in [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        ("etc/group", "root:x:0:\n"),
    ] {
        let mut h = header(tar::EntryType::Regular, 0o644, text.len() as u64);
        b.append_data(&mut h, path, text.as_bytes())?;
    }
    b.into_inner()
}

/// Writes an OCI archive (oci-layout, index.json, blobs) holding one
/// single-layer image of `layer_tar` named `name`, running `sh`.
pub fn write_oci_archive(path: &Path, layer_tar: &[u8], name: &str) -> anyhow::Result<()> {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"],
        },
        "rootfs": {"type": "layers", "diff_ids": [sha256(layer_tar)]},
    }))?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256(&config),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": sha256(layer_tar),
            "size": layer_tar.len(),
        }],
    }))?;
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": sha256(&manifest),
        "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": name},
    }]}))?;
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut b = tar::Builder::new(file);
    let mut add = |name: &str, data: &[u8]| {
        let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
        b.append_data(&mut h, name, data)
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    for blob in [layer_tar, &config, &manifest] {
        add(&format!("blobs/sha256/{}", hex_digest(blob)), blob)?;
    }
    add("index.json", &index)?;
    b.into_inner()?.flush()?;
    Ok(())
}

fn hex_digest(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Builds the busybox image from [`BUSYBOX`] into `images_dir/busybox.tar`.
pub fn install_busybox(images_dir: &Path) -> anyhow::Result<()> {
    let busybox = std::fs::read(BUSYBOX).with_context(|| format!("reading {BUSYBOX}"))?;
    std::fs::create_dir_all(images_dir)
        .with_context(|| format!("creating {}", images_dir.display()))?;
    let layer = busybox_layer_tar(&busybox)?;
    write_oci_archive(&images_dir.join("busybox.tar"), &layer, IMAGE)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn archive_indexes_its_blobs_by_digest() {
        let dir = tempfile::tempdir().unwrap();
        let layer = busybox_layer_tar(b"#!fake busybox").unwrap();
        let path = dir.path().join("img.tar");
        write_oci_archive(&path, &layer, IMAGE).unwrap();
        let mut names = Vec::new();
        let mut index = None;
        let mut blobs = Vec::new();
        for e in tar::Archive::new(std::fs::File::open(&path).unwrap())
            .entries()
            .unwrap()
        {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            if name == "index.json" {
                index = Some(serde_json::from_slice::<serde_json::Value>(&data).unwrap());
            }
            if let Some(d) = name.strip_prefix("blobs/sha256/") {
                assert_eq!(d, hex_digest(&data), "{name}");
                blobs.push(d.to_owned());
            }
            names.push(name);
        }
        assert_eq!(names.first().map(String::as_str), Some("oci-layout"));
        let index = index.unwrap();
        let m = &index["manifests"][0];
        assert_eq!(m["annotations"]["org.opencontainers.image.ref.name"], IMAGE);
        let digest = m["digest"]
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap();
        assert!(blobs.iter().any(|b| b == digest));
        assert_eq!(blobs.len(), 3);
    }
}
