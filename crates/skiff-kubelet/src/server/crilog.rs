//! Container log files in the CRI format, read as upstream's kubelet reads
//! them (`pkg/kubelet/kuberuntime/logs`).
//!
//! Each line of a log file is `<RFC3339Nano> <stdout|stderr> <tag> <content>`
//! where the tag's first `:`-separated field is `F` (the content ends a line)
//! or `P` (a partial line, continued by the next record). What a client sees
//! is the content: a full record's content keeps its newline, a partial
//! record's does not, so consecutive records join into one line. With
//! `timestamps`, each output line starts with its first record's timestamp.
//!
//! `tailLines` counts records (newline-terminated lines of the file) from its
//! end, as upstream does; `sinceSeconds`/`sinceTime` skip older records;
//! `limitBytes` cuts the output; `follow` keeps reading appended data, moves
//! to the new file when the log is rotated (the path names another inode) and
//! ends at end of file once the container no longer runs.

use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};
use tokio::sync::mpsc;

/// How often a followed log is checked for appended data, rotation and
/// whether its container still runs (upstream waits on inotify and rechecks
/// the container every few seconds; polling keeps this portable).
pub const FOLLOW_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Output is sent in chunks of at most about this many bytes.
const CHUNK_SIZE: usize = 32 * 1024;
/// Block size of the backwards scan for `tailLines`.
const TAIL_BLOCK: u64 = 4096;

/// The output stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    /// The container's standard output.
    Stdout,
    /// The container's standard error.
    Stderr,
}

/// One parsed record of a CRI log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogMessage<'a> {
    /// When the runtime read the content.
    pub timestamp: OffsetDateTime,
    /// Where it came from.
    pub stream: LogStream,
    /// The content as written out: with its newline for a full record,
    /// without for a partial one.
    pub content: &'a [u8],
}

/// Why a record could not be parsed (the record is skipped, as upstream).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A field separator is missing.
    #[error("{0} is not found")]
    Missing(&'static str),
    /// The timestamp is not RFC 3339.
    #[error("unexpected timestamp format {0:?}")]
    Timestamp(String),
    /// Neither stdout nor stderr.
    #[error("unexpected stream type {0:?}")]
    Stream(String),
}

/// Parses one record; `line` may end with its newline.
pub fn parse_cri_line(line: &[u8]) -> Result<LogMessage<'_>, ParseError> {
    let (ts, rest) = split_field(line).ok_or(ParseError::Missing("timestamp"))?;
    let ts = std::str::from_utf8(ts)
        .map_err(|_| ParseError::Timestamp(String::from_utf8_lossy(ts).into_owned()))?;
    let timestamp =
        OffsetDateTime::parse(ts, &Rfc3339).map_err(|_| ParseError::Timestamp(ts.to_owned()))?;
    let (stream, rest) = split_field(rest).ok_or(ParseError::Missing("stream type"))?;
    let stream = match stream {
        b"stdout" => LogStream::Stdout,
        b"stderr" => LogStream::Stderr,
        other => {
            return Err(ParseError::Stream(
                String::from_utf8_lossy(other).into_owned(),
            ));
        }
    };
    let (tag, mut content) = split_field(rest).ok_or(ParseError::Missing("log tag"))?;
    // Tags may grow more `:`-separated fields; the first says full or partial.
    let partial = tag.split(|b| *b == b':').next() == Some(b"P");
    if partial && content.last() == Some(&b'\n') {
        content = &content[..content.len() - 1];
    }
    Ok(LogMessage {
        timestamp,
        stream,
        content,
    })
}

fn split_field(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let idx = line.iter().position(|b| *b == b' ')?;
    Some((&line[..idx], &line[idx + 1..]))
}

/// What to read (upstream's `PodLogOptions` as the kubelet applies them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Only the last this many records (`tailLines`).
    pub tail_lines: Option<u64>,
    /// Only records at or after this time (`sinceSeconds` / `sinceTime`).
    pub since: Option<OffsetDateTime>,
    /// Prefix each line with its RFC 3339 timestamp.
    pub timestamps: bool,
    /// Stop after this many bytes of output (`limitBytes`).
    pub limit_bytes: Option<u64>,
    /// Keep reading appended data while the container runs.
    pub follow: bool,
}

/// Whether writing may go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// More output is allowed.
    Continue,
    /// `limitBytes` is reached.
    LimitReached,
}

/// Turns records into output: the since filter, timestamp prefixes and the
/// byte limit.
#[derive(Debug, Clone)]
pub struct LogWriter {
    since: Option<OffsetDateTime>,
    timestamps: bool,
    remaining: Option<u64>,
    at_line_start: bool,
}

impl LogWriter {
    /// A writer applying `opts`.
    pub fn new(opts: &LogOptions) -> LogWriter {
        LogWriter {
            since: opts.since,
            timestamps: opts.timestamps,
            remaining: opts.limit_bytes,
            at_line_start: true,
        }
    }

    /// Appends the output of `msg` to `out`.
    pub fn write(&mut self, msg: &LogMessage<'_>, out: &mut Vec<u8>) -> Flow {
        let starts_line = self.at_line_start;
        self.at_line_start = msg.content.last().is_none_or(|b| *b == b'\n');
        if self.since.is_some_and(|since| msg.timestamp < since) {
            return Flow::Continue;
        }
        let mut line = Vec::with_capacity(msg.content.len() + 32);
        if self.timestamps && starts_line {
            line.extend_from_slice(format_timestamp(msg.timestamp).as_bytes());
            line.push(b' ');
        }
        line.extend_from_slice(msg.content);
        match &mut self.remaining {
            None => {
                out.extend_from_slice(&line);
                Flow::Continue
            }
            Some(remaining) => {
                let n = line
                    .len()
                    .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                out.extend_from_slice(&line[..n]);
                *remaining -= n as u64;
                if *remaining == 0 {
                    Flow::LimitReached
                } else {
                    Flow::Continue
                }
            }
        }
    }
}

