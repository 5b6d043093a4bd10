//! OpenAPI v3 against the real kubectl (1.33 and 1.32): `create -f` and
//! `apply -f` with kubectl's default `--validate=strict` (which needs the
//! `fieldValidation` parameter on the kind's PATCH operation), client-side
//! apply's strategic merge patches computed from our schemas, and `explain`.

use crate::support;

use skiff_apiserver::ApiServer;
use support::{KUBECTL_132, KUBECTL_133, Kubectl, start_server};

const MANIFEST: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        env: [{name: MODE, value: fast}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {mode: fast}
";

/// kubectl must not only succeed but also not warn (e.g. about a missing
/// OpenAPI document or schema).
struct Quiet(Kubectl);

impl Quiet {
    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        self.0.run(args).await
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.0.run(args).await;
        assert!(ok, "{} {args:?} failed: {err}", self.0.bin);
        assert!(
            !err.contains("warning"),
            "{} {args:?} warned: {err}",
            self.0.bin
        );
        out
    }
}

async fn setup(bin: &'static str) -> (tempfile::TempDir, ApiServer, Quiet) {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), 0).await;
    let k = Quiet(Kubectl::new(bin, dir.path()));
    (dir, server, k)
}

async fn create_and_apply_validate_by_default(bin: &'static str) {
    let (dir, server, k) = setup(bin).await;
    let manifest = dir.path().join("app.yaml");
    std::fs::write(&manifest, MANIFEST).unwrap();
    let m = manifest.to_str().unwrap();

    let out = k.ok(&["create", "-f", m]).await;
    assert_eq!(
        out,
        "deployment.apps/web created\nconfigmap/settings created\n"
    );
    k.ok(&["delete", "-f", m]).await;

    let out = k.ok(&["apply", "-f", m]).await;
    assert_eq!(
        out,
        "deployment.apps/web created\nconfigmap/settings created\n"
    );
    let out = k.ok(&["apply", "-f", m]).await;
    assert_eq!(
        out,
        "deployment.apps/web unchanged\nconfigmap/settings unchanged\n"
    );
    // A strategic merge patch computed from the served schemas: containers
    // and env merge by name, so the container added by someone else stays.
    k.ok(&[
        "patch",
        "deployment",
        "web",
        "--type=strategic",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"busybox"}]}}}}"#,
    ])
    .await;
    std::fs::write(
        &manifest,
        MANIFEST.replace(
            "env: [{name: MODE, value: fast}]",
            "env: [{name: MODE, value: slow}, {name: EXTRA, value: x}]",
        ),
    )
    .unwrap();
    let out = k.ok(&["apply", "-f", m]).await;
    assert_eq!(
        out,
        "deployment.apps/web configured\nconfigmap/settings unchanged\n"
    );
    let out = k
        .ok(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[*].name} {.spec.template.spec.containers[?(@.name==\"web\")].env}",
        ])
        .await;
    assert!(out.contains("web") && out.contains("side"), "{out}");
    assert!(
        out.contains(r#""value":"slow""#) && out.contains("EXTRA"),
        "{out}"
    );
    drop(server);
}

async fn explain(bin: &'static str) {
    let (_dir, server, k) = setup(bin).await;
    let out = k.ok(&["explain", "pods.spec.containers.image"]).await;
    assert!(
        out.contains("KIND:       Pod") || out.contains("KIND:"),
        "{out}"
    );
    assert!(out.contains("Container image name"), "{out}");
    let out = k.ok(&["explain", "deployments.spec"]).await;
    assert!(out.contains("replicas"), "{out}");
    assert!(out.contains("<integer>"), "{out}");
    let out = k
        .ok(&["explain", "deployment.spec.strategy.rollingUpdate.maxSurge"])
        .await;
    assert!(out.contains("IntOrString"), "{out}");
    drop(server);
}

async fn unknown_field_rejected(bin: &'static str) {
    let (dir, server, k) = setup(bin).await;
    let manifest = dir.path().join("bad.yaml");
    std::fs::write(
        &manifest,
        MANIFEST.replace("replicas: 2", "replicas: 2\n  replicass: 3"),
    )
    .unwrap();
    let m = manifest.to_str().unwrap();
    for verb in ["create", "apply"] {
        let (ok, _out, err) = k.run(&[verb, "-f", m]).await;
        assert!(!ok, "{bin} {verb} accepted an unknown field");
        assert!(err.contains("unknown field \"spec.replicass\""), "{err}");
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_by_default_kubectl_1_33() {
    create_and_apply_validate_by_default(KUBECTL_133).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_by_default_kubectl_1_32() {
    create_and_apply_validate_by_default(KUBECTL_132).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_kubectl_1_33() {
    explain(KUBECTL_133).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_kubectl_1_32() {
    explain(KUBECTL_132).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_field_rejected_kubectl_1_33() {
    unknown_field_rejected(KUBECTL_133).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_field_rejected_kubectl_1_32() {
    unknown_field_rejected(KUBECTL_132).await;
}
