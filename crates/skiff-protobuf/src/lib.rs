//! Kubernetes protobuf bodies (`application/vnd.kubernetes.protobuf`) to and
//! from the JSON objects the API server handles. No I/O.
//!
//! kubectl's typed commands (`create configmap|secret|deployment|job|…`,
//! `create token`) and every client-go typed client send protobuf and do not
//! fall back to JSON (kubectl's unstructured paths, `run`, `expose`, `apply`,
//! send JSON). [`decode`] turns such a body into the object
//! kube-apiserver would have decoded, as Go would print it in JSON: the same
//! field names, the same JSON shapes for the special types (`Time`,
//! `MicroTime`, `Duration`, `Quantity`, `IntOrString`, `RawExtension`,
//! `FieldsV1`, bytes as base64) and the same `omitempty` / pointer rules. [`encode`]
//! goes the other way for clients that accept only protobuf, writing the bytes
//! Go's generated marshallers write.
//!
//! The wire format (upstream `runtime/serializer/protobuf/protobuf.go`): the
//! 4-byte prefix `k8s\0`, then a `runtime.Unknown` message whose `typeMeta`
//! names the object's `apiVersion` and `kind` and whose `raw` holds the
//! object's own protobuf bytes. The schemas are upstream's v1.33
//! `generated.proto` files (vendored under `proto/`, compiled at build time);
//! the Go facts protobuf does not carry (pointer or value, `omitempty`,
//! inlined structs) are a table in `src/go_tags.rs`.

mod from_json;
mod go_tags;
mod gotime;
pub mod openapi_v2;
mod schema;
mod to_json;
mod wire;

use prost_reflect::DynamicMessage;
use serde_json::Value;

/// The media type of Kubernetes protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The 4 bytes every Kubernetes protobuf body starts with.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// How deep messages (and protobuf objects embedded in `RawExtension`s) may
/// nest before a body is refused; the deepest v1.33 type needs about 15.
pub const MAX_DEPTH: usize = 64;

/// Why a body could not be decoded or an object encoded. Every variant is the
/// client's fault (a 400 upstream) except [`ProtoError::Schema`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtoError {
    /// An empty body.
    #[error("empty data")]
    Empty,
    /// The body does not start with `k8s\0`.
    #[error(
        "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]"
    )]
    BadMagic,
    /// The body is only the prefix.
    #[error("empty body")]
    EmptyBody,
    /// The envelope names no kind.
    #[error("Object 'Kind' is missing in '{0}'")]
    MissingKind(String),
    /// The envelope names no version.
    #[error("Object 'apiVersion' is missing in '{0}'")]
    MissingVersion(String),
    /// No schema for this `apiVersion` and `kind`.
    #[error("no kind {kind:?} is registered for version {api_version:?}")]
    UnknownKind {
        /// The envelope's (or object's) `apiVersion`.
        api_version: String,
        /// The envelope's (or object's) `kind`.
        kind: String,
    },
    /// The bytes are not a valid encoding of the message.
    #[error("malformed protobuf {message}: {reason}")]
    Malformed {
        /// Full protobuf name of the message being read.
        message: String,
        /// What was wrong.
        reason: String,
    },
    /// A field holds a value its Go type cannot take (or, encoding, a JSON
    /// value of the wrong shape).
    #[error("invalid value for {field}: {reason}")]
    InvalidValue {
        /// `Message.field` (protobuf names).
        field: String,
        /// What was wrong.
        reason: String,
    },
    /// Messages nest deeper than [`MAX_DEPTH`].
    #[error("object nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// The compiled-in schemas could not be loaded (a build defect).
    #[error("protobuf schemas unavailable: {0}")]
    Schema(String),
}

/// Decodes a Kubernetes protobuf body into the JSON object kube-apiserver
/// would have decoded, with `apiVersion` and `kind` taken from the envelope.
pub fn decode(body: &[u8]) -> Result<Value, ProtoError> {
    decode_at(body, None, 0)
}

/// Like [`decode`], but fills a missing `apiVersion` or `kind` in the
/// envelope from the endpoint's, as upstream does (`copyKindDefaults`).
pub fn decode_with_defaults(
    body: &[u8],
    api_version: &str,
    kind: &str,
) -> Result<Value, ProtoError> {
    decode_at(body, Some((api_version, kind)), 0)
}

