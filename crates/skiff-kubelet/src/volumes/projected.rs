//! projected volumes: configMap, secret, downwardAPI and serviceAccountToken
//! sources merged into one directory (upstream's `pkg/volume/projected`).

use k8s_openapi::api::core::v1::{ConfigMap, Pod, ProjectedVolumeSource, Secret};
use skiff_api::go_quote;

use super::atomic_writer::Payload;
use super::payload::{
    DEFAULT_MODE, aggregate, configmap_payload, downward_api_payload, mode_bits, secret_payload,
};
use super::{ObjectSource, VolumeManager};
use crate::volumes::atomic_writer::FileProjection;

/// The API default of `serviceAccountToken.expirationSeconds`.
const DEFAULT_TOKEN_EXPIRATION_SECONDS: i64 = 3600;

impl VolumeManager {
    /// Every source's files in one payload. As upstream, a failing source does
    /// not stop the others; all failures come back together.
    pub(super) async fn projected_payload(
        &self,
        pod: &Pod,
        uid: &str,
        projected: &ProjectedVolumeSource,
        source: &dyn ObjectSource,
    ) -> Result<Payload, String> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let default_mode = projected.default_mode.unwrap_or(DEFAULT_MODE);
        let mut payload = Payload::new();
        let mut errors = Vec::new();
        let mut merge = |result: Result<Payload, String>, errors: &mut Vec<String>| match result {
            Ok(files) => payload.extend(files),
            Err(e) => errors.push(e),
        };
        for projection in projected.sources.iter().flatten() {
            if let Some(cm) = &projection.config_map {
                let optional = cm.optional.unwrap_or(false);
                let result = match source.get_configmap(namespace, &cm.name).await {
                    Ok(Some(object)) => {
                        configmap_payload(cm.items.as_deref(), &object, default_mode, optional)
                    }
                    Ok(None) if optional => configmap_payload(
                        cm.items.as_deref(),
                        &ConfigMap::default(),
                        default_mode,
                        optional,
                    ),
                    Ok(None) => Err(format!("configmap {} not found", go_quote(&cm.name))),
                    Err(e) => Err(e),
                };
                merge(result, &mut errors);
            } else if let Some(secret) = &projection.secret {
                let optional = secret.optional.unwrap_or(false);
                let result = match source.get_secret(namespace, &secret.name).await {
                    Ok(Some(object)) => {
                        secret_payload(secret.items.as_deref(), &object, default_mode, optional)
                    }
                    Ok(None) if optional => secret_payload(
                        secret.items.as_deref(),
                        &Secret::default(),
                        default_mode,
                        optional,
                    ),
                    Ok(None) => Err(format!("secret {} not found", go_quote(&secret.name))),
                    Err(e) => Err(e),
                };
                merge(result, &mut errors);
            } else if let Some(dapi) = &projection.downward_api {
                let items = dapi.items.as_deref().unwrap_or_default();
                merge(
                    downward_api_payload(items, pod, &self.node_allocatable, default_mode),
                    &mut errors,
                );
            } else if let Some(sat) = &projection.service_account_token {
                let service_account = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.service_account_name.as_deref())
                    .filter(|s| !s.is_empty())
                    .unwrap_or("default");
                let audience = sat.audience.as_deref().filter(|a| !a.is_empty());
                let expiration = sat
                    .expiration_seconds
                    .unwrap_or(DEFAULT_TOKEN_EXPIRATION_SECONDS);
                // As upstream: a token readable by the pod's user (or group)
                // and nobody else.
                let fs_user = super::fs_user(pod);
                let mode = if fs_user.is_some() || super::fs_group(pod).is_some() {
                    0o600
                } else {
                    mode_bits(None, default_mode)
                };
                let result = self
                    .token(pod, uid, service_account, audience, expiration, source)
                    .await
                    .map(|token| {
                        Payload::from([(
                            sat.path.clone(),
                            FileProjection {
                                data: token.into_bytes(),
                                mode,
                                fs_user,
                            },
                        )])
                    });
                merge(result, &mut errors);
            } else if projection.cluster_trust_bundle.is_some() {
                errors.push("clusterTrustBundle projections are not supported".to_string());
            }
        }
        aggregate(errors).map(|()| payload)
    }
}
