//! The scheduler: queue, node snapshot, plugin framework, default plugins and preemption.
//!
//! This crate is a placeholder in the workspace layout of `ARCHITECTURE.md`; its
//! implementation lands with its own issue.
