//! The StatefulSet controller against the real API server with the
//! scheduler and hollow nodes, checked with the real kubectl.

use crate::support;

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::{Value, json};
use skiff_controllers::cached_pod::CachedPod;
use skiff_controllers::statefulset::utils::identity_and_storage_patch;
use support::{Cluster, patch_retrying, wait_for};

/// A cluster with hollow nodes, the controller manager and a scheduler.
struct Env {
    c: Cluster,
}

impl Env {
    async fn start(nodes: usize) -> Env {
        let mut c = Cluster::start(nodes).await;
        c.start_scheduler("statefulset-test");
        Env { c }
    }

    async fn stop(self) {
        self.c.stop().await;
    }

    fn sts(&self) -> Api<StatefulSet> {
        Api::namespaced(self.c.client.clone(), "default")
    }

    async fn patch(&self, name: &str, patch: Value) {
        patch_retrying(&self.sts(), name, &Patch::Merge(patch)).await;
    }

    /// Names of the active pods of `app` with their image, sorted by name.
    async fn pods(&self, app: &str) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .c
            .active_pods("default", &format!("app={app}"))
            .await
            .into_iter()
            .map(|p| {
                let image = p.spec.as_ref().unwrap().containers[0]
                    .image
                    .clone()
                    .unwrap();
                (p.metadata.name.unwrap(), image)
            })
            .collect();
        v.sort();
        v
    }

    /// Waits until `app` runs exactly `names` (all ready) and its status
    /// agrees with `ready` ready replicas and `updated` updated ones.
    async fn wait_settled(&self, app: &str, names: &[&str], updated: i32) -> StatefulSet {
        let n = i32::try_from(names.len()).unwrap();
        wait_for(&format!("{app} settled as {names:?}"), async || {
            let set = self.sts().get(app).await.unwrap();
            let s = set.status.clone()?;
            let pods = self.c.active_pods("default", &format!("app={app}")).await;
            let mut have: Vec<String> = pods
                .iter()
                .filter(|p| is_ready(p))
                .map(|p| p.metadata.name.clone().unwrap())
                .collect();
            have.sort();
            (have == names
                && pods.len() == names.len()
                && s.observed_generation == set.metadata.generation
                && s.replicas == n
                && s.ready_replicas == Some(n)
                && s.available_replicas == Some(n)
                && s.updated_replicas == Some(updated))
            .then_some(set)
        })
        .await
    }
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn stateful_set(name: &str, replicas: i32, extra: Value) -> StatefulSet {
    let mut v = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}
            }
        }
    });
    if let (Some(spec), Value::Object(extra)) = (v["spec"].as_object_mut(), extra) {
        spec.extend(extra);
    }
    serde_json::from_value(v).unwrap()
}

/// Records, in order, the names of pods of `app` as they are added and as
/// they are first seen terminating or deleted.
/// Pod names in the order they were seen.
type Seen = Arc<Mutex<Vec<String>>>;

