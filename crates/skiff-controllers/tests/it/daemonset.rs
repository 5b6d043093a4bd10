//! The DaemonSet controller against the real API server with the scheduler
//! and hollow nodes, checked with the real kubectl.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use skiff_sim::{HollowNodeConfig, HollowNodes};
use support::{Cluster, patch_retrying, wait_for};

/// A cluster with `nodes` hollow nodes, the controller manager and a
/// scheduler (daemon pods are bound by it).
struct Env {
    c: Cluster,
}

impl Env {
    async fn start(nodes: usize) -> Env {
        let mut c = Cluster::start(nodes).await;
        c.start_scheduler("daemonset-test");
        Env { c }
    }

    async fn stop(self) {
        self.c.stop().await;
    }

    fn ds_api(&self) -> Api<DaemonSet> {
        Api::namespaced(self.c.client.clone(), "default")
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.c.client.clone())
    }

    /// Active pods of `app` by node name (unbound pods under "").
    async fn pods_by_node(&self, app: &str) -> BTreeMap<String, Vec<Pod>> {
        let mut out: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
        for p in self.c.active_pods("default", &format!("app={app}")).await {
            let n = p
                .spec
                .as_ref()
                .unwrap()
                .node_name
                .clone()
                .unwrap_or_default();
            out.entry(n).or_default().push(p);
        }
        out
    }

    /// Waits until exactly `nodes` each run one ready pod of `app` with
    /// `image`, no other pod exists, and the status says so.
    async fn wait_settled(&self, app: &str, nodes: &[&str], image: &str) -> DaemonSet {
        let n = i32::try_from(nodes.len()).unwrap();
        wait_for(&format!("{app} on {nodes:?} with {image}"), async || {
            let ds = self.ds_api().get(app).await.unwrap();
            let s = ds.status.clone()?;
            let by_node = self.pods_by_node(app).await;
            let placed = by_node.len() == nodes.len()
                && nodes.iter().all(|node| {
                    by_node.get(*node).is_some_and(|ps| {
                        ps.len() == 1 && is_ready(&ps[0]) && image_of(&ps[0]) == image
                    })
                });
            (placed
                && s.observed_generation == ds.metadata.generation
                && s.desired_number_scheduled == n
                && s.current_number_scheduled == n
                && s.number_ready == n
                && s.updated_number_scheduled == Some(n)
                && s.number_available == Some(n)
                && s.number_unavailable.unwrap_or(0) == 0
                && s.number_misscheduled == 0)
                .then_some(ds)
        })
        .await
    }

    async fn patch_node(&self, name: &str, patch: Value) {
        self.nodes()
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap();
    }

    async fn revisions(&self, app: &str) -> Vec<ControllerRevision> {
        let api: Api<ControllerRevision> = Api::namespaced(self.c.client.clone(), "default");
        let mut v = api
            .list(&ListParams::default().labels(&format!("app={app}")))
            .await
            .unwrap()
            .items;
        v.sort_by_key(|r| r.revision);
        v
    }

    async fn set_image(&self, app: &str, image: &str) {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}});
        patch_retrying(&self.ds_api(), app, &Patch::Strategic(patch)).await;
    }
}

fn daemon_set(name: &str, pod_spec: Value, strategy: Value) -> DaemonSet {
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox:1"}]});
    spec.as_object_mut()
        .unwrap()
        .extend(pod_spec.as_object().unwrap().clone());
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "updateStrategy": strategy,
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        },
    }))
    .unwrap()
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn image_of(p: &Pod) -> &str {
    p.spec.as_ref().unwrap().containers[0]
        .image
        .as_deref()
        .unwrap_or("")
}

