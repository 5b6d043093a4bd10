//! WebSocket remotecommand driver (`v5.channel.k8s.io`, `v4.channel.k8s.io`,
//! `channel.k8s.io` and their base64 text variants), as kubectl 1.30+ and the
//! Python client speak it.
//!
//! Every message starts with its channel: 0 stdin, 1 stdout, 2 stderr,
//! 3 error, 4 resize; with v5, `[255, 0]` from the client closes stdin. In
//! the base64 variants a message is text: the channel as an ASCII digit,
//! then the payload in standard base64.

use base64::Engine as _;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

use super::{
    DriverEnds, Outcome, Session, StreamOpts, TermSize, Version, await_outcome, session_pair,
};

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// A negotiated WebSocket subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protocol {
    /// The remotecommand version.
    pub version: Version,
    /// Text messages with base64 payloads.
    pub base64: bool,
}

impl Protocol {
    /// The name sent back in `Sec-WebSocket-Protocol`.
    pub fn name(self) -> &'static str {
        match (self.version, self.base64) {
            (Version::V5, _) => "v5.channel.k8s.io",
            (Version::V4, false) => "v4.channel.k8s.io",
            (Version::V4, true) => "v4.base64.channel.k8s.io",
            (_, false) => "channel.k8s.io",
            (_, true) => "base64.channel.k8s.io",
        }
    }

    fn from_name(name: &str) -> Option<Protocol> {
        let (version, base64) = match name.trim() {
            "v5.channel.k8s.io" => (Version::V5, false),
            "v4.channel.k8s.io" => (Version::V4, false),
            "v4.base64.channel.k8s.io" => (Version::V4, true),
            "channel.k8s.io" => (Version::V1, false),
            "base64.channel.k8s.io" => (Version::V1, true),
            _ => return None,
        };
        Some(Protocol { version, base64 })
    }
}

/// The subprotocol for the client's `Sec-WebSocket-Protocol` values (each
/// may list several, comma-separated): the first the client lists that we
/// serve. A client that offers none gets `channel.k8s.io`, as upstream.
/// `None` when it offers only ones we do not serve.
pub fn negotiate(client: &[&str]) -> Option<Protocol> {
    let offered: Vec<&str> = client
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if offered.is_empty() {
        return Protocol::from_name("channel.k8s.io");
    }
    offered.into_iter().find_map(Protocol::from_name)
}

/// Runs the protocol over an upgraded connection: returns the process side
/// at once and pumps messages in a spawned task until the outcome is
/// written or the client goes away (which drops the session's `finish`
/// receiver: the process side sees `finish.closed()`).
pub async fn serve<I>(io: I, protocol: Protocol, opts: StreamOpts) -> Session
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    let (session, ends) = session_pair(opts);
    tokio::spawn(pump(ws, protocol, opts, ends));
    session
}

async fn pump<I>(ws: WebSocketStream<I>, protocol: Protocol, opts: StreamOpts, ends: DriverEnds)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, stream) = ws.split();
    let DriverEnds {
        stdin,
        resize,
        stdout,
        stderr,
        finish,
    } = ends;
    let writer = async move {
        let mut sink = sink;
        // The first message tells the client the streams are open.
        let first = if opts.stdout {
            STDOUT
        } else if opts.stderr && !opts.tty {
            STDERR
        } else {
            ERROR
        };
        sink.send(encode(protocol, first, &[])).await?;
        let (mut stdout, mut stderr) = (stdout, stderr);
        loop {
            let (channel, data) = tokio::select! {
                Some(d) = recv(&mut stdout) => (STDOUT, d),
                Some(d) = recv(&mut stderr) => (STDERR, d),
                else => break,
            };
            sink.send(encode(protocol, channel, &data)).await?;
        }
        let outcome: Outcome = await_outcome(finish).await;
        if let Some(payload) = outcome.error_payload(protocol.version) {
            sink.send(encode(protocol, ERROR, &payload)).await?;
        }
        sink.send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        })))
        .await?;
        sink.flush().await
    };
    let reader = read_client(stream, protocol, stdin, resize);
    tokio::select! {
        result = writer => {
            if let Err(err) = result {
                tracing::debug!(error = %err, "exec stream: writing to the client failed");
            }
        }
        () = reader => {}
    }
}

