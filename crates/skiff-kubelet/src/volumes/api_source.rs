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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use http::{Request, Response, StatusCode};
    use http_body_util::{BodyExt, Full};
    use serde_json::{Value, json};

    use super::*;

    type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;

    /// A kube client whose transport is an in-process fake API server.
    fn client(seen: Seen) -> kube::Client {
        let service = tower::service_fn(move |req: Request<kube::client::Body>| {
            let seen = seen.clone();
            async move {
                let method = req.method().to_string();
                let path = req.uri().path().to_string();
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                seen.lock()
                    .unwrap()
                    .push((method.clone(), path.clone(), body));
                let not_found = |what: &str| {
                    (
                        StatusCode::NOT_FOUND,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "message": format!("{what} not found"), "reason": "NotFound", "code": 404}),
                    )
                };
                let (status, reply) = match (method.as_str(), path.as_str()) {
                    ("GET", "/api/v1/namespaces/ns/configmaps/cfg") => (
                        StatusCode::OK,
                        json!({"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": "cfg", "namespace": "ns"}, "data": {"k": "v"}}),
                    ),
                    ("GET", "/api/v1/namespaces/ns/secrets/s") => (
                        StatusCode::OK,
                        json!({"apiVersion": "v1", "kind": "Secret",
                               "metadata": {"name": "s", "namespace": "ns"}, "data": {"k": "dg=="}}),
                    ),
                    ("POST", "/api/v1/namespaces/ns/serviceaccounts/default/token") => (
                        StatusCode::CREATED,
                        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                               "spec": {"audiences": []},
                               "status": {"token": "jwt", "expirationTimestamp": "2026-11-30T00:00:00Z"}}),
                    ),
                    ("POST", "/api/v1/namespaces/ns/serviceaccounts/missing/token") => {
                        not_found("serviceaccounts \"missing\"")
                    }
                    (_, p) if p.contains("/configmaps/") => not_found("configmaps \"nope\""),
                    _ => not_found("secrets \"nope\""),
                };
                Ok::<_, std::convert::Infallible>(
                    Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(reply.to_string())))
                        .unwrap(),
                )
            }
        });
        kube::Client::new(service, "default")
    }

    #[tokio::test]
    async fn reads_objects_and_requests_bound_tokens() {
        let seen = Seen::default();
        let source = ApiObjectSource::new(client(seen.clone()));

        let cm = source.get_configmap("ns", "cfg").await.unwrap().unwrap();
        assert_eq!(cm.data.unwrap()["k"], "v");
        assert_eq!(source.get_configmap("ns", "nope").await.unwrap(), None);
        let secret = source.get_secret("ns", "s").await.unwrap().unwrap();
        assert_eq!(secret.data.unwrap()["k"].0, b"v");
        assert_eq!(source.get_secret("ns", "nope").await.unwrap(), None);

        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "uid-1"}
        }))
        .unwrap();
        let token = source
            .service_account_token("ns", "default", Some("vault"), 600, &pod)
            .await
            .unwrap();
        assert_eq!(token, "jwt");
        let (_, _, body) = seen.lock().unwrap().last().cloned().unwrap();
        assert_eq!(
            body["spec"],
            json!({
                "audiences": ["vault"],
                "expirationSeconds": 600,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": "uid-1"}
            })
        );
        let err = source
            .service_account_token("ns", "missing", None, 3600, &pod)
            .await
            .unwrap_err();
        assert_eq!(err, r#"serviceaccounts "missing" not found"#);
    }
}
