//! SPDY/3.1 framing: the frame layout, header blocks, and their zlib
//! compression with the SPDY/3 preset dictionary.
//!
//! Header blocks are compressed with one zlib stream per direction for the
//! whole connection, each block ending in a sync flush; so a [`Decoder`] and
//! an [`Encoder`] live as long as the connection and see every frame in order.

use std::sync::LazyLock;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The protocol version in every control frame.
pub(crate) const VERSION: u16 = 3;

/// The largest payload a frame length (24 bits) can carry.
pub(crate) const MAX_PAYLOAD: usize = 0x00ff_ffff;

/// The largest decompressed header block we accept; remotecommand clients
/// send one short header.
const MAX_HEADER_BLOCK: usize = 256 * 1024;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// FLAG_FIN on data, SYN_STREAM, SYN_REPLY and HEADERS frames.
const FLAG_FIN: u8 = 0x01;
/// FLAG_UNIDIRECTIONAL on SYN_STREAM.
const FLAG_UNIDIRECTIONAL: u8 = 0x02;

/// RST_STREAM status codes (SPDY/3 section 2.6.3).
pub(crate) mod rst {
    /// PROTOCOL_ERROR.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// REFUSED_STREAM.
    pub const REFUSED_STREAM: u32 = 3;
    /// CANCEL.
    pub const CANCEL: u32 = 5;
}

/// SETTINGS_INITIAL_WINDOW_SIZE.
pub(crate) const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;

/// A header block: lower-case names, values (several joined by NUL).
pub(crate) type Headers = Vec<(String, String)>;

/// One SETTINGS entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Setting {
    pub flags: u8,
    pub id: u32,
    pub value: u32,
}

/// A SPDY/3.1 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        fin: bool,
        unidirectional: bool,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        entries: Vec<Setting>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
    /// A control frame of a type we do not know; the spec says to ignore it.
    Unknown {
        frame_type: u16,
    },
}

/// A framing error; the connection cannot go on after one.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// A control frame with a version other than 3.
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    /// A frame whose payload does not match its type.
    #[error("malformed {0} frame")]
    Malformed(&'static str),
    /// A header block that does not decompress or parse.
    #[error("invalid header block: {0}")]
    HeaderBlock(String),
}

/// The SPDY/3 header compression dictionary (SPDY/3 draft, section 2.6.10.1):
/// length-prefixed common header names and values, then a run of common
/// value fragments.
pub(crate) static DICTIONARY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    const WORDS: &[&str] = &[
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ];
    const TAIL: &str = concat!(
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
        "203 Non-Authoritative Information",
        "204 No Content",
        "301 Moved Permanently",
        "400 Bad Request",
        "401 Unauthorized",
        "403 Forbidden",
        "404 Not Found",
        "500 Internal Server Error",
        "501 Not Implemented",
        "503 Service Unavailable",
        "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec",
        " 00:00:00",
        " Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
        "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,",
        "text/plain,text/javascript,public",
        "private",
        "max-age=",
        "gzip,deflate,sdch",
        "charset=utf-8",
        "charset=iso-8859-1,utf-,*,enq=0.",
    );
    let mut dict = Vec::with_capacity(1423);
    for word in WORDS {
        dict.extend_from_slice(&(word.len() as u32).to_be_bytes());
        dict.extend_from_slice(word.as_bytes());
    }
    dict.extend_from_slice(TAIL.as_bytes());
    dict
});

/// Reads frames from the peer, inflating header blocks.
pub(crate) struct Decoder {
    inflate: Decompress,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            inflate: Decompress::new(true),
        }
    }
}

