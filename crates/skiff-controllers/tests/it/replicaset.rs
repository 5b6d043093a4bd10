//! The ReplicaSet and ReplicationController controllers against the real
//! API server, with hollow nodes making pods Running and Ready.

use crate::support;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::{Cluster, NODE, wait_for};

fn rs(name: &str, app: &str, replicas: i32, extra_spec: Value) -> ReplicaSet {
    let mut v = json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": {"app": app}},
                "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    });
    if let Value::Object(extra) = extra_spec {
        for (k, val) in extra {
            if k == "templateSpec" {
                for (tk, tv) in val.as_object().unwrap() {
                    v["spec"]["template"]["spec"][tk] = tv.clone();
                }
            } else {
                v["spec"][k] = val;
            }
        }
    }
    serde_json::from_value(v).unwrap()
}

async fn get_rs(api: &Api<ReplicaSet>, name: &str) -> ReplicaSet {
    api.get(name).await.unwrap()
}

/// Waits until events with `reason` in default count at least `n`
/// (repeats are one event with a series, as the event recorder aggregates
/// them); those events.
async fn wait_events(
    c: &Cluster,
    reason: &str,
    n: i32,
) -> Vec<k8s_openapi::api::events::v1::Event> {
    wait_for(&format!("{n} {reason} events"), async || {
        let e = c.events("default", reason).await;
        let total: i32 = e
            .iter()
            .map(|e| e.series.as_ref().map_or(1, |s| s.count))
            .sum();
        (total >= n).then_some(e)
    })
    .await
}

fn owned_by(p: &Pod, uid: &str) -> bool {
    p.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == uid && r.controller == Some(true) && r.block_owner_deletion == Some(true))
}

