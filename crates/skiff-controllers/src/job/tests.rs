//! Unit tests of the Job controller's pure parts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobStatus, UncountedTerminatedPods};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::failure::{
    BackoffRecord, PolicyAction, is_pod_failed, match_pod_failure_policy, remaining_for_failures,
};
use super::indexed::{first_pending_indexes, generate_name_with_index, split_extra_index_pods};
use super::intervals::OrderedIntervals;
use super::status::{self, ensure_condition_status, match_success_policy};
use super::tracking::clean_uncounted_pods_without_finalizers;

use crate::cached_pod::CachedPod;

fn job(spec: Value) -> Job {
    let mut v = json!({"metadata": {"name": "j", "namespace": "ns"}, "spec": {"template": {}}});
    for (k, val) in spec.as_object().unwrap() {
        v["spec"][k] = val.clone();
    }
    serde_json::from_value(v).unwrap()
}

fn pod(v: Value) -> CachedPod {
    let mut base = json!({"metadata": {"name": "p", "namespace": "ns"}});
    for (k, val) in v.as_object().unwrap() {
        base[k] = val.clone();
    }
    serde_json::from_value(base).unwrap()
}

fn ts(secs_ago: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000).unwrap() - SignedDuration::from_secs(secs_ago)
}

#[test]
fn interval_strings_parse_and_print() {
    // (input, completions, printed, total)
    let cases = [
        ("", 10, "", 0),
        ("0", 10, "0", 1),
        ("1,3-5", 10, "1,3-5", 4),
        ("1,2,3", 10, "1-3", 3),
        ("0-2,3-4", 10, "0-4", 5),
        ("3-5,1", 10, "3-5", 3),
        ("7-12", 10, "7-9", 3),
        ("10,11", 10, "", 0),
        ("a,2,-1,5-3,4", 10, "2,4", 2),
    ];
    for (input, completions, printed, total) in cases {
        let iv = OrderedIntervals::parse(input, completions);
        assert_eq!(iv.to_string(), printed, "parse {input:?}");
        assert_eq!(iv.total(), total, "total of {input:?}");
    }
}

#[test]
fn intervals_merge_new_indexes_and_answer_membership() {
    let base = OrderedIntervals::parse("1,3-5,9", 20);
    let merged = base.with_ordered_indexes(&[0, 2, 6, 8, 12]);
    assert_eq!(merged.to_string(), "0-6,8-9,12");
    assert_eq!(merged.total(), 10);
    for (ix, want) in [
        (0, true),
        (6, true),
        (7, false),
        (9, true),
        (11, false),
        (12, true),
        (13, false),
    ] {
        assert_eq!(merged.has(ix), want, "has({ix})");
    }
    assert_eq!(base.with_ordered_indexes(&[]).to_string(), "1,3-5,9");
    let other = OrderedIntervals::parse("0-3,9-10", 20);
    assert_eq!(base.intersection_total(&other), 3, "1, 3 and 9");
    assert_eq!(base.indexes().collect::<Vec<_>>(), [1, 3, 4, 5, 9]);
}

#[test]
fn first_pending_indexes_skip_taken_ones() {
    let taken = OrderedIntervals::parse("0,2-3,6", 10);
    assert_eq!(first_pending_indexes(&taken, 3, 10), [1, 4, 5]);
    assert_eq!(first_pending_indexes(&taken, 10, 8), [1, 4, 5, 7]);
    assert_eq!(
        first_pending_indexes(&OrderedIntervals::default(), 2, 5),
        [0, 1]
    );
    assert!(first_pending_indexes(&taken, 0, 10).is_empty());
}

#[test]
fn indexed_pod_names_fit_generate_name_limits() {
    assert_eq!(generate_name_with_index("job", 3), "job-3-");
    let long = "a".repeat(63);
    let name = generate_name_with_index(&long, 12);
    assert_eq!(name.len(), 58);
    assert!(name.ends_with("-12-"));
}

