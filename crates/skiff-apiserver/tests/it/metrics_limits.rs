//! Self-defense and observability through the real HTTPS server: `/metrics`
//! counting requests and open watches, in-flight limits answering 429,
//! request deadlines answering 504, and shutdown ending open watches.
//!
//! Requests that must stay in flight are held deterministically: their
//! body is announced but never (or only later) sent, so the server sits in
//! the request holding its slot until the test lets go.

use crate::support::{self, metrics};

mod raw_http;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchParams};
use kube::core::ObjectMeta;
use raw_http::{Conn, Resp, request};
use serde_json::Value;
use skiff_apiserver::{ApiServer, ApiServerConfig};
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpStream;

/// A bearer token for `alice`, an ordinary user (not in `system:masters`,
/// so the in-flight limits apply to her).
const ALICE: &str = "alice-token";

/// Starts a server on 127.0.0.1 with `alice` in its token file, after
/// `tweak` adjusts the configuration.
async fn start_with(dir: &Path, tweak: impl FnOnce(&mut ApiServerConfig)) -> ApiServer {
    let tokens = dir.join("tokens.csv");
    std::fs::write(&tokens, format!("{ALICE},alice,uid-alice,dev\n")).unwrap();
    let (server, _) = support::start_server_with(dir, |config| {
        config.token_auth_file = Some(tokens);
        tweak(config);
    })
    .await;
    server
}

fn cm(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn cm_json(name: &str) -> String {
    format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}}}}"#)
}

/// A watch by alice whose response head has arrived.
async fn open_watch(server: &ApiServer, query: &str) -> Conn {
    let mut conn = Conn::open(server).await;
    let path = format!("/api/v1/namespaces/default/configmaps?watch=true{query}");
    conn.send("GET", &path, Some(ALICE), None, b"").await;
    let head = conn.read_head().await;
    assert_eq!(head.status, 200);
    conn
}

/// Polls `/metrics` until it has `line`; the server updates metrics on
/// its own tasks, so this is how the test learns it got there.
async fn wait_for_metric(client: &kube::Client, line: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = metrics(client).await;
        if text.lines().any(|l| l == line) {
            return text;
        }
        assert!(Instant::now() < deadline, "no {line:?} in:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn has_line(text: &str, line: &str) {
    assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
}

const MUTATING_1: &str = r#"apiserver_current_inflight_requests{request_kind="mutating"} 1"#;
const MUTATING_0: &str = r#"apiserver_current_inflight_requests{request_kind="mutating"} 0"#;

#[tokio::test]
async fn metrics_count_requests_storage_latency_and_open_watches() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), |_| {}).await;
    let client = support::client(dir.path()).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    cms.create(&PostParams::default(), &cm("a")).await.unwrap();
    cms.get("a").await.unwrap();
    cms.list(&ListParams::default()).await.unwrap();
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(cms.get("a").await.is_err());
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    cms.create(&dry, &cm("b")).await.unwrap();

    let text = metrics(&client).await;
    let req = |verb: &str, scope: &str, code: u16, dry: &str| {
        format!(
            r#"apiserver_request_total{{code="{code}",component="apiserver",dry_run="{dry}",group="",resource="configmaps",scope="{scope}",subresource="",verb="{verb}",version="v1"}} 1"#
        )
    };
    has_line(&text, &req("POST", "resource", 201, ""));
    has_line(&text, &req("POST", "resource", 201, "All"));
    has_line(&text, &req("GET", "resource", 200, ""));
    has_line(&text, &req("GET", "resource", 404, ""));
    has_line(&text, &req("LIST", "namespace", 200, ""));
    has_line(&text, &req("DELETE", "resource", 200, ""));
    has_line(
        &text,
        r#"apiserver_request_duration_seconds_count{component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="GET",version="v1"} 2"#,
    );
    assert!(text.contains(
        r#"apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="configmaps",scope="namespace",subresource="",verb="LIST",version="v1",le="60"} 1"#
    ), "{text}");
    assert!(
        text.contains(
            r#"etcd_request_duration_seconds_count{operation="create",type="configmaps"} "#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            // Lists are served by the watch cache; reads of one object go to the store.
            r#"etcd_request_duration_seconds_count{operation="get",type="configmaps"} "#
        ),
        "{text}"
    );
    assert!(text.contains("# TYPE apiserver_request_duration_seconds histogram"));
    assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
    assert!(text.contains("\nprocess_start_time_seconds "), "{text}");
    // The scrape itself is a read-only request in flight.
    has_line(
        &text,
        r#"apiserver_current_inflight_requests{request_kind="readOnly"} 1"#,
    );
    has_line(&text, MUTATING_0);

    // A watch is open from its first byte to its end.
    let watch_labels = r#"{component="apiserver",group="",resource="configmaps",scope="namespace",subresource="",verb="WATCH",version="v1"}"#;
    let mut watch = open_watch(&server, "&timeoutSeconds=1").await;
    let text = wait_for_metric(
        &client,
        &format!("apiserver_longrunning_requests{watch_labels} 1"),
    )
    .await;
    // Still open: not yet counted as a finished request.
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("apiserver_request_total{") && l.contains(r#"verb="WATCH""#)),
        "{text}"
    );
    assert!(watch.read_to_clean_end().await);
    let text = wait_for_metric(
        &client,
        &format!("apiserver_longrunning_requests{watch_labels} 0"),
    )
    .await;
    has_line(&text, &req("WATCH", "namespace", 200, ""));

    // Health probes count without a component; /metrics needs credentials.
    let resp = request(&server, "GET", "/healthz", None, "").await;
    assert_eq!(resp.status, 200);
    let text = metrics(&client).await;
    has_line(
        &text,
        r#"apiserver_request_total{code="200",component="",dry_run="",group="",resource="",scope="",subresource="/healthz",verb="GET",version=""} 1"#,
    );
    let resp = request(&server, "GET", "/metrics", None, "").await;
    assert_eq!(resp.status, 401);
    let resp = request(&server, "GET", "/metrics", Some(ALICE), "").await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.headers.get("content-type").map(String::as_str),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    server.shutdown().await;
}

