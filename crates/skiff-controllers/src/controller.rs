//! Runs a controller's workers: each takes a key from the work queue, syncs
//! it, and forgets it on success, requeues it rate-limited on an error or a
//! panic (a panicking sync never takes the manager down), or after the
//! delay the sync asked for. When the queue reports metrics, the workers
//! report there their number and each sync's result and duration.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::metrics::SyncResult;
use crate::workqueue::WorkQueue;

/// What a successful sync asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing: wait for the next event.
    Await,
    /// Sync the key again after this long.
    RequeueAfter(Duration),
}

/// A sync error: logged, and the key requeued with back-off.
pub type SyncError = Box<dyn std::error::Error + Send + Sync>;

/// One controller's level-triggered sync of a key (`namespace/name`).
pub trait Reconciler: Send + Sync + 'static {
    /// The controller's name, for logs and the `controller` label of its
    /// metrics (e.g. `replicaset`).
    fn name(&self) -> &str;
    /// Brings the object named `key` to its desired state.
    fn sync(&self, key: &str) -> impl Future<Output = Result<Action, SyncError>> + Send;
}

/// Runs `workers` workers on `queue` until `shutdown`, then shuts the queue
/// down and waits for the workers to finish their current key.
pub async fn run_workers<R: Reconciler>(
    reconciler: Arc<R>,
    queue: Arc<WorkQueue<String>>,
    workers: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let workers = workers.max(1);
    if let Some(m) = queue.metrics() {
        m.set_workers(reconciler.name(), workers);
    }
    let mut set = JoinSet::new();
    for _ in 0..workers {
        let r = reconciler.clone();
        let q = queue.clone();
        set.spawn(async move { while process_next_work_item(r.as_ref(), &q).await {} });
    }
    let _ = shutdown.wait_for(|s| *s).await;
    queue.shut_down();
    while set.join_next().await.is_some() {}
}

