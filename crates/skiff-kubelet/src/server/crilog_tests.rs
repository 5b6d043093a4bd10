#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Cursor, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

const LOG: &str = "\
2026-11-29T22:33:10.000000001Z stdout F one
2026-11-29T22:33:11.5Z stderr F two
2026-11-29T22:33:12.123456789Z stdout P thr
2026-11-29T22:33:12.200000000Z stdout F ee
garbage
2026-11-29T22:33:13Z stdout F four
";

fn ts(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap()
}

/// Reads `content` once (no follow) with `opts`.
async fn read(content: &str, opts: LogOptions) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0.log");
    std::fs::write(&path, content).unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let source = LogTarget {
        path,
        running: Arc::new(|| false),
    };
    stream_log(source, opts, tx).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = rx.recv().await {
        out.extend_from_slice(&chunk);
    }
    String::from_utf8(out).unwrap()
}

/// A record and what it parses to (timestamp, stream, content), if anything.
type ParseCase = (
    &'static str,
    Result<(&'static str, LogStream, &'static str), ()>,
);

#[test]
fn parses_full_and_partial_records() {
    let cases: &[ParseCase] = &[
        (
            "2026-11-29T22:33:12.123456789Z stdout F msg\n",
            Ok(("2026-11-29T22:33:12.123456789Z", LogStream::Stdout, "msg\n")),
        ),
        (
            "2026-11-29T22:33:12Z stderr P part\n",
            Ok(("2026-11-29T22:33:12Z", LogStream::Stderr, "part")),
        ),
        // Extra tag fields are ignored; content keeps its spaces.
        (
            "2026-11-29T22:33:12Z stdout P:x  a b\n",
            Ok(("2026-11-29T22:33:12Z", LogStream::Stdout, " a b")),
        ),
        (
            "2026-11-29T22:33:12Z stdout F \n",
            Ok(("2026-11-29T22:33:12Z", LogStream::Stdout, "\n")),
        ),
        ("2026-11-29T22:33:12Z stdin F x\n", Err(())),
        ("yesterday stdout F x\n", Err(())),
        ("2026-11-29T22:33:12Z stdout\n", Err(())),
        ("nothing", Err(())),
    ];
    for (line, want) in cases {
        let got = parse_cri_line(line.as_bytes());
        match want {
            Ok((t, stream, content)) => {
                let msg = got.unwrap();
                assert_eq!(msg.timestamp, ts(t), "{line}");
                assert_eq!(msg.stream, *stream, "{line}");
                assert_eq!(msg.content, content.as_bytes(), "{line}");
            }
            Err(()) => assert!(got.is_err(), "{line} parsed: {got:?}"),
        }
    }
}

#[test]
fn timestamps_print_as_rfc3339_nano() {
    for (input, want) in [
        (
            "2026-11-29T22:33:12.123456789Z",
            "2026-11-29T22:33:12.123456789Z",
        ),
        ("2026-11-29T22:33:12.500000000Z", "2026-11-29T22:33:12.5Z"),
        ("2026-11-29T22:33:12Z", "2026-11-29T22:33:12Z"),
    ] {
        assert_eq!(format_timestamp(ts(input)), want);
    }
}

#[test]
fn tail_start_counts_records_from_the_end() {
    let content = "a\nb\nc\n";
    for (n, want) in [(0, 6), (1, 4), (2, 2), (3, 0), (10, 0)] {
        assert_eq!(
            tail_start(&mut Cursor::new(content), n).unwrap(),
            want,
            "n={n}"
        );
    }
    // An unterminated last line comes along with the last n records.
    assert_eq!(tail_start(&mut Cursor::new("a\nb\nc"), 1).unwrap(), 2);
    // Across several scan blocks.
    let long: String = (0..3000).map(|i| format!("line {i}\n")).collect();
    let start = tail_start(&mut Cursor::new(&long), 2).unwrap() as usize;
    assert_eq!(&long[start..], "line 2998\nline 2999\n");
}

#[tokio::test]
async fn reads_contents_joining_partial_records() {
    let out = read(LOG, LogOptions::default()).await;
    assert_eq!(out, "one\ntwo\nthree\nfour\n");
}

#[tokio::test]
async fn timestamps_prefix_each_line_once() {
    let opts = LogOptions {
        timestamps: true,
        ..Default::default()
    };
    let out = read(LOG, opts).await;
    assert_eq!(
        out,
        "2026-11-29T22:33:10.000000001Z one\n\
         2026-11-29T22:33:11.5Z two\n\
         2026-11-29T22:33:12.123456789Z three\n\
         2026-11-29T22:33:13Z four\n"
    );
}

