//! Set and map elements as nf_tables netlink messages.
//!
//! `nft` spends about 5 µs of CPU parsing and evaluating each element of a
//! script, which dominates loading large maps (100,000 elements: half a
//! second). The elements are simple data, so they are encoded here instead
//! and sent as one nfnetlink batch (one transaction): `NFT_MSG_NEWSETELEM`
//! messages between `NFNL_MSG_BATCH_BEGIN` and `NFNL_MSG_BATCH_END`.
//!
//! Elements are given in nft's own text (`10.43.0.1 . tcp . 80`, `goto
//! chain`) with the set's field types, so callers and the fake keep one
//! notation. The layout must match what nft declared for the set: fields of
//! a concatenation each take a 4-byte register (values padded with zeros);
//! a single field keeps its natural size; integers are in network byte
//! order except `numgen` results, which are host order.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use super::NftError;

/// The type of one field of a set's key or of a map's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// `ipv4_addr` (`ip daddr`): 4 bytes, network order.
    Ipv4Addr,
    /// `inet_proto` (`meta l4proto`): 1 byte, by name (`tcp`) or number.
    InetProto,
    /// `inet_service` (`th dport`): 2 bytes, network order.
    InetService,
    /// A 32-bit integer in host order, as `numgen` produces.
    HostU32,
}

impl FieldType {
    fn size(self) -> usize {
        match self {
            FieldType::Ipv4Addr | FieldType::HostU32 => 4,
            FieldType::InetProto => 1,
            FieldType::InetService => 2,
        }
    }

    fn encode(self, text: &str, out: &mut Vec<u8>) -> Option<()> {
        match self {
            FieldType::Ipv4Addr => out.extend(text.parse::<Ipv4Addr>().ok()?.octets()),
            FieldType::InetProto => out.push(match text {
                "tcp" => 6,
                "udp" => 17,
                "sctp" => 132,
                other => other.parse().ok()?,
            }),
            FieldType::InetService => out.extend(text.parse::<u16>().ok()?.to_be_bytes()),
            FieldType::HostU32 => out.extend(text.parse::<u32>().ok()?.to_ne_bytes()),
        }
        Some(())
    }
}

/// What a set maps its keys to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetData {
    /// A plain set.
    None,
    /// A verdict map (`accept`, `drop`, `return`, `jump C`, `goto C`).
    Verdict,
    /// A map to values of these fields (a concatenation when more than one).
    Value(Vec<FieldType>),
}

/// A set's key fields and data: enough to encode its elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetType {
    /// Key fields (a concatenation when more than one).
    pub key: Vec<FieldType>,
    /// What the elements map to.
    pub data: SetData,
}

/// Elements to add to one set of a table of family `ip`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetElements<'a> {
    /// The set's name.
    pub set: String,
    /// Its type, as declared.
    pub set_type: SetType,
    /// `key` and, for maps, `value`, in nft's text syntax.
    pub elements: Vec<(&'a str, Option<&'a str>)>,
}

impl SetElements<'_> {
    /// The same elements as `add element` commands (at most 1,000 a line).
    pub fn to_script(&self, table: &str) -> String {
        let mut out = String::new();
        for chunk in self.elements.chunks(1000) {
            let _ = write!(out, "add element ip {table} {} {{ ", self.set);
            for (i, (key, value)) in chunk.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(key);
                if let Some(value) = value {
                    let _ = write!(out, " : {value}");
                }
            }
            out.push_str(" }\n");
        }
        out
    }
}

// Netlink and nf_tables constants (linux/netlink.h, linux/netfilter/nfnetlink.h,
// linux/netfilter/nf_tables.h).
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLA_F_NESTED: u16 = 0x8000;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFPROTO_IPV4: u8 = 2;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
const NF_DROP: i32 = 0;
const NF_ACCEPT: i32 = 1;
const NFT_JUMP: i32 = -3;
const NFT_GOTO: i32 = -4;
const NFT_RETURN: i32 = -5;
/// An attribute's length is 16 bits: the elements of one message stay well
/// below that.
const MAX_ELEMENTS_BYTES: usize = 60_000;

