//! The on-disk record of one revision: what a single write did.
//!
//! Layout (little-endian), the value of the `revisions` table keyed by the
//! revision number:
//!
//! ```text
//! kind u8 | create_revision i64 | version i64 | prev_revision i64 | key_len u32 | key | value
//! ```
//!
//! `prev_revision` is the mod revision of the key's previous record in the
//! same life (0 for a create), so a replayed watch event can find its
//! previous value without the in-memory index.

use bytes::Bytes;

use crate::{KeyValue, Revision, StoreError};

const KIND_PUT: u8 = 1;
const KIND_DELETE: u8 = 2;
const HEADER: usize = 1 + 8 + 8 + 8 + 4;

/// One decoded record, borrowing from the database page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    pub deleted: bool,
    pub create_revision: Revision,
    pub version: i64,
    pub prev_revision: Revision,
    pub key: &'a str,
    pub value: &'a [u8],
}

impl<'a> Record<'a> {
    /// Appends the encoding of `self` to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(HEADER + self.key.len() + self.value.len());
        out.push(if self.deleted { KIND_DELETE } else { KIND_PUT });
        out.extend_from_slice(&self.create_revision.to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.prev_revision.to_le_bytes());
        // Keys are at most MAX_KEY_BYTES, validated before they get here.
        out.extend_from_slice(&(self.key.len() as u32).to_le_bytes());
        out.extend_from_slice(self.key.as_bytes());
        out.extend_from_slice(self.value);
    }

    /// Decodes a record; `revision` only serves the error message.
    pub fn decode(revision: Revision, bytes: &'a [u8]) -> Result<Self, StoreError> {
        let corrupt = |what: &str| {
            StoreError::Io(format!(
                "corrupted record at revision {revision}: {what} ({} bytes)",
                bytes.len()
            ))
        };
        if bytes.len() < HEADER {
            return Err(corrupt("truncated header"));
        }
        let deleted = match bytes[0] {
            KIND_PUT => false,
            KIND_DELETE => true,
            _ => return Err(corrupt("unknown record kind")),
        };
        let i64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            i64::from_le_bytes(b)
        };
        let mut len = [0u8; 4];
        len.copy_from_slice(&bytes[25..29]);
        let key_len = u32::from_le_bytes(len) as usize;
        let key_end = HEADER
            .checked_add(key_len)
            .filter(|end| *end <= bytes.len())
            .ok_or_else(|| corrupt("key runs past the end"))?;
        let key = std::str::from_utf8(&bytes[HEADER..key_end])
            .map_err(|_| corrupt("key is not UTF-8"))?;
        Ok(Record {
            deleted,
            create_revision: i64_at(1),
            version: i64_at(9),
            prev_revision: i64_at(17),
            key,
            value: &bytes[key_end..],
        })
    }

    /// The key-value this record wrote at `revision` (for a delete: etcd's
    /// tombstone, empty value and zero create revision and version).
    pub fn to_kv(self, revision: Revision) -> KeyValue {
        if self.deleted {
            KeyValue {
                key: self.key.to_owned(),
                value: Bytes::new(),
                create_revision: 0,
                mod_revision: revision,
                version: 0,
            }
        } else {
            KeyValue {
                key: self.key.to_owned(),
                value: Bytes::copy_from_slice(self.value),
                create_revision: self.create_revision,
                mod_revision: revision,
                version: self.version,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let rec = Record {
            deleted: false,
            create_revision: 3,
            version: 7,
            prev_revision: 9,
            key: "/registry/pods/default/a",
            value: b"{\"kind\":\"Pod\"}",
        };
        let mut buf = Vec::new();
        rec.encode_into(&mut buf);
        assert_eq!(Record::decode(10, &buf).unwrap(), rec);
        let kv = rec.to_kv(10);
        assert_eq!(kv.mod_revision, 10);
        assert_eq!(kv.version, 7);
        assert_eq!(&kv.value[..], b"{\"kind\":\"Pod\"}");
    }

    #[test]
    fn tombstone_kv() {
        let rec = Record {
            deleted: true,
            create_revision: 3,
            version: 2,
            prev_revision: 5,
            key: "/k",
            value: b"",
        };
        let mut buf = Vec::new();
        rec.encode_into(&mut buf);
        let kv = Record::decode(6, &buf).unwrap().to_kv(6);
        assert_eq!((kv.create_revision, kv.version, kv.mod_revision), (0, 0, 6));
    }

    #[test]
    fn corrupt_records_are_errors_not_panics() {
        let mut buf = Vec::new();
        Record {
            deleted: false,
            create_revision: 1,
            version: 1,
            prev_revision: 0,
            key: "/k",
            value: b"v",
        }
        .encode_into(&mut buf);
        for cut in 0..buf.len() - 1 {
            // Any truncation inside the header or key must be rejected.
            if cut < HEADER + 2 {
                assert!(Record::decode(1, &buf[..cut]).is_err(), "cut at {cut}");
            }
        }
        let mut bad_kind = buf.clone();
        bad_kind[0] = 9;
        assert!(Record::decode(1, &bad_kind).is_err());
        let mut huge_len = buf.clone();
        huge_len[25..29].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Record::decode(1, &huge_len).is_err());
    }
}
