//! Services and NetworkPolicy to nftables rules, and cluster DNS.
//!
//! The Service proxy (kube-proxy's nftables mode) is a pure computation,
//! [`model::build`] then [`rules::compute`], from Services, EndpointSlices
//! and the node to a [`ruleset::Ruleset`], applied through skiff-sys's
//! `Nftables` by the [`proxier`] the node agent runs, which keeps the table
//! as per-Service parts ([`table`]) so a change costs only what it touches. NetworkPolicy
//! enforcement, run next to it, lives in [`netpol`]; cluster DNS in
//! [`dns`].

pub mod conntrack;
pub mod dns;
pub mod metrics;
pub mod model;
pub mod netpol;
pub mod proxier;
pub mod rules;
pub mod ruleset;
pub mod table;

#[cfg(test)]
mod tests;

pub use proxier::{Proxier, ProxyError, RunOptions};
pub use rules::{Cidr, DEFAULT_TABLE, ProxyConfig};
