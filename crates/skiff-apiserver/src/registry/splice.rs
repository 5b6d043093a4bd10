//! Editing stored objects' JSON bytes without decoding them. Stored
//! objects are compact serde_json output with sorted keys and no
//! resourceVersion; every answer and cached copy needs the same bytes with
//! it, and a binding only adds `spec.nodeName` and a condition. Decoding a
//! ~3 KB Pod (most of it managedFields) into a `Value` and encoding it again
//! for that cost a noticeable share of a create and of a binding.
//!
//! An edit sets one member of an object at the place serde_json's sorted map
//! would put it, so the result is what decoding, setting and encoding would
//! give. The scan reads only the keys of the objects on the path and skips
//! their values; it gives up (`None`, so callers decode instead) on
//! anything unusual: a path that is not objects, escaped or unsorted keys,
//! malformed JSON.

use std::cmp::Ordering;

/// `json` (an object) with `metadata.resourceVersion` set to `rv`, placed
/// where serde_json's sorted map would put it; an existing value is
/// replaced.
pub(crate) fn with_resource_version(json: &[u8], rv: i64) -> Option<Vec<u8>> {
    set_member(
        json,
        &["metadata"],
        "resourceVersion",
        format!("\"{rv}\"").as_bytes(),
    )
}

/// The stored pod `json` bound to `node` as `pods/binding` binds it:
/// `spec.nodeName` set and a PodScheduled=True condition added, stamped
/// `now`. Only the plain case: a pod not being deleted, not yet assigned,
/// and without conditions; anything else is `None` (decode instead, which
/// also tells the conflicts).
pub(crate) fn bound_pod(json: &[u8], node: &str, now: &str) -> Option<Vec<u8>> {
    let meta = object_at(json, &["metadata"])?;
    if matches!(locate(json, meta, b"deletionTimestamp")?, Place::Value(..)) {
        return None;
    }
    let spec = object_at(json, &["spec"])?;
    if let Place::Value(start, end) = locate(json, spec, b"nodeName")?
        && &json[start..end] != b"\"\""
    {
        return None;
    }
    let node = serde_json::to_string(node).ok()?;
    let bound = set_member(json, &["spec"], "nodeName", node.as_bytes())?;
    let conditions = format!(
        "[{{\"lastProbeTime\":null,\"lastTransitionTime\":{},\"status\":\"True\",\"type\":\"PodScheduled\"}}]",
        serde_json::to_string(now).ok()?
    );
    let top = object_at(&bound, &[])?;
    match locate(&bound, top, b"status")? {
        Place::Value(start, _) => {
            if bound.get(start) != Some(&b'{')
                || !matches!(
                    locate(&bound, start, b"conditions")?,
                    Place::Insert(_) | Place::Append { .. }
                )
            {
                return None;
            }
            set_member(&bound, &["status"], "conditions", conditions.as_bytes())
        }
        _ => set_member(
            &bound,
            &[],
            "status",
            format!("{{\"conditions\":{conditions}}}").as_bytes(),
        ),
    }
}

/// `json` with member `key` of the object at `path` set to the JSON
/// `value` (replaced where present, else inserted in sorted place).
pub(crate) fn set_member(json: &[u8], path: &[&str], key: &str, value: &[u8]) -> Option<Vec<u8>> {
    let object = object_at(json, path)?;
    let mut out = Vec::with_capacity(json.len() + key.len() + value.len() + 4);
    match locate(json, object, key.as_bytes())? {
        Place::Value(start, end) => {
            out.extend_from_slice(&json[..start]);
            out.extend_from_slice(value);
            out.extend_from_slice(&json[end..]);
        }
        Place::Insert(at) => {
            out.extend_from_slice(&json[..at]);
            push_member(&mut out, key, value);
            out.push(b',');
            out.extend_from_slice(&json[at..]);
        }
        Place::Append { close, empty } => {
            out.extend_from_slice(&json[..close]);
            if !empty {
                out.push(b',');
            }
            push_member(&mut out, key, value);
            out.extend_from_slice(&json[close..]);
        }
    }
    Some(out)
}

fn push_member(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    out.extend_from_slice(value);
}

/// Where a key is, or goes, in an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// It is there: its value's byte range.
    Value(usize, usize),
    /// It is not: it goes before the member starting here.
    Insert(usize),
    /// It is not, and sorts last: before the closing brace at `close`.
    Append { close: usize, empty: bool },
}

/// The index of the `{` of the object at `path` (each element a member of
/// an object; the empty path is the top level).
fn object_at(json: &[u8], path: &[&str]) -> Option<usize> {
    let mut at = skip_ws(json, 0);
    for key in path {
        match locate(json, at, key.as_bytes())? {
            Place::Value(start, _) => at = start,
            _ => return None,
        }
    }
    (json.get(at) == Some(&b'{')).then_some(at)
}

