//! The CRI `ImageService` over the image store, with containerd's semantics:
//! image IDs are config digests, `ImageStatus` of an unknown image answers with
//! no image, and `RemoveImage` is idempotent.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use tonic::{Request, Response, Status};

use super::api::{
    FilesystemIdentifier, FilesystemUsage, Image, ImageFsInfoRequest, ImageFsInfoResponse,
    ImageSpec, ImageStatusRequest, ImageStatusResponse, Int64Value, ListImagesRequest,
    ListImagesResponse, PullImageRequest, PullImageResponse, RemoveImageRequest,
    RemoveImageResponse, UInt64Value, image_service_server::ImageService,
};
use crate::images::{ImageError, ImageRecord, ImageStore, PullAuth, RegistryConfig};

/// The CRI `ImageService` of the built-in runtime.
#[derive(Debug, Clone)]
pub struct CriImageService {
    store: Arc<ImageStore>,
    registries: RegistryConfig,
}

impl CriImageService {
    /// A service over `store`, pulling with `registries`' settings.
    pub fn new(store: Arc<ImageStore>, registries: RegistryConfig) -> Self {
        Self { store, registries }
    }

    /// The CRI view of a stored image.
    fn to_cri(&self, record: &ImageRecord) -> Image {
        let user = self
            .store
            .config(record)
            .ok()
            .and_then(|c| c.config)
            .and_then(|c| c.user)
            .unwrap_or_default();
        // Only the user part of `user:group` matters; numeric means a UID.
        let user = user.split(':').next().unwrap_or_default();
        let (uid, username) = match user.parse::<i64>() {
            Ok(value) => (Some(Int64Value { value }), String::new()),
            Err(_) => (None, user.to_owned()),
        };
        Image {
            id: record.id.to_string(),
            repo_tags: record.repo_tags.clone(),
            repo_digests: record.repo_digests.clone(),
            size: record.size,
            uid,
            username,
            spec: Some(ImageSpec {
                image: record.id.to_string(),
                ..Default::default()
            }),
            pinned: record.pinned,
        }
    }
}

fn image_name(spec: Option<&ImageSpec>) -> Result<&str, Status> {
    match spec.map(|s| s.image.as_str()) {
        Some(name) if !name.is_empty() => Ok(name),
        _ => Err(Status::invalid_argument("image spec is required")),
    }
}

/// Maps store errors to gRPC codes.
pub(crate) fn status(e: ImageError) -> Status {
    let message = e.to_string();
    match e {
        ImageError::Reference { .. }
        | ImageError::InvalidDigest(_)
        | ImageError::UnsupportedDigest(_) => Status::invalid_argument(message),
        ImageError::NotFound(_) => Status::not_found(message),
        ImageError::Pull {
            not_found: true, ..
        } => Status::not_found(message),
        ImageError::Pull {
            unauthorized: true, ..
        } => Status::unauthenticated(message),
        ImageError::Pull { .. } => Status::unavailable(message),
        ImageError::DigestMismatch { .. } => Status::data_loss(message),
        ImageError::PathTraversal(_)
        | ImageError::Invalid(_)
        | ImageError::Json { .. }
        | ImageError::UnknownArchive { .. } => Status::failed_precondition(message),
        ImageError::Io { .. } | ImageError::Task(_) => Status::internal(message),
    }
}

/// Credentials of a CRI `AuthConfig` (what the kubelet takes from
/// imagePullSecrets), in the order containerd honours them.
fn pull_auth(auth: Option<&super::api::AuthConfig>) -> Result<PullAuth, Status> {
    let Some(auth) = auth else {
        return Ok(PullAuth::Anonymous);
    };
    if !auth.registry_token.is_empty() {
        return Ok(PullAuth::Bearer(auth.registry_token.clone()));
    }
    if !auth.auth.is_empty() {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.auth.trim())
            .map_err(|e| Status::invalid_argument(format!("invalid auth: {e}")))?;
        let text = String::from_utf8_lossy(&decoded);
        let (username, password) = text
            .split_once(':')
            .ok_or_else(|| Status::invalid_argument("invalid auth: not user:password"))?;
        return Ok(PullAuth::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        });
    }
    if !auth.username.is_empty() {
        return Ok(PullAuth::Basic {
            username: auth.username.clone(),
            password: auth.password.clone(),
        });
    }
    if !auth.identity_token.is_empty() {
        // An identity token is a refresh token exchanged with an empty user name.
        return Ok(PullAuth::Basic {
            username: String::new(),
            password: auth.identity_token.clone(),
        });
    }
    Ok(PullAuth::Anonymous)
}

