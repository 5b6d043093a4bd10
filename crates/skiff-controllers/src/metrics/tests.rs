use std::time::Duration;

use tokio::time::sleep;

use super::*;

/// The value of the sample `series` (`name{labels}`) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (s, v) = l.rsplit_once(' ')?;
        (s == series).then(|| v.parse().ok())?
    })
}

/// The sample of `metric{name="q"}` (and any further labels).
fn q(m: &ControllerMetrics, metric: &str, extra: &str) -> f64 {
    let text = m.encode_text();
    let series = format!(r#"{metric}{{name="q"{extra}}}"#);
    sample(&text, &series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[tokio::test(start_paused = true)]
async fn queue_metrics_follow_adds_gets_and_dones() {
    let m = ControllerMetrics::new();
    let queue: WorkQueue<String> = m.queue("q");
    assert!(queue.metrics().is_some());
    queue.add("a".into());
    queue.add("a".into());
    queue.add("b".into());
    // A second add of a queued item is no add.
    assert_eq!(q(&m, "workqueue_adds_total", ""), 2.0);
    assert_eq!(q(&m, "workqueue_depth", ""), 2.0);

    sleep(Duration::from_secs(2)).await;
    let a = queue.get().await.unwrap();
    assert_eq!(a, "a");
    assert_eq!(q(&m, "workqueue_depth", ""), 1.0);
    assert_eq!(q(&m, "workqueue_queue_duration_seconds_count", ""), 1.0);
    assert_eq!(q(&m, "workqueue_queue_duration_seconds_sum", ""), 2.0);
    // 2 s is over the 1 s bucket, within the 10 s one.
    let bucket = |le: &str| {
        q(
            &m,
            "workqueue_queue_duration_seconds_bucket",
            &format!(r#",le="{le}""#),
        )
    };
    assert_eq!((bucket("1"), bucket("10")), (0.0, 1.0));
    assert_eq!(bucket("1e-06"), 0.0, "upstream's first bucket");
    assert_eq!(bucket("1000"), 1.0, "upstream's last bucket");

    // Added again while processed: dirty, counted, not yet queued.
    queue.add("a".into());
    assert_eq!(q(&m, "workqueue_adds_total", ""), 3.0);
    assert_eq!(q(&m, "workqueue_depth", ""), 2.0);
    sleep(Duration::from_secs(3)).await;
    assert_eq!(q(&m, "workqueue_unfinished_work_seconds", ""), 3.0);
    assert_eq!(
        q(&m, "workqueue_longest_running_processor_seconds", ""),
        3.0
    );

    let b = queue.get().await.unwrap();
    assert_eq!(b, "b");
    assert_eq!(q(&m, "workqueue_queue_duration_seconds_sum", ""), 2.0 + 5.0);
    sleep(Duration::from_secs(1)).await;
    // "a" for 4 s and "b" for 1 s.
    assert_eq!(q(&m, "workqueue_unfinished_work_seconds", ""), 5.0);
    assert_eq!(
        q(&m, "workqueue_longest_running_processor_seconds", ""),
        4.0
    );

    queue.done(&a);
    assert_eq!(q(&m, "workqueue_work_duration_seconds_count", ""), 1.0);
    assert_eq!(q(&m, "workqueue_work_duration_seconds_sum", ""), 4.0);
    assert_eq!(
        q(&m, "workqueue_longest_running_processor_seconds", ""),
        1.0
    );
    // Requeued by done: still one item deep, no further add.
    assert_eq!(q(&m, "workqueue_depth", ""), 1.0);
    assert_eq!(q(&m, "workqueue_adds_total", ""), 3.0);
    queue.done(&b);
    assert_eq!(q(&m, "workqueue_work_duration_seconds_count", ""), 2.0);
    assert_eq!(q(&m, "workqueue_unfinished_work_seconds", ""), 0.0);
    assert_eq!(
        q(&m, "workqueue_longest_running_processor_seconds", ""),
        0.0
    );

    // The requeued "a" waited since its add while processed (4 s ago).
    let a = queue.get().await.unwrap();
    assert_eq!(
        q(&m, "workqueue_queue_duration_seconds_sum", ""),
        2.0 + 5.0 + 4.0
    );
    queue.done(&a);
    assert_eq!(q(&m, "workqueue_depth", ""), 0.0);
}

#[tokio::test(start_paused = true)]
async fn every_delayed_add_is_a_retry_and_adds_when_due() {
    let m = ControllerMetrics::new();
    let queue: WorkQueue<String> = m.queue("q");
    queue.add_rate_limited("a".into());
    queue.add_after("b".into(), Duration::from_secs(1));
    queue.add_after("c".into(), Duration::ZERO);
    assert_eq!(q(&m, "workqueue_retries_total", ""), 3.0);
    // Only "c" is queued yet; the others count once due.
    assert_eq!(q(&m, "workqueue_adds_total", ""), 1.0);
    assert_eq!(q(&m, "workqueue_depth", ""), 1.0);
    sleep(Duration::from_secs(2)).await;
    assert_eq!(queue.len(), 3);
    assert_eq!(q(&m, "workqueue_adds_total", ""), 3.0);
    assert_eq!(q(&m, "workqueue_depth", ""), 3.0);

    queue.shut_down();
    queue.add_after("d".into(), Duration::from_secs(1));
    queue.add_rate_limited("e".into());
    assert_eq!(
        q(&m, "workqueue_retries_total", ""),
        3.0,
        "none once shut down"
    );
}

#[tokio::test(start_paused = true)]
async fn queues_by_name_and_managers_stay_apart() {
    let (m1, m2) = (ControllerMetrics::new(), ControllerMetrics::new());
    let a: WorkQueue<String> = m1.queue("q");
    let b: WorkQueue<String> = m2.queue("q");
    let other: WorkQueue<String> = m1.queue("other");
    a.add("x".into());
    a.add("y".into());
    b.add("x".into());
    other.add("x".into());
    assert_eq!(q(&m1, "workqueue_adds_total", ""), 2.0);
    assert_eq!(q(&m2, "workqueue_adds_total", ""), 1.0);
    let text = m1.encode_text();
    assert_eq!(
        sample(&text, r#"workqueue_adds_total{name="other"}"#),
        Some(1.0)
    );
    assert!(!m2.encode_text().contains(r#"name="other""#));
    // Every queue reports its unfinished work, zero when idle.
    assert!(
        text.contains("\nworkqueue_unfinished_work_seconds{name=\"other\"} 0.0\n"),
        "{text}"
    );

    // A queue built without metrics works and reports nowhere.
    let plain: WorkQueue<String> = WorkQueue::new();
    assert!(plain.metrics().is_none());
    plain.add("x".into());
    assert_eq!(plain.get().await.as_deref(), Some("x"));
    plain.done(&"x".to_owned());
}

#[test]
fn exposition_uses_upstreams_names_and_types() {
    let m = ControllerMetrics::new();
    let _queue: WorkQueue<String> = m.queue("q");
    m.set_workers("replicaset", 5);
    m.observe_sync("replicaset", SyncResult::Success, Duration::from_millis(3));
    m.observe_sync("replicaset", SyncResult::Error, Duration::from_millis(10));
    m.set_leader("kube-controller-manager", true);
    let text = m.encode_text();
    for (name, kind) in [
        ("workqueue_depth", "gauge"),
        ("workqueue_adds_total", "counter"),
        ("workqueue_queue_duration_seconds", "histogram"),
        ("workqueue_work_duration_seconds", "histogram"),
        ("workqueue_unfinished_work_seconds", "gauge"),
        ("workqueue_longest_running_processor_seconds", "gauge"),
        ("workqueue_retries_total", "counter"),
        ("skiff_controller_workers", "gauge"),
        ("skiff_controller_syncs_total", "counter"),
        ("skiff_controller_sync_duration_seconds", "histogram"),
        ("leader_election_master_status", "gauge"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "no {name} {kind} in\n{text}"
        );
    }
    let s = |series: &str| sample(&text, series);
    assert_eq!(
        s(r#"skiff_controller_workers{controller="replicaset"}"#),
        Some(5.0)
    );
    assert_eq!(
        s(r#"skiff_controller_syncs_total{controller="replicaset",result="success"}"#),
        Some(1.0)
    );
    assert_eq!(
        s(r#"skiff_controller_syncs_total{controller="replicaset",result="error"}"#),
        Some(1.0)
    );
    // 3 ms is within the first bucket (4 ms); 10 ms only from 16 ms.
    let bucket = |result: &str, le: &str| {
        s(&format!(
            r#"skiff_controller_sync_duration_seconds_bucket{{controller="replicaset",result="{result}",le="{le}"}}"#
        ))
    };
    assert_eq!(bucket("success", "0.004"), Some(1.0));
    assert_eq!(bucket("error", "0.008"), Some(0.0));
    assert_eq!(bucket("error", "0.016"), Some(1.0));
    assert_eq!(
        s(r#"leader_election_master_status{name="kube-controller-manager"}"#),
        Some(1.0)
    );
    m.set_leader("kube-controller-manager", false);
    assert_eq!(
        sample(
            &m.encode_text(),
            r#"leader_election_master_status{name="kube-controller-manager"}"#
        ),
        Some(0.0)
    );
}
