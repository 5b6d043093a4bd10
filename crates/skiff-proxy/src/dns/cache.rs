//! A cache of upstream answers, as the `cache 30` of k3s's Corefile: replies
//! to forwarded questions are kept for their smallest TTL (negative ones for
//! the SOA's negative TTL, RFC 2308), at most [`MAX_TTL`]; a hit is served
//! with the remaining TTLs. Time comes in as an argument (tests replay it).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

/// Longest time an answer is kept (CoreDNS `cache 30`).
pub const MAX_TTL: Duration = Duration::from_secs(30);
/// Entries kept at most; beyond, expired ones are dropped and new ones skipped.
pub const CAPACITY: usize = 10_000;

/// What a cached answer answers.
pub type Key = (Name, RecordType, DNSClass);

/// The cache key of `request`'s (single) question.
pub fn key_of(request: &Message) -> Option<Key> {
    let q = request.queries.first()?;
    Some((q.name().to_lowercase(), q.query_type(), q.query_class()))
}

#[derive(Debug)]
struct Entry {
    reply: Message,
    stored: Instant,
    ttl: Duration,
}

/// Upstream answers by question.
#[derive(Debug, Default)]
pub struct Cache {
    entries: Mutex<HashMap<Key, Entry>>,
}

impl Cache {
    /// Keeps `reply` for `key` if it is cacheable: NOERROR or NXDOMAIN, not
    /// truncated, with a TTL (answers') or negative TTL (SOA's) above zero.
    pub fn put(&self, key: Key, reply: &Message, now: Instant) {
        if reply.metadata.truncation {
            return;
        }
        if !matches!(
            reply.metadata.response_code,
            ResponseCode::NoError | ResponseCode::NXDomain
        ) {
            return;
        }
        let ttl = if reply.answers.is_empty() {
            // Negative: min(SOA TTL, SOA MINIMUM).
            reply.authorities.iter().find_map(|r| match &r.data {
                RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                _ => None,
            })
        } else {
            reply.answers.iter().map(|r| r.ttl).min()
        };
        let Some(ttl) = ttl.filter(|t| *t > 0) else {
            return;
        };
        let ttl = Duration::from_secs(u64::from(ttl)).min(MAX_TTL);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CAPACITY {
            entries.retain(|_, e| now.saturating_duration_since(e.stored) < e.ttl);
            if entries.len() >= CAPACITY {
                return;
            }
        }
        // No record outlives its entry: TTLs above the cap are served capped.
        let mut reply = reply.clone();
        let cap = u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX);
        for r in reply
            .answers
            .iter_mut()
            .chain(reply.authorities.iter_mut())
            .chain(reply.additionals.iter_mut())
        {
            r.ttl = r.ttl.min(cap);
        }
        entries.insert(
            key,
            Entry {
                reply,
                stored: now,
                ttl,
            },
        );
    }

    /// The cached reply for `key` with its TTLs lowered by the time it has
    /// been kept; `None` if absent or expired.
    pub fn get(&self, key: &Key, now: Instant) -> Option<Message> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.get(key)?;
        let age = now.saturating_duration_since(entry.stored);
        if age >= entry.ttl {
            entries.remove(key);
            return None;
        }
        let age = u32::try_from(age.as_secs()).unwrap_or(u32::MAX);
        let mut reply = entry.reply.clone();
        for r in reply
            .answers
            .iter_mut()
            .chain(reply.authorities.iter_mut())
            .chain(reply.additionals.iter_mut())
        {
            r.ttl = r.ttl.saturating_sub(age).max(1);
        }
        Some(reply)
    }
}
