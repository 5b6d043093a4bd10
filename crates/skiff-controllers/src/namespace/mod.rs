//! The namespace controller (upstream's `namespace` package): empties a
//! Namespace marked for deletion, reports why it cannot yet be removed
//! through the NamespaceDeletion* conditions, and then removes its
//! `kubernetes` finalizer so the API server deletes it.

pub mod conditions;
pub mod deleter;
pub mod discovery;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::controller::{Action, Reconciler, SyncError};
use crate::informer::{InformerFactory, ResourceEventHandler};
use crate::workqueue::WorkQueue;
use crate::workqueue::rate_limiter::ItemExponentialFailureRateLimiter;

pub use deleter::{Deleter, Outcome};

/// The controller's name in `--controllers`.
pub const CONTROLLER_NAME: &str = "namespace";

/// Workers (`--concurrent-namespace-syncs`).
pub const DEFAULT_WORKERS: usize = 10;

/// How long after seeing a namespace marked for deletion the controller
/// starts emptying it: lets admission caches learn that it is terminating,
/// so no new content slips in behind the deletion.
pub const NAMESPACE_DELETION_GRACE_PERIOD: Duration = Duration::from_secs(5);

/// When to look again at a namespace whose content needs about `estimate`
/// more seconds to go away.
pub fn requeue_after(estimate: i64) -> Duration {
    Duration::from_secs(u64::try_from(estimate / 2 + 1).unwrap_or(1))
}

/// The namespace controller.
pub struct NamespaceController {
    deleter: Deleter,
    namespaces: Store<Namespace>,
    queue: Arc<WorkQueue<String>>,
    grace: Duration,
}

impl std::fmt::Debug for NamespaceController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamespaceController")
            .finish_non_exhaustive()
    }
}

impl NamespaceController {
    /// A controller on `factory`'s Namespace informer.
    pub fn new(client: kube::Client, factory: &InformerFactory) -> Arc<Self> {
        let informer = factory.informer::<Namespace>();
        let c = Arc::new(NamespaceController {
            deleter: Deleter::new(client),
            namespaces: informer.store(),
            // As upstream: per-item exponential back-off only, 5 ms to 60 s.
            queue: Arc::new(factory.metrics().queue_with_rate_limiter(
                "namespace",
                Box::new(ItemExponentialFailureRateLimiter::new(
                    Duration::from_millis(5),
                    Duration::from_secs(60),
                )),
            )),
            grace: NAMESPACE_DELETION_GRACE_PERIOD,
        });
        informer.add_event_handler(Arc::new(Handler(c.clone())));
        c
    }

    /// The controller's work queue.
    pub fn queue(&self) -> Arc<WorkQueue<String>> {
        self.queue.clone()
    }

    fn enqueue(&self, ns: &Namespace) {
        if ns.metadata.deletion_timestamp.is_none() {
            return;
        }
        if let Some(name) = &ns.metadata.name {
            self.queue.add_after(name.clone(), self.grace);
        }
    }
}

struct Handler(Arc<NamespaceController>);

impl ResourceEventHandler<Namespace> for Handler {
    fn on_add(&self, obj: &Arc<Namespace>) {
        self.0.enqueue(obj);
    }
    fn on_update(&self, _old: &Arc<Namespace>, new: &Arc<Namespace>) {
        self.0.enqueue(new);
    }
    fn on_delete(&self, _obj: &Arc<Namespace>) {}
}

impl Reconciler for NamespaceController {
    fn name(&self) -> &str {
        CONTROLLER_NAME
    }

    async fn sync(&self, key: &str) -> Result<Action, SyncError> {
        if self.namespaces.get(&ObjectRef::new(key)).is_none() {
            return Ok(Action::Await);
        }
        let started = std::time::Instant::now();
        let outcome = self.deleter.delete(key).await;
        tracing::debug!(namespace = key, elapsed = ?started.elapsed(), ?outcome, "namespace sync");
        match outcome? {
            Outcome::Done => Ok(Action::Await),
            Outcome::Remaining(estimate) => Ok(Action::RequeueAfter(requeue_after(estimate))),
        }
    }
}

#[cfg(test)]
mod tests;
