//! The etcd backend on a 3-member cluster whose leader is killed (SIGKILL)
//! while 16 writers create keys: writes get service again from the other two
//! members, and every acknowledged write is there afterwards, once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use skiff_store::{EtcdConfig, EtcdStore, ListOptions, Revision, Store, StoreError};
use support::EtcdCluster;

const WRITERS: usize = 16;
/// Writing before the kill.
const BEFORE_KILL: Duration = Duration::from_secs(1);
/// How long the two survivors may take to elect a leader and acknowledge
/// writes again (an election takes a second or two, longer on a busy host).
const RECOVERY_LIMIT: Duration = Duration::from_secs(30);
/// Writing on once writes are acknowledged again after the kill.
const AFTER_RECOVERY: Duration = Duration::from_secs(1);
/// Upper bound on attempts per writer, so no loop can run away.
const MAX_ATTEMPTS: usize = 5_000;

#[derive(Debug)]
struct Ack {
    key: String,
    value: Bytes,
    revision: Revision,
    at: Instant,
}

#[derive(Debug, Default)]
struct WriterReport {
    acks: Vec<Ack>,
    failures: Vec<String>,
}

/// What the writers share: when to stop, whether the leader was killed, and
/// how many writes were acknowledged since.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    killed: AtomicBool,
    acked_after_kill: AtomicUsize,
}

async fn writer(store: EtcdStore, id: usize, shared: Arc<Shared>) -> WriterReport {
    let mut report = WriterReport::default();
    for attempt in 0..MAX_ATTEMPTS {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        // A failed write may or may not have been applied: never reuse its key.
        let key = format!("/t/cluster/{id:02}/{attempt:05}");
        let value = Bytes::from(format!("writer {id} attempt {attempt}"));
        match store.create(&key, value.clone()).await {
            Ok(kv) => {
                assert_eq!(
                    (kv.key.as_str(), &kv.value, kv.version),
                    (key.as_str(), &value, 1)
                );
                assert_eq!(kv.create_revision, kv.mod_revision);
                if shared.killed.load(Ordering::SeqCst) {
                    shared.acked_after_kill.fetch_add(1, Ordering::SeqCst);
                }
                report.acks.push(Ack {
                    key,
                    value,
                    revision: kv.mod_revision,
                    at: Instant::now(),
                });
            }
            Err(e) => {
                assert!(
                    matches!(e, StoreError::Unavailable(_)),
                    "a lost member must look like unavailability, not {e:?}"
                );
                report.failures.push(e.to_string());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_killing_the_leader() {
    let mut cluster = EtcdCluster::start(3).await;
    let config = EtcdConfig {
        request_timeout: Duration::from_secs(3),
        ..EtcdConfig::new(cluster.endpoints())
    };
    let store = EtcdStore::connect(config)
        .await
        .expect("connect to the cluster");

    let shared = Arc::new(Shared::default());
    let writers: Vec<_> = (0..WRITERS)
        .map(|id| tokio::spawn(writer(store.clone(), id, shared.clone())))
        .collect();

    tokio::time::sleep(BEFORE_KILL).await;
    let leader = cluster
        .leader_index()
        .await
        .expect("the cluster has a leader");
    shared.killed.store(true, Ordering::SeqCst);
    let killed_at = Instant::now();
    cluster.kill(leader);
    // Write on until the survivors acknowledge writes again (the assertions
    // below say whether they did), then a little longer.
    let deadline = Instant::now() + RECOVERY_LIMIT;
    while shared.acked_after_kill.load(Ordering::SeqCst) <= WRITERS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(AFTER_RECOVERY).await;
    shared.stop.store(true, Ordering::Relaxed);

    let mut acks = Vec::new();
    let mut failures = Vec::new();
    for w in writers {
        let report = tokio::time::timeout(Duration::from_secs(30), w)
            .await
            .expect("writers stop in time")
            .expect("writer panicked");
        acks.extend(report.acks);
        failures.extend(report.failures);
    }
    let after_kill = acks.iter().filter(|a| a.at > killed_at).count();
    let new_leader = cluster.leader_index().await;
    eprintln!(
        "killed leader m{leader}; new leader {new_leader:?}; {} writes acknowledged, {after_kill} after the kill; {} failed",
        acks.len(),
        failures.len()
    );
    for f in failures.iter().take(5) {
        eprintln!("  failure: {f}");
    }
    assert!(
        new_leader.is_some_and(|l| l != leader),
        "a new leader was elected"
    );
    assert!(
        acks.len() - after_kill > WRITERS,
        "writes were acknowledged before the kill"
    );
    assert!(
        after_kill > WRITERS,
        "writes were acknowledged after the kill: {after_kill}"
    );

    // Every acknowledged revision is unique.
    let mut revisions = HashSet::new();
    for a in &acks {
        assert!(
            revisions.insert(a.revision),
            "revision {} acknowledged twice",
            a.revision
        );
    }

    // Read everything back from the surviving members only.
    let survivors: Vec<String> = cluster
        .endpoints()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, url)| url)
        .collect();
    let reader = EtcdStore::connect(EtcdConfig::new(survivors))
        .await
        .expect("connect to the survivors");
    let mut stored = BTreeMap::new();
    let mut opts = ListOptions {
        limit: 500,
        ..ListOptions::default()
    };
    for _ in 0..10_000 {
        let page = reader
            .list("/t/cluster/", opts.clone())
            .await
            .expect("list");
        opts.revision = page.revision;
        for kv in &page.kvs {
            stored.insert(kv.key.clone(), kv.clone());
        }
        match page.continue_after() {
            Some(k) => opts.continue_after = Some(k.to_owned()),
            None => break,
        }
    }
    for a in &acks {
        let kv = stored.get(&a.key).unwrap_or_else(|| {
            panic!(
                "acknowledged key {} (revision {}) is missing",
                a.key, a.revision
            )
        });
        assert_eq!(kv.value, a.value, "value of {}", a.key);
        assert_eq!(kv.mod_revision, a.revision, "mod revision of {}", a.key);
        assert_eq!(
            kv.create_revision, a.revision,
            "create revision of {}",
            a.key
        );
    }
    // Unacknowledged writes may have been applied, but nothing else exists.
    assert!(stored.len() >= acks.len());
    assert!(stored.len() <= acks.len() + failures.len());
}
