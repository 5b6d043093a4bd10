//! The scheduler: queue, node snapshot, plugin framework, default plugins and
//! preemption, as kube-scheduler. It talks to the API server only over the
//! API.

pub mod cache;
pub mod config;
pub mod framework;
pub mod informers;
pub mod metrics;
pub mod plugins;
pub mod queue;
pub mod run;
pub mod runtime;
pub mod scheduler;

pub use run::{RunError, SchedulerOptions, run};

#[cfg(test)]
mod cycle_bench_tests;
