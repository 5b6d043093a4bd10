//! Flow control and backpressure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;

use super::frame::{Frame, Setting};
use super::test_client::{connect, opts};
use crate::stream::{Outcome, Session, Version};

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

#[tokio::test(start_paused = true)]
async fn output_flows_while_the_process_ignores_stdin() {
    // A client without flow control floods stdin while the process writes
    // all its output before reading any input: neither direction may wait
    // for the other.
    let (mut client, ids, session) = connect(
        Version::V4,
        opts(true, true, false, false),
        &["error", "stdin", "stdout"],
    )
    .await;
    let total = 320 * 1024;
    let process = tokio::spawn(async move {
        let Session {
            stdin,
            stdout,
            finish,
            ..
        } = session;
        let (mut stdin, stdout) = (stdin.unwrap(), stdout.unwrap());
        for _ in 0..total / 4096 {
            stdout.send(Bytes::from(vec![b'o'; 4096])).await.unwrap();
        }
        drop(stdout);
        let mut got = 0;
        while let Some(chunk) = stdin.recv().await {
            got += chunk.len();
        }
        finish.send(Outcome::Success).unwrap();
        got
    });
    let mut flood = BytesMut::new();
    for i in 0..total / 8192 {
        let frame = Frame::Data {
            stream_id: ids["stdin"],
            fin: i + 1 == total / 8192,
            data: Bytes::from(vec![b'i'; 8192]),
        };
        client.encoder.encode(&frame, &mut flood).unwrap();
    }
    let wr = &mut client.wr;
    let both = async {
        tokio::join!(wr.write_all(&flood), async {
            let mut stdout = 0;
            while let Some(frame) = client.frames.recv().await {
                match frame {
                    Frame::Data {
                        stream_id, data, ..
                    } if stream_id == ids["stdout"] => stdout += data.len(),
                    Frame::GoAway { .. } => break,
                    _ => {}
                }
            }
            stdout
        })
    };
    // A deadlock leaves everything idle: paused time then runs out.
    let (written, got) = tokio::time::timeout(Duration::from_secs(60), both)
        .await
        .expect("stdin and stdout deadlocked");
    written.unwrap();
    assert_eq!(got, total);
    assert_eq!(process.await.unwrap(), total);
}

#[tokio::test(start_paused = true)]
async fn late_and_bad_streams_are_reset() {
    let (mut client, _ids, _session) = connect(
        Version::V4,
        opts(false, true, false, false),
        &["error", "stdout"],
    )
    .await;
    // All streams are there: a new one is refused.
    let late = client.open("stdin").await;
    assert_eq!(
        client.next().await,
        Some(Frame::RstStream {
            stream_id: late,
            status: 3
        })
    );
    // Client streams have odd, increasing ids.
    client.next_id = 2;
    client.open("stdin").await;
    assert_eq!(
        client.next().await,
        Some(Frame::RstStream {
            stream_id: 2,
            status: 1
        })
    );
}
