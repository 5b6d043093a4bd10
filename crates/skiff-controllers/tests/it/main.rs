//! The integration tests of `skiff-controllers`, one module per area, linked into one
//! test binary: every file used to be its own binary, each linking the whole
//! crate graph again (about 190 MB of disk and a link step apiece).
//! cargo-nextest still runs every test in its own process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod cronjob;
mod daemonset;
mod deployment;
mod disruption;
mod endpoints;
mod garbagecollector;
mod job;
mod manager;
mod metrics;
mod namespace;
mod nodelifecycle;
mod pvbinder;
mod replicaset;
mod resourcequota;
mod scale;
mod statefulset;
