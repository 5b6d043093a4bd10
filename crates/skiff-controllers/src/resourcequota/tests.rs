#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;

use super::*;

fn rq(hard: Option<Value>, status_hard: Option<Value>) -> Arc<ResourceQuota> {
    let mut v = json!({"metadata": {"name": "q", "namespace": "ns"}, "spec": {}});
    if let Some(h) = hard {
        v["spec"]["hard"] = h;
    }
    if let Some(h) = status_hard {
        v["status"] = json!({"hard": h, "used": {}});
    }
    Arc::new(serde_json::from_value(v).unwrap())
}

#[test]
fn quota_events_queue_only_spec_changes_and_unsynced_quotas() {
    let synced = rq(Some(json!({"pods": "1"})), Some(json!({"pods": "1"})));
    let raised = rq(Some(json!({"pods": "2"})), Some(json!({"pods": "1"})));
    let unsynced = rq(Some(json!({"pods": "1"})), None);
    // (old, new, queued)
    let cases = [
        (&synced, &synced, false),
        (&synced, &raised, true),
        (&unsynced, &unsynced, true),
    ];
    for (i, (old, new, queued)) in cases.into_iter().enumerate() {
        let queue = Arc::new(WorkQueue::new());
        QuotaHandler(queue.clone()).on_update(old, new);
        assert_eq!(queue.len(), usize::from(queued), "case {i}");
    }
    let queue = Arc::new(WorkQueue::new());
    QuotaHandler(queue.clone()).on_add(&synced);
    assert_eq!(queue.len(), 1);
    QuotaHandler(queue.clone()).on_delete(&synced);
    assert_eq!(queue.len(), 1);
}

#[test]
fn resource_lists_become_api_quantities() {
    let list = quota::resource_list(Some(&json!({"cpu": "1500m", "pods": "2"})));
    let got = to_k8s(&list);
    assert_eq!(got.get("cpu").map(|q| q.0.as_str()), Some("1500m"));
    assert_eq!(got.get("pods").map(|q| q.0.as_str()), Some("2"));
}
