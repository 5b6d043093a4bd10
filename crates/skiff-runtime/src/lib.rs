//! The built-in container runtime, served as a CRI v1 gRPC server.
//!
//! Images: a content-addressed blob store, layer snapshots unpacked once per
//! chain ID, archive import (OCI and docker-archive), pulls over the OCI
//! distribution protocol, and the CRI `ImageService`.
//!
//! Pods and containers: sandboxes pin shared net/IPC/UTS namespaces; each
//! container runs under its own supervisor process ([`shim`]), which sets it
//! up itself (`skiff_sys::container`) on an overlay rootfs; the CRI
//! `RuntimeService` serves them.

use std::path::{Path, PathBuf};

mod cgroup_limits;
mod cgroup_stats;
pub mod container;
pub mod cri;
pub mod images;
pub mod network;
pub mod runtime;
pub mod sandbox;
pub mod shim;
pub mod stream;

pub use images::{
    Digest, ImageError, ImageRecord, ImageStore, Reference, ReferenceError, RegistryConfig,
};
pub use runtime::{ExecCommand, Runtime, RuntimeConfig, RuntimeDeps, RuntimeError};
pub use sandbox::{NoopPodNetwork, PodNetwork};

/// The image store under a node's data dir: `<data-dir>/agent/runtime/images`.
pub fn image_store_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("agent").join("runtime").join("images")
}

/// Air-gap image tarballs imported when the agent starts: `<data-dir>/agent/images`.
pub fn airgap_images_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("agent").join("images")
}
