//! grpc probes (upstream `pkg/probe/grpc`): calls `grpc.health.v1.Health/Check`
//! on the pod's IP over plaintext HTTP/2; `SERVING` is success.
//!
//! The two health messages are tiny, so they are encoded by hand in a tonic
//! codec rather than generated from the .proto.

use std::marker::PhantomData;
use std::time::Duration;

use bytes::{Buf, BufMut};
use http::uri::PathAndQuery;
use k8s_openapi::api::core::v1::GRPCAction;
use tokio::time::Instant;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use super::{ProbeOutcome, ProbeTarget, USER_AGENT, go_duration, join_host_port};

/// The health service's Check method.
pub(crate) const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";
/// `HealthCheckResponse.ServingStatus.SERVING`.
pub(crate) const SERVING: i32 = 1;
/// How often a refused connection is retried until the timeout, standing in
/// for grpc-go's blocking dial.
const CONNECT_RETRY: Duration = Duration::from_millis(100);

/// Runs one grpc probe.
pub(crate) async fn probe(
    action: &GRPCAction,
    target: &ProbeTarget,
    timeout: Duration,
) -> ProbeOutcome {
    let Some(ip) = target.pod_ip else {
        return ProbeOutcome::Unknown("pod has no IP address yet".to_string());
    };
    let port = match u16::try_from(action.port) {
        Ok(p) if p > 0 => p,
        _ => return ProbeOutcome::Unknown(format!("invalid port number: {}", action.port)),
    };
    let addr = join_host_port(&ip.to_string(), port);
    let service = action.service.clone().unwrap_or_default();
    let deadline = Instant::now() + timeout;
    let endpoint = match Endpoint::from_shared(format!("http://{addr}"))
        .and_then(|e| e.user_agent(USER_AGENT))
    {
        Ok(e) => e,
        Err(e) => {
            return ProbeOutcome::Failure(format!(
                "error: failed to connect service at {addr:?}: {e}"
            ));
        }
    };
    let Ok(channel) = tokio::time::timeout_at(deadline, connect_blocking(&endpoint)).await else {
        return ProbeOutcome::Failure(format!(
            "timeout: failed to connect service {addr:?} within {}: context deadline exceeded",
            go_duration(timeout)
        ));
    };
    let call = check(channel, service);
    match tokio::time::timeout_at(deadline, call).await {
        Err(_) => ProbeOutcome::Failure(format!(
            "timeout: health rpc did not complete within {}",
            go_duration(timeout)
        )),
        Ok(Err(status)) => ProbeOutcome::Failure(rpc_failure(&status, timeout)),
        Ok(Ok(status)) if status == SERVING => ProbeOutcome::Success,
        Ok(Ok(status)) => ProbeOutcome::Failure(format!(
            "service unhealthy (responded with {:?})",
            serving_status_name(status)
        )),
    }
}

/// Connects, retrying refused connections until the caller's deadline.
async fn connect_blocking(endpoint: &Endpoint) -> Channel {
    loop {
        match endpoint.connect().await {
            Ok(channel) => return channel,
            Err(_) => tokio::time::sleep(CONNECT_RETRY).await,
        }
    }
}

/// One Check call; returns the serving status number.
async fn check(channel: Channel, service: String) -> Result<i32, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let codec = HealthCodec::<HealthCheckRequest, HealthCheckResponse>::default();
    let response = grpc
        .unary(
            tonic::Request::new(HealthCheckRequest { service }),
            PathAndQuery::from_static(CHECK_PATH),
            codec,
        )
        .await?;
    Ok(response.into_inner().status)
}

/// Upstream's failure text for an RPC that returned an error status.
fn rpc_failure(status: &Status, timeout: Duration) -> String {
    match status.code() {
        Code::Unimplemented => format!(
            "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
            status.message()
        ),
        Code::DeadlineExceeded => format!(
            "timeout: health rpc did not complete within {}",
            go_duration(timeout)
        ),
        code => format!(
            "error: health rpc probe failed: rpc error: code = {} desc = {}",
            go_code_name(code),
            status.message()
        ),
    }
}

/// grpc-go's names for status codes.
fn go_code_name(code: Code) -> String {
    match code {
        Code::Ok => "OK".to_string(),
        Code::Cancelled => "Canceled".to_string(),
        other => format!("{other:?}"),
    }
}

/// The enum names of `HealthCheckResponse.ServingStatus`; an unknown number
/// prints as itself, as Go's generated `String()` does.
pub(crate) fn serving_status_name(status: i32) -> String {
    match status {
        0 => "UNKNOWN".to_string(),
        1 => "SERVING".to_string(),
        2 => "NOT_SERVING".to_string(),
        3 => "SERVICE_UNKNOWN".to_string(),
        n => n.to_string(),
    }
}

