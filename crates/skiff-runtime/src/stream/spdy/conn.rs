//! The connection task: one event loop that reads frames, replies, feeds
//! the session's stdin and resize channels, and writes its output.
//!
//! Nothing in the loop blocks on a single peer: socket reads, socket
//! writes, deliveries to the process and output from it are all arms of one
//! `select!`, so a process that does not read stdin cannot stop its output
//! from going out (reading the socket pauses instead, as TCP backpressure).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};

use super::frame::{Decoder, Encoder, Frame, SETTINGS_INITIAL_WINDOW_SIZE, header, rst};
use super::{STREAM_CREATION_TIMEOUT, SpdyError};
use crate::stream::{
    DriverEnds, Outcome, Session, StreamOpts, TermSize, Version, await_outcome, session_pair,
};

/// The initial flow-control window of SPDY/3.1, per stream and per connection.
const DEFAULT_WINDOW: i64 = 64 * 1024;
/// Received bytes are acknowledged (WINDOW_UPDATE) in batches of this size.
const ACK_THRESHOLD: u32 = 32 * 1024;
/// The largest DATA frame we send.
const MAX_DATA_FRAME: usize = 32 * 1024;
/// Stop taking process output while this much is queued for the socket.
const HIGH_WATER: usize = 256 * 1024;
/// Stop reading the socket while this much is queued for it (a client that
/// pings without reading the answers).
const OUT_LIMIT: usize = 4 * HIGH_WATER;
/// How long to keep reading after our GOAWAY so the client's last frames do
/// not turn the close into a reset that could drop our last output.
const LINGER: Duration = Duration::from_secs(5);
/// An incomplete resize message larger than this is not one.
const MAX_RESIZE_BUFFER: usize = 4096;
/// Resizes queued for a process that is not taking them; only the latest
/// size matters, so the newest replaces the last queued one beyond this.
const MAX_PENDING_RESIZES: usize = 16;

/// What a client stream carries, from its `streamtype` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Error,
    Stdin,
    Stdout,
    Stderr,
    Resize,
}

impl Role {
    fn from_stream_type(stream_type: &str, version: Version) -> Option<Role> {
        Some(match stream_type {
            "error" => Role::Error,
            "stdin" => Role::Stdin,
            "stdout" => Role::Stdout,
            "stderr" => Role::Stderr,
            // Before v3 the kubelet did not know resize streams.
            "resize" if version.has_resize() => Role::Resize,
            _ => return None,
        })
    }
}

/// A stream the client opened.
#[derive(Debug)]
struct Stream {
    id: u32,
    /// `None` for a stream type the server ignores.
    role: Option<Role>,
    send_window: i64,
    /// Bytes received and consumed but not yet acknowledged.
    unacked: u32,
    /// The client sent FIN or RST.
    remote_closed: bool,
    /// We sent FIN or RST.
    local_closed: bool,
}

/// Process output waiting for the socket.
#[derive(Debug, Default)]
struct Output {
    rx: Option<mpsc::Receiver<Bytes>>,
    pending: Bytes,
}

