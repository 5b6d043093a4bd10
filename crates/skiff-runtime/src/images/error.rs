//! Errors of the image store.

use std::path::PathBuf;

use super::reference::ReferenceError;

/// Everything that can go wrong storing, importing, pulling or unpacking images.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// An I/O error, with the path it concerned.
    #[error("{context} {path}: {source}")]
    Io {
        /// What we were doing.
        context: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A malformed digest string.
    #[error("invalid digest {0:?}")]
    InvalidDigest(String),
    /// A digest with an algorithm other than sha256.
    #[error("unsupported digest algorithm in {0:?}")]
    UnsupportedDigest(String),
    /// Content whose hash does not match the digest it was announced with.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The announced digest.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// A layer entry would be written outside its snapshot.
    #[error("layer entry {0:?} escapes the layer root (path traversal)")]
    PathTraversal(String),
    /// A malformed image reference.
    #[error("failed to parse image reference {reference:?}: {source}")]
    Reference {
        /// The string given.
        reference: String,
        /// Why it was rejected.
        source: ReferenceError,
    },
    /// No image matches the given name, digest or ID.
    #[error("image {0:?} not found")]
    NotFound(String),
    /// A manifest, index or config that does not make sense.
    #[error("invalid image: {0}")]
    Invalid(String),
    /// The archive is neither an OCI layout nor a docker-archive.
    #[error(
        "{path}: not an OCI archive (oci-layout and index.json) nor a docker-archive (manifest.json)"
    )]
    UnknownArchive {
        /// The archive file.
        path: PathBuf,
    },
    /// A registry operation failed.
    #[error("failed to pull {reference}: {message}")]
    Pull {
        /// The reference being pulled.
        reference: String,
        /// The registry's or transport's error.
        message: String,
        /// The registry says the repository, tag or digest does not exist.
        not_found: bool,
        /// The registry refused our credentials.
        unauthorized: bool,
    },
    /// A JSON document (index, manifest, config, store index) could not be parsed.
    #[error("parse {what}: {source}")]
    Json {
        /// Which document.
        what: String,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// A background task panicked or was cancelled.
    #[error("image task failed: {0}")]
    Task(String),
}

impl ImageError {
    pub(crate) fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            context,
            path,
            source,
        }
    }

    pub(crate) fn json(what: impl Into<String>) -> impl FnOnce(serde_json::Error) -> Self {
        let what = what.into();
        move |source| Self::Json { what, source }
    }
}
