//! Hollow nodes and load generators for scale tests and benchmarks.
//!
//! This crate is a placeholder in the workspace layout of `ARCHITECTURE.md`; its
//! implementation lands with its own issue.
