//! Serving CRI services on a unix socket, and connecting to one.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::server::Router;
use tonic::transport::{Channel, Endpoint, Uri};

use super::api::image_service_server::ImageServiceServer;
use super::image_service::CriImageService;
use crate::images::{ImageStore, RegistryConfig};

/// Why the CRI server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The socket could not be created.
    #[error("listen on {path}: {source}")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("CRI server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves `router` on the unix socket `socket` until `shutdown` completes,
/// replacing a stale socket file from an earlier run. The socket is removed on
/// the way out.
pub async fn serve_unix(
    router: Router,
    socket: &Path,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let bind_err = |source| ServeError::Bind {
        path: socket.to_path_buf(),
        source,
    };
    if let Some(parent) = socket.parent() {
        std::fs::create_dir_all(parent).map_err(bind_err)?;
    }
    match std::fs::remove_file(socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(bind_err(e)),
        _ => {}
    }
    let listener = UnixListener::bind(socket).map_err(bind_err)?;
    tracing::info!(socket = %socket.display(), "CRI server listening");
    let result = router
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await;
    let _ = std::fs::remove_file(socket);
    Ok(result?)
}

/// Serves only the CRI `ImageService` (the runtime part adds its
/// `RuntimeService` to the same router with [`serve_unix`]).
pub async fn serve_image_service(
    store: Arc<ImageStore>,
    registries: RegistryConfig,
    socket: &Path,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let router = tonic::transport::Server::builder().add_service(ImageServiceServer::new(
        CriImageService::new(store, registries),
    ));
    serve_unix(router, socket, shutdown).await
}

/// A gRPC channel to the CRI server on the unix socket `socket`.
pub async fn connect(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let socket = socket.to_path_buf();
    // The URI is a placeholder: the connector below always dials the socket.
    Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { UnixStream::connect(socket).await.map(TokioIo::new) }
        }))
        .await
}
