//! Per-pod eviction timers (upstream's `TimedWorkerQueue`) and the pure
//! decision of when a pod on a tainted node must go.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Taint, Toleration};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::nodelifecycle::taints;

/// A pod's eviction as scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheduled {
    /// When the eviction was first scheduled (the taint was first seen).
    pub created_at: Instant,
    /// When it fires.
    pub fire_at: Instant,
    /// It fired already (the pod is being deleted).
    pub fired: bool,
}

/// What to do with a pod on a node with NoExecute `taints`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Drop any scheduled eviction (no taints, or tolerated forever).
    Cancel,
    /// Leave the scheduled eviction as it is.
    Keep,
    /// Evict at this time (now when a taint is not tolerated).
    EvictAt(Instant),
}

/// Decides a pod's eviction (upstream's `processPodOnNode`): not
/// tolerating a taint means now; tolerating them all for a while means
/// that long after the eviction was first scheduled; tolerating them
/// forever means never. A fired eviction is left alone.
pub fn decide(
    taints: &[Taint],
    tolerations: &[Toleration],
    scheduled: Option<Scheduled>,
    now: Instant,
) -> Decision {
    if taints.is_empty() {
        return Decision::Cancel;
    }
    if scheduled.is_some_and(|s| s.fired) {
        return Decision::Keep;
    }
    let (all_tolerated, used) = taints::matching_tolerations(taints, tolerations);
    if !all_tolerated {
        return match scheduled {
            Some(s) if s.fire_at <= now => Decision::Keep,
            _ => Decision::EvictAt(now),
        };
    }
    let Some(secs) = taints::min_toleration_seconds(&used) else {
        return Decision::Cancel;
    };
    let wait = Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    let start = scheduled.map_or(now, |s| s.created_at);
    let at = start + wait;
    match scheduled {
        Some(s) if s.fire_at == at => Decision::Keep,
        _ => Decision::EvictAt(at),
    }
}

enum Entry {
    Waiting {
        created_at: Instant,
        fire_at: Instant,
        task: AbortHandle,
        generation: u64,
    },
    Fired {
        created_at: Instant,
        fire_at: Instant,
        generation: u64,
    },
}

/// Timers by pod key: each runs its work once at its time unless
/// cancelled first. A fired timer stays (so it is not scheduled again)
/// until cancelled, or until its work fails, so it can be scheduled anew.
#[derive(Default)]
pub struct TimedWorkers {
    entries: std::sync::Arc<Mutex<HashMap<String, Entry>>>,
    generation: AtomicU64,
}

impl std::fmt::Debug for TimedWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimedWorkers").finish_non_exhaustive()
    }
}

impl TimedWorkers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The timer of `key`, if any.
    pub fn scheduled(&self, key: &str) -> Option<Scheduled> {
        self.lock().get(key).map(|e| match e {
            Entry::Waiting {
                created_at,
                fire_at,
                ..
            } => Scheduled {
                created_at: *created_at,
                fire_at: *fire_at,
                fired: false,
            },
            Entry::Fired {
                created_at,
                fire_at,
                ..
            } => Scheduled {
                created_at: *created_at,
                fire_at: *fire_at,
                fired: true,
            },
        })
    }

    /// Schedules `work` for `key` at `fire_at` (replacing its timer);
    /// `work` returns whether it succeeded.
    pub fn add(
        &self,
        key: &str,
        created_at: Instant,
        fire_at: Instant,
        work: impl Future<Output = bool> + Send + 'static,
    ) {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let entries = self.entries.clone();
        let k = key.to_owned();
        let mut map = self.lock();
        let task = tokio::spawn(async move {
            tokio::time::sleep_until(fire_at).await;
            {
                let mut m = entries.lock().unwrap_or_else(|e| e.into_inner());
                match m.get(&k) {
                    Some(Entry::Waiting { generation: g, .. }) if *g == generation => {
                        m.insert(
                            k.clone(),
                            Entry::Fired {
                                created_at,
                                fire_at,
                                generation,
                            },
                        );
                    }
                    _ => return,
                }
            }
            if !work.await {
                let mut m = entries.lock().unwrap_or_else(|e| e.into_inner());
                if matches!(m.get(&k), Some(Entry::Fired { generation: g, .. }) if *g == generation)
                {
                    m.remove(&k);
                }
            }
        })
        .abort_handle();
        if let Some(Entry::Waiting { task, .. }) = map.insert(
            key.to_owned(),
            Entry::Waiting {
                created_at,
                fire_at,
                task,
                generation,
            },
        ) {
            task.abort();
        }
    }

    /// Drops `key`'s timer (stopping it if it has not fired); whether there
    /// was one.
    pub fn cancel(&self, key: &str) -> bool {
        match self.lock().remove(key) {
            Some(Entry::Waiting { task, .. }) => {
                task.abort();
                true
            }
            Some(Entry::Fired { .. }) => true,
            None => false,
        }
    }

    /// Stops every timer.
    pub fn cancel_all(&self) {
        for (_, e) in self.lock().drain() {
            if let Entry::Waiting { task, .. } = e {
                task.abort();
            }
        }
    }

    /// Timers not yet fired.
    pub fn waiting(&self) -> usize {
        self.lock()
            .values()
            .filter(|e| matches!(e, Entry::Waiting { .. }))
            .count()
    }
}
