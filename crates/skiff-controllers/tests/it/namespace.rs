//! The namespace, ServiceAccount and root CA publisher controllers against
//! the real API server with hollow nodes, checked with the real kubectl.

use crate::support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Api;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use serde_json::{Value, json};
use skiff_controllers::ControllerManagerOptions;
use skiff_controllers::rootcacertpublisher::{
    DESCRIPTION, DESCRIPTION_ANNOTATION, ROOT_CA_CONFIG_MAP_NAME, root_ca_from_config,
};
use support::{Cluster, NODE};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A cluster whose controller manager publishes the kubeconfig's CA.
struct Env {
    cluster: Cluster,
    root_ca: String,
    manager: (watch::Sender<bool>, JoinHandle<()>),
}

impl Env {
    async fn start(nodes: usize) -> Env {
        let cluster = Cluster::start_bare(nodes).await;
        let kc = kube::config::Kubeconfig::read_from(&cluster.kubeconfig).unwrap();
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        let root_ca = root_ca_from_config(&cfg).expect("the kubeconfig names a CA");
        let mut opts = ControllerManagerOptions::new("ns-test".into());
        opts.leader_elect = false;
        opts.root_ca = Some(root_ca.clone());
        let (tx, rx) = watch::channel(false);
        let client = cluster.client.clone();
        let task = tokio::spawn(async move {
            skiff_controllers::run(opts, client, rx).await.unwrap();
        });
        Env {
            cluster,
            root_ca,
            manager: (tx, task),
        }
    }

    fn client(&self) -> kube::Client {
        self.cluster.client.clone()
    }

    async fn stop(self) {
        self.manager.0.send_replace(true);
        self.manager.1.await.unwrap();
        self.cluster.stop().await;
    }

    async fn create_namespace(&self, name: &str) {
        let nss: Api<Namespace> = Api::all(self.client());
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        nss.create(&PostParams::default(), &ns).await.unwrap();
    }
}

/// Polls `f` every 100 ms until it returns `Some`, for up to `secs`.
async fn wait_long<T, F: AsyncFnMut() -> Option<T>>(what: &str, secs: u64, mut f: F) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

fn condition(ns: &Namespace, type_: &str) -> Option<(String, String, String)> {
    let c = ns
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((
        c.status.clone(),
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
    ))
}

fn ar<K: kube::Resource<DynamicType = ()>>() -> ApiResource {
    ApiResource::erase::<K>(&())
}

