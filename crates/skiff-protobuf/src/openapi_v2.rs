//! The protobuf form of a Swagger 2.0 document (`/openapi/v2` as
//! `application/com.github.proto-openapi.spec.v2@v1.0+protobuf`): gnostic's
//! `openapi.v2.Document`, which client-go's `OpenAPISchema()` fetches and
//! kubectl's client-side validation reads.
//!
//! The mapping is gnostic's compiler's, driven by the message descriptors:
//! a JSON key names the field of the same name in snake case (`$ref` is
//! `_ref`); `x-` keys become `vendor_extension` entries whose value is the
//! extension's YAML text (JSON is YAML); JSON objects keyed by free names
//! (definitions, properties, paths, responses) become lists of `Named*`
//! messages; the sum types (`type`, `items`, `additionalProperties`,
//! parameters, responses, security schemes) become their oneof wrappers.

use std::sync::OnceLock;

use prost_reflect::prost::Message;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage,
    Value as ProtoValue,
};
use serde_json::{Map, Value};

use crate::{MAX_DEPTH, ProtoError};

/// The media type kube-apiserver answers with (and accepts).
pub const MEDIA_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The media type client-go asks for (the `@` form, deprecated but still
/// what clients send); answered with [`MEDIA_TYPE`].
pub const MEDIA_TYPE_DEPRECATED: &str =
    "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/openapiv2.fds"));

const VENDOR_EXTENSION: &str = "vendor_extension";

fn document_descriptor() -> Result<MessageDescriptor, ProtoError> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    let pool = POOL
        .get_or_init(|| DescriptorPool::decode(DESCRIPTORS).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| ProtoError::Schema(e.clone()))?;
    pool.get_message_by_name("openapi.v2.Document")
        .ok_or_else(|| ProtoError::Schema("openapi.v2.Document is missing".into()))
}

/// Encodes a Swagger 2.0 document (JSON) as gnostic's `openapi.v2.Document`.
/// Keys the Swagger 2.0 schema does not have are an error.
pub fn encode(document: &Value) -> Result<Vec<u8>, ProtoError> {
    let msg = to_message(&document_descriptor()?, document, 0)?;
    Ok(msg.encode_to_vec())
}

/// Decodes a gnostic `openapi.v2.Document` back into its JSON document; the
/// inverse of [`encode`] (vendor extensions must hold JSON, as [`encode`]
/// writes them).
pub fn decode(bytes: &[u8]) -> Result<Value, ProtoError> {
    let desc = document_descriptor()?;
    let msg = DynamicMessage::decode(desc.clone(), bytes).map_err(|e| ProtoError::Malformed {
        message: desc.full_name().to_owned(),
        reason: e.to_string(),
    })?;
    from_message(&msg, 0)
}

fn invalid(desc: &MessageDescriptor, key: &str, reason: impl Into<String>) -> ProtoError {
    ProtoError::InvalidValue {
        field: format!("{}.{key}", desc.name()),
        reason: reason.into(),
    }
}

