//! grpc probes against a tonic health server on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{GRPCAction, Probe};
use tonic::Status;
use tonic::body::Body;

use super::grpc::{
    CHECK_PATH, HealthCheckRequest, HealthCheckResponse, HealthCodec, HealthMessage, SERVING,
    serving_status_name,
};
use super::tests::{FakeExec, closed_port, local_target};
use super::*;

/// A health server: known services answer their status, others NotFound
/// (as grpc-go's health server does); `hang` delays every answer; with no
/// statuses at all the health service is absent.
#[derive(Clone)]
struct HealthServer {
    statuses: Arc<HashMap<String, i32>>,
    hang: bool,
}

struct Check(HealthServer);

impl tonic::server::UnaryService<HealthCheckRequest> for Check {
    type Response = HealthCheckResponse;
    type Future = BoxFuture<'static, Result<tonic::Response<HealthCheckResponse>, Status>>;

    fn call(&mut self, request: tonic::Request<HealthCheckRequest>) -> Self::Future {
        let server = self.0.clone();
        Box::pin(async move {
            if server.hang {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            let service = request.into_inner().service;
            match server.statuses.get(&service) {
                Some(status) => Ok(tonic::Response::new(HealthCheckResponse {
                    status: *status,
                })),
                None => Err(Status::not_found("unknown service")),
            }
        })
    }
}

impl tower::Service<::http::Request<Body>> for HealthServer {
    type Response = ::http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ::http::Request<Body>) -> Self::Future {
        let server = self.clone();
        Box::pin(async move {
            if request.uri().path() != CHECK_PATH || server.statuses.is_empty() {
                return Ok(
                    Status::unimplemented("unknown service grpc.health.v1.Health").into_http(),
                );
            }
            let codec = HealthCodec::<HealthCheckResponse, HealthCheckRequest>::default();
            let mut grpc = tonic::server::Grpc::new(codec);
            Ok(grpc.unary(Check(server), request).await)
        })
    }
}

/// Serves a health server on 127.0.0.1 and returns its port.
async fn serve(statuses: &[(&str, i32)], hang: bool) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HealthServer {
        statuses: Arc::new(statuses.iter().map(|(k, v)| (k.to_string(), *v)).collect()),
        hang,
    };
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .serve_with_incoming(
                server,
                tonic::transport::server::TcpIncoming::from(listener),
            )
            .await
            .unwrap();
    });
    port
}

fn grpc_probe(port: u16, service: Option<&str>) -> Probe {
    Probe {
        grpc: Some(GRPCAction {
            port: i32::from(port),
            service: service.map(str::to_string),
        }),
        ..Default::default()
    }
}

async fn run(probe: &Probe) -> ProbeOutcome {
    run_probe(
        probe,
        ProbeKind::Liveness,
        &local_target(),
        &FakeExec::new(vec![]),
    )
    .await
}

#[tokio::test]
async fn serving_status_decides_the_outcome() {
    let port = serve(&[("", SERVING), ("db", 2), ("odd", 7)], false).await;
    let cases = [
        (None, ProbeOutcome::Success),
        (
            Some("db"),
            ProbeOutcome::Failure("service unhealthy (responded with \"NOT_SERVING\")".to_string()),
        ),
        (
            Some("odd"),
            ProbeOutcome::Failure("service unhealthy (responded with \"7\")".to_string()),
        ),
        (
            Some("missing"),
            ProbeOutcome::Failure(
                "error: health rpc probe failed: rpc error: code = NotFound desc = unknown service"
                    .to_string(),
            ),
        ),
    ];
    for (service, want) in cases {
        assert_eq!(run(&grpc_probe(port, service)).await, want, "{service:?}");
    }
}

#[tokio::test]
async fn server_without_health_service_fails() {
    let port = serve(&[], false).await;
    assert_eq!(
        run(&grpc_probe(port, None)).await,
        ProbeOutcome::Failure(
            "error: this server does not implement the grpc health protocol \
             (grpc.health.v1.Health): unknown service grpc.health.v1.Health"
                .to_string()
        )
    );
}

#[tokio::test]
async fn connection_failure_waits_out_the_timeout() {
    let port = closed_port().await;
    let begin = std::time::Instant::now();
    assert_eq!(
        run(&grpc_probe(port, None)).await,
        ProbeOutcome::Failure(format!(
            "timeout: failed to connect service \"127.0.0.1:{port}\" within 1s: context deadline exceeded"
        ))
    );
    assert!(begin.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn slow_rpc_times_out() {
    let port = serve(&[("", SERVING)], true).await;
    assert_eq!(
        run(&grpc_probe(port, None)).await,
        ProbeOutcome::Failure("timeout: health rpc did not complete within 1s".to_string())
    );
}

#[test]
fn health_messages_round_trip() {
    for service in ["", "a", &"long".repeat(100)] {
        let mut buf = BytesMut::new();
        HealthCheckRequest {
            service: service.to_string(),
        }
        .encode_to(&mut buf);
        let back = HealthCheckRequest::decode_from(&mut buf.freeze()).unwrap();
        assert_eq!(back.service, service);
    }
    for status in [0, 1, 2, 3, -1, 300] {
        let mut buf = BytesMut::new();
        HealthCheckResponse { status }.encode_to(&mut buf);
        let back = HealthCheckResponse::decode_from(&mut buf.freeze()).unwrap();
        assert_eq!(back.status, status);
    }
    // protoc's encoding of HealthCheckResponse{status: NOT_SERVING} followed by
    // an unknown string field 2, which must be skipped.
    let wire: &[u8] = &[0x08, 0x02, 0x12, 0x01, b'x'];
    let parsed = HealthCheckResponse::decode_from(&mut bytes::Bytes::from_static(wire)).unwrap();
    assert_eq!(parsed.status, 2);
    assert_eq!(serving_status_name(parsed.status), "NOT_SERVING");
    let truncated: &[u8] = &[0x0a, 0x05, b'a'];
    assert!(HealthCheckRequest::decode_from(&mut bytes::Bytes::from_static(truncated)).is_err());
}
