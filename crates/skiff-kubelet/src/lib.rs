//! The kubelet: node registration, pod workers, probes, volumes, status, CRI client.
//!
//! This crate is a placeholder in the workspace layout of `ARCHITECTURE.md`; its
//! implementation lands with its own issue.
