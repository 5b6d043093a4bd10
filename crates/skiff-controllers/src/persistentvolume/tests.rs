#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::core::v1::PersistentVolume;
use serde_json::{Value, json};

use super::reclaim::{Deleter, find_deleter, is_pod_terminated};

use crate::cached_pod::CachedPod;

fn pv(extra: Value) -> PersistentVolume {
    let mut v = json!({"metadata": {"name": "v"}, "spec": {"hostPath": {"path": "/x"}}});
    if let (Some(a), Value::Object(b)) = (v.as_object_mut(), extra) {
        for (k, val) in b {
            match (a.get_mut(&k), val) {
                (Some(Value::Object(x)), Value::Object(y)) => x.extend(y),
                (_, val) => {
                    a.insert(k, val);
                }
            }
        }
    }
    serde_json::from_value(v).unwrap()
}

#[test]
fn who_deletes_a_released_volume() {
    let missing = |m: &str| Deleter::Missing(m.to_owned());
    let cases = [
        (
            pv(json!({})),
            missing(
                "error getting deleter volume plugin for volume \"v\": no volume plugin matched",
            ),
        ),
        (
            pv(
                json!({"metadata": {"annotations": {"pv.kubernetes.io/provisioned-by": "rancher.io/local-path"}}}),
            ),
            Deleter::External,
        ),
        (
            pv(
                json!({"metadata": {"annotations": {"pv.kubernetes.io/provisioned-by": "kubernetes.io/host-path"}}}),
            ),
            missing("no volume plugin matched name: kubernetes.io/host-path"),
        ),
        (
            pv(
                json!({"metadata": {"annotations": {"pv.kubernetes.io/migrated-to": "ebs.csi.aws.com"}}}),
            ),
            Deleter::External,
        ),
        (
            pv(json!({"spec": {"csi": {"driver": "d", "volumeHandle": "h"}}})),
            Deleter::External,
        ),
    ];
    for (volume, want) in cases {
        assert_eq!(
            find_deleter(&volume),
            want,
            "{:?}",
            volume.metadata.annotations
        );
    }
}

#[test]
fn terminated_pods_as_upstream() {
    let pod = |v: Value| -> CachedPod { serde_json::from_value(v).unwrap() };
    let running = json!([{"name": "c", "image": "i", "ready": true, "restartCount": 0, "state": {"running": {}}}]);
    let stopped = json!([{"name": "c", "image": "i", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0}}}]);
    let deleting = "2025-01-01T00:00:00Z";
    let cases = [
        (
            json!({"status": {"phase": "Running", "containerStatuses": running}}),
            false,
        ),
        (json!({"status": {"phase": "Succeeded"}}), true),
        (json!({"status": {"phase": "Failed"}}), true),
        (
            json!({"metadata": {"deletionTimestamp": deleting}, "status": {"phase": "Running", "containerStatuses": running}}),
            false,
        ),
        (
            json!({"metadata": {"deletionTimestamp": deleting}, "status": {"phase": "Running", "containerStatuses": stopped}}),
            true,
        ),
        (json!({"status": {"phase": "Pending"}}), false),
    ];
    for (v, want) in cases {
        assert_eq!(is_pod_terminated(&pod(v.clone())), want, "{v}");
    }
}
