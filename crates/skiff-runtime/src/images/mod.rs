//! Images: content store, snapshots, archive import and registry pulls.

mod archive;
mod content;
mod digest;
mod error;
pub(crate) mod oci;
mod pull;
mod reference;
mod store;
mod unpack;

pub use archive::import_dir;
pub use content::ContentStore;
pub use digest::{Digest, chain_ids};
pub use error::ImageError;
pub use oci::{ImageConfig, RuntimeConfig, host_platform};
pub use pull::{PullAuth, RegistryConfig, credentials_from_docker_config};
pub use reference::{Reference, ReferenceError};
pub use store::{ImageRecord, ImageStore, LayerRecord};
pub use unpack::apply_layer;
