//! Pulling images over the OCI distribution protocol (oci-client).

use std::sync::Arc;

use base64::Engine as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::digest::Digest;
use super::error::ImageError;
use super::oci::{
    ACCEPTED_MANIFEST_TYPES, Descriptor, ManifestDocument, host_platform, select_platform,
};
use super::reference::Reference;
use super::store::{ImageRecord, ImageStore};

/// Registry settings of the runtime.
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    /// Registries (`host[:port]`) reached over plain http. Loopback registries
    /// always are.
    pub insecure: Vec<String>,
}

/// Credentials for one pull (what the kubelet passes from imagePullSecrets).
#[derive(Clone, Default, PartialEq, Eq)]
pub enum PullAuth {
    /// No credentials.
    #[default]
    Anonymous,
    /// HTTP basic credentials (also exchanged for a bearer token when asked).
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// A registry token used as is.
    Bearer(String),
}

impl std::fmt::Debug for PullAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Self::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, DockerAuthEntry>,
}

#[derive(Deserialize)]
struct DockerAuthEntry {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    auth: Option<String>,
    #[serde(default, rename = "registrytoken")]
    registry_token: Option<String>,
}

/// Finds credentials for `registry` (a reference's domain, e.g. `docker.io` or
/// `127.0.0.1:5000`) in a docker config JSON (`.dockerconfigjson`, or the bare
/// `auths` map of a `.dockercfg`). Keys may be URLs (`https://index.docker.io/v1/`).
pub fn credentials_from_docker_config(
    json: &[u8],
    registry: &str,
) -> Result<Option<PullAuth>, ImageError> {
    let value: serde_json::Value =
        serde_json::from_slice(json).map_err(ImageError::json("docker config"))?;
    let config: DockerConfig = if value.get("auths").is_some() {
        serde_json::from_value(value).map_err(ImageError::json("docker config"))?
    } else {
        DockerConfig {
            auths: serde_json::from_value(value).map_err(ImageError::json("docker config"))?,
        }
    };
    let wanted = canonical_registry(registry);
    let Some(entry) = config
        .auths
        .iter()
        .find(|(key, _)| canonical_registry(key) == wanted)
        .map(|(_, e)| e)
    else {
        return Ok(None);
    };
    if let Some(token) = entry.registry_token.as_ref().filter(|t| !t.is_empty()) {
        return Ok(Some(PullAuth::Bearer(token.clone())));
    }
    if let (Some(username), Some(password)) = (&entry.username, &entry.password)
        && !username.is_empty()
    {
        return Ok(Some(PullAuth::Basic {
            username: username.clone(),
            password: password.clone(),
        }));
    }
    if let Some(auth) = entry.auth.as_ref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|e| ImageError::Invalid(format!("docker config auth for {registry}: {e}")))?;
        let text = String::from_utf8_lossy(&decoded);
        let Some((username, password)) = text.split_once(':') else {
            return Err(ImageError::Invalid(format!(
                "docker config auth for {registry} is not user:password"
            )));
        };
        return Ok(Some(PullAuth::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        }));
    }
    Ok(None)
}

/// `https://index.docker.io/v1/` and friends → `docker.io`; other URLs → host[:port].
fn canonical_registry(key: &str) -> String {
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = without_scheme.split('/').next().unwrap_or_default();
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_owned()
        }
        other => other.to_owned(),
    }
}