/// Encodes a JSON object (with `apiVersion` and `kind`) as a Kubernetes
/// protobuf body, byte for byte as Go's marshallers would. JSON fields the
/// schema does not know are dropped, as upstream's decoding would drop them.
pub fn encode(obj: &Value) -> Result<Vec<u8>, ProtoError> {
    let schema = schema::get()?;
    let field = |name: &str| obj.get(name).and_then(Value::as_str).unwrap_or_default();
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    if kind.is_empty() {
        return Err(ProtoError::MissingKind(obj_summary(api_version, kind)));
    }
    let desc = schema.message_for(api_version, kind)?;
    let raw = from_json::Encoder { schema }.message(&desc, Some(obj), 0)?;
    Ok(wire::envelope(api_version, kind, &raw))
}

/// Whether objects of this `apiVersion` and `kind` have a protobuf schema here
/// (upstream answers 415 to protobuf for the others, e.g. custom resources).
pub fn supports(api_version: &str, kind: &str) -> bool {
    schema::get().is_ok_and(|s| s.message_for(api_version, kind).is_ok())
}

/// Whether a `Content-Type` header value names the Kubernetes protobuf media
/// type (parameters such as `; charset` are ignored).
pub fn is_media_type(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(MEDIA_TYPE))
}

fn obj_summary(api_version: &str, kind: &str) -> String {
    format!("{{\"apiVersion\":{api_version:?},\"kind\":{kind:?}}}")
}

/// Decodes an envelope `depth` levels down (a `RawExtension` can hold one).
pub(crate) fn decode_at(
    body: &[u8],
    defaults: Option<(&str, &str)>,
    depth: usize,
) -> Result<Value, ProtoError> {
    if depth > MAX_DEPTH {
        return Err(ProtoError::TooDeep);
    }
    let schema = schema::get()?;
    if body.is_empty() {
        return Err(ProtoError::Empty);
    }
    let data = body.strip_prefix(MAGIC).ok_or(ProtoError::BadMagic)?;
    if data.is_empty() {
        return Err(ProtoError::EmptyBody);
    }
    let unknown = wire::read_unknown(data)?;
    let (api_version, kind) = copy_kind_defaults(&unknown.api_version, &unknown.kind, defaults);
    if kind.is_empty() {
        return Err(ProtoError::MissingKind(obj_summary(&api_version, &kind)));
    }
    if api_version.is_empty() || api_version.ends_with('/') {
        return Err(ProtoError::MissingVersion(obj_summary(&api_version, &kind)));
    }
    let desc = schema.message_for(&api_version, &kind)?;
    let msg = DynamicMessage::decode(desc.clone(), unknown.raw.as_slice()).map_err(|e| {
        ProtoError::Malformed {
            message: desc.full_name().to_owned(),
            reason: e.to_string(),
        }
    })?;
    let mut obj = to_json::Decoder { schema }.message(&msg, depth)?;
    if let Value::Object(map) = &mut obj {
        map.insert("apiVersion".into(), Value::String(api_version));
        map.insert("kind".into(), Value::String(kind));
    }
    Ok(obj)
}

/// Upstream's `copyKindDefaults`: a missing kind, or a missing group and
/// version, come from the endpoint's.
fn copy_kind_defaults(
    api_version: &str,
    kind: &str,
    defaults: Option<(&str, &str)>,
) -> (String, String) {
    let Some((default_version, default_kind)) = defaults else {
        return (api_version.to_owned(), kind.to_owned());
    };
    let kind = if kind.is_empty() { default_kind } else { kind };
    let split = |av: &str| -> (String, String) {
        match av.split_once('/') {
            Some((g, v)) => (g.to_owned(), v.to_owned()),
            None => (String::new(), av.to_owned()),
        }
    };
    let (mut group, mut version) = split(api_version);
    let (dgroup, dversion) = split(default_version);
    if version.is_empty() && group.is_empty() {
        group = dgroup;
        version = dversion;
    } else if version.is_empty() && group == dgroup {
        version = dversion;
    }
    let api_version = if group.is_empty() {
        version
    } else {
        format!("{group}/{version}")
    };
    (api_version, kind.to_owned())
}

#[cfg(test)]
mod tests;
