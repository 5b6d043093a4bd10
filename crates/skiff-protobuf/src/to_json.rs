//! A decoded message to the JSON Go would print for the same Go struct.
//!
//! Go's marshallers write every value (non-pointer) scalar and struct, zero or
//! not, and pointers only when set; Go's JSON then drops zero values tagged
//! `omitempty`. So presence on the wire plus the struct-tag facts in
//! [`crate::go_tags`] decide each field: see [`Tag`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MapKey, ReflectMessage as _, Value as PValue,
};
use serde_json::{Map, Number, Value};

use crate::gotime::{self, GO_ZERO_UNIX};
use crate::schema::{self, Schema, Special, Tag};
use crate::{MAGIC, MAX_DEPTH, ProtoError};

/// Walks decoded messages into JSON.
#[derive(Debug)]
pub(crate) struct Decoder<'s> {
    pub(crate) schema: &'s Schema,
}

fn mismatch(field: &FieldDescriptor, value: &PValue) -> ProtoError {
    ProtoError::InvalidValue {
        field: field.full_name().to_owned(),
        reason: format!("decoded value {value:?} does not match the field's type"),
    }
}

fn invalid(message: &DynamicMessage, reason: impl Into<String>) -> ProtoError {
    ProtoError::InvalidValue {
        field: message.descriptor().full_name().to_owned(),
        reason: reason.into(),
    }
}

