//! The Job controller against the real API server. No node runs the pods:
//! they stay unscheduled and the test plays the kubelet, writing their
//! final status through `pods/status`.

use crate::support;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::{Cluster, wait_for};

const FINALIZER: &str = "batch.kubernetes.io/job-tracking";

fn job(name: &str, spec: Value) -> Job {
    let mut v = json!({
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox"}],
                },
            },
        },
    });
    for (k, val) in spec.as_object().unwrap() {
        v["spec"][k] = val.clone();
    }
    serde_json::from_value(v).unwrap()
}

async fn create(c: &Cluster, j: Job) -> Job {
    let api: Api<Job> = Api::namespaced(c.client.clone(), "default");
    api.create(&PostParams::default(), &j).await.unwrap()
}

async fn get(c: &Cluster, name: &str) -> Job {
    let api: Api<Job> = Api::namespaced(c.client.clone(), "default");
    api.get(name).await.unwrap()
}

async fn job_pods(c: &Cluster, name: &str) -> Vec<Pod> {
    c.pods("default")
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={name}")))
        .await
        .unwrap()
        .items
}

fn is_active(p: &Pod) -> bool {
    let phase = p
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("");
    p.metadata.deletion_timestamp.is_none() && phase != "Succeeded" && phase != "Failed"
}

/// Plays the kubelet: the pod's container exited with `code` an hour ago
/// (so no re-creation back-off is left).
async fn finish(c: &Cluster, pod: &Pod, code: i32) {
    let at = (Timestamp::now() - SignedDuration::from_hours(1)).to_string();
    let phase = if code == 0 { "Succeeded" } else { "Failed" };
    let status = json!({"status": {
        "phase": phase,
        "containerStatuses": [{
            "name": "c", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {
                "exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" },
                "startedAt": at, "finishedAt": at,
            }},
        }],
    }});
    c.pods("default")
        .patch_status(
            pod.metadata.name.as_deref().unwrap(),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
        .unwrap();
}

fn condition<'a>(j: &'a Job, type_: &str) -> Option<&'a k8s_openapi::api::batch::v1::JobCondition> {
    j.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

async fn wait_condition(c: &Cluster, name: &str, type_: &str) -> Job {
    wait_for(&format!("{name} {type_}"), async || {
        let j = get(c, name).await;
        condition(&j, type_).is_some().then_some(j)
    })
    .await
}

