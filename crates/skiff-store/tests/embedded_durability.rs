//! The embedded backend's durability and failure behaviour: acknowledged
//! writes survive `kill -9`, state survives restarts, bad data directories
//! are refused with clear errors, a full disk fails writes without losing
//! committed data, and automatic compaction bounds history.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use skiff_store::{EmbeddedConfig, EmbeddedStore, ListOptions, Revision, Store, StoreError};

fn open(dir: &Path) -> EmbeddedStore {
    EmbeddedStore::open(EmbeddedConfig::new(dir)).unwrap()
}

fn open_err(dir: &Path) -> String {
    match EmbeddedStore::open(EmbeddedConfig::new(dir)) {
        Ok(_) => panic!("{} opened but must be refused", dir.display()),
        Err(e @ StoreError::Open(_)) => e.to_string(),
        Err(other) => panic!("expected an Open error, got {other:?}"),
    }
}

const CHILD_ENV: &str = "SKIFF_CRASH_CHILD_DIR";

/// The child side of the crash test (run only by it, hence ignored): 32
/// writers create fresh keys and update one counter key each as fast as
/// they can, printing every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of acknowledged_writes_survive_kill_9"]
async fn crash_writer_child() {
    let dir = std::env::var(CHILD_ENV).expect("run by acknowledged_writes_survive_kill_9");
    let round: usize = std::env::var("SKIFF_CRASH_ROUND").unwrap().parse().unwrap();
    let mut config = EmbeddedConfig::new(dir);
    config.history_revisions = 10_000_000;
    let store = EmbeddedStore::open(config).unwrap();
    println!("READY");
    let mut tasks = Vec::new();
    for t in 0..32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let counter = format!("/crash/counter/{round}/{t}");
            let mut c = store.create(&counter, Bytes::from("0")).await.unwrap();
            println!("ACK {counter} {} 0", c.mod_revision);
            // Bounded: the parent kills us long before this ends.
            for i in 1..100_000u64 {
                let key = format!("/crash/keys/{round}/{t}/{i:06}");
                let value = format!("{key}={}", "x".repeat((i % 64) as usize * 32));
                let kv = store.create(&key, Bytes::from(value)).await.unwrap();
                println!("ACK {key} {} -", kv.mod_revision);
                c = store
                    .update(&counter, Bytes::from(i.to_string()), c.mod_revision)
                    .await
                    .unwrap();
                println!("ACK {counter} {} {i}", c.mod_revision);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

struct Ack {
    key: String,
    rev: Revision,
    /// For counters, the acknowledged counter value.
    counter: Option<u64>,
}

/// Runs the child until it has acknowledged `acks` writes, then SIGKILLs it.
fn run_child_and_kill(dir: &Path, round: usize, acks: usize) -> Vec<Ack> {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "crash_writer_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .env("SKIFF_CRASH_ROUND", round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let Some(rest) = line.strip_prefix("ACK ") else {
            continue;
        };
        let mut parts = rest.split(' ');
        let (Some(key), Some(rev), Some(counter)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        out.push(Ack {
            key: key.to_owned(),
            rev: rev.parse().unwrap(),
            counter: counter.parse().ok(),
        });
        if out.len() >= acks || Instant::now() > deadline {
            break;
        }
    }
    // SIGKILL mid-stream: writes are still in flight.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        out.len() >= acks,
        "child acknowledged only {} writes",
        out.len()
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let mut all_acks: Vec<Ack> = Vec::new();
    for (round, acks) in [700, 3000, 1500, 5000, 200].into_iter().enumerate() {
        all_acks.extend(run_child_and_kill(&dir, round, acks));
        let mut config = EmbeddedConfig::new(&dir);
        config.history_revisions = 10_000_000;
        let store = EmbeddedStore::open(config).unwrap();
        verify_after_crash(&store, &all_acks).await;
        store.close().await;
    }
}

async fn verify_after_crash(store: &EmbeddedStore, acks: &[Ack]) {
    let current = store.current_revision().await.unwrap();
    let mut revs = std::collections::HashSet::new();
    let mut counters: HashMap<&str, (Revision, u64)> = HashMap::new();
    for ack in acks {
        assert!(
            revs.insert(ack.rev),
            "revision {} acknowledged twice",
            ack.rev
        );
        assert!(
            ack.rev <= current,
            "acknowledged revision {} beyond current {current}",
            ack.rev
        );
        match ack.counter {
            None => {
                let kv = store.get(&ack.key).await.unwrap();
                let kv = kv.unwrap_or_else(|| panic!("acknowledged key {} lost", ack.key));
                assert_eq!(kv.mod_revision, ack.rev, "{}", ack.key);
                assert_eq!(kv.version, 1);
                let value = String::from_utf8(kv.value.to_vec()).unwrap();
                assert!(
                    value.starts_with(&format!("{}=", ack.key)),
                    "value of {}",
                    ack.key
                );
            }
            Some(n) => {
                let e = counters.entry(&ack.key).or_insert((0, 0));
                if ack.rev > e.0 {
                    *e = (ack.rev, n);
                }
            }
        }
    }
    for (key, (rev, n)) in counters {
        let kv = store.get(key).await.unwrap().unwrap();
        assert!(kv.mod_revision >= rev, "counter {key} went back");
        let value: u64 = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
        assert!(value >= n, "counter {key} = {value}, acknowledged {n}");
    }
    // Revisions are gap-free and monotonic: exactly one write per revision
    // from 1 to current.
    let first = store
        .list(
            "/",
            ListOptions {
                revision: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(first.kvs.len(), 1);
    assert_eq!(first.kvs[0].mod_revision, 1);
    let mut w = store.watch("/", 1).await.unwrap();
    let mut expect = 2;
    while expect <= current {
        let ev = tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .expect("replay stalled")
            .expect("watch ended")
            .expect("watch failed");
        assert_eq!(ev.revision(), expect, "revisions are gap-free");
        expect += 1;
    }
}

#[tokio::test]
async fn state_survives_restart_and_revisions_continue() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let store = open(&dir);
    let a = store.create("/r/a", Bytes::from("1")).await.unwrap();
    let a2 = store
        .update("/r/a", Bytes::from("2"), a.mod_revision)
        .await
        .unwrap();
    let b = store.create("/r/b", Bytes::from("b")).await.unwrap();
    let del = store.delete("/r/b", b.mod_revision).await.unwrap();
    store.compact(a2.mod_revision).await.unwrap();
    store.close().await;

    let store = open(&dir);
    assert_eq!(store.current_revision().await.unwrap(), del.revision);
    assert_eq!(store.stats().compacted_revision, a2.mod_revision);
    assert_eq!(store.get("/r/a").await.unwrap(), Some(a2.clone()));
    assert_eq!(store.get("/r/b").await.unwrap(), None);
    let at_b = store
        .list(
            "/r/",
            ListOptions {
                revision: b.mod_revision,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(at_b.kvs, vec![a2.clone(), b]);
    let c = store.create("/r/c", Bytes::from("c")).await.unwrap();
    assert_eq!(
        c.mod_revision,
        del.revision + 1,
        "revisions continue after a restart"
    );
    store.close().await;
}

#[test]
fn a_store_in_use_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let _store = open(tmp.path());
    let err = open_err(tmp.path());
    assert!(err.contains("in use"), "{err}");
}

#[test]
fn foreign_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("member.db"), b"someone else's data").unwrap();
    let err = open_err(tmp.path());
    assert!(
        err.contains("refusing") && err.contains("member.db"),
        "{err}"
    );
    // Nothing was created over it.
    assert!(!tmp.path().join(skiff_store::embedded::DB_FILE).exists());
}

#[test]
fn garbage_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let garbage: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let file = tmp.path().join(skiff_store::embedded::DB_FILE);
    std::fs::write(&file, &garbage).unwrap();
    let err = open_err(tmp.path());
    assert!(err.contains("not a readable Skiff store"), "{err}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        garbage,
        "the file was not touched"
    );
}