/// RFC 3339 with nanoseconds, trailing zeros dropped (Go's `RFC3339Nano`).
pub fn format_timestamp(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// The offset where the last `n` records of `file` start (the whole file
/// when it has fewer). An unterminated last line comes along as well.
pub fn tail_start<F: Read + Seek>(file: &mut F, n: u64) -> io::Result<u64> {
    let size = file.seek(SeekFrom::End(0))?;
    // The newline that ends the record just before the tail is number n+1
    // counted from the end.
    let mut seen = 0u64;
    let mut right = size;
    let mut buf = vec![0u8; TAIL_BLOCK as usize];
    while right > 0 {
        let left = right.saturating_sub(TAIL_BLOCK);
        let block = &mut buf[..(right - left) as usize];
        file.seek(SeekFrom::Start(left))?;
        file.read_exact(block)?;
        for (i, b) in block.iter().enumerate().rev() {
            if *b == b'\n' {
                seen += 1;
                if seen == n + 1 {
                    return Ok(left + i as u64 + 1);
                }
            }
        }
        right = left;
    }
    Ok(0)
}

/// The log file to read and whether its container still runs.
#[derive(Clone)]
pub struct LogTarget {
    /// The file.
    pub path: std::path::PathBuf,
    /// True while the container runs; following ends at end of file once
    /// this is false.
    pub running: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl std::fmt::Debug for LogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogTarget")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Reads `source` with `opts` and sends the output to `out` until the log is
/// done (end of file; with `follow`, end of file after the container
/// stopped), `limitBytes` is reached or the receiver goes away.
pub async fn stream_log(
    source: LogTarget,
    opts: LogOptions,
    out: mpsc::Sender<Bytes>,
) -> io::Result<()> {
    let path = source.path.clone();
    let std_file = std::fs::File::open(&path)?;
    let (std_file, start) = match opts.tail_lines {
        Some(n) => tokio::task::spawn_blocking(move || {
            let mut f = std_file;
            tail_start(&mut f, n).map(|start| (f, start))
        })
        .await
        .map_err(io::Error::other)??,
        None => (std_file, 0),
    };
    let mut file = tokio::fs::File::from_std(std_file);
    file.seek(SeekFrom::Start(start)).await?;
    let mut inode = file.metadata().await?.ino();
    let mut reader = BufReader::new(file);
    let mut writer = LogWriter::new(&opts);
    let mut line = Vec::new();
    let mut pending = Vec::with_capacity(CHUNK_SIZE);
    // Upstream reads to the end once more after seeing the container stop.
    let mut running = true;
    loop {
        let n = reader.read_until(b'\n', &mut line).await?;
        let complete = line.last() == Some(&b'\n');
        if n == 0 || !complete {
            // End of file, maybe inside a record still being written.
            if !opts.follow {
                // An unterminated last record is still written out.
                if !line.is_empty() {
                    emit(&mut writer, &line, &mut pending);
                }
                break;
            }
            if !flush(&out, &mut pending).await {
                return Ok(());
            }
            if !running {
                break;
            }
            running = (source.running)();
            if let Some(new_file) = rotated(&path, inode).await? {
                // The rest of an unterminated record in the old file is
                // lost, as upstream.
                line.clear();
                inode = new_file.metadata().await?.ino();
                reader = BufReader::new(new_file);
                continue;
            }
            if running {
                tokio::select! {
                    () = tokio::time::sleep(FOLLOW_POLL_INTERVAL) => {}
                    () = out.closed() => return Ok(()),
                }
            }
            continue;
        }
        let flow = emit(&mut writer, &line, &mut pending);
        line.clear();
        if flow == Flow::LimitReached {
            break;
        }
        if pending.len() >= CHUNK_SIZE && !flush(&out, &mut pending).await {
            return Ok(());
        }
    }
    flush(&out, &mut pending).await;
    Ok(())
}

/// Parses one record and writes it; unparsable records are skipped.
fn emit(writer: &mut LogWriter, line: &[u8], out: &mut Vec<u8>) -> Flow {
    match parse_cri_line(line) {
        Ok(msg) => writer.write(&msg, out),
        Err(err) => {
            tracing::debug!(error = %err, "skipping a log record that does not parse");
            Flow::Continue
        }
    }
}

/// Sends what is pending; false when the receiver is gone.
async fn flush(out: &mpsc::Sender<Bytes>, pending: &mut Vec<u8>) -> bool {
    if pending.is_empty() {
        return !out.is_closed();
    }
    let chunk = Bytes::from(std::mem::replace(pending, Vec::with_capacity(CHUNK_SIZE)));
    out.send(chunk).await.is_ok()
}

/// The new file at `path` when it is no longer the inode being read.
async fn rotated(path: &Path, inode: u64) -> io::Result<Option<tokio::fs::File>> {
    match tokio::fs::metadata(path).await {
        Ok(meta) if meta.ino() != inode => match tokio::fs::File::open(path).await {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        },
        Ok(_) => Ok(None),
        // Between the rename and the new file's creation.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[path = "crilog_tests.rs"]
mod tests;
