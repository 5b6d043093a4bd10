//! SPDY/3.1 port-forward driver (`portforward.k8s.io`).
//!
//! The client opens streams in pairs: `streamtype: error` then `streamtype:
//! data`, both with the pod's `port` and a shared `requestid`. Once both
//! exist the server connects to the port inside the pod and copies bytes
//! between the data stream and that connection; a failure is written as
//! text on the error stream. When the pod's side of the connection ends,
//! both streams are closed (FIN); when the client closes its half of the
//! data stream, the pod's connection is shut down for writing and still read
//! to its end. Many pairs share one connection, each handled by its own
//! task; the connection loop owns the socket and the SPDY framing.
//!
//! Flow control: received data is acknowledged (WINDOW_UPDATE) as it is
//! handed to the pod; sending ignores the client's windows, as spdystream
//! (kubectl's SPDY library) does.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use super::PodDialer;
use crate::stream::CHANNEL_DEPTH;
use crate::stream::spdy::STREAM_CREATION_TIMEOUT;
use crate::stream::spdy::frame::{Decoder, Encoder, Frame, header, rst};

/// Received bytes are acknowledged in batches of this size.
const ACK_THRESHOLD: u32 = 32 * 1024;
/// The largest DATA frame we send (and the pod read size).
const MAX_DATA_FRAME: usize = 32 * 1024;
/// Stop taking pod output while this much is queued for the socket.
const HIGH_WATER: usize = 256 * 1024;
/// Stop reading the socket while this much is queued for it.
const OUT_LIMIT: usize = 4 * HIGH_WATER;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Data,
    Error,
}

/// A stream the client opened.
#[derive(Debug)]
struct Stream {
    kind: Kind,
    request_id: String,
    /// Delivers the client's data to the pair's task (data streams, once
    /// the pair runs; dropped at the client's FIN).
    to_pod: Option<mpsc::Sender<Bytes>>,
    unacked: u32,
    remote_closed: bool,
    local_closed: bool,
}

/// The two streams of one forwarded connection.
#[derive(Debug)]
struct Pair {
    port: u16,
    data: Option<u32>,
    error: Option<u32>,
    deadline: Instant,
    started: bool,
    /// The client's data for the pair's task, until it starts.
    from_client: Option<mpsc::Receiver<Bytes>>,
}

/// What a pair's task asks the connection to send.
#[derive(Debug)]
enum Out {
    Data(u32, Bytes),
    Fin(u32),
}

/// A validated SYN_STREAM.
struct NewStream {
    kind: Kind,
    port: u16,
    request_id: String,
}

/// Upstream's checks on a new stream's headers; the error text is logged
/// and the stream reset.
fn check_stream(stream_id: u32, headers: &[(String, String)]) -> Result<NewStream, String> {
    let port = header(headers, "port").unwrap_or_default();
    if port.is_empty() {
        return Err("\"port\" header is required".into());
    }
    let port: u16 = port
        .parse()
        .map_err(|e| format!("unable to parse {port:?} as a port: {e}"))?;
    if port < 1 {
        return Err(format!("port \"{port}\" must be > 0"));
    }
    let kind = match header(headers, "streamtype").unwrap_or_default() {
        "error" => Kind::Error,
        "data" => Kind::Data,
        "" => return Err("\"streamType\" header is required".into()),
        other => return Err(format!("invalid stream type {other:?}")),
    };
    // Old clients sent no request ID: the error stream's ID names the pair
    // and the data stream follows it (upstream's fallback).
    let request_id = match header(headers, "requestid") {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => match kind {
            Kind::Error => stream_id.to_string(),
            Kind::Data => stream_id.saturating_sub(2).to_string(),
        },
    };
    Ok(NewStream {
        kind,
        port,
        request_id,
    })
}

/// Serves one upgraded connection until the client closes it.
#[tracing::instrument(skip_all)]
pub async fn serve<I>(io: I, dialer: Arc<dyn PodDialer>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (out_tx, out_rx) = mpsc::channel(CHANNEL_DEPTH);
    let (rd, wr) = tokio::io::split(io);
    let mut conn = Conn {
        rd,
        wr,
        inbuf: BytesMut::with_capacity(16 * 1024),
        outbuf: BytesMut::with_capacity(16 * 1024),
        decoder: Decoder::default(),
        encoder: Encoder::default(),
        streams: HashMap::new(),
        pairs: HashMap::new(),
        last_stream_id: 0,
        conn_unacked: 0,
        pending: VecDeque::new(),
        out_tx,
        out_rx,
        dialer,
        done: false,
    };
    if let Err(err) = conn.run().await {
        tracing::debug!(error = %err, "port-forward connection ended");
    }
}