/// The next chunk from an optional channel; `None` when absent or closed
/// (and then it stays absent).
async fn recv(rx: &mut Option<mpsc::Receiver<Bytes>>) -> Option<Bytes> {
    let got = match rx {
        Some(r) => r.recv().await,
        None => None,
    };
    if got.is_none() {
        *rx = None;
    }
    got
}

/// Reads client messages until it closes or goes away.
async fn read_client<S>(
    mut stream: S,
    protocol: Protocol,
    mut stdin: Option<mpsc::Sender<Bytes>>,
    resize: Option<mpsc::Sender<TermSize>>,
) where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(msg) = stream.next().await {
        let Ok(msg) = msg else { break };
        let Some((channel, data)) = decode(protocol, msg) else {
            continue;
        };
        match channel {
            STDIN => {
                if let Some(tx) = &stdin
                    && !data.is_empty()
                    && tx.send(Bytes::from(data)).await.is_err()
                {
                    stdin = None;
                }
            }
            RESIZE => {
                if let (Some(tx), Ok(size)) = (&resize, serde_json::from_slice::<TermSize>(&data)) {
                    let _ = tx.send(size).await;
                }
            }
            CLOSE if protocol.version >= Version::V5 && data.first() == Some(&STDIN) => {
                stdin = None;
            }
            _ => {}
        }
    }
}

/// A message's channel and payload; `None` for control frames and
/// malformed messages.
pub(crate) fn decode(protocol: Protocol, msg: Message) -> Option<(u8, Vec<u8>)> {
    match msg {
        Message::Binary(data) if !protocol.base64 => {
            let (&channel, rest) = data.split_first()?;
            Some((channel, rest.to_vec()))
        }
        // Upstream reads either frame type as bytes on the binary
        // protocols; the Python client sends its input as text frames.
        Message::Text(text) if !protocol.base64 => {
            let (&channel, rest) = text.as_bytes().split_first()?;
            Some((channel, rest.to_vec()))
        }
        Message::Text(text) if protocol.base64 => {
            let text = text.as_str();
            let channel = text.chars().next()?.to_digit(10)?;
            let payload = base64::engine::general_purpose::STANDARD
                .decode(text.get(1..)?.trim_end())
                .ok()?;
            Some((u8::try_from(channel).ok()?, payload))
        }
        _ => None,
    }
}

