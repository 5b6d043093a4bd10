//! Services and NetworkPolicy to nftables rules, and cluster DNS.
//!
//! Cluster DNS lives in [`dns`]; the proxy lands with its own issue.

pub mod dns;
