//! Protobuf wire primitives and the `runtime.Unknown` envelope.
//!
//! Encoding is written by hand rather than through `DynamicMessage` so the
//! bytes are Go's: fields in number order, map entries sorted by key, and
//! value fields written even when zero (gogo-generated marshallers do all
//! three).

use prost_reflect::{DynamicMessage, Value as PValue};

use crate::{MAGIC, ProtoError, schema};

/// Wire type of varint-encoded scalars.
pub(crate) const VARINT: u32 = 0;
/// Wire type of 64-bit fixed scalars (`double`).
pub(crate) const FIXED64: u32 = 1;
/// Wire type of strings, bytes, messages and map entries.
pub(crate) const LEN: u32 = 2;
/// Wire type of 32-bit fixed scalars (`float`).
pub(crate) const FIXED32: u32 = 5;

/// Appends a base-128 varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        // Truncation is the point: the low 7 bits plus the continuation bit.
        out.push(((v & 0x7f) as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a field key.
pub(crate) fn put_key(out: &mut Vec<u8>, number: u32, wire_type: u32) {
    put_varint(out, (u64::from(number) << 3) | u64::from(wire_type));
}

/// Appends a length-delimited field.
pub(crate) fn put_len(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    put_key(out, number, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Appends a varint field (`int32` is sign-extended to 64 bits, as Go does).
pub(crate) fn put_varint_field(out: &mut Vec<u8>, number: u32, v: u64) {
    put_key(out, number, VARINT);
    put_varint(out, v);
}

/// The decoded `runtime.Unknown` envelope.
#[derive(Debug, Default)]
pub(crate) struct Unknown {
    pub(crate) api_version: String,
    pub(crate) kind: String,
    pub(crate) raw: Vec<u8>,
}

/// Reads the envelope after the magic prefix.
pub(crate) fn read_unknown(data: &[u8]) -> Result<Unknown, ProtoError> {
    let schema = schema::get()?;
    let desc = schema.unknown().clone();
    let malformed = |reason: String| ProtoError::Malformed {
        message: desc.full_name().to_owned(),
        reason,
    };
    let msg = DynamicMessage::decode(desc.clone(), data).map_err(|e| malformed(e.to_string()))?;
    let mut out = Unknown::default();
    if let Some(type_meta) = msg.get_field_by_name("typeMeta")
        && let PValue::Message(tm) = type_meta.as_ref()
    {
        let text = |name: &str| {
            tm.get_field_by_name(name)
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        };
        out.api_version = text("apiVersion");
        out.kind = text("kind");
    }
    if let Some(raw) = msg.get_field_by_name("raw") {
        match raw.as_ref() {
            PValue::Bytes(b) => out.raw = b.to_vec(),
            other => return Err(malformed(format!("raw is {other:?}, not bytes"))),
        }
    }
    Ok(out)
}

/// Writes `k8s\0` and the envelope around an object's bytes, as upstream's
/// serializer does (empty `contentEncoding` and `contentType` included).
pub(crate) fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let mut type_meta = Vec::with_capacity(api_version.len() + kind.len() + 4);
    put_len(&mut type_meta, 1, api_version.as_bytes());
    put_len(&mut type_meta, 2, kind.as_bytes());
    let mut out = Vec::with_capacity(raw.len() + type_meta.len() + 16);
    out.extend_from_slice(MAGIC);
    put_len(&mut out, 1, &type_meta);
    put_len(&mut out, 2, raw);
    put_len(&mut out, 3, b"");
    put_len(&mut out, 4, b"");
    out
}
