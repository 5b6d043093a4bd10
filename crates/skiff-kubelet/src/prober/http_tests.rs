//! httpGet probes against real servers on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::get;
use k8s_openapi::api::core::v1::{HTTPGetAction, HTTPHeader, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::tests::{FakeExec, closed_port, local_target, named_port};
use super::*;

/// Headers of every request the test server saw, in order, with the path.
type Seen = Arc<Mutex<Vec<(String, HeaderMap)>>>;

async fn record(State(seen): State<Seen>, uri: axum::http::Uri, headers: HeaderMap) {
    seen.lock().unwrap().push((uri.to_string(), headers));
}

fn app(seen: Seen, port: u16) -> Router {
    Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "x".repeat(20_000)) }),
        )
        .route(
            "/notfound",
            get(|| async { (StatusCode::NOT_FOUND, "no such page") }),
        )
        .route(
            "/headers",
            get(
                |s: State<Seen>, u: axum::http::Uri, h: HeaderMap| async move {
                    record(s, u, h).await;
                    "seen"
                },
            ),
        )
        .route(
            "/to-ok",
            get(
                |s: State<Seen>, u: axum::http::Uri, h: HeaderMap| async move {
                    record(s, u, h).await;
                    (StatusCode::FOUND, [(header::LOCATION, "/headers")])
                },
            ),
        )
        .route(
            "/to-fail",
            get(|| async { (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, "fail")]) }),
        )
        .route(
            "/to-other-host",
            get(move || async move {
                (
                    StatusCode::FOUND,
                    [(header::LOCATION, format!("http://localhost:{port}/fail"))],
                    "moved away",
                )
            }),
        )
        .route(
            "/loop",
            get(|| async {
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [(header::LOCATION, "/loop")],
                )
            }),
        )
        .route(
            "/multiple",
            get(|| async { (StatusCode::MULTIPLE_CHOICES, "pick one") }),
        )
        .route(
            "/big-choice",
            get(|| async { (StatusCode::MULTIPLE_CHOICES, "y".repeat(20_000)) }),
        )
        .route(
            "/stalled-body",
            get(|| async {
                let never = futures::stream::pending::<Result<bytes::Bytes, std::io::Error>>();
                axum::body::Body::from_stream(never)
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        )
        .with_state(seen)
}

/// Serves the test app on 127.0.0.1 and returns its port and request log.
async fn serve() -> (u16, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let router = app(seen.clone(), port);
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (port, seen)
}

fn http_probe(port: IntOrString, path: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            port,
            path: Some(path.to_string()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn run(probe: &Probe) -> ProbeOutcome {
    let mut target = local_target();
    if let Some(IntOrString::Int(p)) = probe.http_get.as_ref().map(|h| h.port.clone()) {
        target.container_ports = vec![named_port("http", p)];
    }
    run_probe(probe, ProbeKind::Readiness, &target, &FakeExec::new(vec![])).await
}

#[tokio::test]
async fn status_codes_decide_the_outcome() {
    let (port, _) = serve().await;
    let p = IntOrString::Int(i32::from(port));
    let cases = [
        ("/ok", ProbeOutcome::Success),
        (
            "/fail",
            ProbeOutcome::Failure("HTTP probe failed with statuscode: 500".to_string()),
        ),
        (
            "/notfound",
            ProbeOutcome::Failure("HTTP probe failed with statuscode: 404".to_string()),
        ),
        // A 3xx that is not followed is success with a warning.
        (
            "/multiple",
            ProbeOutcome::Warning(
                "Probe terminated redirects, Response body: pick one".to_string(),
            ),
        ),
    ];
    for (path, want) in cases {
        assert_eq!(run(&http_probe(p.clone(), path)).await, want, "{path}");
    }
}

#[tokio::test]
async fn default_headers_and_overrides_are_sent() {
    let (port, seen) = serve().await;
    // Named port, resolved through the container's ports.
    let mut target = local_target();
    target.container_ports = vec![named_port("web", i32::from(port))];
    let plain = http_probe(IntOrString::String("web".into()), "/headers?x=1");
    let fake = FakeExec::new(vec![]);
    assert_eq!(
        run_probe(&plain, ProbeKind::Liveness, &target, &fake).await,
        ProbeOutcome::Success
    );
    let mut custom = plain.clone();
    custom.http_get.as_mut().unwrap().http_headers = Some(vec![
        HTTPHeader {
            name: "Host".into(),
            value: "example.com".into(),
        },
        HTTPHeader {
            name: "X-Custom".into(),
            value: "yes".into(),
        },
        HTTPHeader {
            name: "User-Agent".into(),
            value: "mine/1".into(),
        },
        HTTPHeader {
            name: "Accept".into(),
            value: "".into(),
        },
    ]);
    assert_eq!(
        run_probe(&custom, ProbeKind::Liveness, &target, &fake).await,
        ProbeOutcome::Success
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    let (path, first) = &seen[0];
    assert_eq!(path, "/headers?x=1");
    assert_eq!(first["user-agent"], "kube-probe/1.33");
    assert_eq!(first["accept"], "*/*");
    assert_eq!(first["host"], format!("127.0.0.1:{port}").as_str());
    let (_, second) = &seen[1];
    assert_eq!(second["host"], "example.com");
    assert_eq!(second["x-custom"], "yes");
    assert_eq!(second["user-agent"], "mine/1");
    // An empty Accept removes the header rather than sending it empty.
    assert!(second.get("accept").is_none());
}

#[tokio::test]
async fn unknown_named_port_is_an_error() {
    let outcome = run(&http_probe(IntOrString::String("metrics".into()), "/")).await;
    assert_eq!(
        outcome,
        ProbeOutcome::Unknown("strconv.Atoi: parsing \"metrics\": invalid syntax".to_string())
    );
}

#[tokio::test]
async fn redirects_on_the_same_host_are_followed() {
    let (port, seen) = serve().await;
    let p = IntOrString::Int(i32::from(port));
    assert_eq!(
        run(&http_probe(p.clone(), "/to-ok")).await,
        ProbeOutcome::Success
    );
    let paths: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(p, _)| p.clone())
        .collect();
    assert_eq!(paths, vec!["/to-ok".to_string(), "/headers".to_string()]);
    // A relative Location resolves against the current path.
    assert_eq!(
        run(&http_probe(p.clone(), "/to-fail")).await,
        ProbeOutcome::Failure("HTTP probe failed with statuscode: 500".to_string())
    );
    assert_eq!(
        run(&http_probe(p, "/loop")).await,
        ProbeOutcome::Failure(format!(
            "Get \"http://127.0.0.1:{port}/loop\": stopped after 10 redirects"
        ))
    );
}

#[tokio::test]
async fn redirect_to_another_host_is_a_warning() {
    let (port, _) = serve().await;
    let outcome = run(&http_probe(
        IntOrString::Int(i32::from(port)),
        "/to-other-host",
    ))
    .await;
    assert_eq!(
        outcome,
        ProbeOutcome::Warning("Probe terminated redirects, Response body: moved away".to_string())
    );
}

#[tokio::test]
async fn connection_refused_and_timeout_use_go_wording() {
    let closed = closed_port().await;
    assert_eq!(
        run(&http_probe(IntOrString::Int(i32::from(closed)), "/healthz")).await,
        ProbeOutcome::Failure(format!(
            "Get \"http://127.0.0.1:{closed}/healthz\": dial tcp 127.0.0.1:{closed}: connect: connection refused"
        ))
    );
    let (port, _) = serve().await;
    let begin = std::time::Instant::now();
    assert_eq!(
        run(&http_probe(IntOrString::Int(i32::from(port)), "/slow")).await,
        ProbeOutcome::Failure(format!(
            "Get \"http://127.0.0.1:{port}/slow\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        ))
    );
    let took = begin.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[tokio::test]
async fn empty_path_requests_root() {
    let (port, _) = serve().await;
    // "/" is not routed: a 404 proves the request reached the server as "/".
    assert_eq!(
        run(&http_probe(IntOrString::Int(i32::from(port)), "")).await,
        ProbeOutcome::Failure("HTTP probe failed with statuscode: 404".to_string())
    );
}

/// Serves `/ok` over TLS with a self-signed certificate.
async fn serve_tls() -> u16 {
    use hyper_util::rt::TokioIo;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(|req: hyper::Request<_>| async move {
                    let status = if req.uri().path() == "/ok" { 200 } else { 503 };
                    hyper::Response::builder()
                        .status(status)
                        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"tls")))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    port
}

#[tokio::test]
async fn https_skips_certificate_verification() {
    let port = serve_tls().await;
    let mut probe = http_probe(IntOrString::Int(i32::from(port)), "/ok");
    probe.http_get.as_mut().unwrap().scheme = Some("HTTPS".to_string());
    assert_eq!(run(&probe).await, ProbeOutcome::Success);
    probe.http_get.as_mut().unwrap().path = Some("/down".to_string());
    assert_eq!(
        run(&probe).await,
        ProbeOutcome::Failure("HTTP probe failed with statuscode: 503".to_string())
    );
}

#[tokio::test]
async fn body_is_read_up_to_10_kib() {
    let (port, _) = serve().await;
    let outcome = run(&http_probe(
        IntOrString::Int(i32::from(port)),
        "/big-choice",
    ))
    .await;
    let prefix = "Probe terminated redirects, Response body: ";
    assert_eq!(
        outcome,
        ProbeOutcome::Warning(format!("{prefix}{}", "y".repeat(10 * 1024)))
    );
}

#[tokio::test]
async fn timeout_while_reading_the_body_is_an_error() {
    let (port, _) = serve().await;
    assert_eq!(
        run(&http_probe(
            IntOrString::Int(i32::from(port)),
            "/stalled-body"
        ))
        .await,
        ProbeOutcome::Unknown(
            "context deadline exceeded (Client.Timeout or context cancellation while reading body)"
                .to_string()
        )
    );
}
