//! Helpers shared by the default plugins (upstream's `plugins/helper` and the
//! taint/toleration and node-affinity helpers of `component-helpers`).

pub mod args;
pub mod node_selector;

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::framework::{NodeScore, Status};

/// Maps scores onto `[0, max_priority]` proportionally to the highest score
/// (upstream's `DefaultNormalizeScore`). With `reverse`, a low raw score
/// becomes a high normalised one. When every score is 0 they stay 0, or all
/// become `max_priority` when reversed.
pub fn default_normalize_score(
    max_priority: i64,
    reverse: bool,
    scores: &mut [NodeScore<'_>],
) -> Status {
    let max_count = scores.iter().map(|s| s.score).max().unwrap_or(0).max(0);
    if max_count == 0 {
        if reverse {
            for s in scores.iter_mut() {
                s.score = max_priority;
            }
        }
        return Status::success();
    }
    for s in scores.iter_mut() {
        let mut score = max_priority * s.score / max_count;
        if reverse {
            score = max_priority - score;
        }
        s.score = score;
    }
    Status::success()
}

/// True when `toleration` tolerates `taint` (upstream's
/// `Toleration.ToleratesTaint`): an empty effect or key matches any, an
/// empty operator means `Equal`.
pub fn toleration_tolerates_taint(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    if let Some(key) = toleration.key.as_deref().filter(|k| !k.is_empty())
        && key != taint.key
    {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("") {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        "Exists" => true,
        _ => false,
    }
}

/// True when any of `tolerations` tolerates `taint`.
pub fn tolerations_tolerate_taint(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations
        .iter()
        .any(|t| toleration_tolerates_taint(t, taint))
}

/// The first taint accepted by `filter` that no toleration tolerates
/// (upstream's `FindMatchingUntoleratedTaint`).
pub fn find_matching_untolerated_taint<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    filter: impl Fn(&Taint) -> bool,
) -> Option<&'a Taint> {
    taints
        .iter()
        .find(|t| filter(t) && !tolerations_tolerate_taint(tolerations, t))
}

/// The taints the Filter of TaintToleration cares about.
pub fn do_not_schedule_taints_filter(taint: &Taint) -> bool {
    taint.effect == "NoSchedule" || taint.effect == "NoExecute"
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    const NAMES: [&str; 8] = ["n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7"];

    fn scores(v: &[i64]) -> Vec<NodeScore<'static>> {
        assert!(v.len() <= NAMES.len(), "at most {} scores", NAMES.len());
        v.iter()
            .zip(NAMES)
            .map(|(&score, name)| NodeScore { name, score })
            .collect()
    }

    #[test]
    fn default_normalize_score_table() {
        // (raw, reverse, want), as upstream's helper tests.
        let cases: &[(&[i64], bool, &[i64])] = &[
            (&[10, 20, 30], false, &[33, 66, 100]),
            (&[10, 20, 30], true, &[67, 34, 0]),
            (&[0, 0, 0], false, &[0, 0, 0]),
            (&[0, 0, 0], true, &[100, 100, 100]),
            (&[1000, 0, 500], false, &[100, 0, 50]),
            (&[], true, &[]),
        ];
        for (raw, reverse, want) in cases {
            let mut s = scores(raw);
            assert!(default_normalize_score(100, *reverse, &mut s).is_success());
            let got: Vec<i64> = s.iter().map(|s| s.score).collect();
            assert_eq!(&got, want, "raw {raw:?} reverse {reverse}");
        }
    }

    fn taint(v: serde_json::Value) -> Taint {
        serde_json::from_value(v).unwrap()
    }

    fn tol(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn toleration_matching_table() {
        let t = taint(json!({"key": "k", "value": "v", "effect": "NoSchedule"}));
        let cases = [
            (
                json!({"key": "k", "value": "v", "effect": "NoSchedule"}),
                true,
            ),
            (json!({"key": "k", "operator": "Equal", "value": "v"}), true),
            (json!({"key": "k", "value": "other"}), false),
            (json!({"key": "k", "operator": "Exists"}), true),
            (json!({"operator": "Exists"}), true),
            (json!({"operator": "Exists", "effect": "NoExecute"}), false),
            (json!({"key": "other", "operator": "Exists"}), false),
            (
                json!({"key": "k", "operator": "Bogus", "value": "v"}),
                false,
            ),
            (json!({"key": "k"}), false),
        ];
        for (tv, want) in cases {
            assert_eq!(
                toleration_tolerates_taint(&tol(tv.clone()), &t),
                want,
                "{tv}"
            );
        }
        let taints = vec![
            taint(json!({"key": "soft", "effect": "PreferNoSchedule"})),
            t.clone(),
        ];
        let found = find_matching_untolerated_taint(&taints, &[], do_not_schedule_taints_filter);
        assert_eq!(found.map(|t| t.key.as_str()), Some("k"));
        let tols = vec![tol(json!({"key": "k", "operator": "Exists"}))];
        assert!(
            find_matching_untolerated_taint(&taints, &tols, do_not_schedule_taints_filter)
                .is_none()
        );
    }
}
