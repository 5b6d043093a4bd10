//! The conformance suite against the etcd backend: a fresh single-member etcd
//! (`/usr/bin/etcd`) per case.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod suite;
mod support;

use skiff_store::{EtcdConfig, EtcdStore};
use support::EtcdProcess;

async fn make() -> (EtcdStore, EtcdProcess) {
    let etcd = EtcdProcess::start().await;
    let store = EtcdStore::connect(EtcdConfig::new([etcd.client_url()]))
        .await
        .unwrap();
    (store, etcd)
}

store_conformance!(make);
