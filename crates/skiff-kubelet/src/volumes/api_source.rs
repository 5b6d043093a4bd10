//! [`ObjectSource`] backed by the API server.

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccount};
use kube::api::{Api, PostParams};

use super::ObjectSource;

/// Reads ConfigMaps and Secrets with GET and mints service account tokens with
/// `POST /api/v1/namespaces/{ns}/serviceaccounts/{sa}/token`, bound to the pod.
#[derive(Clone)]
pub struct ApiObjectSource {
    client: kube::Client,
}

impl std::fmt::Debug for ApiObjectSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiObjectSource").finish_non_exhaustive()
    }
}

impl ApiObjectSource {
    /// A source using `client`.
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }
}

/// The message of an API error: the Status message, as upstream's events show it.
fn message(e: kube::Error) -> String {
    match e {
        kube::Error::Api(status) => status.message,
        other => other.to_string(),
    }
}

impl ObjectSource for ApiObjectSource {
    fn get_configmap<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConfigMap>, String>> {
        async move {
            Api::<ConfigMap>::namespaced(self.client.clone(), namespace)
                .get_opt(name)
                .await
                .map_err(message)
        }
        .boxed()
    }

    fn get_secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Secret>, String>> {
        async move {
            Api::<Secret>::namespaced(self.client.clone(), namespace)
                .get_opt(name)
                .await
                .map_err(message)
        }
        .boxed()
    }

    fn service_account_token<'a>(
        &'a self,
        namespace: &'a str,
        service_account: &'a str,
        audience: Option<&'a str>,
        expiration_seconds: i64,
        pod: &'a Pod,
    ) -> BoxFuture<'a, Result<String, String>> {
        async move {
            let request = TokenRequest {
                spec: TokenRequestSpec {
                    audiences: audience.map(|a| vec![a.to_string()]).unwrap_or_default(),
                    expiration_seconds: Some(expiration_seconds),
                    bound_object_ref: Some(BoundObjectReference {
                        api_version: Some("v1".to_string()),
                        kind: Some("Pod".to_string()),
                        name: pod.metadata.name.clone(),
                        uid: pod.metadata.uid.clone(),
                    }),
                },
                ..TokenRequest::default()
            };
            let response: TokenRequest =
                Api::<ServiceAccount>::namespaced(self.client.clone(), namespace)
                    .create_subresource("token", service_account, &PostParams::default(), &request)
                    .await
                    .map_err(message)?;
            response
                .status
                .map(|s| s.token)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| "token request returned no token".to_string())
        }
        .boxed()
    }
}
