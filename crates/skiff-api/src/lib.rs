//! The resource table, defaulting, validation, selectors, patch and Status errors. No I/O.
//!
//! This crate is a placeholder in the workspace layout of `ARCHITECTURE.md`; its
//! implementation lands with its own issue.
