//! Watch fan-out: many watchers of the ConfigMaps of one namespace, one
//! ConfigMap updated, the time until each watcher has the event.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use http_body_util::BodyExt;

use super::client::{Conn, Target};
use super::load::percentile;
use super::objects;

/// Watch streams multiplexed on one HTTP/2 connection (the server allows
/// 200 concurrent streams per connection).
const STREAMS_PER_CONN: usize = 100;
/// How long all watchers may take to be established.
const OPEN_TIMEOUT: Duration = Duration::from_secs(180);
/// How long one update may take to reach every watcher.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between updates, once the previous one reached everyone.
const PAUSE: Duration = Duration::from_millis(300);

/// What one fan-out run measured.
#[derive(Debug, Clone, Default)]
pub struct FanoutStats {
    /// Watchers asked for.
    pub watchers: usize,
    /// Watchers established (answered 200 and sent the initial object).
    pub ready: usize,
    /// Time to establish them all.
    pub open_time: Duration,
    /// Updates made.
    pub updates: usize,
    /// Median over the updates of each update's p50 delivery latency.
    pub p50: Duration,
    /// Median over the updates of each update's p99 delivery latency.
    pub p99: Duration,
    /// Events delivered (of `ready * updates`).
    pub delivered: usize,
}

/// Opens `watchers` watches on the ConfigMaps of a new namespace
/// `namespace` holding one ConfigMap, then updates it `updates` times
/// through `admin`, each once every watcher has the previous update.
pub async fn fanout(
    target: &Target,
    admin: &Conn,
    namespace: &str,
    watchers: usize,
    updates: usize,
) -> anyhow::Result<FanoutStats> {
    let (status, body) = admin
        .post_json("/api/v1/namespaces", objects::namespace(namespace))
        .await?;
    anyhow::ensure!(
        status == StatusCode::CREATED,
        "namespace: {status}: {body:?}"
    );
    let cms = format!("/api/v1/namespaces/{namespace}/configmaps");
    let (status, body) = admin
        .post_json(&cms, objects::fanout_configmap(namespace, "fanout"))
        .await?;
    anyhow::ensure!(
        status == StatusCode::CREATED,
        "configmap: {status}: {body:?}"
    );

    let conns = target
        .connect_many(watchers.div_ceil(STREAMS_PER_CONN))
        .await?;
    let ready = Arc::new(AtomicUsize::new(0));
    let delivered: Arc<Vec<AtomicUsize>> =
        Arc::new((0..=updates).map(|_| AtomicUsize::new(0)).collect());
    let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
    let base = Instant::now();
    let watch_path = format!("{cms}?watch=true&timeoutSeconds=1800");
    let mut tasks = Vec::with_capacity(watchers);
    for w in 0..watchers {
        let conn = conns[w / STREAMS_PER_CONN].clone();
        let path = watch_path.clone();
        let ready = ready.clone();
        let delivered = delivered.clone();
        let cancel = cancel_rx.clone();
        tasks.push(tokio::spawn(watcher(
            conn, path, updates, base, ready, delivered, cancel,
        )));
    }

    // Every watcher established (or one failed).
    let open_start = Instant::now();
    while ready.load(Ordering::Relaxed) < watchers {
        if open_start.elapsed() > OPEN_TIMEOUT || tasks.iter().any(|t| t.is_finished()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let open_time = open_start.elapsed();
    if let Some(i) = tasks.iter().position(|t| t.is_finished()) {
        let task = tasks.swap_remove(i);
        let _ = cancel_tx.send(true);
        task.await??;
        anyhow::bail!("a watcher ended before the updates");
    }
    let established = ready.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let path = format!("{cms}/fanout");
    let mut sent = vec![Duration::ZERO; updates + 1];
    for (seq, sent_at) in sent.iter_mut().enumerate().skip(1) {
        *sent_at = base.elapsed();
        let (status, body) = admin
            .call(
                Method::PATCH,
                &path,
                Some(("application/merge-patch+json", objects::fanout_patch(seq))),
            )
            .await?;
        anyhow::ensure!(status == StatusCode::OK, "update: {status}: {body:?}");
        let t = Instant::now();
        while delivered[seq].load(Ordering::Relaxed) < established && t.elapsed() < DELIVERY_TIMEOUT
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(PAUSE).await;
    }
    let _ = cancel_tx.send(true);

    let mut per_update: Vec<Vec<Duration>> = vec![Vec::with_capacity(established); updates + 1];
    for task in tasks {
        for (seq, at) in task.await?? {
            per_update[seq].push(at.saturating_sub(sent[seq]));
        }
    }
    let mut p50s = Vec::with_capacity(updates);
    let mut p99s = Vec::with_capacity(updates);
    let mut total = 0;
    for lat in per_update.iter_mut().skip(1) {
        total += lat.len();
        lat.sort();
        p50s.push(percentile(lat, 0.50));
        p99s.push(percentile(lat, 0.99));
    }
    p50s.sort();
    p99s.sort();
    Ok(FanoutStats {
        watchers,
        ready: established,
        open_time,
        updates,
        p50: percentile(&p50s, 0.5),
        p99: percentile(&p99s, 0.5),
        delivered: total,
    })
}

/// One watcher: reads event lines, counts itself ready at the first (the
/// initial ADDED), and records when each update's event arrived.
async fn watcher(
    conn: Conn,
    path: String,
    updates: usize,
    base: Instant,
    ready: Arc<AtomicUsize>,
    delivered: Arc<Vec<AtomicUsize>>,
    mut cancel: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Vec<(usize, Duration)>> {
    let (status, mut body) = conn.open(Method::GET, &path, None).await?;
    anyhow::ensure!(status == StatusCode::OK, "watch: {status}");
    let mut seen = Vec::with_capacity(updates);
    let mut buf: Vec<u8> = Vec::new();
    let mut is_ready = false;
    while seen.len() < updates {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            _ = cancel.changed() => break,
        };
        let Some(frame) = frame else {
            anyhow::bail!("watch ended after {} of {updates} updates", seen.len());
        };
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        let now = base.elapsed();
        buf.extend_from_slice(&data);
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            if !is_ready {
                is_ready = true;
                ready.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(seq) = objects::find_seq(&line).filter(|s| (1..=updates).contains(s)) {
                seen.push((seq, now));
                delivered[seq].fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Ok(seen)
}
