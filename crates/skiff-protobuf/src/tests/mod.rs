//! Unit tests: special types, Go tag rules, the encoder, malformed input.

mod decode;
mod encode;
mod gotime;
mod malformed;
mod schema;

use serde_json::Value;

use crate::wire::{put_len, put_varint_field};

/// A protobuf field for hand-built messages.
pub(super) enum F {
    /// A varint field.
    V(u32, u64),
    /// A length-delimited field.
    L(u32, Vec<u8>),
}

/// Builds message bytes from fields, in the order given.
pub(super) fn msg(fields: Vec<F>) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields {
        match f {
            F::V(n, v) => put_varint_field(&mut out, n, v),
            F::L(n, b) => put_len(&mut out, n, &b),
        }
    }
    out
}

/// A string field.
pub(super) fn s(n: u32, text: &str) -> F {
    F::L(n, text.as_bytes().to_vec())
}

/// A full body: magic, envelope, object bytes.
pub(super) fn body(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    crate::wire::envelope(api_version, kind, &raw)
}

/// Decodes a hand-built object.
pub(super) fn decode_raw(api_version: &str, kind: &str, raw: Vec<u8>) -> Value {
    crate::decode(&body(api_version, kind, raw)).expect("decodes")
}

/// Encodes then decodes.
pub(super) fn round_trip(obj: &Value) -> Value {
    let bytes = crate::encode(obj).expect("encodes");
    crate::decode(&bytes).expect("decodes")
}
