//! The CronJob controller against the real API server, with a test clock
//! the tests move; Job completion is simulated through `jobs/status`.
//! One worker, so a key queued after another is synced after it.

use crate::support;

use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use skiff_client::EventRecorder;
use skiff_controllers::controller::run_workers;
use skiff_controllers::cronjob::{Clock, CronJobController};
use skiff_controllers::informer::InformerFactory;
use support::{Cluster, wait_for};
use tokio::sync::watch;
use tokio::task::JoinSet;

const SCHEDULED: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

#[derive(Debug)]
struct TestClock(Mutex<Timestamp>);

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
}

struct Env {
    cluster: Cluster,
    controller: Arc<CronJobController>,
    clock: Arc<TestClock>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Env {
    async fn start() -> Env {
        let cluster = Cluster::start_bare(0).await;
        let client = cluster.client.clone();
        let factory = InformerFactory::new(client.clone());
        let events = Arc::new(EventRecorder::spawn(
            client.clone(),
            "cronjob-controller",
            "cronjob-controller-test",
            skiff_client::events::DEFAULT_EVENT_QUEUE,
        ));
        let clock = Arc::new(TestClock(Mutex::new(Timestamp::now())));
        let controller = CronJobController::new(client, &factory, events, clock.clone());
        let (stop, rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        factory.start(&mut tasks, rx.clone());
        factory.wait_for_cache_sync().await;
        tasks.spawn(run_workers(controller.clone(), controller.queue(), 1, rx));
        Env {
            cluster,
            controller,
            clock,
            stop,
            tasks,
        }
    }

    async fn stop(mut self) {
        self.stop.send_replace(true);
        while self.tasks.join_next().await.is_some() {}
        self.cluster.stop().await;
    }

    fn cronjobs(&self) -> Api<CronJob> {
        Api::namespaced(self.cluster.client.clone(), "default")
    }

    fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.cluster.client.clone(), "default")
    }

    /// Creates the CronJob; returns its creation time.
    async fn create(&self, name: &str, spec: Value) -> Timestamp {
        let mut spec = spec;
        spec["jobTemplate"] = json!({
            "metadata": {"labels": {"app": name}, "annotations": {"note": "from-template"}},
            "spec": {"template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "c", "image": "busybox:1"}],
            }}},
        });
        let cj: CronJob =
            serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap();
        let cj = self
            .cronjobs()
            .create(&PostParams::default(), &cj)
            .await
            .unwrap();
        cj.metadata.creation_timestamp.unwrap().0
    }

    /// Moves the clock to `t` and syncs `name`.
    fn tick(&self, name: &str, t: Timestamp) {
        *self.clock.0.lock().unwrap() = t;
        self.controller.queue().add(format!("default/{name}"));
    }

    async fn job_names(&self, app: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .jobs()
            .list(&ListParams::default().labels(&format!("app={app}")))
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|j| j.metadata.name.unwrap())
            .collect();
        names.sort();
        names
    }

    async fn wait_jobs(&self, app: &str, want: &[String]) {
        wait_for(&format!("jobs of {app} = {want:?}"), async || {
            (self.job_names(app).await == want).then_some(())
        })
        .await;
    }

    async fn active(&self, name: &str) -> Vec<String> {
        let cj = self.cronjobs().get(name).await.unwrap();
        cj.status
            .and_then(|s| s.active)
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.name.unwrap())
            .collect()
    }

    async fn wait_event(&self, reason: &str, note_has: &str) {
        wait_for(&format!("{reason} event"), async || {
            self.cluster
                .events("default", reason)
                .await
                .iter()
                .any(|e| e.note.as_deref().is_some_and(|n| n.contains(note_has)))
                .then_some(())
        })
        .await;
    }

    /// Sets a Job's Complete or Failed condition through jobs/status.
    async fn finish(&self, job: &str, cond: &str, start: Timestamp) {
        let mut status = json!({
            "startTime": start.to_string(),
            "conditions": [{"type": cond, "status": "True", "lastTransitionTime": start.to_string()}],
        });
        if cond == "Complete" {
            status["completionTime"] = json!((start + SignedDuration::from_secs(5)).to_string());
            status["succeeded"] = json!(1);
        } else {
            status["failed"] = json!(1);
        }
        self.jobs()
            .patch_status(
                job,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await
            .unwrap();
    }
}

/// The first minute boundary after `t` (the first `*/1` run after it).
fn next_minute(t: Timestamp) -> Timestamp {
    Timestamp::from_second((t.as_second() / 60 + 1) * 60).unwrap()
}

