//! Container stdio in the CRI log format: `<RFC3339Nano> <stream> <F|P> <line>`.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Longest line written as one entry; longer lines are split into `P` entries.
pub const MAX_LINE: usize = 16 * 1024;

/// A shared CRI log file (stdout and stderr interleave into it).
#[derive(Debug, Clone)]
pub struct CriLog {
    sink: Option<Arc<Mutex<Sink>>>,
}

/// The open file and what the shim knows about it.
#[derive(Debug)]
struct Sink {
    path: PathBuf,
    file: File,
    /// Bytes of whole entries in the file: a failed write is cut back to it.
    len: u64,
    /// Whether the last write failed (reported once per failure streak).
    failing: bool,
}

impl Sink {
    fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let len = file.metadata()?.len();
        Ok(Self {
            path: path.to_owned(),
            file,
            len,
            failing: false,
        })
    }

    /// Appends one entry. On a full disk the entry is lost, never the
    /// container: the pipes keep draining, a partly written entry is cut off
    /// so the file stays parseable, and writing resumes once space returns.
    fn write(&mut self, entry: &[u8]) {
        match self.file.write_all(entry) {
            Ok(()) => {
                self.len += entry.len() as u64;
                if self.failing {
                    self.failing = false;
                    eprintln!("log {}: writes resumed", self.path.display());
                }
            }
            Err(e) => {
                let _ = self.file.set_len(self.len);
                if !self.failing {
                    self.failing = true;
                    eprintln!(
                        "log {}: {e}; dropping entries until writes succeed",
                        self.path.display()
                    );
                }
            }
        }
    }
}

impl CriLog {
    /// Opens (appends to) `path`, creating its directory; `None` discards output.
    pub fn open(path: Option<&Path>) -> std::io::Result<Self> {
        let sink = match path {
            None => None,
            Some(path) => Some(Arc::new(Mutex::new(Sink::open(path)?))),
        };
        Ok(Self { sink })
    }

    fn lock(sink: &Mutex<Sink>) -> MutexGuard<'_, Sink> {
        // A copier that panicked mid-write leaves nothing worse than a lost entry.
        sink.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens a fresh file at the log's path (the old one was renamed away by
    /// log rotation) and writes there from now on. When this returns, no
    /// entry goes to the old file any more.
    pub fn reopen(&self) -> std::io::Result<()> {
        let Some(sink) = &self.sink else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the container has no log file",
            ));
        };
        let mut sink = Self::lock(sink);
        let fresh = Sink::open(&sink.path)?;
        *sink = fresh;
        Ok(())
    }

    fn write_entry(&self, stream: &str, partial: bool, content: &[u8]) {
        let Some(sink) = &self.sink else { return };
        let entry = format_entry(&timestamp_now(), stream, partial, content);
        Self::lock(sink).write(&entry);
    }

    /// Copies `reader` into the log as `stream` until EOF.
    pub fn copy(&self, stream: &str, reader: impl Read) {
        self.copy_tee(stream, reader, |_| {});
    }

    /// Copies `reader` into the log as `stream` until EOF, handing every
    /// chunk to `tee` as it is read (attached clients see a prompt that has
    /// no newline yet; the log gets whole lines, long ones in `P` pieces).
    pub fn copy_tee(&self, stream: &str, mut reader: impl Read, mut tee: impl FnMut(&[u8])) {
        let mut buf = vec![0u8; 32 * 1024];
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // EIO from a terminal whose processes are gone ends it too.
                Err(_) => break,
            };
            tee(&buf[..n]);
            pending.extend_from_slice(&buf[..n]);
            let mut start = 0;
            while let Some(pos) = pending[start..].iter().position(|&b| b == b'\n') {
                for (partial, chunk) in split_line(&pending[start..=start + pos]) {
                    self.write_entry(stream, partial, chunk);
                }
                start += pos + 1;
            }
            pending.drain(..start);
            while pending.len() >= MAX_LINE {
                self.write_entry(stream, true, &pending[..MAX_LINE]);
                pending.drain(..MAX_LINE);
            }
        }
        if !pending.is_empty() {
            self.write_entry(stream, false, &pending);
        }
    }
}

