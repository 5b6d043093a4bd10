//! The cloud controller manager and the built-in local cloud provider.
//!
//! This crate is a placeholder in the workspace layout of `ARCHITECTURE.md`; its
//! implementation lands with its own issue.
