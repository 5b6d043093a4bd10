//! The built-in container runtime, served as a CRI v1 gRPC server.
//!
//! This first part holds the images side: a content-addressed blob store, layer
//! snapshots unpacked once per chain ID, archive import (OCI and docker-archive),
//! pulls over the OCI distribution protocol, and the CRI `ImageService`.

use std::path::{Path, PathBuf};

pub mod cri;
pub mod images;
pub mod network;

pub use images::{
    Digest, ImageError, ImageRecord, ImageStore, Reference, ReferenceError, RegistryConfig,
};

/// The image store under a node's data dir: `<data-dir>/agent/runtime/images`.
pub fn image_store_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("agent").join("runtime").join("images")
}

/// Air-gap image tarballs imported when the agent starts: `<data-dir>/agent/images`.
pub fn airgap_images_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("agent").join("images")
}