struct Conn<I> {
    rd: ReadHalf<I>,
    wr: WriteHalf<I>,
    inbuf: BytesMut,
    outbuf: BytesMut,
    decoder: Decoder,
    encoder: Encoder,
    streams: HashMap<u32, Stream>,
    pairs: HashMap<String, Pair>,
    last_stream_id: u32,
    conn_unacked: u32,
    /// Client data (or, as `None`, its FIN) not yet taken by the pair's task.
    pending: VecDeque<(u32, Option<Bytes>)>,
    out_tx: mpsc::Sender<Out>,
    out_rx: mpsc::Receiver<Out>,
    dialer: Arc<dyn PodDialer>,
    done: bool,
}

enum Event {
    Read(std::io::Result<usize>),
    Wrote(std::io::Result<usize>),
    Delivered(Option<mpsc::OwnedPermit<Bytes>>),
    Out(Option<Out>),
    Deadline,
}

impl<I> Conn<I>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn run(&mut self) -> Result<(), crate::stream::spdy::SpdyError> {
        while !self.done {
            // Decode until data waits for its pair's task or the input runs
            // out. FINs settle as they come: frames behind one may already
            // be here, with no read to come.
            loop {
                self.settle_fins();
                if !self.pending.is_empty() {
                    break;
                }
                match self.decoder.decode(&mut self.inbuf)? {
                    Some(frame) => self.on_frame(frame),
                    None => break,
                }
            }
            if self.done {
                break;
            }
            let event = self.next_event().await;
            match event {
                Event::Read(Ok(0)) | Event::Wrote(Ok(0)) => self.done = true,
                Event::Read(Ok(_)) | Event::Wrote(Ok(_)) => {}
                Event::Read(Err(e)) | Event::Wrote(Err(e)) => return Err(e.into()),
                Event::Delivered(permit) => self.deliver(permit),
                Event::Out(Some(out)) => self.on_out(out),
                // We hold a sender ourselves: the channel never closes.
                Event::Out(None) => self.done = true,
                Event::Deadline => self.expire(),
            }
        }
        let _ = self.wr.write_all(&self.outbuf).await;
        let _ = self.wr.shutdown().await;
        Ok(())
    }

    async fn next_event(&mut self) -> Event {
        let front_tx = self
            .pending
            .front()
            .and_then(|(id, _)| self.streams.get(id))
            .and_then(|s| s.to_pod.clone());
        let deadline = self
            .pairs
            .values()
            .filter(|p| !p.started)
            .map(|p| p.deadline)
            .min();
        tokio::select! {
            r = self.wr.write_buf(&mut self.outbuf), if !self.outbuf.is_empty() => Event::Wrote(r),
            r = self.rd.read_buf(&mut self.inbuf),
                if self.pending.is_empty() && self.outbuf.len() < OUT_LIMIT => Event::Read(r),
            permit = async {
                match front_tx {
                    Some(tx) => tx.reserve_owned().await.ok(),
                    None => None,
                }
            }, if !self.pending.is_empty() => Event::Delivered(permit),
            out = self.out_rx.recv(), if self.outbuf.len() < HIGH_WATER => Event::Out(out),
            () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                Event::Deadline
            }
        }
    }

    /// Hands the front of `pending` to its pair's task (or drops what is
    /// queued for a task that has gone).
    fn deliver(&mut self, permit: Option<mpsc::OwnedPermit<Bytes>>) {
        let Some((stream_id, Some(data))) = self.pending.pop_front() else {
            return;
        };
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        match permit {
            Some(permit) => {
                permit.send(data);
            }
            None => {
                if let Some(s) = self.streams.get_mut(&stream_id) {
                    s.to_pod = None;
                }
            }
        }
        self.consumed(stream_id, len);
    }

    /// Applies FINs at the front of `pending` (they need no permit).
    fn settle_fins(&mut self) {
        while let Some((stream_id, None)) = self.pending.front() {
            let stream_id = *stream_id;
            self.pending.pop_front();
            if let Some(s) = self.streams.get_mut(&stream_id) {
                s.to_pod = None;
            }
            self.forget_if_closed(stream_id);
        }
        // Data for streams without a receiver cannot be delivered.
        while let Some((stream_id, Some(_))) = self.pending.front() {
            let stream_id = *stream_id;
            if self
                .streams
                .get(&stream_id)
                .is_some_and(|s| s.to_pod.is_some())
            {
                break;
            }
            self.deliver(None);
        }
    }

    fn on_frame(&mut self, frame: Frame) {
        match frame {
            Frame::SynStream {
                stream_id,
                fin,
                headers,
                ..
            } => self.open_stream(stream_id, fin, &headers),
            Frame::Data {
                stream_id,
                fin,
                data,
            } => self.on_data(stream_id, fin, data),
            Frame::RstStream { stream_id, .. } => self.on_reset(stream_id),
            Frame::Ping { id } if !id.is_multiple_of(2) => self.queue(&Frame::Ping { id }),
            Frame::GoAway { .. } => self.done = true,
            Frame::Ping { .. }
            | Frame::SynReply { .. }
            | Frame::Settings { .. }
            | Frame::Headers { .. }
            | Frame::WindowUpdate { .. }
            | Frame::Unknown { .. } => {}
        }
    }

    fn open_stream(&mut self, stream_id: u32, fin: bool, headers: &[(String, String)]) {
        if stream_id.is_multiple_of(2) || stream_id <= self.last_stream_id {
            self.queue(&Frame::RstStream {
                stream_id,
                status: rst::PROTOCOL_ERROR,
            });
            return;
        }
        self.last_stream_id = stream_id;
        let new = match check_stream(stream_id, headers) {
            Ok(new) => new,
            Err(err) => {
                tracing::debug!(stream_id, error = %err, "port-forward stream rejected");
                self.queue(&Frame::RstStream {
                    stream_id,
                    status: rst::CANCEL,
                });
                return;
            }
        };
        let pair = self
            .pairs
            .entry(new.request_id.clone())
            .or_insert_with(|| Pair {
                port: new.port,
                data: None,
                error: None,
                deadline: Instant::now() + STREAM_CREATION_TIMEOUT,
                started: false,
                from_client: None,
            });
        let slot = match new.kind {
            Kind::Data => &mut pair.data,
            Kind::Error => &mut pair.error,
        };
        if slot.is_some() {
            tracing::debug!(stream_id, request_id = %new.request_id, "duplicate port-forward stream");
            self.queue(&Frame::RstStream {
                stream_id,
                status: rst::CANCEL,
            });
            return;
        }
        *slot = Some(stream_id);
        // Data may come before the pair is complete: it waits in the channel.
        let mut to_pod = None;
        if new.kind == Kind::Data && !fin {
            let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
            to_pod = Some(tx);
            pair.from_client = Some(rx);
        }
        self.streams.insert(
            stream_id,
            Stream {
                kind: new.kind,
                request_id: new.request_id.clone(),
                to_pod,
                unacked: 0,
                remote_closed: fin,
                local_closed: false,
            },
        );
        self.queue(&Frame::SynReply {
            stream_id,
            fin: false,
            headers: Vec::new(),
        });
        self.start_if_complete(&new.request_id);
    }

    fn start_if_complete(&mut self, request_id: &str) {
        let Some(pair) = self.pairs.get_mut(request_id) else {
            return;
        };
        let (Some(data_id), Some(error_id), false) = (pair.data, pair.error, pair.started) else {
            return;
        };
        pair.started = true;
        let port = pair.port;
        // A data stream opened with FIN sends nothing: a closed channel.
        let rx = pair
            .from_client
            .take()
            .unwrap_or_else(|| mpsc::channel(1).1);
        tokio::spawn(forward(
            self.dialer.clone(),
            port,
            data_id,
            error_id,
            rx,
            self.out_tx.clone(),
        ));
    }

    fn on_data(&mut self, stream_id: u32, fin: bool, data: Bytes) {
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let Some(stream) = self.streams.get_mut(&stream_id) else {
            self.consumed(0, len);
            return;
        };
        let open = !stream.remote_closed;
        stream.remote_closed |= fin;
        if open && stream.kind == Kind::Data && !data.is_empty() {
            // Acknowledged once the pair's task has it.
            self.pending.push_back((stream_id, Some(data)));
        } else {
            self.consumed(stream_id, len);
        }
        if fin && open {
            self.pending.push_back((stream_id, None));
        }
    }

    fn on_reset(&mut self, stream_id: u32) {
        if let Some(s) = self.streams.get_mut(&stream_id) {
            s.remote_closed = true;
            s.local_closed = true;
            s.to_pod = None;
        }
        self.forget_if_closed(stream_id);
    }

    fn on_out(&mut self, out: Out) {
        match out {
            Out::Data(stream_id, mut data) => {
                if self.streams.get(&stream_id).is_none_or(|s| s.local_closed) {
                    return;
                }
                while !data.is_empty() {
                    let chunk = data.split_to(data.len().min(MAX_DATA_FRAME));
                    self.queue(&Frame::Data {
                        stream_id,
                        fin: false,
                        data: chunk,
                    });
                }
            }
            Out::Fin(stream_id) => self.close(stream_id),
        }
    }

    /// Sends FIN on `stream_id` unless our half is closed already.
    fn close(&mut self, stream_id: u32) {
        let Some(s) = self.streams.get_mut(&stream_id) else {
            return;
        };
        if !s.local_closed {
            s.local_closed = true;
            self.queue(&Frame::Data {
                stream_id,
                fin: true,
                data: Bytes::new(),
            });
        }
        self.forget_if_closed(stream_id);
    }

    /// Drops a stream both sides have closed, and its pair with its last
    /// stream.
    fn forget_if_closed(&mut self, stream_id: u32) {
        let closed = self
            .streams
            .get(&stream_id)
            .is_some_and(|s| s.local_closed && s.remote_closed && s.to_pod.is_none())
            && !self.pending.iter().any(|(id, _)| *id == stream_id);
        if !closed {
            return;
        }
        let Some(s) = self.streams.remove(&stream_id) else {
            return;
        };
        if let Some(pair) = self.pairs.get(&s.request_id) {
            let other = match s.kind {
                Kind::Data => pair.error,
                Kind::Error => pair.data,
            };
            if other.is_none_or(|id| !self.streams.contains_key(&id)) {
                self.pairs.remove(&s.request_id);
            }
        }
    }

    /// Pairs whose second stream never came: upstream reports it on the
    /// error stream and closes what exists.
    fn expire(&mut self) {
        let now = Instant::now();
        let expired: Vec<String> = self
            .pairs
            .iter()
            .filter(|(_, p)| !p.started && p.deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for request_id in expired {
            let Some(pair) = self.pairs.get_mut(&request_id) else {
                continue;
            };
            pair.started = true;
            pair.from_client = None;
            let (data, error) = (pair.data, pair.error);
            if let Some(error_id) = error {
                let msg = format!("(request={request_id}) timed out waiting for streams");
                self.on_out(Out::Data(error_id, Bytes::from(msg)));
                self.close(error_id);
            }
            if let Some(data_id) = data {
                if let Some(s) = self.streams.get_mut(&data_id) {
                    s.to_pod = None;
                }
                self.close(data_id);
            }
        }
    }

    /// `len` bytes of `stream_id` (0: of one no longer tracked) were
    /// consumed: acknowledge them when enough have gathered.
    fn consumed(&mut self, stream_id: u32, len: u32) {
        self.conn_unacked = self.conn_unacked.saturating_add(len);
        let mut update = None;
        if let Some(s) = self.streams.get_mut(&stream_id) {
            s.unacked = s.unacked.saturating_add(len);
            if s.unacked >= ACK_THRESHOLD && !s.remote_closed {
                update = Some(std::mem::take(&mut s.unacked));
            }
        }
        if let Some(delta) = update {
            self.queue(&Frame::WindowUpdate { stream_id, delta });
        }
        if self.conn_unacked >= ACK_THRESHOLD {
            let delta = std::mem::take(&mut self.conn_unacked);
            self.queue(&Frame::WindowUpdate {
                stream_id: 0,
                delta,
            });
        }
        self.forget_if_closed(stream_id);
    }

    fn queue(&mut self, frame: &Frame) {
        if let Err(e) = self.encoder.encode(frame, &mut self.outbuf) {
            tracing::warn!(error = %e, "dropping an unencodable SPDY frame");
        }
    }
}

/// One forwarded connection: dial the pod, copy both ways until the pod's
/// side ends, then close both streams.
async fn forward(
    dialer: Arc<dyn PodDialer>,
    port: u16,
    data_id: u32,
    error_id: u32,
    from_client: mpsc::Receiver<Bytes>,
    out: mpsc::Sender<Out>,
) {
    super::pump(
        &*dialer,
        port,
        MAX_DATA_FRAME,
        from_client,
        &out,
        |chunk| Out::Data(data_id, chunk),
        |text| Out::Data(error_id, text),
    )
    .await;
    let _ = out.send(Out::Fin(data_id)).await;
    let _ = out.send(Out::Fin(error_id)).await;
}

#[cfg(test)]
#[path = "spdy_tests.rs"]
mod tests;