impl Output {
    fn done(&self) -> bool {
        self.rx.is_none() && self.pending.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the client's streams.
    Opening,
    /// The session runs.
    Running,
    /// The outcome, FINs and GOAWAY are queued; flushing.
    Draining,
    /// Our side is shut down; reading until the client closes.
    Lingering,
    /// Finished.
    Done,
}

enum Event {
    Read(std::io::Result<usize>),
    Wrote(std::io::Result<usize>),
    StdinDelivered { stream_id: u32, len: u32 },
    StdinGone,
    ResizeDelivered,
    ResizeGone,
    Output(Role, Option<Bytes>),
    Outcome(Outcome),
    Deadline,
}

type OutcomeFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// Runs one connection: reports the [`Session`] (or why there is none) on
/// `ready` once the streams are open, then pumps until the end.
pub(super) async fn run<I>(
    io: I,
    version: Version,
    opts: StreamOpts,
    ready: oneshot::Sender<Result<Session, SpdyError>>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (session, ends) = session_pair(opts);
    let mut conn = Conn::new(io, version, opts, ends);
    let mut pending = Some((session, ready));
    loop {
        if let Err(e) = conn.step().await {
            match pending.take() {
                Some((_, ready)) => {
                    let _ = ready.send(Err(e));
                }
                None => tracing::debug!(error = %e, "SPDY connection ended"),
            }
            return;
        }
        if conn.phase != Phase::Opening
            && let Some((session, ready)) = pending.take()
            && ready.send(Ok(session)).is_err()
        {
            return;
        }
        if conn.phase == Phase::Done {
            return;
        }
    }
}

struct Conn<I> {
    rd: ReadHalf<I>,
    wr: WriteHalf<I>,
    inbuf: BytesMut,
    outbuf: BytesMut,
    decoder: Decoder,
    encoder: Encoder,
    version: Version,
    phase: Phase,
    /// The stream-creation timeout, then the linger timeout.
    deadline: Instant,
    read_closed: bool,

    streams: Vec<Stream>,
    /// Roles the request asked for that have no stream yet.
    missing: Vec<Role>,
    last_stream_id: u32,
    /// The client has shown it does flow control (sent WINDOW_UPDATE or an
    /// initial window); spdystream, which kubectl uses, ignores windows, so
    /// holding output back for it would stall large output for ever.
    enforce_windows: bool,
    initial_window: i64,
    conn_send_window: i64,
    conn_unacked: u32,

    stdin: Option<mpsc::Sender<Bytes>>,
    stdin_pending: VecDeque<(u32, Bytes)>,
    stdin_fin: bool,
    resize: Option<mpsc::Sender<TermSize>>,
    resize_buffer: Vec<u8>,
    resize_pending: VecDeque<TermSize>,
    resize_fin: bool,
    stdout: Output,
    stderr: Output,
    finish: Option<OutcomeFuture>,
}

impl<I> Conn<I>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn new(io: I, version: Version, opts: StreamOpts, ends: DriverEnds) -> Self {
        let (rd, wr) = tokio::io::split(io);
        let mut missing = vec![Role::Error];
        for (on, role) in [
            (opts.stdin, Role::Stdin),
            (opts.stdout, Role::Stdout),
            (opts.stderr && !opts.tty, Role::Stderr),
            (opts.tty && version.has_resize(), Role::Resize),
        ] {
            if on {
                missing.push(role);
            }
        }
        Conn {
            rd,
            wr,
            inbuf: BytesMut::with_capacity(16 * 1024),
            outbuf: BytesMut::with_capacity(16 * 1024),
            decoder: Decoder::default(),
            encoder: Encoder::default(),
            version,
            phase: Phase::Opening,
            deadline: Instant::now() + STREAM_CREATION_TIMEOUT,
            read_closed: false,
            streams: Vec::new(),
            missing,
            last_stream_id: 0,
            enforce_windows: false,
            initial_window: DEFAULT_WINDOW,
            conn_send_window: DEFAULT_WINDOW,
            conn_unacked: 0,
            stdin: ends.stdin,
            stdin_pending: VecDeque::new(),
            stdin_fin: false,
            // Without a resize stream (v1, v2) the session's resizes just end.
            resize: ends.resize.filter(|_| version.has_resize()),
            resize_buffer: Vec::new(),
            resize_pending: VecDeque::new(),
            resize_fin: false,
            stdout: Output {
                rx: ends.stdout,
                pending: Bytes::new(),
            },
            stderr: Output {
                rx: ends.stderr,
                pending: Bytes::new(),
            },
            finish: Some(Box::pin(await_outcome(ends.finish))),
        }
    }

