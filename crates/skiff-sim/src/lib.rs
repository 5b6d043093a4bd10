//! Hollow nodes and load generators for scale tests and benchmarks.
//!
//! - [`hollow`]: kwok-style fake kubelets. Many Nodes served by one task set
//!   in one process: registration, Lease heartbeats, pods marked Running and
//!   Ready (through the kubelet's own status logic), graceful deletions
//!   finished.
//! - [`bench`]: the scheduler benchmark (`skiff sim bench-scheduler`) and
//!   the pod startup benchmark on a real node (`skiff sim bench-pods`).

pub mod bench;
pub mod hollow;

pub use hollow::{HollowNodeConfig, HollowNodes};

/// Errors of the hollow nodes.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A configuration value is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The API server refused or failed a request.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
}
