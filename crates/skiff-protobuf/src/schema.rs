//! The compiled-in descriptors, the `apiVersion` → protobuf package map, the
//! special types with their own JSON forms, and the Go struct-tag facts.

use std::collections::HashMap;
use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, MessageDescriptor};

use crate::ProtoError;
use crate::go_tags::GO_TAGS;

/// The `FileDescriptorSet` build.rs compiled from `proto/`.
static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/k8s.fds"));

const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";

/// Served API groups and the directory (protobuf package segment) upstream
/// keeps each in under `k8s.io/api/`.
const GROUPS: &[(&str, &str)] = &[
    ("", "core"),
    ("apps", "apps"),
    ("authentication.k8s.io", "authentication"),
    ("autoscaling", "autoscaling"),
    ("batch", "batch"),
    ("certificates.k8s.io", "certificates"),
    ("coordination.k8s.io", "coordination"),
    ("discovery.k8s.io", "discovery"),
    ("events.k8s.io", "events"),
    ("networking.k8s.io", "networking"),
    ("policy", "policy"),
    ("rbac.authorization.k8s.io", "rbac"),
    ("scheduling.k8s.io", "scheduling"),
    ("storage.k8s.io", "storage"),
];

/// meta/v1 kinds every group version carries (`metav1.AddToGroupVersion`).
const META_KINDS: &[&str] = &[
    "APIGroup",
    "APIGroupList",
    "APIResourceList",
    "APIVersions",
    "CreateOptions",
    "DeleteOptions",
    "GetOptions",
    "List",
    "ListOptions",
    "PatchOptions",
    "Status",
    "UpdateOptions",
    "WatchEvent",
];

/// Fields whose JSON name is not their protobuf name (go-to-protobuf derived
/// these two from the Go field names `APIGroup` and `UID`).
const RENAMES: &[(&str, &str, &str)] = &[
    (
        "k8s.io.api.authentication.v1.BoundObjectReference",
        "uID",
        "uid",
    ),
    (
        "k8s.io.api.networking.v1.IngressClassParametersReference",
        "aPIGroup",
        "apiGroup",
    ),
];

/// Messages with a JSON form of their own (Go `MarshalJSON` methods or named
/// slice types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Special {
    /// `metav1.Time`: RFC 3339 seconds, `null` when zero.
    Time,
    /// `metav1.MicroTime`: RFC 3339 with 6 fractional digits, `null` when zero.
    MicroTime,
    /// `metav1.Duration`: Go's `time.Duration.String()`.
    Duration,
    /// `resource.Quantity`: its string.
    Quantity,
    /// `intstr.IntOrString`: a number or a string.
    IntOrString,
    /// `runtime.RawExtension`: embedded JSON (or a nested protobuf object).
    RawExtension,
    /// `metav1.FieldsV1`: embedded JSON.
    FieldsV1,
    /// A Go named `[]string` (`ExtraValue`, `Verbs`): a JSON array.
    StringList,
}

/// How Go's struct tags shape one field; see [`crate::go_tags`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tag {
    /// Not listed: a value scalar with `omitempty`, a collection with
    /// `omitempty`, or a pointer message with `omitempty`.
    Default,
    /// `P`: a pointer scalar with `omitempty`.
    Pointer,
    /// `R`: a value scalar without `omitempty`.
    Required,
    /// `N`: no `omitempty` on a pointer, bytes, slice or map: `null` when unset.
    NoOmit,
    /// `V`: a value (non-pointer) struct.
    Value,
    /// `I`: an embedded struct inlined into its parent's JSON.
    Inline,
}

impl Tag {
    fn parse(letter: &str) -> Option<Tag> {
        Some(match letter {
            "P" => Tag::Pointer,
            "R" => Tag::Required,
            "N" => Tag::NoOmit,
            "V" => Tag::Value,
            "I" => Tag::Inline,
            _ => return None,
        })
    }
}

/// Descriptors plus the facts the walkers need, loaded once.
#[derive(Debug)]
pub(crate) struct Schema {
    pool: DescriptorPool,
    tags: HashMap<(&'static str, &'static str), Tag>,
    unknown: MessageDescriptor,
}