    /// One turn of the loop.
    async fn step(&mut self) -> Result<(), SpdyError> {
        while self.stdin_pending.is_empty() {
            match self.decoder.decode(&mut self.inbuf)? {
                Some(frame) => self.on_frame(frame)?,
                None => break,
            }
        }
        if self.stdin_fin && self.stdin_pending.is_empty() {
            self.stdin = None;
        }
        if self.resize_fin && self.resize_pending.is_empty() {
            self.resize = None;
        }
        if self.phase == Phase::Running {
            self.send_output(Role::Stdout);
            self.send_output(Role::Stderr);
        }
        if self.phase == Phase::Draining && self.outbuf.is_empty() {
            // A failed shutdown means the client is gone; lingering ends at once.
            let _ = self.wr.shutdown().await;
            self.phase = if self.read_closed {
                Phase::Done
            } else {
                Phase::Lingering
            };
            self.deadline = Instant::now() + LINGER;
            return Ok(());
        }
        let event = self.next_event().await;
        self.on_event(event)
    }

    async fn next_event(&mut self) -> Event {
        let running = self.phase == Phase::Running;
        let take_output = running && self.outbuf.len() < HIGH_WATER;
        let outputs_done = self.stdout.done() && self.stderr.done();
        tokio::select! {
            r = self.wr.write_buf(&mut self.outbuf),
                if !self.outbuf.is_empty() && self.phase != Phase::Lingering => Event::Wrote(r),
            r = self.rd.read_buf(&mut self.inbuf),
                if !self.read_closed
                    && self.stdin_pending.is_empty()
                    && self.outbuf.len() < OUT_LIMIT => Event::Read(r),
            permit = reserve(self.stdin.as_ref()), if !self.stdin_pending.is_empty() => {
                match (permit, self.stdin_pending.pop_front()) {
                    (Some(permit), Some((stream_id, data))) => {
                        let len = data.len() as u32;
                        permit.send(data);
                        Event::StdinDelivered { stream_id, len }
                    }
                    _ => Event::StdinGone,
                }
            }
            permit = reserve(self.resize.as_ref()), if !self.resize_pending.is_empty() => {
                match (permit, self.resize_pending.pop_front()) {
                    (Some(permit), Some(size)) => {
                        permit.send(size);
                        Event::ResizeDelivered
                    }
                    _ => Event::ResizeGone,
                }
            }
            chunk = recv(&mut self.stdout.rx),
                if take_output && self.stdout.pending.is_empty() => Event::Output(Role::Stdout, chunk),
            chunk = recv(&mut self.stderr.rx),
                if take_output && self.stderr.pending.is_empty() => Event::Output(Role::Stderr, chunk),
            outcome = outcome(&mut self.finish), if running && outputs_done => Event::Outcome(outcome),
            () = sleep_until(self.deadline),
                if matches!(self.phase, Phase::Opening | Phase::Lingering) => Event::Deadline,
        }
    }

    fn on_event(&mut self, event: Event) -> Result<(), SpdyError> {
        match event {
            Event::Read(Ok(0)) => {
                self.read_closed = true;
                if self.phase == Phase::Opening {
                    return Err(SpdyError::Closed);
                }
                match self.phase {
                    // What is queued may still reach a client that only
                    // closed its sending side.
                    Phase::Draining => {}
                    Phase::Running => {
                        tracing::debug!("client closed the connection");
                        self.phase = Phase::Done;
                    }
                    _ => self.phase = Phase::Done,
                }
            }
            Event::Read(Ok(_)) => {}
            Event::Read(Err(e)) | Event::Wrote(Err(e)) => {
                if self.phase == Phase::Opening {
                    use std::io::ErrorKind::{BrokenPipe, ConnectionReset, UnexpectedEof};
                    return Err(match e.kind() {
                        BrokenPipe | ConnectionReset | UnexpectedEof => SpdyError::Closed,
                        _ => SpdyError::Io(e),
                    });
                }
                tracing::debug!(error = %e, "SPDY connection failed");
                self.phase = Phase::Done;
            }
            Event::Wrote(Ok(0)) => self.phase = Phase::Done,
            Event::Wrote(Ok(_)) => {}
            Event::StdinDelivered { stream_id, len } => self.consumed(stream_id, len),
            Event::StdinGone => {
                // The process stopped reading stdin: discard what is queued.
                self.stdin = None;
                for (stream_id, data) in std::mem::take(&mut self.stdin_pending) {
                    self.consumed(stream_id, data.len() as u32);
                }
            }
            Event::ResizeDelivered => {}
            Event::ResizeGone => {
                self.resize = None;
                self.resize_pending.clear();
            }
            Event::Output(role, Some(data)) => {
                let discard = self.stream_of(role).is_none_or(|s| s.local_closed);
                if !discard {
                    self.output(role).pending = data;
                    self.send_output(role);
                }
            }
            Event::Output(role, None) => self.output(role).rx = None,
            Event::Outcome(outcome) => self.finish(&outcome),
            Event::Deadline => {
                if self.phase == Phase::Opening {
                    return Err(SpdyError::Timeout);
                }
                self.phase = Phase::Done;
            }
        }
        Ok(())
    }

