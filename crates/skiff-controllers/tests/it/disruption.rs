//! The disruption controller against the real API server with the
//! Deployment and ReplicaSet controllers and hollow nodes: PDB status, and
//! evictions through `pods/eviction` that the status allows or refuses.

use crate::support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use kube::Api;
use kube::api::{EvictParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::{Cluster, NODE, wait_for};

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "busybox:1"}]},
            },
        },
    }))
    .unwrap()
}

fn pdb(name: &str, app: &str, spec: Value) -> PodDisruptionBudget {
    let mut spec = spec;
    spec["selector"] = json!({"matchLabels": {"app": app}});
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

struct Env {
    c: Cluster,
}

impl Env {
    fn pdbs(&self) -> Api<PodDisruptionBudget> {
        Api::namespaced(self.c.client.clone(), "default")
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.c.client.clone(), "default")
    }

    async fn create(&self, d: Deployment, p: PodDisruptionBudget) {
        self.deployments()
            .create(&PostParams::default(), &d)
            .await
            .unwrap();
        self.pdbs()
            .create(&PostParams::default(), &p)
            .await
            .unwrap();
    }

    /// Waits until the budget's status satisfies `f`, for its current
    /// generation.
    async fn wait_status(
        &self,
        name: &str,
        what: &str,
        f: impl Fn(&PodDisruptionBudgetStatus) -> bool,
    ) -> PodDisruptionBudget {
        wait_for(&format!("{name}: {what}"), async || {
            let p = self.pdbs().get(name).await.unwrap();
            let s = p.status.as_ref()?;
            (s.observed_generation == p.metadata.generation && f(s)).then_some(p.clone())
        })
        .await
    }

    async fn ready_pods(&self, app: &str) -> Vec<Pod> {
        self.c
            .active_pods("default", &format!("app={app}"))
            .await
            .into_iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .collect()
    }
}

/// A client that reports a 429 instead of retrying it (kube-rs retries
/// 429 by default, as `kubectl drain` does on its own schedule).
async fn no_retry_client(c: &Cluster) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(&c.kubeconfig).unwrap();
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    cfg.default_retry = false;
    kube::Client::try_from(cfg).unwrap()
}

fn condition(p: &PodDisruptionBudget) -> (String, String) {
    let c = p
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "DisruptionAllowed"))
        .expect("DisruptionAllowed condition");
    (c.status.clone(), c.reason.clone())
}