/// Takes and syncs one key; false once the queue is shut down.
pub async fn process_next_work_item<R: Reconciler>(r: &R, queue: &WorkQueue<String>) -> bool {
    let Some(key) = queue.get().await else {
        return false;
    };
    let started = tokio::time::Instant::now();
    let result = std::panic::AssertUnwindSafe(r.sync(&key))
        .catch_unwind()
        .await;
    let elapsed = started.elapsed();
    let outcome = match &result {
        Ok(Ok(Action::Await)) => SyncResult::Success,
        Ok(Ok(Action::RequeueAfter(_))) => SyncResult::Requeue,
        Ok(Err(_)) => SyncResult::Error,
        Err(_) => SyncResult::Panic,
    };
    if let Some(m) = queue.metrics() {
        m.observe_sync(r.name(), outcome, elapsed);
    }
    match result {
        Ok(Ok(Action::Await)) => queue.forget(&key),
        Ok(Ok(Action::RequeueAfter(d))) => {
            queue.forget(&key);
            queue.add_after(key.clone(), d);
        }
        Ok(Err(err)) => {
            tracing::info!(controller = r.name(), key = %key, error = %err, "error syncing; requeuing");
            queue.add_rate_limited(key.clone());
        }
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(controller = r.name(), key = %key, panic = %msg, "sync panicked; requeuing");
            queue.add_rate_limited(key.clone());
        }
    }
    queue.done(&key);
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Scripted {
        calls: Mutex<Vec<(String, tokio::time::Instant)>>,
        /// Per key, what successive syncs do: 'o' ok, 'e' error, 'p' panic,
        /// 'r' requeue after 1 s.
        script: Mutex<HashMap<String, Vec<char>>>,
        running: Mutex<std::collections::HashSet<String>>,
    }

    impl Reconciler for Scripted {
        fn name(&self) -> &str {
            "test"
        }
        async fn sync(&self, key: &str) -> Result<Action, SyncError> {
            assert!(
                self.running.lock().unwrap().insert(key.to_owned()),
                "{key} synced by two workers at once"
            );
            self.calls
                .lock()
                .unwrap()
                .push((key.to_owned(), tokio::time::Instant::now()));
            tokio::time::sleep(Duration::from_millis(1)).await;
            self.running.lock().unwrap().remove(key);
            let step = {
                let mut s = self.script.lock().unwrap();
                let steps = s.entry(key.to_owned()).or_default();
                if steps.is_empty() {
                    'o'
                } else {
                    steps.remove(0)
                }
            };
            match step {
                'e' => Err("boom".into()),
                'p' => panic!("sync of {key} panicked"),
                'r' => Ok(Action::RequeueAfter(Duration::from_secs(1))),
                _ => Ok(Action::Await),
            }
        }
    }

    async fn run_for(r: Arc<Scripted>, q: Arc<WorkQueue<String>>, d: Duration) {
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(run_workers(r, q, 3, rx));
        tokio::time::sleep(d).await;
        tx.send_replace(true);
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn errors_and_panics_requeue_with_backoff_then_succeed() {
        let r = Arc::new(Scripted::default());
        r.script
            .lock()
            .unwrap()
            .insert("a".into(), vec!['e', 'p', 'e', 'o']);
        let q = Arc::new(WorkQueue::new());
        q.add("a".to_owned());
        q.add("b".to_owned());
        run_for(r.clone(), q.clone(), Duration::from_secs(5)).await;
        let calls = r.calls.lock().unwrap().clone();
        let a: Vec<_> = calls
            .iter()
            .filter(|(k, _)| k == "a")
            .map(|(_, t)| *t)
            .collect();
        assert_eq!(a.len(), 4, "a synced until it succeeded");
        let gaps: Vec<u128> = a.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
        // 1 ms of sync plus 5, 10, 20 ms of back-off.
        assert_eq!(gaps, [6, 11, 21]);
        assert_eq!(q.num_requeues(&"a".to_owned()), 0, "forgotten on success");
        assert_eq!(calls.iter().filter(|(k, _)| k == "b").count(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn syncs_are_counted_by_result_with_the_worker_count() {
        let r = Arc::new(Scripted::default());
        r.script
            .lock()
            .unwrap()
            .insert("a".into(), vec!['e', 'p', 'r', 'o']);
        let metrics = crate::metrics::ControllerMetrics::new();
        let q = Arc::new(metrics.queue("test_queue"));
        q.add("a".to_owned());
        q.add("b".to_owned());
        run_for(r.clone(), q, Duration::from_secs(5)).await;
        let text = metrics.encode_text();
        let sample = |series: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
                .unwrap_or_else(|| panic!("no {series} in\n{text}"))
                .to_owned()
        };
        assert_eq!(
            sample(r#"skiff_controller_workers{controller="test"}"#),
            "3"
        );
        for (result, n) in [
            ("success", "2"),
            ("error", "1"),
            ("panic", "1"),
            ("requeue", "1"),
        ] {
            let labels = format!(r#"{{controller="test",result="{result}"}}"#);
            assert_eq!(sample(&format!("skiff_controller_syncs_total{labels}")), n);
            assert_eq!(
                sample(&format!(
                    "skiff_controller_sync_duration_seconds_count{labels}"
                )),
                n
            );
        }
        // Every sync takes 1 ms.
        assert_eq!(
            sample(
                r#"skiff_controller_sync_duration_seconds_sum{controller="test",result="success"}"#
            ),
            "0.002"
        );
        // Error, panic and requeue each went through add_after.
        assert_eq!(sample(r#"workqueue_retries_total{name="test_queue"}"#), "3");
        assert_eq!(sample(r#"workqueue_adds_total{name="test_queue"}"#), "5");
        assert_eq!(
            sample(r#"workqueue_work_duration_seconds_count{name="test_queue"}"#),
            "5"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn requeue_after_syncs_again_later() {
        let r = Arc::new(Scripted::default());
        r.script.lock().unwrap().insert("a".into(), vec!['r', 'o']);
        let q = Arc::new(WorkQueue::new());
        q.add("a".to_owned());
        run_for(r.clone(), q, Duration::from_secs(3)).await;
        let calls = r.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 2);
        assert_eq!((calls[1].1 - calls[0].1).as_millis(), 1001);
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_added_during_its_sync_is_synced_again_not_concurrently() {
        let r = Arc::new(Scripted::default());
        let q = Arc::new(WorkQueue::new());
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(run_workers(r.clone(), q.clone(), 4, rx));
        q.add("a".to_owned());
        while r.calls.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        // Added five times while its sync runs: one more sync, after it.
        for _ in 0..5 {
            q.add("a".to_owned());
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        tx.send_replace(true);
        task.await.unwrap();
        let n = r.calls.lock().unwrap().len();
        assert_eq!(n, 2);
    }
}
