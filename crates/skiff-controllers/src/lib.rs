//! The controller manager: one module per controller (informer + keyed work
//! queue + reconcile), shared informers, and [`run`] to run the enabled
//! controllers under leader election.

pub mod apierrors;
pub mod cached_pod;
pub mod consistency;
pub mod controller;
pub mod controllerref;
pub mod cronjob;
pub mod daemon;
pub mod deployment;
pub mod disruption;
pub mod endpoint;
pub mod endpointslice;
pub mod endpointslicemirroring;
pub mod expectations;
pub mod garbagecollector;
pub mod history;
pub mod informer;
pub mod job;
pub mod manager;
pub mod metrics;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod persistentvolume;
pub mod podcontrol;
pub mod podgc;
pub mod podutil;
pub mod replicaset;
pub mod resourcequota;
pub mod rootcacertpublisher;
pub mod serviceaccount;
pub mod statefulset;
pub mod tainteviction;
pub mod ttlafterfinished;
pub mod workqueue;

pub use manager::{ControllerManagerOptions, KNOWN_CONTROLLERS, ManagerError, run};
pub use metrics::ControllerMetrics;
