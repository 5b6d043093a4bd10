//! Server-side apply against the real server: `kubectl apply --server-side`
//! (created, re-applied without a write, a conflict with another manager,
//! `--force-conflicts`, removal of dropped fields), managedFields of
//! ordinary writes (`kubectl create`, client-side `kubectl apply`), and
//! kube-rs `Patch::Apply` (conflicts, force, dry run, the status
//! subresource, the required fieldManager).

use crate::support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::{KUBECTL_133, Kubectl, start, start_server};

const DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web, tier: front}
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
        env: [{name: MODE, value: fast}]
";

/// The object as JSON, managedFields included.
async fn get_json(k: &Kubectl, what: &[&str]) -> Value {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    args.extend_from_slice(&["-o", "json", "--show-managed-fields"]);
    serde_json::from_str(&k.ok(&args).await).unwrap()
}

/// `(manager, operation)` of each managedFields entry.
fn managers(obj: &Value) -> Vec<(String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap_or_default().to_owned(),
                        e["operation"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn entry<'a>(obj: &'a Value, manager: &str) -> &'a Value {
    obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == manager)
        .unwrap_or_else(|| panic!("no entry of {manager} in {obj}"))
}

#[tokio::test]
async fn kubectl_server_side_apply_conflicts_force_and_prune() {
    let dir = tempfile::tempdir().unwrap();
    let _server = start_server(dir.path(), 0).await;
    let k = Kubectl::new(KUBECTL_133, dir.path());
    let manifest = dir.path().join("web.yaml");
    std::fs::write(&manifest, DEPLOYMENT).unwrap();
    let m = manifest.to_str().unwrap();
    let apply = ["apply", "--server-side", "-f", m, "--validate=false"];

    let out = k.ok(&apply).await;
    assert_eq!(out, "deployment.apps/web serverside-applied\n");
    let obj = get_json(&k, &["deploy", "web"]).await;
    assert_eq!(managers(&obj), [("kubectl".to_owned(), "Apply".to_owned())]);
    let fields = &entry(&obj, "kubectl")["fieldsV1"];
    assert_eq!(fields["f:spec"]["f:replicas"], json!({}));
    let container =
        &fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"];
    assert_eq!(container["."], json!({}), "{fields}");
    assert_eq!(container["f:image"], json!({}));
    assert_eq!(
        container["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"]["f:containerPort"],
        json!({}),
        "{fields}"
    );
    assert_eq!(
        container["f:env"]["k:{\"name\":\"MODE\"}"]["f:value"],
        json!({})
    );
    assert!(
        fields["f:metadata"].get("f:name").is_none(),
        "name is never owned"
    );
    let rv = obj["metadata"]["resourceVersion"].clone();

    // Re-applying the same configuration writes nothing.
    let out = k.ok(&apply).await;
    assert_eq!(out, "deployment.apps/web serverside-applied\n");
    let again = get_json(&k, &["deploy", "web"]).await;
    assert_eq!(again["metadata"]["resourceVersion"], rv);
    assert_eq!(
        again["metadata"]["managedFields"],
        obj["metadata"]["managedFields"]
    );

    // Another manager takes .spec.replicas with an ordinary patch.
    k.ok(&[
        "patch",
        "deploy",
        "web",
        "--field-manager=ops",
        "-p",
        r#"{"spec":{"replicas":5}}"#,
    ])
    .await;
    let obj = get_json(&k, &["deploy", "web"]).await;
    assert_eq!(
        managers(&obj),
        [
            ("kubectl".to_owned(), "Apply".to_owned()),
            ("ops".to_owned(), "Update".to_owned())
        ]
    );
    assert_eq!(
        entry(&obj, "ops")["fieldsV1"],
        json!({"f:spec": {"f:replicas": {}}})
    );
    assert!(
        entry(&obj, "kubectl")["fieldsV1"]["f:spec"]
            .get("f:replicas")
            .is_none(),
        "the patch took replicas from the applier"
    );

    // Applying a different value for it now conflicts...
    std::fs::write(&manifest, DEPLOYMENT.replace("replicas: 2", "replicas: 3")).unwrap();
    let (ok, _, err) = k.run(&apply).await;
    assert!(!ok);
    assert!(
        err.contains(
            r#"Apply failed with 1 conflict: conflict with "ops" using apps/v1: .spec.replicas"#
        ),
        "{err}"
    );
    let obj = get_json(&k, &["deploy", "web"]).await;
    assert_eq!(obj["spec"]["replicas"], 5);

    // ...until forced: the applier owns it again and "ops" owns nothing.
    let mut forced = apply.to_vec();
    forced.push("--force-conflicts");
    k.ok(&forced).await;
    let obj = get_json(&k, &["deploy", "web"]).await;
    assert_eq!(obj["spec"]["replicas"], 3);
    assert_eq!(managers(&obj), [("kubectl".to_owned(), "Apply".to_owned())]);
    assert_eq!(
        entry(&obj, "kubectl")["fieldsV1"]["f:spec"]["f:replicas"],
        json!({})
    );

    // Fields dropped from the configuration leave the object.
    let trimmed = DEPLOYMENT
        .replace(", tier: front", "")
        .replace("        env: [{name: MODE, value: fast}]\n", "")
        .replace("replicas: 2", "replicas: 3");
    std::fs::write(&manifest, trimmed).unwrap();
    k.ok(&apply).await;
    let obj = get_json(&k, &["deploy", "web"]).await;
    assert_eq!(obj["metadata"]["labels"], json!({"app": "web"}));
    assert!(
        obj["spec"]["template"]["spec"]["containers"][0]
            .get("env")
            .is_none(),
        "{obj}"
    );
    assert_eq!(
        obj["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.25"
    );
}

#[tokio::test]
async fn ordinary_writes_record_update_managers() {
    let dir = tempfile::tempdir().unwrap();
    let _server = start_server(dir.path(), 0).await;
    let k = Kubectl::new(KUBECTL_133, dir.path());
    k.ok(&["create", "configmap", "made", "--from-literal=a=1"])
        .await;
    let obj = get_json(&k, &["configmap", "made"]).await;
    assert_eq!(
        managers(&obj),
        [("kubectl-create".to_owned(), "Update".to_owned())]
    );
    assert_eq!(
        entry(&obj, "kubectl-create")["fieldsV1"],
        json!({"f:data": {".": {}, "f:a": {}}}),
        "as upstream: the creator added the data map and its key"
    );
    assert!(entry(&obj, "kubectl-create")["time"].is_string());
    // The create's answer, a server dry run's and a read agree.
    let created = |name: &'static str, extra: &'static [&'static str]| {
        let k = &k;
        async move {
            let mut args = vec!["create", "configmap", name, "--from-literal=a=1"];
            args.extend_from_slice(extra);
            args.extend_from_slice(&["-o", "json", "--show-managed-fields"]);
            serde_json::from_str::<Value>(&k.ok(&args).await).unwrap()
        }
    };
    let answer = created("answered", &[]).await;
    assert_eq!(
        answer["metadata"]["managedFields"],
        get_json(&k, &["configmap", "answered"]).await["metadata"]["managedFields"]
    );
    let dry = created("dry", &["--dry-run=server"]).await;
    for obj in [&answer, &dry] {
        assert_eq!(
            entry(obj, "kubectl-create")["fieldsV1"],
            json!({"f:data": {".": {}, "f:a": {}}})
        );
    }

    let manifest = dir.path().join("cm.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: made}\ndata: {a: '1', b: '2'}\n",
    )
    .unwrap();
    let out = k
        .ok(&[
            "apply",
            "-f",
            manifest.to_str().unwrap(),
            "--validate=false",
        ])
        .await;
    assert!(out.contains("configmap/made configured"), "{out}");
    let obj = get_json(&k, &["configmap", "made"]).await;
    // Entries of one second sort by manager.
    let mut seen = managers(&obj);
    seen.sort();
    assert_eq!(
        seen,
        [
            ("kubectl-client-side-apply".to_owned(), "Update".to_owned()),
            ("kubectl-create".to_owned(), "Update".to_owned())
        ]
    );
    let csa = &entry(&obj, "kubectl-client-side-apply")["fieldsV1"];
    assert_eq!(csa["f:data"], json!({"f:b": {}}), "{csa}");
    assert!(
        csa["f:metadata"]["f:annotations"]
            .get("f:kubectl.kubernetes.io/last-applied-configuration")
            .is_some(),
        "{csa}"
    );
}

fn cm(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": data})
}

#[tokio::test]
async fn kube_rs_apply_conflict_force_dry_run_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, client) = start(dir.path(), 0).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    let created = cms
        .patch(
            "cfg",
            &PatchParams::apply("mgr"),
            &Patch::Apply(cm(json!({"a": "1", "b": "1"}))),
        )
        .await
        .unwrap();
    let mf = created.metadata.managed_fields.clone().unwrap();
    assert_eq!(mf.len(), 1);
    assert_eq!(mf[0].manager.as_deref(), Some("mgr"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));

    // The same value from another manager is shared, a different one conflicts.
    cms.patch(
        "cfg",
        &PatchParams::apply("other"),
        &Patch::Apply(cm(json!({"b": "1"}))),
    )
    .await
    .unwrap();
    let err = cms
        .patch(
            "cfg",
            &PatchParams::apply("other"),
            &Patch::Apply(cm(json!({"a": "2"}))),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("{err}")
    };
    assert_eq!(status.code, 409);
    assert_eq!(status.reason, "Conflict");
    assert_eq!(
        status.message,
        r#"Apply failed with 1 conflict: conflict with "mgr": .data.a"#
    );

    // Dry run: the answer shows the forced result, the store keeps the old.
    let mut dry = PatchParams::apply("other").force();
    dry.dry_run = true;
    let shown = cms
        .patch("cfg", &dry, &Patch::Apply(cm(json!({"a": "2"}))))
        .await
        .unwrap();
    assert_eq!(shown.data.unwrap()["a"], "2");
    assert_eq!(cms.get("cfg").await.unwrap().data.unwrap()["a"], "1");

    let forced = cms
        .patch(
            "cfg",
            &PatchParams::apply("other").force(),
            &Patch::Apply(cm(json!({"a": "2"}))),
        )
        .await
        .unwrap();
    let data = forced.data.clone().unwrap();
    assert_eq!((data["a"].as_str(), data["b"].as_str()), ("2", "1"));
    let fields = |name: &str| {
        forced
            .metadata
            .managed_fields
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.manager.as_deref() == Some(name))
            .map(|e| serde_json::to_value(e.fields_v1.as_ref().unwrap()).unwrap())
    };
    assert_eq!(fields("mgr"), Some(json!({"f:data": {"f:b": {}}})));
    // "other" stopped applying b but keeps nothing it did not apply now.
    assert_eq!(fields("other"), Some(json!({"f:data": {"f:a": {}}})));

    // "mgr" drops b from its configuration: nobody else owns it, so it goes.
    let pruned = cms
        .patch(
            "cfg",
            &PatchParams::apply("mgr"),
            &Patch::Apply(cm(json!({}))),
        )
        .await
        .unwrap();
    assert_eq!(pruned.data.unwrap().keys().collect::<Vec<_>>(), ["a"]);

    // Apply to the status subresource is recorded with subresource status.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let deploy: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"app": "d"}},
                 "template": {"metadata": {"labels": {"app": "d"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &deploy)
        .await
        .unwrap();
    let status = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                        "status": {"replicas": 4}});
    let out = deployments
        .patch_status("d", &PatchParams::apply("ctl"), &Patch::Apply(status))
        .await
        .unwrap();
    assert_eq!(out.status.unwrap().replicas, Some(4));
    let mf = out.metadata.managed_fields.unwrap();
    let ctl = mf
        .iter()
        .find(|e| e.manager.as_deref() == Some("ctl"))
        .unwrap();
    assert_eq!(ctl.subresource.as_deref(), Some("status"));
    assert_eq!(ctl.operation.as_deref(), Some("Apply"));

    // Apply without a fieldManager is refused as upstream does.
    let req = http::Request::patch("/api/v1/namespaces/default/configmaps/cfg")
        .header("content-type", "application/apply-patch+yaml")
        .body(
            b"{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"cfg\"}}"
                .to_vec(),
        )
        .unwrap();
    let err = client.request::<ConfigMap>(req).await.unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("{err}")
    };
    assert_eq!(status.code, 422);
    let req = http::Request::patch("/api/v1/namespaces/default/configmaps/cfg?force=true")
        .header("content-type", "application/merge-patch+json")
        .body(b"{}".to_vec())
        .unwrap();
    let err = client.request::<ConfigMap>(req).await.unwrap_err();
    let kube::Error::Api(forbidden) = err else {
        panic!("{err}")
    };
    assert_eq!(forbidden.code, 422);
    assert_eq!(
        forbidden.message,
        r#"PatchOptions.meta.k8s.io "" is invalid: force: Forbidden: may not be specified for non-apply patch"#
    );
    assert_eq!(
        status.message,
        r#"PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch"#
    );
}