/// A protobuf message with one field numbered 1, encoded by hand.
pub(crate) trait HealthMessage: Sized + Send + 'static {
    /// Appends the wire form.
    fn encode_to(&self, dst: &mut impl BufMut);
    /// Reads the wire form, skipping unknown fields.
    fn decode_from(src: &mut impl Buf) -> Result<Self, Status>;
}

/// `grpc.health.v1.HealthCheckRequest { string service = 1; }`
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HealthCheckRequest {
    pub(crate) service: String,
}

/// `grpc.health.v1.HealthCheckResponse { ServingStatus status = 1; }`
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HealthCheckResponse {
    pub(crate) status: i32,
}

impl HealthMessage for HealthCheckRequest {
    fn encode_to(&self, dst: &mut impl BufMut) {
        if !self.service.is_empty() {
            put_varint(dst, (1 << 3) | 2);
            put_varint(dst, self.service.len() as u64);
            dst.put_slice(self.service.as_bytes());
        }
    }

    fn decode_from(src: &mut impl Buf) -> Result<Self, Status> {
        let mut msg = HealthCheckRequest::default();
        while src.has_remaining() {
            let key = get_varint(src)?;
            if key == (1 << 3) | 2 {
                let bytes = get_bytes(src)?;
                msg.service = String::from_utf8(bytes)
                    .map_err(|_| Status::internal("invalid UTF-8 in service"))?;
            } else {
                skip_field(src, key)?;
            }
        }
        Ok(msg)
    }
}

impl HealthMessage for HealthCheckResponse {
    fn encode_to(&self, dst: &mut impl BufMut) {
        if self.status != 0 {
            put_varint(dst, 1 << 3);
            // int32 enums are sign-extended to 64 bits on the wire.
            put_varint(dst, i64::from(self.status) as u64);
        }
    }

    fn decode_from(src: &mut impl Buf) -> Result<Self, Status> {
        let mut msg = HealthCheckResponse::default();
        while src.has_remaining() {
            let key = get_varint(src)?;
            if key == 1 << 3 {
                msg.status = get_varint(src)? as i64 as i32;
            } else {
                skip_field(src, key)?;
            }
        }
        Ok(msg)
    }
}

fn put_varint(dst: &mut impl BufMut, mut v: u64) {
    while v >= 0x80 {
        dst.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    dst.put_u8(v as u8);
}

fn get_varint(src: &mut impl Buf) -> Result<u64, Status> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        if !src.has_remaining() {
            break;
        }
        let b = src.get_u8();
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(Status::internal("invalid varint in health message"))
}

fn get_bytes(src: &mut impl Buf) -> Result<Vec<u8>, Status> {
    let len = usize::try_from(get_varint(src)?)
        .map_err(|_| Status::internal("field too long in health message"))?;
    if src.remaining() < len {
        return Err(Status::internal("truncated health message"));
    }
    let mut out = vec![0; len];
    src.copy_to_slice(&mut out);
    Ok(out)
}

fn skip_field(src: &mut impl Buf, key: u64) -> Result<(), Status> {
    let skip = match key & 7 {
        0 => {
            get_varint(src)?;
            0
        }
        1 => 8,
        2 => {
            get_bytes(src)?;
            0
        }
        5 => 4,
        _ => return Err(Status::internal("unsupported wire type in health message")),
    };
    if src.remaining() < skip {
        return Err(Status::internal("truncated health message"));
    }
    src.advance(skip);
    Ok(())
}

/// A tonic codec for one direction of the health protocol: encodes `E`,
/// decodes `D` (a client uses request/response, a server the reverse).
#[derive(Debug)]
pub(crate) struct HealthCodec<E, D>(PhantomData<fn() -> (E, D)>);

impl<E, D> Default for HealthCodec<E, D> {
    fn default() -> Self {
        HealthCodec(PhantomData)
    }
}

impl<E: HealthMessage, D: HealthMessage> Codec for HealthCodec<E, D> {
    type Encode = E;
    type Decode = D;
    type Encoder = HealthEncoder<E>;
    type Decoder = HealthDecoder<D>;

    fn encoder(&mut self) -> Self::Encoder {
        HealthEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        HealthDecoder(PhantomData)
    }
}

/// Encoder half of [`HealthCodec`].
#[derive(Debug)]
pub(crate) struct HealthEncoder<E>(PhantomData<fn() -> E>);

impl<E: HealthMessage> Encoder for HealthEncoder<E> {
    type Item = E;
    type Error = Status;

    fn encode(&mut self, item: E, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode_to(dst);
        Ok(())
    }
}

/// Decoder half of [`HealthCodec`].
#[derive(Debug)]
pub(crate) struct HealthDecoder<D>(PhantomData<fn() -> D>);

impl<D: HealthMessage> Decoder for HealthDecoder<D> {
    type Item = D;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        D::decode_from(src).map(Some)
    }
}
