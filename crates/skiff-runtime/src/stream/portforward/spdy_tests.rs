#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{DuplexStream, ReadHalf, WriteHalf};
use tokio::net::TcpListener;

use super::*;
use crate::stream::portforward::BoxFuture;

/// Dials a loopback echo server for port 80 and refuses everything else.
struct EchoDialer {
    echo: std::net::SocketAddr,
}

impl PodDialer for EchoDialer {
    fn dial(&self, port: u16) -> BoxFuture<Result<tokio::net::TcpStream, String>> {
        let echo = self.echo;
        Box::pin(async move {
            if port != 80 {
                return Err("connect: connection refused".into());
            }
            tokio::net::TcpStream::connect(echo)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn pod(&self) -> &str {
        "sb1"
    }
}

/// An echo server that answers after the client has finished sending
/// (so half-close must work).
async fn echo_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut all = Vec::new();
                conn.read_to_end(&mut all).await.unwrap();
                conn.write_all(&all).await.unwrap();
            });
        }
    });
    addr
}

struct Client {
    rd: ReadHalf<DuplexStream>,
    wr: WriteHalf<DuplexStream>,
    encoder: Encoder,
    decoder: Decoder,
    buf: BytesMut,
}

impl Client {
    async fn send(&mut self, frame: Frame) {
        let mut out = BytesMut::new();
        self.encoder.encode(&frame, &mut out).unwrap();
        self.wr.write_all(&out).await.unwrap();
    }

    async fn open(&mut self, id: u32, headers: &[(&str, &str)]) {
        self.send(Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            fin: false,
            unidirectional: false,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        })
        .await;
    }

    async fn data(&mut self, id: u32, data: &[u8], fin: bool) {
        self.send(Frame::Data {
            stream_id: id,
            fin,
            data: Bytes::copy_from_slice(data),
        })
        .await;
    }

    async fn next(&mut self) -> Frame {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf).unwrap() {
                return frame;
            }
            let n = tokio::time::timeout(Duration::from_secs(10), self.rd.read_buf(&mut self.buf))
                .await
                .expect("a frame in time")
                .unwrap();
            assert!(n > 0, "connection closed");
        }
    }

    /// Reads frames until every stream in `ids` has FIN (or RST); returns
    /// each stream's data and the resets seen.
    async fn until_closed(&mut self, ids: &[u32]) -> (HashMap<u32, Vec<u8>>, Vec<u32>) {
        let mut data: HashMap<u32, Vec<u8>> = HashMap::new();
        let mut closed = Vec::new();
        let mut resets = Vec::new();
        while !ids.iter().all(|id| closed.contains(id)) {
            match self.next().await {
                Frame::Data {
                    stream_id,
                    fin,
                    data: d,
                } => {
                    data.entry(stream_id).or_default().extend_from_slice(&d);
                    if fin {
                        closed.push(stream_id);
                    }
                }
                Frame::RstStream { stream_id, .. } => {
                    closed.push(stream_id);
                    resets.push(stream_id);
                }
                _ => {}
            }
        }
        (data, resets)
    }
}

async fn connect() -> Client {
    let echo = echo_server().await;
    let (server, client) = tokio::io::duplex(1 << 20);
    tokio::spawn(serve(server, Arc::new(EchoDialer { echo })));
    let (rd, wr) = tokio::io::split(client);
    Client {
        rd,
        wr,
        encoder: Encoder::default(),
        decoder: Decoder::default(),
        buf: BytesMut::new(),
    }
}

fn stream(
    kind: &'static str,
    port: &'static str,
    request: &'static str,
) -> Vec<(&'static str, &'static str)> {
    vec![("streamtype", kind), ("port", port), ("requestid", request)]
}

#[tokio::test]
async fn pairs_forward_bytes_both_ways_and_close_when_the_pod_does() {
    let mut c = connect().await;
    // Two connections at once, interleaved.
    c.open(1, &stream("error", "80", "0")).await;
    c.open(3, &stream("data", "80", "0")).await;
    c.open(5, &stream("error", "80", "1")).await;
    c.open(7, &stream("data", "80", "1")).await;
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    c.data(3, &big[..100_000], false).await;
    c.data(7, b"second", true).await;
    c.data(3, &big[100_000..], true).await;
    let (data, resets) = c.until_closed(&[1, 3, 5, 7]).await;
    assert!(resets.is_empty());
    assert!(
        data.get(&3).is_some_and(|d| *d == big),
        "first connection's bytes"
    );
    assert_eq!(data.get(&7).map(Vec::as_slice), Some(&b"second"[..]));
    // No error on either error stream.
    assert!(data.get(&1).is_none_or(Vec::is_empty));
    assert!(data.get(&5).is_none_or(Vec::is_empty));
}