fn job_name(cj: &str, t: Timestamp) -> String {
    format!("{cj}-{}", t.as_second() / 60)
}

const MINUTE: SignedDuration = SignedDuration::from_secs(60);

#[tokio::test]
async fn a_due_schedule_creates_its_job_and_kubectl_sees_it() {
    let env = Env::start().await;
    let created = env
        .create("every", json!({"schedule": "*/1 * * * *"}))
        .await;
    let last_schedule_cell = async || {
        let (ok, out) = env.cluster.kubectl(&["get", "cronjob", "every"]).await;
        assert!(ok, "{out}");
        let header = out.lines().next().unwrap();
        let col = header.find("LAST SCHEDULE").expect("LAST SCHEDULE column");
        let row = out.lines().nth(1).unwrap();
        row[col..].split_whitespace().next().unwrap().to_owned()
    };
    assert_eq!(last_schedule_cell().await, "<none>");
    let first = next_minute(created);
    env.tick("every", first + SignedDuration::from_secs(1));
    let name = job_name("every", first);
    env.wait_jobs("every", std::slice::from_ref(&name)).await;

    let job = env.jobs().get(&name).await.unwrap();
    let ann = job.metadata.annotations.clone().unwrap();
    assert_eq!(ann["note"], "from-template");
    let want_ts = first.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    assert_eq!(ann[SCHEDULED], want_ts);
    let owner = &job.metadata.owner_references.clone().unwrap()[0];
    let cj = env.cronjobs().get("every").await.unwrap();
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), Some(&owner.uid)),
        ("CronJob", "every", cj.metadata.uid.as_ref())
    );
    assert_eq!(
        (owner.controller, owner.block_owner_deletion),
        (Some(true), Some(true))
    );
    wait_for("status.active and lastScheduleTime", async || {
        let cj = env.cronjobs().get("every").await.unwrap();
        let st = cj.status?;
        (st.last_schedule_time?.0 == first && env.active("every").await == [name.clone()])
            .then_some(())
    })
    .await;
    env.wait_event("SuccessfulCreate", &format!("Created job {name}"))
        .await;

    // Synced again at the same time: the run is not created twice.
    env.tick("every", first + SignedDuration::from_secs(2));
    // The test clock runs ahead of the server's, so the time since the
    // last schedule is negative, which prints as <invalid>; it is no
    // longer <none>.
    assert_ne!(last_schedule_cell().await, "<none>");

    // kubectl makes a Job from the CronJob's template (API side); the
    // controller reports it as a Job it did not create.
    let (ok, out) = env
        .cluster
        .kubectl(&["create", "job", "manual", "--from=cronjob/every"])
        .await;
    assert!(ok, "{out}");
    let manual = env.jobs().get("manual").await.unwrap();
    assert_eq!(manual.metadata.labels.unwrap()["app"], "every");
    env.wait_event("UnexpectedJob", "manual").await;
    assert_eq!(
        env.job_names("every").await,
        [name.clone(), "manual".into()]
    );
    env.stop().await;
}

#[tokio::test]
async fn forbid_skips_while_active_and_replace_replaces() {
    let env = Env::start().await;
    let created = env
        .create(
            "forbid",
            json!({"schedule": "*/1 * * * *", "concurrencyPolicy": "Forbid"}),
        )
        .await;
    env.create(
        "replace",
        json!({"schedule": "*/1 * * * *", "concurrencyPolicy": "Replace"}),
    )
    .await;
    let t1 = next_minute(created);
    let t2 = t1 + MINUTE;
    env.tick("forbid", t1);
    env.tick("replace", t1);
    env.wait_jobs("forbid", &[job_name("forbid", t1)]).await;
    env.wait_jobs("replace", &[job_name("replace", t1)]).await;
    wait_for("both recorded as active", async || {
        (env.active("forbid").await.len() == 1 && env.active("replace").await.len() == 1)
            .then_some(())
    })
    .await;

    env.tick("forbid", t2);
    env.wait_event("JobAlreadyActive", "concurrency policy is Forbid")
        .await;
    assert_eq!(env.job_names("forbid").await, [job_name("forbid", t1)]);

    env.tick("replace", t2);
    env.wait_jobs("replace", &[job_name("replace", t2)]).await;
    env.wait_event("SuccessfulDelete", &job_name("replace", t1))
        .await;
    wait_for("replace's active is the new run", async || {
        (env.active("replace").await == [job_name("replace", t2)]).then_some(())
    })
    .await;

    // Once the forbidden run finishes, the due run starts.
    env.finish(&job_name("forbid", t1), "Complete", t1).await;
    env.tick("forbid", t2 + SignedDuration::from_secs(1));
    env.wait_jobs("forbid", &[job_name("forbid", t1), job_name("forbid", t2)])
        .await;
    env.wait_event("SawCompletedJob", "condition: Complete")
        .await;
    wait_for("lastSuccessfulTime", async || {
        let cj = env.cronjobs().get("forbid").await.unwrap();
        let done = cj.status?.last_successful_time?.0;
        (done == t1 + SignedDuration::from_secs(5)).then_some(())
    })
    .await;
    env.stop().await;
}