fn record_pod_order(env: &Env, app: &str) -> (Seen, Seen) {
    let (added, removed) = (
        Arc::new(Mutex::new(Vec::new())),
        Arc::new(Mutex::new(Vec::new())),
    );
    let api: Api<Pod> = Api::namespaced(env.c.client.clone(), "default");
    let (a, r) = (added.clone(), removed.clone());
    let wp = WatchParams::default().labels(&format!("app={app}"));
    tokio::spawn(async move {
        let mut stream = api.watch(&wp, "0").await.unwrap().boxed();
        while let Some(Ok(ev)) = stream.next().await {
            let (pod, gone) = match ev {
                WatchEvent::Added(p) => {
                    a.lock().unwrap().push(p.metadata.name.clone().unwrap());
                    (p, false)
                }
                WatchEvent::Modified(p) => (p, false),
                WatchEvent::Deleted(p) => (p, true),
                _ => continue,
            };
            if gone || pod.metadata.deletion_timestamp.is_some() {
                let name = pod.metadata.name.clone().unwrap();
                let mut r = r.lock().unwrap();
                if !r.contains(&name) {
                    r.push(name);
                }
            }
        }
    });
    (added, removed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_ready_creates_in_order_with_claims_and_scales_down_from_the_top() {
    let env = Env::start(2).await;
    // Claims of a WaitForFirstConsumer class do not hold up scheduling.
    let sc: StorageClass = serde_json::from_value(json!({
        "metadata": {"name": "local"}, "provisioner": "example.com/none",
        "volumeBindingMode": "WaitForFirstConsumer"
    }))
    .unwrap();
    Api::<StorageClass>::all(env.c.client.clone())
        .create(&PostParams::default(), &sc)
        .await
        .unwrap();
    let (added, removed) = record_pod_order(&env, "web");
    let extra = json!({"volumeClaimTemplates": [{
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local",
                 "resources": {"requests": {"storage": "1Gi"}}}
    }]});
    env.sts()
        .create(&PostParams::default(), &stateful_set("web", 3, extra))
        .await
        .unwrap();
    env.wait_settled("web", &["web-0", "web-1", "web-2"], 3)
        .await;
    assert_eq!(*added.lock().unwrap(), ["web-0", "web-1", "web-2"]);

    // Each pod came only after its predecessor was ready.
    let pods: Vec<Pod> = env.c.active_pods("default", "app=web").await;
    let by_name = |n: &str| {
        pods.iter()
            .find(|p| p.metadata.name.as_deref() == Some(n))
            .unwrap()
    };
    for (prev, next) in [("web-0", "web-1"), ("web-1", "web-2")] {
        let ready_at = by_name(prev)
            .status
            .as_ref()
            .unwrap()
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap()
            .last_transition_time
            .clone()
            .unwrap()
            .0;
        let created = by_name(next).metadata.creation_timestamp.clone().unwrap().0;
        assert!(
            ready_at <= created,
            "{next} created before {prev} was ready"
        );
    }
    for i in 0..3 {
        let p = by_name(&format!("web-{i}"));
        let labels = p.metadata.labels.as_ref().unwrap();
        assert_eq!(
            labels["statefulset.kubernetes.io/pod-name"],
            format!("web-{i}")
        );
        assert_eq!(labels["apps.kubernetes.io/pod-index"], i.to_string());
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some(format!("web-{i}").as_str()));
        assert_eq!(spec.subdomain.as_deref(), Some("web"));
        let vol = spec
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "data")
            .unwrap();
        assert_eq!(
            vol.persistent_volume_claim.as_ref().unwrap().claim_name,
            format!("data-web-{i}")
        );
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(env.c.client.clone(), "default");
    let mut names: Vec<String> = claims
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| c.metadata.name.unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["data-web-0", "data-web-1", "data-web-2"]);
    let created = env.c.events("default", "SuccessfulCreate").await;
    assert!(
        created
            .iter()
            .any(|e| e.note.as_deref() == Some("create Pod web-0 in StatefulSet web successful")),
        "{created:?}"
    );
    assert!(created.iter().any(|e| e.note.as_deref()
        == Some("create Claim data-web-1 Pod web-1 in StatefulSet web success")));

    // Scale down: the highest ordinal goes first; claims are retained.
    env.patch("web", json!({"spec": {"replicas": 1}})).await;
    env.wait_settled("web", &["web-0"], 1).await;
    assert_eq!(*removed.lock().unwrap(), ["web-2", "web-1"]);
    assert_eq!(
        claims
            .list(&ListParams::default().labels("app=web"))
            .await
            .unwrap()
            .items
            .len(),
        3
    );
    let (ok, out) = env
        .c
        .kubectl(&["rollout", "status", "sts/web", "--timeout=60s"])
        .await;
    assert!(ok, "kubectl rollout status failed: {out}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_with_partition_then_full_rollout_and_undo() {
    let env = Env::start(2).await;
    let strategy = json!({"updateStrategy": {"type": "RollingUpdate",
                                             "rollingUpdate": {"partition": 2}}});
    env.sts()
        .create(&PostParams::default(), &stateful_set("db", 3, strategy))
        .await
        .unwrap();
    let set = env.wait_settled("db", &["db-0", "db-1", "db-2"], 3).await;
    let first = set.status.unwrap().current_revision.unwrap();
    env.patch(
        "db",
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}}),
    )
    .await;
    // Only ordinals >= 2 move to the new revision.
    let set = env.wait_settled("db", &["db-0", "db-1", "db-2"], 1).await;
    let s = set.status.unwrap();
    assert_eq!(s.current_revision.as_deref(), Some(first.as_str()));
    assert_ne!(s.update_revision.as_deref(), Some(first.as_str()));
    assert_eq!(s.current_replicas, Some(2));
    assert_eq!(
        env.pods("db").await,
        [
            ("db-0".to_owned(), "nginx:1".to_owned()),
            ("db-1".to_owned(), "nginx:1".to_owned()),
            ("db-2".to_owned(), "nginx:2".to_owned())
        ]
    );
    let (ok, out) = env
        .c
        .kubectl(&["rollout", "status", "sts/db", "--timeout=60s"])
        .await;
    assert!(ok && out.contains("partitioned roll out complete"), "{out}");

    // Partition 0: the rest roll, and the rollout completes.
    env.patch(
        "db",
        json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}}),
    )
    .await;
    let (ok, out) = env
        .c
        .kubectl(&["rollout", "status", "sts/db", "--timeout=60s"])
        .await;
    assert!(ok, "kubectl rollout status failed: {out}");
    let set = env.wait_settled("db", &["db-0", "db-1", "db-2"], 3).await;
    let s = set.status.unwrap();
    assert_eq!(s.current_revision, s.update_revision);
    assert_eq!(s.current_replicas, Some(3));
    assert!(
        env.pods("db")
            .await
            .iter()
            .all(|(_, image)| image == "nginx:2")
    );

    // Undo brings the first template back as revision 3.
    let (ok, out) = env.c.kubectl(&["rollout", "undo", "sts/db"]).await;
    assert!(ok, "kubectl rollout undo failed: {out}");
    let (ok, out) = env
        .c
        .kubectl(&["rollout", "status", "sts/db", "--timeout=60s"])
        .await;
    assert!(ok, "kubectl rollout status failed: {out}");
    let set = env.wait_settled("db", &["db-0", "db-1", "db-2"], 3).await;
    assert!(
        env.pods("db")
            .await
            .iter()
            .all(|(_, image)| image == "nginx:1")
    );
    let s = set.status.unwrap();
    assert_eq!(s.update_revision.as_deref(), Some(first.as_str()));
    let revisions: Api<ControllerRevision> = Api::namespaced(env.c.client.clone(), "default");
    let mut revs: Vec<(String, i64)> = revisions
        .list(&ListParams::default().labels("app=db"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|r| (r.metadata.name.unwrap(), r.revision))
        .collect();
    revs.sort_by_key(|r| r.1);
    assert_eq!(revs.len(), 2, "{revs:?}");
    assert_eq!(revs[1], (first, 3));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_creates_all_at_once_and_recreates_failed_pods() {
    let env = Env::start(1).await;
    // No node fits: the pods stay Pending, which OrderedReady would wait on.
    let extra = json!({
        "podManagementPolicy": "Parallel",
        "template": {
            "metadata": {"labels": {"app": "par"}},
            "spec": {"nodeSelector": {"no-such": "node"},
                     "containers": [{"name": "c", "image": "nginx:1"}]}
        }
    });
    env.sts()
        .create(&PostParams::default(), &stateful_set("par", 3, extra))
        .await
        .unwrap();
    let pods = wait_for("three pending pods", async || {
        let pods = env.c.active_pods("default", "app=par").await;
        (pods.len() == 3).then_some(pods)
    })
    .await;
    let victim = pods
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some("par-1"))
        .unwrap();
    let old_uid = victim.metadata.uid.clone().unwrap();
    let api: Api<Pod> = Api::namespaced(env.c.client.clone(), "default");
    api.patch_status(
        "par-1",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Failed"}})),
    )
    .await
    .unwrap();
    wait_for("par-1 recreated", async || {
        let p = api.get_opt("par-1").await.unwrap()?;
        (p.metadata.uid.as_deref() != Some(old_uid.as_str())
            && p.metadata.deletion_timestamp.is_none())
        .then_some(())
    })
    .await;
    let events = env.c.events("default", "RecreatingFailedPod").await;
    assert_eq!(
        events[0].note.as_deref(),
        Some("StatefulSet default/par is recreating failed Pod par-1"),
        "{events:?}"
    );
    let set = env.sts().get("par").await.unwrap();
    assert_eq!(set.status.unwrap().ready_replicas, Some(0));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_scaled_delete_removes_the_claims_of_scaled_down_pods() {
    let env = Env::start(1).await;
    let sc: StorageClass = serde_json::from_value(json!({
        "metadata": {"name": "local"}, "provisioner": "example.com/none",
        "volumeBindingMode": "WaitForFirstConsumer"
    }))
    .unwrap();
    Api::<StorageClass>::all(env.c.client.clone())
        .create(&PostParams::default(), &sc)
        .await
        .unwrap();
    let extra = json!({
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Delete"},
        "volumeClaimTemplates": [{
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local",
                     "resources": {"requests": {"storage": "1Gi"}}}
        }]
    });
    env.sts()
        .create(&PostParams::default(), &stateful_set("kv", 2, extra))
        .await
        .unwrap();
    env.wait_settled("kv", &["kv-0", "kv-1"], 2).await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(env.c.client.clone(), "default");
    let names = async || {
        let mut v: Vec<String> = claims
            .list(&ListParams::default().labels("app=kv"))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|c| c.metadata.deletion_timestamp.is_none())
            .map(|c| c.metadata.name.unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names().await, ["data-kv-0", "data-kv-1"]);
    env.patch("kv", json!({"spec": {"replicas": 1}})).await;
    env.wait_settled("kv", &["kv-0"], 1).await;
    // The scaled-down pod owned its claim, so the claim goes with it.
    wait_for("data-kv-1 deleted", async || {
        (names().await == ["data-kv-0"]).then_some(())
    })
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopts_an_orphan_named_like_a_member_and_leaves_other_matching_pods() {
    let env = Env::start(1).await;
    let pods: Api<Pod> = Api::namespaced(env.c.client.clone(), "default");
    let orphan = |name: &str| -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"hostname": "web-0", "subdomain": "web",
                     "containers": [{"name": "c", "image": "nginx:1"}]}
        }))
        .unwrap()
    };
    let member = pods
        .create(&PostParams::default(), &orphan("web-0"))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &orphan("stray"))
        .await
        .unwrap();
    // OnDelete: the adopted pod of no revision is kept, not rolled.
    let extra = json!({"updateStrategy": {"type": "OnDelete"}});
    let set = env
        .sts()
        .create(&PostParams::default(), &stateful_set("web", 1, extra))
        .await
        .unwrap();
    let set_uid = set.metadata.uid.unwrap();
    // Adopted (the same pod, now ours) and its identity label restored.
    let adopted = wait_for("web-0 adopted with its identity", async || {
        let p = pods.get("web-0").await.ok()?;
        let ours = p
            .metadata
            .owner_references
            .as_ref()?
            .iter()
            .any(|r| r.uid == set_uid && r.controller == Some(true));
        let named = p
            .metadata
            .labels
            .as_ref()?
            .get("statefulset.kubernetes.io/pod-name")
            .is_some_and(|n| n == "web-0");
        (ours && named).then_some(p)
    })
    .await;
    assert_eq!(adopted.metadata.uid, member.metadata.uid);
    // The claim that took web-0 saw "stray" too: not a member, not taken.
    let stray = pods.get("stray").await.unwrap();
    assert_eq!(stray.metadata.owner_references, None);
    env.stop().await;
}

