//! The admin kubeconfig, written like k3s's `/etc/rancher/k3s/k3s.yaml`: cluster, user and
//! context all named `default`, certificates embedded as base64 `*-data`, mode 0600, replaced
//! atomically.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use crate::pki::{Credentials, PRIVATE_MODE, Pki, write_atomic};

/// Where `skiff server` writes the admin kubeconfig unless `--write-kubeconfig` says otherwise.
pub const DEFAULT_KUBECONFIG_PATH: &str = "/etc/skiff/skiff.yaml";

/// Errors writing a kubeconfig.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    /// The file or its directory could not be written.
    #[error("writing kubeconfig {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Serialisation failed.
    #[error("serialising kubeconfig: {0}")]
    Serialize(String),
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
struct Kubeconfig<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    kind: &'a str,
    clusters: Vec<Named<'a, Cluster>>,
    contexts: Vec<Named<'a, Context<'a>>>,
    current_context: &'a str,
    preferences: Preferences,
    users: Vec<NamedUser<'a>>,
}

#[derive(Debug, Serialize)]
struct Named<'a, T> {
    name: &'a str,
    #[serde(flatten)]
    item: T,
}

#[derive(Debug, Serialize)]
struct Cluster {
    cluster: ClusterEntry,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
struct ClusterEntry {
    certificate_authority_data: String,
    server: String,
}

#[derive(Debug, Serialize)]
struct Context<'a> {
    context: ContextEntry<'a>,
}

#[derive(Debug, Serialize)]
struct ContextEntry<'a> {
    cluster: &'a str,
    user: &'a str,
}

#[derive(Debug, Serialize)]
struct Preferences {}

#[derive(Debug, Serialize)]
struct NamedUser<'a> {
    name: &'a str,
    user: UserEntry,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
struct UserEntry {
    client_certificate_data: String,
    client_key_data: String,
}

/// The URL clients on this machine use for a server bound to `bind:port`: loopback when bound
/// to all addresses (as k3s), else the bound address.
pub fn server_url(bind: IpAddr, port: u16) -> String {
    match bind {
        ip if ip.is_unspecified() => format!("https://{}:{port}", Ipv4Addr::LOCALHOST),
        IpAddr::V4(ip) => format!("https://{ip}:{port}"),
        IpAddr::V6(ip) => format!("https://[{ip}]:{port}"),
    }
}

/// A kubeconfig (YAML) for `server` trusting `ca_pem`, authenticating with `client`.
pub fn render(server: &str, ca_pem: &str, client: &Credentials) -> Result<String, KubeconfigError> {
    let name = "default";
    let config = Kubeconfig {
        api_version: "v1",
        kind: "Config",
        clusters: vec![Named {
            name,
            item: Cluster {
                cluster: ClusterEntry {
                    certificate_authority_data: STANDARD.encode(ca_pem),
                    server: server.to_string(),
                },
            },
        }],
        contexts: vec![Named {
            name,
            item: Context {
                context: ContextEntry {
                    cluster: name,
                    user: name,
                },
            },
        }],
        current_context: name,
        preferences: Preferences {},
        users: vec![NamedUser {
            name,
            user: UserEntry {
                client_certificate_data: STANDARD.encode(client.cert_pem()),
                client_key_data: STANDARD.encode(client.key_pem()),
            },
        }],
    };
    // Plain one-line scalars for the base64 data, as kubectl and k3s write them.
    let mut options = serde_saphyr::SerializerOptions::default();
    options.prefer_block_scalars = false;
    serde_saphyr::to_string_with_options(&config, options)
        .map_err(|e| KubeconfigError::Serialize(e.to_string()))
}

/// Writes `contents` to `path` with mode 0600, atomically, creating parent directories.
pub fn write(path: &Path, contents: &str) -> Result<(), KubeconfigError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| KubeconfigError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    write_atomic(path, contents.as_bytes(), PRIVATE_MODE).map_err(|source| KubeconfigError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes the admin kubeconfig for `server` (see [`server_url`]) to `path`.
pub fn write_admin(path: &Path, server: &str, pki: &Pki) -> Result<(), KubeconfigError> {
    write(path, &render(server, pki.server_ca_pem(), pki.admin())?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::net::Ipv6Addr;

    #[test]
    fn server_url_uses_loopback_for_unspecified() {
        assert_eq!(
            server_url(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 6443),
            "https://127.0.0.1:6443"
        );
        assert_eq!(
            server_url(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 6443),
            "https://127.0.0.1:6443"
        );
        assert_eq!(
            server_url("10.0.0.5".parse().unwrap(), 1),
            "https://10.0.0.5:1"
        );
        assert_eq!(server_url("::1".parse().unwrap(), 2), "https://[::1]:2");
    }
}
