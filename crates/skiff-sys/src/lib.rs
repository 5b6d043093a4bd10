//! The OS seam: every syscall, mount, namespace, netlink, cgroup and nftables
//! operation Skiff needs sits behind a trait here, with a real Linux
//! implementation and explicit fakes for tests.
//!
//! This is the only crate in the workspace allowed `unsafe`; every `unsafe`
//! block must carry a `// SAFETY:` comment.
//!
//! `net` (links, addresses, routes, sysctls) and `nft` (nftables scripts) serve
//! the built-in pod network and the Service proxy, `conntrack` the proxy;
//! `namespaces`, `mount`, `mount_view`, `process` and `cgroups` serve pod
//! sandboxes and containers.

pub mod cgroups;
pub mod conntrack;
pub mod container;
pub mod dir_layout;
pub mod fdpass;
pub mod memory;
pub mod mount;
pub mod mount_view;
pub mod namespaces;
pub mod net;
pub mod nft;
pub mod process;
pub mod pty;

pub use mount::{LinuxMounter, Mounter};
pub use namespaces::{LinuxPodNamespaces, NamespaceKind, PodNamespacePaths, PodNamespaces};
