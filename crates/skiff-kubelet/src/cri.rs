//! The kubelet's side of CRI v1: a client for a runtime's unix socket, and
//! the labels through which the kubelet finds its pods' sandboxes and
//! containers again (upstream's `pkg/kubelet/types/labels.go`).

use std::path::Path;

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as api;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

pub use api::image_service_client::ImageServiceClient;
pub use api::runtime_service_client::RuntimeServiceClient;

pub use crate::config::{CONTAINER_NAME_LABEL, POD_NAME_LABEL, POD_NAMESPACE_LABEL, POD_UID_LABEL};

/// Clients of one CRI runtime (both services share the channel).
#[derive(Debug, Clone)]
pub struct Cri {
    /// RuntimeService: sandboxes and containers.
    pub runtime: RuntimeServiceClient<Channel>,
    /// ImageService: pulls and image status.
    pub images: ImageServiceClient<Channel>,
}

impl Cri {
    /// Clients over `channel`.
    pub fn new(channel: Channel) -> Self {
        Self {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        }
    }

    /// Connects to the runtime listening on the unix socket `socket`
    /// (a `unix://` prefix is accepted, as in `--container-runtime-endpoint`).
    pub async fn connect(socket: &Path) -> Result<Self, tonic::transport::Error> {
        let path = socket
            .to_str()
            .and_then(|s| s.strip_prefix("unix://"))
            .map(Path::new)
            .unwrap_or(socket)
            .to_path_buf();
        // The URI is a placeholder: the connector always dials the socket.
        let channel = Endpoint::from_static("http://[::]:50051")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { UnixStream::connect(path).await.map(TokioIo::new) }
            }))
            .await?;
        Ok(Self::new(channel))
    }
}
