//! Attach, on the supervisor's side: the container's output fans out to
//! attached clients as it is read (before the log's line assembly, so a
//! prompt without a newline shows), and their input goes to the container's
//! stdin (a pipe kept open, or the terminal).
//!
//! A client asks on the control socket with `attach stdin=1 stdout=1
//! stderr=0`; after `ok` the connection carries frames both ways: one kind
//! byte, a big-endian u32 length, the payload. From the supervisor: stdout,
//! stderr, exited. From the client: stdin data, stdin closed, terminal size
//! (u16 columns, u16 rows, big-endian).

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};

/// Frame kinds.
pub mod kind {
    /// Client → supervisor: stdin bytes.
    pub const STDIN: u8 = 0;
    /// Supervisor → client: stdout bytes.
    pub const STDOUT: u8 = 1;
    /// Supervisor → client: stderr bytes.
    pub const STDERR: u8 = 2;
    /// Supervisor → client: the container ended; no more frames.
    pub const EXITED: u8 = 3;
    /// Client → supervisor: a terminal size.
    pub const RESIZE: u8 = 4;
    /// Client → supervisor: the client's stdin ended.
    pub const CLOSE_STDIN: u8 = 5;
}

/// Largest frame accepted from a client.
const MAX_FRAME: u32 = 1 << 20;
/// Output chunks buffered per client; a client that falls further behind
/// is cut off rather than slowing the container down.
const CLIENT_BACKLOG: usize = 1024;

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, kind: u8, data: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(data.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut header = [0u8; 5];
    header[0] = kind;
    header[1..].copy_from_slice(&len.to_be_bytes());
    w.write_all(&header)?;
    w.write_all(data)
}

/// Reads one frame; `None` at a clean end of stream.
pub fn read_frame(r: &mut impl Read) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut header = [0u8; 5];
    match r.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let mut data = vec![0u8; len as usize];
    r.read_exact(&mut data)?;
    Ok(Some((header[0], data)))
}

/// Which streams a client wants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wants {
    /// Sends stdin.
    pub stdin: bool,
    /// Reads stdout.
    pub stdout: bool,
    /// Reads stderr.
    pub stderr: bool,
}

impl Wants {
    /// Parses `stdin=1 stdout=1 stderr=0`.
    pub fn parse(args: &str) -> Wants {
        let mut w = Wants::default();
        for pair in args.split_whitespace() {
            let on = pair.ends_with("=1");
            match pair.split('=').next() {
                Some("stdin") => w.stdin = on,
                Some("stdout") => w.stdout = on,
                Some("stderr") => w.stderr = on,
                _ => {}
            }
        }
        w
    }

    /// The request's arguments.
    pub fn args(self) -> String {
        format!(
            "stdin={} stdout={} stderr={}",
            u8::from(self.stdin),
            u8::from(self.stdout),
            u8::from(self.stderr)
        )
    }
}

/// A frame: its kind and payload.
type Frame = (u8, Vec<u8>);

/// The container's attachable stdio.
#[derive(Debug)]
pub struct AttachHub {
    clients: Mutex<Vec<(u64, SyncSender<Frame>)>>,
    next_id: AtomicU64,
    input: Mutex<Option<File>>,
    stdin_once: bool,
    terminal: Option<File>,
    ended: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl AttachHub {
    /// A hub writing clients' input to `input` (none: stdin is not open),
    /// closing it after the first client with `stdin_once`, and sizing
    /// `terminal` on resizes.
    pub fn new(input: Option<File>, stdin_once: bool, terminal: Option<File>) -> Arc<AttachHub> {
        Arc::new(AttachHub {
            clients: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            input: Mutex::new(input),
            stdin_once,
            terminal,
            ended: AtomicBool::new(false),
        })
    }

    /// Hands a chunk of output to every attached client.
    pub fn broadcast(&self, kind: u8, data: &[u8]) {
        let mut clients = lock(&self.clients);
        if clients.is_empty() {
            return;
        }
        clients.retain(|(_, tx)| match tx.try_send((kind, data.to_vec())) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        });
    }

    /// The container ended: every client hears it and is let go.
    pub fn end(&self) {
        self.ended.store(true, Ordering::SeqCst);
        for (_, tx) in lock(&self.clients).drain(..) {
            let _ = tx.try_send((kind::EXITED, Vec::new()));
        }
    }

