//! Pod graceful deletion, propagation finalizers, `pods/binding`,
//! `pods/eviction`, `*/scale`, `namespaces/finalize`, YAML bodies with
//! duplicate fields, and Events shared by core/v1 and events.k8s.io/v1 —
//! through the real HTTPS server with kube-rs and the real kubectl.

use crate::support;

use http::Request;
use serde_json::{Value, json};
use support::{KUBECTL_133, Kubectl, start};

/// Sends a raw request; returns the status code, the Warning headers and the
/// body as JSON.
async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: impl Into<Vec<u8>>,
) -> (u16, Vec<String>, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", content_type)
        .body(body.into())
        .unwrap();
    let resp = client
        .send(req.map(kube::client::Body::from))
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let warnings = resp
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (code, warnings, value)
}

async fn json_req(client: &kube::Client, method: &str, path: &str, body: Value) -> (u16, Value) {
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let (code, _, v) = send(client, method, path, "application/json", body).await;
    (code, v)
}

fn pod(name: &str, node: Option<&str>, labels: Value) -> Value {
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox:1.36"}]});
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": spec})
}

const PODS: &str = "/api/v1/namespaces/default/pods";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_on_nodes_are_deleted_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start(dir.path(), 0).await;

    let (code, _) = json_req(&client, "POST", PODS, pod("on-node", Some("n1"), json!({}))).await;
    assert_eq!(code, 201);
    let (code, deleted) =
        json_req(&client, "DELETE", &format!("{PODS}/on-node"), Value::Null).await;
    assert_eq!(code, 200);
    assert_eq!(
        deleted["kind"], "Pod",
        "pods answer a delete with the object"
    );
    assert_eq!(deleted["metadata"]["deletionGracePeriodSeconds"], 30);
    let (code, live) = json_req(&client, "GET", &format!("{PODS}/on-node"), Value::Null).await;
    assert_eq!(code, 200, "the pod stays until its kubelet confirms");
    let first = live["metadata"]["deletionTimestamp"]
        .as_str()
        .unwrap()
        .to_owned();
    // A shorter grace period shortens the deletion; a longer one does not.
    let (_, shorter) = json_req(
        &client,
        "DELETE",
        &format!("{PODS}/on-node"),
        json!({"gracePeriodSeconds": 5}),
    )
    .await;
    assert_eq!(shorter["metadata"]["deletionGracePeriodSeconds"], 5);
    assert!(shorter["metadata"]["deletionTimestamp"].as_str().unwrap() <= first.as_str());
    let (_, longer) = json_req(
        &client,
        "DELETE",
        &format!("{PODS}/on-node"),
        json!({"gracePeriodSeconds": 60}),
    )
    .await;
    assert_eq!(longer["metadata"]["deletionGracePeriodSeconds"], 5);
    // The kubelet's confirmation: grace period 0.
    let (code, _) = json_req(
        &client,
        "DELETE",
        &format!("{PODS}/on-node"),
        json!({"gracePeriodSeconds": 0}),
    )
    .await;
    assert_eq!(code, 200);
    let (code, _) = json_req(&client, "GET", &format!("{PODS}/on-node"), Value::Null).await;
    assert_eq!(code, 404);

    // No kubelet runs an unscheduled pod: it goes at once.
    json_req(&client, "POST", PODS, pod("pending", None, json!({}))).await;
    let (code, _) = json_req(&client, "DELETE", &format!("{PODS}/pending"), Value::Null).await;
    assert_eq!(code, 200);
    let (code, _) = json_req(&client, "GET", &format!("{PODS}/pending"), Value::Null).await;
    assert_eq!(code, 404);

    // kubectl's force deletion.
    json_req(&client, "POST", PODS, pod("forced", Some("n1"), json!({}))).await;
    let kubectl = Kubectl::new(KUBECTL_133, dir.path());
    let (ok, _, err) = kubectl
        .run(&["delete", "pod", "forced", "--grace-period=0", "--force"])
        .await;
    assert!(ok, "{err}");
    let (code, _) = json_req(&client, "GET", &format!("{PODS}/forced"), Value::Null).await;
    assert_eq!(code, 404);

    // Bad delete options are 422 on DeleteOptions.
    json_req(&client, "POST", PODS, pod("opts", None, json!({}))).await;
    let (code, status) = json_req(
        &client,
        "DELETE",
        &format!("{PODS}/opts"),
        json!({"propagationPolicy": "Sideways"}),
    )
    .await;
    assert_eq!(code, 422);
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("propagationPolicy: Unsupported value: \"Sideways\""),
        "{status}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propagation_policies_leave_finalizers_for_the_garbage_collector() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start(dir.path(), 0).await;
    let kubectl = Kubectl::new(KUBECTL_133, dir.path());
    for name in ["orphaned", "foreground", "background"] {
        kubectl
            .ok(&["create", "configmap", name, "--from-literal=k=v"])
            .await;
    }
    kubectl
        .ok(&[
            "delete",
            "configmap",
            "orphaned",
            "--cascade=orphan",
            "--wait=false",
        ])
        .await;
    kubectl
        .ok(&[
            "delete",
            "configmap",
            "foreground",
            "--cascade=foreground",
            "--wait=false",
        ])
        .await;
    kubectl
        .ok(&["delete", "configmap", "background", "--cascade=background"])
        .await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let (_, orphaned) = json_req(&client, "GET", &format!("{cms}/orphaned"), Value::Null).await;
    assert_eq!(orphaned["metadata"]["finalizers"], json!(["orphan"]));
    assert!(orphaned["metadata"]["deletionTimestamp"].is_string());
    let (_, fg) = json_req(&client, "GET", &format!("{cms}/foreground"), Value::Null).await;
    assert_eq!(fg["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    let (code, _) = json_req(&client, "GET", &format!("{cms}/background"), Value::Null).await;
    assert_eq!(code, 404);
    // The garbage collector's part: removing the finalizer deletes it.
    let (code, _) = send(
        &client,
        "PATCH",
        &format!("{cms}/orphaned"),
        "application/merge-patch+json",
        json!({"metadata": {"finalizers": null}}).to_string(),
    )
    .await
    .pipe(|(c, _, v)| (c, v));
    assert_eq!(code, 200);
    let (code, _) = json_req(&client, "GET", &format!("{cms}/orphaned"), Value::Null).await;
    assert_eq!(code, 404);
    server.shutdown().await;
}

trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl<T> Pipe for T {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_assigns_a_node_once() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start(dir.path(), 0).await;
    json_req(&client, "POST", PODS, pod("p", None, json!({}))).await;
    let binding = json!({"apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": "p", "annotations": {"example.com/by": "test"}},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}});
    let (code, status) = json_req(
        &client,
        "POST",
        &format!("{PODS}/p/binding"),
        binding.clone(),
    )
    .await;
    assert_eq!(
        (code, status["status"].as_str()),
        (201, Some("Success")),
        "{status}"
    );
    let (_, p) = json_req(&client, "GET", &format!("{PODS}/p"), Value::Null).await;
    assert_eq!(p["spec"]["nodeName"], "n1");
    assert_eq!(p["metadata"]["annotations"]["example.com/by"], "test");
    let scheduled = p["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .unwrap();
    assert_eq!(scheduled["status"], "True");
    let (code, status) = json_req(&client, "POST", &format!("{PODS}/p/binding"), binding).await;
    assert_eq!(code, 409);
    assert_eq!(
        status["message"],
        "Operation cannot be fulfilled on pods/binding \"p\": pod default/p is already assigned to node \"n1\""
    );
    let wrong = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "q"}, "target": {"name": "n1"}});
    let (code, _) = json_req(&client, "POST", &format!("{PODS}/p/binding"), wrong).await;
    assert_eq!(code, 400);
    let (code, status) = json_req(
        &client,
        "POST",
        &format!("{PODS}/p/binding"),
        json!({"metadata": {"name": "p"}, "target": {}}),
    )
    .await;
    assert_eq!(code, 422, "{status}");
    server.shutdown().await;
}

