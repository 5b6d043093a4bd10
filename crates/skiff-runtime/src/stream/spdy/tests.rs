#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::frame::{DICTIONARY, Decoder, Encoder, Frame, Setting};
use super::test_client::{connect, opts, start};
use super::{SpdyError, negotiate};
use crate::stream::{Outcome, Session, TermSize, Version};

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