/// A list holding the one read-only slot (its body never comes), once
/// another read by alice has bounced off it with 429.
async fn hold_read_slot(server: &ApiServer, path: &str) -> Conn {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut held = Conn::open(server).await;
        held.send("GET", path, Some(ALICE), Some(10), b"{").await;
        loop {
            assert!(
                Instant::now() < deadline,
                "could not hold the read-only slot"
            );
            let resp = request(server, "GET", path, Some(ALICE), "").await;
            if resp.status != 200 {
                assert_too_many_requests(&resp);
                return held;
            }
            // A probe held the slot when the held list arrived, and the
            // held list was turned away: hold again.
            let answered = tokio::time::timeout(Duration::from_millis(5), held.io.fill_buf()).await;
            if matches!(answered, Ok(Ok(buf)) if !buf.is_empty()) {
                break;
            }
        }
    }
}

fn assert_too_many_requests(resp: &Resp) {
    assert_eq!(
        resp.status,
        429,
        "{:?}",
        String::from_utf8_lossy(&resp.body)
    );
    assert_eq!(
        resp.headers.get("retry-after").map(String::as_str),
        Some("1")
    );
    let status = resp.json();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "TooManyRequests");
    assert_eq!(status["code"], 429);
    assert_eq!(
        status["message"],
        "Too many requests, please try again later."
    );
    assert_eq!(status["details"]["retryAfterSeconds"], 1);
}

#[tokio::test]
async fn inflight_limits_answer_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), |c| {
        c.max_requests_inflight = 1;
        c.max_mutating_requests_inflight = 1;
    })
    .await;
    let client = support::client(dir.path()).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let create = "/api/v1/namespaces/default/configmaps";

    // Hold the one mutating slot: a create whose body never finishes.
    let mut held = Conn::open(&server).await;
    held.send("POST", create, Some(ALICE), Some(100), b"{")
        .await;
    wait_for_metric(&client, MUTATING_1).await;

    let resp = request(&server, "POST", create, Some(ALICE), &cm_json("x")).await;
    assert_too_many_requests(&resp);
    // system:masters is never turned away; reads have their own limit.
    cms.create(&PostParams::default(), &cm("admin"))
        .await
        .unwrap();
    let resp = request(&server, "GET", create, Some(ALICE), "").await;
    assert_eq!(resp.status, 200);
    let text = metrics(&client).await;
    has_line(
        &text,
        r#"apiserver_request_total{code="429",component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="POST",version="v1"} 1"#,
    );
    has_line(
        &text,
        r#"apiserver_request_terminations_total{code="429",component="apiserver",group="",resource="configmaps",scope="resource",subresource="",verb="POST",version="v1"} 1"#,
    );
    // The held request never got past the limit to be counted itself.
    has_line(&text, MUTATING_1);

    // Letting go frees the slot.
    drop(held);
    wait_for_metric(&client, MUTATING_0).await;
    let resp = request(&server, "POST", create, Some(ALICE), &cm_json("x")).await;
    assert_eq!(
        resp.status,
        201,
        "{:?}",
        String::from_utf8_lossy(&resp.body)
    );

    // Hold the one read-only slot the same way (a list with a body that
    // never comes), until alice's reads bounce.
    let held = hold_read_slot(&server, create).await;
    let resp = request(&server, "GET", "/version", Some(ALICE), "").await;
    assert_too_many_requests(&resp);
    // Probes, watches and system:masters still get through.
    for probe in ["/healthz", "/livez", "/readyz"] {
        let resp = request(&server, "GET", probe, None, "").await;
        assert_eq!(resp.status, 200, "{probe}");
    }
    let _watch = open_watch(&server, "").await;
    cms.list(&ListParams::default()).await.unwrap();
    // Mutations are unaffected by the read-only limit.
    let resp = request(&server, "POST", create, Some(ALICE), &cm_json("y")).await;
    assert_eq!(resp.status, 201);

    drop(held);
    server.shutdown().await;
}