#[test]
fn foreign_redb_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join(skiff_store::embedded::DB_FILE);
    {
        let db = redb_create(&file);
        drop(db);
    }
    let err = open_err(tmp.path());
    assert!(err.contains("not a Skiff store"), "{err}");
}

fn redb_create(path: &Path) -> redb::Database {
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let table: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("other");
        let mut t = txn.open_table(table).unwrap();
        t.insert("hello", "world").unwrap();
    }
    txn.commit().unwrap();
    db
}

#[tokio::test]
async fn corrupted_store_is_refused_not_reset() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let marker = b"SKIFF-CORRUPTION-MARKER-";
    {
        let store = open(&dir);
        let value: Vec<u8> = marker.iter().copied().cycle().take(64 * 1024).collect();
        store.create("/c/big", Bytes::from(value)).await.unwrap();
        for i in 0..100 {
            store
                .create(&format!("/c/{i}"), Bytes::from("v"))
                .await
                .unwrap();
        }
        store.close().await;
    }
    let file = dir.join(skiff_store::embedded::DB_FILE);
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("value is in the file");
    // Flip bytes inside the stored value: only a checksum can tell.
    for b in &mut bytes[at + 1000..at + 1010] {
        *b ^= 0x5a;
    }
    std::fs::write(&file, &bytes).unwrap();
    let err = open_err(&dir);
    assert!(
        err.contains("not a readable Skiff store") || err.contains("corrupted"),
        "{err}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), bytes, "never reset silently");
}