fn numbers(s: &PodDisruptionBudgetStatus) -> (i32, i32, i32, i32) {
    (
        s.current_healthy,
        s.desired_healthy,
        s.expected_pods,
        s.disruptions_allowed,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_available_budget_lets_one_eviction_through_at_a_time() {
    let mut env = Env {
        c: Cluster::start(1).await,
    };
    env.create(
        deployment("web", 3),
        pdb("web-pdb", "web", json!({"minAvailable": 2})),
    )
    .await;
    let p = env
        .wait_status("web-pdb", "one disruption allowed", |s| {
            numbers(s) == (3, 2, 3, 1)
        })
        .await;
    assert_eq!(condition(&p), ("True".into(), "SufficientPods".into()));

    // With the controllers stopped, nothing but evictions touches the
    // budget, so the second eviction deterministically finds none left.
    env.c.stop_manager(0).await;
    let pods = env.ready_pods("web").await;
    assert_eq!(pods.len(), 3);
    let names: Vec<String> = pods
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    let api: Api<Pod> = Api::namespaced(no_retry_client(&env.c).await, "default");
    api.evict(&names[0], &EvictParams::default()).await.unwrap();
    let err = api
        .evict(&names[1], &EvictParams::default())
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("expected an API error, got {err:?}");
    };
    assert_eq!(status.code, 429, "{status:?}");
    assert_eq!(
        status.message,
        "Cannot evict pod as it would violate the pod's disruption budget. The disruption budget web-pdb needs 2 healthy pods and has 3 currently"
    );
    let p = env.pdbs().get("web-pdb").await.unwrap();
    let s = p.status.unwrap();
    assert_eq!(s.disruptions_allowed, 0);
    assert!(s.disrupted_pods.unwrap().contains_key(&names[0]));

    // Back on: the replacement becomes ready, the evicted pod's entry is
    // dropped once it is gone, and one disruption is allowed again.
    env.c.start_manager("second", false);
    let p = env
        .wait_status("web-pdb", "replacement ready", |s| {
            numbers(s) == (3, 2, 3, 1) && s.disrupted_pods.as_ref().is_none_or(|d| d.is_empty())
        })
        .await;
    assert_eq!(condition(&p), ("True".into(), "SufficientPods".into()));
    assert!(
        !env.ready_pods("web")
            .await
            .iter()
            .any(|p| p.metadata.name.as_ref() == Some(&names[0]))
    );
    api.evict(&names[1], &EvictParams::default()).await.unwrap();
    env.wait_status("web-pdb", "second eviction taken", |s| {
        s.disruptions_allowed == 0
            || s.disrupted_pods
                .as_ref()
                .is_some_and(|d| d.contains_key(&names[1]))
    })
    .await;
    env.c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_unavailable_percent_scales_with_the_deployment() {
    let env = Env {
        c: Cluster::start(1).await,
    };
    env.create(
        deployment("api", 3),
        pdb("api-pdb", "api", json!({"maxUnavailable": "50%"})),
    )
    .await;
    // 50% of 3 rounds up to 2 unavailable: 1 must stay healthy.
    env.wait_status("api-pdb", "3 pods, 2 disruptions", |s| {
        numbers(s) == (3, 1, 3, 2)
    })
    .await;
    env.deployments()
        .patch(
            "api",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    // 50% of 5 rounds up to 3: 2 must stay healthy.
    let p = env
        .wait_status("api-pdb", "5 pods, 3 disruptions", |s| {
            numbers(s) == (5, 2, 5, 3)
        })
        .await;
    assert_eq!(condition(&p), ("True".into(), "SufficientPods".into()));

    // A pod controlled by the Deployment itself, which no built-in finder
    // covers: its scale comes from deployments/scale.
    let uid = env
        .deployments()
        .get("api")
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    let direct: Pod = serde_json::from_value(json!({
        "metadata": {"name": "direct", "labels": {"app": "direct"}, "ownerReferences": [{
            "apiVersion": "apps/v1", "kind": "Deployment", "name": "api", "uid": uid, "controller": true
        }]},
        "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "busybox:1"}]},
    }))
    .unwrap();
    env.c
        .pods("default")
        .create(&PostParams::default(), &direct)
        .await
        .unwrap();
    env.pdbs()
        .create(
            &PostParams::default(),
            &pdb("direct", "direct", json!({"maxUnavailable": 1})),
        )
        .await
        .unwrap();
    env.wait_status("direct", "scale from the scale subresource", |s| {
        numbers(s) == (1, 4, 5, 0)
    })
    .await;

    // A spec change is observed with a new generation.
    env.pdbs()
        .patch(
            "api-pdb",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"maxUnavailable": 0}})),
        )
        .await
        .unwrap();
    let p = env
        .wait_status("api-pdb", "no disruption", |s| numbers(s) == (5, 5, 5, 0))
        .await;
    assert_eq!(condition(&p), ("False".into(), "InsufficientPods".into()));
    env.c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_for_no_pods_unmanaged_pods_and_unknown_controllers() {
    let env = Env {
        c: Cluster::start(1).await,
    };
    env.pdbs()
        .create(
            &PostParams::default(),
            &pdb("empty", "nothing", json!({"minAvailable": 1})),
        )
        .await
        .unwrap();
    let p = env
        .wait_status("empty", "no pods", |s| numbers(s) == (0, 1, 0, 0))
        .await;
    assert_eq!(condition(&p), ("False".into(), "InsufficientPods".into()));
    wait_for("NoPods event", async || {
        let e = env.c.events("default", "NoPods").await;
        e.iter()
            .any(|e| e.note.as_deref() == Some("No matching pods found"))
            .then_some(())
    })
    .await;

    // A bare pod under a maxUnavailable budget counts for nothing.
    let bare: Pod = serde_json::from_value(json!({
        "metadata": {"name": "bare", "labels": {"app": "bare"}},
        "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "busybox:1"}]},
    }))
    .unwrap();
    env.c
        .pods("default")
        .create(&PostParams::default(), &bare)
        .await
        .unwrap();
    env.pdbs()
        .create(
            &PostParams::default(),
            &pdb("bare", "bare", json!({"maxUnavailable": 1})),
        )
        .await
        .unwrap();
    env.wait_status("bare", "unmanaged pod ignored", |s| {
        numbers(s) == (1, 0, 0, 0)
    })
    .await;
    wait_for("UnmanagedPods event", async || {
        (!env.c.events("default", "UnmanagedPods").await.is_empty()).then_some(())
    })
    .await;

    // A pod whose controller no finder knows: the sync fails safe.
    let odd: Pod = serde_json::from_value(json!({
        "metadata": {"name": "odd", "labels": {"app": "odd"}, "ownerReferences": [{
            "apiVersion": "example.com/v1", "kind": "Thing", "name": "t", "uid": "u-1", "controller": true
        }]},
        "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "busybox:1"}]},
    }))
    .unwrap();
    env.c
        .pods("default")
        .create(&PostParams::default(), &odd)
        .await
        .unwrap();
    env.pdbs()
        .create(
            &PostParams::default(),
            &pdb("odd", "odd", json!({"minAvailable": "50%"})),
        )
        .await
        .unwrap();
    let p = wait_for("SyncFailed condition", async || {
        let p = env.pdbs().get("odd").await.unwrap();
        (condition_opt(&p)? == ("False".into(), "SyncFailed".into())).then_some(p)
    })
    .await;
    let msg = p.status.unwrap().conditions.unwrap()[0].message.clone();
    assert_eq!(
        msg,
        "no matches for kind \"Thing\" in version \"example.com/v1\""
    );
    wait_for("CalculateExpectedPodCountFailed event", async || {
        let e = env.c.events("default", "CalculateExpectedPodCountFailed").await;
        e.iter()
            .any(|e| {
                e.note.as_deref()
                    == Some("Failed to calculate the number of expected pods: no matches for kind \"Thing\" in version \"example.com/v1\"")
            })
            .then_some(())
    })
    .await;
    env.c.stop().await;
}

