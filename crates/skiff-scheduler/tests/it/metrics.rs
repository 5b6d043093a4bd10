//! The scheduler's metrics as `skiff server` serves them: on the API
//! server's `/metrics`, read after scheduling pods on hollow nodes (which
//! finish the graceful deletion of preemption victims).

use crate::support;

use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use support::{Cluster, cpu_request, wait_for};

/// The value of the sample `name{labels}` (or `name` without labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (s, v) = l.rsplit_once(' ')?;
        (s == series).then(|| v.parse().ok())?
    })
}

const SCHEDULED: &str =
    r#"scheduler_schedule_attempts_total{profile="default-scheduler",result="scheduled"}"#;
const UNSCHEDULABLE: &str =
    r#"scheduler_schedule_attempts_total{profile="default-scheduler",result="unschedulable"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_queues_and_preemption_show_on_the_api_servers_metrics() {
    let (mut c, _metrics) = Cluster::with_scheduler_serving_metrics().await;
    c.hollow_nodes("m-", 2, "4", &[]).await;
    let pcs: Api<PriorityClass> = Api::all(c.client.clone());
    let pc: PriorityClass =
        serde_json::from_value(json!({"metadata": {"name": "high"}, "value": 1000})).unwrap();
    pcs.create(&PostParams::default(), &pc).await.unwrap();

    // Two pods fill both nodes; a third of the same priority fits nowhere
    // and has no victims.
    for n in ["low-0", "low-1", "stuck"] {
        c.create_pod(
            "default",
            n,
            json!({}),
            json!({"containers": cpu_request("3")}),
        )
        .await;
    }
    c.bound_node("default", "low-0").await;
    c.bound_node("default", "low-1").await;
    c.unschedulable_message("default", "stuck").await;
    let text = wait_for("two scheduled attempts", async || {
        let text = c.metrics_text().await;
        (sample(&text, SCHEDULED) == Some(2.0)).then_some(text)
    })
    .await;
    assert!(sample(&text, UNSCHEDULABLE).unwrap() >= 1.0, "{text}");
    assert!(sample(&text, "scheduler_preemption_attempts_total").unwrap() >= 1.0);
    assert_eq!(
        sample(&text, "scheduler_preemption_victims_count"),
        Some(0.0)
    );
    // Without leader election there is no leadership to report.
    assert!(!text.contains("leader_election_master_status{"), "{text}");
    // The API server's own metrics are still there.
    assert!(text.contains("apiserver_request_total{"), "{text}");
    assert!(
        text.contains("# TYPE scheduler_scheduling_attempt_duration_seconds histogram"),
        "{text}"
    );

    // A high-priority pod evicts one low pod and lands in its place.
    c.create_pod(
        "default",
        "vip",
        json!({}),
        json!({"containers": cpu_request("3"), "priorityClassName": "high"}),
    )
    .await;
    c.bound_node("default", "vip").await;
    let text = wait_for("the preemptor's scheduled attempt", async || {
        let text = c.metrics_text().await;
        (sample(&text, SCHEDULED) == Some(3.0)).then_some(text)
    })
    .await;
    assert_eq!(
        sample(&text, "scheduler_preemption_victims_count"),
        Some(1.0)
    );
    assert_eq!(sample(&text, "scheduler_preemption_victims_sum"), Some(1.0));
    assert!(sample(&text, "scheduler_preemption_attempts_total").unwrap() >= 2.0);
    // Every bound pod is in the SLI histogram.
    let sli: f64 = text
        .lines()
        .filter(|l| l.starts_with("scheduler_pod_scheduling_sli_duration_seconds_count{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert_eq!(sli, 3.0, "{text}");

    // "stuck" still waits, parked in unschedulablePods.
    wait_for("stuck to be the only pending pod", async || {
        let text = c.metrics_text().await;
        let q = |name: &str| {
            sample(
                &text,
                &format!(r#"scheduler_pending_pods{{queue="{name}"}}"#),
            )
        };
        (q("unschedulable") == Some(1.0)
            && q("active") == Some(0.0)
            && q("backoff") == Some(0.0)
            && q("gated") == Some(0.0))
        .then_some(())
    })
    .await;
    c.stop().await;
}
