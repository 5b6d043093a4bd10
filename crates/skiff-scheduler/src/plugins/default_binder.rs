//! DefaultBinder: binds the pod through `POST pods/{name}/binding`.

use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;

use crate::framework::{BindPlugin, CycleState, Handle, Plugin, PodInfo, Status};

/// The plugin's configuration name.
pub const NAME: &str = "DefaultBinder";

/// Writes the binding with the scheduler's client.
#[derive(Clone)]
pub struct DefaultBinder {
    client: Option<kube::Client>,
}

impl std::fmt::Debug for DefaultBinder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DefaultBinder").finish_non_exhaustive()
    }
}

/// The registry factory (DefaultBinder takes no args).
pub fn factory(
    _args: Option<&serde_json::Value>,
    handle: &Handle,
) -> Result<Arc<dyn Plugin>, String> {
    Ok(Arc::new(DefaultBinder {
        client: handle.lister.api_client(),
    }))
}

impl Plugin for DefaultBinder {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_bind(&self) -> Option<&dyn BindPlugin> {
        Some(self)
    }
}

impl BindPlugin for DefaultBinder {
    fn bind<'a>(
        &'a self,
        _state: &'a CycleState,
        pod: &'a PodInfo,
        node_name: &'a str,
    ) -> BoxFuture<'a, Status> {
        Box::pin(async move {
            let Some(client) = self.client.clone() else {
                return Status::error("DefaultBinder has no API client");
            };
            let meta = &pod.pod.metadata;
            let name = meta.name.clone().unwrap_or_default();
            let binding = Binding {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: meta.namespace.clone(),
                    uid: meta.uid.clone(),
                    ..ObjectMeta::default()
                },
                target: ObjectReference {
                    kind: Some("Node".into()),
                    name: Some(node_name.to_owned()),
                    ..ObjectReference::default()
                },
            };
            let api: Api<Pod> = Api::namespaced(client, pod.namespace());
            match api
                .create_subresource::<Binding, serde_json::Value>(
                    "binding",
                    &name,
                    &PostParams::default(),
                    &binding,
                )
                .await
            {
                Ok(_) => Status::success(),
                Err(e) => Status::error(e.to_string()),
            }
        })
    }
}