/// (resource, object) pairs: about a thousand objects of ten kinds.
fn content() -> Vec<(ApiResource, Value)> {
    let mut out = Vec::new();
    for i in 0..300 {
        out.push((
            ar::<ConfigMap>(),
            json!({"metadata": {"name": format!("cm-{i}")}, "data": {"k": "v"}}),
        ));
        out.push((
            ar::<Secret>(),
            json!({"metadata": {"name": format!("s-{i}")}, "stringData": {"k": "v"}}),
        ));
    }
    for i in 0..100 {
        out.push((
            ar::<Lease>(),
            json!({"metadata": {"name": format!("l-{i}")}, "spec": {"holderIdentity": "x"}}),
        ));
        out.push((
            ar::<Pod>(),
            json!({
                "metadata": {"name": format!("p-{i}")},
                "spec": {
                    "nodeName": NODE,
                    "terminationGracePeriodSeconds": 10,
                    "containers": [{"name": "c", "image": "busybox:1"}],
                },
            }),
        ));
    }
    for i in 0..40 {
        out.push((
            ar::<Service>(),
            json!({"metadata": {"name": format!("svc-{i}")}, "spec": {"ports": [{"port": 80}], "selector": {"app": "x"}}}),
        ));
        out.push((
            ar::<Role>(),
            json!({"metadata": {"name": format!("r-{i}")}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
        ));
        out.push((
            ar::<RoleBinding>(),
            json!({
                "metadata": {"name": format!("rb-{i}")},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("r-{i}")},
                "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "big"}],
            }),
        ));
        out.push((
            ar::<ServiceAccount>(),
            json!({"metadata": {"name": format!("sa-{i}")}}),
        ));
        out.push((
            ar::<Job>(),
            json!({
                "metadata": {"name": format!("j-{i}")},
                "spec": {
                    "suspend": true,
                    "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1"}]}},
                },
            }),
        ));
    }
    out.push((
        ar::<Deployment>(),
        json!({
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 10,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "nodeName": NODE,
                        "terminationGracePeriodSeconds": 10,
                        "containers": [{"name": "c", "image": "busybox:1"}],
                    },
                },
            },
        }),
    ));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_with_a_thousand_objects_is_emptied_and_removed() {
    let env = Env::start(1).await;
    let client = env.client();
    env.create_namespace("big").await;
    let objects = content();
    let total = objects.len();
    let started = Instant::now();
    let results: Vec<_> = futures::stream::iter(objects)
        .map(|(ar, obj)| {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "big", &ar);
            async move {
                let obj: DynamicObject = serde_json::from_value(obj).unwrap();
                api.create(&PostParams::default(), &obj).await
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for r in results {
        r.unwrap();
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "big");
    // The Deployment's ReplicaSet and its pods too.
    wait_long("the deployment's pods", 30, async || {
        let n = pods.list(&ListParams::default()).await.unwrap().items.len();
        (n == 110).then_some(())
    })
    .await;
    println!(
        "created {total} objects (+ ReplicaSet, 10 pods) in {:?}",
        started.elapsed()
    );

    let nss: Api<Namespace> = Api::all(client.clone());
    let started = Instant::now();
    nss.delete("big", &DeleteParams::default()).await.unwrap();
    let ns = nss.get("big").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    wait_long("namespace big to go away", 50, async || {
        nss.get_opt("big").await.unwrap().is_none().then_some(())
    })
    .await;
    println!(
        "namespace with {} objects deleted in {:?} (incl. the 5 s deletion grace period)",
        total + 11,
        started.elapsed()
    );
    // Nothing of it is left behind.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "big");
    assert!(
        cms.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        pods.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let rs: Api<k8s_openapi::api::apps::v1::ReplicaSet> = Api::namespaced(client.clone(), "big");
    assert!(
        rs.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    env.stop().await;
}

/// The deleter lists what remains a page (500) at a time: content held by
/// finalizers past one page is counted whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remaining_content_past_one_list_page_is_counted_whole() {
    const HELD: usize = 530;
    let env = Env::start(0).await;
    let client = env.client();
    env.create_namespace("paged").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "paged");
    let created: Vec<()> = futures::stream::iter(0..HELD)
        .map(|i| {
            let cms = cms.clone();
            async move {
                let cm: ConfigMap = serde_json::from_value(json!({
                    "metadata": {"name": format!("held-{i}"), "finalizers": ["foo.io/x"]},
                }))
                .unwrap();
                cms.create(&PostParams::default(), &cm).await.unwrap();
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert_eq!(created.len(), HELD);
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.delete("paged", &DeleteParams::default()).await.unwrap();
    let ns = wait_long("the finalizers to be reported", 60, async || {
        let ns = nss.get("paged").await.unwrap();
        let (status, _, _) = condition(&ns, "NamespaceFinalizersRemaining")?;
        (status == "True").then_some(ns)
    })
    .await;
    assert_eq!(
        condition(&ns, "NamespaceFinalizersRemaining").unwrap().2,
        format!(
            "Some content in the namespace has finalizers remaining: foo.io/x in {HELD} resource instances"
        )
    );
    assert_eq!(
        condition(&ns, "NamespaceContentRemaining").unwrap().2,
        format!("Some resources are remaining: configmaps. has {HELD} resource instances")
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_with_a_finalizer_holds_the_namespace_until_released() {
    let env = Env::start(0).await;
    let client = env.client();
    env.create_namespace("held").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "held");
    for (name, finalizers) in [("keep", json!(["foo.io/x"])), ("free", json!([]))] {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": name, "finalizers": finalizers},
        }))
        .unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.delete("held", &DeleteParams::default()).await.unwrap();
    let ns = wait_long("the finalizer to be reported", 30, async || {
        let ns = nss.get("held").await.unwrap();
        let (status, _, _) = condition(&ns, "NamespaceFinalizersRemaining")?;
        (status == "True").then_some(ns)
    })
    .await;
    assert_eq!(
        condition(&ns, "NamespaceFinalizersRemaining").unwrap(),
        (
            "True".to_owned(),
            "SomeFinalizersRemain".to_owned(),
            "Some content in the namespace has finalizers remaining: foo.io/x in 1 resource instances".to_owned()
        )
    );
    assert_eq!(
        condition(&ns, "NamespaceContentRemaining").unwrap(),
        (
            "True".to_owned(),
            "SomeResourcesRemain".to_owned(),
            "Some resources are remaining: configmaps. has 1 resource instances".to_owned()
        )
    );
    assert_eq!(
        condition(&ns, "NamespaceDeletionDiscoveryFailure")
            .unwrap()
            .0,
        "False"
    );
    assert_eq!(
        ns.status.as_ref().unwrap().phase.as_deref(),
        Some("Terminating")
    );
    let names: Vec<String> = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| c.metadata.name.unwrap())
        .collect();
    assert_eq!(names, ["keep"], "everything else is gone");
    assert!(nss.get_opt("held").await.unwrap().is_some());
    // Deleting it again is a conflict while it terminates.
    let err = nss
        .delete("held", &DeleteParams::default())
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert_eq!(
                s.message,
                "Operation cannot be fulfilled on namespaces \"held\": The system is ensuring all content is removed from this namespace.  Upon completion, this namespace will automatically be purged by the system."
            );
        }
        other => panic!("{other}"),
    }

    // Someone releases the finalizer: the namespace completes.
    cms.patch(
        "keep",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    wait_long("namespace held to go away", 30, async || {
        nss.get_opt("held").await.unwrap().is_none().then_some(())
    })
    .await;
    env.stop().await;
}

fn normalize(pem: &str) -> String {
    pem.chars().filter(|c| !c.is_whitespace()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_service_account_and_root_ca_appear_and_come_back() {
    let env = Env::start(0).await;
    let client = env.client();
    // The published bundle is the kubeconfig's CA as written.
    let kc = kube::config::Kubeconfig::read_from(&env.cluster.kubeconfig).unwrap();
    let ca_data = kc.clusters[0]
        .cluster
        .as_ref()
        .unwrap()
        .certificate_authority_data
        .clone()
        .unwrap();
    let written = {
        use base64::Engine;
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(ca_data)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(normalize(&env.root_ca), normalize(&written));

    env.create_namespace("fresh").await;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "fresh");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "fresh");
    let published = async || {
        let cm = cms.get_opt(ROOT_CA_CONFIG_MAP_NAME).await.unwrap()?;
        let right = cm.data.as_ref()?.get("ca.crt") == Some(&env.root_ca)
            && cm.data.as_ref()?.len() == 1
            && cm
                .metadata
                .annotations
                .as_ref()?
                .get(DESCRIPTION_ANNOTATION)
                == Some(&DESCRIPTION.to_owned());
        right.then_some(cm)
    };
    let first_sa = support::wait_for("the default ServiceAccount", async || {
        sas.get_opt("default").await.unwrap()
    })
    .await;
    let first_cm = support::wait_for("kube-root-ca.crt", published).await;

    sas.delete("default", &DeleteParams::default())
        .await
        .unwrap();
    cms.delete(ROOT_CA_CONFIG_MAP_NAME, &DeleteParams::default())
        .await
        .unwrap();
    support::wait_for("the default ServiceAccount again", async || {
        let sa = sas.get_opt("default").await.unwrap()?;
        (sa.metadata.uid != first_sa.metadata.uid).then_some(())
    })
    .await;
    let second_cm = support::wait_for("kube-root-ca.crt again", published).await;
    assert_ne!(second_cm.metadata.uid, first_cm.metadata.uid);

    // An edit is reverted.
    cms.patch(
        ROOT_CA_CONFIG_MAP_NAME,
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"ca.crt": "bogus", "extra": "x"}})),
    )
    .await
    .unwrap();
    let restored = support::wait_for("kube-root-ca.crt restored", published).await;
    assert_eq!(restored.metadata.uid, second_cm.metadata.uid);
    env.stop().await;
}

fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_delete_namespace_returns_and_the_namespace_is_gone() {
    let env = Env::start(0).await;
    env.create_namespace("x").await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client(), "x");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "c"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let kubeconfig = env.cluster.kubeconfig.clone();
    let started = Instant::now();
    let out = tokio::task::spawn_blocking({
        let k = kubeconfig.clone();
        move || kubectl(&k, &["delete", "namespace", "x", "--timeout=50s"])
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "namespace \"x\" deleted"
    );
    println!(
        "kubectl delete namespace returned after {:?}",
        started.elapsed()
    );
    let out = tokio::task::spawn_blocking(move || kubectl(&kubeconfig, &["get", "ns", "x"]))
        .await
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "Error from server (NotFound): namespaces \"x\" not found"
    );
    env.stop().await;
}
