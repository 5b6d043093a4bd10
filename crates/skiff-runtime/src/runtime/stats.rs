//! What CRI stats need from the runtime's private layout: a container's
//! writable layer (its overlay upper dir), the filesystem it is reported on,
//! and a sandbox's cgroup.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::{Runtime, default_pod_cgroup};
use crate::sandbox::SandboxRecord;

/// Bytes and inodes under a directory tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Allocated bytes (512-byte blocks, as `du`).
    pub bytes: u64,
    /// Distinct inodes.
    pub inodes: u64,
}

/// `du`-style usage of `root`: blocks of each inode counted once (hard links
/// share one), the directories themselves included.
pub fn disk_usage(root: &Path) -> DiskUsage {
    use std::os::unix::fs::MetadataExt;
    let mut usage = DiskUsage::default();
    let mut seen = HashSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if seen.insert((meta.dev(), meta.ino())) {
            usage.bytes += meta.blocks() * 512;
            usage.inodes += 1;
        }
        if meta.is_dir()
            && let Ok(entries) = std::fs::read_dir(&path)
        {
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
    usage
}

impl Runtime {
    /// The overlay upper dir of container `id`: its writable layer.
    pub fn container_upper_dir(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("upper")
    }

    /// The filesystem writable layers are reported on: the image store's
    /// root, the mountpoint `ImageFsInfo` reports (containerd reports its
    /// snapshotter root for both).
    pub fn image_fs_mountpoint(&self) -> PathBuf {
        self.deps.images.root().to_path_buf()
    }
}

/// The cgroup holding a sandbox's containers.
pub fn sandbox_cgroup(sandbox: &SandboxRecord) -> String {
    if sandbox.cgroup_parent.is_empty() {
        default_pod_cgroup(&sandbox.id)
    } else {
        sandbox.cgroup_parent.trim_end_matches('/').to_owned()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn disk_usage_counts_hard_links_once() {
        let tmp = tempfile::tempdir().unwrap();
        let empty = disk_usage(tmp.path());
        assert_eq!(empty.inodes, 1);
        std::fs::create_dir(tmp.path().join("d")).unwrap();
        std::fs::write(tmp.path().join("d/f"), vec![7u8; 64 * 1024]).unwrap();
        std::fs::hard_link(tmp.path().join("d/f"), tmp.path().join("g")).unwrap();
        let u = disk_usage(tmp.path());
        assert_eq!(u.inodes, 3, "root, d, f (g is f)");
        assert!(u.bytes >= empty.bytes + 64 * 1024, "{u:?}");
        assert!(u.bytes < empty.bytes + 2 * 64 * 1024 + 16 * 1024, "{u:?}");
        assert_eq!(
            disk_usage(&tmp.path().join("missing")),
            DiskUsage::default()
        );
    }

    #[test]
    fn sandbox_cgroup_defaults_under_skiff() {
        let mut s: SandboxRecord = serde_json::from_value(serde_json::json!({
            "id": "abc", "name": "n", "namespace": "ns", "uid": "u", "attempt": 0,
            "labels": {}, "annotations": {}, "hostname": "h", "log_directory": "",
            "cgroup_parent": "", "created_at": 0, "state": "Ready", "ip": null
        }))
        .unwrap();
        assert_eq!(sandbox_cgroup(&s), "/skiff/abc");
        s.cgroup_parent = "/kubepods/burstable/podu/".into();
        assert_eq!(sandbox_cgroup(&s), "/kubepods/burstable/podu");
    }
}