impl Decoder {
    /// The next whole frame in `buf` (consumed from it), or `None` when
    /// `buf` holds only part of one.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let len = (u32::from_be_bytes([0, buf[5], buf[6], buf[7]])) as usize;
        if buf.len() < 8 + len {
            return Ok(None);
        }
        let first = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let flags = buf[4];
        buf.advance(8);
        let mut payload = buf.split_to(len).freeze();
        let fin = flags & FLAG_FIN != 0;
        if first & 0x8000_0000 == 0 {
            return Ok(Some(Frame::Data {
                stream_id: first & 0x7fff_ffff,
                fin,
                data: payload,
            }));
        }
        let version = ((first >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        let frame_type = (first & 0xffff) as u16;
        let frame = match frame_type {
            TYPE_SYN_STREAM => {
                if payload.len() < 10 {
                    return Err(FrameError::Malformed("SYN_STREAM"));
                }
                let stream_id = payload.get_u32() & 0x7fff_ffff;
                let associated_to = payload.get_u32() & 0x7fff_ffff;
                let priority = payload.get_u8() >> 5;
                payload.advance(1); // slot
                Frame::SynStream {
                    stream_id,
                    associated_to,
                    priority,
                    fin,
                    unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                    headers: self.header_block(&payload)?,
                }
            }
            TYPE_SYN_REPLY | TYPE_HEADERS => {
                if payload.len() < 4 {
                    return Err(FrameError::Malformed("SYN_REPLY"));
                }
                let stream_id = payload.get_u32() & 0x7fff_ffff;
                let headers = self.header_block(&payload)?;
                if frame_type == TYPE_SYN_REPLY {
                    Frame::SynReply {
                        stream_id,
                        fin,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        fin,
                        headers,
                    }
                }
            }
            TYPE_RST_STREAM | TYPE_GOAWAY | TYPE_WINDOW_UPDATE => {
                if payload.len() != 8 {
                    return Err(FrameError::Malformed("RST_STREAM/GOAWAY/WINDOW_UPDATE"));
                }
                let id = payload.get_u32() & 0x7fff_ffff;
                let value = payload.get_u32();
                match frame_type {
                    TYPE_RST_STREAM => Frame::RstStream {
                        stream_id: id,
                        status: value,
                    },
                    TYPE_GOAWAY => Frame::GoAway {
                        last_good_stream_id: id,
                        status: value,
                    },
                    _ => Frame::WindowUpdate {
                        stream_id: id,
                        delta: value & 0x7fff_ffff,
                    },
                }
            }
            TYPE_SETTINGS => {
                if payload.len() < 4 {
                    return Err(FrameError::Malformed("SETTINGS"));
                }
                let count = payload.get_u32() as usize;
                if payload.len() != count.saturating_mul(8) {
                    return Err(FrameError::Malformed("SETTINGS"));
                }
                let entries = (0..count)
                    .map(|_| {
                        let flags_id = payload.get_u32();
                        Setting {
                            flags: (flags_id >> 24) as u8,
                            id: flags_id & 0x00ff_ffff,
                            value: payload.get_u32(),
                        }
                    })
                    .collect();
                Frame::Settings { entries }
            }
            TYPE_PING => {
                if payload.len() != 4 {
                    return Err(FrameError::Malformed("PING"));
                }
                Frame::Ping {
                    id: payload.get_u32(),
                }
            }
            other => Frame::Unknown { frame_type: other },
        };
        Ok(Some(frame))
    }

    /// Inflates and parses one header block; the zlib stream carries on
    /// from the previous block.
    fn header_block(&mut self, compressed: &[u8]) -> Result<Headers, FrameError> {
        let mut out = Vec::with_capacity(256);
        let mut consumed = 0;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(FrameError::HeaderBlock("too large".into()));
                }
                out.reserve(out.len());
            }
            let (before_in, before_out) = (self.inflate.total_in(), out.len());
            let result = self.inflate.decompress_vec(
                &compressed[consumed..],
                &mut out,
                FlushDecompress::Sync,
            );
            consumed += (self.inflate.total_in() - before_in) as usize;
            match result {
                Ok(Status::Ok | Status::BufError) => {
                    // Done once all input is in and zlib had room to spare.
                    if consumed == compressed.len() && out.len() < out.capacity() {
                        break;
                    }
                    if self.inflate.total_in() == before_in
                        && out.len() == before_out
                        && out.len() < out.capacity()
                    {
                        return Err(FrameError::HeaderBlock("truncated".into()));
                    }
                }
                Ok(Status::StreamEnd) => break,
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(&DICTIONARY)
                        .map_err(|e| FrameError::HeaderBlock(e.to_string()))?;
                }
                Err(e) => return Err(FrameError::HeaderBlock(e.to_string())),
            }
        }
        parse_header_block(&out)
    }
}

/// Parses a decompressed header block.
fn parse_header_block(mut block: &[u8]) -> Result<Headers, FrameError> {
    fn take<'a>(block: &mut &'a [u8]) -> Result<&'a [u8], FrameError> {
        if block.len() < 4 {
            return Err(FrameError::HeaderBlock("truncated".into()));
        }
        let len = block.get_u32() as usize;
        if block.len() < len {
            return Err(FrameError::HeaderBlock("truncated".into()));
        }
        let (field, rest) = block.split_at(len);
        *block = rest;
        Ok(field)
    }
    if block.len() < 4 {
        return Err(FrameError::HeaderBlock("truncated".into()));
    }
    let count = block.get_u32() as usize;
    let mut headers = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let name = take(&mut block)?;
        let value = take(&mut block)?;
        headers.push((
            String::from_utf8_lossy(name).to_ascii_lowercase(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
    Ok(headers)
}

/// The first value of header `name` (values may hold several, NUL-separated).
pub(crate) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v.split('\0').next())
}

