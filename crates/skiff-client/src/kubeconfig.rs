//! A kube-rs client from a kubeconfig file, as every component and tool
//! started with `--kubeconfig` builds one.

use std::path::{Path, PathBuf};

/// Why no client could be built from a kubeconfig file.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    /// The file could not be read or parsed.
    #[error("reading kubeconfig {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: kube::config::KubeconfigError,
    },
    /// Its current context does not make a usable configuration.
    #[error("loading kubeconfig {}: {source}", path.display())]
    Load {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: kube::config::KubeconfigError,
    },
    /// The configuration does not make a client (e.g. bad TLS material).
    #[error("building the API client: {0}")]
    Client(#[from] kube::Error),
}

/// The client configuration of `path`'s current context.
pub async fn config_from(path: &Path) -> Result<kube::Config, KubeconfigError> {
    let kc = kube::config::Kubeconfig::read_from(path).map_err(|source| KubeconfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|source| KubeconfigError::Load {
            path: path.to_owned(),
            source,
        })
}

/// A client for `path`'s current context.
pub async fn client_from(path: &Path) -> Result<kube::Client, KubeconfigError> {
    Ok(kube::Client::try_from(config_from(path).await?)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_or_broken_file_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.yaml");
        let Err(err) = client_from(&missing).await else {
            panic!("a missing kubeconfig made a client")
        };
        assert!(matches!(err, KubeconfigError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("nope.yaml"), "{err}");
        let empty = dir.path().join("empty.yaml");
        std::fs::write(&empty, "apiVersion: v1\nkind: Config\n").unwrap();
        let Err(err) = client_from(&empty).await else {
            panic!("a kubeconfig without a context made a client")
        };
        assert!(err.to_string().contains("empty.yaml"), "{err}");
    }
}