/// A tmpfs mount of a fixed size, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs failed: this test needs root (CAP_SYS_ADMIN), as CI has"
        );
        SmallDisk { dir }
    }
    fn grow(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "remount failed");
    }
    fn path(&self) -> PathBuf {
        self.dir.path().join("db")
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[tokio::test]
async fn disk_full_fails_writes_without_losing_committed_data() {
    let disk = SmallDisk::mount("6m");
    let dir = disk.path();
    let store = open(&dir);
    let mut acked: BTreeMap<String, (Revision, Bytes)> = BTreeMap::new();
    let mut failure = None;
    for i in 0..1000 {
        let key = format!("/full/{i:04}");
        let value = Bytes::from(format!("{key}:{}", "z".repeat(100 * 1024)));
        match store.create(&key, value.clone()).await {
            Ok(kv) => {
                acked.insert(key, (kv.mod_revision, value));
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let failure = failure.expect("a 6 MiB disk must fill up");
    assert!(matches!(failure, StoreError::Io(_)), "{failure:?}");
    let msg = failure.to_string();
    assert!(
        msg.contains("No space left") || msg.contains("os error 28"),
        "{msg}"
    );
    assert!(acked.len() >= 10, "only {} writes fit", acked.len());
    // Further writes fail cleanly too; nothing panics.
    for i in 0..3 {
        let r = store
            .create(
                &format!("/full/more/{i}"),
                Bytes::from(vec![b'y'; 200 * 1024]),
            )
            .await;
        assert!(r.is_err());
    }
    store.close().await;

    // Everything acknowledged is still there after a restart on the full disk.
    let store = open(&dir);
    for (key, (rev, value)) in &acked {
        let kv = store
            .get(key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{key} lost"));
        assert_eq!((kv.mod_revision, &kv.value), (*rev, value));
    }
    // Once there is room again (the operator grew the disk), writes resume.
    disk.grow("16m");
    let (key, (rev, _)) = acked.iter().next_back().unwrap();
    store.delete(key, *rev).await.unwrap();
    store
        .create("/full/after", Bytes::from("ok"))
        .await
        .unwrap();
    store.close().await;
}

#[tokio::test]
async fn automatic_compaction_bounds_history_by_count() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = EmbeddedConfig::new(tmp.path());
    config.history_revisions = 1000;
    let store = EmbeddedStore::open(config).unwrap();
    let mut revs = HashMap::new();
    for k in 0..50 {
        let kv = store
            .create(&format!("/h/{k}"), Bytes::from("0"))
            .await
            .unwrap();
        revs.insert(k, kv.mod_revision);
    }
    let file = tmp.path().join(skiff_store::embedded::DB_FILE);
    let mut sizes = Vec::new();
    for round in 0..4 {
        // 50 concurrent writers, 100 updates each: 5,000 revisions a round.
        let mut tasks = Vec::new();
        for k in 0..50 {
            let store = store.clone();
            let mut rev = revs[&k];
            tasks.push(tokio::spawn(async move {
                for i in 0..100 {
                    let value = Bytes::from(format!("{round}-{i}-{}", "p".repeat(512)));
                    rev = store
                        .update(&format!("/h/{k}"), value, rev)
                        .await
                        .unwrap()
                        .mod_revision;
                }
                (k, rev)
            }));
        }
        for t in tasks {
            let (k, rev) = t.await.unwrap();
            revs.insert(k, rev);
        }
        // Compaction runs at most once a second, later on a loaded machine:
        // measure once it has caught up with this round.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while store.stats().retained_records > 1000 + 50 + 50
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        sizes.push(std::fs::metadata(&file).unwrap().len());
    }
    let stats = store.stats();
    assert_eq!(stats.live_keys, 50);
    assert!(
        stats.retained_records <= 1000 + 50 + 50,
        "history is bounded: {stats:?}"
    );
    // Disk use stays flat under churn once freed pages are reused.
    assert!(sizes[3] <= sizes[1] * 2, "file keeps growing: {sizes:?}");
}

#[tokio::test]
async fn automatic_compaction_drops_history_older_than_the_retention() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = EmbeddedConfig::new(tmp.path());
    config.history_duration = Duration::from_millis(500);
    let store = EmbeddedStore::open(config).unwrap();
    let mut kv = store.create("/h/k", Bytes::from("0")).await.unwrap();
    for i in 0..100 {
        kv = store
            .update("/h/k", Bytes::from(i.to_string()), kv.mod_revision)
            .await
            .unwrap();
    }
    assert_eq!(store.stats().compacted_revision, 0);
    // The idle writer notices the history aged out without any new write.
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.stats().compacted_revision < kv.mod_revision {
        assert!(
            Instant::now() < deadline,
            "history never compacted: {:?}",
            store.stats()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(store.stats().retained_records, 1);
    match store.watch("/h/", kv.mod_revision - 10).await {
        Err(err) => assert!(err.is_compacted(), "{err:?}"),
        Ok(_) => panic!("watch from compacted history must fail"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let mut tasks = Vec::new();
    for t in 0..32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                store
                    .create(&format!("/g/{t}/{i}"), Bytes::from("v"))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = store.stats();
    assert_eq!(stats.revision, 32 * 50);
    // Group commit: 1,600 acknowledged, durable writes in far fewer commits.
    assert!(
        stats.commits * 4 <= 32 * 50,
        "{} commits for 1,600 writes",
        stats.commits
    );
}
