//! Client-side machinery shared by the components that talk to the API
//! server (scheduler, controller manager): Lease-based leader election as
//! client-go's `leaderelection`, a non-blocking event recorder, a token
//! bucket rate limiter, objects decoded without their managedFields for
//! read-only watches, and the plain-HTTP listener the standalone
//! components serve `/metrics` on.

pub mod events;
pub mod kubeconfig;
pub mod leader_election;
pub mod lean;
pub mod metrics_listener;
pub mod rate;

pub use events::{EventRecorder, EventSink};
pub use leader_election::{LeaderElectionConfig, LeaderElector, Leadership, holder_identity};
pub use lean::Lean;