/// Waits until `n` active pods carry `app` and the RS status shows `n`
/// replicas, ready and available at its generation.
async fn wait_settled(c: &Cluster, ns: &str, name: &str, app: &str, n: usize) -> Vec<Pod> {
    let api: Api<ReplicaSet> = Api::namespaced(c.client.clone(), ns);
    let n32 = i32::try_from(n).unwrap();
    wait_for(&format!("{name} at {n} ready replicas"), async || {
        let r = get_rs(&api, name).await;
        let s = r.status.clone()?;
        let pods = c.active_pods(ns, &format!("app={app}")).await;
        let uid = r.metadata.uid.clone().unwrap();
        (pods.len() == n
            && pods.iter().all(|p| owned_by(p, &uid))
            && s.replicas == n32
            && s.ready_replicas == Some(n32)
            && s.available_replicas == Some(n32)
            && s.fully_labeled_replicas == Some(n32)
            && s.observed_generation == r.metadata.generation)
            .then_some(pods)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_up_and_down_and_replaces_deleted_pods() {
    let c = Cluster::start(1).await;
    let api: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    api.create(&PostParams::default(), &rs("web", "web", 3, json!({})))
        .await
        .unwrap();
    let pods = wait_settled(&c, "default", "web", "web", 3).await;
    for p in &pods {
        assert!(p.metadata.name.as_deref().unwrap().starts_with("web-"));
    }
    wait_events(&c, "SuccessfulCreate", 3).await;

    // Scale up.
    let scale = |n: i32| json!({"spec": {"replicas": n}});
    api.patch("web", &PatchParams::default(), &Patch::Merge(scale(5)))
        .await
        .unwrap();
    wait_settled(&c, "default", "web", "web", 5).await;

    // Scale down.
    api.patch("web", &PatchParams::default(), &Patch::Merge(scale(2)))
        .await
        .unwrap();
    let left = wait_settled(&c, "default", "web", "web", 2).await;
    let deleted = wait_events(&c, "SuccessfulDelete", 3).await;
    assert!(
        deleted[0]
            .note
            .as_deref()
            .unwrap()
            .starts_with("Deleted pod: web-")
    );

    // A pod deleted by hand is replaced.
    let gone = left[0].metadata.name.clone().unwrap();
    c.pods("default")
        .delete(&gone, &DeleteParams::default())
        .await
        .unwrap();
    let now = wait_for("a replacement", async || {
        let pods = wait_settled(&c, "default", "web", "web", 2).await;
        pods.iter()
            .all(|p| p.metadata.name.as_deref() != Some(gone.as_str()))
            .then_some(pods)
    })
    .await;
    assert_eq!(now.len(), 2);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopts_orphans_and_releases_relabelled_pods() {
    // The manager starts after the orphan exists, so its pod cache holds the
    // orphan before it first syncs the ReplicaSet. Started earlier, the pod
    // watch may lag the ReplicaSet watch under load; the controller then
    // creates two pods and deletes one after adopting, which is correct
    // (upstream does the same) but not what this test counts.
    let mut c = Cluster::start_bare(1).await;
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "orphan", "labels": {"app": "db"}},
        "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap();
    c.pods("default")
        .create(&PostParams::default(), &orphan)
        .await
        .unwrap();
    c.start_manager("test", false);
    let api: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    api.create(&PostParams::default(), &rs("db", "db", 2, json!({})))
        .await
        .unwrap();
    let pods = wait_settled(&c, "default", "db", "db", 2).await;
    assert!(
        pods.iter()
            .any(|p| p.metadata.name.as_deref() == Some("orphan")),
        "the orphan was adopted rather than replaced"
    );
    let created = wait_events(&c, "SuccessfulCreate", 1).await;
    assert_eq!(created.len(), 1);
    assert!(created[0].series.is_none(), "one pod created, not two");

    // Relabel the adopted pod: released, and a replacement takes its place.
    let uid = get_rs(&api, "db").await.metadata.uid.unwrap();
    c.pods("default")
        .patch(
            "orphan",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app": "debug"}}})),
        )
        .await
        .unwrap();
    wait_for("the relabelled pod to be released", async || {
        let p = c.pods("default").get("orphan").await.ok()?;
        let refs = p.metadata.owner_references.unwrap_or_default();
        (!refs.iter().any(|r| r.uid == uid)).then_some(())
    })
    .await;
    let pods = wait_settled(&c, "default", "db", "db", 2).await;
    assert!(
        pods.iter()
            .all(|p| p.metadata.name.as_deref() != Some("orphan"))
    );
    // Released pods are left alone.
    assert!(c.pods("default").get("orphan").await.is_ok());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn available_replicas_wait_for_min_ready_seconds() {
    let c = Cluster::start(1).await;
    let api: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    api.create(
        &PostParams::default(),
        &rs("slow", "slow", 2, json!({"minReadySeconds": 3})),
    )
    .await
    .unwrap();
    let start = std::time::Instant::now();
    wait_for("2 ready, 0 available", async || {
        let s = get_rs(&api, "slow").await.status?;
        (s.ready_replicas == Some(2)).then_some(())
    })
    .await;
    let s = get_rs(&api, "slow").await.status.unwrap();
    if start.elapsed().as_secs() < 3 {
        assert_eq!(s.available_replicas, Some(0), "{s:?}");
    }
    // Then available without any further event, through the requeue.
    wait_settled(&c, "default", "slow", "slow", 2).await;
    assert!(start.elapsed().as_secs() >= 3);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_failures_set_replica_failure_until_they_stop() {
    let c = Cluster::start(1).await;
    let api: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    api.create(
        &PostParams::default(),
        &rs(
            "pc",
            "pc",
            2,
            json!({"templateSpec": {"priorityClassName": "gold"}}),
        ),
    )
    .await
    .unwrap();
    let cond = wait_for("ReplicaFailure", async || {
        get_rs(&api, "pc")
            .await
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "ReplicaFailure")
    })
    .await;
    assert_eq!(cond.status, "True");
    assert_eq!(cond.reason.as_deref(), Some("FailedCreate"));
    assert!(
        cond.message
            .as_deref()
            .unwrap()
            .contains("no PriorityClass with name gold was found"),
        "{cond:?}"
    );
    let failed = wait_for("a FailedCreate event", async || {
        let e = c.events("default", "FailedCreate").await;
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert!(
        failed[0]
            .note
            .as_deref()
            .unwrap()
            .starts_with("Error creating: ")
    );
    // Slow start: each failing sync tried one pod, not two.
    assert!(c.active_pods("default", "app=pc").await.is_empty());

    let pcs: Api<k8s_openapi::api::scheduling::v1::PriorityClass> = Api::all(c.client.clone());
    pcs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "gold"}, "value": 1000})).unwrap(),
    )
    .await
    .unwrap();
    wait_settled(&c, "default", "pc", "pc", 2).await;
    let conds = get_rs(&api, "pc").await.status.unwrap().conditions;
    assert!(conds.unwrap_or_default().is_empty());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_controllers_too() {
    let c = Cluster::start(1).await;
    let api: Api<ReplicationController> = Api::namespaced(c.client.clone(), "default");
    let rc: ReplicationController = serde_json::from_value(json!({
        "metadata": {"name": "legacy"},
        "spec": {
            "replicas": 3,
            "selector": {"app": "legacy"},
            "template": {
                "metadata": {"labels": {"app": "legacy"}},
                "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }))
    .unwrap();
    api.create(&PostParams::default(), &rc).await.unwrap();
    let rc = wait_for("the RC at 3 ready", async || {
        let r = api.get("legacy").await.ok()?;
        let s = r.status.clone()?;
        (s.replicas == 3 && s.ready_replicas == Some(3) && s.available_replicas == Some(3))
            .then_some(r)
    })
    .await;
    let pods = c.active_pods("default", "app=legacy").await;
    assert_eq!(pods.len(), 3);
    for p in &pods {
        let r = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (r.kind.as_str(), r.api_version.as_str()),
            ("ReplicationController", "v1")
        );
        assert_eq!(Some(&r.uid), rc.metadata.uid.as_ref());
    }
    api.patch(
        "legacy",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    wait_for("the RC at 1", async || {
        let s = api.get("legacy").await.ok()?.status?;
        let n = c.active_pods("default", "app=legacy").await.len();
        (s.replicas == 1 && n == 1).then_some(())
    })
    .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_scale_rs() {
    let kubectl = std::path::Path::new("/usr/bin/kubectl");
    if !kubectl.exists() {
        eprintln!("no /usr/bin/kubectl: skipped");
        return;
    }
    let c = Cluster::start(1).await;
    let api: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    api.create(&PostParams::default(), &rs("k", "k", 1, json!({})))
        .await
        .unwrap();
    wait_settled(&c, "default", "k", "k", 1).await;
    let out = tokio::process::Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .args(["scale", "rs", "k", "--replicas=4"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "replicaset.apps/k scaled"
    );
    wait_settled(&c, "default", "k", "k", 4).await;
    c.stop().await;
}
