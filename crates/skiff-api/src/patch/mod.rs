//! The three patch formats of the Kubernetes API, applied to JSON objects:
//! JSON patch (RFC 6902), JSON merge patch (RFC 7386) and strategic merge patch,
//! with upstream's semantics (kube-apiserver's patch handler, the Go JSON patch
//! library it uses, and `k8s.io/apimachinery/pkg/util/strategicpatch`).
//!
//! Pure functions on [`serde_json::Value`]; patches are user input, so nothing
//! here panics on any input, and nesting is bounded by [`MAX_DEPTH`].
//!
//! - [`apply_json_patch`], [`apply_merge_patch`], [`apply_strategic_merge_patch`]
//!   and [`apply_any`] (by [`PatchType`], e.g. from the request's Content-Type).
//! - [`schema`]: the patch strategies, merge keys and list types of the built-in
//!   types ([`PatchSchema`], [`ListType`]).
//! - [`PatchError`]: why a patch failed, with upstream's HTTP status.

mod error;
mod gofmt;
mod json_patch;
mod merge_patch;
pub mod schema;
mod strategic;
mod strategic_list;

pub use error::{GENERIC_UNPROCESSABLE_MESSAGE, PatchError};
pub use json_patch::apply_json_patch;
pub use merge_patch::apply_merge_patch;
pub use schema::{FieldInfo, ListType, PatchSchema, PatchStrategy, list_type};
pub use strategic::apply_strategic_merge_patch;

use serde_json::Value;

/// Upstream's limit on the operations of one JSON patch.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// Upstream's default limit (the API server's `JSONPatchMaxCopyBytes`) on the
/// bytes that the `copy` operations of one JSON patch may add.
pub const MAX_JSON_PATCH_COPY_BYTES: usize = 3 * 1024 * 1024;

/// How deep a patch (and, for JSON patch, the patched object) may nest. Deeper
/// input is refused with [`PatchError::TooDeep`] so that recursion stays
/// bounded. Built-in objects nest about 15 levels.
pub const MAX_DEPTH: usize = 100;

/// The patch formats, as named by the request's Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatchType {
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json`.
    StrategicMerge,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchType {
    /// Every patch type, in upstream's order of the PATCH `consumes` list.
    pub const ALL: [PatchType; 4] = [
        PatchType::Json,
        PatchType::Merge,
        PatchType::StrategicMerge,
        PatchType::Apply,
    ];

    /// The patch type of a Content-Type header value; media type parameters
    /// (`; charset=utf-8`) and case are ignored. `None` for anything else
    /// (upstream answers 415).
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        PatchType::ALL
            .into_iter()
            .find(|t| t.content_type().eq_ignore_ascii_case(media))
    }

    /// The media type of this patch type.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

/// Applies a patch of any type: one entry point for the API server and for
/// fuzzing. `schema` is the kind's [`PatchSchema`]; without one (custom
/// resources) a strategic merge patch is refused as upstream does.
/// Server-side apply is not supported yet.
pub fn apply_any(
    kind: PatchType,
    original: &Value,
    patch: &[u8],
    schema: Option<&PatchSchema>,
) -> Result<Value, PatchError> {
    match kind {
        PatchType::Json => apply_json_patch(original, patch),
        PatchType::Merge => apply_merge_patch(original, patch),
        PatchType::StrategicMerge => match schema {
            Some(schema) => apply_strategic_merge_patch(original, patch, schema),
            None => Err(PatchError::Unsupported(
                "strategic merge patch format is not supported".to_string(),
            )),
        },
        PatchType::Apply => Err(PatchError::Unsupported(
            "server-side apply (application/apply-patch+yaml) is not supported yet".to_string(),
        )),
    }
}

/// Parses a patch body as JSON, refusing bodies nested deeper than
/// [`MAX_DEPTH`].
fn decode(patch: &[u8]) -> Result<Value, PatchError> {
    let value: Value =
        serde_json::from_slice(patch).map_err(|e| PatchError::BadRequest(e.to_string()))?;
    if depth(&value) > MAX_DEPTH {
        return Err(PatchError::TooDeep { max: MAX_DEPTH });
    }
    Ok(value)
}

/// How many containers (objects, arrays) nest in `value`: 0 for a scalar, 1 for
/// `{}`. Iterative, so it is safe on any input.
fn depth(value: &Value) -> usize {
    let mut max = 0;
    let mut stack = vec![(value, 1usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Array(items) => {
                max = max.max(d);
                stack.extend(items.iter().map(|i| (i, d + 1)));
            }
            Value::Object(map) => {
                max = max.max(d);
                stack.extend(map.values().map(|i| (i, d + 1)));
            }
            _ => {}
        }
    }
    max
}

#[cfg(test)]
mod tests;
