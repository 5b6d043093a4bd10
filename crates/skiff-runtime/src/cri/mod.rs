//! The CRI v1 gRPC side of the runtime: services, a unix-socket server and a client.

mod image_service;
mod runtime_service;
mod socket;
pub mod stats;

pub use image_service::CriImageService;
pub use k8s_cri::v1 as api;
pub use runtime_service::CriRuntimeService;
pub use socket::{ServeError, connect, serve_image_service, serve_unix};
