//! The built-in container runtime, served as a CRI v1 gRPC server.
//!
//! This crate is a placeholder in the workspace layout of `ARCHITECTURE.md`; its
//! implementation lands with its own issue.