fn condition_opt(p: &PodDisruptionBudget) -> Option<(String, String)> {
    let c = p
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "DisruptionAllowed")?;
    Some((c.status.clone(), c.reason.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_pod_eviction_policy_is_enforced_on_eviction() {
    let env = Env {
        c: Cluster::start(1).await,
    };
    let pods = env.c.pods("default");
    for (name, node) in [("h1", NODE), ("h2", NODE), ("sick", "nowhere")] {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": "mixed"}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox:1"}]},
        }))
        .unwrap();
        pods.create(&PostParams::default(), &p).await.unwrap();
    }
    // Running but not ready: not exempt from the budget as a pending pod is.
    let mut sick = pods.get_status("sick").await.unwrap();
    let status = sick.status.get_or_insert_with(Default::default);
    status.phase = Some("Running".into());
    status.conditions = Some(vec![
        serde_json::from_value(json!({"type": "Ready", "status": "False"})).unwrap(),
    ]);
    pods.replace_status("sick", &PostParams::default(), &sick)
        .await
        .unwrap();
    env.pdbs()
        .create(
            &PostParams::default(),
            &pdb("mixed", "mixed", json!({"minAvailable": 3})),
        )
        .await
        .unwrap();
    env.wait_status("mixed", "2 of 3 healthy", |s| numbers(s) == (2, 3, 3, 0))
        .await;
    let api: Api<Pod> = Api::namespaced(no_retry_client(&env.c).await, "default");
    // IfHealthyBudget (the default): the budget is not met, so no.
    let err = api
        .evict("sick", &EvictParams::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 429),
        "{err:?}"
    );
    env.pdbs()
        .patch(
            "mixed",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"unhealthyPodEvictionPolicy": "AlwaysAllow"}})),
        )
        .await
        .unwrap();
    env.wait_status("mixed", "new generation observed", |s| {
        numbers(s) == (2, 3, 3, 0)
    })
    .await;
    api.evict("sick", &EvictParams::default()).await.unwrap();
    // A healthy pod is still guarded.
    let err = api.evict("h1", &EvictParams::default()).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 429),
        "{err:?}"
    );
    let p = env.pdbs().get("mixed").await.unwrap();
    assert!(
        p.status
            .unwrap()
            .disrupted_pods
            .is_none_or(|d| !d.contains_key("sick")),
        "evicting an unhealthy pod takes nothing from the budget"
    );
    env.c.stop().await;
}

/// A DisruptionTarget=True condition whose deletion never came is reset
/// to False by a patch of that condition alone: its reason and message go,
/// and the rest of the pod (which the controller's cached pod lacks) stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_disruption_target_is_reset_and_the_rest_of_the_pod_kept() {
    let c = Cluster::start(0).await;
    let pods = c.pods("default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "stale", "annotations": {"note": "kept"}},
        "spec": {"schedulerName": "none",
                 "containers": [{"name": "c", "image": "busybox",
                                 "env": [{"name": "MODE", "value": "prod"}]}]},
    }))
    .unwrap();
    let created = pods.create(&PostParams::default(), &pod).await.unwrap();
    let status = json!({"status": {"qosClass": "BestEffort", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "lastTransitionTime": "2020-01-01T00:00:00Z"},
        {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
         "message": "Eviction API: evicting", "lastTransitionTime": "2020-01-01T00:00:00Z"},
    ]}});
    pods.patch_status("stale", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let reset = wait_for("the DisruptionTarget condition reset", async || {
        let p = pods.get("stale").await.unwrap();
        let conds = p.status.as_ref()?.conditions.clone()?;
        let target = conds.iter().find(|c| c.type_ == "DisruptionTarget")?;
        (target.status == "False").then_some((p, conds))
    })
    .await;
    let (p, conds) = reset;
    let target = conds
        .iter()
        .find(|c| c.type_ == "DisruptionTarget")
        .unwrap();
    assert_eq!(
        (target.reason.as_ref(), target.message.as_ref()),
        (None, None)
    );
    assert_ne!(
        target.last_transition_time.as_ref().unwrap().0.to_string(),
        "2020-01-01T00:00:00Z"
    );
    let scheduled = conds.iter().find(|c| c.type_ == "PodScheduled").unwrap();
    assert_eq!(scheduled.reason.as_deref(), Some("Unschedulable"));
    assert_eq!(
        p.status.as_ref().unwrap().qos_class.as_deref(),
        Some("BestEffort")
    );
    assert_eq!(p.spec, created.spec);
    assert_eq!(p.metadata.annotations, created.metadata.annotations);
    c.stop().await;
}
