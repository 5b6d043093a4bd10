//! The kubelet: node registration, pod workers, probes, volumes, status, CRI client.
//!
//! Today it holds the pure pod-status logic ([`status`]), shared by the real
//! kubelet and the hollow nodes of `skiff-sim`.

pub mod server;
pub mod status;
