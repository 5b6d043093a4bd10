//! `cargo bench -p skiff-store`: the embedded backend and a real etcd, side by
//! side on the same workload in one run, printed as one table.
//!
//! Workloads (values of 2 KiB, about a Pod's JSON; fsync on for both):
//! - writes/s and p50/p99 latency with 1, 16 and 64 concurrent writers
//!   (creates of fresh keys), each for `SKIFF_BENCH_SECS` seconds (default 3);
//! - listing 10,000 keys under one prefix (median of 10);
//! - watch delivery latency with 1,000 watchers of one prefix (write → every
//!   watcher has the event), over 200 paced writes;
//! - peak RSS: the etcd server process, and for the embedded backend the
//!   whole benchmark process while it ran (store plus load generator, so it
//!   overstates the store).
//!
//! etcd runs on loopback on free ports with its data in a temp dir on the
//! same disk as the embedded store's.

#[path = "../tests/support/etcd.rs"]
#[allow(dead_code)]
mod etcd_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use skiff_store::{EmbeddedConfig, EmbeddedStore, EtcdConfig, EtcdStore, ListOptions, Store};

const VALUE_BYTES: usize = 2048;
const LIST_KEYS: usize = 10_000;
const WATCHERS: usize = 1_000;
const WATCH_WRITES: usize = 200;

#[derive(Debug, Default, Clone)]
struct Results {
    writes: Vec<(usize, f64, Duration, Duration)>,
    list_median: Duration,
    list_paged_median: Duration,
    watch_p50: Duration,
    watch_p99: Duration,
    watch_delivered: usize,
    rss_peak_kib: u64,
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; a filter argument of "embedded" or
    // "etcd" runs only that backend.
    let only: Option<String> = std::env::args()
        .skip(1)
        .find(|a| a == "embedded" || a == "etcd");
    let secs: u64 = std::env::var("SKIFF_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let dur = Duration::from_secs(secs);
        let mut embedded = None;
        let mut etcd = None;
        if only.as_deref() != Some("etcd") {
            let tmp = tempfile::tempdir()?;
            let store = EmbeddedStore::open(EmbeddedConfig::new(tmp.path().join("db")))?;
            eprintln!("embedded: running");
            let mut r = run_all(&store, dur).await?;
            r.rss_peak_kib = proc_status_kib("self", "VmHWM").unwrap_or(0);
            store.close().await;
            embedded = Some(r);
        }
        if only.as_deref() != Some("embedded") {
            let server = etcd_support::EtcdProcess::start().await;
            let store = EtcdStore::connect(EtcdConfig::new([server.client_url()])).await?;
            eprintln!("etcd: running against {}", server.client_url());
            let mut r = run_all(&store, dur).await?;
            let pid = server.pid().map(|p| p.to_string()).unwrap_or_default();
            r.rss_peak_kib = proc_status_kib(&pid, "VmHWM").unwrap_or(0);
            etcd = Some(r);
        }
        print_table(embedded.as_ref(), etcd.as_ref(), secs);
        anyhow::Ok(())
    })
}

/// Commit counts, where the backend reports them.
trait Commits {
    fn commits(&self) -> Option<u64>;
}
impl Commits for EmbeddedStore {
    fn commits(&self) -> Option<u64> {
        Some(self.stats().commits)
    }
}
impl Commits for EtcdStore {
    fn commits(&self) -> Option<u64> {
        None
    }
}

