//! The conformance suite against the embedded backend.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod suite;

use skiff_store::{EmbeddedConfig, EmbeddedStore};
use tempfile::TempDir;

async fn make() -> (EmbeddedStore, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path().join("db"))).unwrap();
    (store, dir)
}

store_conformance!(make);
