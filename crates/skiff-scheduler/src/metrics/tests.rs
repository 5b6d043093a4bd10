use std::time::Duration;

use super::*;

fn lines(m: &SchedulerMetrics, prefix: &str) -> Vec<String> {
    m.encode_text()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

#[test]
fn attempts_are_counted_by_result_and_profile() {
    let m = SchedulerMetrics::new();
    let ms = Duration::from_millis;
    m.observe_attempt(AttemptResult::Scheduled, "default-scheduler", ms(3));
    m.observe_attempt(AttemptResult::Scheduled, "default-scheduler", ms(1));
    m.observe_attempt(AttemptResult::Unschedulable, "default-scheduler", ms(1));
    m.observe_attempt(AttemptResult::Error, "other", ms(1));
    let mut got = lines(&m, "scheduler_schedule_attempts_total{");
    got.sort();
    assert_eq!(
        got,
        [
            r#"scheduler_schedule_attempts_total{profile="default-scheduler",result="scheduled"} 2"#,
            r#"scheduler_schedule_attempts_total{profile="default-scheduler",result="unschedulable"} 1"#,
            r#"scheduler_schedule_attempts_total{profile="other",result="error"} 1"#,
        ]
    );
    let text = m.encode_text();
    assert!(
        text.contains("# TYPE scheduler_schedule_attempts_total counter"),
        "{text}"
    );
    // 1 ms falls in the first bucket (le 0.001), 3 ms only from le 0.004.
    let scheduled = r#"profile="default-scheduler",result="scheduled""#;
    let bucket = |le: &str| {
        format!(r#"scheduler_scheduling_attempt_duration_seconds_bucket{{{scheduled},le="{le}"}}"#)
    };
    for (le, n) in [
        ("0.001", 1),
        ("0.002", 1),
        ("0.004", 2),
        ("16.384", 2),
        ("+Inf", 2),
    ] {
        let want = format!("{} {n}", bucket(le));
        assert!(text.contains(&want), "missing {want} in\n{text}");
    }
}

#[test]
fn attempt_duration_buckets_are_upstreams() {
    let m = SchedulerMetrics::new();
    m.observe_attempt(AttemptResult::Scheduled, "p", Duration::ZERO);
    let les: Vec<String> = lines(&m, "scheduler_scheduling_attempt_duration_seconds_bucket")
        .iter()
        .map(|l| {
            let start = l.find(",le=\"").unwrap() + 5;
            let end = start + l[start..].find('"').unwrap();
            l[start..end].to_owned()
        })
        .collect();
    // 0.001 × 2^i for i in 0..15, then +Inf.
    assert_eq!(les.len(), 16);
    assert_eq!(les[0], "0.001");
    assert_eq!(les[14], "16.384");
    assert_eq!(les[15], "+Inf");
}

#[test]
fn sli_attempts_label_caps_at_fifteen() {
    let m = SchedulerMetrics::new();
    for (attempts, secs) in [(1, 0.005), (1, 0.5), (3, 1.0), (15, 2.0), (40, 3.0)] {
        m.observe_scheduled_pod(attempts, Duration::from_secs_f64(secs));
    }
    let mut counts = lines(&m, "scheduler_pod_scheduling_sli_duration_seconds_count");
    counts.sort();
    assert_eq!(
        counts,
        [
            r#"scheduler_pod_scheduling_sli_duration_seconds_count{attempts="1"} 2"#,
            r#"scheduler_pod_scheduling_sli_duration_seconds_count{attempts="15+"} 2"#,
            r#"scheduler_pod_scheduling_sli_duration_seconds_count{attempts="3"} 1"#,
        ]
    );
    // 5 ms is under the first bucket (10 ms).
    assert!(m.encode_text().contains(
        r#"scheduler_pod_scheduling_sli_duration_seconds_bucket{attempts="1",le="0.01"} 1"#
    ));
}

#[test]
fn pending_pods_are_zero_without_a_queue() {
    let m = SchedulerMetrics::new();
    let mut got = lines(&m, "scheduler_pending_pods");
    got.sort();
    assert_eq!(
        got,
        [
            r#"scheduler_pending_pods{queue="active"} 0"#,
            r#"scheduler_pending_pods{queue="backoff"} 0"#,
            r#"scheduler_pending_pods{queue="gated"} 0"#,
            r#"scheduler_pending_pods{queue="unschedulable"} 0"#,
        ]
    );
    assert_eq!(
        lines(&m, "scheduler_preemption_attempts_total"),
        ["scheduler_preemption_attempts_total 0"]
    );
}
