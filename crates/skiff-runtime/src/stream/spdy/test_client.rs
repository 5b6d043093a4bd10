//! A minimal SPDY/3.1 client for the driver tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, WriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::frame::{Decoder, Encoder, Frame};
use super::{SpdyError, accept};
use crate::stream::{Session, StreamOpts, Version};

/// A minimal SPDY/3.1 client, as spdystream behaves: odd stream ids, one
/// header compression context per direction.
pub(super) struct Client {
    pub(super) wr: WriteHalf<DuplexStream>,
    pub(super) encoder: Encoder,
    pub(super) frames: mpsc::UnboundedReceiver<Frame>,
    reader: JoinHandle<()>,
    pub(super) next_id: u32,
}

impl Drop for Client {
    /// Dropping the client closes the connection (the reader holds half).
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Client {
    fn new(io: DuplexStream) -> Client {
        let (mut rd, wr) = tokio::io::split(io);
        let (tx, frames) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let mut decoder = Decoder::default();
            let mut buf = BytesMut::new();
            loop {
                while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                    if tx.send(frame).is_err() {
                        return;
                    }
                }
                match rd.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        });
        Client {
            wr,
            encoder: Encoder::default(),
            frames,
            reader,
            next_id: 1,
        }
    }

    pub(super) async fn send(&mut self, frame: Frame) {
        let mut out = BytesMut::new();
        self.encoder.encode(&frame, &mut out).unwrap();
        self.wr.write_all(&out).await.unwrap();
    }

    /// Opens a stream of `stream_type`; returns its id.
    pub(super) async fn open(&mut self, stream_type: &str) -> u32 {
        let stream_id = self.next_id;
        self.next_id += 2;
        self.send(Frame::SynStream {
            stream_id,
            associated_to: 0,
            priority: 0,
            fin: false,
            unidirectional: false,
            headers: vec![("streamtype".into(), stream_type.into())],
        })
        .await;
        stream_id
    }

    pub(super) async fn data(&mut self, stream_id: u32, data: &[u8], fin: bool) {
        self.send(Frame::Data {
            stream_id,
            fin,
            data: Bytes::copy_from_slice(data),
        })
        .await;
    }

    /// The next frame, or `None` on EOF or after 10 s (of paused time:
    /// nothing else was going to happen).
    pub(super) async fn next(&mut self) -> Option<Frame> {
        tokio::time::timeout(Duration::from_secs(10), self.frames.recv())
            .await
            .ok()
            .flatten()
    }

    /// Reads until the server's GOAWAY, collecting data and FINs per stream.
    pub(super) async fn until_goaway(&mut self) -> Received {
        let mut got = Received::default();
        while let Some(frame) = self.next().await {
            match frame {
                Frame::Data {
                    stream_id,
                    fin,
                    data,
                } => {
                    assert!(
                        !got.fin.contains(&stream_id),
                        "data after FIN on {stream_id}"
                    );
                    got.data
                        .entry(stream_id)
                        .or_default()
                        .extend_from_slice(&data);
                    if fin {
                        got.fin.push(stream_id);
                    }
                    if !data.is_empty() {
                        got.order.push(stream_id);
                    }
                }
                Frame::GoAway { status, .. } => {
                    assert_eq!(status, 0);
                    got.goaway = true;
                    break;
                }
                other => got.other.push(other),
            }
        }
        got
    }
}

#[derive(Debug, Default)]
pub(super) struct Received {
    pub(super) data: HashMap<u32, Vec<u8>>,
    pub(super) fin: Vec<u32>,
    /// Stream ids of the non-empty data frames, in order.
    pub(super) order: Vec<u32>,
    pub(super) goaway: bool,
    pub(super) other: Vec<Frame>,
}

impl Received {
    pub(super) fn text(&self, stream_id: u32) -> String {
        String::from_utf8(self.data.get(&stream_id).cloned().unwrap_or_default()).unwrap()
    }
}

pub(super) fn opts(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> StreamOpts {
    StreamOpts {
        stdin,
        stdout,
        stderr,
        tty,
    }
}

pub(super) fn start(
    version: Version,
    opts: StreamOpts,
) -> (Client, JoinHandle<Result<Session, SpdyError>>) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let accepted = tokio::spawn(accept(server, version, opts));
    (Client::new(client), accepted)
}

/// Opens `types` in order, expecting a SYN_REPLY for each; returns their ids
/// and the session.
pub(super) async fn connect(
    version: Version,
    opts: StreamOpts,
    types: &[&str],
) -> (Client, HashMap<String, u32>, Session) {
    let (mut client, accepted) = start(version, opts);
    let mut ids = HashMap::new();
    for t in types {
        let id = client.open(t).await;
        match client.next().await {
            Some(Frame::SynReply {
                stream_id,
                fin: false,
                ..
            }) => assert_eq!(stream_id, id),
            other => panic!("expected SYN_REPLY for {t}, got {other:?}"),
        }
        ids.insert(t.to_string(), id);
    }
    let session = accepted.await.unwrap().unwrap();
    (client, ids, session)
}