#[tokio::test]
async fn history_limits_delete_the_oldest_finished_jobs() {
    let env = Env::start().await;
    let created = env
        .create(
            "hist",
            json!({"schedule": "*/1 * * * *", "successfulJobsHistoryLimit": 1,
                   "failedJobsHistoryLimit": 1}),
        )
        .await;
    let t1 = next_minute(created);
    let times = [t1, t1 + MINUTE, t1 + MINUTE * 2, t1 + MINUTE * 3];
    let mut names = Vec::new();
    for t in times {
        env.tick("hist", t);
        names.push(job_name("hist", t));
        env.wait_jobs("hist", &names).await;
    }
    env.finish(&names[0], "Complete", times[0]).await;
    env.finish(&names[1], "Complete", times[1]).await;
    env.finish(&names[2], "Failed", times[2]).await;
    env.finish(&names[3], "Failed", times[3]).await;
    env.tick("hist", times[3] + SignedDuration::from_secs(1));
    // The newest of each kind stays.
    env.wait_jobs("hist", &[names[1].clone(), names[3].clone()])
        .await;
    env.wait_event("SuccessfulDelete", &names[0]).await;
    env.stop().await;
}

#[tokio::test]
async fn suspend_and_unknown_zones_stop_firing() {
    let env = Env::start().await;
    let created = env
        .create(
            "paused",
            json!({"schedule": "*/1 * * * *", "suspend": true}),
        )
        .await;
    env.create(
        "mars",
        json!({"schedule": "*/1 * * * *", "timeZone": "Mars/Olympus"}),
    )
    .await;
    env.create("marker", json!({"schedule": "*/1 * * * *"}))
        .await;
    let t1 = next_minute(created) + MINUTE;
    env.tick("paused", t1);
    env.tick("mars", t1);
    // One worker: once the marker's run exists, the others were synced.
    env.tick("marker", t1);
    env.wait_jobs("marker", &[job_name("marker", t1)]).await;
    env.wait_event(
        "UnknownTimeZone",
        "invalid timeZone: \"Mars/Olympus\": unknown time zone Mars/Olympus",
    )
    .await;
    assert!(env.job_names("paused").await.is_empty());
    assert!(env.job_names("mars").await.is_empty());

    // Resumed: the most recent due time runs.
    env.cronjobs()
        .patch(
            "paused",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": false}})),
        )
        .await
        .unwrap();
    env.tick("paused", t1);
    env.wait_jobs("paused", &[job_name("paused", t1)]).await;
    env.stop().await;
}

#[tokio::test]
async fn an_existing_run_of_ours_is_adopted_not_duplicated() {
    let env = Env::start().await;
    let created = env
        .create("adopt", json!({"schedule": "*/1 * * * *"}))
        .await;
    let cj = env.cronjobs().get("adopt").await.unwrap();
    let t1 = next_minute(created);
    // As if we crashed after creating the run but before writing status.
    let job: Job = serde_json::from_value(json!({
        "metadata": {
            "name": job_name("adopt", t1),
            "labels": {"app": "adopt"},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "adopt",
                                 "uid": cj.metadata.uid.clone().unwrap(), "controller": true}],
        },
        "spec": {"template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox:1"}],
        }}},
    }))
    .unwrap();
    env.jobs()
        .create(&PostParams::default(), &job)
        .await
        .unwrap();
    env.tick("adopt", t1);
    wait_for("the existing run recorded as active", async || {
        let cj = env.cronjobs().get("adopt").await.unwrap();
        let last = cj.status?.last_schedule_time?.0;
        (last == t1 && env.active("adopt").await == [job_name("adopt", t1)]).then_some(())
    })
    .await;
    assert_eq!(env.job_names("adopt").await, [job_name("adopt", t1)]);
    assert!(
        env.cluster
            .events("default", "SuccessfulCreate")
            .await
            .is_empty(),
        "nothing was created"
    );
    env.stop().await;
}
