//! The scheduler: queue, node snapshot, plugin framework, default plugins and
//! preemption, as kube-scheduler. It talks to the API server only over the
//! API.

pub mod framework;
pub mod plugins;
