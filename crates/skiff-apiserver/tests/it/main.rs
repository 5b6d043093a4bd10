//! The integration tests of `skiff-apiserver`, one module per area, linked into one
//! test binary: every file used to be its own binary, each linking the whole
//! crate graph again (about 75 MB of disk and a link step apiece).
//! cargo-nextest still runs every test in its own process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod admission;
mod bad_input;
mod event_ttl;
mod in_process;
mod kubectl_verbs;
mod kubectl_workflows;
mod metrics_limits;
mod openapi_kubectl;
mod openapi_v2;
mod pki_tls;
mod pod_logs;
mod python_client;
mod rest_crud;
mod server_kubectl;
mod server_side_apply;
mod service_updates;
mod services_bootstrap;
mod storage_admission;
mod subresources_deletion;
mod watch_cache;