    /// Serves one attached client on `conn` until it or the container goes.
    pub fn serve(&self, conn: UnixStream, wants: Wants) {
        let mut reply = &conn;
        if reply.write_all(b"ok\n").is_err() {
            return;
        }
        let (tx, rx) = sync_channel::<Frame>(CLIENT_BACKLOG);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if self.ended.load(Ordering::SeqCst) {
            let _ = tx.try_send((kind::EXITED, Vec::new()));
        } else {
            lock(&self.clients).push((id, tx));
        }
        let Ok(mut out) = conn.try_clone() else {
            return;
        };
        let writer = std::thread::spawn(move || {
            for (k, data) in rx {
                let wanted = match k {
                    kind::STDOUT => wants.stdout,
                    kind::STDERR => wants.stderr,
                    _ => true,
                };
                if wanted && write_frame(&mut out, k, &data).is_err() {
                    break;
                }
                if k == kind::EXITED {
                    let _ = out.shutdown(std::net::Shutdown::Write);
                    break;
                }
            }
        });
        let mut input = &conn;
        while let Ok(Some((k, data))) = read_frame(&mut input) {
            match k {
                kind::STDIN if wants.stdin => {
                    if let Some(f) = lock(&self.input).as_mut()
                        && f.write_all(&data).is_err()
                    {
                        break;
                    }
                }
                kind::CLOSE_STDIN if wants.stdin => self.client_stdin_ended(),
                kind::RESIZE => {
                    if let (Some(t), [c0, c1, r0, r1]) = (&self.terminal, data.as_slice()) {
                        let cols = u16::from_be_bytes([*c0, *c1]);
                        let rows = u16::from_be_bytes([*r0, *r1]);
                        let _ = skiff_sys::pty::set_size(t, cols, rows);
                    }
                }
                _ => {}
            }
        }
        if wants.stdin {
            self.client_stdin_ended();
        }
        // Gone: stop feeding its writer, which then ends.
        lock(&self.clients).retain(|(i, _)| *i != id);
        let _ = writer.join();
    }

    fn client_stdin_ended(&self) {
        if self.stdin_once {
            // The container sees EOF (for a pipe); upstream closes stdin
            // after the first attach with stdinOnce.
            lock(&self.input).take();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_wants_parse() {
        let mut buf = Vec::new();
        write_frame(&mut buf, kind::STDOUT, b"hi").unwrap();
        write_frame(&mut buf, kind::EXITED, b"").unwrap();
        let mut r = buf.as_slice();
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Some((kind::STDOUT, b"hi".to_vec()))
        );
        assert_eq!(read_frame(&mut r).unwrap(), Some((kind::EXITED, vec![])));
        assert_eq!(read_frame(&mut r).unwrap(), None);
        let w = Wants::parse("stdin=1 stdout=1 stderr=0");
        assert_eq!(
            w,
            Wants {
                stdin: true,
                stdout: true,
                stderr: false
            }
        );
        assert_eq!(Wants::parse(&w.args()), w);
    }

    #[test]
    fn clients_get_output_send_input_and_hear_the_end() {
        let (pipe_r, pipe_w) = std::io::pipe().unwrap();
        let hub = AttachHub::new(
            Some(File::from(std::os::fd::OwnedFd::from(pipe_w))),
            true,
            None,
        );
        let (server, mut client) = UnixStream::pair().unwrap();
        let h = hub.clone();
        let t = std::thread::spawn(move || {
            h.serve(
                server,
                Wants {
                    stdin: true,
                    stdout: true,
                    stderr: false,
                },
            );
        });
        let mut ok = [0u8; 3];
        client.read_exact(&mut ok).unwrap();
        assert_eq!(&ok, b"ok\n");
        // Wait until the client is registered before output flows.
        while lock(&hub.clients).is_empty() {
            std::thread::yield_now();
        }
        hub.broadcast(kind::STDERR, b"not wanted");
        hub.broadcast(kind::STDOUT, b"prompt> ");
        write_frame(&mut client, kind::STDIN, b"typed\n").unwrap();
        write_frame(&mut client, kind::CLOSE_STDIN, b"").unwrap();
        // stdin_once: the pipe closes after this client's stdin ended.
        let mut got = String::new();
        let mut pipe_r = pipe_r;
        pipe_r.read_to_string(&mut got).unwrap();
        assert_eq!(got, "typed\n");
        hub.end();
        assert_eq!(
            read_frame(&mut client).unwrap(),
            Some((kind::STDOUT, b"prompt> ".to_vec()))
        );
        assert_eq!(
            read_frame(&mut client).unwrap(),
            Some((kind::EXITED, vec![]))
        );
        drop(client);
        t.join().unwrap();
    }
}
