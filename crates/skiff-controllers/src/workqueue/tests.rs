#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use super::*;

fn q() -> Arc<WorkQueue<String>> {
    Arc::new(WorkQueue::new())
}

#[tokio::test(start_paused = true)]
async fn duplicates_are_queued_once_in_order() {
    let q = q();
    for k in ["a", "b", "a", "c", "b"] {
        q.add(k.to_owned());
    }
    assert_eq!(q.len(), 3);
    let mut got = Vec::new();
    for _ in 0..3 {
        let k = q.get().await.unwrap();
        q.done(&k);
        got.push(k);
    }
    assert_eq!(got, ["a", "b", "c"]);
    assert!(q.is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_item_being_processed_is_not_handed_out_again_until_done() {
    let q = q();
    q.add("a".to_owned());
    let a = q.get().await.unwrap();
    // Added while processing: held back, not given to a second worker.
    q.add("a".to_owned());
    q.add("b".to_owned());
    assert_eq!(q.len(), 1);
    assert_eq!(q.get().await.unwrap(), "b");
    let second = tokio::time::timeout(Duration::from_secs(1), q.get()).await;
    assert!(second.is_err(), "a was handed out while still processing");
    q.done(&a);
    assert_eq!(q.get().await.unwrap(), "a");
}

#[tokio::test(start_paused = true)]
async fn done_without_readd_does_not_requeue() {
    let q = q();
    q.add("a".to_owned());
    let a = q.get().await.unwrap();
    q.done(&a);
    assert!(q.is_empty());
}

#[tokio::test(start_paused = true)]
async fn add_after_waits_and_keeps_the_earliest_deadline() {
    let q = q();
    q.add_after("a".to_owned(), Duration::from_secs(10));
    q.add_after("a".to_owned(), Duration::from_secs(2));
    q.add_after("a".to_owned(), Duration::from_secs(30));
    assert!(q.is_empty());
    let start = Instant::now();
    let a = q.get().await.unwrap();
    assert_eq!(a, "a");
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    q.done(&a);
    // The superseded deadlines do not add it again.
    tokio::time::advance(Duration::from_secs(60)).await;
    assert!(q.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_parked_worker_wakes_for_a_delayed_item() {
    let q = q();
    let worker = tokio::spawn({
        let q = q.clone();
        async move { q.get().await }
    });
    tokio::task::yield_now().await;
    q.add_after("x".to_owned(), Duration::from_millis(500));
    let got = worker.await.unwrap();
    assert_eq!(got.as_deref(), Some("x"));
}

#[tokio::test(start_paused = true)]
async fn rate_limited_requeues_back_off_until_forgotten() {
    let q = q();
    let k = "k".to_owned();
    let mut waits = Vec::new();
    for _ in 0..4 {
        q.add_rate_limited(k.clone());
        let start = Instant::now();
        let got = q.get().await.unwrap();
        waits.push(start.elapsed().as_millis());
        q.done(&got);
    }
    assert_eq!(waits, [5, 10, 20, 40]);
    assert_eq!(q.num_requeues(&k), 4);
    q.forget(&k);
    assert_eq!(q.num_requeues(&k), 0);
}

#[tokio::test(start_paused = true)]
async fn shut_down_drains_then_ends() {
    let q = q();
    q.add("a".to_owned());
    q.shut_down();
    q.add("b".to_owned());
    assert_eq!(q.get().await.as_deref(), Some("a"));
    assert_eq!(q.get().await, None);
    let parked = tokio::spawn({
        let q = q.clone();
        async move { q.get().await }
    });
    assert_eq!(parked.await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn shut_down_wakes_parked_workers() {
    let q = q();
    let parked = tokio::spawn({
        let q = q.clone();
        async move { q.get().await }
    });
    tokio::task::yield_now().await;
    q.shut_down();
    assert_eq!(parked.await.unwrap(), None);
}