/// kubectl's order for each connection: open the error stream, and once
/// it is answered close our half of it and open the data stream. When that
/// FIN and SYN arrive in one read, the data stream must be answered at
/// once: its SYN sat behind the FIN until more input came (kubectl waits
/// for the reply, so every connection stalled until the client's next
/// ping, 5–10 s).
#[tokio::test]
async fn a_stream_opened_right_behind_a_fin_is_answered_at_once() {
    let mut c = connect().await;
    c.open(1, &stream("error", "80", "0")).await;
    assert!(matches!(
        c.next().await,
        Frame::SynReply { stream_id: 1, .. }
    ));
    let mut out = BytesMut::new();
    let data_stream = Frame::SynStream {
        stream_id: 3,
        associated_to: 0,
        priority: 0,
        fin: false,
        unidirectional: false,
        headers: stream("data", "80", "0")
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    };
    let fin = Frame::Data {
        stream_id: 1,
        fin: true,
        data: Bytes::new(),
    };
    for frame in [fin, data_stream] {
        c.encoder.encode(&frame, &mut out).unwrap();
    }
    c.wr.write_all(&out).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(2), c.next())
        .await
        .expect("the data stream answered without more input");
    assert!(
        matches!(reply, Frame::SynReply { stream_id: 3, .. }),
        "{reply:?}"
    );
    c.data(3, b"hi", true).await;
    let (data, resets) = c.until_closed(&[1, 3]).await;
    assert!(resets.is_empty());
    assert_eq!(data.get(&3).map(Vec::as_slice), Some(&b"hi"[..]));
}

#[tokio::test]
async fn a_refused_port_is_reported_on_the_error_stream() {
    let mut c = connect().await;
    c.open(1, &stream("error", "81", "0")).await;
    c.open(3, &stream("data", "81", "0")).await;
    let (data, _) = c.until_closed(&[1, 3]).await;
    assert_eq!(
        String::from_utf8_lossy(&data[&1]),
        "error forwarding port 81 to pod sb1, uid : connect: connection refused"
    );
    assert!(data.get(&3).is_none_or(Vec::is_empty));
}

#[tokio::test]
async fn streams_without_valid_headers_are_reset() {
    let mut c = connect().await;
    c.open(1, &[("streamtype", "error")]).await;
    c.open(3, &stream("stdin", "80", "0")).await;
    c.open(5, &stream("data", "0", "0")).await;
    let (_, resets) = c.until_closed(&[1, 3, 5]).await;
    assert_eq!(resets, [1, 3, 5]);
    // Old clients without request IDs: the data stream follows its error
    // stream by two.
    c.open(7, &[("streamtype", "error"), ("port", "80")]).await;
    c.open(9, &[("streamtype", "data"), ("port", "80")]).await;
    c.data(9, b"old", true).await;
    let (data, resets) = c.until_closed(&[7, 9]).await;
    assert!(resets.is_empty());
    assert_eq!(data.get(&9).map(Vec::as_slice), Some(&b"old"[..]));
}

#[test]
fn header_checks_follow_upstream() {
    let h = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let err = |v: &[(&str, &str)]| check_stream(1, &h(v)).err().unwrap();
    assert_eq!(
        err(&[("streamtype", "data")]),
        "\"port\" header is required"
    );
    assert_eq!(err(&[("port", "80")]), "\"streamType\" header is required");
    assert_eq!(
        err(&[("port", "80"), ("streamtype", "stdout")]),
        "invalid stream type \"stdout\""
    );
    assert!(err(&[("port", "99999"), ("streamtype", "data")]).starts_with("unable to parse"));
    let ok = check_stream(5, &h(&[("port", "80"), ("streamtype", "data")])).unwrap();
    assert_eq!((ok.port, ok.request_id.as_str()), (80, "3"));
}
