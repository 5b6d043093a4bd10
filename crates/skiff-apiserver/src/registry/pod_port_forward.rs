//! `pods/{name}/portforward`, as upstream's `PortForwardREST`: the query's
//! `ports` (`PodPortForwardOptions`) become the kubelet's `port`
//! parameters on `/portForward/{namespace}/{pod}`, and the client's upgrade
//! is proxied there as for exec.
//!
//! kubectl 1.30+ first asks for a WebSocket whose subprotocol is
//! `SPDY/3.1+portforward.k8s.io`: SPDY tunnelled in binary WebSocket
//! messages (upstream's `tunnelingHandler`). The API server then asks the
//! kubelet for a SPDY/3.1 `portforward.k8s.io` upgrade, answers the client's
//! WebSocket handshake once the kubelet has switched, and carries the bytes
//! between WebSocket messages and the kubelet's connection. Other WebSocket
//! clients (kube-rs: `v4.channel.k8s.io`) and SPDY clients are proxied
//! byte for byte.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use skiff_api::resources;
use skiff_api::status::ApiError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

use super::pod_exec::{KubeletUpgrade, encode_component, node_of};
use super::{Registry, decode};
use crate::request_info::query_pairs;
use crate::response::{self, Body};

/// The prefix kubectl puts on SPDY protocols tunnelled over a WebSocket.
const TUNNELING_PREFIX: &str = "SPDY/3.1+";
/// The largest WebSocket message we send.
const MAX_MESSAGE: usize = 32 * 1024;

/// `PodPortForwardOptions.ports` from the query (repeated, or
/// comma-separated as kube-rs sends them); 400 when one is not a port.
pub(crate) fn parse_ports(query: Option<&str>) -> Result<Vec<u16>, ApiError> {
    let mut ports = Vec::new();
    for (k, v) in query_pairs(query) {
        if k != "ports" {
            continue;
        }
        for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let port: u16 = p
                .parse()
                .map_err(|_| ApiError::BadRequest(format!("invalid port {p:?}")))?;
            if port == 0 {
                return Err(ApiError::BadRequest(
                    "port 0 must be in the range 1..65535".into(),
                ));
            }
            ports.push(port);
        }
    }
    Ok(ports)
}

/// The SPDY protocols of a WebSocket request that tunnels SPDY (its
/// subprotocols with the `SPDY/3.1+` prefix, prefix removed); empty for
/// any other request.
fn tunneled_protocols(headers: &HeaderMap) -> Vec<String> {
    let websocket = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
    if !websocket {
        return Vec::new();
    }
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|p| p.trim().strip_prefix(TUNNELING_PREFIX))
        .map(str::to_owned)
        .collect()
}

