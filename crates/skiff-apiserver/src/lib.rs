//! The Kubernetes API server: HTTPS, authn/authz, admission, generic REST handlers, watch cache, discovery.
//!
//! This crate is a placeholder in the workspace layout of `ARCHITECTURE.md`; its
//! implementation lands with its own issue.