/// Splits one read line (with or without its newline) into log entries.
pub fn split_line(line: &[u8]) -> Vec<(bool, &[u8])> {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    let chunks: Vec<&[u8]> = if body.is_empty() {
        vec![body]
    } else {
        body.chunks(MAX_LINE).collect()
    };
    let last = chunks.len() - 1;
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| (i != last, c))
        .collect()
}

/// One log entry with its trailing newline.
pub fn format_entry(timestamp: &str, stream: &str, partial: bool, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 48);
    out.extend_from_slice(timestamp.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(content);
    out.push(b'\n');
    out
}

/// Now as RFC 3339 with nanoseconds, UTC.
pub fn timestamp_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_into_entries() {
        let long = vec![b'a'; MAX_LINE + 5];
        let mut long_nl = long.clone();
        long_nl.push(b'\n');
        type Case<'a> = (&'a [u8], Vec<(bool, usize)>);
        let cases: Vec<Case> = vec![
            (b"hello\n", vec![(false, 5)]),
            (b"tail", vec![(false, 4)]),
            (b"\n", vec![(false, 0)]),
            (&long_nl, vec![(true, MAX_LINE), (false, 5)]),
        ];
        for (line, want) in cases {
            let got: Vec<(bool, usize)> = split_line(line)
                .into_iter()
                .map(|(p, c)| (p, c.len()))
                .collect();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn entries_have_the_cri_shape() {
        let e = format_entry("2026-01-01T00:00:00.5Z", "stderr", true, b"x y");
        assert_eq!(e, b"2026-01-01T00:00:00.5Z stderr P x y\n");
        let ts = timestamp_now();
        assert!(
            time::OffsetDateTime::parse(&ts, &time::format_description::well_known::Rfc3339)
                .is_ok()
        );
    }

    #[test]
    fn copy_writes_both_streams() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/0.log");
        let log = CriLog::open(Some(&path)).unwrap();
        log.copy("stdout", &b"one\ntwo"[..]);
        log.copy("stderr", &b"three\n"[..]);
        let text = std::fs::read_to_string(&path).unwrap();
        let entries: Vec<Vec<&str>> = text.lines().map(|l| l.splitn(4, ' ').collect()).collect();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0][1..], ["stdout", "F", "one"]);
        assert_eq!(entries[1][1..], ["stdout", "F", "two"]);
        assert_eq!(entries[2][1..], ["stderr", "F", "three"]);
    }

    #[test]
    fn reopen_moves_writes_to_a_fresh_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/0.log");
        let log = CriLog::open(Some(&path)).unwrap();
        log.copy("stdout", &b"one\n"[..]);
        let rotated = dir.path().join("c/0.log.20260101-000000");
        std::fs::rename(&path, &rotated).unwrap();
        log.copy("stdout", &b"two\n"[..]);
        log.reopen().unwrap();
        log.copy("stderr", &b"three\n"[..]);
        let old = std::fs::read_to_string(&rotated).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(old.lines().count(), 2);
        assert!(old.ends_with(" stdout F two\n"));
        assert_eq!(new.lines().count(), 1);
        assert!(new.ends_with(" stderr F three\n"));

        let none = CriLog::open(None).unwrap();
        assert_eq!(
            none.reopen().unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
    }

    #[test]
    fn a_full_device_drains_the_stream_without_blocking() {
        // /dev/full fails every write with ENOSPC.
        let log = CriLog::open(Some(Path::new("/dev/full"))).unwrap();
        let input = b"x\n".repeat(100_000);
        let mut reader = &input[..];
        log.copy("stdout", &mut reader);
        assert!(reader.is_empty(), "the copier stopped reading");
    }
}
