//! Tests of the patch module, one file per patch format.

mod json_patch;
mod merge_patch;
mod schema;
mod strategic;
mod strategic_directives;
