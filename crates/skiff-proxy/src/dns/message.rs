//! Wire handling around the answer function: request bytes in, what to do
//! out (reply bytes, forward, or drop); EDNS, header flags, FORMERR and
//! NOTIMP, and UDP truncation. Pure: no I/O.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Record};

use super::answer::{self, Answer, Outcome, Zone};
use super::data::ClusterData;

/// The transport a request came over (its size limit differs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// 512 bytes, or the request's EDNS payload size.
    Udp,
    /// 65,535 bytes.
    Tcp,
}

/// The UDP payload size we advertise in EDNS replies and fill at most
/// (clients asking for less get less; without EDNS, 512).
pub const MAX_UDP_PAYLOAD: u16 = 4096;

/// What to do with a request.
#[derive(Debug)]
pub enum Step {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Ask the upstream resolvers; `request` is what was asked (for an
    /// error reply if that fails).
    Forward(Box<Message>),
    /// Answer with `answer`, after adding the upstream's records for the
    /// CNAME target `answer.chase`.
    Chase(Box<Message>, Answer),
    /// Say nothing (not a query, or not even a header).
    Drop,
}

/// Reads `bytes` and answers them from `data` if the name is the
/// cluster's; `synced` says whether `data` holds a full list yet.
pub fn process(
    data: &ClusterData,
    zone: &Zone,
    bytes: &[u8],
    transport: Transport,
    synced: bool,
) -> Step {
    let Some(header) = header(bytes) else {
        return Step::Drop;
    };
    if header.is_response {
        return Step::Drop;
    }
    let request = match plausible(bytes).then(|| Message::from_vec(bytes)) {
        Some(Ok(m)) => m,
        _ => {
            return Step::Reply(error_reply(
                header.id,
                header.op_code,
                ResponseCode::FormErr,
            ));
        }
    };
    if request.metadata.op_code != OpCode::Query {
        return Step::Reply(reply_error(&request, ResponseCode::NotImp, transport));
    }
    let [query] = request.queries.as_slice() else {
        return Step::Reply(reply_error(&request, ResponseCode::FormErr, transport));
    };
    if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
        return Step::Reply(reply_error(&request, ResponseCode::BADVERS, transport));
    }
    if query.query_class() != DNSClass::IN {
        return Step::Reply(reply_error(&request, ResponseCode::Refused, transport));
    }
    let outcome = answer::answer(data, zone, query.name(), query.query_type());
    match outcome {
        Outcome::Forward => Step::Forward(Box::new(request)),
        Outcome::Answer(_) if !synced => {
            Step::Reply(reply_error(&request, ResponseCode::ServFail, transport))
        }
        Outcome::Answer(a) if a.chase.is_some() => Step::Chase(Box::new(request), a),
        Outcome::Answer(a) => Step::Reply(reply(&request, a, transport)),
    }
}

/// The fixed header fields a reply needs, readable even when the rest of
/// the message is not.
struct RawHeader {
    id: u16,
    is_response: bool,
    op_code: OpCode,
}

fn header(bytes: &[u8]) -> Option<RawHeader> {
    let b = bytes.get(..12)?;
    Some(RawHeader {
        id: u16::from_be_bytes([b[0], b[1]]),
        is_response: b[2] & 0x80 != 0,
        op_code: OpCode::from_u8((b[2] >> 3) & 0x0f),
    })
}

/// Whether the header's counts fit in the message at all (a question is at
/// least 5 bytes, a record 11), so a short packet claiming 65,535 records
/// is refused before anything is allocated for them.
fn plausible(bytes: &[u8]) -> bool {
    let count = |i: usize| usize::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
    if bytes.len() < 12 {
        return false;
    }
    let needed = count(4) * 5 + (count(6) + count(8) + count(10)) * 11;
    needed <= bytes.len() - 12
}

/// A reply with `rcode` and nothing else, for a request we could not read.
fn error_reply(id: u16, op_code: OpCode, rcode: ResponseCode) -> Vec<u8> {
    let msg = Message::error_msg(id, op_code, rcode);
    msg.to_vec().unwrap_or_default()
}