/// Loopback registries are reached over plain http, as containerd does.
fn is_loopback(domain: &str) -> bool {
    let host = match domain.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => domain.rsplit_once(':').map_or(domain, |(h, _)| h),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl ImageStore {
    /// Pulls `image` (normalised first) into the store: resolves an index to the
    /// host platform's manifest, fetches config and missing layers with digest
    /// checks, unpacks, and records the image under its tag and repo digest.
    #[tracing::instrument(skip_all, fields(image = %image))]
    pub async fn pull(
        self: &Arc<Self>,
        image: &str,
        auth: &PullAuth,
        registries: &RegistryConfig,
    ) -> Result<ImageRecord, ImageError> {
        let reference =
            Reference::parse_normalized(image).map_err(|source| ImageError::Reference {
                reference: image.to_owned(),
                source,
            })?;
        let pull_err = |e: OciDistributionError| pull_error(&reference, e);
        let remote = match (reference.tag(), reference.digest()) {
            (_, Some(d)) => oci_client::Reference::with_digest(
                reference.domain().into(),
                reference.path().into(),
                d.to_string(),
            ),
            (tag, None) => oci_client::Reference::with_tag(
                reference.domain().into(),
                reference.path().into(),
                tag.unwrap_or("latest").into(),
            ),
        };
        // reqwest is built without a bundled crypto provider: ring is ours.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let plain_http = is_loopback(reference.domain())
            || registries.insecure.iter().any(|r| r == reference.domain());
        let protocol = if plain_http {
            ClientProtocol::HttpsExcept(vec![remote.resolve_registry().to_owned()])
        } else {
            ClientProtocol::Https
        };
        let client = oci_client::Client::new(ClientConfig {
            protocol,
            platform_resolver: None,
            ..Default::default()
        });
        let registry_auth = match auth {
            PullAuth::Anonymous => RegistryAuth::Anonymous,
            PullAuth::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            PullAuth::Bearer(token) => RegistryAuth::Bearer(token.clone()),
        };

        let lease = self.lease();
        let (bytes, registry_digest) = client
            .pull_manifest_raw(&remote, &registry_auth, ACCEPTED_MANIFEST_TYPES)
            .await
            .map_err(pull_err)?;
        let top_digest = match reference.digest() {
            Some(d) => d.clone(),
            None => registry_digest.parse()?,
        };
        lease.protect(&top_digest);
        self.store_blob(bytes.to_vec(), top_digest.clone()).await?;
        let (manifest_digest, manifest) =
            match ManifestDocument::parse(&bytes, &top_digest.to_string())? {
                ManifestDocument::Manifest(m) => (top_digest.clone(), m),
                ManifestDocument::Index(index) => {
                    let platform = host_platform();
                    let child =
                        select_platform(&index, &platform).ok_or_else(|| ImageError::Pull {
                            reference: reference.to_string(),
                            message: format!(
                                "no image for platform {}/{}",
                                platform.os, platform.architecture
                            ),
                            not_found: true,
                            unauthorized: false,
                        })?;
                    let child_ref = remote.clone_with_digest(child.digest.to_string());
                    let (bytes, _) = client
                        .pull_manifest_raw(&child_ref, &registry_auth, ACCEPTED_MANIFEST_TYPES)
                        .await
                        .map_err(pull_err)?;
                    lease.protect(&child.digest);
                    self.store_blob(bytes.to_vec(), child.digest.clone())
                        .await?;
                    match ManifestDocument::parse(&bytes, &child.digest.to_string())? {
                        ManifestDocument::Manifest(m) => (child.digest.clone(), m),
                        ManifestDocument::Index(_) => {
                            return Err(ImageError::Invalid(format!(
                                "nested index {}",
                                child.digest
                            )));
                        }
                    }
                }
            };
        for desc in std::iter::once(&manifest.config).chain(&manifest.layers) {
            lease.protect(&desc.digest);
            if !self.content().contains(&desc.digest) {
                self.fetch_blob(&client, &remote, desc).await?;
            }
        }
        let tags: Vec<Reference> = reference
            .tag()
            .map(|_| reference.clone())
            .into_iter()
            .collect();
        let digests = vec![reference.with_digest(top_digest)];
        let store = Arc::clone(self);
        let record = tokio::task::spawn_blocking(move || {
            let record = store.commit_image(&lease, &manifest_digest, &manifest, &tags, &digests);
            drop(lease);
            record
        })
        .await
        .map_err(|e| ImageError::Task(e.to_string()))??;
        tracing::info!(id = %record.id, size = record.size, "pulled image");
        Ok(record)
    }

    async fn store_blob(
        self: &Arc<Self>,
        bytes: Vec<u8>,
        digest: Digest,
    ) -> Result<(), ImageError> {
        let store = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            store.content().write(&bytes, Some(&digest)).map(|_| ())
        })
        .await
        .map_err(|e| ImageError::Task(e.to_string()))?
    }

    async fn fetch_blob(
        self: &Arc<Self>,
        client: &oci_client::Client,
        remote: &oci_client::Reference,
        desc: &Descriptor,
    ) -> Result<(), ImageError> {
        let temp = self.content().temp_file()?;
        let file = temp.reopen().map_err(ImageError::io("open", temp.path()))?;
        let mut out = tokio::fs::File::from_std(file);
        let oci_desc = OciDescriptor {
            media_type: desc.media_type.clone(),
            digest: desc.digest.to_string(),
            size: i64::try_from(desc.size).unwrap_or(i64::MAX),
            urls: None,
            annotations: None,
            artifact_type: None,
        };
        client
            .pull_blob(remote, &oci_desc, &mut out)
            .await
            .map_err(|e| pull_error(&remote.to_string(), e))?;
        out.flush()
            .await
            .map_err(ImageError::io("write", temp.path()))?;
        drop(out);
        let store = Arc::clone(self);
        let digest = desc.digest.clone();
        tokio::task::spawn_blocking(move || {
            store.content().commit_file(temp, Some(&digest)).map(|_| ())
        })
        .await
        .map_err(|e| ImageError::Task(e.to_string()))?
    }
}

