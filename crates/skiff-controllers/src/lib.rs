//! The controller manager: one module per controller (informer + keyed work
//! queue + reconcile), shared informers, and [`run`] to run the enabled
//! controllers under leader election.

pub mod controller;
pub mod deployment;
pub mod expectations;
pub mod garbagecollector;
pub mod informer;
pub mod manager;
pub mod namespace;
pub mod nodeipam;
pub mod podutil;
pub mod replicaset;
pub mod rootcacertpublisher;
pub mod serviceaccount;
pub mod workqueue;

pub use manager::{ControllerManagerOptions, KNOWN_CONTROLLERS, ManagerError, run};
