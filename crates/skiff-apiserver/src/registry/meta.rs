//! Object metadata rules applied to every resource around the per-kind
//! strategy, as upstream's `rest.BeforeCreate` / `BeforeUpdate` do: names,
//! namespaces, uid, creation timestamp, generation, resourceVersion.

use serde_json::{Map, Value};
use skiff_api::field::{Error as FieldError, ErrorList, Path};
use skiff_api::resources::ResourceInfo;
use skiff_api::status::ApiError;
use skiff_api::validation;

/// Characters of generated name suffixes (upstream's: no vowels, no
/// look-alikes).
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// Length of a generated name suffix.
const SUFFIX_LEN: usize = 5;
/// Longest name prefix kept before a generated suffix.
const MAX_GENERATED_PREFIX: usize = 63 - SUFFIX_LEN;

/// The object's `metadata` map, created if missing.
pub fn meta_mut(obj: &mut Value) -> Result<&mut Map<String, Value>, ApiError> {
    let map = obj
        .as_object_mut()
        .ok_or_else(|| ApiError::BadRequest("the request body must be a JSON object".into()))?;
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if meta.is_null() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut()
        .ok_or_else(|| ApiError::BadRequest("metadata must be an object".into()))
}

/// A string field of `metadata`, or "".
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Checks `apiVersion` and `kind` of a request body against the resource
/// served at the path, filling them in when absent (as upstream's decoder
/// does with the path's defaults).
pub fn check_type(obj: &mut Value, info: &ResourceInfo) -> Result<(), ApiError> {
    let map = obj
        .as_object_mut()
        .ok_or_else(|| ApiError::BadRequest("the request body must be a JSON object".into()))?;
    let expected_version = info.api_version();
    match map.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("apiVersion".into(), Value::String(expected_version.clone()));
        }
        Some(v) if v == expected_version => {}
        Some(v) => {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({v}) does not match the expected API version ({expected_version})"
            )));
        }
    }
    match map.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("kind".into(), Value::String(info.kind.to_owned()));
        }
        Some(k) if k == info.kind => {}
        Some(k) => {
            return Err(ApiError::BadRequest(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                info.kind
            )));
        }
    }
    Ok(())
}

/// Makes the body's namespace agree with the path's: filled in when absent,
/// an error when different, removed for cluster-scoped kinds.
pub fn check_namespace(obj: &mut Value, namespace: Option<&str>) -> Result<(), ApiError> {
    let meta = meta_mut(obj)?;
    match (namespace, meta.get("namespace").and_then(Value::as_str)) {
        (Some(ns), None | Some("")) => {
            meta.insert("namespace".into(), Value::String(ns.to_owned()));
        }
        (Some(ns), Some(given)) if given != ns => {
            return Err(ApiError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request"
                    .into(),
            ));
        }
        (None, Some(_)) => {
            meta.remove("namespace");
        }
        _ => {}
    }
    Ok(())
}

/// Fills `metadata.name` from `generateName` when needed.
pub fn generate_name(obj: &mut Value) -> Result<(), ApiError> {
    let meta = meta_mut(obj)?;
    let has_name = meta
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    if has_name {
        return Ok(());
    }
    let Some(prefix) = meta.get("generateName").and_then(Value::as_str) else {
        return Ok(());
    };
    if prefix.is_empty() {
        return Ok(());
    }
    let mut name: String = prefix.chars().take(MAX_GENERATED_PREFIX).collect();
    for _ in 0..SUFFIX_LEN {
        let i = rand::random_range(0..SUFFIX_ALPHABET.len());
        name.push(char::from(SUFFIX_ALPHABET[i]));
    }
    meta.insert("name".into(), Value::String(name));
    Ok(())
}

/// The common metadata problems of an object about to be stored: name rules
/// of the kind, labels and annotations.
pub fn validate_errors(obj: &Value, info: &ResourceInfo) -> ErrorList {
    let name = meta_str(obj, "name");
    let mut errors = ErrorList::new();
    let path = Path::new("metadata");
    if name.is_empty() {
        if meta_str(obj, "generateName").is_empty() {
            errors.push(FieldError::required(
                &path.child("name"),
                "name or generateName is required",
            ));
        }
    } else {
        for msg in name_rule(info)(name, false) {
            errors.push(FieldError::invalid(
                &path.child("name"),
                name.to_owned(),
                &msg,
            ));
        }
    }
    let labels = string_map(obj, "labels");
    for e in validation::validate_labels(&labels, &path.child("labels")).into_iter() {
        errors.push(e);
    }
    let annotations = string_map(obj, "annotations");
    for e in validation::validate_annotations(&annotations, &path.child("annotations")).into_iter()
    {
        errors.push(e);
    }
    errors
}

/// The name rule of a kind (upstream's `ValidateObjectMeta` name functions).
fn name_rule(info: &ResourceInfo) -> fn(&str, bool) -> Vec<String> {
    match (info.group, info.plural) {
        ("", "namespaces") => validation::validate_namespace_name,
        ("", "services") => validation::name_is_dns1035_label,
        ("rbac.authorization.k8s.io", _) | ("certificates.k8s.io", _) => {
            validation::validate_path_segment_name
        }
        _ => validation::name_is_dns_subdomain,
    }
}

