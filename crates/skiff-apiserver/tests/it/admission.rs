//! Admission through the real server: pod priority from PriorityClasses
//! (named, global default, none, unknown) and one global default class.

use crate::support;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

fn pod(name: &str, class: Option<&str>) -> Pod {
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox:1.36"}]});
    if let Some(class) = class {
        spec["priorityClassName"] = json!(class);
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

fn class(name: &str, value: i32, global: bool) -> PriorityClass {
    serde_json::from_value(
        json!({"metadata": {"name": name}, "value": value, "globalDefault": global}),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_get_priority_from_their_class() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = support::start(dir.path(), 0).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let classes: Api<PriorityClass> = Api::all(client.clone());
    let pp = PostParams::default();

    let plain = pods.create(&pp, &pod("plain", None)).await.unwrap();
    let spec = plain.spec.unwrap();
    assert_eq!(spec.priority, Some(0));
    assert_eq!(
        spec.preemption_policy.as_deref(),
        Some("PreemptLowerPriority")
    );
    assert_eq!(spec.priority_class_name, None);

    let critical = pods
        .create(&pp, &pod("critical", Some("system-node-critical")))
        .await
        .unwrap();
    assert_eq!(critical.spec.unwrap().priority, Some(2_000_001_000));

    let err = pods
        .create(&pp, &pod("lost", Some("nope")))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("{err:?}")
    };
    assert_eq!(status.code, 403);
    assert_eq!(
        status.message,
        "pods \"lost\" is forbidden: no PriorityClass with name nope was found"
    );

    classes
        .create(&pp, &class("high", 1000, true))
        .await
        .unwrap();
    let defaulted = pods.create(&pp, &pod("defaulted", None)).await.unwrap();
    let spec = defaulted.spec.unwrap();
    assert_eq!(spec.priority, Some(1000));
    assert_eq!(spec.priority_class_name.as_deref(), Some("high"));

    let err = classes
        .create(&pp, &class("higher", 2000, true))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("{err:?}")
    };
    assert_eq!(status.code, 403);
    assert!(
        status.message.contains(
            "PriorityClass high is already marked as default. Only one default can exist"
        ),
        "{}",
        status.message
    );

    let mut wrong = pod("wrong", Some("high"));
    wrong.spec.as_mut().unwrap().priority = Some(5);
    let err = pods.create(&pp, &wrong).await.unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("{err:?}")
    };
    assert_eq!(status.code, 403);
    assert!(
        status.message.contains("must not be provided in pod spec"),
        "{}",
        status.message
    );

    // A class that stops being the default stops being used as one.
    classes
        .patch(
            "high",
            &PatchParams::default(),
            &Patch::Merge(json!({"globalDefault": false})),
        )
        .await
        .unwrap();
    let after = pods.create(&pp, &pod("after", None)).await.unwrap();
    let spec = after.spec.unwrap();
    assert_eq!(spec.priority, Some(0));
    assert_eq!(spec.priority_class_name, None);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_signing_requests_name_their_requester() {
    use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = support::start(dir.path(), 0).await;
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "alice");
    let pem = params.serialize_request(&key).unwrap().pem().unwrap();
    let csr: CertificateSigningRequest = serde_json::from_value(json!({
        "metadata": {"name": "alice"},
        "spec": {
            "request": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pem),
            "signerName": "kubernetes.io/kube-apiserver-client",
            "usages": ["client auth"],
            "username": "mallory", "groups": ["system:masters"],
        },
    }))
    .unwrap();
    let csrs: Api<CertificateSigningRequest> = Api::all(client);
    let created = csrs.create(&PostParams::default(), &csr).await.unwrap();
    let spec = created.spec;
    assert_eq!(
        spec.username.as_deref(),
        Some("system:admin"),
        "the requester, not the body"
    );
    assert!(spec.groups.unwrap().contains(&"system:masters".to_owned()));
    server.shutdown().await;
}
