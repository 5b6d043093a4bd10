//! ConfigMaps and Secrets: `stringData` folded into `data`, base64 payloads
//! checked at decode time, key and size rules, the type-specific keys of
//! Secrets, and `immutable`.

use serde_json::{Map, Value};

use super::util::{FIELD_IMMUTABLE, default_str, obj, str_of};
use crate::field::{BadValue, Error, ErrorList, Path};
use crate::validation::{max_len_error, regex_error};

/// Upstream's `MaxSecretSize`, also the limit of a ConfigMap's data.
const MAX_SECRET_SIZE: usize = 1024 * 1024;

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, as Go's `base64.StdEncoding`.
pub(in crate::kinds) fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard padded base64 as Go does (CR and LF ignored); the error
/// is the index of the offending input byte.
pub(in crate::kinds) fn base64_decode(s: &str) -> Result<Vec<u8>, usize> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let mut quantum = [0u8; 4];
    let mut filled = 0usize;
    let mut start = 0usize;
    let mut padded = 0usize;
    for (i, c) in s.bytes().enumerate() {
        if c == b'\r' || c == b'\n' {
            continue;
        }
        if padded > 0 {
            // After the first '=' only a second '=' (completing the quantum) may follow.
            if c == b'=' && filled + padded < 4 {
                padded += 1;
                continue;
            }
            return Err(i);
        }
        if filled == 0 {
            start = i;
        }
        if c == b'=' {
            if filled < 2 {
                return Err(i);
            }
            padded = 1;
            continue;
        }
        let Some(v) = B64.iter().position(|&b| b == c) else {
            return Err(i);
        };
        quantum[filled] = v as u8;
        filled += 1;
        if filled == 4 {
            let n = quantum
                .iter()
                .fold(0u32, |acc, &q| (acc << 6) | u32::from(q));
            out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
            filled = 0;
        }
    }
    if padded > 0 {
        if filled + padded != 4 {
            return Err(s.len());
        }
        let mut n = 0u32;
        for &q in &quantum[..filled] {
            n = (n << 6) | u32::from(q);
        }
        n <<= 6 * (4 - filled);
        out.push((n >> 16) as u8);
        if filled == 3 {
            out.push((n >> 8) as u8);
        }
        return Ok(out);
    }
    if filled != 0 {
        return Err(start);
    }
    Ok(out)
}

/// Checks and canonicalises the base64 values of `obj[key]`.
fn normalize_bytes_map(kind: &str, obj: &mut Value, key: &str) -> Result<(), String> {
    let Some(map) = obj.get_mut(key).and_then(Value::as_object_mut) else {
        return Ok(());
    };
    for v in map.values_mut() {
        let Some(s) = v.as_str() else {
            continue;
        };
        let bytes = base64_decode(s).map_err(|i| {
            format!("{kind} in version \"v1\" cannot be handled as a {kind}: illegal base64 data at input byte {i}")
        })?;
        *v = Value::String(base64_encode(&bytes));
    }
    Ok(())
}

/// Decoding of a Secret: `data` must be base64, and `stringData` (write
/// only) is merged into `data`, overriding keys present in both.
pub(super) fn normalize_secret(secret: &mut Value) -> Result<(), String> {
    normalize_bytes_map("Secret", secret, "data")?;
    let Some(m) = secret.as_object_mut() else {
        return Ok(());
    };
    if let Some(Value::Object(string_data)) = m.remove("stringData") {
        let mut data = match m.remove("data") {
            Some(Value::Object(d)) => d,
            _ => Map::new(),
        };
        for (k, v) in string_data {
            let s = match &v {
                Value::String(s) => s.as_str(),
                Value::Null => "",
                other => {
                    let ty = match other {
                        Value::Bool(_) => "bool",
                        Value::Number(_) => "number",
                        Value::Array(_) => "array",
                        _ => "object",
                    };
                    return Err(format!(
                        "Secret in version \"v1\" cannot be handled as a Secret: json: cannot unmarshal {ty} into Go struct field Secret.stringData of type string"
                    ));
                }
            };
            data.insert(k, Value::String(base64_encode(s.as_bytes())));
        }
        m.insert("data".into(), Value::Object(data));
    }
    Ok(())
}

/// Decoding of a ConfigMap: `binaryData` must be base64.
pub(super) fn normalize_config_map(cm: &mut Value) -> Result<(), String> {
    normalize_bytes_map("ConfigMap", cm, "binaryData")
}

/// `SetDefaults_Secret`: type `Opaque`.
pub(super) fn default_secret(secret: &mut Value) {
    default_str(secret, "type", "Opaque");
}