/// `metadata.<field>` as a string map (non-string values are ignored; the
/// typed validation reports them).
pub fn string_map(obj: &Value, field: &str) -> std::collections::BTreeMap<String, String> {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// RFC 3339 UTC timestamp with seconds, as Kubernetes writes `metav1.Time`.
pub fn now_rfc3339() -> String {
    rfc3339(time::OffsetDateTime::now_utc())
}

/// `t` as Kubernetes writes `metav1.Time` (UTC, whole seconds). Such
/// strings order like the times they name.
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    let now = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// A random RFC 4122 version 4 UUID.
pub fn new_uid() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut out = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

/// Kinds whose `metadata.generation` tracks spec changes.
pub fn tracks_generation(info: &ResourceInfo) -> bool {
    matches!(
        (info.group, info.plural),
        ("apps", _)
            | ("batch", _)
            | ("", "replicationcontrollers")
            | ("policy", "poddisruptionbudgets")
            | ("networking.k8s.io", "networkpolicies" | "ingresses")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_uids_are_random_version_4_uuids() {
        let a = new_uid();
        let groups: Vec<&str> = a.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12],
            "{a}"
        );
        assert!(
            a.chars()
                .all(|c| c == '-' || matches!(c, '0'..='9' | 'a'..='f')),
            "{a}"
        );
        assert!(groups[2].starts_with('4'), "version nibble of {a}");
        assert!(
            matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
            "variant bits of {a}"
        );
        assert_ne!(a, new_uid());
    }

    fn validate(obj: &Value, info: &ResourceInfo) -> Result<(), ApiError> {
        let errors = validate_errors(obj, info);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(info, meta_str(obj, "name"), errors))
        }
    }
    use serde_json::json;
    use skiff_api::resources::by_gvr;

    #[test]
    fn types_and_namespaces() {
        let pods = by_gvr("", "v1", "pods").unwrap();
        let mut obj = json!({"metadata": {"name": "a"}});
        check_type(&mut obj, pods).unwrap();
        assert_eq!(
            (obj["apiVersion"].as_str(), obj["kind"].as_str()),
            (Some("v1"), Some("Pod"))
        );
        let mut wrong = json!({"apiVersion": "apps/v1", "kind": "Pod"});
        assert!(matches!(
            check_type(&mut wrong, pods),
            Err(ApiError::BadRequest(_))
        ));
        let mut wrong = json!({"apiVersion": "v1", "kind": "Service"});
        assert!(matches!(
            check_type(&mut wrong, pods),
            Err(ApiError::BadRequest(_))
        ));

        check_namespace(&mut obj, Some("ns1")).unwrap();
        assert_eq!(obj["metadata"]["namespace"], "ns1");
        assert!(check_namespace(&mut obj, Some("other")).is_err());
        let mut node = json!({"metadata": {"name": "n", "namespace": "x"}});
        check_namespace(&mut node, None).unwrap();
        assert!(node["metadata"].get("namespace").is_none());
        assert!(meta_mut(&mut json!([])).is_err());
    }

    #[test]
    fn generated_names() {
        let mut obj = json!({"metadata": {"generateName": "web-"}});
        generate_name(&mut obj).unwrap();
        let name = obj["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
        assert!(name[4..].bytes().all(|c| SUFFIX_ALPHABET.contains(&c)));
        let long = "x".repeat(300);
        let mut obj = json!({"metadata": {"generateName": long}});
        generate_name(&mut obj).unwrap();
        assert_eq!(obj["metadata"]["name"].as_str().unwrap().len(), 63);
    }

    #[test]
    fn name_validation() {
        let pods = by_gvr("", "v1", "pods").unwrap();
        assert!(validate(&json!({"metadata": {"name": "ok-name.x"}}), pods).is_ok());
        let err = validate(&json!({"metadata": {"name": "Bad_Name"}}), pods).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "Pod \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\""
            ),
            "{err}"
        );
        let err = validate(&json!({"metadata": {}}), pods).unwrap_err();
        assert!(
            err.to_string().contains("name or generateName is required"),
            "{err}"
        );
        let svc = by_gvr("", "v1", "services").unwrap();
        assert!(
            validate(&json!({"metadata": {"name": "a.b"}}), svc).is_err(),
            "services use DNS-1035 labels"
        );
        let cm = by_gvr("", "v1", "configmaps").unwrap();
        assert!(validate(&json!({"metadata": {"name": "../x"}}), cm).is_err());
        let role = by_gvr("rbac.authorization.k8s.io", "v1", "clusterroles").unwrap();
        assert!(validate(&json!({"metadata": {"name": "system:controller:x"}}), role).is_ok());
        assert!(validate(&json!({"metadata": {"name": "a/b"}}), role).is_err());
        let big = json!({"metadata": {"name": "a", "labels": {"k": "v".repeat(64)}}});
        assert!(
            validate(&big, pods).is_err(),
            "label values are at most 63 characters"
        );
    }

    #[test]
    fn uids_and_times() {
        let uid = new_uid();
        assert_eq!(uid.len(), 36);
        assert_eq!(&uid[14..15], "4");
        assert_ne!(new_uid(), uid);
        let t = now_rfc3339();
        assert!(t.ends_with('Z') && t.len() == 20, "{t}");
    }
}
