//! Helpers shared by the integration tests.

#![allow(dead_code, unused_imports)]

pub mod etcd;
pub mod proxy;

pub use etcd::{EtcdCluster, EtcdProcess};
pub use proxy::TcpProxy;
