//! `AnyStore::open`: how `--datastore-endpoint` and `--data-dir` pick a backend.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use skiff_store::{AnyStore, Store, StoreError};

#[tokio::test]
async fn no_endpoint_means_the_embedded_store_in_the_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let store = AnyStore::open(&[], tmp.path()).await.unwrap();
    assert!(matches!(store, AnyStore::Embedded(_)));
    let kv = store.create("/registry/x", Bytes::from("v")).await.unwrap();
    assert_eq!(store.get("/registry/x").await.unwrap(), Some(kv));
    assert!(
        tmp.path()
            .join("db")
            .join(skiff_store::embedded::DB_FILE)
            .exists()
    );
}

#[tokio::test]
async fn bad_endpoints_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    for (endpoint, needle) in [
        ("https://127.0.0.1:2379", "TLS"),
        ("127.0.0.1:2379", "not an etcd client URL"),
        ("unix:///run/etcd.sock", "not an etcd client URL"),
    ] {
        match AnyStore::open(&[endpoint.to_owned()], tmp.path()).await {
            Err(StoreError::Open(msg)) => assert!(msg.contains(needle), "{endpoint}: {msg}"),
            Err(other) => panic!("{endpoint}: expected an Open error, got {other:?}"),
            Ok(_) => panic!("{endpoint} accepted"),
        }
    }
}