pub(crate) fn encode(protocol: Protocol, channel: u8, payload: &[u8]) -> Message {
    if protocol.base64 {
        let text = format!(
            "{}{}",
            char::from(b'0' + channel),
            base64::engine::general_purpose::STANDARD.encode(payload)
        );
        Message::Text(text.into())
    } else {
        let mut data = Vec::with_capacity(payload.len() + 1);
        data.push(channel);
        data.extend_from_slice(payload);
        Message::Binary(data.into())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    type Client = WebSocketStream<tokio::io::DuplexStream>;

    async fn connect(protocol: Protocol, opts: StreamOpts) -> (Client, Session) {
        let (server_io, client_io) = tokio::io::duplex(1 << 16);
        let client = WebSocketStream::from_raw_socket(client_io, Role::Client, None);
        let (client, session) = tokio::join!(client, serve(server_io, protocol, opts));
        (client, session)
    }

    async fn next_data(client: &mut Client) -> Message {
        loop {
            match client.next().await.unwrap().unwrap() {
                Message::Ping(_) | Message::Pong(_) => {}
                m => return m,
            }
        }
    }

    const V5: Protocol = Protocol {
        version: Version::V5,
        base64: false,
    };

    #[test]
    fn negotiation_follows_the_clients_order() {
        assert_eq!(
            negotiate(&["v5.channel.k8s.io, v4.channel.k8s.io"]),
            Some(V5)
        );
        assert_eq!(
            negotiate(&["v9.channel.k8s.io", "v4.base64.channel.k8s.io"]).map(Protocol::name),
            Some("v4.base64.channel.k8s.io")
        );
        assert_eq!(negotiate(&[]).map(Protocol::name), Some("channel.k8s.io"));
        assert_eq!(negotiate(&["chat"]), None);
    }

    #[tokio::test]
    async fn v5_session_carries_streams_close_and_exit_status() {
        let opts = StreamOpts {
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        };
        let (mut client, mut session) = connect(V5, opts).await;
        // The empty first message on the lowest output channel.
        assert_eq!(
            next_data(&mut client).await,
            Message::Binary(vec![STDOUT].into())
        );
        client
            .send(Message::Binary(b"\x00hello".to_vec().into()))
            .await
            .unwrap();
        let stdin = session.stdin.as_mut().unwrap();
        assert_eq!(stdin.recv().await.unwrap(), Bytes::from_static(b"hello"));
        // Text frames carry bytes too (the Python client sends them).
        client
            .send(Message::Text("\u{0}typed".into()))
            .await
            .unwrap();
        assert_eq!(stdin.recv().await.unwrap(), Bytes::from_static(b"typed"));
        // v5's CLOSE for stdin ends it.
        client
            .send(Message::Binary(vec![CLOSE, STDIN].into()))
            .await
            .unwrap();
        assert_eq!(stdin.recv().await, None);
        let out = session.stdout.take().unwrap();
        let err = session.stderr.take().unwrap();
        out.send(Bytes::from_static(b"out")).await.unwrap();
        err.send(Bytes::from_static(b"err")).await.unwrap();
        drop((out, err));
        session
            .finish
            .send(Outcome::exited(&["sh".into()], 3))
            .unwrap();
        let mut got = Vec::new();
        for _ in 0..3 {
            match next_data(&mut client).await {
                Message::Binary(b) => got.push(b.to_vec()),
                m => panic!("unexpected {m:?}"),
            }
        }
        assert!(got.contains(&b"\x01out".to_vec()));
        assert!(got.contains(&b"\x02err".to_vec()));
        // The status comes after all output.
        let status = &got[2];
        assert_eq!(status[0], ERROR);
        let status: serde_json::Value = serde_json::from_slice(&status[1..]).unwrap();
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(status["details"]["causes"][0]["message"], "3");
        assert!(matches!(next_data(&mut client).await, Message::Close(_)));
    }

    #[tokio::test]
    async fn base64_v4_with_a_terminal_and_resizes() {
        let protocol = Protocol {
            version: Version::V4,
            base64: true,
        };
        let opts = StreamOpts {
            stdin: false,
            stdout: true,
            stderr: false,
            tty: true,
        };
        let (mut client, mut session) = connect(protocol, opts).await;
        assert_eq!(next_data(&mut client).await, Message::Text("1".into()));
        client
            .send(Message::Text(
                format!(
                    "4{}",
                    base64::engine::general_purpose::STANDARD.encode(r#"{"Width":80,"Height":24}"#)
                )
                .into(),
            ))
            .await
            .unwrap();
        let size = session.resize.as_mut().unwrap().recv().await.unwrap();
        assert_eq!((size.width, size.height), (80, 24));
        session
            .stdout
            .take()
            .unwrap()
            .send(Bytes::from_static(b"hi"))
            .await
            .unwrap();
        session.finish.send(Outcome::Success).unwrap();
        assert_eq!(next_data(&mut client).await, Message::Text("1aGk=".into()));
        let Message::Text(status) = next_data(&mut client).await else {
            panic!("no status");
        };
        let status = base64::engine::general_purpose::STANDARD
            .decode(&status.as_str()[1..])
            .unwrap();
        assert_eq!(status, br#"{"metadata":{},"status":"Success"}"#);
    }

    #[tokio::test]
    async fn a_client_that_goes_away_closes_the_session() {
        let opts = StreamOpts {
            stdin: true,
            stdout: true,
            stderr: false,
            tty: false,
        };
        let (client, mut session) = connect(V5, opts).await;
        drop(client);
        // The process side learns it (and kills the command).
        tokio::time::timeout(std::time::Duration::from_secs(5), session.finish.closed())
            .await
            .unwrap();
        assert_eq!(session.stdin.as_mut().unwrap().recv().await, None);
    }
}