/// Writes frames to the peer, deflating header blocks.
pub(crate) struct Encoder {
    deflate: Compress,
}

impl Default for Encoder {
    fn default() -> Self {
        let mut deflate = Compress::new(Compression::default(), true);
        // Setting the dictionary on a fresh stream cannot fail.
        let _ = deflate.set_dictionary(&DICTIONARY);
        Encoder { deflate }
    }
}

impl Encoder {
    /// Appends `frame` to `out`. Data frames larger than [`MAX_PAYLOAD`]
    /// must be split by the caller.
    pub(crate) fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), FrameError> {
        match frame {
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                if data.len() > MAX_PAYLOAD {
                    return Err(FrameError::Malformed("DATA"));
                }
                out.put_u32(stream_id & 0x7fff_ffff);
                put_flags_len(out, flag(*fin, FLAG_FIN), data.len());
                out.put_slice(data);
            }
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                fin,
                unidirectional,
                headers,
            } => {
                let block = self.header_block(headers)?;
                put_control(
                    out,
                    TYPE_SYN_STREAM,
                    flag(*fin, FLAG_FIN) | flag(*unidirectional, FLAG_UNIDIRECTIONAL),
                    10 + block.len(),
                );
                out.put_u32(*stream_id);
                out.put_u32(*associated_to);
                out.put_u8(priority << 5);
                out.put_u8(0);
                out.put_slice(&block);
            }
            Frame::SynReply {
                stream_id,
                fin,
                headers,
            }
            | Frame::Headers {
                stream_id,
                fin,
                headers,
            } => {
                let block = self.header_block(headers)?;
                let frame_type = if matches!(frame, Frame::SynReply { .. }) {
                    TYPE_SYN_REPLY
                } else {
                    TYPE_HEADERS
                };
                put_control(out, frame_type, flag(*fin, FLAG_FIN), 4 + block.len());
                out.put_u32(*stream_id);
                out.put_slice(&block);
            }
            Frame::RstStream { stream_id, status } => {
                put_control(out, TYPE_RST_STREAM, 0, 8);
                out.put_u32(*stream_id);
                out.put_u32(*status);
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                put_control(out, TYPE_GOAWAY, 0, 8);
                out.put_u32(*last_good_stream_id);
                out.put_u32(*status);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                put_control(out, TYPE_WINDOW_UPDATE, 0, 8);
                out.put_u32(*stream_id);
                out.put_u32(*delta);
            }
            Frame::Settings { entries } => {
                put_control(out, TYPE_SETTINGS, 0, 4 + 8 * entries.len());
                out.put_u32(entries.len() as u32);
                for e in entries {
                    out.put_u32((u32::from(e.flags) << 24) | (e.id & 0x00ff_ffff));
                    out.put_u32(e.value);
                }
            }
            Frame::Ping { id } => {
                put_control(out, TYPE_PING, 0, 4);
                out.put_u32(*id);
            }
            Frame::Unknown { frame_type } => put_control(out, *frame_type, 0, 0),
        }
        Ok(())
    }

    /// Serialises and deflates a header block, ending in a sync flush.
    fn header_block(&mut self, headers: &Headers) -> Result<Vec<u8>, FrameError> {
        let mut raw = Vec::new();
        raw.put_u32(headers.len() as u32);
        for (name, value) in headers {
            let name = name.to_ascii_lowercase();
            raw.put_u32(name.len() as u32);
            raw.put_slice(name.as_bytes());
            raw.put_u32(value.len() as u32);
            raw.put_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut consumed = 0;
        loop {
            if out.len() == out.capacity() {
                out.reserve(64);
            }
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(&raw[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| FrameError::HeaderBlock(e.to_string()))?;
            consumed += (self.deflate.total_in() - before) as usize;
            // The flush is complete once all input is in and zlib had room left.
            if consumed == raw.len() && out.len() < out.capacity() {
                break;
            }
        }
        if out.len() + 10 > MAX_PAYLOAD {
            return Err(FrameError::HeaderBlock("too large".into()));
        }
        Ok(out)
    }
}

fn flag(on: bool, bit: u8) -> u8 {
    if on { bit } else { 0 }
}

fn put_flags_len(out: &mut BytesMut, flags: u8, len: usize) {
    out.put_u32((u32::from(flags) << 24) | (len as u32 & 0x00ff_ffff));
}

fn put_control(out: &mut BytesMut, frame_type: u16, flags: u8, len: usize) {
    out.put_u16(0x8000 | VERSION);
    out.put_u16(frame_type);
    put_flags_len(out, flags, len);
}
