//! stub
use std::sync::Arc;
use crate::framework::{Handle, Plugin};
/// Name.
pub const NAME: &str = "PodTopologySpread";
/// Stub.
pub fn new(_args: Option<&serde_json::Value>, _handle: &Handle) -> Result<Arc<dyn Plugin>, String> {
    Err("todo".into())
}
