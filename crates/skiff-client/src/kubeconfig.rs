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

/// A client for `path`'s current context (see [`client`]).
pub async fn client_from(path: &Path) -> Result<kube::Client, KubeconfigError> {
    Ok(client(config_from(path).await?)?)
}

/// A client for `config` that speaks HTTP/2 where the server offers it
/// (ALPN), as client-go does: all of a component's requests and watches
/// share one connection, where kube-rs's own client (HTTP/1.1) opens one
/// per watch and one per request in flight, each with a TLS handshake on
/// both ends. Keep-alive pings find a dead connection (HTTP/1.1 clients
/// rely on a read timeout instead). A configuration this does not cover (a
/// proxy, an overridden TLS server name) gets kube-rs's client.
///
/// Not for `exec`/`attach`/`portforward` through kube-rs: those need an
/// HTTP/1.1 upgrade.
pub fn client(config: kube::Config) -> Result<kube::Client, kube::Error> {
    use kube::client::ConfigExt;
    use std::time::Duration;
    if config.proxy_url.is_some() || config.tls_server_name.is_some() {
        return kube::Client::try_from(config);
    }
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(config.connect_timeout);
    // The builder offers h2 and http/1.1 over ALPN.
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config.rustls_client_config()?)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    let timer = hyper_util::rt::TokioTimer::new();
    let http_client: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .timer(timer.clone())
            .pool_timer(timer)
            // client-go's windows: 4 MiB per stream and 1 GiB for the
            // connection, so that a watch nobody reads for a while holds
            // up only itself, not every stream on the connection.
            .http2_initial_stream_window_size(4 << 20)
            .http2_initial_connection_window_size(1 << 30)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_timeout(Duration::from_secs(15))
            .http2_keep_alive_while_idle(true)
            .build(https);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(http_client);
    Ok(kube::Client::new(service, config.default_namespace))
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