static SCHEMA: LazyLock<Result<Schema, String>> = LazyLock::new(Schema::load);

/// The loaded schema; an error only if the compiled-in data is broken.
pub(crate) fn get() -> Result<&'static Schema, ProtoError> {
    SCHEMA.as_ref().map_err(|e| ProtoError::Schema(e.clone()))
}

impl Schema {
    fn load() -> Result<Schema, String> {
        let pool = DescriptorPool::decode(DESCRIPTORS).map_err(|e| e.to_string())?;
        let mut tags = HashMap::new();
        for (message, fields) in GO_TAGS {
            for entry in fields.split_whitespace() {
                let tag = entry
                    .split_once(':')
                    .and_then(|(field, letter)| Some((field, Tag::parse(letter)?)));
                let Some((field, tag)) = tag else {
                    return Err(format!("bad go_tags entry {entry:?} of {message}"));
                };
                tags.insert((*message, field), tag);
            }
        }
        let unknown = pool
            .get_message_by_name("k8s.io.apimachinery.pkg.runtime.Unknown")
            .ok_or("runtime.Unknown is missing from the descriptors")?;
        Ok(Schema {
            pool,
            tags,
            unknown,
        })
    }

    /// The descriptor pool.
    #[cfg(test)]
    pub(crate) fn pool(&self) -> &DescriptorPool {
        &self.pool
    }

    /// `runtime.Unknown`, the envelope.
    pub(crate) fn unknown(&self) -> &MessageDescriptor {
        &self.unknown
    }

    /// The message for an object's `apiVersion` and `kind`.
    pub(crate) fn message_for(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<MessageDescriptor, ProtoError> {
        let unknown = || ProtoError::UnknownKind {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
        };
        // A kind is one identifier; anything else could address a nested name.
        if kind.is_empty() || !kind.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(unknown());
        }
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        if version.is_empty() || !version.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(unknown());
        }
        let package = GROUPS
            .iter()
            .find(|(g, _)| *g == group)
            .map(|(_, dir)| format!("k8s.io.api.{dir}.{version}"));
        if let Some(m) = package.and_then(|p| self.pool.get_message_by_name(&format!("{p}.{kind}")))
        {
            return Ok(m);
        }
        if version == "v1"
            && META_KINDS.contains(&kind)
            && let Some(m) = self.pool.get_message_by_name(&format!("{META}.{kind}"))
        {
            return Ok(m);
        }
        Err(unknown())
    }

    /// The Go struct-tag fact for a field.
    pub(crate) fn tag(&self, message: &str, field: &str) -> Tag {
        self.tags
            .get(&(message, field))
            .copied()
            .unwrap_or(Tag::Default)
    }

    /// Every `(message, field)` with a listed tag, for the consistency test.
    #[cfg(test)]
    pub(crate) fn tagged_fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.tags.keys().map(|(m, f)| (*m, *f))
    }
}

/// The JSON name of a protobuf field.
pub(crate) fn json_name<'a>(message: &str, field: &'a str) -> &'a str {
    RENAMES
        .iter()
        .find(|(m, f, _)| *m == message && *f == field)
        .map_or(field, |(_, _, json)| *json)
}

/// The special JSON form of a message, if it has one.
pub(crate) fn special(full_name: &str) -> Option<Special> {
    Some(match full_name {
        "k8s.io.apimachinery.pkg.apis.meta.v1.Time" => Special::Time,
        "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime" => Special::MicroTime,
        "k8s.io.apimachinery.pkg.apis.meta.v1.Duration" => Special::Duration,
        "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1" => Special::FieldsV1,
        "k8s.io.apimachinery.pkg.apis.meta.v1.Verbs"
        | "k8s.io.api.authentication.v1.ExtraValue"
        | "k8s.io.api.certificates.v1.ExtraValue" => Special::StringList,
        "k8s.io.apimachinery.pkg.api.resource.Quantity"
        | "k8s.io.apimachinery.pkg.api.resource.QuantityValue" => Special::Quantity,
        "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => Special::IntOrString,
        "k8s.io.apimachinery.pkg.runtime.RawExtension" => Special::RawExtension,
        _ => return None,
    })
}