/// Upstream's `IsConfigMapKey`.
pub(in crate::kinds) fn config_key_errors(key: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if key.len() > 253 {
        errs.push(max_len_error(253));
    }
    let charset_ok = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !charset_ok {
        errs.push(regex_error(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            "[-._a-zA-Z0-9]+",
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    if key == "." {
        errs.push("must not be '.'".to_owned());
    } else if key == ".." {
        errs.push("must not be '..'".to_owned());
    } else if key.starts_with("..") {
        errs.push("must not start with '..'".to_owned());
    }
    errs
}

/// The decoded length of a base64 value (0 when it does not decode).
fn decoded_len(v: &Value) -> usize {
    v.as_str()
        .and_then(|s| base64_decode(s).ok())
        .map_or(0, |b| b.len())
}

pub(super) fn validate_config_map(cm: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    let data = obj(cm, "data");
    let binary = obj(cm, "binaryData");
    let mut total = 0usize;
    for (key, value) in data.into_iter().flatten() {
        let p = Path::new("data").key(key);
        for msg in config_key_errors(key) {
            errs.push(Error::invalid(&p, key.as_str(), &msg));
        }
        if binary.is_some_and(|b| b.contains_key(key)) {
            errs.push(Error::invalid(
                &p,
                key.as_str(),
                "duplicate of key present in binaryData",
            ));
        }
        total += value.as_str().map_or(0, str::len);
    }
    for (key, value) in binary.into_iter().flatten() {
        let p = Path::new("binaryData").key(key);
        for msg in config_key_errors(key) {
            errs.push(Error::invalid(&p, key.as_str(), &msg));
        }
        total += decoded_len(value);
    }
    if total > MAX_SECRET_SIZE {
        // The empty path: the error is about the whole object.
        errs.push(Error::too_long(&Path::new(""), Some(MAX_SECRET_SIZE)));
    }
    errs
}

fn is_immutable(v: &Value) -> bool {
    v.get("immutable").and_then(Value::as_bool) == Some(true)
}

/// The `immutable: true` rules shared by ConfigMaps and Secrets.
fn immutable_payload(new: &Value, old: &Value, fields: &[&str], errs: &mut ErrorList) {
    if !is_immutable(old) {
        return;
    }
    if !is_immutable(new) {
        errs.push(Error::forbidden(
            &Path::new("immutable"),
            "field is immutable when `immutable` is set",
        ));
    }
    let empty = Value::Object(Map::new());
    for f in fields {
        let norm = |v: &Value| {
            v.get(*f)
                .filter(|x| !x.is_null())
                .cloned()
                .unwrap_or_else(|| empty.clone())
        };
        if norm(new) != norm(old) {
            errs.push(Error::forbidden(
                &Path::new(f),
                "field is immutable when `immutable` is set",
            ));
        }
    }
}

pub(super) fn validate_config_map_update(new: &Value, old: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    immutable_payload(new, old, &["data", "binaryData"], &mut errs);
    errs.extend(validate_config_map(new));
    errs
}

fn has_key(data: Option<&Map<String, Value>>, key: &str) -> bool {
    data.is_some_and(|d| d.contains_key(key))
}

pub(super) fn validate_secret(secret: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    let data_path = Path::new("data");
    let data = obj(secret, "data");
    let mut total = 0usize;
    for (key, value) in data.into_iter().flatten() {
        for msg in config_key_errors(key) {
            errs.push(Error::invalid(&data_path.key(key), key.as_str(), &msg));
        }
        total += decoded_len(value);
    }
    if total > MAX_SECRET_SIZE {
        errs.push(Error::too_long(&data_path, Some(MAX_SECRET_SIZE)));
    }
    let decoded = |key: &str| {
        data.and_then(|d| d.get(key))
            .and_then(Value::as_str)
            .and_then(|s| base64_decode(s).ok())
    };
    let json_key = |key: &str, errs: &mut ErrorList| {
        if !has_key(data, key) {
            errs.push(Error::required(&data_path.key(key), ""));
            return;
        }
        let bytes = decoded(key).unwrap_or_default();
        if let Err(e) = serde_json::from_slice::<Map<String, Value>>(&bytes) {
            errs.push(Error::invalid(
                &data_path.key(key),
                "<secret contents redacted>",
                &e.to_string(),
            ));
        }
    };
    match str_of(secret, "type").unwrap_or_default() {
        "kubernetes.io/service-account-token" => {
            let name = secret
                .pointer("/metadata/annotations/kubernetes.io~1service-account.name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if name.is_empty() {
                errs.push(Error::required(
                    &Path::new("metadata")
                        .child("annotations")
                        .key("kubernetes.io/service-account.name"),
                    "",
                ));
            }
        }
        "kubernetes.io/dockercfg" => json_key(".dockercfg", &mut errs),
        "kubernetes.io/dockerconfigjson" => json_key(".dockerconfigjson", &mut errs),
        "kubernetes.io/basic-auth" if !has_key(data, "username") && !has_key(data, "password") => {
            errs.push(Error::required(&data_path.key("username"), ""));
            errs.push(Error::required(&data_path.key("password"), ""));
        }
        "kubernetes.io/ssh-auth" if decoded("ssh-privatekey").is_none_or(|b| b.is_empty()) => {
            errs.push(Error::required(&data_path.key("ssh-privatekey"), ""));
        }
        "kubernetes.io/tls" => {
            for key in ["tls.crt", "tls.key"] {
                if !has_key(data, key) {
                    errs.push(Error::required(&data_path.key(key), ""));
                }
            }
        }
        _ => {}
    }
    errs
}

pub(super) fn validate_secret_update(new: &Value, old: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    let (nt, ot) = (str_of(new, "type"), str_of(old, "type"));
    if nt != ot {
        errs.push(Error::invalid(
            &Path::new("type"),
            nt.map_or(BadValue::Str(String::new()), BadValue::from),
            FIELD_IMMUTABLE,
        ));
    }
    immutable_payload(new, old, &["data"], &mut errs);
    errs.extend(validate_secret(new));
    errs
}

/// The ServiceAccount strategy's `cleanSecretReferences`: a reference to a
/// token secret keeps only its name.
pub(super) fn clean_secret_references(sa: &mut Value) {
    let Some(secrets) = sa.get_mut("secrets").and_then(Value::as_array_mut) else {
        return;
    };
    for secret in secrets.iter_mut() {
        let name = secret.get("name").cloned();
        let mut clean = Map::new();
        if let Some(name) = name.filter(|n| !n.is_null()) {
            clean.insert("name".into(), name);
        }
        *secret = Value::Object(clean);
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