#[tokio::test]
async fn tail_lines_takes_the_last_records() {
    for (n, want) in [
        (0, ""),
        (1, "four\n"),
        // The garbage record counts as a line of the file.
        (2, "four\n"),
        (3, "ee\nfour\n"),
        (4, "three\nfour\n"),
        (100, "one\ntwo\nthree\nfour\n"),
    ] {
        let opts = LogOptions {
            tail_lines: Some(n),
            ..Default::default()
        };
        assert_eq!(read(LOG, opts).await, want, "tailLines={n}");
    }
}

#[tokio::test]
async fn since_skips_older_records() {
    for (since, want) in [
        ("2026-11-29T22:33:11.5Z", "two\nthree\nfour\n"),
        ("2026-11-29T22:33:11.6Z", "three\nfour\n"),
        ("2026-11-29T22:33:12.15Z", "ee\nfour\n"),
        ("2030-01-01T00:00:00Z", ""),
    ] {
        let opts = LogOptions {
            since: Some(ts(since)),
            ..Default::default()
        };
        assert_eq!(read(LOG, opts).await, want, "since {since}");
    }
}

#[tokio::test]
async fn limit_bytes_cuts_the_output() {
    for (limit, timestamps, want) in [
        (1, false, "o"),
        (4, false, "one\n"),
        (6, false, "one\ntw"),
        (1000, false, "one\ntwo\nthree\nfour\n"),
        (35, true, "2026-11-29T22:33:10.000000001Z one\n"),
    ] {
        let opts = LogOptions {
            limit_bytes: Some(limit),
            timestamps,
            ..Default::default()
        };
        assert_eq!(read(LOG, opts).await, want, "limitBytes={limit}");
    }
}

/// Receives until the output holds `want` (or fails after a while).
async fn expect_output(rx: &mut mpsc::Receiver<Bytes>, got: &mut String, want: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !got.contains(want) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(chunk)) => got.push_str(std::str::from_utf8(&chunk).unwrap()),
            Ok(None) => panic!("stream ended before {want:?}; got {got:?}"),
            Err(_) => panic!("timed out waiting for {want:?}; got {got:?}"),
        }
    }
}

fn append(path: &Path, s: &str) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(s.as_bytes()).unwrap();
}

#[tokio::test]
async fn follow_streams_appends_and_rotation_until_the_container_stops() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0.log");
    std::fs::write(&path, "2026-11-29T22:33:10Z stdout F old\n").unwrap();
    let running = Arc::new(AtomicBool::new(true));
    let source = LogTarget {
        path: path.clone(),
        running: {
            let running = running.clone();
            Arc::new(move || running.load(Ordering::SeqCst))
        },
    };
    let opts = LogOptions {
        follow: true,
        tail_lines: Some(1),
        ..Default::default()
    };
    let (tx, mut rx) = mpsc::channel(16);
    let task = tokio::spawn(stream_log(source, opts, tx));
    let mut got = String::new();
    expect_output(&mut rx, &mut got, "old\n").await;

    // A record written in two steps comes out once complete.
    append(&path, "2026-11-29T22:33:11Z stdout F ap");
    tokio::time::sleep(FOLLOW_POLL_INTERVAL * 3).await;
    append(&path, "pended\n");
    expect_output(&mut rx, &mut got, "appended\n").await;

    // Rotation: the file moves away and a new one takes its path.
    std::fs::rename(&path, dir.path().join("0.log.20261129-223312")).unwrap();
    std::fs::write(&path, "2026-11-29T22:33:12Z stdout F rotated\n").unwrap();
    expect_output(&mut rx, &mut got, "rotated\n").await;
    assert_eq!(got, "old\nappended\nrotated\n");

    // What is written before the container stops is still read, then the
    // stream ends.
    append(&path, "2026-11-29T22:33:13Z stdout F last\n");
    running.store(false, Ordering::SeqCst);
    expect_output(&mut rx, &mut got, "last\n").await;
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("follow ends after the container stopped")
        .unwrap()
        .unwrap();
    assert_eq!(rx.recv().await, None);
    assert_eq!(got, "old\nappended\nrotated\nlast\n");
}

#[tokio::test]
async fn follow_ends_when_the_receiver_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0.log");
    std::fs::write(&path, "2026-11-29T22:33:10Z stdout F x\n").unwrap();
    let source = LogTarget {
        path,
        running: Arc::new(|| true),
    };
    let opts = LogOptions {
        follow: true,
        ..Default::default()
    };
    let (tx, mut rx) = mpsc::channel(16);
    let task = tokio::spawn(stream_log(source, opts, tx));
    let mut got = String::new();
    expect_output(&mut rx, &mut got, "x\n").await;
    drop(rx);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("follow ends without a receiver")
        .unwrap()
        .unwrap();
}
