//! The built-in container runtime, served as a CRI v1 gRPC server.
//!
//! This first part holds the images side: a content-addressed blob store, layer
//! snapshots unpacked once per chain ID, archive import (OCI and docker-archive),
//! pulls over the OCI distribution protocol, and the CRI `ImageService`.

pub mod cri;
pub mod images;

pub use images::{
    Digest, ImageError, ImageRecord, ImageStore, Reference, ReferenceError, RegistryConfig,
};
