//! The integration tests of `skiff-runtime`, one module per area, linked into one
//! test binary: every file used to be its own binary, each linking the whole
//! crate graph again (about 70 MB of disk and a link step apiece).
//! cargo-nextest still runs every test in its own process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/cri.rs"]
mod cri;
mod support;

mod cni;
mod container_logs;
mod cri_images;
mod cri_runtime;
mod cri_stats;
mod image_gc;
mod import;
mod network;
mod pull;
mod zygote;
