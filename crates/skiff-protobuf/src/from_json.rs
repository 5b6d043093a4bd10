//! A JSON object to the protobuf bytes Go's generated marshallers write for
//! the same Go struct: fields in number order, value scalars and structs
//! always (zero when absent), pointers, slices and maps only when set, map
//! entries sorted by key.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value};

use crate::gotime::{self, GO_ZERO_UNIX};
use crate::schema::{self, Schema, Special, Tag};
use crate::wire::{FIXED32, FIXED64, put_key, put_len, put_varint_field};
use crate::{MAX_DEPTH, ProtoError};

/// Walks JSON into protobuf bytes.
#[derive(Debug)]
pub(crate) struct Encoder<'s> {
    pub(crate) schema: &'s Schema,
}

fn invalid(field: &FieldDescriptor, reason: impl Into<String>) -> ProtoError {
    ProtoError::InvalidValue {
        field: field.full_name().to_owned(),
        reason: reason.into(),
    }
}

fn invalid_in(desc: &MessageDescriptor, reason: impl Into<String>) -> ProtoError {
    ProtoError::InvalidValue {
        field: desc.full_name().to_owned(),
        reason: reason.into(),
    }
}

/// `null` is Go's nil: treated as absent.
fn present(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

impl Encoder<'_> {
    /// The bytes of one message from its JSON (`None` or `null`: Go's zero
    /// value).
    pub(crate) fn message(
        &self,
        desc: &MessageDescriptor,
        json: Option<&Value>,
        depth: usize,
    ) -> Result<Vec<u8>, ProtoError> {
        if depth > MAX_DEPTH {
            return Err(ProtoError::TooDeep);
        }
        if let Some(special) = schema::special(desc.full_name()) {
            return self.special(special, desc, present(json));
        }
        match present(json) {
            None => self.object(desc, &Map::new(), depth),
            Some(Value::Object(obj)) => self.object(desc, obj, depth),
            Some(other) => Err(invalid_in(desc, format!("expected an object, got {other}"))),
        }
    }

    /// The bytes of a (non-special) message from a JSON object.
    fn object(
        &self,
        desc: &MessageDescriptor,
        obj: &Map<String, Value>,
        depth: usize,
    ) -> Result<Vec<u8>, ProtoError> {
        let mut fields: Vec<FieldDescriptor> = desc.fields().collect();
        fields.sort_by_key(FieldDescriptor::number);
        let mut out = Vec::new();
        for field in &fields {
            self.field(desc, field, obj, depth, &mut out)?;
        }
        Ok(out)
    }

    fn field(
        &self,
        desc: &MessageDescriptor,
        field: &FieldDescriptor,
        obj: &Map<String, Value>,
        depth: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), ProtoError> {
        let tag = self.schema.tag(desc.full_name(), field.name());
        let number = field.number();
        let kind = field.kind();
        if tag == Tag::Inline {
            // The embedded struct's fields live in this object.
            let Kind::Message(inner) = &kind else {
                return Err(invalid(field, "inline field is not a message"));
            };
            if depth >= MAX_DEPTH {
                return Err(ProtoError::TooDeep);
            }
            let bytes = self.object(inner, obj, depth + 1)?;
            put_len(out, number, &bytes);
            return Ok(());
        }
        let value = present(obj.get(schema::json_name(desc.full_name(), field.name())));
        if field.is_map() {
            let Some(value) = value else { return Ok(()) };
            let Value::Object(entries) = value else {
                return Err(invalid(field, format!("expected an object, got {value}")));
            };
            let Kind::Message(entry) = &kind else {
                return Err(invalid(field, "map field without an entry message"));
            };
            let value_field = entry.map_entry_value_field();
            let mut keys: Vec<&String> = entries.keys().collect();
            keys.sort();
            for key in keys {
                let mut bytes = Vec::new();
                put_len(&mut bytes, 1, key.as_bytes());
                let v = present(entries.get(key));
                // Go's marshaller skips a nil []byte value but not an empty one.
                if !(matches!(value_field.kind(), Kind::Bytes) && v.is_none()) {
                    self.single(&value_field, v, depth, &mut bytes)?;
                }
                put_len(out, number, &bytes);
            }
            return Ok(());
        }
        if field.is_list() {
            let Some(value) = value else { return Ok(()) };
            let Value::Array(items) = value else {
                return Err(invalid(field, format!("expected an array, got {value}")));
            };
            for item in items {
                self.single(field, present(Some(item)), depth, out)?;
            }
            return Ok(());
        }
        let write = match kind {
            // Value structs always; pointers when set.
            Kind::Message(_) => value.is_some() || tag == Tag::Value,
            // A []byte is written when non-nil.
            Kind::Bytes => value.is_some(),
            _ => value.is_some() || matches!(tag, Tag::Default | Tag::Required),
        };
        if write {
            self.single(field, value, depth, out)?;
        }
        Ok(())
    }

    /// Writes one value of `field` (a list element, a map value or a singular
    /// field); `None` writes the zero value.
    fn single(
        &self,
        field: &FieldDescriptor,
        value: Option<&Value>,
        depth: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), ProtoError> {
        let number = field.number();
        let wrong = |want: &str| {
            invalid(
                field,
                format!("expected {want}, got {}", value.unwrap_or(&Value::Null)),
            )
        };
        match field.kind() {
            Kind::Message(inner) => {
                let bytes = self.message(&inner, value, depth + 1)?;
                put_len(out, number, &bytes);
            }
            Kind::String => {
                let s = match value {
                    None => "",
                    Some(Value::String(s)) => s,
                    Some(_) => return Err(wrong("a string")),
                };
                put_len(out, number, s.as_bytes());
            }
            Kind::Bytes => {
                let b = match value {
                    None => Vec::new(),
                    Some(Value::String(s)) => STANDARD
                        .decode(s.replace(['\r', '\n'], ""))
                        .map_err(|e| invalid(field, format!("illegal base64 data: {e}")))?,
                    Some(_) => return Err(wrong("a base64 string")),
                };
                put_len(out, number, &b);
            }
            Kind::Bool => {
                let b = match value {
                    None => false,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => return Err(wrong("a boolean")),
                };
                put_varint_field(out, number, u64::from(b));
            }
            Kind::Int32 | Kind::Int64 | Kind::Uint32 | Kind::Uint64 | Kind::Enum(_) => {
                let n = integer(field, value)?;
                put_varint_field(out, number, n);
            }
            Kind::Double => {
                let f = value
                    .map_or(Some(0.0), Value::as_f64)
                    .ok_or_else(|| wrong("a number"))?;
                put_key(out, number, FIXED64);
                out.extend_from_slice(&f.to_le_bytes());
            }
            Kind::Float => {
                let f = value
                    .map_or(Some(0.0), Value::as_f64)
                    .ok_or_else(|| wrong("a number"))?;
                put_key(out, number, FIXED32);
                // Narrowing is what a float32 field means.
                out.extend_from_slice(&(f as f32).to_le_bytes());
            }
            other => {
                return Err(invalid(field, format!("unsupported field kind {other:?}")));
            }
        }
        Ok(())
    }

    /// A special message's bytes from its JSON form.
    fn special(
        &self,
        special: Special,
        desc: &MessageDescriptor,
        value: Option<&Value>,
    ) -> Result<Vec<u8>, ProtoError> {
        let wrong = |want: &str| {
            invalid_in(
                desc,
                format!("expected {want}, got {}", value.unwrap_or(&Value::Null)),
            )
        };
        let mut out = Vec::new();
        match special {
            Special::Time | Special::MicroTime => {
                let Some(value) = value else { return Ok(out) };
                let text = value.as_str().ok_or_else(|| wrong("an RFC 3339 time"))?;
                let (secs, mut nanos) =
                    gotime::parse_rfc3339(text).map_err(|e| invalid_in(desc, e))?;
                if special == Special::MicroTime {
                    nanos -= nanos % 1000;
                }
                // Go writes nothing for the zero time.
                if secs == GO_ZERO_UNIX && nanos == 0 {
                    return Ok(out);
                }
                put_varint_field(&mut out, 1, secs as u64);
                put_varint_field(&mut out, 2, u64::from(nanos));
            }
            Special::Duration => {
                let nanos = match value {
                    None => 0,
                    Some(Value::String(s)) => {
                        gotime::parse_duration(s).map_err(|e| invalid_in(desc, e))?
                    }
                    Some(_) => return Err(wrong("a duration string")),
                };
                put_varint_field(&mut out, 1, nanos as u64);
            }
            Special::Quantity => {
                let text = match value {
                    None => "0".to_owned(),
                    Some(Value::String(s)) => s.trim().to_owned(),
                    Some(Value::Number(n)) => n.to_string(),
                    Some(_) => return Err(wrong("a quantity")),
                };
                put_len(&mut out, 1, text.as_bytes());
            }
            Special::IntOrString => {
                let (kind, int, text) = match value {
                    None => (0, 0, ""),
                    Some(Value::String(s)) => (1, 0, s.as_str()),
                    Some(Value::Number(n)) => {
                        let n = n
                            .as_i64()
                            .and_then(|n| i32::try_from(n).ok())
                            .ok_or_else(|| wrong("an int32 or a string"))?;
                        (0, n, "")
                    }
                    Some(_) => return Err(wrong("an int32 or a string")),
                };
                put_varint_field(&mut out, 1, kind);
                put_varint_field(&mut out, 2, i64::from(int) as u64);
                put_len(&mut out, 3, text.as_bytes());
            }
            Special::RawExtension | Special::FieldsV1 => {
                if let Some(value) = value {
                    let raw =
                        serde_json::to_vec(value).map_err(|e| invalid_in(desc, e.to_string()))?;
                    put_len(&mut out, 1, &raw);
                }
            }
            Special::StringList => {
                if let Some(value) = value {
                    let items = value
                        .as_array()
                        .ok_or_else(|| wrong("an array of strings"))?;
                    for item in items {
                        let s = match item {
                            Value::Null => "",
                            Value::String(s) => s,
                            _ => return Err(wrong("an array of strings")),
                        };
                        put_len(&mut out, 1, s.as_bytes());
                    }
                }
            }
        }
        Ok(out)
    }
}

/// An integer field's varint payload (int32 sign-extended as Go does).
fn integer(field: &FieldDescriptor, value: Option<&Value>) -> Result<u64, ProtoError> {
    let Some(value) = value else { return Ok(0) };
    let wrong = || invalid(field, format!("expected an integer, got {value}"));
    let Value::Number(n) = value else {
        return Err(wrong());
    };
    let out_of_range = || invalid(field, format!("{n} is out of range"));
    Ok(match field.kind() {
        Kind::Int32 | Kind::Enum(_) => {
            let n = n.as_i64().ok_or_else(wrong)?;
            i64::from(i32::try_from(n).map_err(|_| out_of_range())?) as u64
        }
        Kind::Int64 => n.as_i64().ok_or_else(wrong)? as u64,
        Kind::Uint32 => {
            u64::from(u32::try_from(n.as_u64().ok_or_else(wrong)?).map_err(|_| out_of_range())?)
        }
        _ => n.as_u64().ok_or_else(wrong)?,
    })
}