async fn run_all<S: Store + Clone + Commits>(store: &S, dur: Duration) -> anyhow::Result<Results> {
    let mut r = Results::default();
    for writers in [1, 16, 64] {
        let before = store.commits();
        let (rate, p50, p99) = write_load(store, writers, dur).await?;
        let batch = match (before, store.commits()) {
            (Some(b), Some(a)) if a > b => format!(
                "  {:.1} writes/commit",
                rate * dur.as_secs_f64() / (a - b) as f64
            ),
            _ => String::new(),
        };
        eprintln!("  {writers:>2} writers: {rate:>8.0} writes/s  p50 {p50:?}  p99 {p99:?}{batch}");
        r.writes.push((writers, rate, p50, p99));
    }
    (r.list_median, r.list_paged_median) = list_load(store).await?;
    eprintln!(
        "  list {LIST_KEYS}: {:?} (paged by 500: {:?})",
        r.list_median, r.list_paged_median
    );
    (r.watch_p50, r.watch_p99, r.watch_delivered) = watch_load(store).await?;
    eprintln!("  watch: p50 {:?} p99 {:?}", r.watch_p50, r.watch_p99);
    Ok(r)
}

fn value(tag: &str) -> Bytes {
    let mut v = format!("{{\"tag\":\"{tag}\",\"pad\":\"");
    v.push_str(&"x".repeat(VALUE_BYTES.saturating_sub(v.len() + 2)));
    v.push_str("\"}");
    Bytes::from(v)
}

/// `writers` tasks create fresh keys for `dur`; returns writes/s, p50, p99.
async fn write_load<S: Store + Clone>(
    store: &S,
    writers: usize,
    dur: Duration,
) -> anyhow::Result<(f64, Duration, Duration)> {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("/bench/w{writers}/{w}/{i:08}");
                let t = Instant::now();
                store.create(&key, value(&key)).await?;
                lat.push(t.elapsed());
                i += 1;
            }
            anyhow::Ok(lat)
        }));
    }
    tokio::time::sleep(dur).await;
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let elapsed = start.elapsed();
    lat.sort();
    Ok((
        lat.len() as f64 / elapsed.as_secs_f64(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
    ))
}

/// Fills 10,000 keys, then times full lists and lists paged by 500.
async fn list_load<S: Store + Clone>(store: &S) -> anyhow::Result<(Duration, Duration)> {
    let mut tasks = Vec::new();
    for w in 0..64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..LIST_KEYS).step_by(64) {
                let key = format!("/bench/list/{i:06}");
                store.create(&key, value(&key)).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let mut full = Vec::new();
    let mut paged = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let resp = store.list("/bench/list/", ListOptions::default()).await?;
        full.push(t.elapsed());
        anyhow::ensure!(
            resp.kvs.len() == LIST_KEYS,
            "listed {} keys",
            resp.kvs.len()
        );

        let t = Instant::now();
        let mut opts = ListOptions {
            limit: 500,
            ..Default::default()
        };
        let mut n = 0;
        loop {
            let resp = store.list("/bench/list/", opts.clone()).await?;
            n += resp.kvs.len();
            match resp.continue_after() {
                Some(k) => {
                    opts.revision = resp.revision;
                    opts.continue_after = Some(k.to_owned());
                }
                None => break,
            }
        }
        paged.push(t.elapsed());
        anyhow::ensure!(n == LIST_KEYS, "paged list saw {n} keys");
    }
    full.sort();
    paged.sort();
    Ok((percentile(&full, 0.5), percentile(&paged, 0.5)))
}