impl Decoder<'_> {
    /// The JSON of one message.
    pub(crate) fn message(&self, msg: &DynamicMessage, depth: usize) -> Result<Value, ProtoError> {
        if depth > MAX_DEPTH {
            return Err(ProtoError::TooDeep);
        }
        if let Some(special) = schema::special(msg.descriptor().full_name()) {
            return self.special(special, msg, depth);
        }
        let mut out = Map::new();
        self.fields_into(msg, &mut out, depth)?;
        Ok(Value::Object(out))
    }

    /// Writes a message's fields into `out` (the parent's object for an
    /// inlined struct).
    fn fields_into(
        &self,
        msg: &DynamicMessage,
        out: &mut Map<String, Value>,
        depth: usize,
    ) -> Result<(), ProtoError> {
        let desc = msg.descriptor();
        let name = desc.full_name();
        for field in desc.fields() {
            let tag = self.schema.tag(name, field.name());
            if tag == Tag::Inline {
                // Absent, it is Go's zero struct: its fields still print.
                match msg.get_field(&field).as_ref() {
                    PValue::Message(inner) if depth < MAX_DEPTH => {
                        self.fields_into(inner, out, depth + 1)?;
                    }
                    PValue::Message(_) => return Err(ProtoError::TooDeep),
                    other => return Err(mismatch(&field, other)),
                }
                continue;
            }
            if let Some(v) = self.field(msg, &field, tag, depth)? {
                out.insert(schema::json_name(name, field.name()).to_owned(), v);
            }
        }
        Ok(())
    }

    /// One field's JSON, or `None` when Go would leave it out.
    fn field(
        &self,
        msg: &DynamicMessage,
        field: &FieldDescriptor,
        tag: Tag,
        depth: usize,
    ) -> Result<Option<Value>, ProtoError> {
        let present = msg.has_field(field);
        let value = msg.get_field(field);
        let unset = || (tag == Tag::NoOmit).then_some(Value::Null);
        if field.is_map() {
            let PValue::Map(entries) = value.as_ref() else {
                return Err(mismatch(field, &value));
            };
            if entries.is_empty() {
                return Ok(unset());
            }
            let Kind::Message(entry) = field.kind() else {
                return Err(mismatch(field, &value));
            };
            let value_kind = entry.map_entry_value_field().kind();
            let mut obj = Map::new();
            for (k, v) in entries {
                obj.insert(map_key(k), self.element(field, &value_kind, v, depth)?);
            }
            return Ok(Some(Value::Object(obj)));
        }
        if field.is_list() {
            let PValue::List(items) = value.as_ref() else {
                return Err(mismatch(field, &value));
            };
            if items.is_empty() {
                return Ok(unset());
            }
            let kind = field.kind();
            let array = items
                .iter()
                .map(|v| self.element(field, &kind, v, depth))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Some(Value::Array(array)));
        }
        match field.kind() {
            Kind::Message(_) => {
                if present || tag == Tag::Value {
                    // Absent value structs print as Go's zero struct.
                    let PValue::Message(m) = value.as_ref() else {
                        return Err(mismatch(field, &value));
                    };
                    Ok(Some(self.message(m, depth + 1)?))
                } else {
                    Ok(unset())
                }
            }
            Kind::Bytes => {
                // A Go []byte: absent is nil; empty prints only without omitempty.
                let PValue::Bytes(b) = value.as_ref() else {
                    return Err(mismatch(field, &value));
                };
                if !present {
                    Ok(unset())
                } else if b.is_empty() && tag != Tag::NoOmit {
                    Ok(None)
                } else {
                    Ok(Some(Value::String(STANDARD.encode(b))))
                }
            }
            _ if present => {
                let zero = value.is_default(&field.kind());
                if zero && tag == Tag::Default {
                    Ok(None)
                } else {
                    scalar(field, &value).map(Some)
                }
            }
            _ => match tag {
                Tag::Required => scalar(field, &value).map(Some),
                _ => Ok(unset()),
            },
        }
    }

    /// A list element or map value.
    fn element(
        &self,
        field: &FieldDescriptor,
        kind: &Kind,
        value: &PValue,
        depth: usize,
    ) -> Result<Value, ProtoError> {
        match (kind, value) {
            (Kind::Message(_), PValue::Message(m)) => self.message(m, depth + 1),
            (Kind::Bytes, PValue::Bytes(b)) => Ok(Value::String(STANDARD.encode(b))),
            (Kind::Message(_) | Kind::Bytes, other) => Err(mismatch(field, other)),
            _ => scalar(field, value),
        }
    }

    /// The JSON form of a special message.
    fn special(
        &self,
        special: Special,
        msg: &DynamicMessage,
        depth: usize,
    ) -> Result<Value, ProtoError> {
        let num = |n: u32| msg.get_field_by_number(n);
        let has = |n: u32| msg.has_field_by_number(n);
        let int = |n: u32| num(n).and_then(|v| v.as_i64().or(v.as_i32().map(i64::from)));
        let bytes = |n: u32| match num(n).as_deref() {
            Some(PValue::Bytes(b)) if has(n) => Some(b.clone()),
            _ => None,
        };
        let text = |n: u32| num(n).and_then(|v| v.as_str().map(str::to_owned));
        match special {
            Special::Time | Special::MicroTime => {
                // Go: an empty message is the zero time; Time drops nanoseconds.
                if !has(1) && !has(2) {
                    return Ok(Value::Null);
                }
                let secs = int(1).unwrap_or(0);
                let nanos = if special == Special::Time {
                    0
                } else {
                    int(2).unwrap_or(0)
                };
                let (secs, nanos) = gotime::normalize(secs, nanos)
                    .ok_or_else(|| invalid(msg, "time out of range"))?;
                if secs == GO_ZERO_UNIX && nanos == 0 {
                    return Ok(Value::Null);
                }
                // nanos is in 0..1e9, so micros fits in u32.
                let micros = (special == Special::MicroTime).then_some((nanos / 1000) as u32);
                Ok(Value::String(gotime::format_rfc3339(secs, micros)))
            }
            Special::Duration => Ok(Value::String(gotime::format_duration(int(1).unwrap_or(0)))),
            Special::Quantity => match text(1) {
                // Go parses it (ParseQuantity); an empty string fails there.
                Some(s) if has(1) && s.is_empty() => {
                    Err(invalid(msg, "quantities must match the regular expression"))
                }
                Some(s) if has(1) => Ok(Value::String(s)),
                _ => Ok(Value::String("0".into())),
            },
            Special::IntOrString => match int(1).unwrap_or(0) {
                0 => Ok(Value::from(int(2).unwrap_or(0))),
                1 => Ok(Value::String(text(3).unwrap_or_default())),
                t => Err(invalid(msg, format!("impossible IntOrString.Type {t}"))),
            },
            Special::RawExtension => match bytes(1) {
                Some(raw) if !raw.is_empty() => self.raw_json(msg, &raw, true, depth),
                _ => Ok(Value::Null),
            },
            Special::FieldsV1 => match bytes(1) {
                Some(raw) if !raw.is_empty() => self.raw_json(msg, &raw, false, depth),
                _ => Ok(Value::Null),
            },
            Special::StringList => match num(1).as_deref() {
                Some(PValue::List(items)) if !items.is_empty() => Ok(Value::Array(
                    items
                        .iter()
                        .map(|v| Value::String(v.as_str().unwrap_or_default().to_owned()))
                        .collect(),
                )),
                _ => Ok(Value::Null),
            },
        }
    }

    /// Embedded raw bytes: JSON, or (in a `RawExtension`) a nested protobuf
    /// object with its own envelope.
    fn raw_json(
        &self,
        msg: &DynamicMessage,
        raw: &[u8],
        allow_protobuf: bool,
        depth: usize,
    ) -> Result<Value, ProtoError> {
        if allow_protobuf && raw.starts_with(MAGIC) {
            return crate::decode_at(raw, None, depth + 1);
        }
        serde_json::from_slice(raw)
            .map_err(|e| invalid(msg, format!("raw bytes are not JSON: {e}")))
    }
}

fn map_key(key: &MapKey) -> String {
    match key {
        MapKey::String(s) => s.clone(),
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(n) => n.to_string(),
        MapKey::I64(n) => n.to_string(),
        MapKey::U32(n) => n.to_string(),
        MapKey::U64(n) => n.to_string(),
    }
}

/// A scalar's JSON.
fn scalar(field: &FieldDescriptor, value: &PValue) -> Result<Value, ProtoError> {
    let float = |f: f64| {
        Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| ProtoError::InvalidValue {
                field: field.full_name().to_owned(),
                reason: format!("unsupported value {f} (JSON has no NaN or infinity)"),
            })
    };
    match value {
        PValue::Bool(b) => Ok(Value::Bool(*b)),
        PValue::I32(n) => Ok(Value::from(*n)),
        PValue::I64(n) => Ok(Value::from(*n)),
        PValue::U32(n) => Ok(Value::from(*n)),
        PValue::U64(n) => Ok(Value::from(*n)),
        PValue::EnumNumber(n) => Ok(Value::from(*n)),
        PValue::F32(f) => float(f64::from(*f)),
        PValue::F64(f) => float(*f),
        PValue::String(s) => Ok(Value::String(s.clone())),
        other => Err(mismatch(field, other)),
    }
}
