#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, WriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::frame::{DICTIONARY, Decoder, Encoder, Frame, Setting};
use super::{SpdyError, accept, negotiate};
use crate::stream::{Outcome, Session, StreamOpts, TermSize, Version};

/// A minimal SPDY/3.1 client, as spdystream behaves: odd stream ids, one
/// header compression context per direction.
struct Client {
    wr: WriteHalf<DuplexStream>,
    encoder: Encoder,
    frames: mpsc::UnboundedReceiver<Frame>,
    reader: JoinHandle<()>,
    next_id: u32,
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

    async fn send(&mut self, frame: Frame) {
        let mut out = BytesMut::new();
        self.encoder.encode(&frame, &mut out).unwrap();
        self.wr.write_all(&out).await.unwrap();
    }

    /// Opens a stream of `stream_type`; returns its id.
    async fn open(&mut self, stream_type: &str) -> u32 {
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

    async fn data(&mut self, stream_id: u32, data: &[u8], fin: bool) {
        self.send(Frame::Data {
            stream_id,
            fin,
            data: Bytes::copy_from_slice(data),
        })
        .await;
    }

    /// The next frame, or `None` on EOF or after 10 s (of paused time:
    /// nothing else was going to happen).
    async fn next(&mut self) -> Option<Frame> {
        tokio::time::timeout(Duration::from_secs(10), self.frames.recv())
            .await
            .ok()
            .flatten()
    }

    /// Reads until the server's GOAWAY, collecting data and FINs per stream.
    async fn until_goaway(&mut self) -> Received {
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
struct Received {
    data: HashMap<u32, Vec<u8>>,
    fin: Vec<u32>,
    /// Stream ids of the non-empty data frames, in order.
    order: Vec<u32>,
    goaway: bool,
    other: Vec<Frame>,
}

impl Received {
    fn text(&self, stream_id: u32) -> String {
        String::from_utf8(self.data.get(&stream_id).cloned().unwrap_or_default()).unwrap()
    }
}

fn opts(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> StreamOpts {
    StreamOpts {
        stdin,
        stdout,
        stderr,
        tty,
    }
}

fn start(version: Version, opts: StreamOpts) -> (Client, JoinHandle<Result<Session, SpdyError>>) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let accepted = tokio::spawn(accept(server, version, opts));
    (Client::new(client), accepted)
}

/// Opens `types` in order, expecting a SYN_REPLY for each; returns their ids
/// and the session.
async fn connect(
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

#[test]
fn negotiate_picks_the_clients_first_served_version() {
    let cases: &[(&[&str], Option<Version>)] = &[
        (&["v4.channel.k8s.io"], Some(Version::V4)),
        // kubectl with WebSockets off lists v5 first; v5 is WebSocket-only.
        (
            &[
                "v5.channel.k8s.io",
                "v4.channel.k8s.io",
                "v3.channel.k8s.io",
            ],
            Some(Version::V4),
        ),
        // The client's order wins, not the newest.
        (&["v2.channel.k8s.io, v4.channel.k8s.io"], Some(Version::V2)),
        (&["channel.k8s.io"], Some(Version::V1)),
        (&[" , v3.channel.k8s.io ,"], Some(Version::V3)),
        (&["v5.channel.k8s.io"], None),
        (&["V4.channel.k8s.io"], None),
        (&["v4.channel.k8s.io;q=1"], None),
        (&[""], None),
        (&[], None),
    ];
    for (client, want) in cases {
        assert_eq!(negotiate(client), *want, "{client:?}");
    }
}

#[test]
fn dictionary_is_the_spdy3_one() {
    // Length and Adler-32 of the SPDY/3 header dictionary.
    assert_eq!(DICTIONARY.len(), 1423);
    let mut z = flate2::Compress::new(flate2::Compression::default(), true);
    assert_eq!(z.set_dictionary(&DICTIONARY).unwrap(), 0xe3c6_a7c2);
}

#[test]
fn frames_round_trip_through_shared_compression_contexts() {
    let frames = vec![
        Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 3,
            fin: false,
            unidirectional: true,
            headers: vec![("streamtype".into(), "error".into())],
        },
        Frame::SynReply {
            stream_id: 1,
            fin: true,
            headers: vec![],
        },
        // The second block reuses the first's zlib history.
        Frame::SynStream {
            stream_id: 3,
            associated_to: 0,
            priority: 0,
            fin: true,
            unidirectional: false,
            headers: vec![("streamtype".into(), "stdout".into())],
        },
        Frame::Headers {
            stream_id: 3,
            fin: false,
            headers: vec![("a".into(), "x\0y".into())],
        },
        Frame::Data {
            stream_id: 3,
            fin: true,
            data: Bytes::from_static(b"hello"),
        },
        Frame::RstStream {
            stream_id: 5,
            status: 5,
        },
        Frame::Settings {
            entries: vec![Setting {
                flags: 1,
                id: 7,
                value: 1 << 20,
            }],
        },
        Frame::Ping { id: 7 },
        Frame::GoAway {
            last_good_stream_id: 3,
            status: 0,
        },
        Frame::WindowUpdate {
            stream_id: 0,
            delta: 1000,
        },
    ];
    let mut encoder = Encoder::default();
    let mut wire = BytesMut::new();
    for f in &frames {
        encoder.encode(f, &mut wire).unwrap();
    }
    // Feed the decoder a byte at a time: partial frames wait for the rest.
    let mut decoder = Decoder::default();
    let mut buf = BytesMut::new();
    let mut decoded = Vec::new();
    for b in wire.iter() {
        buf.extend_from_slice(&[*b]);
        if let Some(f) = decoder.decode(&mut buf).unwrap() {
            decoded.push(f);
        }
    }
    assert_eq!(decoded, frames);
    assert!(buf.is_empty());
}

#[test]
fn decoder_lowercases_names_and_rejects_other_versions() {
    let mut encoder = Encoder::default();
    let mut wire = BytesMut::new();
    encoder
        .encode(
            &Frame::SynReply {
                stream_id: 1,
                fin: false,
                headers: vec![("StreamType".into(), "stdin".into())],
            },
            &mut wire,
        )
        .unwrap();
    let mut decoder = Decoder::default();
    match decoder.decode(&mut wire).unwrap() {
        Some(Frame::SynReply { headers, .. }) => {
            assert_eq!(headers, vec![("streamtype".into(), "stdin".into())]);
        }
        other => panic!("{other:?}"),
    }
    // A SPDY/2 PING.
    let mut v2 = BytesMut::from(&[0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1][..]);
    assert!(decoder.decode(&mut v2).is_err());
    // Unknown control types are skipped.
    let mut unknown = BytesMut::from(&[0x80, 0x03, 0x00, 0x0a, 0, 0, 0, 2, 9, 9][..]);
    assert_eq!(
        decoder.decode(&mut unknown).unwrap(),
        Some(Frame::Unknown { frame_type: 10 })
    );
}

#[tokio::test(start_paused = true)]
async fn streams_are_replied_and_the_session_has_the_asked_channels() {
    let (_client, ids, session) = connect(
        Version::V4,
        opts(true, true, true, false),
        &["error", "stdin", "stdout", "stderr"],
    )
    .await;
    assert_eq!(ids["error"], 1);
    assert_eq!(ids["stderr"], 7);
    assert!(session.stdin.is_some());
    assert!(session.stdout.is_some());
    assert!(session.stderr.is_some());
    assert!(session.resize.is_none());
}

#[tokio::test(start_paused = true)]
async fn stdin_data_then_fin_is_eof() {
    let (mut client, ids, mut session) = connect(
        Version::V4,
        opts(true, true, false, false),
        &["error", "stdin", "stdout"],
    )
    .await;
    let stdin = ids["stdin"];
    client.data(stdin, b"hello ", false).await;
    client.data(stdin, b"world", true).await;
    let rx = session.stdin.as_mut().unwrap();
    let mut got = Vec::new();
    while let Some(chunk) = rx.recv().await {
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got, b"hello world");
}

#[tokio::test(start_paused = true)]
async fn output_then_v4_status_on_the_error_stream() {
    let (mut client, ids, session) = connect(
        Version::V4,
        opts(false, true, true, false),
        &["error", "stdout", "stderr"],
    )
    .await;
    let Session {
        stdout,
        stderr,
        finish,
        ..
    } = session;
    let (stdout, stderr) = (stdout.unwrap(), stderr.unwrap());
    stdout.send(Bytes::from_static(b"out1 ")).await.unwrap();
    stderr.send(Bytes::from_static(b"err")).await.unwrap();
    stdout.send(Bytes::from_static(b"out2")).await.unwrap();
    drop((stdout, stderr));
    finish
        .send(Outcome::exited(
            &["sh".into(), "-c".into(), "exit 3".into()],
            3,
        ))
        .unwrap();

    let got = client.until_goaway().await;
    assert!(got.goaway);
    assert_eq!(got.text(ids["stdout"]), "out1 out2");
    assert_eq!(got.text(ids["stderr"]), "err");
    let status: serde_json::Value = serde_json::from_slice(&got.data[&ids["error"]]).unwrap();
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
    // The status comes after all the output, and every stream is finished.
    let first_error = got.order.iter().position(|id| *id == ids["error"]).unwrap();
    let last_output = got
        .order
        .iter()
        .rposition(|id| *id != ids["error"])
        .unwrap();
    assert!(last_output < first_error, "{:?}", got.order);
    for id in ids.values() {
        assert!(got.fin.contains(id), "stream {id} not finished");
    }
    // The server shuts its side down after GOAWAY.
    assert_eq!(client.next().await, None);
}

#[tokio::test(start_paused = true)]
async fn v2_error_stream_carries_text_and_nothing_on_success() {
    for (outcome, want) in [
        (
            Outcome::exited(&["false".into()], 1),
            "command terminated with non-zero exit code: error executing command [false], exit code 1",
        ),
        (Outcome::Success, ""),
        (
            Outcome::Failed("no such container".into()),
            "Internal error occurred: no such container",
        ),
    ] {
        let (mut client, ids, session) = connect(
            Version::V2,
            opts(false, true, false, false),
            &["error", "stdout"],
        )
        .await;
        drop(session.stdout);
        session.finish.send(outcome).unwrap();
        let got = client.until_goaway().await;
        assert_eq!(got.text(ids["error"]), want);
        assert!(got.fin.contains(&ids["error"]));
    }
}

#[tokio::test(start_paused = true)]
async fn dropped_finish_is_an_internal_error() {
    let (mut client, ids, session) = connect(
        Version::V4,
        opts(false, true, false, false),
        &["error", "stdout"],
    )
    .await;
    drop(session);
    let got = client.until_goaway().await;
    let status: serde_json::Value = serde_json::from_slice(&got.data[&ids["error"]]).unwrap();
    assert_eq!(status["reason"], "InternalError");
    assert_eq!(status["code"], 500);
}

#[tokio::test(start_paused = true)]
async fn resize_stream_is_a_json_stream() {
    let (mut client, ids, mut session) = connect(
        Version::V4,
        opts(true, true, false, true),
        &["error", "stdin", "stdout", "resize"],
    )
    .await;
    let resize = ids["resize"];
    // Two objects in one frame, then one split across frames.
    client
        .data(
            resize,
            br#"{"Width":80,"Height":24}{"Width":100,"Height":30}"#,
            false,
        )
        .await;
    client.data(resize, br#"{"Width":1"#, false).await;
    client.data(resize, b"20,\"Height\":40}\n", true).await;
    let rx = session.resize.as_mut().unwrap();
    let mut got = Vec::new();
    while let Some(size) = rx.recv().await {
        got.push(size);
    }
    let size = |width, height| TermSize { width, height };
    assert_eq!(got, vec![size(80, 24), size(100, 30), size(120, 40)]);
}

#[tokio::test(start_paused = true)]
async fn invalid_resize_ends_resizes() {
    let (mut client, ids, mut session) = connect(
        Version::V3,
        opts(false, true, false, true),
        &["error", "stdout", "resize"],
    )
    .await;
    client
        .data(
            ids["resize"],
            br#"{"Width":80,"Height":24} nonsense {"Width":1,"Height":1}"#,
            false,
        )
        .await;
    let rx = session.resize.as_mut().unwrap();
    assert_eq!(
        rx.recv().await,
        Some(TermSize {
            width: 80,
            height: 24
        })
    );
    assert_eq!(rx.recv().await, None);
}

#[tokio::test(start_paused = true)]
async fn before_v3_tty_has_no_resize_stream() {
    let (_client, _ids, mut session) = connect(
        Version::V2,
        opts(false, true, false, true),
        &["error", "stdout"],
    )
    .await;
    assert_eq!(session.resize.as_mut().unwrap().recv().await, None);
}

#[tokio::test(start_paused = true)]
async fn missing_streams_time_out() {
    let (mut client, accepted) = start(Version::V4, opts(true, true, false, false));
    client.open("error").await;
    client.open("stdout").await;
    // A stream type the server does not know is answered but does not count.
    client.open("bogus").await;
    let started = tokio::time::Instant::now();
    let err = accepted.await.unwrap().unwrap_err();
    assert!(matches!(err, SpdyError::Timeout), "{err}");
    assert_eq!(
        err.to_string(),
        "timed out waiting for client to create streams"
    );
    assert!(started.elapsed() >= Duration::from_secs(30));
    let mut replies = 0;
    while let Some(frame) = client.next().await {
        if matches!(frame, Frame::SynReply { .. }) {
            replies += 1;
        }
    }
    assert_eq!(replies, 3);
}

#[tokio::test(start_paused = true)]
async fn disconnect_before_streams_is_closed() {
    let (mut client, accepted) = start(Version::V4, opts(false, true, false, false));
    client.open("error").await;
    drop(client);
    let err = accepted.await.unwrap().unwrap_err();
    assert!(matches!(err, SpdyError::Closed), "{err}");
}

#[tokio::test(start_paused = true)]
async fn client_disconnect_ends_stdin_and_the_task() {
    let (client, _ids, mut session) = connect(
        Version::V4,
        opts(true, true, false, false),
        &["error", "stdin", "stdout"],
    )
    .await;
    drop(client);
    assert_eq!(session.stdin.as_mut().unwrap().recv().await, None);
    // The task is gone: nobody takes output any more.
    session.stdout.as_ref().unwrap().closed().await;
}

#[tokio::test(start_paused = true)]
async fn stdin_reset_is_eof() {
    let (mut client, ids, mut session) = connect(
        Version::V4,
        opts(true, true, false, false),
        &["error", "stdin", "stdout"],
    )
    .await;
    client
        .send(Frame::RstStream {
            stream_id: ids["stdin"],
            status: 5,
        })
        .await;
    assert_eq!(session.stdin.as_mut().unwrap().recv().await, None);
}

#[tokio::test(start_paused = true)]
async fn ping_is_answered_and_settings_ignored() {
    let (mut client, _ids, _session) = connect(
        Version::V4,
        opts(false, true, false, false),
        &["error", "stdout"],
    )
    .await;
    client
        .send(Frame::Settings {
            entries: vec![Setting {
                flags: 0,
                id: 4,
                value: 100,
            }],
        })
        .await;
    client.send(Frame::Ping { id: 1 }).await;
    assert_eq!(client.next().await, Some(Frame::Ping { id: 1 }));
}

#[tokio::test(start_paused = true)]
async fn v1_resets_the_error_stream_at_once() {
    let (mut client, ids, _session) = connect(
        Version::V1,
        opts(true, true, false, false),
        &["error", "stdin", "stdout"],
    )
    .await;
    let mut got = Vec::new();
    while let Some(frame) = client.next().await {
        got.push(frame);
    }
    assert!(got.contains(&Frame::Data {
        stream_id: ids["stdin"],
        fin: true,
        data: Bytes::new()
    }));
    assert!(got.contains(&Frame::RstStream {
        stream_id: ids["error"],
        status: 5
    }));
}

#[tokio::test(start_paused = true)]
async fn large_stdin_passes_a_client_that_honours_windows() {
    let (mut client, ids, mut session) = connect(
        Version::V4,
        opts(true, true, false, false),
        &["error", "stdin", "stdout"],
    )
    .await;
    let stdin = ids["stdin"];
    let total = 300 * 1024;
    let input: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
    let reader = tokio::spawn({
        let mut rx = session.stdin.take().unwrap();
        async move {
            let mut got = Vec::new();
            while let Some(chunk) = rx.recv().await {
                got.extend_from_slice(&chunk);
            }
            got
        }
    });
    // Send within the stream and connection windows (64 KiB each), waiting
    // for WINDOW_UPDATE when they are spent.
    let (mut stream_window, mut conn_window) = (64 * 1024i64, 64 * 1024i64);
    let mut updates = 0;
    let mut sent = 0;
    while sent < total {
        let n = (total - sent)
            .min(8 * 1024)
            .min(stream_window.min(conn_window) as usize);
        if n == 0 {
            match client.next().await {
                Some(Frame::WindowUpdate { stream_id, delta }) => {
                    updates += 1;
                    if stream_id == 0 {
                        conn_window += i64::from(delta);
                    } else {
                        assert_eq!(stream_id, stdin);
                        stream_window += i64::from(delta);
                    }
                }
                other => panic!("stalled waiting for WINDOW_UPDATE: {other:?}"),
            }
            continue;
        }
        let fin = sent + n == total;
        client.data(stdin, &input[sent..sent + n], fin).await;
        sent += n;
        stream_window -= n as i64;
        conn_window -= n as i64;
    }
    assert!(updates >= 8, "{updates} window updates");
    assert_eq!(reader.await.unwrap(), input);
}

#[tokio::test(start_paused = true)]
async fn large_output_reaches_a_client_without_flow_control() {
    // spdystream never sends WINDOW_UPDATE; output must not wait for one.
    let (mut client, ids, session) = connect(
        Version::V4,
        opts(false, true, false, false),
        &["error", "stdout"],
    )
    .await;
    let total = 512 * 1024;
    let writer = tokio::spawn({
        let stdout = session.stdout.unwrap();
        let finish = session.finish;
        async move {
            for _ in 0..total / 4096 {
                stdout.send(Bytes::from(vec![b'x'; 4096])).await.unwrap();
            }
            drop(stdout);
            finish.send(Outcome::Success).unwrap();
        }
    });
    let got = client.until_goaway().await;
    writer.await.unwrap();
    assert_eq!(got.data[&ids["stdout"]].len(), total);
}

#[tokio::test(start_paused = true)]
async fn output_respects_windows_of_a_client_that_sets_them() {
    let (mut client, ids, session) = connect(
        Version::V4,
        opts(false, true, false, false),
        &["error", "stdout"],
    )
    .await;
    let stdout_id = ids["stdout"];
    client
        .send(Frame::Settings {
            entries: vec![Setting {
                flags: 0,
                id: 7,
                value: 16 * 1024,
            }],
        })
        .await;
    // Let the settings land before output starts.
    client.send(Frame::Ping { id: 1 }).await;
    assert_eq!(client.next().await, Some(Frame::Ping { id: 1 }));
    let stdout = session.stdout.unwrap();
    stdout
        .send(Bytes::from(vec![b'y'; 40 * 1024]))
        .await
        .unwrap();
    let mut received = 0;
    while let Some(frame) = client.next().await {
        match frame {
            Frame::Data {
                stream_id, data, ..
            } if stream_id == stdout_id => received += data.len(),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(received, 16 * 1024);
    client
        .send(Frame::WindowUpdate {
            stream_id: stdout_id,
            delta: 30 * 1024,
        })
        .await;
    while received < 40 * 1024 {
        match client.next().await {
            Some(Frame::Data {
                stream_id, data, ..
            }) if stream_id == stdout_id => {
                received += data.len();
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(received, 40 * 1024);
}