    fn on_frame(&mut self, frame: Frame) -> Result<(), SpdyError> {
        if self.phase == Phase::Lingering {
            return Ok(());
        }
        match frame {
            Frame::SynStream {
                stream_id,
                fin,
                headers,
                ..
            } => self.open_stream(stream_id, fin, header(&headers, "streamtype")),
            Frame::Data {
                stream_id,
                fin,
                data,
            } => self.on_data(stream_id, fin, data),
            Frame::RstStream { stream_id, .. } => self.on_reset(stream_id),
            Frame::WindowUpdate { stream_id, delta } => {
                self.enforce_windows = true;
                if stream_id == 0 {
                    self.conn_send_window += i64::from(delta);
                } else if let Some(s) = self.streams.iter_mut().find(|s| s.id == stream_id) {
                    s.send_window += i64::from(delta);
                }
            }
            Frame::Settings { entries } => {
                for e in entries {
                    if e.id == SETTINGS_INITIAL_WINDOW_SIZE {
                        self.enforce_windows = true;
                        let window = i64::from(e.value & 0x7fff_ffff);
                        let delta = window - self.initial_window;
                        self.initial_window = window;
                        for s in &mut self.streams {
                            s.send_window += delta;
                        }
                    }
                }
            }
            // Odd ids are the client's pings; even ones would answer ours.
            Frame::Ping { id } if !id.is_multiple_of(2) => self.queue(&Frame::Ping { id }),
            Frame::GoAway { .. } if self.phase == Phase::Opening => {
                return Err(SpdyError::Closed);
            }
            Frame::Ping { .. }
            | Frame::GoAway { .. }
            | Frame::SynReply { .. }
            | Frame::Headers { .. }
            | Frame::Unknown { .. } => {}
        }
        Ok(())
    }

    fn open_stream(&mut self, stream_id: u32, fin: bool, stream_type: Option<&str>) {
        if stream_id.is_multiple_of(2) || stream_id <= self.last_stream_id {
            self.reset(stream_id, rst::PROTOCOL_ERROR);
            return;
        }
        self.last_stream_id = stream_id;
        if self.phase != Phase::Opening {
            // The session's streams are all there; upstream stops listening.
            self.reset(stream_id, rst::REFUSED_STREAM);
            return;
        }
        let role = stream_type.and_then(|t| Role::from_stream_type(t, self.version));
        // Only the first stream of each expected role carries it; others
        // (types not asked for, duplicates) are answered and ignored.
        let role = role.filter(|r| self.missing.contains(r));
        if role.is_none() {
            tracing::debug!(stream_id, ?stream_type, "ignoring unexpected stream");
        }
        self.missing.retain(|r| Some(*r) != role);
        self.streams.push(Stream {
            id: stream_id,
            role,
            send_window: self.initial_window,
            unacked: 0,
            remote_closed: fin,
            local_closed: false,
        });
        self.queue(&Frame::SynReply {
            stream_id,
            fin: false,
            headers: Vec::new(),
        });
        if fin {
            self.remote_finished(role);
        }
        if self.missing.is_empty() {
            self.phase = Phase::Running;
            if self.version == Version::V1 {
                // As 1.0 kubelets (upstream's v1 handler keeps this): the
                // server half of stdin is closed and the error stream reset
                // as soon as the streams are set up.
                self.close_stream(Role::Stdin);
                if let Some(id) = self.stream_of(Role::Error).map(|s| s.id) {
                    self.reset(id, rst::CANCEL);
                }
            }
        }
    }

