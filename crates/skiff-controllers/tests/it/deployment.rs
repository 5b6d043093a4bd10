//! The Deployment controller against the real API server with the
//! ReplicaSet controller and hollow nodes, checked with the real kubectl.

use crate::support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::{Cluster, NODE, patch_retrying, wait_for};

const REVISION: &str = "deployment.kubernetes.io/revision";

fn deployment(name: &str, replicas: i32, strategy: Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "strategy": strategy,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "busybox:1"}]},
            },
        },
    }))
    .unwrap()
}

fn image_of(rs: &ReplicaSet) -> String {
    rs.spec
        .as_ref()
        .unwrap()
        .template
        .as_ref()
        .unwrap()
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image
        .clone()
        .unwrap()
}

fn annotation(rs: &ReplicaSet, key: &str) -> Option<String> {
    rs.metadata.annotations.as_ref()?.get(key).cloned()
}

fn condition(d: &Deployment, type_: &str) -> Option<(String, String)> {
    let c = d
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone().unwrap_or_default()))
}

async fn replica_sets(c: &Cluster, app: &str) -> Vec<ReplicaSet> {
    let api: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    api.list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items
}

/// Waits until the Deployment is fully rolled out to `image`.
async fn wait_complete(c: &Cluster, name: &str, n: i32, image: &str) -> Deployment {
    let api: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    wait_for(&format!("{name} rolled out to {image}"), async || {
        let d = api.get(name).await.unwrap();
        let s = d.status.clone()?;
        let pods = c.active_pods("default", &format!("app={name}")).await;
        let images_ok = pods
            .iter()
            .all(|p| p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some(image));
        (s.observed_generation == d.metadata.generation
            && s.replicas == Some(n)
            && s.updated_replicas == Some(n)
            && s.ready_replicas == Some(n)
            && s.available_replicas == Some(n)
            && pods.len() == usize::try_from(n).unwrap()
            && images_ok
            && condition(&d, "Progressing").is_some_and(|c| c.1 == "NewReplicaSetAvailable"))
        .then_some(d)
    })
    .await
}

