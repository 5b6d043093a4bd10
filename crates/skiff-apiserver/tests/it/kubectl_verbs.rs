//! The kubectl verbs the other kubectl tests do not cover, with the real
//! kubectl 1.33 and 1.32 against the real server: describe, diff,
//! get --watch, create --dry-run=server, delete by label selector, kubectl
//! run (with the server's pod defaults), wait, and deletecollection through
//! kube-rs.

use crate::support;

use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams};
use support::{KUBECTL_132, KUBECTL_133, Kubectl, start};
use tokio::io::{AsyncBufReadExt, BufReader};

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
        ports:
        - containerPort: 80
"#;

async fn verbs(bin: &'static str) {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start(dir.path(), 0).await;
    let k = Kubectl::new(bin, dir.path());
    let manifest = dir.path().join("web.yaml");
    std::fs::write(&manifest, DEPLOYMENT).unwrap();
    let m = manifest.to_str().unwrap();

    // create --dry-run=server: defaulted and validated, not stored.
    let out = k
        .ok(&["create", "-f", m, "--dry-run=server", "-o", "yaml"])
        .await;
    assert!(out.contains("progressDeadlineSeconds: 600"), "{out}");
    assert!(out.contains("imagePullPolicy: IfNotPresent"), "{out}");
    let (ok, _, err) = k.run(&["get", "deployment", "web"]).await;
    assert!(!ok && err.contains("NotFound"), "{err}");

    k.ok(&["apply", "-f", m]).await;
    // diff: nothing to show for the same manifest (exit 0), a change exits 1.
    let (ok, out, err) = k.run(&["diff", "-f", m]).await;
    assert!(ok, "diff of an unchanged manifest: {out} {err}");
    let changed = dir.path().join("web3.yaml");
    std::fs::write(&changed, DEPLOYMENT.replace("replicas: 2", "replicas: 3")).unwrap();
    let (ok, out, err) = k.run(&["diff", "-f", changed.to_str().unwrap()]).await;
    assert!(!ok, "diff of a change exits 1: {err}");
    assert!(
        out.contains("-  replicas: 2") && out.contains("+  replicas: 3"),
        "{out}"
    );

    // describe renders the object and its details.
    let out = k.ok(&["describe", "deployment", "web"]).await;
    for want in [
        "Name:",
        "web",
        "Replicas:",
        "2 desired",
        "StrategyType:",
        "RollingUpdate",
        "nginx:1.27",
    ] {
        assert!(out.contains(want), "describe lacks {want:?}:\n{out}");
    }
    let out = k.ok(&["describe", "namespace", "default"]).await;
    assert!(out.contains("Status:") && out.contains("Active"), "{out}");

    // kubectl run: a pod with the server's defaults, Pending without a node.
    k.ok(&["run", "box", "--image=busybox:1.36", "--restart=Never"])
        .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = pods.get("box").await.unwrap();
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
    assert_eq!(spec.scheduler_name.as_deref(), Some("default-scheduler"));
    assert_eq!(spec.termination_grace_period_seconds, Some(30));
    let tolerations = spec.tolerations.as_ref().unwrap();
    assert!(
        tolerations
            .iter()
            .any(|t| t.key.as_deref() == Some("node.kubernetes.io/not-ready")
                && t.toleration_seconds == Some(300)),
        "{tolerations:?}"
    );
    let status = pod.status.as_ref().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
    let out = k.ok(&["get", "pod", "box"]).await;
    assert!(out.contains("Pending"), "{out}");
    let out = k.ok(&["describe", "pod", "box"]).await;
    assert!(
        out.contains("busybox:1.36") && out.contains("BestEffort"),
        "{out}"
    );
    // A pod spec may not change beyond what upstream allows.
    let (ok, _, err) = k
        .run(&[
            "patch",
            "pod",
            "box",
            "-p",
            r#"{"spec":{"restartPolicy":"Always"}}"#,
        ])
        .await;
    assert!(
        !ok && err.contains("pod updates may not change fields"),
        "{err}"
    );

    // get --watch prints the change it sees.
    k.ok(&["create", "configmap", "watched", "--from-literal=a=1"])
        .await;
    let mut watch = tokio::process::Command::new(bin)
        .arg("--kubeconfig")
        .arg(&k.kubeconfig)
        .env("HOME", &k.home)
        .args(["get", "configmap", "watched", "--watch", "-o", "name"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.as_deref(), Some("configmap/watched"));
    k.ok(&["label", "configmap", "watched", "seen=yes"]).await;
    let second = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.as_deref(), Some("configmap/watched"));
    watch.kill().await.unwrap();

    // wait --for on a condition-free jsonpath.
    k.ok(&[
        "wait",
        "configmap/watched",
        "--for=jsonpath={.metadata.labels.seen}=yes",
        "--timeout=20s",
    ])
    .await;

    // delete by label selector, then deletecollection through kube-rs.
    for (name, tier) in [("a", "x"), ("b", "x"), ("c", "y"), ("d", "y")] {
        k.ok(&["create", "configmap", name, "--from-literal=k=v"])
            .await;
        k.ok(&["label", "configmap", name, &format!("tier={tier}")])
            .await;
    }
    let out = k.ok(&["delete", "configmap", "-l", "tier=x"]).await;
    assert!(
        out.contains("configmap \"a\" deleted") && out.contains("configmap \"b\" deleted"),
        "{out}"
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("tier=y"),
    )
    .await
    .unwrap();
    let left: Vec<String> = cms
        .list(&ListParams::default().labels("tier"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(cms.get_opt("watched").await.unwrap().is_some());

    // A metadata-only client's deletecollection answers with metadata only.
    for name in ["e", "f"] {
        k.ok(&["create", "configmap", name, "--from-literal=big=value"])
            .await;
        k.ok(&["label", "configmap", name, "tier=z"]).await;
    }
    let req = http::Request::delete("/api/v1/namespaces/default/configmaps?labelSelector=tier%3Dz")
        .header(
            "Accept",
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
        )
        .body(Vec::new())
        .unwrap();
    let answer: serde_json::Value =
        serde_json::from_str(&client.request_text(req).await.unwrap()).unwrap();
    assert_eq!(answer["kind"], "PartialObjectMetadataList", "{answer}");
    let items = answer["items"].as_array().unwrap();
    let mut names: Vec<&str> = items
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["e", "f"]);
    assert!(items.iter().all(|i| i.get("data").is_none()), "{answer}");
    assert!(cms.get_opt("e").await.unwrap().is_none());

    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_33_verbs() {
    verbs(KUBECTL_133).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_32_verbs() {
    verbs(KUBECTL_132).await;
}