/// `operationId` → `operation_id`, `$ref` → `_ref`.
fn field_name(key: &str) -> String {
    if key == "$ref" {
        return "_ref".to_owned();
    }
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `operation_id` → `operationId`, `_ref` → `$ref`.
fn json_key(field: &str) -> String {
    if field == "_ref" {
        return "$ref".to_owned();
    }
    let mut out = String::with_capacity(field.len());
    let mut upper = false;
    for c in field.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The field holding the entries of a message that stands for a JSON object
/// with free keys (`Definitions`, `Paths`, `Responses`, ...): its one
/// repeated `Named*` field besides `vendor_extension`.
fn named_entries(desc: &MessageDescriptor) -> Option<FieldDescriptor> {
    let mut fields = desc.fields().filter(|f| f.name() != VENDOR_EXTENSION);
    let field = fields.next()?;
    let named = field.is_list()
        && matches!(field.kind(), Kind::Message(m) if m.name().starts_with("Named"));
    (named && fields.next().is_none()).then_some(field)
}

/// Which field of a oneof wrapper a JSON value takes.
fn oneof_choice(desc: &MessageDescriptor, json: &Value) -> Option<&'static str> {
    let has_ref = json.get("$ref").is_some();
    let string = |key: &str| json.get(key).and_then(Value::as_str).unwrap_or_default();
    Some(match desc.name() {
        "ParametersItem" if has_ref => "json_reference",
        "ParametersItem" => "parameter",
        "ResponseValue" if has_ref => "json_reference",
        "ResponseValue" => "response",
        "Parameter" if string("in") == "body" => "body_parameter",
        "Parameter" => "non_body_parameter",
        "NonBodyParameter" => match string("in") {
            "header" => "header_parameter_sub_schema",
            "formData" => "form_data_parameter_sub_schema",
            "query" => "query_parameter_sub_schema",
            _ => "path_parameter_sub_schema",
        },
        "SchemaItem" if string("type") == "file" => "file_schema",
        "SchemaItem" => "schema",
        "SecurityDefinitionsItem" => match (string("type"), string("flow")) {
            ("basic", _) => "basic_authentication_security",
            ("apiKey", _) => "api_key_security",
            (_, "implicit") => "oauth2_implicit_security",
            (_, "password") => "oauth2_password_security",
            (_, "application") => "oauth2_application_security",
            _ => "oauth2_access_code_security",
        },
        _ => return None,
    })
}

fn strings(desc: &MessageDescriptor, key: &str, json: &Value) -> Result<ProtoValue, ProtoError> {
    let one = |v: &Value| {
        v.as_str()
            .map(|s| ProtoValue::String(s.to_owned()))
            .ok_or_else(|| invalid(desc, key, "expected a string"))
    };
    let list = match json {
        Value::Array(items) => items.iter().map(one).collect::<Result<_, _>>()?,
        other => vec![one(other)?],
    };
    Ok(ProtoValue::List(list))
}

fn to_message(
    desc: &MessageDescriptor,
    json: &Value,
    depth: usize,
) -> Result<DynamicMessage, ProtoError> {
    if depth > MAX_DEPTH {
        return Err(ProtoError::TooDeep);
    }
    let mut msg = DynamicMessage::new(desc.clone());
    match desc.name() {
        "Any" => {
            let yaml =
                serde_json::to_string(json).map_err(|e| invalid(desc, "yaml", e.to_string()))?;
            msg.set_field_by_name("yaml", ProtoValue::String(yaml));
            return Ok(msg);
        }
        "TypeItem" | "StringArray" => {
            msg.set_field_by_name("value", strings(desc, "value", json)?);
            return Ok(msg);
        }
        "ItemsItem" => {
            let schema = single_field(desc, "schema")?;
            let items = match json {
                Value::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            let list = items
                .into_iter()
                .map(|v| field_value(desc, &schema, v, depth))
                .collect::<Result<_, _>>()?;
            msg.set_field_by_name("schema", ProtoValue::List(list));
            return Ok(msg);
        }
        "AdditionalPropertiesItem" => {
            match json {
                Value::Bool(b) => msg.set_field_by_name("boolean", ProtoValue::Bool(*b)),
                other => {
                    let schema = single_field(desc, "schema")?;
                    let value = field_value(desc, &schema, other, depth)?;
                    msg.set_field(&schema, value);
                }
            }
            return Ok(msg);
        }
        _ => {}
    }
    if let Some(choice) = oneof_choice(desc, json) {
        let field = single_field(desc, choice)?;
        let value = field_value(desc, &field, json, depth)?;
        msg.set_field(&field, value);
        return Ok(msg);
    }
    let Value::Object(obj) = json else {
        return Err(invalid(desc, "", "expected an object"));
    };
    let vendor = desc.get_field_by_name(VENDOR_EXTENSION);
    let entries = named_entries(desc);
    let mut extensions = Vec::new();
    let mut named = Vec::new();
    for (key, value) in obj {
        if let Some(vendor) = vendor.as_ref().filter(|_| key.starts_with("x-")) {
            extensions.push(named_message(desc, vendor, key, value, depth)?);
        } else if let Some(entries) = &entries {
            named.push(named_message(desc, entries, key, value, depth)?);
        } else {
            let field = desc
                .get_field_by_name(&field_name(key))
                .ok_or_else(|| invalid(desc, key, "unknown field"))?;
            let value = if field.is_list() {
                let Value::Array(items) = value else {
                    return Err(invalid(desc, key, "expected an array"));
                };
                ProtoValue::List(
                    items
                        .iter()
                        .map(|v| field_value(desc, &field, v, depth))
                        .collect::<Result<_, _>>()?,
                )
            } else {
                field_value(desc, &field, value, depth)?
            };
            msg.set_field(&field, value);
        }
    }
    if let (Some(vendor), false) = (vendor, extensions.is_empty()) {
        msg.set_field(&vendor, ProtoValue::List(extensions));
    }
    if let (Some(entries), false) = (entries, named.is_empty()) {
        msg.set_field(&entries, ProtoValue::List(named));
    }
    Ok(msg)
}

fn single_field(desc: &MessageDescriptor, name: &str) -> Result<FieldDescriptor, ProtoError> {
    desc.get_field_by_name(name)
        .ok_or_else(|| ProtoError::Schema(format!("{}.{name} is missing", desc.full_name())))
}

/// A `Named*` message: `{name, value}`.
fn named_message(
    parent: &MessageDescriptor,
    field: &FieldDescriptor,
    name: &str,
    json: &Value,
    depth: usize,
) -> Result<ProtoValue, ProtoError> {
    let Kind::Message(desc) = field.kind() else {
        return Err(invalid(parent, name, "not a message field"));
    };
    let value_field = single_field(&desc, "value")?;
    let mut msg = DynamicMessage::new(desc.clone());
    msg.set_field_by_name("name", ProtoValue::String(name.to_owned()));
    let value = field_value(&desc, &value_field, json, depth + 1)?;
    msg.set_field(&value_field, value);
    Ok(ProtoValue::Message(msg))
}

/// One (non-list) value of `field`.
fn field_value(
    parent: &MessageDescriptor,
    field: &FieldDescriptor,
    json: &Value,
    depth: usize,
) -> Result<ProtoValue, ProtoError> {
    let key = field.name();
    let wrong = |what: &str| invalid(parent, key, format!("expected {what}"));
    Ok(match field.kind() {
        Kind::Message(desc) => ProtoValue::Message(to_message(&desc, json, depth + 1)?),
        Kind::String => {
            ProtoValue::String(json.as_str().ok_or_else(|| wrong("a string"))?.to_owned())
        }
        Kind::Bool => ProtoValue::Bool(json.as_bool().ok_or_else(|| wrong("a boolean"))?),
        Kind::Int64 => ProtoValue::I64(json.as_i64().ok_or_else(|| wrong("an integer"))?),
        Kind::Double => ProtoValue::F64(json.as_f64().ok_or_else(|| wrong("a number"))?),
        other => return Err(invalid(parent, key, format!("unexpected kind {other:?}"))),
    })
}

fn from_message(msg: &DynamicMessage, depth: usize) -> Result<Value, ProtoError> {
    if depth > MAX_DEPTH {
        return Err(ProtoError::TooDeep);
    }
    let desc = msg.descriptor();
    let get = |name: &str| msg.get_field_by_name(name);
    match desc.name() {
        "Any" => {
            let yaml = get("yaml");
            let text = yaml.as_ref().and_then(|v| v.as_str()).unwrap_or_default();
            return serde_json::from_str(text).map_err(|e| invalid(&desc, "yaml", e.to_string()));
        }
        "TypeItem" | "StringArray" => {
            let values = list_json(msg, "value", depth)?;
            return Ok(match <[Value; 1]>::try_from(values) {
                Ok([one]) if desc.name() == "TypeItem" => one,
                Ok([one]) => Value::Array(vec![one]),
                Err(values) => Value::Array(values),
            });
        }
        "ItemsItem" => {
            let values = list_json(msg, "schema", depth)?;
            return Ok(match <[Value; 1]>::try_from(values) {
                Ok([one]) => one,
                Err(values) => Value::Array(values),
            });
        }
        _ => {}
    }
    // A oneof wrapper is the value it holds.
    if desc.oneofs().next().is_some() {
        return match desc.fields().find(|f| msg.has_field(f)) {
            Some(f) => value_json(&msg.get_field(&f), depth),
            None => Ok(Value::Null),
        };
    }
    let entries = named_entries(&desc);
    let mut obj = Map::new();
    for (field, value) in msg.fields() {
        let is_entries = entries
            .as_ref()
            .is_some_and(|e| e.number() == field.number());
        if field.name() == VENDOR_EXTENSION || is_entries {
            for item in value.as_list().unwrap_or_default() {
                let Some(named) = item.as_message() else {
                    continue;
                };
                let name = named
                    .get_field_by_name("name")
                    .and_then(|n| n.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let value = named
                    .get_field_by_name("value")
                    .map(|v| value_json(&v, depth))
                    .transpose()?
                    .unwrap_or(Value::Null);
                obj.insert(name, value);
            }
        } else {
            obj.insert(json_key(field.name()), value_json(value, depth)?);
        }
    }
    Ok(Value::Object(obj))
}

fn list_json(msg: &DynamicMessage, name: &str, depth: usize) -> Result<Vec<Value>, ProtoError> {
    match msg.get_field_by_name(name) {
        Some(v) => match value_json(&v, depth)? {
            Value::Array(items) => Ok(items),
            other => Ok(vec![other]),
        },
        None => Ok(Vec::new()),
    }
}

fn value_json(value: &ProtoValue, depth: usize) -> Result<Value, ProtoError> {
    Ok(match value {
        ProtoValue::Message(m) => from_message(m, depth + 1)?,
        ProtoValue::List(items) => Value::Array(
            items
                .iter()
                .map(|v| value_json(v, depth))
                .collect::<Result<_, _>>()?,
        ),
        ProtoValue::String(s) => Value::String(s.clone()),
        ProtoValue::Bool(b) => Value::Bool(*b),
        ProtoValue::I64(i) => Value::from(*i),
        ProtoValue::F64(f) => Value::from(*f),
        _ => Value::Null,
    })
}

#[cfg(test)]
#[path = "openapi_v2_tests.rs"]
mod tests;
