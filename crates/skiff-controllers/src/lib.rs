//! The controller manager: one module per controller (informer + keyed work queue + reconcile).
//!
//! This crate is a placeholder in the workspace layout of `ARCHITECTURE.md`; its
//! implementation lands with its own issue.
