//! WebSocket port-forward driver (`v4.channel.k8s.io`, its base64 variant,
//! or no subprotocol), as kube-rs and the Python client speak it.
//!
//! The ports come with the request; port `i` uses channel `2i` for data and
//! `2i+1` for errors. Each channel's first message from the server is the
//! port, two bytes little-endian. Each port gets one connection to the pod
//! for the life of the socket; the socket closes once every port's
//! connection has ended.

use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

use super::PodDialer;
use crate::stream::ws::{Protocol, decode, encode};
use crate::stream::{CHANNEL_DEPTH, Version};

/// The largest message we send.
const MAX_MESSAGE: usize = 32 * 1024;

/// The subprotocol for the client's `Sec-WebSocket-Protocol` values:
/// `v4.channel.k8s.io`, `v4.base64.channel.k8s.io`, or none (binary);
/// `None` when it offers only others (upstream then refuses the upgrade).
/// The second value is the name to answer with (`None`: no header).
pub fn negotiate(client: &[&str]) -> Option<(Protocol, Option<&'static str>)> {
    let offered: Vec<&str> = client
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let binary = Protocol {
        version: Version::V4,
        base64: false,
    };
    if offered.is_empty() {
        return Some((binary, None));
    }
    offered.into_iter().find_map(|name| match name {
        "v4.channel.k8s.io" => Some((binary, Some("v4.channel.k8s.io"))),
        "v4.base64.channel.k8s.io" => Some((
            Protocol {
                version: Version::V4,
                base64: true,
            },
            Some("v4.base64.channel.k8s.io"),
        )),
        _ => None,
    })
}

/// Serves one upgraded connection for `ports`.
#[tracing::instrument(skip_all)]
pub async fn serve<I>(io: I, protocol: Protocol, ports: Vec<u16>, dialer: Arc<dyn PodDialer>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<(u8, Bytes)>(CHANNEL_DEPTH);
    let mut to_pods = Vec::with_capacity(ports.len());
    for (i, port) in ports.iter().enumerate() {
        let Ok(data_channel) = u8::try_from(2 * i) else {
            break;
        };
        for channel in [data_channel, data_channel + 1] {
            if sink
                .send(encode(protocol, channel, &port.to_le_bytes()))
                .await
                .is_err()
            {
                return;
            }
        }
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        to_pods.push(Some(tx));
        tokio::spawn(forward(
            dialer.clone(),
            *port,
            data_channel,
            rx,
            out_tx.clone(),
        ));
    }
    drop(out_tx);
    loop {
        tokio::select! {
            out = out_rx.recv() => {
                let Some((channel, data)) = out else {
                    // Every port's connection has ended.
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame {
                            code: CloseCode::Normal,
                            reason: "".into(),
                        })))
                        .await;
                    return;
                };
                if sink.send(encode(protocol, channel, &data)).await.is_err() {
                    return;
                }
            }
            msg = stream.next() => {
                let Some(Ok(msg)) = msg else { return };
                if matches!(msg, Message::Close(_)) {
                    // Answer it (RFC 6455 5.5.1): the reply is queued, and
                    // closing the sink sends it. Without it kube-rs's
                    // forwarder ends in "reset without closing handshake".
                    let _ = sink.close().await;
                    return;
                }
                let Some((channel, data)) = decode(protocol, msg) else {
                    continue;
                };
                // Only data channels carry input; the rest is ignored.
                if channel % 2 != 0 || data.is_empty() {
                    continue;
                }
                if let Some(slot) = to_pods.get_mut(usize::from(channel / 2))
                    && let Some(tx) = slot
                    && tx.send(Bytes::from(data)).await.is_err()
                {
                    *slot = None;
                }
            }
        }
    }
}

/// One port's connection: dial, then copy until the pod's side ends.
async fn forward(
    dialer: Arc<dyn PodDialer>,
    port: u16,
    data_channel: u8,
    from_client: mpsc::Receiver<Bytes>,
    out: mpsc::Sender<(u8, Bytes)>,
) {
    super::pump(
        &*dialer,
        port,
        MAX_MESSAGE,
        from_client,
        &out,
        |chunk| (data_channel, chunk),
        |text| (data_channel + 1, text),
    )
    .await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::stream::portforward::BoxFuture;

    /// A dial that never completes: the port stays open until the client
    /// ends the session.
    struct Unanswered;

    impl PodDialer for Unanswered {
        fn dial(&self, _port: u16) -> BoxFuture<Result<tokio::net::TcpStream, String>> {
            Box::pin(std::future::pending())
        }

        fn pod(&self) -> &str {
            "sb1"
        }
    }

    #[tokio::test]
    async fn a_client_close_is_answered_with_a_close() {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let (protocol, _) = negotiate(&["v4.channel.k8s.io"]).unwrap();
        let server = tokio::spawn(serve(server_io, protocol, vec![8080], Arc::new(Unanswered)));
        let mut client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        // Each channel of the port opens with the port, little-endian.
        for channel in [0u8, 1] {
            let first = client.next().await.unwrap().unwrap();
            assert_eq!(first, Message::binary(vec![channel, 0x90, 0x1f]));
        }
        client.close(None).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), client.next())
            .await
            .unwrap();
        assert!(matches!(reply, Some(Ok(Message::Close(_)))), "{reply:?}");
        // The handshake is complete: the socket ends without an error.
        let end = tokio::time::timeout(Duration::from_secs(5), client.next())
            .await
            .unwrap();
        assert!(end.is_none(), "{end:?}");
        server.await.unwrap();
    }
}