/// The reply's header and question for `request`.
fn response_to(request: &Message) -> Message {
    let mut msg = Message::new(
        request.metadata.id,
        MessageType::Response,
        request.metadata.op_code,
    );
    msg.metadata.recursion_desired = request.metadata.recursion_desired;
    msg.metadata.checking_disabled = request.metadata.checking_disabled;
    msg.metadata.recursion_available = true;
    msg.add_queries(request.queries.iter().cloned());
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD);
        msg.set_edns(edns);
    }
    msg
}

/// An error reply (`rcode`, no records) to `request`.
pub fn reply_error(request: &Message, rcode: ResponseCode, transport: Transport) -> Vec<u8> {
    let mut msg = response_to(request);
    msg.metadata.response_code = rcode;
    if rcode == ResponseCode::BADVERS {
        // The extended part of the code travels in the OPT record.
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD);
        edns.set_rcode_high(rcode.high());
        msg.set_edns(edns);
    }
    encode(msg, limit(request, transport))
}

/// The authoritative reply to `request` carrying `answer`.
pub fn reply(request: &Message, answer: Answer, transport: Transport) -> Vec<u8> {
    let mut msg = response_to(request);
    msg.metadata.authoritative = true;
    msg.metadata.response_code = answer.rcode;
    msg.insert_answers(answer.answers);
    msg.insert_authorities(answer.authorities);
    msg.insert_additionals(answer.additionals);
    encode(msg, limit(request, transport))
}

/// `answer` with `upstream`'s answer records (of the CNAME target) added.
pub fn chased(
    request: &Message,
    mut answer: Answer,
    upstream: Vec<Record>,
    transport: Transport,
) -> Vec<u8> {
    answer.answers.extend(upstream);
    reply(request, answer, transport)
}

/// The largest reply `request` may get over `transport`.
pub fn limit(request: &Message, transport: Transport) -> usize {
    match transport {
        Transport::Tcp => usize::from(u16::MAX),
        Transport::Udp => usize::from(request.max_payload().clamp(512, MAX_UDP_PAYLOAD)),
    }
}

/// Encodes `msg` in at most `limit` bytes: additional records go first,
/// then answers and authorities from the end, with TC set once a record of
/// those is left out (the client retries over TCP).
pub fn encode(mut msg: Message, limit: usize) -> Vec<u8> {
    let fits = |m: &Message| m.to_vec().ok().filter(|b| b.len() <= limit);
    if let Some(bytes) = fits(&msg) {
        return bytes;
    }
    msg.additionals.clear();
    if let Some(bytes) = fits(&msg) {
        return bytes;
    }
    msg.metadata.truncation = true;
    msg.authorities.clear();
    // The most answers that fit, by bisection.
    let answers = std::mem::take(&mut msg.answers);
    let (mut lo, mut hi) = (0, answers.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        msg.answers = answers[..mid].to_vec();
        if fits(&msg).is_some() {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    msg.answers = answers[..lo].to_vec();
    if let Some(bytes) = fits(&msg) {
        return bytes;
    }
    // Not even the question fits (a huge name in a tiny limit cannot
    // happen with 512 bytes and DNS names of at most 255); send the header.
    msg.queries.clear();
    msg.to_vec().unwrap_or_default()
}

/// The reply to `request` from a cached upstream reply: the request's ID,
/// question (its case) and flags, the cached records, our EDNS.
pub fn from_cache(request: &Message, cached: Message, transport: Transport) -> Vec<u8> {
    let mut msg = response_to(request);
    msg.metadata.response_code = cached.metadata.response_code;
    msg.metadata.authentic_data = false;
    msg.answers = cached.answers;
    msg.authorities = cached.authorities;
    msg.additionals = cached.additionals;
    encode(msg, limit(request, transport))
}

/// A question for `name`/`qtype` as a resolver would send it upstream.
pub fn query_for(id: u16, query: Query) -> Vec<u8> {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(query);
    msg.to_vec().unwrap_or_default()
}