    fn on_data(&mut self, stream_id: u32, fin: bool, data: Bytes) {
        let Some(stream) = self.streams.iter_mut().find(|s| s.id == stream_id) else {
            // Data for a stream that is gone (or never was): only the
            // connection window cares.
            self.consumed(0, data.len() as u32);
            return;
        };
        let role = stream.role;
        let open = !stream.remote_closed;
        stream.remote_closed |= fin;
        let len = data.len() as u32;
        match role {
            Some(Role::Stdin) if open && self.stdin.is_some() && !data.is_empty() => {
                // Acknowledged once the process has it.
                self.stdin_pending.push_back((stream_id, data));
            }
            Some(Role::Resize) if open => {
                self.on_resize_data(&data);
                self.consumed(stream_id, len);
            }
            _ => self.consumed(stream_id, len),
        }
        if fin && open {
            self.remote_finished(role);
        }
    }

    fn remote_finished(&mut self, role: Option<Role>) {
        match role {
            Some(Role::Stdin) => self.stdin_fin = true,
            Some(Role::Resize) => self.resize_fin = true,
            _ => {}
        }
    }

    fn on_reset(&mut self, stream_id: u32) {
        let Some(stream) = self.streams.iter_mut().find(|s| s.id == stream_id) else {
            return;
        };
        stream.remote_closed = true;
        stream.local_closed = true;
        match stream.role {
            Some(Role::Stdin) => {
                self.stdin = None;
                self.stdin_pending.clear();
            }
            Some(Role::Resize) => {
                self.resize = None;
                self.resize_pending.clear();
            }
            Some(role @ (Role::Stdout | Role::Stderr)) => self.output(role).pending = Bytes::new(),
            Some(Role::Error) | None => {}
        }
    }

    /// Decodes the resize stream: JSON terminal sizes back to back, framed
    /// by nothing but the JSON itself.
    fn on_resize_data(&mut self, data: &[u8]) {
        if self.resize.is_none() {
            return;
        }
        self.resize_buffer.extend_from_slice(data);
        let mut sizes =
            serde_json::Deserializer::from_slice(&self.resize_buffer).into_iter::<TermSize>();
        let mut failed = false;
        for size in sizes.by_ref() {
            match size {
                Ok(size) => {
                    if self.resize_pending.len() >= MAX_PENDING_RESIZES {
                        self.resize_pending.pop_back();
                    }
                    self.resize_pending.push_back(size);
                }
                Err(e) => {
                    failed = !e.is_eof();
                    break;
                }
            }
        }
        let used = sizes.byte_offset();
        self.resize_buffer.drain(..used);
        if failed || self.resize_buffer.len() > MAX_RESIZE_BUFFER {
            // As upstream: a message that does not decode ends the resizes.
            tracing::debug!("invalid terminal size on the resize stream");
            self.resize_fin = true;
            self.resize_buffer = Vec::new();
        }
    }

    /// Bytes of `stream_id` (0: of a stream we no longer track) were
    /// consumed: acknowledge them when enough have gathered.
    fn consumed(&mut self, stream_id: u32, len: u32) {
        self.conn_unacked = self.conn_unacked.saturating_add(len);
        if let Some(stream) = self.streams.iter_mut().find(|s| s.id == stream_id) {
            stream.unacked = stream.unacked.saturating_add(len);
            if stream.unacked >= ACK_THRESHOLD && !stream.remote_closed {
                let delta = std::mem::take(&mut stream.unacked);
                self.queue(&Frame::WindowUpdate { stream_id, delta });
            }
        }
        if self.conn_unacked >= ACK_THRESHOLD {
            let delta = std::mem::take(&mut self.conn_unacked);
            self.queue(&Frame::WindowUpdate {
                stream_id: 0,
                delta,
            });
        }
    }