/// The identity fix is a patch of the identity alone, not the cached pod
/// written back: everything else on the pod stays, and a pod changed since
/// it was cached makes it a conflict, as the update upstream sends is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_identity_patch_keeps_the_rest_of_the_pod_and_conflicts_when_stale() {
    let c = Cluster::start_bare(0).await;
    let pods = c.pods("default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web-0", "labels": {"app": "web"},
                     "annotations": {"note": "kept"}},
        "spec": {"hostname": "web-0", "subdomain": "web",
                 "containers": [{"name": "c", "image": "nginx:1",
                                 "env": [{"name": "MODE", "value": "prod"}],
                                 "readinessProbe": {"exec": {"command": ["true"]},
                                                    "periodSeconds": 7}}]},
    }))
    .unwrap();
    let created = pods.create(&PostParams::default(), &pod).await.unwrap();
    let set = stateful_set("web", 1, json!({}));
    let cached_api: Api<CachedPod> = Api::namespaced(c.client.clone(), "default");
    let patch = |cached: &CachedPod| {
        Patch::Strategic(identity_and_storage_patch(&set, cached, true, false))
    };

    let stale = CachedPod::from(created.clone());
    patch_retrying(
        &pods,
        "web-0",
        &Patch::Merge(json!({"metadata": {"annotations": {"other": "x"}}})),
    )
    .await;
    match cached_api
        .patch("web-0", &PatchParams::default(), &patch(&stale))
        .await
    {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 409, "{s:?}"),
        other => panic!("a stale patch must conflict: {other:?}"),
    }

    let fresh = CachedPod::from(pods.get("web-0").await.unwrap());
    cached_api
        .patch("web-0", &PatchParams::default(), &patch(&fresh))
        .await
        .unwrap();
    let fixed = pods.get("web-0").await.unwrap();
    let labels = fixed.metadata.labels.clone().unwrap();
    assert_eq!(labels["app"], "web");
    assert_eq!(labels["statefulset.kubernetes.io/pod-name"], "web-0");
    assert_eq!(labels["apps.kubernetes.io/pod-index"], "0");
    let annotations = fixed.metadata.annotations.clone().unwrap();
    assert_eq!(
        (annotations["note"].as_str(), annotations["other"].as_str()),
        ("kept", "x")
    );
    assert_eq!(fixed.spec, created.spec);
    c.stop().await;
}
