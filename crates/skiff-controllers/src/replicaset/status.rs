//! The status a sync writes (upstream's `calculateStatus`).

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use skiff_api::selector::labels::from_map;

use super::kind::{ReplicaCondition, ReplicaKind, ReplicaStatus};
use crate::cached_pod::CachedPod;
use crate::podutil::{is_pod_available, is_pod_ready};

/// The condition set while pods cannot be created or deleted.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// Counts `pods` (the owner's active pods) into a status; `manage_error`
/// is the message of a failed create/delete round, which sets the
/// ReplicaFailure condition (cleared by the next successful round).
pub fn calculate_status<K: ReplicaKind>(
    owner: &K,
    pods: &[Arc<CachedPod>],
    manage_error: Option<&str>,
    now: Timestamp,
) -> ReplicaStatus {
    let mut status = owner.replica_status();
    let template_labels = owner
        .template()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let template_selector = from_map(&template_labels);
    let min_ready = owner.min_ready_seconds();
    let (mut fully_labeled, mut ready, mut available) = (0, 0, 0);
    for p in pods {
        let labels = p.metadata.labels.clone().unwrap_or_default();
        if template_selector.matches(&labels) {
            fully_labeled += 1;
        }
        if is_pod_ready(p) {
            ready += 1;
            if is_pod_available(p, min_ready, now) {
                available += 1;
            }
        }
    }
    let has_failure = status.conditions.iter().any(|c| c.type_ == REPLICA_FAILURE);
    match manage_error {
        Some(msg) if !has_failure => {
            let diff = i64::try_from(pods.len()).unwrap_or(i64::MAX) - i64::from(owner.replicas());
            let reason = if diff < 0 {
                "FailedCreate"
            } else if diff > 0 {
                "FailedDelete"
            } else {
                ""
            };
            status.conditions.push(ReplicaCondition {
                type_: REPLICA_FAILURE.to_owned(),
                status: "True".to_owned(),
                last_transition_time: Some(Time(now)),
                reason: Some(reason.to_owned()),
                message: Some(msg.to_owned()),
            });
        }
        None if has_failure => status.conditions.retain(|c| c.type_ != REPLICA_FAILURE),
        _ => {}
    }
    status.replicas = i32::try_from(pods.len()).unwrap_or(i32::MAX);
    status.fully_labeled_replicas = fully_labeled;
    status.ready_replicas = ready;
    status.available_replicas = available;
    status
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use serde_json::json;

    use super::*;

    fn now() -> Timestamp {
        "2026-01-01T12:00:00Z".parse().unwrap()
    }

    fn rs(replicas: i32, min_ready: i32) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": "rs", "namespace": "ns", "generation": 3},
            "spec": {"replicas": replicas, "minReadySeconds": min_ready,
                     "selector": {"matchLabels": {"app": "a"}},
                     "template": {"metadata": {"labels": {"app": "a", "tier": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}}},
        }))
        .unwrap()
    }

    fn pod(labels: serde_json::Value, ready_secs_ago: Option<i64>) -> Arc<CachedPod> {
        let cond = match ready_secs_ago {
            Some(s) => json!({"type": "Ready", "status": "True",
                "lastTransitionTime": (now() - k8s_openapi::jiff::SignedDuration::from_secs(s)).to_string()}),
            None => json!({"type": "Ready", "status": "False"}),
        };
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "p", "labels": labels},
                "status": {"phase": "Running", "conditions": [cond]},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn counts_labels_readiness_and_availability() {
        let full = json!({"app": "a", "tier": "web"});
        let partial = json!({"app": "a"});
        let pods = vec![
            pod(full.clone(), Some(100)),
            pod(full.clone(), Some(5)),
            pod(partial, Some(100)),
            pod(full, None),
        ];
        let s = calculate_status(&rs(4, 10), &pods, None, now());
        assert_eq!(
            (
                s.replicas,
                s.fully_labeled_replicas,
                s.ready_replicas,
                s.available_replicas
            ),
            (4, 3, 3, 2)
        );
        // Without minReadySeconds every ready pod is available.
        let s = calculate_status(&rs(4, 0), &pods, None, now());
        assert_eq!(s.available_replicas, 3);
    }

    #[test]
    fn ready_exactly_min_ready_seconds_ago_is_not_yet_available() {
        let pods = vec![pod(json!({"app": "a"}), Some(10))];
        assert_eq!(
            calculate_status(&rs(1, 10), &pods, None, now()).available_replicas,
            0
        );
        let pods = vec![pod(json!({"app": "a"}), Some(11))];
        assert_eq!(
            calculate_status(&rs(1, 10), &pods, None, now()).available_replicas,
            1
        );
    }

    #[test]
    fn failure_condition_set_once_and_cleared() {
        let pods = vec![pod(json!({"app": "a"}), None)];
        let owner = rs(3, 0);
        let s = calculate_status(&owner, &pods, Some("quota exceeded"), now());
        assert_eq!(s.conditions.len(), 1);
        let c = &s.conditions[0];
        assert_eq!(
            (c.type_.as_str(), c.status.as_str()),
            ("ReplicaFailure", "True")
        );
        assert_eq!(c.reason.as_deref(), Some("FailedCreate"));
        assert_eq!(c.message.as_deref(), Some("quota exceeded"));
        let failing = owner.with_replica_status(&s);
        // A second failure keeps the first condition as it was.
        let later = now() + k8s_openapi::jiff::SignedDuration::from_secs(60);
        let s2 = calculate_status(&failing, &pods, Some("other"), later);
        assert_eq!(s2.conditions, s.conditions);
        // Too many pods: FailedDelete.
        let three = vec![
            pods[0].clone(),
            pods[0].clone(),
            pods[0].clone(),
            pods[0].clone(),
        ];
        let s3 = calculate_status(&owner, &three, Some("x"), now());
        assert_eq!(s3.conditions[0].reason.as_deref(), Some("FailedDelete"));
        // Success clears it.
        let s4 = calculate_status(&failing, &pods, None, now());
        assert!(s4.conditions.is_empty());
    }
}
