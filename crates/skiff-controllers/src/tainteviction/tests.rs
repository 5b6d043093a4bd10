#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Taint, Toleration};
use serde_json::json;
use tokio::time::Instant;

use super::timers::Scheduled;
use super::*;
use crate::nodelifecycle::taints::{NO_EXECUTE, TAINT_NODE_UNREACHABLE, taint};

fn tol(v: serde_json::Value) -> Toleration {
    serde_json::from_value(v).unwrap()
}

fn unreachable_for(secs: Option<i64>) -> Toleration {
    tol(
        json!({"key": TAINT_NODE_UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
               "tolerationSeconds": secs}),
    )
}

/// (taints, tolerations, scheduled eviction, decision)
type Case<'a> = (&'a [Taint], Vec<Toleration>, Option<Scheduled>, Decision);

#[test]
fn eviction_decisions() {
    let now = Instant::now();
    let s = Duration::from_secs;
    let unreachable: Vec<Taint> = vec![taint(TAINT_NODE_UNREACHABLE, NO_EXECUTE)];
    let other: Vec<Taint> = vec![
        taint(TAINT_NODE_UNREACHABLE, NO_EXECUTE),
        taint("dedicated", NO_EXECUTE),
    ];
    let waiting = |created: u64, fire: u64| {
        Some(Scheduled {
            created_at: now - s(created),
            fire_at: now + s(fire),
            fired: false,
        })
    };
    let fired = Some(Scheduled {
        created_at: now - s(10),
        fire_at: now - s(1),
        fired: true,
    });
    let cases: Vec<Case> = vec![
        (&[], vec![], waiting(1, 5), Decision::Cancel),
        (&unreachable, vec![], None, Decision::EvictAt(now)),
        (
            &unreachable,
            vec![unreachable_for(Some(300))],
            None,
            Decision::EvictAt(now + s(300)),
        ),
        (
            &unreachable,
            vec![unreachable_for(None)],
            waiting(1, 5),
            Decision::Cancel,
        ),
        // Counted from when the eviction was first scheduled.
        (
            &unreachable,
            vec![unreachable_for(Some(6))],
            waiting(1, 5),
            Decision::Keep,
        ),
        (
            &unreachable,
            vec![unreachable_for(Some(2))],
            waiting(1, 5),
            Decision::EvictAt(now + s(1)),
        ),
        // A second taint that is not tolerated: at once.
        (
            &other,
            vec![unreachable_for(Some(300))],
            waiting(1, 299),
            Decision::EvictAt(now),
        ),
        (&unreachable, vec![], fired, Decision::Keep),
        (
            &unreachable,
            vec![tol(json!({"operator": "Exists"}))],
            None,
            Decision::Cancel,
        ),
    ];
    for (i, (taints, tols, scheduled, want)) in cases.into_iter().enumerate() {
        assert_eq!(decide(taints, &tols, scheduled, now), want, "case {i}");
    }
}

#[tokio::test(start_paused = true)]
async fn timers_fire_once_at_their_time_unless_cancelled() {
    let workers = TimedWorkers::default();
    let fired = Arc::new(AtomicUsize::new(0));
    let now = Instant::now();
    let work = |ok: bool| {
        let f = fired.clone();
        async move {
            f.fetch_add(1, Ordering::SeqCst);
            ok
        }
    };
    workers.add("ns/a", now, now + Duration::from_secs(5), work(true));
    workers.add("ns/b", now, now + Duration::from_secs(5), work(true));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(fired.load(Ordering::SeqCst), 0);
    assert!(workers.cancel("ns/b"));
    assert!(!workers.cancel("ns/b"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fired.load(Ordering::SeqCst), 1, "only a fired");
    let a = workers.scheduled("ns/a").unwrap();
    assert!(a.fired, "a fired timer stays until cancelled");
    assert_eq!(workers.waiting(), 0);

    // Rescheduling replaces the timer.
    let t = Instant::now();
    workers.add("ns/c", t, t + Duration::from_secs(10), work(true));
    workers.add("ns/c", t, t + Duration::from_secs(2), work(true));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(fired.load(Ordering::SeqCst), 2);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        fired.load(Ordering::SeqCst),
        2,
        "the replaced timer never fires"
    );

    // Failed work leaves no entry, so it can be scheduled again.
    let t = Instant::now();
    workers.add("ns/d", t, t, work(false));
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(fired.load(Ordering::SeqCst), 3);
    assert!(workers.scheduled("ns/d").is_none());
    workers.cancel_all();
    assert!(workers.scheduled("ns/a").is_none());
}
