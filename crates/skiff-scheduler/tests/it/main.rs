//! The integration tests of `skiff-scheduler`, one module per area, linked into one
//! test binary: every file used to be its own binary, each linking the whole
//! crate graph again (about 120 MB of disk and a link step apiece).
//! cargo-nextest still runs every test in its own process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod metrics;
mod placement;
mod preemption;
mod scheduling;
mod workloads;
