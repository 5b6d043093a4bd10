//! The resource table, discovery documents, validation, selectors and `Status`
//! errors of the Kubernetes API. No I/O.
//!
//! Upstream Kubernetes v1.33 behaviour is the specification: names, messages and
//! document shapes match what a kube-apiserver sends, so that kubectl, client-go,
//! kube-rs and the Python client see no difference.
//!
//! - [`resources`]: the one resource table (group, version, kind, plural, short
//!   names, categories, scope, verbs, subresources, storage keys) and lookups.
//! - [`discovery`]: `/api`, `/apis`, group and group-version documents, and
//!   aggregated discovery (`apidiscovery.k8s.io/v2`).
//! - [`status`]: [`status::ApiError`], every error as a `metav1.Status`.
//! - [`field`]: field paths and validation error lists.
//! - [`validation`]: name, label and annotation rules.
//! - [`selector`]: label and field selectors.
//! - [`storage`]: volume helpers (classes, pre-binding, matching a claim).

pub mod apply;
pub mod conversion;
pub mod cron;
pub mod discovery;
pub mod duration;
pub mod field;
pub mod fuzzing;
pub mod kinds;
pub mod openapi;
pub mod patch;
pub mod printers;
pub mod quantity;
pub mod query;
pub mod quota;
mod quote;
pub mod resources;
pub mod selector;
pub mod status;
pub mod storage;
pub mod validation;

pub use quote::go_quote;