const HOLLOW: [&str; 3] = ["hollow-0", "hollow-1", "hollow-2"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_on_every_node_following_nodes_joining_and_leaving() {
    let env = Env::start(3).await;
    let rolling = json!({"type": "RollingUpdate"});
    env.ds_api()
        .create(
            &PostParams::default(),
            &daemon_set("agent", json!({}), rolling),
        )
        .await
        .unwrap();
    let ds = env.wait_settled("agent", &HOLLOW, "busybox:1").await;

    // Pods carry the revision labels, the pin to their node and the
    // DaemonSet tolerations (not-ready forever: no tolerationSeconds added).
    let revisions = env.revisions("agent").await;
    assert_eq!(revisions.len(), 1);
    assert_eq!(revisions[0].revision, 1);
    let hash = revisions[0].metadata.labels.as_ref().unwrap()["controller-revision-hash"].clone();
    assert_eq!(
        revisions[0].metadata.name.as_deref(),
        Some(format!("agent-{hash}").as_str())
    );
    let owner = &revisions[0].metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("DaemonSet", ds.metadata.uid.as_deref().unwrap())
    );
    for (node, pods) in env.pods_by_node("agent").await {
        let p = &pods[0];
        let labels = p.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["controller-revision-hash"], hash);
        assert_eq!(labels["pod-template-generation"], "1");
        let spec = serde_json::to_value(p.spec.as_ref().unwrap()).unwrap();
        assert_eq!(
            spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"],
            json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}])
        );
        let tolerations = spec["tolerations"].as_array().unwrap();
        let not_ready = tolerations
            .iter()
            .find(|t| t["key"] == "node.kubernetes.io/not-ready")
            .unwrap();
        assert_eq!(not_ready["effect"], "NoExecute");
        assert!(not_ready.get("tolerationSeconds").is_none(), "{not_ready}");
        assert!(
            tolerations
                .iter()
                .any(|t| t["key"] == "node.kubernetes.io/unschedulable")
        );
    }

    // A node joins: it gets a pod.
    let late = HollowNodes::start(
        env.c.client.clone(),
        HollowNodeConfig {
            count: 1,
            name_prefix: "late-".into(),
            ..HollowNodeConfig::default()
        },
    )
    .await
    .unwrap();
    env.wait_settled(
        "agent",
        &["hollow-0", "hollow-1", "hollow-2", "late-0"],
        "busybox:1",
    )
    .await;

    // It leaves: it is no longer counted (its pod is the pod GC's).
    late.shutdown().await;
    env.nodes()
        .delete("late-0", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("late-0 no longer desired", async || {
        let s = env.ds_api().get("agent").await.unwrap().status?;
        (s.desired_number_scheduled == 3
            && s.current_number_scheduled == 3
            && s.number_available == Some(3))
        .then_some(())
    })
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_labels_and_taints_decide_where_pods_run() {
    let env = Env::start(3).await;
    let rolling = json!({"type": "RollingUpdate"});
    env.ds_api()
        .create(
            &PostParams::default(),
            &daemon_set(
                "edge",
                json!({"nodeSelector": {"role": "edge"}}),
                rolling.clone(),
            ),
        )
        .await
        .unwrap();
    env.ds_api()
        .create(
            &PostParams::default(),
            &daemon_set("all", json!({}), rolling),
        )
        .await
        .unwrap();
    env.wait_settled("all", &HOLLOW, "busybox:1").await;
    env.wait_settled("edge", &[], "busybox:1").await;

    // Labelling a node brings a pod; unlabelling removes it.
    env.patch_node(
        "hollow-1",
        json!({"metadata": {"labels": {"role": "edge"}}}),
    )
    .await;
    env.wait_settled("edge", &["hollow-1"], "busybox:1").await;
    env.patch_node("hollow-1", json!({"metadata": {"labels": {"role": null}}}))
        .await;
    env.wait_settled("edge", &[], "busybox:1").await;

    // An untolerated NoExecute taint evicts; NoSchedule only keeps new pods
    // away.
    env.patch_node(
        "hollow-2",
        json!({"spec": {"taints": [{"key": "dedicated", "value": "x", "effect": "NoExecute"}]}}),
    )
    .await;
    env.wait_settled("all", &["hollow-0", "hollow-1"], "busybox:1")
        .await;
    env.patch_node(
        "hollow-2",
        json!({"spec": {"taints": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]}}),
    )
    .await;
    env.patch_node(
        "hollow-0",
        json!({"spec": {"taints": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]}}),
    )
    .await;
    // hollow-0 keeps its running pod; hollow-2 gets none.
    let ds = env.ds_api().get("all").await.unwrap();
    let generation = ds.metadata.generation;
    wait_for("hollow-0 kept, hollow-2 still empty", async || {
        let s = env.ds_api().get("all").await.unwrap().status?;
        let by_node = env.pods_by_node("all").await;
        (s.desired_number_scheduled == 1
            && s.number_misscheduled == 1
            && s.observed_generation == generation
            && by_node.keys().cloned().collect::<Vec<_>>() == ["hollow-0", "hollow-1"])
        .then_some(())
    })
    .await;
    // Tolerating the taint brings hollow-2 back (a template change: the
    // rolling update also replaces the other pods).
    env.ds_api()
        .patch(
            "all",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"spec": {"tolerations": [
                {"key": "dedicated", "operator": "Exists"}]}}}})),
        )
        .await
        .unwrap();
    env.wait_settled("all", &HOLLOW, "busybox:1").await;
    env.stop().await;
}