fn failed_pod(code: i32, container: &str, conditions: Value) -> CachedPod {
    pod(json!({"status": {
        "phase": "Failed",
        "conditions": conditions,
        "initContainerStatuses": [{"name": "init", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0}}}],
        "containerStatuses": [{"name": container, "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": code}}}],
    }}))
}

#[test]
fn pod_failure_policy_rules_match_in_order() {
    let policy: k8s_openapi::api::batch::v1::PodFailurePolicy = serde_json::from_value(json!({"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
        {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1, 2, 42]}},
        {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [2]}},
    ]}))
    .unwrap();
    let disrupted = json!([{"type": "DisruptionTarget", "status": "True"}]);
    // (pod, message, counts, action)
    let cases: Vec<(CachedPod, Option<&str>, bool, Option<PolicyAction>)> = vec![
        (
            failed_pod(42, "main", disrupted.clone()),
            None,
            false,
            Some(PolicyAction::Ignore),
        ),
        (
            failed_pod(42, "main", json!([])),
            Some(
                "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1",
            ),
            true,
            Some(PolicyAction::FailJob),
        ),
        // containerName restricts the rule.
        (failed_pod(42, "side", json!([])), None, true, None),
        (
            failed_pod(7, "main", json!([])),
            None,
            true,
            Some(PolicyAction::Count),
        ),
        (
            failed_pod(2, "main", json!([])),
            None,
            true,
            Some(PolicyAction::FailIndex),
        ),
        // No rule: counted.
        (failed_pod(1, "main", json!([])), None, true, None),
        // A False condition does not match a True pattern.
        (
            failed_pod(
                1,
                "main",
                json!([{"type": "DisruptionTarget", "status": "False"}]),
            ),
            None,
            true,
            None,
        ),
    ];
    for (i, (p, msg, counts, action)) in cases.into_iter().enumerate() {
        let m = match_pod_failure_policy(&policy, &p);
        assert_eq!(m.message.as_deref(), msg, "case {i}");
        assert_eq!(m.count_failed, counts, "case {i}");
        assert_eq!(m.action, action, "case {i}");
    }
}

#[test]
fn deleted_pods_count_as_failed_unless_only_failed_pods_are_replaced() {
    let deleting = pod(
        json!({"metadata": {"name": "p", "deletionTimestamp": "2024-01-01T00:00:00Z"},
        "status": {"phase": "Running"}}),
    );
    let succeeded_deleting = pod(
        json!({"metadata": {"name": "p", "deletionTimestamp": "2024-01-01T00:00:00Z"},
        "status": {"phase": "Succeeded"}}),
    );
    let failed = pod(json!({"status": {"phase": "Failed"}}));
    let default = job(json!({}));
    let only_failed = job(json!({"podReplacementPolicy": "Failed"}));
    let with_policy = job(json!({"podFailurePolicy": {"rules": []}}));
    assert!(is_pod_failed(&deleting, &default));
    assert!(!is_pod_failed(&succeeded_deleting, &default));
    assert!(!is_pod_failed(&deleting, &only_failed));
    assert!(!is_pod_failed(&deleting, &with_policy));
    for j in [&default, &only_failed, &with_policy] {
        assert!(is_pod_failed(&failed, j));
    }
}

#[test]
fn backoff_doubles_from_ten_seconds_up_to_six_minutes() {
    let now = ts(0);
    // (failures, seconds since the last one, remaining seconds)
    let cases = [
        (0, 0, 0),
        (1, 0, 10),
        (1, 4, 6),
        (1, 11, 0),
        (2, 0, 20),
        (3, 5, 35),
        (6, 0, 320),
        (7, 0, 360),
        (30, 60, 300),
    ];
    for (failures, ago, want) in cases {
        let got = remaining_for_failures(failures, Some(ts(ago)), now);
        assert_eq!(
            got,
            Duration::from_secs(want),
            "{failures} failures {ago}s ago"
        );
    }
    assert_eq!(remaining_for_failures(3, None, now), Duration::ZERO);
}

