//! `/openapi/v2` against the real kubectl (1.33 and 1.32): `create -f` and
//! `apply -f` of a `kind: List` (which kubectl validates client-side against
//! the v2 definitions, fetched as gnostic protobuf) with the default
//! `--validate=strict`, a List item with an unknown field rejected by that
//! validation, and the document itself in JSON and protobuf with its ETag.

use crate::support;

use http::{Request, StatusCode, header};
use skiff_apiserver::ApiServer;
use support::{KUBECTL_132, KUBECTL_133, Kubectl, start};

/// What `kubectl get -o yaml` of several objects prints.
const LIST: &str = "\
apiVersion: v1
kind: List
metadata:
  resourceVersion: \"\"
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: settings}
  data: {mode: fast}
- apiVersion: apps/v1
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
          ports: [{containerPort: 80}]
          resources: {limits: {cpu: 500m, memory: 128Mi}}
";

async fn setup(bin: &'static str) -> (tempfile::TempDir, ApiServer, kube::Client, Kubectl) {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start(dir.path(), 0).await;
    let k = Kubectl::new(bin, dir.path());
    (dir, server, client, k)
}

/// Runs kubectl, which must succeed without warnings; returns stdout.
async fn quiet(k: &Kubectl, args: &[&str]) -> String {
    let (ok, out, err) = k.run(args).await;
    assert!(ok, "{} {args:?} failed: {err}", k.bin);
    assert!(!err.contains("warning"), "{} {args:?} warned: {err}", k.bin);
    out
}

async fn list_create_and_apply(bin: &'static str) {
    let (dir, server, _client, k) = setup(bin).await;
    let file = dir.path().join("list.yaml");
    std::fs::write(&file, LIST).unwrap();
    let f = file.to_str().unwrap();

    let out = quiet(&k, &["create", "-f", f]).await;
    assert_eq!(
        out,
        "configmap/settings created\ndeployment.apps/web created\n"
    );
    quiet(&k, &["delete", "-f", f]).await;

    let out = quiet(&k, &["apply", "-f", f]).await;
    assert_eq!(
        out,
        "configmap/settings created\ndeployment.apps/web created\n"
    );
    let out = quiet(&k, &["apply", "-f", f]).await;
    assert_eq!(
        out,
        "configmap/settings unchanged\ndeployment.apps/web unchanged\n"
    );
    // What `get -o yaml` of both prints goes back in as it came out.
    let printed = quiet(
        &k,
        &["get", "configmap/settings", "deployment/web", "-o", "yaml"],
    )
    .await;
    assert!(printed.starts_with("apiVersion: v1\nitems:\n"), "{printed}");
    std::fs::write(&file, printed).unwrap();
    let out = quiet(&k, &["apply", "-f", f]).await;
    assert!(out.contains("deployment.apps/web"), "{out}");
    drop(server);
}

