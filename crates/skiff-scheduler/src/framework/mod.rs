//! The scheduling framework's types: plugin interface, cycle state, node
//! and pod information, statuses. No I/O here; the runtime that runs plugins
//! lives next to it.

pub mod cycle_state;
pub mod handle;
pub mod interface;
pub mod node_info;
pub mod status;
pub mod topology;

pub use cycle_state::{CycleState, StateData};
pub use handle::{DetachedHandle, FrameworkHandle, PodActivator};
pub use interface::*;
pub use node_info::{NodeInfo, NominatedPods, PodInfo, Resource};
pub use status::{Code, Status};
pub use topology::{TopologyKey, TopologyValue};
