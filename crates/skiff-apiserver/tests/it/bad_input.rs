//! Bad input always gets a clear `metav1.Status` with upstream's code and
//! reason — never a 500, a hang or a panic: malformed bodies, wrong
//! apiVersion/kind, names that break the rules or try path traversal,
//! oversized bodies and labels, invalid selectors, unknown resources, and
//! media types we cannot decode.

use crate::support;

use support::start;

/// Sends a request and returns the Status of its failure.
async fn fail(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> kube::core::Status {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(body)
        .unwrap();
    match client.request_text(req).await {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("{method} {path}: expected a Status failure, got {other:?}"),
    }
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";

/// (method, path, content type, body, expected code, expected reason)
type Case = (
    &'static str,
    &'static str,
    &'static str,
    Vec<u8>,
    u16,
    &'static str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start(dir.path(), 0).await;
    let json = "application/json";
    let cases: Vec<Case> = vec![
        ("POST", CMS, json, b"{not json".to_vec(), 400, "BadRequest"),
        ("POST", CMS, json, b"[1,2,3]".to_vec(), 400, "BadRequest"),
        ("POST", CMS, json, b"".to_vec(), 400, "BadRequest"),
        (
            "POST",
            CMS,
            json,
            br#"{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"a"}}"#.to_vec(),
            400,
            "BadRequest",
        ),
        (
            "POST",
            CMS,
            json,
            br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"a"}}"#.to_vec(),
            400,
            "BadRequest",
        ),
        (
            "POST",
            CMS,
            json,
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"other"}}"#.to_vec(),
            400,
            "BadRequest",
        ),
        (
            "POST",
            CMS,
            json,
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"../../etc"}}"#.to_vec(),
            422,
            "Invalid",
        ),
        (
            "POST",
            CMS,
            json,
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{}}"#.to_vec(),
            422,
            "Invalid",
        ),
        (
            "POST",
            CMS,
            json,
            format!(
                r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"a","labels":{{"k":"{}"}}}}}}"#,
                "v".repeat(1000)
            )
            .into_bytes(),
            422,
            "Invalid",
        ),
        (
            "POST",
            CMS,
            json,
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","resourceVersion":"5"}}"#.to_vec(),
            400,
            "BadRequest",
        ),
        (
            "POST",
            CMS,
            "application/vnd.kubernetes.protobuf",
            b"k8s\0garbage".to_vec(),
            400,
            "BadRequest",
        ),
        (
            "POST",
            CMS,
            "application/vnd.kubernetes.protobuf",
            b"not even the magic".to_vec(),
            400,
            "BadRequest",
        ),
        ("POST", CMS, json, vec![b' '; 4 * 1024 * 1024], 413, "RequestEntityTooLarge"),
        // Under the 3 MiB body limit, over the 1.5 MiB object limit.
        (
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            json,
            format!(
                r#"{{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{{"name":"huge"}},"rules":[{}]}}"#,
                vec![r#"{"apiGroups":[""],"resources":["pods"],"verbs":["get","list","watch","create"]}"#; 24_000].join(",")
            )
            .into_bytes(),
            413,
            "RequestEntityTooLarge",
        ),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps?labelSelector=a%20in%20(",
            json,
            vec![],
            400,
            "BadRequest",
        ),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps?fieldSelector=spec.nodeName%3Dx",
            json,
            vec![],
            400,
            "BadRequest",
        ),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps?continue=bm90LWEtdG9rZW4",
            json,
            vec![],
            400,
            "BadRequest",
        ),
        ("GET", "/api/v1/namespaces/default/widgets", json, vec![], 404, "NotFound"),
        ("GET", "/api/v1/namespaces/default/configmaps/..%2F..%2Fsecrets", json, vec![], 404, "NotFound"),
        ("GET", "/apis/nope.example.com/v1/things", json, vec![], 404, "NotFound"),
        (
            "PATCH",
            "/api/v1/namespaces/default/configmaps/missing",
            "application/merge-patch+json",
            b"{}".to_vec(),
            404,
            "NotFound",
        ),
    ];
    for (method, path, content_type, body, code, reason) in cases {
        let status = fail(&client, method, path, content_type, body).await;
        assert_eq!(
            (status.code, status.reason.as_str()),
            (code, reason),
            "{method} {path}: {}",
            status.message
        );
        assert!(!status.message.is_empty(), "{method} {path}: empty message");
    }

    // Patches that are malformed or do not apply.
    let cm = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"p"},"data":{"a":"b"}}"#;
    let req = http::Request::post(CMS)
        .header("content-type", "application/json")
        .body(cm.to_vec())
        .unwrap();
    client.request_text(req).await.unwrap();
    let p = format!("{CMS}/p");
    for (content_type, body, code) in [
        ("application/json-patch+json", &b"{\"op\":1}"[..], 400),
        (
            "application/json-patch+json",
            &br#"[{"op":"remove","path":"/data/nope"}]"#[..],
            422,
        ),
        ("application/merge-patch+json", &b"[oops"[..], 400),
        (
            "application/strategic-merge-patch+json",
            &br#"{"metadata":{"name":"renamed"}}"#[..],
            400,
        ),
        ("text/plain", &b"{}"[..], 415),
    ] {
        let status = fail(&client, "PATCH", &p, content_type, body.to_vec()).await;
        assert_eq!(
            status.code,
            code,
            "{content_type} {}: {}",
            String::from_utf8_lossy(body),
            status.message
        );
    }
    // The object survived all of it.
    let req = http::Request::get(p.as_str()).body(Vec::new()).unwrap();
    let obj: serde_json::Value =
        serde_json::from_str(&client.request_text(req).await.unwrap()).unwrap();
    assert_eq!(obj["data"]["a"], "b");
    server.shutdown().await;
}
