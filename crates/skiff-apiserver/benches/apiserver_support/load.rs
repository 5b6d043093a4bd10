//! Create and list workloads.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::client::Conn;

/// Throughput and latency of a batch of creates.
#[derive(Debug, Clone, Default)]
pub struct CreateStats {
    /// Creates answered 201.
    pub created: usize,
    /// Other answers (and transport errors).
    pub failed: usize,
    /// The first failure, for the report.
    pub first_failure: Option<String>,
    /// Wall time of the whole batch.
    pub elapsed: Duration,
    /// Per-request latency percentiles.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
}

impl CreateStats {
    /// Successful creates per second.
    pub fn rate(&self) -> f64 {
        self.created as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Creates objects `0..count` with `clients` concurrent tasks spread over
/// `conns`: object `i` is POSTed to `path` with body `body(i)`.
pub async fn create_many(
    conns: &[Conn],
    clients: usize,
    path: &str,
    count: usize,
    body: impl Fn(usize) -> Bytes + Send + Sync + 'static,
) -> anyhow::Result<CreateStats> {
    anyhow::ensure!(!conns.is_empty(), "no connections");
    let next = Arc::new(AtomicUsize::new(0));
    let body = Arc::new(body);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let conn = conns[c % conns.len()].clone();
        let next = next.clone();
        let body = body.clone();
        let path = path.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut failed = 0;
            let mut first_failure = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let json = body(i);
                let t = Instant::now();
                let answer = conn.post_json(&path, json).await;
                let took = t.elapsed();
                match answer {
                    Ok((StatusCode::CREATED, _)) => lat.push(took),
                    Ok((status, body)) => {
                        failed += 1;
                        first_failure.get_or_insert_with(|| {
                            format!("{status}: {}", String::from_utf8_lossy(&body))
                        });
                    }
                    Err(err) => {
                        failed += 1;
                        first_failure.get_or_insert_with(|| format!("{err:#}"));
                    }
                }
            }
            (lat, failed, first_failure)
        }));
    }
    let mut lat = Vec::with_capacity(count);
    let mut stats = CreateStats::default();
    for t in tasks {
        let (l, failed, first) = t.await?;
        lat.extend(l);
        stats.failed += failed;
        if stats.first_failure.is_none() {
            stats.first_failure = first;
        }
    }
    stats.elapsed = start.elapsed();
    lat.sort();
    stats.created = lat.len();
    stats.p50 = percentile(&lat, 0.50);
    stats.p99 = percentile(&lat, 0.99);
    Ok(stats)
}

#[derive(Deserialize)]
struct ListPage {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default)]
    items: Vec<IgnoredAny>,
}

#[derive(Deserialize, Default)]
struct ListMeta {
    #[serde(default, rename = "continue")]
    continue_token: Option<String>,
}

/// Median time of `runs` full lists of `path` and of `runs` lists paged
/// by `limit` (every page, following `continue`); each must return
/// `expect` items.
pub async fn list_timings(
    conn: &Conn,
    path: &str,
    limit: usize,
    expect: usize,
    runs: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let mut full = Vec::with_capacity(runs);
    let mut paged = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let body = conn.get_ok(path).await?;
        full.push(t.elapsed());
        let page: ListPage = serde_json::from_slice(&body)?;
        anyhow::ensure!(
            page.items.len() == expect,
            "full list of {path}: {} items, expected {expect}",
            page.items.len()
        );

        let t = Instant::now();
        let mut seen = 0;
        let mut next: Option<String> = None;
        loop {
            let url = match &next {
                None => format!("{path}?limit={limit}"),
                Some(token) => format!("{path}?limit={limit}&continue={token}"),
            };
            let page: ListPage = serde_json::from_slice(&conn.get_ok(&url).await?)?;
            seen += page.items.len();
            match page.metadata.continue_token.filter(|c| !c.is_empty()) {
                Some(c) => next = Some(url_escape(&c)),
                None => break,
            }
        }
        paged.push(t.elapsed());
        anyhow::ensure!(
            seen == expect,
            "paged list of {path}: {seen} items, expected {expect}"
        );
    }
    full.sort();
    paged.sort();
    Ok((percentile(&full, 0.5), percentile(&paged, 0.5)))
}

/// Percent-encodes a query value (continue tokens are base64).
fn url_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `q` quantile of sorted samples (zero when there are none).
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