    /// Queues as much of `role`'s pending output as the windows allow.
    fn send_output(&mut self, role: Role) {
        let Some(index) = self.streams.iter().position(|s| s.role == Some(role)) else {
            self.output(role).pending = Bytes::new();
            return;
        };
        while !self.output(role).pending.is_empty() {
            let (local_closed, send_window) = (
                self.streams[index].local_closed,
                self.streams[index].send_window,
            );
            if local_closed {
                self.output(role).pending = Bytes::new();
                return;
            }
            let mut len = self.output(role).pending.len().min(MAX_DATA_FRAME);
            if self.enforce_windows {
                let window = send_window.min(self.conn_send_window);
                len = len.min(usize::try_from(window).unwrap_or(0));
                if len == 0 {
                    return;
                }
            }
            let data = self.output(role).pending.split_to(len);
            // Windows are counted even when not enforced, so they are right
            // if the client starts sending WINDOW_UPDATE later.
            self.streams[index].send_window -= len as i64;
            self.conn_send_window -= len as i64;
            let stream_id = self.streams[index].id;
            self.queue(&Frame::Data {
                stream_id,
                fin: false,
                data,
            });
        }
    }

    /// The session has ended: report `outcome` on the error stream, close
    /// every stream and the connection.
    fn finish(&mut self, outcome: &Outcome) {
        self.finish = None;
        if let Some(payload) = outcome.error_payload(self.version)
            && let Some(stream) = self.stream_of(Role::Error).filter(|s| !s.local_closed)
        {
            let stream_id = stream.id;
            for chunk in payload.chunks(MAX_DATA_FRAME) {
                self.queue(&Frame::Data {
                    stream_id,
                    fin: false,
                    data: Bytes::copy_from_slice(chunk),
                });
            }
        }
        for role in [
            Role::Error,
            Role::Stdout,
            Role::Stderr,
            Role::Stdin,
            Role::Resize,
        ] {
            self.close_stream(role);
        }
        let last_good_stream_id = self.last_stream_id;
        self.queue(&Frame::GoAway {
            last_good_stream_id,
            status: 0,
        });
        // The process is done with its input.
        self.stdin = None;
        self.stdin_pending.clear();
        self.resize = None;
        self.resize_pending.clear();
        self.phase = Phase::Draining;
    }

    /// Sends FIN on `role`'s stream unless our half is closed already.
    fn close_stream(&mut self, role: Role) {
        if let Some(stream) = self
            .streams
            .iter_mut()
            .find(|s| s.role == Some(role) && !s.local_closed)
        {
            stream.local_closed = true;
            let stream_id = stream.id;
            self.queue(&Frame::Data {
                stream_id,
                fin: true,
                data: Bytes::new(),
            });
        }
    }

    fn reset(&mut self, stream_id: u32, status: u32) {
        if let Some(stream) = self.streams.iter_mut().find(|s| s.id == stream_id) {
            stream.local_closed = true;
            stream.remote_closed = true;
        }
        self.queue(&Frame::RstStream { stream_id, status });
    }

    fn stream_of(&self, role: Role) -> Option<&Stream> {
        self.streams.iter().find(|s| s.role == Some(role))
    }

    fn output(&mut self, role: Role) -> &mut Output {
        if role == Role::Stderr {
            &mut self.stderr
        } else {
            &mut self.stdout
        }
    }

    fn queue(&mut self, frame: &Frame) {
        if let Err(e) = self.encoder.encode(frame, &mut self.outbuf) {
            // Only oversized frames fail, and we never build those.
            tracing::warn!(error = %e, "dropping an unencodable SPDY frame");
        }
    }
}

async fn reserve<T>(tx: Option<&mpsc::Sender<T>>) -> Option<mpsc::Permit<'_, T>> {
    match tx {
        Some(tx) => tx.reserve().await.ok(),
        None => None,
    }
}

async fn recv<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn outcome(finish: &mut Option<OutcomeFuture>) -> Outcome {
    match finish {
        Some(finish) => finish.await,
        None => std::future::pending().await,
    }
}
