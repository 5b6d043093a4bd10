//! PrioritySort: the default QueueSort (higher `spec.priority` first, then
//! the pod that entered the active queue earlier).

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{Handle, Plugin, QueueSortPlugin, QueuedPodInfo};

/// The plugin's name.
pub const NAME: &str = "PrioritySort";

/// Orders pods by priority, then by queue timestamp.
#[derive(Debug, Default)]
pub struct PrioritySort;

/// The factory (no args).
pub fn new(_args: Option<&serde_json::Value>, _handle: &Handle) -> Result<Arc<dyn Plugin>, String> {
    Ok(Arc::new(PrioritySort))
}

/// A pod's priority; 0 when unset (upstream's `PodPriority`).
pub fn pod_priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

impl Plugin for PrioritySort {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_queue_sort(&self) -> Option<&dyn QueueSortPlugin> {
        Some(self)
    }
}

impl QueueSortPlugin for PrioritySort {
    fn less(&self, a: &QueuedPodInfo, b: &QueuedPodInfo) -> bool {
        let (p1, p2) = (pod_priority(&a.pod_info.pod), pod_priority(&b.pod_info.pod));
        p1 > p2 || (p1 == p2 && a.timestamp < b.timestamp)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::plugins::testing::{handle, pod};
    use serde_json::json;
    use std::time::{Duration, Instant};

    fn queued(priority: Option<i32>, at: Instant) -> QueuedPodInfo {
        let mut spec = json!({"containers": []});
        if let Some(p) = priority {
            spec["priority"] = json!(p);
        }
        QueuedPodInfo {
            pod_info: Arc::new(pod(json!({"spec": spec}))),
            initial_attempt_timestamp: at,
            timestamp: at,
            attempts: 0,
            unschedulable_plugins: Default::default(),
            pending_plugins: Default::default(),
        }
    }

    #[test]
    fn priority_then_timestamp() {
        let plugin = new(None, &handle()).unwrap();
        let qs = plugin.as_queue_sort().unwrap();
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let cases = [
            (queued(Some(100), t1), queued(Some(10), t0), true),
            (queued(Some(10), t0), queued(Some(100), t1), false),
            (queued(Some(5), t0), queued(Some(5), t1), true),
            (queued(Some(5), t1), queued(Some(5), t0), false),
            (queued(None, t0), queued(Some(-1), t0), true),
            (queued(None, t0), queued(None, t0), false),
        ];
        for (i, (a, b, want)) in cases.iter().enumerate() {
            assert_eq!(qs.less(a, b), *want, "case {i}");
        }
    }
}
