//! Services and NetworkPolicy to nftables rules, and cluster DNS.
//!
//! This crate is a placeholder in the workspace layout of `ARCHITECTURE.md`; its
//! implementation lands with its own issue.