/// Encodes a key or value of `fields` from its text.
fn encode_fields(fields: &[FieldType], text: &str, out: &mut Vec<u8>) -> Option<()> {
    let mut parts = text.split(" . ").map(str::trim);
    for field in fields {
        let start = out.len();
        field.encode(parts.next()?, out)?;
        if fields.len() > 1 {
            // Each field of a concatenation fills a 32-bit register.
            let padded = field.size().div_ceil(4) * 4;
            out.resize(start + padded, 0);
        }
    }
    parts.next().is_none().then_some(())
}

fn verdict(text: &str) -> Option<(i32, Option<&str>)> {
    let mut words = text.split_whitespace();
    let verdict = match (words.next()?, words.next()) {
        ("accept", None) => (NF_ACCEPT, None),
        ("drop", None) => (NF_DROP, None),
        ("return", None) => (NFT_RETURN, None),
        ("jump", Some(chain)) => (NFT_JUMP, Some(chain)),
        ("goto", Some(chain)) => (NFT_GOTO, Some(chain)),
        _ => return None,
    };
    words.next().is_none().then_some(verdict)
}

/// A netlink message or attribute being written; lengths are patched when
/// it is closed.
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn begin_message(&mut self, kind: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend(0u32.to_ne_bytes()); // length, patched
        self.buf.extend(kind.to_ne_bytes());
        self.buf.extend(flags.to_ne_bytes());
        self.buf.extend(seq.to_ne_bytes());
        self.buf.extend(0u32.to_ne_bytes()); // port id: the kernel's
        // struct nfgenmsg
        self.buf.push(family);
        self.buf.push(0); // NFNETLINK_V0
        self.buf.extend(res_id.to_be_bytes());
        at
    }

    fn end_message(&mut self, at: usize) {
        let len = u32::try_from(self.buf.len() - at).unwrap_or(u32::MAX);
        self.buf[at..at + 4].copy_from_slice(&len.to_ne_bytes());
    }

    fn attr(&mut self, kind: u16, payload: &[u8]) {
        let len = u16::try_from(4 + payload.len()).unwrap_or(u16::MAX);
        self.buf.extend(len.to_ne_bytes());
        self.buf.extend(kind.to_ne_bytes());
        self.buf.extend(payload);
        self.pad();
    }

    fn attr_str(&mut self, kind: u16, s: &str) {
        let len = u16::try_from(4 + s.len() + 1).unwrap_or(u16::MAX);
        self.buf.extend(len.to_ne_bytes());
        self.buf.extend(kind.to_ne_bytes());
        self.buf.extend(s.as_bytes());
        self.buf.push(0);
        self.pad();
    }

    fn begin_nested(&mut self, kind: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend(0u16.to_ne_bytes());
        self.buf.extend((kind | NLA_F_NESTED).to_ne_bytes());
        at
    }

    fn end_nested(&mut self, at: usize) {
        let len = u16::try_from(self.buf.len() - at).unwrap_or(u16::MAX);
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn pad(&mut self) {
        let padded = self.buf.len().div_ceil(4) * 4;
        self.buf.resize(padded, 0);
    }
}

/// One encoded batch: the bytes to send, and which set each acknowledged
/// message (by sequence number, from `first_seq`) adds to.
#[derive(Debug)]
pub struct Batch {
    /// `BATCH_BEGIN`, the `NEWSETELEM` messages, `BATCH_END`.
    pub bytes: Vec<u8>,
    /// Sequence number of the first `NEWSETELEM` message.
    pub first_seq: u32,
    /// The set of each `NEWSETELEM` message, in order.
    pub sets: Vec<String>,
}