fn uncounted_empty(j: &Job) -> bool {
    j.status
        .as_ref()
        .and_then(|s| s.uncounted_terminated_pods.as_ref())
        .is_none_or(|u| {
            u.succeeded.as_ref().is_none_or(Vec::is_empty)
                && u.failed.as_ref().is_none_or(Vec::is_empty)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_run_at_most_parallelism_at_once_then_complete() {
    let c = Cluster::start(0).await;
    create(&c, job("work", json!({"completions": 5, "parallelism": 2}))).await;
    let mut finished = std::collections::HashSet::new();
    let mut max_active = 0;
    let done = wait_for("work completes", async || {
        let pods = job_pods(&c, "work").await;
        let active: Vec<&Pod> = pods.iter().filter(|p| is_active(p)).collect();
        max_active = max_active.max(active.len());
        for p in &pods {
            assert!(
                p.metadata
                    .finalizers
                    .iter()
                    .flatten()
                    .any(|f| f == FINALIZER)
                    || !is_active(p)
            );
            assert!(p.metadata.name.as_deref().unwrap().starts_with("work-"));
        }
        for p in active {
            if finished.insert(p.metadata.name.clone().unwrap()) {
                finish(&c, p, 0).await;
            }
        }
        let j = get(&c, "work").await;
        condition(&j, "Complete").is_some().then_some(j)
    })
    .await;
    assert!(
        max_active <= 2,
        "at most parallelism pods active, saw {max_active}"
    );
    assert_eq!(finished.len(), 5, "exactly completions pods were started");
    let st = done.status.clone().unwrap();
    assert_eq!(st.succeeded, Some(5));
    assert_eq!(st.active.unwrap_or(0), 0);
    assert!(st.completion_time.is_some() && st.start_time.is_some());
    assert!(uncounted_empty(&done));
    let met = condition(&done, "SuccessCriteriaMet").unwrap();
    assert_eq!(met.reason.as_deref(), Some("CompletionsReached"));
    let complete = condition(&done, "Complete").unwrap();
    assert_eq!(
        complete.message.as_deref(),
        Some("Reached expected number of succeeded pods")
    );
    // Every pod was counted, then released.
    wait_for("finalizers removed", async || {
        job_pods(&c, "work")
            .await
            .iter()
            .all(|p| {
                p.metadata
                    .finalizers
                    .iter()
                    .flatten()
                    .all(|f| f != FINALIZER)
            })
            .then_some(())
    })
    .await;
    wait_for("events", async || {
        (c.events("default", "Completed").await.len() == 1
            && !c.events("default", "SuccessfulCreate").await.is_empty())
        .then_some(())
    })
    .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_pods_exhaust_the_backoff_limit() {
    let c = Cluster::start(0).await;
    create(&c, job("flaky", json!({"backoffLimit": 1}))).await;
    let mut failed = std::collections::HashSet::new();
    let done = wait_for("flaky fails", async || {
        for p in job_pods(&c, "flaky").await.iter().filter(|p| is_active(p)) {
            if failed.insert(p.metadata.name.clone().unwrap()) {
                finish(&c, p, 1).await;
            }
        }
        let j = get(&c, "flaky").await;
        condition(&j, "Failed").is_some().then_some(j)
    })
    .await;
    assert_eq!(failed.len(), 2, "the first pod and one retry");
    let st = done.status.clone().unwrap();
    assert_eq!(st.failed, Some(2));
    assert!(uncounted_empty(&done));
    let f = condition(&done, "Failed").unwrap();
    assert_eq!(f.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(
        f.message.as_deref(),
        Some("Job has reached the specified backoff limit")
    );
    assert!(condition(&done, "FailureTarget").is_some());
    assert!(st.completion_time.is_none());
    wait_for("event", async || {
        (!c.events("default", "BackoffLimitExceeded").await.is_empty()).then_some(())
    })
    .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_job_runs_each_index_once() {
    let c = Cluster::start(0).await;
    create(
        &c,
        job(
            "idx",
            json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"}),
        ),
    )
    .await;
    let pods = wait_for("3 indexed pods", async || {
        let p = job_pods(&c, "idx").await;
        (p.len() == 3).then_some(p)
    })
    .await;
    let mut by_index = std::collections::BTreeMap::new();
    for p in &pods {
        let ix =
            p.metadata.annotations.as_ref().unwrap()["batch.kubernetes.io/job-completion-index"]
                .clone();
        assert_eq!(
            p.metadata.labels.as_ref().unwrap()["batch.kubernetes.io/job-completion-index"],
            ix
        );
        assert!(
            p.metadata
                .name
                .as_deref()
                .unwrap()
                .starts_with(&format!("idx-{ix}-"))
        );
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some(format!("idx-{ix}").as_str()));
        let env = spec.containers[0].env.as_ref().unwrap();
        let e = env
            .iter()
            .find(|e| e.name == "JOB_COMPLETION_INDEX")
            .unwrap();
        let path = &e
            .value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path;
        assert_eq!(
            path,
            "metadata.labels['batch.kubernetes.io/job-completion-index']"
        );
        by_index.insert(ix, p.clone());
    }
    assert_eq!(
        by_index.keys().cloned().collect::<Vec<_>>(),
        ["0", "1", "2"]
    );
    finish(&c, &by_index["0"], 0).await;
    finish(&c, &by_index["2"], 0).await;
    wait_for("completedIndexes 0,2", async || {
        let j = get(&c, "idx").await;
        (j.status.as_ref()?.completed_indexes.as_deref() == Some("0,2")).then_some(())
    })
    .await;
    finish(&c, &by_index["1"], 0).await;
    let done = wait_condition(&c, "idx", "Complete").await;
    let st = done.status.unwrap();
    assert_eq!(st.completed_indexes.as_deref(), Some("0-2"));
    assert_eq!(st.succeeded, Some(3));
    assert_eq!(job_pods(&c, "idx").await.len(), 3, "no index ran twice");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_failure_policy_fails_the_job_on_an_exit_code() {
    let c = Cluster::start(0).await;
    let policy = json!({"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        {"action": "FailJob", "onExitCodes": {"containerName": "c", "operator": "In", "values": [42]}},
    ]});
    create(
        &c,
        job(
            "pfp",
            json!({"backoffLimit": 6, "podFailurePolicy": policy}),
        ),
    )
    .await;
    let pod = wait_for("pod", async || job_pods(&c, "pfp").await.into_iter().next()).await;
    finish(&c, &pod, 42).await;
    let done = wait_condition(&c, "pfp", "Failed").await;
    let f = condition(&done, "Failed").unwrap();
    assert_eq!(f.reason.as_deref(), Some("PodFailurePolicy"));
    let name = pod.metadata.name.unwrap();
    assert_eq!(
        f.message.as_deref().unwrap(),
        format!(
            "Container c for pod default/{name} failed with exit code 42 matching FailJob rule at index 1"
        )
    );
    assert_eq!(done.status.as_ref().unwrap().failed, Some(1));
    assert_eq!(
        job_pods(&c, "pfp").await.len(),
        1,
        "no replacement was created"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_deletes_pods_and_resume_restarts_the_clock() {
    let c = Cluster::start(0).await;
    create(
        &c,
        job(
            "sus",
            json!({"parallelism": 2, "completions": 4, "suspend": true}),
        ),
    )
    .await;
    let j = wait_condition(&c, "sus", "Suspended").await;
    let cond = condition(&j, "Suspended").unwrap();
    assert_eq!(cond.reason.as_deref(), Some("JobSuspended"));
    assert!(
        j.status.as_ref().unwrap().start_time.is_none(),
        "not started while suspended"
    );
    assert!(job_pods(&c, "sus").await.is_empty());

    let api: Api<Job> = Api::namespaced(c.client.clone(), "default");
    let set = |s: bool| json!({"spec": {"suspend": s}});
    api.patch("sus", &PatchParams::default(), &Patch::Merge(set(false)))
        .await
        .unwrap();
    let resumed = wait_for("resumed with 2 pods", async || {
        let j = get(&c, "sus").await;
        let s = j
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == "Suspended")?;
        let pods = job_pods(&c, "sus").await;
        (s.status == "False" && pods.iter().filter(|p| is_active(p)).count() == 2).then_some(j)
    })
    .await;
    let cond = resumed
        .status
        .as_ref()
        .unwrap()
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "Suspended")
        .unwrap()
        .clone();
    assert_eq!(cond.reason.as_deref(), Some("JobResumed"));
    assert!(resumed.status.as_ref().unwrap().start_time.is_some());

    api.patch("sus", &PatchParams::default(), &Patch::Merge(set(true)))
        .await
        .unwrap();
    wait_for("pods deleted on suspend", async || {
        let j = get(&c, "sus").await;
        let pods = job_pods(&c, "sus").await;
        (condition(&j, "Suspended").is_some()
            && pods.is_empty()
            && j.status.as_ref()?.active.unwrap_or(0) == 0)
            .then_some(())
    })
    .await;
    let j = get(&c, "sus").await;
    assert_eq!(
        j.status.as_ref().unwrap().failed.unwrap_or(0),
        0,
        "suspension is no failure"
    );
    for reason in ["Suspended", "Resumed", "SuccessfulDelete"] {
        wait_for(reason, async || {
            (!c.events("default", reason).await.is_empty()).then_some(())
        })
        .await;
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_deadline_fails_a_job_that_runs_too_long() {
    let c = Cluster::start(0).await;
    create(
        &c,
        job(
            "slow",
            json!({"activeDeadlineSeconds": 1, "parallelism": 2, "completions": 2}),
        ),
    )
    .await;
    let done = wait_condition(&c, "slow", "Failed").await;
    let f = condition(&done, "Failed").unwrap();
    assert_eq!(f.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(
        f.message.as_deref(),
        Some("Job was active longer than specified deadline")
    );
    let st = done.status.clone().unwrap();
    assert_eq!(st.active.unwrap_or(0), 0);
    assert!(uncounted_empty(&done));
    wait_for("pods gone", async || {
        job_pods(&c, "slow").await.is_empty().then_some(())
    })
    .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_wait_for_complete_returns() {
    let c = Cluster::start(0).await;
    create(&c, job("x", json!({}))).await;
    let mut wait = tokio::process::Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .args(["wait", "--for=condition=complete", "job/x", "--timeout=30s"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pod = wait_for("pod", async || job_pods(&c, "x").await.into_iter().next()).await;
    finish(&c, &pod, 0).await;
    let status = tokio::time::timeout(std::time::Duration::from_secs(40), wait.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "kubectl wait failed: {status}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_are_deleted_after_their_ttl() {
    let c = Cluster::start(0).await;
    create(&c, job("short", json!({"ttlSecondsAfterFinished": 1}))).await;
    create(&c, job("kept", json!({}))).await;
    for name in ["short", "kept"] {
        let pod = wait_for("pod", async || job_pods(&c, name).await.into_iter().next()).await;
        finish(&c, &pod, 0).await;
    }
    wait_condition(&c, "kept", "Complete").await;
    // Not waited for as Complete: a second after it finishes it may already
    // be gone, and the TTL controller deletes only finished Jobs.
    let api: Api<Job> = Api::namespaced(c.client.clone(), "default");
    wait_for("short deleted with its pods", async || {
        (api.get_opt("short").await.unwrap().is_none() && job_pods(&c, "short").await.is_empty())
            .then_some(())
    })
    .await;
    assert!(api.get_opt("kept").await.unwrap().is_some(), "no TTL, kept");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_limit_per_index_fails_only_that_index() {
    let c = Cluster::start(0).await;
    let spec = json!({"completions": 2, "parallelism": 2, "completionMode": "Indexed", "backoffLimitPerIndex": 1});
    create(&c, job("per", spec)).await;
    let index_of = |p: &Pod| {
        p.metadata.annotations.as_ref().unwrap()["batch.kubernetes.io/job-completion-index"].clone()
    };
    let mut seen = std::collections::HashSet::new();
    let mut failures_of_0 = Vec::new();
    let done = wait_for("per fails", async || {
        for p in job_pods(&c, "per").await.iter().filter(|p| is_active(p)) {
            if !seen.insert(p.metadata.name.clone().unwrap()) {
                continue;
            }
            if index_of(p) == "0" {
                let count = p.metadata.annotations.as_ref().unwrap()["batch.kubernetes.io/job-index-failure-count"].clone();
                failures_of_0.push(count);
                finish(&c, p, 1).await;
            } else {
                finish(&c, p, 0).await;
            }
        }
        let j = get(&c, "per").await;
        condition(&j, "Failed").is_some().then_some(j)
    })
    .await;
    assert_eq!(
        failures_of_0,
        ["0", "1"],
        "index 0 ran twice, its failures carried over"
    );
    let st = done.status.clone().unwrap();
    assert_eq!(st.failed_indexes.as_deref(), Some("0"));
    assert_eq!(st.completed_indexes.as_deref(), Some("1"));
    assert_eq!((st.failed, st.succeeded), (Some(2), Some(1)));
    assert_eq!(
        condition(&done, "Failed").unwrap().reason.as_deref(),
        Some("FailedIndexes")
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_policy_completes_early_and_removes_the_rest() {
    let c = Cluster::start(0).await;
    let spec = json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed",
        "successPolicy": {"rules": [{"succeededIndexes": "0"}]}});
    create(&c, job("leader", spec)).await;
    let pods = wait_for("3 pods", async || {
        let p = job_pods(&c, "leader").await;
        (p.len() == 3).then_some(p)
    })
    .await;
    let leader = pods
        .iter()
        .find(|p| {
            p.metadata.labels.as_ref().unwrap()["batch.kubernetes.io/job-completion-index"] == "0"
        })
        .unwrap();
    finish(&c, leader, 0).await;
    let done = wait_condition(&c, "leader", "Complete").await;
    let met = condition(&done, "SuccessCriteriaMet").unwrap();
    assert_eq!(met.reason.as_deref(), Some("SuccessPolicy"));
    assert_eq!(met.message.as_deref(), Some("Matched rules at index 0"));
    assert_eq!(
        condition(&done, "Complete").unwrap().reason.as_deref(),
        Some("SuccessPolicy")
    );
    let st = done.status.unwrap();
    assert_eq!(st.completed_indexes.as_deref(), Some("0"));
    assert_eq!(st.active.unwrap_or(0), 0);
    wait_for("other pods gone", async || {
        job_pods(&c, "leader")
            .await
            .iter()
            .all(|p| !is_active(p))
            .then_some(())
    })
    .await;
    c.stop().await;
}
