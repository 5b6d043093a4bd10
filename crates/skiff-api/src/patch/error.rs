//! Why a patch could not be applied, with the HTTP status upstream answers it
//! with.

/// Upstream's `metav1.Status` message for a 422 built by
/// `NewGenericServerResponse`: it drops the detail (the detail is still in the
/// error's `Display`, for logs).
pub const GENERIC_UNPROCESSABLE_MESSAGE: &str =
    "the server rejected our request due to an error in our request";

/// A patch that could not be applied. Patches are user input: every variant is a
/// client error.
///
/// `Display` is the detailed message; [`PatchError::status_message`] is what
/// upstream puts in the `metav1.Status` it answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch document is malformed for its patch type: not JSON, the wrong
    /// JSON shape, or a bad directive (`400 BadRequest`, message as is).
    #[error("{0}")]
    BadRequest(String),
    /// A JSON patch with more operations than upstream allows
    /// (`413 RequestEntityTooLarge`).
    #[error("The allowed maximum operations in a JSON patch is {max}, got {got}")]
    TooManyOperations {
        /// The limit, [`super::MAX_JSON_PATCH_OPERATIONS`].
        max: usize,
        /// Operations in the patch.
        got: usize,
    },
    /// The patch is well-formed but cannot be applied to this object: a JSON
    /// patch operation on a missing path, a failed `test`, lists of lists in a
    /// strategic merge patch (`422 Invalid` with upstream's generic message).
    #[error("{0}")]
    Unprocessable(String),
    /// A strategic merge patch that conflicts with the object's shape or the
    /// type's merge keys, e.g. `map: map[image:x] does not contain declared merge
    /// key: name`. Upstream passes these through unclassified (a 500 with the
    /// message as is); we answer `422 Invalid` with the same message, since the
    /// fault is in the request.
    #[error("{0}")]
    Merge(String),
    /// The patch or the patched object nests deeper than we accept
    /// (`400 BadRequest`).
    #[error("the patch nests deeper than the allowed {max} levels")]
    TooDeep {
        /// The limit, [`super::MAX_DEPTH`].
        max: usize,
    },
    /// A patch type this server (or this kind) does not support
    /// (`415 UnsupportedMediaType`).
    #[error("{0}")]
    Unsupported(String),
}

impl PatchError {
    /// The HTTP status code of the `metav1.Status` for this error.
    pub fn code(&self) -> u16 {
        match self {
            PatchError::BadRequest(_) | PatchError::TooDeep { .. } => 400,
            PatchError::TooManyOperations { .. } => 413,
            PatchError::Unprocessable(_) | PatchError::Merge(_) => 422,
            PatchError::Unsupported(_) => 415,
        }
    }

    /// The `metav1.StatusReason` for this error.
    pub fn reason(&self) -> &'static str {
        match self.code() {
            400 => "BadRequest",
            413 => "RequestEntityTooLarge",
            415 => "UnsupportedMediaType",
            _ => "Invalid",
        }
    }

    /// The `metav1.Status` message upstream sends for this error.
    pub fn status_message(&self) -> String {
        match self {
            PatchError::TooManyOperations { .. } => format!("Request entity too large: {self}"),
            PatchError::Unprocessable(_) => GENERIC_UNPROCESSABLE_MESSAGE.to_string(),
            _ => self.to_string(),
        }
    }
}