#[tonic::async_trait]
impl ImageService for CriImageService {
    #[tracing::instrument(skip_all)]
    async fn list_images(
        &self,
        request: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        let filter = request
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|s| s.image)
            .filter(|s| !s.is_empty());
        let records = match filter {
            Some(spec) => self
                .store
                .resolve(&spec)
                .map_err(status)?
                .into_iter()
                .collect(),
            None => self.store.list().map_err(status)?,
        };
        Ok(Response::new(ListImagesResponse {
            images: records.iter().map(|r| self.to_cri(r)).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn image_status(
        &self,
        request: Request<ImageStatusRequest>,
    ) -> Result<Response<ImageStatusResponse>, Status> {
        let request = request.into_inner();
        let name = image_name(request.image.as_ref())?;
        let image = self
            .store
            .resolve(name)
            .map_err(status)?
            .map(|r| self.to_cri(&r));
        Ok(Response::new(ImageStatusResponse {
            image,
            info: Default::default(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn pull_image(
        &self,
        request: Request<PullImageRequest>,
    ) -> Result<Response<PullImageResponse>, Status> {
        let request = request.into_inner();
        let name = image_name(request.image.as_ref())?;
        let auth = pull_auth(request.auth.as_ref())?;
        let record = self
            .store
            .pull(name, &auth, &self.registries)
            .await
            .map_err(status)?;
        Ok(Response::new(PullImageResponse {
            image_ref: record.id.to_string(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn remove_image(
        &self,
        request: Request<RemoveImageRequest>,
    ) -> Result<Response<RemoveImageResponse>, Status> {
        let request = request.into_inner();
        let name = image_name(request.image.as_ref())?.to_owned();
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || store.remove(&name))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(status)?;
        Ok(Response::new(RemoveImageResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn image_fs_info(
        &self,
        _request: Request<ImageFsInfoRequest>,
    ) -> Result<Response<ImageFsInfoResponse>, Status> {
        let store = Arc::clone(&self.store);
        let (bytes, inodes) = tokio::task::spawn_blocking(move || store.usage())
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Ok(Response::new(ImageFsInfoResponse {
            image_filesystems: vec![FilesystemUsage {
                timestamp,
                fs_id: Some(FilesystemIdentifier {
                    mountpoint: self.store.root().display().to_string(),
                }),
                used_bytes: Some(UInt64Value { value: bytes }),
                inodes_used: Some(UInt64Value { value: inodes }),
            }],
            container_filesystems: Vec::new(),
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::api::AuthConfig;
    use super::*;

    #[test]
    fn auth_config_precedence() {
        let b64 = base64::engine::general_purpose::STANDARD.encode("u:p");
        let cases = [
            (None, Ok(PullAuth::Anonymous)),
            (
                Some(AuthConfig {
                    auth: b64.clone(),
                    username: "other".into(),
                    ..Default::default()
                }),
                Ok(PullAuth::Basic {
                    username: "u".into(),
                    password: "p".into(),
                }),
            ),
            (
                Some(AuthConfig {
                    username: "a".into(),
                    password: "b".into(),
                    ..Default::default()
                }),
                Ok(PullAuth::Basic {
                    username: "a".into(),
                    password: "b".into(),
                }),
            ),
            (
                Some(AuthConfig {
                    registry_token: "t".into(),
                    auth: b64,
                    ..Default::default()
                }),
                Ok(PullAuth::Bearer("t".into())),
            ),
            (
                Some(AuthConfig {
                    auth: "bm9jb2xvbg==".into(), // "nocolon"
                    ..Default::default()
                }),
                Err(tonic::Code::InvalidArgument),
            ),
        ];
        for (input, want) in cases {
            let got = pull_auth(input.as_ref()).map_err(|s| s.code());
            assert_eq!(got, want, "{input:?}");
        }
    }

    #[test]
    fn error_codes() {
        let cases = [
            (ImageError::NotFound("x".into()), tonic::Code::NotFound),
            (
                ImageError::Pull {
                    reference: "r".into(),
                    message: "m".into(),
                    not_found: true,
                    unauthorized: false,
                },
                tonic::Code::NotFound,
            ),
            (
                ImageError::Pull {
                    reference: "r".into(),
                    message: "m".into(),
                    not_found: false,
                    unauthorized: true,
                },
                tonic::Code::Unauthenticated,
            ),
            (
                ImageError::DigestMismatch {
                    expected: "a".into(),
                    actual: "b".into(),
                },
                tonic::Code::DataLoss,
            ),
            (
                ImageError::PathTraversal("../x".into()),
                tonic::Code::FailedPrecondition,
            ),
        ];
        for (err, code) in cases {
            assert_eq!(status(err).code(), code);
        }
    }
}
