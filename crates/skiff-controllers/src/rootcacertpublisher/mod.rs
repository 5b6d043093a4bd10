//! The root CA publisher (upstream's `root-ca-certificate-publisher`):
//! every active namespace has the ConfigMap `kube-root-ca.crt` holding the
//! cluster's CA bundle, so pods can verify the API server; it is restored
//! when deleted or edited.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::controller::{Action, Reconciler, SyncError};
use crate::informer::{InformerFactory, ResourceEventHandler};
use crate::serviceaccount::{is_active, namespace_closed};
use crate::workqueue::WorkQueue;

/// The controller's name in `--controllers`.
pub const CONTROLLER_NAME: &str = "root-ca-cert-publisher";

/// Workers, as upstream runs it.
pub const DEFAULT_WORKERS: usize = 1;

/// The published ConfigMap's name.
pub const ROOT_CA_CONFIG_MAP_NAME: &str = "kube-root-ca.crt";

/// The annotation describing the ConfigMap's use.
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";

/// Upstream's description of the ConfigMap.
pub const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// The ConfigMap's data for `root_ca`.
fn wanted_data(root_ca: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("ca.crt".to_owned(), root_ca.to_owned())])
}

/// What to do with a namespace's current `kube-root-ca.crt`: `None` when
/// it is right, else the object to write (the existing one corrected, or
/// a new one when there is none).
pub fn desired(existing: Option<&ConfigMap>, root_ca: &str) -> Option<ConfigMap> {
    let data = wanted_data(root_ca);
    match existing {
        Some(cm) => {
            let described = cm
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DESCRIPTION_ANNOTATION))
                .is_some_and(|d| !d.is_empty());
            if cm.data.as_ref() == Some(&data) && described {
                return None;
            }
            let mut cm = cm.clone();
            cm.data = Some(data);
            cm.metadata
                .annotations
                .get_or_insert_default()
                .insert(DESCRIPTION_ANNOTATION.to_owned(), DESCRIPTION.to_owned());
            Some(cm)
        }
        None => Some(ConfigMap {
            metadata: ObjectMeta {
                name: Some(ROOT_CA_CONFIG_MAP_NAME.to_owned()),
                annotations: Some(BTreeMap::from([(
                    DESCRIPTION_ANNOTATION.to_owned(),
                    DESCRIPTION.to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            data: Some(data),
            ..ConfigMap::default()
        }),
    }
}

/// The CA bundle (PEM) a client config trusts: its certificate-authority
/// data or file, as kube-controller-manager falls back to its kubeconfig's
/// CA when `--root-ca-file` is not given.
pub fn root_ca_from_config(config: &kube::Config) -> Option<String> {
    use base64::Engine;
    if let Some(certs) = config.root_cert.as_ref().filter(|c| !c.is_empty()) {
        let mut pem = String::new();
        for der in certs {
            let b64 = base64::engine::general_purpose::STANDARD.encode(der);
            pem.push_str("-----BEGIN CERTIFICATE-----\n");
            for line in b64.as_bytes().chunks(64) {
                pem.push_str(&String::from_utf8_lossy(line));
                pem.push('\n');
            }
            pem.push_str("-----END CERTIFICATE-----\n");
        }
        return Some(pem);
    }
    let file = config.root_cert_file.as_ref()?;
    std::fs::read_to_string(file).ok()
}

/// The root CA publisher.
pub struct Publisher {
    client: kube::Client,
    root_ca: String,
    namespaces: Store<Namespace>,
    config_maps: Store<ConfigMap>,
    queue: Arc<WorkQueue<String>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher of `root_ca` (PEM) on `factory`'s Namespace and
    /// ConfigMap informers.
    pub fn new(client: kube::Client, factory: &InformerFactory, root_ca: String) -> Arc<Self> {
        let ns_informer = factory.informer::<Namespace>();
        let cm_informer = factory.informer::<ConfigMap>();
        let c = Arc::new(Publisher {
            client,
            root_ca,
            namespaces: ns_informer.store(),
            config_maps: cm_informer.store(),
            queue: Arc::new(factory.metrics().queue("root_ca_cert_publisher")),
        });
        ns_informer.add_event_handler(Arc::new(NamespaceHandler(c.queue.clone())));
        cm_informer.add_event_handler(Arc::new(ConfigMapHandler(c.queue.clone())));
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
        if is_active(new) {
            self.on_add(new);
        }
    }
    fn on_delete(&self, _obj: &Arc<Namespace>) {}
}

struct ConfigMapHandler(Arc<WorkQueue<String>>);

impl ConfigMapHandler {
    fn enqueue(&self, cm: &ConfigMap) {
        if cm.metadata.name.as_deref() == Some(ROOT_CA_CONFIG_MAP_NAME)
            && let Some(ns) = &cm.metadata.namespace
        {
            self.0.add(ns.clone());
        }
    }
}

impl ResourceEventHandler<ConfigMap> for ConfigMapHandler {
    fn on_add(&self, _obj: &Arc<ConfigMap>) {}
    fn on_update(&self, _old: &Arc<ConfigMap>, new: &Arc<ConfigMap>) {
        self.enqueue(new);
    }
    fn on_delete(&self, obj: &Arc<ConfigMap>) {
        self.enqueue(obj);
    }
}

impl Reconciler for Publisher {
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
        let existing = self
            .config_maps
            .get(&ObjectRef::new(ROOT_CA_CONFIG_MAP_NAME).within(key));
        let Some(cm) = desired(existing.as_deref(), &self.root_ca) else {
            return Ok(Action::Await);
        };
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), key);
        let result = if existing.is_some() {
            api.replace(ROOT_CA_CONFIG_MAP_NAME, &PostParams::default(), &cm)
                .await
        } else {
            api.create(&PostParams::default(), &cm).await
        };
        match result {
            Ok(_) => Ok(Action::Await),
            Err(e) if namespace_closed(&e) => Ok(Action::Await),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_config_map_is_created_restored_or_left_alone() {
        let ca = "-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n";
        let created = desired(None, ca).unwrap();
        assert_eq!(
            created.metadata.name.as_deref(),
            Some(ROOT_CA_CONFIG_MAP_NAME)
        );
        assert_eq!(created.data.as_ref().unwrap()["ca.crt"], ca);
        assert_eq!(
            created.metadata.annotations.as_ref().unwrap()[DESCRIPTION_ANNOTATION],
            DESCRIPTION
        );
        assert!(desired(Some(&created), ca).is_none(), "already right");

        let mut edited = created.clone();
        edited.metadata.resource_version = Some("7".into());
        edited
            .data
            .as_mut()
            .unwrap()
            .insert("extra".into(), "x".into());
        let fixed = desired(Some(&edited), ca).unwrap();
        assert_eq!(fixed.data, created.data, "extra keys dropped");
        assert_eq!(fixed.metadata.resource_version.as_deref(), Some("7"));

        let mut undescribed = created.clone();
        undescribed.metadata.annotations = Some(BTreeMap::from([("other".into(), "y".into())]));
        let fixed = desired(Some(&undescribed), ca).unwrap();
        let annotations = fixed.metadata.annotations.unwrap();
        assert_eq!(annotations[DESCRIPTION_ANNOTATION], DESCRIPTION);
        assert_eq!(annotations["other"], "y", "other annotations kept");

        let rotated = desired(Some(&created), "other-ca").unwrap();
        assert_eq!(rotated.data.unwrap()["ca.crt"], "other-ca");
    }
}