/// Where `key` is, or goes, in the object whose `{` is at `start`. Reads
/// every member, so a key is never missed: escaped, repeated or unsorted
/// keys give up.
fn locate(json: &[u8], start: usize, key: &[u8]) -> Option<Place> {
    if json.get(start) != Some(&b'{') {
        return None;
    }
    let mut i = skip_ws(json, start + 1);
    if json.get(i)? == &b'}' {
        return Some(Place::Append {
            close: i,
            empty: true,
        });
    }
    let mut found = None;
    let mut previous: Option<&[u8]> = None;
    loop {
        let key_start = i;
        let key_end = skip_string(json, i)?;
        let k = &json[key_start + 1..key_end - 1];
        if k.contains(&b'\\') || previous.is_some_and(|p| p >= k) {
            return None;
        }
        previous = Some(k);
        let colon = skip_ws(json, key_end);
        if json.get(colon) != Some(&b':') {
            return None;
        }
        let value_start = skip_ws(json, colon + 1);
        let value_end = skip_value(json, value_start)?;
        match k.cmp(key) {
            Ordering::Less => {}
            Ordering::Equal => found = Some(Place::Value(value_start, value_end)),
            Ordering::Greater => {
                found.get_or_insert(Place::Insert(key_start));
            }
        }
        i = skip_ws(json, value_end);
        match json.get(i)? {
            b',' => i = skip_ws(json, i + 1),
            b'}' => break,
            _ => return None,
        }
    }
    Some(found.unwrap_or(Place::Append {
        close: i,
        empty: false,
    }))
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\n' | b'\r' | b'\t') {
        i += 1;
    }
    i
}

/// Just after the string starting at `i` (which must be `"`).
fn skip_string(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
    None
}

/// Just after the value starting at `i`.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = skip_string(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            // A number, true, false or null: up to the next delimiter.
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t')
            {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// What decoding, setting and encoding gives.
    fn slow(obj: &Value, rv: i64) -> Vec<u8> {
        let mut obj = obj.clone();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        serde_json::to_vec(&obj).unwrap()
    }

    #[test]
    fn matches_decode_and_encode() {
        let cases = [
            json!({"metadata": {}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}}),
            json!({"metadata": {"uid": "u"}, "spec": {"x": [1, {"y": "}\"{"}]}}),
            json!({"metadata": {"annotations": {"resourceVersion": "no", "z": "}"},
                   "name": "a", "namespace": "n", "ownerReferences": [{"a": "]"}],
                   "selfLink": "", "uid": "u"}, "status": {}}),
            json!({"a": "\\\"", "metadata": {"managedFields": [{"f": {"k:{\"a\":1}": {}}}],
                   "name": "x"}, "z": null}),
            json!({"data": {"k": "v\u{2028}\\"}, "metadata": {"generation": 3, "labels": {}}}),
            json!({"metadata": {"name": "a", "resourceVersion": "5", "uid": "u"}}),
            json!({"metadata": {"resourceVersion": "5"}}),
            json!({"metadata": {"name": "a", "resourceVersion": "5"}, "x": true}),
        ];
        for obj in cases {
            let bytes = serde_json::to_vec(&obj).unwrap();
            for rv in [1, 42, 9_007_199_254_740_993] {
                let got = with_resource_version(&bytes, rv).unwrap();
                assert_eq!(
                    String::from_utf8(got).unwrap(),
                    String::from_utf8(slow(&obj, rv)).unwrap(),
                    "{obj}"
                );
            }
        }
    }

    #[test]
    fn members_are_set_in_sorted_place_at_any_depth() {
        let obj = json!({"a": {"b": {"d": 1}, "c": [1]}, "z": {}});
        let bytes = serde_json::to_vec(&obj).unwrap();
        for (path, key) in [
            (&[][..], "m"),
            (&[][..], "0"),
            (&["a"][..], "bb"),
            (&["a", "b"][..], "c"),
            (&["a", "b"][..], "d"),
            (&["a", "b"][..], "e"),
            (&["z"][..], "k"),
        ] {
            let got = set_member(&bytes, path, key, br#"{"v":[null]}"#).unwrap();
            let mut want = obj.clone();
            let mut at = &mut want;
            for p in path {
                at = &mut at[*p];
            }
            at[key] = json!({"v": [null]});
            assert_eq!(
                String::from_utf8(got).unwrap(),
                serde_json::to_string(&want).unwrap(),
                "{path:?} {key}"
            );
        }
        // The path must be objects all the way.
        assert_eq!(set_member(&bytes, &["a", "c"], "k", b"1"), None);
        assert_eq!(set_member(&bytes, &["x"], "k", b"1"), None);
    }

    #[test]
    fn whitespace_is_tolerated() {
        let got =
            with_resource_version(br#" { "a" : 1 , "metadata" : { "name" : "x" } } "#, 7).unwrap();
        let v: Value = serde_json::from_slice(&got).unwrap();
        assert_eq!(v["metadata"]["resourceVersion"], "7");
        assert_eq!(v["metadata"]["name"], "x");
    }

    #[test]
    fn gives_up_on_what_it_cannot_place() {
        for bad in [
            &b"[]"[..],
            b"{}",
            b"{\"metadata\": null}",
            b"{\"metadata\": \"x\"}",
            b"{\"metadata\": {\"n\\u0061me\": 1}}",
            b"{\"metadata\": {\"name\": \"a\"",
            b"{\"metadata\" {}}",
            b"{\"a\": 1 \"metadata\": {}}",
            // Unsorted or repeated keys: not serde_json's output.
            b"{\"metadata\": {\"uid\": \"u\", \"name\": \"a\"}}",
            b"{\"metadata\": {\"name\": \"a\", \"name\": \"b\"}}",
            b"{\"metadata\": {}, \"metadata\": {}}",
            b"",
        ] {
            assert_eq!(
                with_resource_version(bad, 1),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
