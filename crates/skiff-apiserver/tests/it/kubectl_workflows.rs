//! Everyday kubectl workflows against the real server: apply twice (created,
//! unchanged, configured), `get` as Tables (default and `-o wide` columns),
//! label, annotate, the three patch types, replace, diff-free re-apply and
//! delete — with kubectl 1.33 and 1.32.

use crate::support;

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

/// The header and the rows of `kubectl get` output, split on whitespace.
fn table(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

async fn workflows(bin: &'static str) {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), 0).await;
    let k = Kubectl::new(bin, dir.path());
    let manifest = dir.path().join("app.yaml");
    std::fs::write(&manifest, MANIFEST).unwrap();
    let m = manifest.to_str().unwrap();

    // apply: created, then unchanged, then configured.
    let out = k.ok(&["apply", "-f", m, "--validate=false"]).await;
    assert_eq!(
        out,
        "deployment.apps/web created\nconfigmap/settings created\n"
    );
    let out = k.ok(&["apply", "-f", m, "--validate=false"]).await;
    assert_eq!(
        out,
        "deployment.apps/web unchanged\nconfigmap/settings unchanged\n"
    );
    std::fs::write(&manifest, MANIFEST.replace("replicas: 2", "replicas: 3")).unwrap();
    let out = k.ok(&["apply", "-f", m, "--validate=false"]).await;
    assert_eq!(
        out,
        "deployment.apps/web configured\nconfigmap/settings unchanged\n"
    );
    let out = k
        .ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.replicas} {.metadata.generation}",
        ])
        .await;
    assert_eq!(out, "3 2");

    // get as a Table: upstream's columns, default and wide.
    let rows = table(&k.ok(&["get", "deployments"]).await);
    assert_eq!(rows[0], ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert_eq!(rows[1][..4], ["web", "0/3", "0", "0"]);
    let rows = table(&k.ok(&["get", "deployments", "-o", "wide"]).await);
    assert_eq!(
        rows[0],
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    assert_eq!(rows[1][5..], ["web", "nginx:1.25", "app=web"]);
    let rows = table(&k.ok(&["get", "namespaces"]).await);
    assert_eq!(rows[0], ["NAME", "STATUS", "AGE"]);
    assert!(
        rows.iter()
            .any(|r| r[0] == "kube-system" && r[1] == "Active")
    );
    let rows = table(&k.ok(&["get", "configmaps"]).await);
    assert_eq!(rows[0], ["NAME", "DATA", "AGE"]);
    assert_eq!(rows[1][..2], ["settings", "1"]);

    // label, annotate and the three patch types.
    assert_eq!(
        k.ok(&["label", "cm", "settings", "tier=gold"]).await,
        "configmap/settings labeled\n"
    );
    assert_eq!(
        k.ok(&["annotate", "cm", "settings", "note=hi"]).await,
        "configmap/settings annotated\n"
    );
    let out = k
        .ok(&[
            "get",
            "cm",
            "-l",
            "tier=gold",
            "-o",
            "jsonpath={.items[0].metadata.annotations.note}",
        ])
        .await;
    assert_eq!(out, "hi");
    k.ok(&[
        "patch",
        "deploy",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.26"}]}}}}"#,
    ])
    .await;
    let out = k.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].env[0].value}"]).await;
    assert_eq!(
        out, "nginx:1.26 fast",
        "strategic merge keeps env of the container merged by name"
    );
    k.ok(&[
        "patch",
        "cm",
        "settings",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/data/mode","value":"slow"}]"#,
    ])
    .await;
    k.ok(&[
        "patch",
        "cm",
        "settings",
        "--type=merge",
        "-p",
        r#"{"data":{"extra":"1"}}"#,
    ])
    .await;
    let out = k
        .ok(&[
            "get",
            "cm",
            "settings",
            "-o",
            "jsonpath={.data.mode},{.data.extra}",
        ])
        .await;
    assert_eq!(out, "slow,1");
    let (ok, _, err) = k
        .run(&[
            "patch",
            "cm",
            "settings",
            "--type=json",
            "-p",
            r#"[{"op":"test","path":"/data/mode","value":"fast"}]"#,
        ])
        .await;
    assert!(!ok, "a failing JSON patch test must be refused");
    assert!(
        err.contains("the server rejected our request due to an error in our request")
            || err.contains("test"),
        "{err}"
    );

    // replace from a fetched object, then delete.
    let yaml = k.ok(&["get", "cm", "settings", "-o", "yaml"]).await;
    let edited = dir.path().join("edited.yaml");
    std::fs::write(&edited, yaml.replace("mode: slow", "mode: edited")).unwrap();
    // (--validate=false until the server publishes OpenAPI.)
    let e = edited.to_str().unwrap();
    assert_eq!(
        k.ok(&["replace", "-f", e, "--validate=false"]).await,
        "configmap/settings replaced\n"
    );
    // Replacing the same stale object again is a conflict.
    let (ok, _, err) = k.run(&["replace", "-f", e, "--validate=false"]).await;
    assert!(!ok);
    assert!(err.contains("the object has been modified"), "{err}");
    let out = k.ok(&["delete", "-f", m]).await;
    assert_eq!(
        out,
        "deployment.apps \"web\" deleted\nconfigmap \"settings\" deleted\n"
    );
    let (ok, _, err) = k.run(&["get", "deploy", "web"]).await;
    assert!(!ok);
    assert!(err.contains("deployments.apps \"web\" not found"), "{err}");

    // Typed create commands send protobuf bodies.
    assert_eq!(
        k.ok(&["create", "configmap", "typed", "--from-literal=a=b"])
            .await,
        "configmap/typed created\n"
    );
    k.ok(&["create", "secret", "generic", "creds", "--from-literal=k=v"])
        .await;
    k.ok(&[
        "create",
        "deployment",
        "api",
        "--image=nginx:1.25",
        "--replicas=0",
    ])
    .await;
    k.ok(&["create", "service", "nodeport", "edge", "--tcp=80:8080"])
        .await;
    let out = k
        .ok(&["get", "cm", "typed", "-o", "jsonpath={.data.a}"])
        .await;
    assert_eq!(out, "b");
    let out = k
        .ok(&["get", "secret", "creds", "-o", "jsonpath={.data.k}"])
        .await;
    assert_eq!(out, "dg==");
    let out = k
        .ok(&["get", "deploy", "api", "-o", "jsonpath={.spec.replicas}"])
        .await;
    assert_eq!(out, "0");
    let out = k
        .ok(&[
            "get",
            "svc",
            "edge",
            "-o",
            "jsonpath={.spec.type} {.spec.ports[0].targetPort}",
        ])
        .await;
    assert_eq!(out, "NodePort 8080");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_33_workflows() {
    workflows(KUBECTL_133).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_32_workflows() {
    workflows(KUBECTL_132).await;
}
