//! Request bodies as JSON objects: JSON or YAML (`application/yaml`), with
//! the duplicate fields upstream's strict decoders report
//! (`duplicate field "replicas"` for JSON, `line 12: key "replicas" already
//! set in map` for YAML; the last value wins, as upstream).

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use skiff_api::status::ApiError;

/// The encoding of a create or update body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyFormat {
    /// `application/json` (and protobuf, converted to JSON before).
    #[default]
    Json,
    /// `application/yaml`.
    Yaml,
}

impl BodyFormat {
    /// The format of a `Content-Type` header value.
    pub fn from_content_type(content_type: &str) -> BodyFormat {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        if media.eq_ignore_ascii_case("application/yaml") {
            BodyFormat::Yaml
        } else {
            BodyFormat::Json
        }
    }
}

/// A decoded body and the duplicate-field messages found on the way.
#[derive(Debug)]
pub struct Decoded {
    /// The body as a JSON value.
    pub value: Value,
    /// One message per duplicate field, in document order.
    pub duplicates: Vec<String>,
}

/// Decodes a body that must be a JSON object (in JSON or YAML).
pub fn decode_object(body: &[u8], format: BodyFormat) -> Result<Decoded, ApiError> {
    let decoded = match format {
        BodyFormat::Json => decode_json(body)?,
        BodyFormat::Yaml => decode_yaml(body)?,
    };
    if !decoded.value.is_object() {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON object".into(),
        ));
    }
    Ok(decoded)
}

/// The 400 for a body that does not decode (upstream's wording).
pub fn unrecognized(e: serde_json::Error) -> ApiError {
    ApiError::BadRequest(format!(
        "the object provided is unrecognized (must be of type JSON): {e}"
    ))
}

/// Decodes JSON, noting duplicate keys (the last one wins), in one pass.
pub fn decode_json(body: &[u8]) -> Result<Decoded, ApiError> {
    let mut duplicates = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = ValueSeed {
        found: &mut duplicates,
    }
    .deserialize(&mut de)
    .map_err(unrecognized)?;
    de.end().map_err(unrecognized)?;
    Ok(Decoded { value, duplicates })
}

/// Builds a JSON value as serde_json's own visitor does, noting repeated
/// keys on the way.
struct ValueSeed<'a> {
    found: &'a mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                self.found.push(format!("duplicate field {key:?}"));
            }
            let value = map.next_value_seed(ValueSeed {
                found: &mut *self.found,
            })?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(v) = seq.next_element_seed(ValueSeed {
            found: &mut *self.found,
        })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }
}

/// `duplicate field "k"` for every key repeated within one JSON object of
/// `body` (nothing for malformed JSON: decoding reports that).
pub fn duplicate_fields(body: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    let seed = DupSeed { found: &mut found };
    if seed.deserialize(&mut de).is_err() {
        return Vec::new();
    }
    found
}

struct DupSeed<'a> {
    found: &'a mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for DupSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DupSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                self.found.push(format!("duplicate field {key:?}"));
            }
            map.next_value_seed(DupSeed {
                found: &mut *self.found,
            })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(DupSeed {
                found: &mut *self.found,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        IgnoredAny::deserialize(d).map(drop)
    }
}

use serde::Deserialize as _;

/// Decodes YAML; a repeated key is reported with its line (the last value
/// wins), as upstream's YAML decoder does.
pub fn decode_yaml(body: &[u8]) -> Result<Decoded, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::BadRequest(format!("the request body is not valid UTF-8: {e}")))?;
    let strict = serde_saphyr::options! { duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error };
    let mut duplicates = Vec::new();
    let value = match serde_saphyr::from_str_with_options::<Value>(text, strict) {
        Ok(value) => value,
        Err(e) if duplicate_key(&e).is_some() => {
            if let Some((line, key)) = duplicate_key(&e) {
                duplicates.push(format!("line {line}: key {key:?} already set in map"));
            }
            let lenient = serde_saphyr::options! {
                duplicate_keys: serde_saphyr::DuplicateKeyPolicy::LastWins
            };
            serde_saphyr::from_str_with_options::<Value>(text, lenient).map_err(yaml_error)?
        }
        Err(e) => return Err(yaml_error(e)),
    };
    Ok(Decoded { value, duplicates })
}