#[test]
fn backoff_record_resets_on_success() {
    let r = BackoffRecord::default().updated(&[], &[ts(30), ts(20)]);
    assert_eq!(r.failures_after_last_success, 2);
    assert_eq!(r.last_failure_time, Some(ts(20)));
    let r = r.updated(&[], &[ts(5)]);
    assert_eq!(
        (r.failures_after_last_success, r.last_failure_time),
        (3, Some(ts(5)))
    );
    // A success counts only the failures after it.
    let r = r.updated(&[ts(4)], &[ts(6), ts(3), ts(2)]);
    assert_eq!(
        (r.failures_after_last_success, r.last_failure_time),
        (2, Some(ts(2)))
    );
    let r = r.updated(&[ts(1)], &[]);
    assert_eq!(r, BackoffRecord::default());
    assert_eq!(r.updated(&[], &[]), r);
}

#[test]
fn success_policy_rules() {
    let policy = |rules: Value| -> k8s_openapi::api::batch::v1::SuccessPolicy {
        serde_json::from_value(json!({ "rules": rules })).unwrap()
    };
    let succeeded = OrderedIntervals::parse("0-2,4-7", 10);
    // (rules, met message)
    let cases = [
        (
            json!([{"succeededIndexes": "0-2"}]),
            Some("Matched rules at index 0"),
        ),
        (json!([{"succeededIndexes": "0-3"}]), None),
        (
            json!([{"succeededIndexes": "0-3", "succeededCount": 3}]),
            Some("Matched rules at index 0"),
        ),
        (
            json!([{"succeededIndexes": "1,3,8", "succeededCount": 2}]),
            None,
        ),
        (
            json!([{"succeededCount": 8}, {"succeededCount": 7}]),
            Some("Matched rules at index 1"),
        ),
        (
            json!([{"succeededIndexes": "9"}, {"succeededIndexes": "4-5"}]),
            Some("Matched rules at index 1"),
        ),
    ];
    for (rules, want) in cases {
        let p = policy(rules.clone());
        assert_eq!(
            match_success_policy(Some(&p), 10, &succeeded).as_deref(),
            want,
            "{rules}"
        );
    }
    let p = policy(json!([{"succeededCount": 1}]));
    assert_eq!(
        match_success_policy(Some(&p), 10, &OrderedIntervals::default()),
        None
    );
    assert_eq!(match_success_policy(None, 10, &succeeded), None);
}

#[test]
fn conditions_are_added_replaced_and_never_added_false() {
    let mut list = Vec::new();
    let now = ts(0);
    assert!(!ensure_condition_status(
        &mut list,
        "Suspended",
        "False",
        "JobResumed",
        "Job resumed",
        now
    ));
    assert!(list.is_empty(), "a False condition is not added");
    assert!(ensure_condition_status(
        &mut list,
        "Suspended",
        "True",
        "JobSuspended",
        "Job suspended",
        now
    ));
    assert!(!ensure_condition_status(
        &mut list,
        "Suspended",
        "True",
        "JobSuspended",
        "Job suspended",
        ts(-5)
    ));
    assert_eq!(list[0].last_transition_time.as_ref().unwrap().0, now);
    assert!(ensure_condition_status(
        &mut list,
        "Suspended",
        "False",
        "JobResumed",
        "Job resumed",
        ts(-9)
    ));
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].status, "False");
    assert_eq!(list[0].last_transition_time.as_ref().unwrap().0, ts(-9));
}

#[test]
fn interim_conditions_lead_to_final_ones() {
    let target = status::new_condition("FailureTarget", "True", "PodFailurePolicy", "m", ts(9));
    let f = status::final_for_interim(&target, ts(0));
    assert_eq!(
        (f.type_.as_str(), f.reason.as_deref(), f.message.as_deref()),
        ("Failed", Some("PodFailurePolicy"), Some("m"))
    );
    let met = status::new_condition("SuccessCriteriaMet", "True", "SuccessPolicy", "x", ts(9));
    assert_eq!(status::final_for_interim(&met, ts(0)).type_, "Complete");
}

