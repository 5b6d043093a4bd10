//! Label and field selectors, parsed and matched as upstream does
//! (`k8s.io/apimachinery/pkg/labels`, `.../pkg/fields`), with upstream's error
//! messages. Selectors are user input: nothing here panics on any string.
//!
//! - [`labels`]: `a=b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`, `a>1`, and
//!   `metav1.LabelSelector` conversion.
//! - [`fields`]: `a=b`, `a==b`, `a!=b` with `\`-escaping, the per-resource table of
//!   supported field labels, and extraction of those fields from an object.

pub mod fields;
mod fields_table;
pub mod labels;

pub use fields_table::{convert_field_label, selectable_fields, supported_field_labels};

use std::fmt;

use crate::status::ApiError;

/// A selector that could not be parsed or is not supported. Its message is
/// upstream's; the API server answers it with `400 BadRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorError(pub String);

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SelectorError {}

impl From<SelectorError> for ApiError {
    fn from(e: SelectorError) -> Self {
        ApiError::BadRequest(e.0)
    }
}
