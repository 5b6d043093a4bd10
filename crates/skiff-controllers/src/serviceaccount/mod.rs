//! The ServiceAccount controller (upstream's `serviceaccounts` controller):
//! every active namespace has the `default` ServiceAccount, recreated when
//! deleted.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::controller::{Action, Reconciler, SyncError};
use crate::informer::{InformerFactory, ResourceEventHandler};
use crate::workqueue::WorkQueue;

/// The controller's name in `--controllers`.
pub const CONTROLLER_NAME: &str = "serviceaccount";

/// Workers, as upstream runs it.
pub const DEFAULT_WORKERS: usize = 1;

/// The ServiceAccounts every namespace gets.
pub const SERVICE_ACCOUNTS: &[&str] = &["default"];

/// True for a namespace content may be created in (phase Active; a
/// namespace without a phase yet counts as active).
pub fn is_active(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_none_or(|p| p == "Active")
}

/// True for a create refused because the namespace is terminating or gone:
/// nothing to retry.
pub fn namespace_closed(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(s) => {
            s.code == 404 || (s.code == 403 && s.message.contains("because it is being terminated"))
        }
        _ => false,
    }
}

/// The ServiceAccount controller.
pub struct ServiceAccountsController {
    client: kube::Client,
    namespaces: Store<Namespace>,
    accounts: Store<ServiceAccount>,
    queue: Arc<WorkQueue<String>>,
}

impl std::fmt::Debug for ServiceAccountsController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountsController")
            .finish_non_exhaustive()
    }
}

impl ServiceAccountsController {
    /// A controller on `factory`'s Namespace and ServiceAccount informers.
    pub fn new(client: kube::Client, factory: &InformerFactory) -> Arc<Self> {
        let ns_informer = factory.informer::<Namespace>();
        let sa_informer = factory.informer::<ServiceAccount>();
        let c = Arc::new(ServiceAccountsController {
            client,
            namespaces: ns_informer.store(),
            accounts: sa_informer.store(),
            queue: Arc::new(factory.metrics().queue("serviceaccount")),
        });
        ns_informer.add_event_handler(Arc::new(NamespaceHandler(c.queue.clone())));
        sa_informer.add_event_handler(Arc::new(AccountHandler(c.queue.clone())));
        c
    }

    /// The controller's work queue (namespace names).
    pub fn queue(&self) -> Arc<WorkQueue<String>> {
        self.queue.clone()
    }
}

struct NamespaceHandler(Arc<WorkQueue<String>>);

impl ResourceEventHandler<Namespace> for NamespaceHandler {
    fn on_add(&self, obj: &Arc<Namespace>) {
        if let Some(n) = &obj.metadata.name {
            self.0.add(n.clone());
        }
    }
    fn on_update(&self, _old: &Arc<Namespace>, new: &Arc<Namespace>) {
        self.on_add(new);
    }
    fn on_delete(&self, _obj: &Arc<Namespace>) {}
}

struct AccountHandler(Arc<WorkQueue<String>>);

impl ResourceEventHandler<ServiceAccount> for AccountHandler {
    fn on_add(&self, _obj: &Arc<ServiceAccount>) {}
    fn on_update(&self, _old: &Arc<ServiceAccount>, _new: &Arc<ServiceAccount>) {}
    fn on_delete(&self, obj: &Arc<ServiceAccount>) {
        let name = obj.metadata.name.as_deref().unwrap_or("");
        if SERVICE_ACCOUNTS.contains(&name)
            && let Some(ns) = &obj.metadata.namespace
        {
            self.0.add(ns.clone());
        }
    }
}

impl Reconciler for ServiceAccountsController {
    fn name(&self) -> &str {
        CONTROLLER_NAME
    }

    async fn sync(&self, key: &str) -> Result<Action, SyncError> {
        let Some(ns) = self.namespaces.get(&ObjectRef::new(key)) else {
            return Ok(Action::Await);
        };
        if !is_active(&ns) {
            return Ok(Action::Await);
        }
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), key);
        let mut failures = Vec::new();
        for name in SERVICE_ACCOUNTS {
            if self
                .accounts
                .get(&ObjectRef::new(name).within(key))
                .is_some()
            {
                continue;
            }
            let sa = ServiceAccount {
                metadata: ObjectMeta {
                    name: Some((*name).to_owned()),
                    namespace: Some(key.to_owned()),
                    ..ObjectMeta::default()
                },
                ..ServiceAccount::default()
            };
            match api.create(&PostParams::default(), &sa).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) if namespace_closed(&e) => {}
                Err(e) => failures.push(e.to_string()),
            }
        }
        if failures.is_empty() {
            Ok(Action::Await)
        } else {
            Err(failures.join(", ").into())
        }
    }
}