async fn set_image(api: &Api<Deployment>, name: &str, image: &str) {
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}});
    patch_retrying(api, name, &Patch::Strategic(patch)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_a_replica_set_and_reports_status() {
    let c = Cluster::start(1).await;
    let api: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    api.create(&PostParams::default(), &deployment("web", 3, json!({})))
        .await
        .unwrap();
    let d = wait_complete(&c, "web", 3, "busybox:1").await;
    assert_eq!(
        condition(&d, "Available"),
        Some(("True".into(), "MinimumReplicasAvailable".into()))
    );
    assert_eq!(d.status.as_ref().unwrap().unavailable_replicas, Some(0));
    assert_eq!(
        d.metadata
            .annotations
            .as_ref()
            .unwrap()
            .get(REVISION)
            .map(String::as_str),
        Some("1")
    );
    let rss = replica_sets(&c, "web").await;
    assert_eq!(rss.len(), 1);
    let rs = &rss[0];
    let hash = rs.metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
    assert_eq!(
        rs.metadata.name.as_deref(),
        Some(format!("web-{hash}").as_str())
    );
    assert_eq!(
        rs.spec
            .as_ref()
            .unwrap()
            .selector
            .match_labels
            .as_ref()
            .unwrap()["pod-template-hash"],
        hash
    );
    assert_eq!(annotation(rs, REVISION).as_deref(), Some("1"));
    assert_eq!(
        annotation(rs, "deployment.kubernetes.io/desired-replicas").as_deref(),
        Some("3")
    );
    // Default 25% surge of 3 rounds up to 1.
    assert_eq!(
        annotation(rs, "deployment.kubernetes.io/max-replicas").as_deref(),
        Some("4")
    );
    let owner = &rs.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("Deployment", d.metadata.uid.as_deref().unwrap())
    );
    for p in c.active_pods("default", "app=web").await {
        assert_eq!(
            p.metadata.labels.as_ref().unwrap()["pod-template-hash"],
            hash
        );
    }
    // Scaling resizes the one ReplicaSet.
    patch_retrying(&api, "web", &Patch::Merge(json!({"spec": {"replicas": 5}}))).await;
    wait_complete(&c, "web", 5, "busybox:1").await;
    assert_eq!(replica_sets(&c, "web").await.len(), 1);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_keeps_availability_and_undo_restores_the_template() {
    let c = Cluster::start(1).await;
    let api: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    let strategy =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}});
    api.create(&PostParams::default(), &deployment("web", 4, strategy))
        .await
        .unwrap();
    wait_complete(&c, "web", 4, "busybox:1").await;
    set_image(&api, "web", "busybox:2").await;

    // Watch availability while kubectl waits for the rollout. The surge
    // bound is the controller's invariant on the ReplicaSets' desired
    // replicas (upstream's NewRSNewReplicas counts spec.replicas): pod counts
    // and `status.replicas` may lag it by one pod while the old ReplicaSet
    // is still deleting the pod it was told to drop, upstream too.
    let watcher = {
        let api = api.clone();
        let rs_api: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
        tokio::spawn(async move {
            let mut min_available = i32::MAX;
            let mut max_total = 0;
            for _ in 0..400 {
                let d = api.get("web").await.unwrap();
                let s = d.status.clone().unwrap();
                min_available = min_available.min(s.available_replicas.unwrap_or(0));
                let desired: i32 = rs_api
                    .list(&ListParams::default().labels("app=web"))
                    .await
                    .unwrap()
                    .items
                    .iter()
                    .filter_map(|rs| rs.spec.as_ref()?.replicas)
                    .sum();
                max_total = max_total.max(desired);
                if s.updated_replicas == Some(4)
                    && s.replicas == Some(4)
                    && s.available_replicas == Some(4)
                    && s.observed_generation == d.metadata.generation
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            (min_available, max_total)
        })
    };
    let (ok, out) = c
        .kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"])
        .await;
    assert!(ok, "kubectl rollout status failed: {out}");
    assert!(out.contains("successfully rolled out"), "{out}");
    let (min_available, max_total) = watcher.await.unwrap();
    assert!(min_available >= 3, "availability fell to {min_available}");
    assert!(
        max_total <= 5,
        "{max_total} desired replicas exceed replicas + maxSurge"
    );
    let d = wait_complete(&c, "web", 4, "busybox:2").await;
    assert_eq!(d.metadata.annotations.as_ref().unwrap()[REVISION], "2");
    let rss = replica_sets(&c, "web").await;
    assert_eq!(rss.len(), 2);
    for rs in &rss {
        let want = if image_of(rs) == "busybox:2" {
            (4, "2")
        } else {
            (0, "1")
        };
        assert_eq!(rs.spec.as_ref().unwrap().replicas, Some(want.0));
        assert_eq!(annotation(rs, REVISION).as_deref(), Some(want.1));
    }

    // Undo goes back to the first template as revision 3.
    let (ok, out) = c.kubectl(&["rollout", "undo", "deployment/web"]).await;
    assert!(ok, "kubectl rollout undo failed: {out}");
    let (ok, out) = c
        .kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"])
        .await;
    assert!(ok, "kubectl rollout status failed: {out}");
    let d = wait_complete(&c, "web", 4, "busybox:1").await;
    assert_eq!(d.metadata.annotations.as_ref().unwrap()[REVISION], "3");
    let rss = replica_sets(&c, "web").await;
    assert_eq!(rss.len(), 2, "the first ReplicaSet is reused");
    let first = rss.iter().find(|r| image_of(r) == "busybox:1").unwrap();
    assert_eq!(annotation(first, REVISION).as_deref(), Some("3"));
    assert_eq!(
        annotation(first, "deployment.kubernetes.io/revision-history").as_deref(),
        Some("1")
    );
    assert_eq!(first.spec.as_ref().unwrap().replicas, Some(4));
    let (ok, out) = c.kubectl(&["rollout", "history", "deployment/web"]).await;
    assert!(ok && out.contains('2') && out.contains('3'), "{out}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_removes_old_pods_before_creating_new_ones() {
    let c = Cluster::start(1).await;
    let api: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    api.create(
        &PostParams::default(),
        &deployment("db", 3, json!({"type": "Recreate"})),
    )
    .await
    .unwrap();
    wait_complete(&c, "db", 3, "busybox:1").await;
    set_image(&api, "db", "busybox:2").await;
    let mut replaced = false;
    for _ in 0..1200 {
        // All pods, terminating ones included: old and new never overlap.
        let pods = c
            .pods("default")
            .list(&ListParams::default().labels("app=db"))
            .await
            .unwrap()
            .items;
        let image = |p: &k8s_openapi::api::core::v1::Pod| {
            p.spec.as_ref().unwrap().containers[0]
                .image
                .clone()
                .unwrap()
        };
        let old = pods.iter().filter(|p| image(p) == "busybox:1").count();
        let new = pods.iter().filter(|p| image(p) == "busybox:2").count();
        assert!(
            old == 0 || new == 0,
            "{old} old pods alongside {new} new ones"
        );
        if new == 3 {
            replaced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(replaced, "the new pods never all appeared");
    wait_complete(&c, "db", 3, "busybox:2").await;
    let (ok, out) = c
        .kubectl(&["rollout", "status", "deployment/db", "--timeout=60s"])
        .await;
    assert!(ok, "{out}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_deployments_do_not_roll_out_and_history_is_trimmed() {
    let c = Cluster::start(1).await;
    let api: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    let mut d = deployment("app", 2, json!({}));
    d.spec.as_mut().unwrap().revision_history_limit = Some(1);
    api.create(&PostParams::default(), &d).await.unwrap();
    wait_complete(&c, "app", 2, "busybox:1").await;

    let (ok, out) = c.kubectl(&["rollout", "pause", "deployment/app"]).await;
    assert!(ok, "{out}");
    set_image(&api, "app", "busybox:2").await;
    let paused = wait_for("the DeploymentPaused condition", async || {
        let d = api.get("app").await.unwrap();
        (condition(&d, "Progressing") == Some(("Unknown".into(), "DeploymentPaused".into()))
            && d.status.as_ref()?.observed_generation == d.metadata.generation)
            .then_some(d)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        replica_sets(&c, "app").await.len(),
        1,
        "no new ReplicaSet while paused"
    );
    // As upstream: no ReplicaSet has the new template, so none is updated,
    // and the old pods keep running.
    let st = paused.status.as_ref().unwrap();
    assert_eq!(
        (st.updated_replicas, st.available_replicas),
        (Some(0), Some(2))
    );

    let (ok, out) = c.kubectl(&["rollout", "resume", "deployment/app"]).await;
    assert!(ok, "{out}");
    let (ok, out) = c
        .kubectl(&["rollout", "status", "deployment/app", "--timeout=60s"])
        .await;
    assert!(ok, "{out}");
    wait_complete(&c, "app", 2, "busybox:2").await;
    // A restart is a new template too; with a history limit of 1 only the
    // latest old ReplicaSet stays.
    let (ok, out) = c.kubectl(&["rollout", "restart", "deployment/app"]).await;
    assert!(ok, "{out}");
    let (ok, out) = c
        .kubectl(&["rollout", "status", "deployment/app", "--timeout=60s"])
        .await;
    assert!(ok, "{out}");
    let rss = wait_for("old ReplicaSets cleaned up", async || {
        let rss = replica_sets(&c, "app").await;
        (rss.len() == 2).then_some(rss)
    })
    .await;
    let mut revisions: Vec<String> = rss
        .iter()
        .map(|r| annotation(r, REVISION).unwrap())
        .collect();
    revisions.sort();
    assert_eq!(revisions, ["2", "3"]);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_rollout_exceeds_its_progress_deadline() {
    let c = Cluster::start(1).await;
    let api: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    let mut d = deployment("stuck", 2, json!({}));
    let spec = d.spec.as_mut().unwrap();
    spec.progress_deadline_seconds = Some(2);
    // Bound to a node that does not exist: never ready.
    spec.template.spec.as_mut().unwrap().node_name = Some("nowhere".into());
    api.create(&PostParams::default(), &d).await.unwrap();
    let d = wait_for("ProgressDeadlineExceeded", async || {
        let d = api.get("stuck").await.unwrap();
        (condition(&d, "Progressing") == Some(("False".into(), "ProgressDeadlineExceeded".into())))
            .then_some(d)
    })
    .await;
    assert_eq!(
        condition(&d, "Available"),
        Some(("False".into(), "MinimumReplicasUnavailable".into()))
    );
    let (ok, out) = c
        .kubectl(&["rollout", "status", "deployment/stuck", "--timeout=20s"])
        .await;
    assert!(!ok, "{out}");
    assert!(out.contains("exceeded its progress deadline"), "{out}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_mid_rollout_is_proportional() {
    let c = Cluster::start(1).await;
    let api: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    // 25% of 10: surge 3, unavailable 2.
    api.create(&PostParams::default(), &deployment("big", 10, json!({})))
        .await
        .unwrap();
    wait_complete(&c, "big", 10, "busybox:1").await;
    // New pods go to a node that does not exist: the rollout stalls with
    // the old ReplicaSet at 8 and the new one at 5 (8 available, 13 pods).
    let patch = json!({"spec": {"template": {"spec": {"nodeName": "nowhere"}}}});
    patch_retrying(&api, "big", &Patch::Strategic(patch)).await;
    let sizes = async |want: (i32, i32)| {
        wait_for(&format!("old/new at {want:?}"), async || {
            let rss = replica_sets(&c, "big").await;
            let size = |old: bool| {
                rss.iter()
                    .filter(|r| {
                        let n = r.spec.as_ref().unwrap().template.as_ref().unwrap();
                        (n.spec.as_ref().unwrap().node_name.as_deref() == Some(NODE)) == old
                    })
                    .map(|r| r.spec.as_ref().unwrap().replicas.unwrap())
                    .sum::<i32>()
            };
            (rss.len() == 2 && (size(true), size(false)) == want).then_some(())
        })
        .await;
    };
    sizes((8, 5)).await;
    // Scaling to 20 (25 with surge) spreads 12 more by the max-replicas
    // annotation (13): old 8 -> round(8*25/13) = 15, new 5 -> 10.
    patch_retrying(
        &api,
        "big",
        &Patch::Merge(json!({"spec": {"replicas": 20}})),
    )
    .await;
    sizes((15, 10)).await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopts_a_matching_orphan_replica_set_and_releases_it_when_relabelled() {
    let c = Cluster::start(1).await;
    let d = deployment("kept", 2, json!({}));
    let spec = d.spec.clone().unwrap();
    let orphan: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "kept-orphan", "labels": {"app": "kept"}},
        "spec": {"replicas": 2, "selector": spec.selector, "template": spec.template},
    }))
    .unwrap();
    let rs_api: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let orphan = rs_api
        .create(&PostParams::default(), &orphan)
        .await
        .unwrap();
    // Once the ReplicaSet controller reported on it, the shared informer
    // the Deployment controller reads holds it.
    wait_for("the orphan's status", async || {
        let rs = rs_api.get("kept-orphan").await.ok()?;
        (rs.status?.observed_generation == rs.metadata.generation).then_some(())
    })
    .await;
    let api: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    let uid = api
        .create(&PostParams::default(), &d)
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    wait_complete(&c, "kept", 2, "busybox:1").await;
    // The orphan holds the template: adopted as the new ReplicaSet rather
    // than duplicated.
    let rss = replica_sets(&c, "kept").await;
    assert_eq!(rss.len(), 1, "{rss:?}");
    assert_eq!(rss[0].metadata.uid, orphan.metadata.uid);
    let owner = &rss[0].metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("Deployment", uid.as_str(), Some(true))
    );
    // No longer selected: released, and a new ReplicaSet of ours appears.
    rs_api
        .patch(
            "kept-orphan",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app": "gone"}}})),
        )
        .await
        .unwrap();
    wait_for("kept-orphan released", async || {
        let rs = rs_api.get("kept-orphan").await.ok()?;
        let refs = rs.metadata.owner_references.unwrap_or_default();
        (!refs.iter().any(|r| r.uid == uid)).then_some(())
    })
    .await;
    wait_for("a replacement ReplicaSet", async || {
        replica_sets(&c, "kept")
            .await
            .iter()
            .any(|rs| {
                rs.metadata
                    .owner_references
                    .as_ref()
                    .is_some_and(|refs| refs.iter().any(|r| r.uid == uid))
            })
            .then_some(())
    })
    .await;
    c.stop().await;
}