/// The line and key of a duplicate-key error (possibly wrapped).
fn duplicate_key(mut e: &serde_saphyr::Error) -> Option<(u64, String)> {
    loop {
        match e {
            serde_saphyr::Error::WithSnippet { error, .. } => e = error,
            serde_saphyr::Error::DuplicateMappingKey { key, location } => {
                return Some((location.line(), key.clone().unwrap_or_default()));
            }
            _ => return None,
        }
    }
}

fn yaml_error(e: serde_saphyr::Error) -> ApiError {
    ApiError::BadRequest(format!(
        "the object provided is unrecognized (must be of type YAML): {e}"
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn json_duplicates_are_found_at_every_depth() {
        let body = br#"{"spec": {"paused": true, "paused": false,
            "template": {"spec": {"containers": [{"name": "a", "imagePullPolicy": "Always", "imagePullPolicy": "Never"}]}}}}"#;
        let d = decode_object(body, BodyFormat::Json).unwrap();
        assert_eq!(
            d.duplicates,
            [
                "duplicate field \"paused\"",
                "duplicate field \"imagePullPolicy\""
            ]
        );
        assert_eq!(d.value["spec"]["paused"], false, "the last value wins");
        assert!(duplicate_fields(b"{\"a\": 1, \"b\": [1, {\"c\": 2}]}").is_empty());
        assert!(duplicate_fields(b"{\"a\": ").is_empty());
    }

    #[test]
    fn one_pass_json_decoding_matches_serde_json() {
        let body = br#"{"a": [1, -2, 3.5, 1e300, 18446744073709551615, null, true],
            "b": {"s": "\u00e9\n", "n": {}}, "c": []}"#;
        let d = decode_json(body).unwrap();
        let want: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(d.value, want);
        assert!(d.duplicates.is_empty());
        for bad in [&b"{\"a\": 1} x"[..], b"{\"a\" 1}", b"[1,]", b""] {
            let ours = decode_json(bad).unwrap_err().to_string();
            let theirs = serde_json::from_slice::<Value>(bad)
                .unwrap_err()
                .to_string();
            assert_eq!(
                ours,
                format!("the object provided is unrecognized (must be of type JSON): {theirs}")
            );
        }
    }

    #[test]
    fn yaml_bodies_decode_with_line_numbers_for_duplicates() {
        let body =
            b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: one\n  a: two\n";
        let d = decode_object(body, BodyFormat::Yaml).unwrap();
        assert_eq!(d.value["data"]["a"], "two");
        assert_eq!(d.duplicates, ["line 7: key \"a\" already set in map"]);
        let plain = decode_object(b"kind: ConfigMap\ndata: {n: '1'}\n", BodyFormat::Yaml).unwrap();
        assert_eq!(plain.value["data"]["n"], "1");
        assert!(plain.duplicates.is_empty());
    }

    #[test]
    fn bad_bodies_are_bad_requests() {
        for (body, format) in [
            (&b"[1, 2]"[..], BodyFormat::Json),
            (b"{", BodyFormat::Json),
            (b"- a\n- b\n", BodyFormat::Yaml),
            (b"a: [\n", BodyFormat::Yaml),
            (b"\xff\xfe", BodyFormat::Yaml),
        ] {
            assert!(
                matches!(decode_object(body, format), Err(ApiError::BadRequest(_))),
                "{body:?}"
            );
        }
        assert_eq!(
            BodyFormat::from_content_type("application/yaml; charset=utf-8"),
            BodyFormat::Yaml
        );
    }
}