fn assert_timeout(resp: &Resp) {
    assert_eq!(
        resp.status,
        504,
        "{:?}",
        String::from_utf8_lossy(&resp.body)
    );
    let status = resp.json();
    assert_eq!(status["reason"], "Timeout");
    assert_eq!(status["code"], 504);
    assert_eq!(
        status["message"],
        "Timeout: request did not complete within requested timeout - context deadline exceeded"
    );
    assert!(!resp.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn requests_past_their_deadline_get_504_but_watches_have_none() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), |c| {
        c.request_timeout = Duration::from_secs(1);
    })
    .await;
    let client = support::client(dir.path()).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let create = "/api/v1/namespaces/default/configmaps";

    let mut watch = open_watch(&server, "").await;
    let mut slow = Conn::open(&server).await;
    slow.send("POST", create, Some(ALICE), Some(100), b"{")
        .await;
    assert_timeout(&slow.read_response().await);

    let text = metrics(&client).await;
    has_line(
        &text,
        r#"apiserver_request_total{code="504",component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="POST",version="v1"} 1"#,
    );
    has_line(
        &text,
        r#"apiserver_request_terminations_total{code="504",component="apiserver",group="",resource="configmaps",scope="resource",subresource="",verb="POST",version="v1"} 1"#,
    );
    // The timed-out request gave back its slot.
    has_line(&text, MUTATING_0);

    // The watch opened before has outlived the deadline and still delivers.
    // (On a loaded machine the create itself may run past the short
    // deadline; the object exists once a create succeeds or conflicts.)
    for attempt in 0.. {
        match cms.create(&PostParams::default(), &cm("late")).await {
            Ok(_) => break,
            Err(kube::Error::Api(s)) if s.code == 409 => break,
            Err(kube::Error::Api(s)) if s.code == 504 && attempt < 20 => {}
            Err(e) => panic!("{e}"),
        }
    }
    let event = watch.read_chunk().await.unwrap();
    let event: Value = serde_json::from_slice(&event).unwrap();
    assert_eq!(event["type"], "ADDED");
    assert_eq!(event["object"]["metadata"]["name"], "late");

    // A malformed timeout parameter is a 400 with Go's parse error.
    let resp = request(
        &server,
        "GET",
        &format!("{create}?timeout=soon"),
        Some(ALICE),
        "",
    )
    .await;
    assert_eq!(resp.status, 400);
    assert_eq!(
        resp.json()["message"],
        r#"invalid timeout specified in the request URL - time: invalid duration "soon""#
    );
    server.shutdown().await;
}

#[tokio::test]
async fn timeout_parameter_shortens_the_default_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), |_| {}).await;
    let mut slow = Conn::open(&server).await;
    slow.send(
        "POST",
        "/api/v1/namespaces/default/configmaps?timeout=200ms",
        Some(ALICE),
        Some(100),
        b"{",
    )
    .await;
    // Well before the 60 s default.
    let resp = tokio::time::timeout(Duration::from_secs(30), slow.read_response())
        .await
        .expect("the timeout parameter was ignored");
    assert_timeout(&resp);
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_open_watches_and_lets_requests_finish() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), |_| {}).await;
    let client = support::client(dir.path()).await;
    let addr: SocketAddr = server.local_addr();

    let mut watches = Vec::new();
    for _ in 0..50 {
        watches.push(open_watch(&server, "").await);
    }
    // One more over HTTP/2, through kube-rs.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut h2_watch = cms
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    // A create in flight: its body is still on its way when shutdown starts.
    let body = cm_json("in-flight");
    let mut slow = Conn::open(&server).await;
    slow.send(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some(ALICE),
        Some(body.len()),
        &body.as_bytes()[..1],
    )
    .await;
    // The server is inside the create before shutdown starts.
    wait_for_metric(&client, MUTATING_1).await;

    let started = Instant::now();
    let shutdown = tokio::spawn(server.shutdown());
    // Every watch stream ends cleanly (its terminal chunk arrives).
    let ends = futures::future::join_all(
        watches
            .iter_mut()
            .map(|w| tokio::time::timeout(Duration::from_secs(5), w.read_to_clean_end())),
    )
    .await;
    for (i, end) in ends.into_iter().enumerate() {
        assert_eq!(end.ok(), Some(true), "watch {i} did not end cleanly");
    }
    let h2_end = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(event) = h2_watch.next().await {
            event.unwrap();
        }
    });
    h2_end.await.expect("the HTTP/2 watch did not end");
    // The request in flight still completes.
    slow.send_more(&body.as_bytes()[1..]).await;
    let resp = slow.read_response().await;
    assert_eq!(
        resp.status,
        201,
        "{:?}",
        String::from_utf8_lossy(&resp.body)
    );
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .expect("shutdown waited on the watches")
        .unwrap();
    // Well under the 10 s drain timeout.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Nothing listens any more.
    assert!(TcpStream::connect(addr).await.is_err());
}
