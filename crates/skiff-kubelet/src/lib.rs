//! The kubelet: node registration, pod workers, probes, volumes, status, CRI client.
//!
//! [`kubelet::run`] registers the Node, keeps its Lease and status fresh,
//! and runs one pod worker per pod bound to it, speaking only CRI v1 to the
//! runtime. [`status`] is the pure pod-status logic, shared with the hollow
//! nodes of `skiff-sim`.

pub mod backoff;
pub mod cm;
pub mod config;
pub mod cri;
pub mod exec;
pub mod hooks;
pub mod images_gc;
pub mod kubelet;
pub mod logrotate;
pub mod logs;
pub mod node;
pub mod prober;
pub mod routes;
pub mod server;
pub mod status;
pub mod volumes;
pub mod worker;

pub use kubelet::{KubeletConfig, KubeletError, run};