/// Encodes adding `sets`' elements to `table` (family `ip`) as one batch.
/// An element that does not parse as its set's type is an error naming it.
pub fn encode_batch(
    table: &str,
    sets: &[SetElements<'_>],
    first_seq: u32,
) -> Result<Batch, NftError> {
    let mut w = Writer {
        buf: Vec::with_capacity(64 + sets.iter().map(|s| s.elements.len() * 64).sum::<usize>()),
    };
    let mut seq = first_seq;
    let mut names = Vec::new();
    let begin = w.begin_message(
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        seq.wrapping_sub(1),
        0,
        NFNL_SUBSYS_NFTABLES,
    );
    w.end_message(begin);
    let mut key = Vec::with_capacity(16);
    let mut value = Vec::with_capacity(16);
    for set in sets {
        let mut pending = set.elements.iter().peekable();
        while pending.peek().is_some() {
            let msg = w.begin_message(
                (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM,
                NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK,
                seq,
                NFPROTO_IPV4,
                0,
            );
            w.attr_str(NFTA_SET_ELEM_LIST_TABLE, table);
            w.attr_str(NFTA_SET_ELEM_LIST_SET, &set.set);
            let list = w.begin_nested(NFTA_SET_ELEM_LIST_ELEMENTS);
            while let Some((k, v)) = pending.next_if(|_| w.buf.len() - list < MAX_ELEMENTS_BYTES) {
                let bad = || {
                    NftError::Netlink(format!(
                        "element {k:?} of {} does not fit its type",
                        set.set
                    ))
                };
                let elem = w.begin_nested(NFTA_LIST_ELEM);
                key.clear();
                encode_fields(&set.set_type.key, k, &mut key).ok_or_else(bad)?;
                let nest = w.begin_nested(NFTA_SET_ELEM_KEY);
                w.attr(NFTA_DATA_VALUE, &key);
                w.end_nested(nest);
                match (&set.set_type.data, v) {
                    (SetData::None, None) => {}
                    (SetData::Verdict, Some(v)) => {
                        let (code, chain) = verdict(v).ok_or_else(bad)?;
                        let data = w.begin_nested(NFTA_SET_ELEM_DATA);
                        let verdict = w.begin_nested(NFTA_DATA_VERDICT);
                        w.attr(NFTA_VERDICT_CODE, &code.to_be_bytes());
                        if let Some(chain) = chain {
                            w.attr_str(NFTA_VERDICT_CHAIN, chain);
                        }
                        w.end_nested(verdict);
                        w.end_nested(data);
                    }
                    (SetData::Value(fields), Some(v)) => {
                        value.clear();
                        encode_fields(fields, v, &mut value).ok_or_else(bad)?;
                        let data = w.begin_nested(NFTA_SET_ELEM_DATA);
                        w.attr(NFTA_DATA_VALUE, &value);
                        w.end_nested(data);
                    }
                    _ => return Err(bad()),
                }
                w.end_nested(elem);
            }
            w.end_nested(list);
            w.end_message(msg);
            names.push(set.set.clone());
            seq = seq.wrapping_add(1);
        }
    }
    let end = w.begin_message(
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        seq,
        0,
        NFNL_SUBSYS_NFTABLES,
    );
    w.end_message(end);
    Ok(Batch {
        bytes: w.buf,
        first_seq,
        sets: names,
    })
}

/// Reads the kernel's answers to `batch` from `replies` (concatenated
/// netlink messages): every `NEWSETELEM` must be acknowledged without error.
/// Returns how many were acknowledged, or the first error.
pub fn check_replies(batch: &Batch, replies: &[u8], acked: &mut usize) -> Result<(), NftError> {
    let mut rest = replies;
    while rest.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            break;
        }
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        if kind == NLMSG_ERROR && len >= NLMSG_HDRLEN + 4 + NLMSG_HDRLEN {
            let body = &rest[NLMSG_HDRLEN..len];
            let error = i32::from_ne_bytes([body[0], body[1], body[2], body[3]]);
            let seq = u32::from_ne_bytes([body[12], body[13], body[14], body[15]]);
            if error != 0 {
                let set = usize::try_from(seq.wrapping_sub(batch.first_seq))
                    .ok()
                    .and_then(|i| batch.sets.get(i))
                    .map_or("?", String::as_str);
                return Err(NftError::Netlink(format!(
                    "adding elements to set {set}: {}",
                    std::io::Error::from_raw_os_error(-error)
                )));
            }
            *acked += 1;
        }
        rest = &rest[(len.div_ceil(4) * 4).min(rest.len())..];
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn endpoints() -> SetType {
        SetType {
            key: vec![
                FieldType::Ipv4Addr,
                FieldType::InetService,
                FieldType::HostU32,
            ],
            data: SetData::Value(vec![FieldType::Ipv4Addr, FieldType::InetService]),
        }
    }

    #[test]
    fn concatenations_fill_32_bit_registers() {
        let mut out = Vec::new();
        encode_fields(&endpoints().key, "10.43.0.1 . 80 . 3", &mut out).unwrap();
        let mut want = vec![10, 43, 0, 1, 0, 80, 0, 0];
        want.extend(3u32.to_ne_bytes());
        assert_eq!(out, want);
        out.clear();
        let proto = [FieldType::InetProto, FieldType::InetService];
        encode_fields(&proto, "udp . 30053", &mut out).unwrap();
        assert_eq!(out, [17, 0, 0, 0, 0x75, 0x65, 0, 0]);
        // A single field keeps its size.
        out.clear();
        encode_fields(&[FieldType::InetService], "8080", &mut out).unwrap();
        assert_eq!(out, [0x1f, 0x90]);
        for bad in [
            "10.43.0.1 . 80",
            "10.43.0.1 . 80 . 3 . 4",
            "10.43.0.300 . 80 . 3",
            "x . 80 . 1",
        ] {
            assert!(
                encode_fields(&endpoints().key, bad, &mut Vec::new()).is_none(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_batch_is_begin_messages_end_and_bad_elements_are_named() {
        let keys: Vec<String> = (0..3000)
            .map(|i| format!("10.43.{}.{} . 80 . 0", i / 256, i % 256))
            .collect();
        let set = SetElements {
            set: "eps".into(),
            set_type: endpoints(),
            elements: keys
                .iter()
                .map(|k| (k.as_str(), Some("10.42.0.1 . 8080")))
                .collect(),
        };
        let batch = encode_batch("t", std::slice::from_ref(&set), 7).unwrap();
        // Too many for one message: split, every message of the same set.
        assert!(batch.sets.len() > 1 && batch.sets.iter().all(|s| s == "eps"));
        let mut kinds = Vec::new();
        let mut rest = &batch.bytes[..];
        while !rest.is_empty() {
            let len = u32::from_ne_bytes(rest[..4].try_into().unwrap()) as usize;
            kinds.push(u16::from_ne_bytes(rest[4..6].try_into().unwrap()));
            assert_eq!(len % 4, 0);
            rest = &rest[len..];
        }
        assert_eq!(kinds.first(), Some(&NFNL_MSG_BATCH_BEGIN));
        assert_eq!(kinds.last(), Some(&NFNL_MSG_BATCH_END));
        assert_eq!(kinds.len(), batch.sets.len() + 2);

        let verdicts = SetElements {
            set: "ips".into(),
            set_type: SetType {
                key: vec![FieldType::Ipv4Addr],
                data: SetData::Verdict,
            },
            elements: vec![
                ("10.43.0.1", Some("goto pick-tcp-2")),
                ("10.43.0.2", Some("drop")),
            ],
        };
        encode_batch("t", std::slice::from_ref(&verdicts), 1).unwrap();
        let wrong = SetElements {
            elements: vec![("10.43.0.1", Some("teleport"))],
            ..verdicts
        };
        let err = encode_batch("t", &[wrong], 1).unwrap_err();
        assert!(err.to_string().contains("\"10.43.0.1\" of ips"), "{err}");
        assert_eq!(
            set.to_script("t").lines().count(),
            3,
            "text form: 1,000 elements a line"
        );
    }

    #[test]
    fn replies_are_acks_or_the_first_error() {
        let batch = Batch {
            bytes: Vec::new(),
            first_seq: 10,
            sets: vec!["a".into(), "b".into()],
        };
        let reply = |seq: u32, error: i32| {
            let mut m = Vec::new();
            m.extend(36u32.to_ne_bytes());
            m.extend(NLMSG_ERROR.to_ne_bytes());
            m.extend([0u8; 10]);
            m.extend(error.to_ne_bytes());
            m.extend([0u8; 8]);
            m.extend(seq.to_ne_bytes());
            m.extend([0u8; 4]);
            m
        };
        let mut acked = 0;
        let mut both = reply(10, 0);
        both.extend(reply(11, 0));
        check_replies(&batch, &both, &mut acked).unwrap();
        assert_eq!(acked, 2);
        let err = check_replies(&batch, &reply(11, -2), &mut acked).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("nftables netlink: adding elements to set b: "),
            "{err}"
        );
    }
}