impl Registry {
    /// `pods/{name}/portforward`: proxies the (upgrade) request to the
    /// pod's kubelet, tunnelling SPDY over a WebSocket when asked to.
    pub(crate) async fn pod_port_forward<B>(
        &self,
        req: Request<B>,
        namespace: &str,
        name: &str,
        query: Option<&str>,
    ) -> Result<Response<Body>, ApiError> {
        let ports = parse_ports(query)?;
        let pods = resources::by_gvr("", "v1", "pods").ok_or_else(|| {
            ApiError::InternalError("pods missing from the resource table".into())
        })?;
        let pod = decode(
            &self
                .current(pods, &pods.key(Some(namespace), name), name)
                .await?,
        )?;
        let node_name = node_of(&pod, name)?;
        let mut path = format!(
            "/portForward/{}/{}",
            encode_component(namespace),
            encode_component(name)
        );
        let params: Vec<String> = ports.iter().map(|p| format!("port={p}")).collect();
        if !params.is_empty() {
            path = format!("{path}?{}", params.join("&"));
        }
        let tunneled = tunneled_protocols(req.headers());
        if tunneled.is_empty() {
            return self
                .upgrade_to_kubelet(req, node_name, &path, Vec::new())
                .await
                .map(KubeletUpgrade::splice);
        }
        let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
            return Err(ApiError::BadRequest(
                "unable to upgrade: missing Sec-WebSocket-Key".into(),
            ));
        };
        // The kubelet is asked for SPDY with the protocols the client
        // tunnels; the WebSocket headers stay here.
        let mut headers = vec![
            (header::UPGRADE, HeaderValue::from_static("SPDY/3.1")),
            (header::CONNECTION, HeaderValue::from_static("Upgrade")),
        ];
        for name in [
            header::SEC_WEBSOCKET_KEY,
            header::SEC_WEBSOCKET_VERSION,
            header::SEC_WEBSOCKET_PROTOCOL,
            header::SEC_WEBSOCKET_EXTENSIONS,
        ] {
            headers.push((name, HeaderValue::from_static("")));
        }
        if let Ok(v) = HeaderValue::from_str(&tunneled.join(",")) {
            headers.push((HeaderName::from_static("x-stream-protocol-version"), v));
        }
        let upgrade = self
            .upgrade_to_kubelet(req, node_name, &path, headers)
            .await?;
        let (kubelet_headers, client, kubelet) = match upgrade {
            KubeletUpgrade::Refused(resp) => return Ok(resp),
            KubeletUpgrade::Switched {
                kubelet_headers,
                client,
                kubelet,
            } => (kubelet_headers, client, kubelet),
        };
        let protocol = kubelet_headers
            .get("x-stream-protocol-version")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let mut back = Response::new(response::full(Bytes::new()));
        *back.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = back.headers_mut();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!("{TUNNELING_PREFIX}{protocol}")) {
            h.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
        }
        tokio::spawn(async move {
            match tokio::join!(client, kubelet) {
                (Ok(client), Ok(kubelet)) => tunnel(client, kubelet).await,
                (Err(err), _) | (_, Err(err)) => {
                    tracing::debug!(error = %err, "port-forward upgrade failed");
                }
            }
        });
        Ok(back)
    }
}

/// Carries the client's WebSocket binary messages to the kubelet's
/// connection as bytes, and the kubelet's bytes back as messages, until the
/// kubelet's side ends (then the WebSocket closes normally) or the client
/// goes away.
async fn tunnel(client: hyper::upgrade::Upgraded, kubelet: hyper::upgrade::Upgraded) {
    let ws = WebSocketStream::from_raw_socket(TokioIo::new(client), Role::Server, None).await;
    let (mut sink, mut stream) = ws.split();
    let (mut from_kubelet, mut to_kubelet) = tokio::io::split(TokioIo::new(kubelet));
    let upstream = async {
        while let Some(Ok(msg)) = stream.next().await {
            match msg {
                // Flushed: TLS keeps what the socket would not take yet
                // until the next write, and the client may have no next
                // message until it hears back.
                Message::Binary(data)
                    if to_kubelet.write_all(&data).await.is_err()
                        || to_kubelet.flush().await.is_err() =>
                {
                    break;
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = to_kubelet.shutdown().await;
        // The kubelet's side decides when the tunnel ends.
        std::future::pending::<()>().await;
    };
    let downstream = async {
        let mut buf = vec![0u8; MAX_MESSAGE];
        loop {
            match from_kubelet.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let msg = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
                    if sink.send(msg).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            })))
            .await;
    };
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ports_decode_repeated_or_comma_separated() {
        assert_eq!(
            parse_ports(Some("ports=80&ports=8080")).unwrap(),
            vec![80, 8080]
        );
        assert_eq!(
            parse_ports(Some("ports=80%2C1234")).unwrap(),
            vec![80, 1234]
        );
        assert!(parse_ports(None).unwrap().is_empty());
        assert!(matches!(
            parse_ports(Some("ports=http")),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse_ports(Some("ports=0")),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn only_websockets_with_the_spdy_prefix_tunnel() {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("SPDY/3.1+portforward.k8s.io, v4.channel.k8s.io"),
        );
        assert_eq!(tunneled_protocols(&h), ["portforward.k8s.io"]);
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("v5.channel.k8s.io, v4.channel.k8s.io"),
        );
        assert!(tunneled_protocols(&h).is_empty());
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("SPDY/3.1+portforward.k8s.io"),
        );
        assert!(tunneled_protocols(&h).is_empty());
    }
}