/// Polls the pods of `app` on `nodes` until `done`, returning the most
/// nodes seen at once without a ready, non-terminating pod.
fn watch_unavailable(
    env: &Env,
    app: &'static str,
    nodes: usize,
    image: &'static str,
) -> tokio::task::JoinHandle<usize> {
    let pods: Api<Pod> = Api::namespaced(env.c.client.clone(), "default");
    tokio::spawn(async move {
        let mut worst = 0;
        for _ in 0..2000 {
            let list = pods
                .list(&ListParams::default().labels(&format!("app={app}")))
                .await
                .unwrap()
                .items;
            let mut ready_nodes = std::collections::HashSet::new();
            let mut all_new = true;
            for p in &list {
                if p.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                if image_of(p) != image {
                    all_new = false;
                }
                if is_ready(p) {
                    ready_nodes.insert(p.spec.as_ref().unwrap().node_name.clone());
                }
            }
            worst = worst.max(nodes.saturating_sub(ready_nodes.len()));
            if all_new && ready_nodes.len() == nodes && list.len() == nodes {
                break;
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        worst
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_within_max_unavailable_then_undo() {
    let env = Env::start(3).await;
    let strategy = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}});
    env.ds_api()
        .create(
            &PostParams::default(),
            &daemon_set("web", json!({}), strategy),
        )
        .await
        .unwrap();
    env.wait_settled("web", &HOLLOW, "busybox:1").await;
    let watcher = watch_unavailable(&env, "web", 3, "busybox:2");
    env.set_image("web", "busybox:2").await;
    let (ok, out) = env
        .c
        .kubectl(&["rollout", "status", "ds/web", "--timeout=60s"])
        .await;
    assert!(ok, "kubectl rollout status failed: {out}");
    assert!(
        out.contains("daemon set \"web\" successfully rolled out"),
        "{out}"
    );
    let worst = watcher.await.unwrap();
    assert!(
        worst <= 1,
        "{worst} nodes were without an available pod at once"
    );
    let ds = env.wait_settled("web", &HOLLOW, "busybox:2").await;
    let revisions = env.revisions("web").await;
    assert_eq!(
        revisions.iter().map(|r| r.revision).collect::<Vec<_>>(),
        [1, 2]
    );
    let new_hash =
        revisions[1].metadata.labels.as_ref().unwrap()["controller-revision-hash"].clone();
    for pods in env.pods_by_node("web").await.values() {
        let labels = pods[0].metadata.labels.as_ref().unwrap();
        assert_eq!(labels["controller-revision-hash"], new_hash);
        assert_eq!(labels["pod-template-generation"], "2");
    }
    assert_eq!(
        ds.metadata.annotations.as_ref().unwrap()["deprecated.daemonset.template.generation"],
        "2"
    );

    // Undo restores the first template; its revision becomes number 3.
    let (ok, out) = env.c.kubectl(&["rollout", "undo", "ds/web"]).await;
    assert!(ok, "kubectl rollout undo failed: {out}");
    let (ok, out) = env
        .c
        .kubectl(&["rollout", "status", "ds/web", "--timeout=60s"])
        .await;
    assert!(ok, "kubectl rollout status failed: {out}");
    env.wait_settled("web", &HOLLOW, "busybox:1").await;
    let revisions = env.revisions("web").await;
    assert_eq!(revisions.len(), 2, "the first revision is reused");
    assert_eq!(revisions[1].revision, 3);
    let first_hash =
        revisions[1].metadata.labels.as_ref().unwrap()["controller-revision-hash"].clone();
    assert_ne!(first_hash, new_hash);
    let (ok, out) = env.c.kubectl(&["rollout", "history", "ds/web"]).await;
    assert!(ok && out.contains('2') && out.contains('3'), "{out}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surge_update_keeps_every_node_available() {
    let env = Env::start(3).await;
    let strategy =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}});
    env.ds_api()
        .create(
            &PostParams::default(),
            &daemon_set("surge", json!({}), strategy),
        )
        .await
        .unwrap();
    env.wait_settled("surge", &HOLLOW, "busybox:1").await;
    let watcher = watch_unavailable(&env, "surge", 3, "busybox:2");
    env.set_image("surge", "busybox:2").await;
    let (ok, out) = env
        .c
        .kubectl(&["rollout", "status", "ds/surge", "--timeout=60s"])
        .await;
    assert!(ok, "kubectl rollout status failed: {out}");
    assert_eq!(watcher.await.unwrap(), 0, "a node lost its available pod");
    env.wait_settled("surge", &HOLLOW, "busybox:2").await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_delete_replaces_only_deleted_pods() {
    let env = Env::start(2).await;
    env.ds_api()
        .create(
            &PostParams::default(),
            &daemon_set("od", json!({}), json!({"type": "OnDelete"})),
        )
        .await
        .unwrap();
    env.wait_settled("od", &HOLLOW[..2], "busybox:1").await;
    env.set_image("od", "busybox:2").await;
    // The controller saw the new generation and replaced nothing.
    let generation = env.ds_api().get("od").await.unwrap().metadata.generation;
    wait_for("new generation observed", async || {
        let ds = env.ds_api().get("od").await.unwrap();
        let s = ds.status?;
        (s.observed_generation == generation && s.updated_number_scheduled == Some(0)).then_some(())
    })
    .await;
    assert_eq!(env.revisions("od").await.len(), 2);
    let by_node = env.pods_by_node("od").await;
    assert!(
        by_node
            .values()
            .all(|p| p.len() == 1 && image_of(&p[0]) == "busybox:1")
    );

    let victim = by_node["hollow-0"][0].metadata.name.clone().unwrap();
    env.c
        .pods("default")
        .delete(&victim, &DeleteParams::default())
        .await
        .unwrap();
    wait_for("hollow-0 replaced with the new template", async || {
        let by_node = env.pods_by_node("od").await;
        let s = env.ds_api().get("od").await.unwrap().status?;
        let replaced = by_node
            .get("hollow-0")
            .is_some_and(|p| p.len() == 1 && image_of(&p[0]) == "busybox:2" && is_ready(&p[0]));
        (replaced && s.updated_number_scheduled == Some(1) && s.number_available == Some(2))
            .then_some(())
    })
    .await;
    let by_node = env.pods_by_node("od").await;
    assert_eq!(image_of(&by_node["hollow-1"][0]), "busybox:1");
    env.stop().await;
}