/// The scheduler's plain binding (no annotations), which the server makes
/// by editing the stored bytes: the pod reads back whole, with its node, a
/// PodScheduled condition and a new resourceVersion; and the conflicts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_binding_keeps_the_rest_of_the_pod() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start(dir.path(), 0).await;
    let (code, before) = json_req(
        &client,
        "POST",
        PODS,
        pod("plain", None, json!({"app": "x"})),
    )
    .await;
    assert_eq!(code, 201);
    let bind = async |name: &str| {
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "n2"}});
        let url = format!("{PODS}/{name}/binding");
        let (code, status) = json_req(&client, "POST", &url, binding).await;
        (
            code,
            status["message"].as_str().unwrap_or_default().to_owned(),
        )
    };
    let (code, message) = bind("plain").await;
    assert_eq!(code, 201, "{message}");
    let (_, after) = json_req(&client, "GET", &format!("{PODS}/plain"), Value::Null).await;
    assert_eq!(after["spec"]["nodeName"], "n2");
    let conditions = after["status"]["conditions"].as_array().unwrap();
    assert_eq!(conditions.len(), 1, "{after}");
    assert_eq!(conditions[0]["type"], "PodScheduled");
    assert_eq!(conditions[0]["status"], "True");
    assert!(conditions[0]["lastTransitionTime"].is_string());
    let rv = |p: &Value| {
        p["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
    };
    assert!(rv(&after) > rv(&before));
    // Nothing else changed.
    let mut expected = before.clone();
    expected["spec"]["nodeName"] = json!("n2");
    expected["status"]["conditions"] = after["status"]["conditions"].clone();
    expected["metadata"]["resourceVersion"] = after["metadata"]["resourceVersion"].clone();
    assert_eq!(after, expected);
    assert_eq!(
        bind("plain").await,
        (409, "Operation cannot be fulfilled on pods/binding \"plain\": pod default/plain is already assigned to node \"n2\"".to_owned())
    );

    // A pod being deleted (held by a finalizer) is not bound.
    let mut held = pod("held", None, json!({}));
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    let (code, _) = json_req(&client, "POST", PODS, held).await;
    assert_eq!(code, 201);
    let (code, _) = json_req(&client, "DELETE", &format!("{PODS}/held"), Value::Null).await;
    assert_eq!(code, 200);
    assert_eq!(
        bind("held").await,
        (409, "Operation cannot be fulfilled on pods/binding \"held\": pod default/held is being deleted, cannot be assigned to a host".to_owned())
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_honours_disruption_budgets() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::start_server(dir.path(), 0).await;
    // The 429 below is the answer under test, not something to retry.
    let client = support::client_without_retries(dir.path()).await;
    json_req(
        &client,
        "POST",
        PODS,
        pod("web-1", Some("n1"), json!({"app": "web"})),
    )
    .await;
    let (_, p) = json_req(&client, "GET", &format!("{PODS}/web-1"), Value::Null).await;
    // Ready: an unready pod may be evicted whenever the budget is met
    // (unhealthyPodEvictionPolicy IfHealthyBudget), which is not under test.
    let mut running = p.clone();
    running["status"]["phase"] = json!("Running");
    running["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
    let (code, status) = json_req(&client, "PUT", &format!("{PODS}/web-1/status"), running).await;
    assert_eq!(code, 200, "{status}");
    let pdbs = "/apis/policy/v1/namespaces/default/poddisruptionbudgets";
    let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}});
    let (code, created) = json_req(&client, "POST", pdbs, pdb).await;
    assert_eq!(code, 201, "{created}");
    let set_status = |allowed: i64, created: &Value| {
        let mut s = created.clone();
        s["status"] = json!({"observedGeneration": created["metadata"]["generation"], "disruptionsAllowed": allowed,
            "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1});
        s["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("resourceVersion");
        s
    };
    let (code, _) = json_req(
        &client,
        "PUT",
        &format!("{pdbs}/web/status"),
        set_status(0, &created),
    )
    .await;
    assert_eq!(code, 200);
    let eviction =
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "web-1"}});
    let (code, status) = json_req(
        &client,
        "POST",
        &format!("{PODS}/web-1/eviction"),
        eviction.clone(),
    )
    .await;
    assert_eq!(code, 429, "{status}");
    assert_eq!(status["reason"], "TooManyRequests");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("needs 1 healthy pods and has 1 currently"),
        "{status}"
    );
    let (code, _) = json_req(&client, "GET", &format!("{PODS}/web-1"), Value::Null).await;
    assert_eq!(code, 200, "the pod is still there");

    let (code, _) = json_req(
        &client,
        "PUT",
        &format!("{pdbs}/web/status"),
        set_status(1, &created),
    )
    .await;
    assert_eq!(code, 200);
    let (code, status) =
        json_req(&client, "POST", &format!("{PODS}/web-1/eviction"), eviction).await;
    assert_eq!(code, 201, "{status}");
    let (_, p) = json_req(&client, "GET", &format!("{PODS}/web-1"), Value::Null).await;
    assert!(
        p["metadata"]["deletionTimestamp"].is_string(),
        "evicted pods terminate gracefully"
    );
    let (_, pdb) = json_req(&client, "GET", &format!("{pdbs}/web"), Value::Null).await;
    assert_eq!(pdb["status"]["disruptionsAllowed"], 0);
    assert!(pdb["status"]["disruptedPods"]["web-1"].is_string(), "{pdb}");

    // A pod no budget covers is simply deleted.
    json_req(
        &client,
        "POST",
        PODS,
        pod("loner", None, json!({"app": "other"})),
    )
    .await;
    let (code, _) = json_req(
        &client,
        "POST",
        &format!("{PODS}/loner/eviction"),
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "loner"}}),
    )
    .await;
    assert_eq!(code, 201);
    let (code, _) = json_req(&client, "GET", &format!("{PODS}/loner"), Value::Null).await;
    assert_eq!(code, 404);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_subresource_with_kubectl_and_raw_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start(dir.path(), 0).await;
    let kubectl = Kubectl::new(KUBECTL_133, dir.path());
    kubectl
        .ok(&[
            "create",
            "deployment",
            "web",
            "--image=nginx:1.27",
            "--replicas=1",
        ])
        .await;
    let path = "/apis/apps/v1/namespaces/default/deployments/web/scale";
    let (code, scale) = json_req(&client, "GET", path, Value::Null).await;
    assert_eq!(code, 200);
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"]["replicas"], 1);
    assert_eq!(scale["status"]["selector"], "app=web");
    kubectl
        .ok(&["scale", "deployment", "web", "--replicas=3"])
        .await;
    let (_, d) = json_req(
        &client,
        "GET",
        "/apis/apps/v1/namespaces/default/deployments/web",
        Value::Null,
    )
    .await;
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["metadata"]["generation"], 2);
    // A stale resourceVersion is a conflict; negative replicas are invalid.
    let mut stale = scale.clone();
    stale["spec"]["replicas"] = json!(5);
    let (code, _) = json_req(&client, "PUT", path, stale).await;
    assert_eq!(code, 409);
    let (code, status) = json_req(
        &client,
        "PUT",
        path,
        json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": "web"}, "spec": {"replicas": -1}}),
    )
    .await;
    assert_eq!(code, 422);
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("spec.replicas: Invalid value: -1"),
        "{status}"
    );
    let (code, _) = json_req(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps/x/scale",
        Value::Null,
    )
    .await;
    assert_eq!(code, 404);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_bodies_and_duplicate_fields() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start(dir.path(), 0).await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  a: one\n  a: two\n";
    let (code, warnings, created) = send(&client, "POST", cms, "application/yaml", yaml).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["data"]["a"], "two");
    assert_eq!(
        warnings,
        ["299 - \"line 7: key \\\"a\\\" already set in map\""]
    );
    let strict = format!("{cms}?fieldValidation=Strict");
    let yaml2 = yaml.replace("from-yaml", "strict-yaml");
    let (code, _, status) = send(&client, "POST", &strict, "application/yaml", yaml2).await;
    assert_eq!(code, 400);
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("strict decoding error: line 7: key \"a\" already set in map"),
        "{status}"
    );
    let body = r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dup", "name": "dup"}, "data": {"k": "v"}, "bogus": 1}"#;
    let (code, warnings, _) = send(&client, "POST", cms, "application/json", body).await;
    assert_eq!(code, 201);
    assert_eq!(
        warnings,
        [
            "299 - \"duplicate field \\\"name\\\"\"",
            "299 - \"unknown field \\\"bogus\\\"\""
        ]
    );
    let (code, _, _) = send(
        &client,
        "POST",
        cms,
        "application/yaml",
        "- not\n- an object\n",
    )
    .await;
    assert_eq!(code, 400);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_shared_by_both_event_apis() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start(dir.path(), 0).await;
    let core = "/api/v1/namespaces/default/events";
    let new = "/apis/events.k8s.io/v1/namespaces/default/events";
    let (code, _) = json_req(&client, "POST", core, json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "old-style"}, "involvedObject": {"kind": "Pod", "name": "p1", "namespace": "default"},
        "reason": "Started", "message": "started it", "type": "Normal", "count": 3,
        "source": {"component": "kubelet"}})).await;
    assert_eq!(code, 201);
    let (code, created) = json_req(&client, "POST", new, json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "new-style"}, "regarding": {"kind": "Pod", "name": "p2", "namespace": "default"},
        "reason": "Scheduled", "note": "placed it", "type": "Normal", "action": "Binding",
        "eventTime": "2026-11-29T10:00:00.000000Z", "reportingController": "default-scheduler",
        "reportingInstance": "s1"})).await;
    assert_eq!(code, 201, "{created}");
    let (_, via_new) = json_req(&client, "GET", &format!("{new}/old-style"), Value::Null).await;
    assert_eq!(via_new["apiVersion"], "events.k8s.io/v1");
    assert_eq!(via_new["note"], "started it");
    assert_eq!(via_new["regarding"]["name"], "p1");
    assert_eq!(via_new["deprecatedCount"], 3);
    let (_, via_core) = json_req(&client, "GET", &format!("{core}/new-style"), Value::Null).await;
    assert_eq!(via_core["apiVersion"], "v1");
    assert_eq!(via_core["message"], "placed it");
    assert_eq!(via_core["involvedObject"]["name"], "p2");
    let (_, list) = json_req(
        &client,
        "GET",
        &format!("{core}?fieldSelector=involvedObject.name%3Dp2"),
        Value::Null,
    )
    .await;
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["new-style"]);
    let kubectl = Kubectl::new(KUBECTL_133, dir.path());
    let out = kubectl.ok(&["get", "events"]).await;
    assert!(
        out.contains("placed it") && out.contains("started it"),
        "{out}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_finalize_completes_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start(dir.path(), 0).await;
    let kubectl = Kubectl::new(KUBECTL_133, dir.path());
    kubectl.ok(&["create", "namespace", "doomed"]).await;
    kubectl
        .ok(&["delete", "namespace", "doomed", "--wait=false"])
        .await;
    let (_, ns) = json_req(&client, "GET", "/api/v1/namespaces/doomed", Value::Null).await;
    assert_eq!(ns["status"]["phase"], "Terminating");
    let mut finalized = ns.clone();
    finalized["spec"]["finalizers"] = json!([]);
    let (code, _) = json_req(
        &client,
        "PUT",
        "/api/v1/namespaces/doomed/finalize",
        finalized,
    )
    .await;
    assert_eq!(code, 200);
    let (code, _) = json_req(&client, "GET", "/api/v1/namespaces/doomed", Value::Null).await;
    assert_eq!(code, 404);
    server.shutdown().await;
}
