//! Client-side machinery shared by the components that talk to the API
//! server (scheduler, controller manager): Lease-based leader election as
//! client-go's `leaderelection`, and a non-blocking event recorder.

pub mod events;
pub mod leader_election;

pub use events::{EventRecorder, EventSink};
pub use leader_election::{LeaderElectionConfig, LeaderElector, Leadership, holder_identity};
