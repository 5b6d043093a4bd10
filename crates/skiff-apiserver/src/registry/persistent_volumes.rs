//! The PersistentVolume strategy's clock-dependent part (GA since 1.31):
//! `status.lastPhaseTransitionTime` is stamped on create and whenever a
//! status write changes `status.phase` without the client choosing a new
//! time itself. (Claims have no such field.)

use serde_json::{Value, json};
use skiff_api::resources::ResourceInfo;

fn is_persistent_volume(info: &ResourceInfo) -> bool {
    info.group.is_empty() && info.plural == "persistentvolumes"
}

fn phase(obj: &Value) -> &str {
    obj.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn transition_time(obj: &Value) -> Option<&Value> {
    obj.pointer("/status/lastPhaseTransitionTime")
        .filter(|t| !t.is_null())
}

/// Create: a new volume entered its (Pending) phase now.
pub(super) fn prepare_create(info: &ResourceInfo, obj: &mut Value, now: &str) {
    if !is_persistent_volume(info) {
        return;
    }
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
        status.insert("lastPhaseTransitionTime".into(), json!(now));
    }
}

/// A write through `/status`: an unchanged phase keeps the old time unless
/// the client sent one; a changed phase gets `now` unless the client sent
/// a time other than the old one.
pub(super) fn prepare_status_update(info: &ResourceInfo, old: &Value, new: &mut Value, now: &str) {
    if !is_persistent_volume(info) {
        return;
    }
    let sent = transition_time(new).cloned();
    let old_time = transition_time(old).cloned();
    let stamp = if phase(old) == phase(new) {
        match (sent, old_time) {
            (None, Some(kept)) => Some(kept),
            _ => None,
        }
    } else if sent.is_none() || sent == old_time {
        Some(json!(now))
    } else {
        None
    };
    if let Some(time) = stamp
        && let Some(status) = new.get_mut("status").and_then(Value::as_object_mut)
    {
        status.insert("lastPhaseTransitionTime".into(), time);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use skiff_api::resources;

    fn pv(phase: &str, time: Option<&str>) -> Value {
        let mut status = json!({"phase": phase});
        if let Some(t) = time {
            status["lastPhaseTransitionTime"] = json!(t);
        }
        json!({"metadata": {"name": "v"}, "status": status})
    }

    #[test]
    fn create_stamps_the_pending_phase() {
        let pvs = resources::by_gvr("", "v1", "persistentvolumes").unwrap();
        let mut obj = pv("Pending", None);
        prepare_create(pvs, &mut obj, "2025-01-02T03:04:05Z");
        assert_eq!(
            obj["status"]["lastPhaseTransitionTime"],
            "2025-01-02T03:04:05Z"
        );
        let pvcs = resources::by_gvr("", "v1", "persistentvolumeclaims").unwrap();
        let mut claim = pv("Pending", None);
        prepare_create(pvcs, &mut claim, "2025-01-02T03:04:05Z");
        assert!(
            transition_time(&claim).is_none(),
            "claims have no such field"
        );
    }

    #[test]
    fn status_writes_stamp_phase_changes_as_upstream() {
        let pvs = resources::by_gvr("", "v1", "persistentvolumes").unwrap();
        const OLD: &str = "2025-01-01T00:00:00Z";
        const SENT: &str = "2024-06-01T00:00:00Z";
        const NOW: &str = "2025-02-02T00:00:00Z";
        let cases = [
            // (old phase, old time, new phase, sent time, stored time)
            ("Pending", Some(OLD), "Pending", None, Some(OLD)),
            ("Pending", Some(OLD), "Pending", Some(SENT), Some(SENT)),
            ("Pending", None, "Pending", None, None),
            ("Pending", Some(OLD), "Available", None, Some(NOW)),
            ("Pending", Some(OLD), "Available", Some(OLD), Some(NOW)),
            ("Pending", Some(OLD), "Available", Some(SENT), Some(SENT)),
            ("Bound", None, "Released", None, Some(NOW)),
        ];
        for (old_phase, old_time, new_phase, sent, want) in cases {
            let old = pv(old_phase, old_time);
            let mut new = pv(new_phase, sent);
            prepare_status_update(pvs, &old, &mut new, NOW);
            assert_eq!(
                transition_time(&new).and_then(Value::as_str),
                want,
                "{old_phase} {old_time:?} -> {new_phase} {sent:?}"
            );
        }
    }
}