/// 1,000 watchers of one prefix; 200 writes paced 10 ms apart, each carrying
/// its send time. Returns p50, p99 of write-start → delivery, and how many
/// deliveries were seen (must be 200,000).
async fn watch_load<S: Store + Clone>(store: &S) -> anyhow::Result<(Duration, Duration, usize)> {
    let base = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..WATCHERS {
        let mut w = store.watch("/bench/watch/", 0).await?;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(WATCH_WRITES);
            while lat.len() < WATCH_WRITES {
                let ev = match tokio::time::timeout(Duration::from_secs(30), w.next()).await {
                    Ok(Some(Ok(ev))) => ev,
                    _ => break,
                };
                let now = base.elapsed();
                let sent: u64 = std::str::from_utf8(&ev.kv.value)
                    .ok()
                    .and_then(|s| s.split(':').next()?.parse().ok())
                    .unwrap_or(0);
                lat.push(now.saturating_sub(Duration::from_nanos(sent)));
            }
            lat
        }));
    }
    for i in 0..WATCH_WRITES {
        let sent = base.elapsed().as_nanos();
        store
            .create(
                &format!("/bench/watch/{i:04}"),
                Bytes::from(format!("{sent}:event")),
            )
            .await?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await?);
    }
    let delivered = lat.len();
    lat.sort();
    Ok((percentile(&lat, 0.5), percentile(&lat, 0.99), delivered))
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn proc_status_kib(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn print_table(e: Option<&Results>, c: Option<&Results>, secs: u64) {
    let cell = |r: Option<&Results>, f: &dyn Fn(&Results) -> String| {
        r.map(f).unwrap_or_else(|| "-".into())
    };
    let ratio = |f: &dyn Fn(&Results) -> f64, higher_is_better: bool| match (e, c) {
        (Some(e), Some(c)) if f(c) > 0.0 && f(e) > 0.0 => {
            let r = if higher_is_better {
                f(e) / f(c)
            } else {
                f(c) / f(e)
            };
            format!("{r:.2}x")
        }
        _ => "-".into(),
    };
    println!();
    println!(
        "skiff-store benchmark: {VALUE_BYTES}-byte values, fsync on, {secs} s per write point, {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!("| metric | embedded | etcd 3.4 | embedded advantage |");
    println!("|---|---:|---:|---:|");
    for i in 0..3 {
        let w = e.or(c).map(|r| r.writes[i].0).unwrap_or(0);
        println!(
            "| writes/s, {w} writer(s) | {} | {} | {} |",
            cell(e, &|r| format!("{:.0}", r.writes[i].1)),
            cell(c, &|r| format!("{:.0}", r.writes[i].1)),
            ratio(&|r| r.writes[i].1, true)
        );
        println!(
            "| write p50 / p99 ms, {w} writer(s) | {} | {} | {} |",
            cell(e, &|r| format!(
                "{} / {}",
                ms(r.writes[i].2),
                ms(r.writes[i].3)
            )),
            cell(c, &|r| format!(
                "{} / {}",
                ms(r.writes[i].2),
                ms(r.writes[i].3)
            )),
            ratio(&|r| r.writes[i].3.as_secs_f64(), false)
        );
    }
    println!(
        "| list {LIST_KEYS} keys, median ms | {} | {} | {} |",
        cell(e, &|r| ms(r.list_median)),
        cell(c, &|r| ms(r.list_median)),
        ratio(&|r| r.list_median.as_secs_f64(), false)
    );
    println!(
        "| list {LIST_KEYS} keys paged by 500, median ms | {} | {} | {} |",
        cell(e, &|r| ms(r.list_paged_median)),
        cell(c, &|r| ms(r.list_paged_median)),
        ratio(&|r| r.list_paged_median.as_secs_f64(), false)
    );
    println!(
        "| watch delivery p50 / p99 ms, {WATCHERS} watchers | {} | {} | {} |",
        cell(e, &|r| format!("{} / {}", ms(r.watch_p50), ms(r.watch_p99))),
        cell(c, &|r| format!("{} / {}", ms(r.watch_p50), ms(r.watch_p99))),
        ratio(&|r| r.watch_p99.as_secs_f64(), false)
    );
    println!(
        "| watch deliveries seen (of {}) | {} | {} | |",
        WATCHERS * WATCH_WRITES,
        cell(e, &|r| r.watch_delivered.to_string()),
        cell(c, &|r| r.watch_delivered.to_string())
    );
    println!(
        "| peak RSS MiB (embedded: whole bench process; etcd: server) | {} | {} | {} |",
        cell(e, &|r| format!("{:.0}", r.rss_peak_kib as f64 / 1024.0)),
        cell(c, &|r| format!("{:.0}", r.rss_peak_kib as f64 / 1024.0)),
        ratio(&|r| r.rss_peak_kib as f64, false)
    );
}