#[test]
fn active_deadline_counts_from_start_and_not_while_suspended() {
    let mut j = job(json!({"activeDeadlineSeconds": 30}));
    assert_eq!(
        status::remaining_active_deadline(&j, ts(0)),
        None,
        "not started"
    );
    j.status = Some(JobStatus {
        start_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(ts(20))),
        ..JobStatus::default()
    });
    assert_eq!(
        status::remaining_active_deadline(&j, ts(0)),
        Some(Duration::from_secs(10))
    );
    assert!(!status::past_active_deadline(&j, ts(0)));
    assert!(status::past_active_deadline(&j, ts(-10)));
    j.spec.as_mut().unwrap().suspend = Some(true);
    assert!(!status::past_active_deadline(&j, ts(-100)));
}

#[test]
fn restarts_of_on_failure_pods_count_against_the_backoff_limit() {
    let running = |restarts: i32| {
        Arc::new(pod(
            json!({"status": {"phase": "Running", "containerStatuses": [
            {"name": "c", "image": "i", "imageID": "", "ready": true, "restartCount": restarts}]}}),
        ))
    };
    let mut j = job(
        json!({"backoffLimit": 3, "template": {"spec": {"restartPolicy": "OnFailure", "containers": []}}}),
    );
    assert!(!status::past_backoff_limit_on_failure(
        &j,
        &[running(1), running(1)]
    ));
    assert!(status::past_backoff_limit_on_failure(
        &j,
        &[running(2), running(1)]
    ));
    j.spec.as_mut().unwrap().backoff_limit = Some(0);
    assert!(status::past_backoff_limit_on_failure(&j, &[running(1)]));
    assert!(!status::past_backoff_limit_on_failure(&j, &[running(0)]));
    let never = job(
        json!({"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": []}}}),
    );
    assert!(!status::past_backoff_limit_on_failure(
        &never,
        &[running(5)]
    ));
}

#[test]
fn uncounted_pods_move_to_counters_once_their_finalizer_is_gone() {
    let mut st = JobStatus {
        succeeded: Some(2),
        uncounted_terminated_pods: Some(UncountedTerminatedPods {
            succeeded: Some(vec!["a".into(), "b".into()]),
            failed: Some(vec!["c".into()]),
        }),
        ..JobStatus::default()
    };
    let with_finalizer = ["b".to_owned()].into_iter().collect();
    assert!(clean_uncounted_pods_without_finalizers(
        &mut st,
        &with_finalizer
    ));
    assert_eq!((st.succeeded, st.failed), (Some(3), Some(1)));
    let u = st.uncounted_terminated_pods.as_ref().unwrap();
    assert_eq!(u.succeeded.as_deref(), Some(&["b".to_owned()][..]));
    assert_eq!(u.failed.as_deref(), Some(&[][..]));
    // Nothing more to move: unchanged, and counted only once.
    assert!(!clean_uncounted_pods_without_finalizers(
        &mut st,
        &with_finalizer
    ));
    assert_eq!((st.succeeded, st.failed), (Some(3), Some(1)));
}

#[test]
fn extra_index_pods_are_removed_first() {
    let ix = |name: &str, i: &str| {
        Arc::new(pod(
            json!({"metadata": {"name": name, "annotations": {"batch.kubernetes.io/job-completion-index": i}}}),
        ))
    };
    let pods = vec![
        ix("a", "0"),
        ix("b", "0"),
        ix("c", "5"),
        ix("d", "1"),
        ix("e", "x"),
        ix("f", "2"),
    ];
    let failed = OrderedIntervals::parse("2", 3);
    let (rm, left) = split_extra_index_pods(&pods, 3, Some(&failed));
    let names = |v: &[Arc<CachedPod>]| {
        let mut n: Vec<String> = v.iter().map(|p| p.metadata.name.clone().unwrap()).collect();
        n.sort();
        n
    };
    // One of the duplicates of index 0 stays.
    assert_eq!(rm.len(), 4);
    assert!(names(&rm).contains(&"c".to_owned()) && names(&rm).contains(&"e".to_owned()));
    assert!(
        names(&rm).contains(&"f".to_owned()),
        "a failed index's pod goes"
    );
    assert_eq!(left.len(), 2);
    assert!(names(&left).contains(&"d".to_owned()));
}