async fn list_with_unknown_field_rejected(bin: &'static str) {
    let (dir, server, _client, k) = setup(bin).await;
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        LIST.replace("replicas: 2", "replicas: 2\n    replicass: 3")
            .replace(
                "image: nginx:1.25",
                "image: nginx:1.25\n          imagee: x",
            ),
    )
    .unwrap();
    let f = file.to_str().unwrap();
    for verb in ["create", "apply"] {
        let (ok, out, err) = k.run(&[verb, "-f", f]).await;
        assert!(!ok, "{bin} {verb} accepted unknown fields: {out}");
        // Upstream's shape: kubectl's client-side validation names each
        // field by the kind's path and the definition that lacks it.
        assert!(
            err.starts_with(&format!(
                "error: error validating \"{f}\": error validating data: ["
            )),
            "{err}"
        );
        assert!(
            err.contains(
                "ValidationError(Deployment.spec): unknown field \"replicass\" in io.k8s.api.apps.v1.DeploymentSpec"
            ),
            "{err}"
        );
        assert!(
            err.contains(
                "ValidationError(Deployment.spec.template.spec.containers[0]): unknown field \"imagee\" in io.k8s.api.core.v1.Container"
            ),
            "{err}"
        );
        assert!(
            err.trim_end().ends_with(
                "if you choose to ignore these errors, turn validation off with --validate=false"
            ),
            "{err}"
        );
    }
    // A field the schema requires, missing: the same validation names it.
    let missing = dir.path().join("missing.yaml");
    std::fs::write(
        &missing,
        LIST.replace("        - name: web\n          image", "        - image"),
    )
    .unwrap();
    let (ok, _, err) = k.run(&["create", "-f", missing.to_str().unwrap()]).await;
    assert!(!ok, "{bin} accepted a container without a name");
    assert!(
        err.contains(
            "ValidationError(Deployment.spec.template.spec.containers[0]): missing required field \"name\" in io.k8s.api.core.v1.Container"
        ),
        "{err}"
    );
    // Nothing was created: validation happens before any request.
    let (ok, _, err) = k.run(&["get", "configmap", "settings"]).await;
    assert!(!ok && err.contains("NotFound"), "{err}");
    // With validation off the unknown fields are dropped by the server.
    let out = quiet(&k, &["create", "--validate=false", "-f", f]).await;
    assert_eq!(
        out,
        "configmap/settings created\ndeployment.apps/web created\n"
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_create_and_apply_kubectl_1_33() {
    list_create_and_apply(KUBECTL_133).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_create_and_apply_kubectl_1_32() {
    list_create_and_apply(KUBECTL_132).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_with_unknown_field_rejected_kubectl_1_33() {
    list_with_unknown_field_rejected(KUBECTL_133).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_with_unknown_field_rejected_kubectl_1_32() {
    list_with_unknown_field_rejected(KUBECTL_132).await;
}

async fn get(
    client: &kube::Client,
    accept: &str,
    if_none_match: Option<&str>,
) -> http::Response<Vec<u8>> {
    let mut req = Request::get("/openapi/v2").header(header::ACCEPT, accept);
    if let Some(tag) = if_none_match {
        req = req.header(header::IF_NONE_MATCH, tag);
    }
    let resp = client
        .send(req.body(Vec::new().into()).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = http_body_util::BodyExt::collect(body)
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    http::Response::from_parts(parts, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_in_json_and_protobuf() {
    let (_dir, server, client, _k) = setup(KUBECTL_133).await;
    let json = get(&client, "application/json", None).await;
    assert_eq!(json.status(), StatusCode::OK);
    assert_eq!(json.headers()[header::CONTENT_TYPE], "application/json");
    let etag = json.headers()[header::ETAG].to_str().unwrap().to_owned();
    let doc: serde_json::Value = serde_json::from_slice(json.body()).unwrap();
    assert_eq!(doc["swagger"], "2.0");

    let pb = get(
        &client,
        "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
        None,
    )
    .await;
    assert_eq!(pb.status(), StatusCode::OK);
    assert_eq!(
        pb.headers()[header::CONTENT_TYPE],
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    );
    assert_eq!(pb.headers()[header::ETAG].to_str().unwrap(), etag);
    let decoded = skiff_protobuf::openapi_v2::decode(pb.body()).unwrap();
    for (name, kind) in [
        ("io.k8s.api.core.v1.Pod", "Pod"),
        ("io.k8s.api.core.v1.ConfigMap", "ConfigMap"),
        ("io.k8s.api.apps.v1.Deployment", "Deployment"),
        ("io.k8s.api.batch.v1.Job", "Job"),
    ] {
        for d in [&doc, &decoded] {
            let gvks = d["definitions"][name]["x-kubernetes-group-version-kind"]
                .as_array()
                .unwrap_or_else(|| panic!("{name}"));
            assert!(gvks.iter().any(|g| g["kind"] == kind), "{name}");
        }
    }
    assert_eq!(decoded["definitions"], doc["definitions"]);
    assert_eq!(decoded["paths"], doc["paths"]);

    let again = get(&client, "application/json", Some(&etag)).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert!(again.body().is_empty());
    let refused = get(&client, "text/html", None).await;
    assert_eq!(refused.status(), StatusCode::NOT_ACCEPTABLE);
    drop(server);
}