fn pull_error(reference: &impl std::fmt::Display, e: OciDistributionError) -> ImageError {
    let (not_found, unauthorized) = match &e {
        OciDistributionError::ImageManifestNotFoundError(_) => (true, false),
        OciDistributionError::AuthenticationFailure(_)
        | OciDistributionError::UnauthorizedError { .. } => (false, true),
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            (
                codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::NotFound
                            | OciErrorCode::BlobUnknown
                    )
                }),
                codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied)),
            )
        }
        OciDistributionError::ServerError { code, .. } => {
            (*code == 404, *code == 401 || *code == 403)
        }
        _ => (false, false),
    };
    ImageError::Pull {
        reference: reference.to_string(),
        message: e.to_string(),
        not_found,
        unauthorized,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_credentials() {
        let b64 = base64::engine::general_purpose::STANDARD.encode("alice:s3cret:x");
        let json = format!(
            r#"{{"auths":{{
                "https://index.docker.io/v1/":{{"auth":"{b64}"}},
                "127.0.0.1:5000":{{"username":"bob","password":"pw"}},
                "http://reg.example.com:8443/v2/":{{"registrytoken":"tok"}},
                "empty.example.com":{{}}
            }}}}"#
        );
        let get = |r: &str| credentials_from_docker_config(json.as_bytes(), r).unwrap();
        assert_eq!(
            get("docker.io"),
            Some(PullAuth::Basic {
                username: "alice".into(),
                password: "s3cret:x".into()
            })
        );
        assert_eq!(
            get("127.0.0.1:5000"),
            Some(PullAuth::Basic {
                username: "bob".into(),
                password: "pw".into()
            })
        );
        assert_eq!(
            get("reg.example.com:8443"),
            Some(PullAuth::Bearer("tok".into()))
        );
        assert_eq!(get("empty.example.com"), None);
        assert_eq!(get("quay.io"), None);
        // The legacy .dockercfg form is the bare map.
        let legacy = format!(r#"{{"https://index.docker.io/v1/":{{"auth":"{b64}"}}}}"#);
        assert!(
            credentials_from_docker_config(legacy.as_bytes(), "docker.io")
                .unwrap()
                .is_some()
        );
        assert!(
            credentials_from_docker_config(b"{\"auths\":{\"x\":{\"auth\":\"!!\"}}}", "x").is_err()
        );
        assert_eq!(
            format!("{:?}", get("127.0.0.1:5000").unwrap()),
            "Basic(bob, <redacted>)"
        );
    }

    #[test]
    fn loopback_detection() {
        for (domain, want) in [
            ("127.0.0.1:5000", true),
            ("localhost:5000", true),
            ("localhost", true),
            ("[::1]:5000", true),
            ("127.0.0.2", true),
            ("docker.io", false),
            ("10.0.0.1:5000", false),
            ("localhost.example.com", false),
        ] {
            assert_eq!(is_loopback(domain), want, "{domain}");
        }
    }
}
