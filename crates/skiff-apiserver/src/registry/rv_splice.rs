//! Setting `metadata.resourceVersion` in an object's JSON bytes without
//! decoding them: stored objects are compact serde_json output with sorted
//! keys and no resourceVersion, and every answer and cached copy needs the
//! same bytes with it. Decoding a ~2 KB Pod into a `Value` and encoding it
//! again only to add one field cost a noticeable share of a create.
//!
//! The scan reads just the top-level keys and the keys of `metadata`; it
//! gives up (`None`, so callers decode instead) on anything unusual: no
//! `metadata` object, escaped metadata keys, malformed JSON.

/// `json` (an object) with `metadata.resourceVersion` set to `rv`, placed
/// where serde_json's sorted map would put it; an existing value is
/// replaced.
pub(crate) fn with_resource_version(json: &[u8], rv: i64) -> Option<Vec<u8>> {
    let (start, end) = metadata_span(json)?;
    let meta = &json[start..end];
    let value = format!("\"{rv}\"");
    let mut out = Vec::with_capacity(json.len() + 40);
    let mut i = skip_ws(meta, 1);
    let mut first = true;
    while i < meta.len() && meta[i] != b'}' {
        if !first {
            // A separating comma before the next key.
            if meta[i] != b',' {
                return None;
            }
            i = skip_ws(meta, i + 1);
        }
        let key_start = i;
        let key_end = skip_string(meta, i)?;
        let key = &meta[key_start + 1..key_end - 1];
        if key.contains(&b'\\') {
            return None;
        }
        let colon = skip_ws(meta, key_end);
        if meta.get(colon) != Some(&b':') {
            return None;
        }
        let value_start = skip_ws(meta, colon + 1);
        let value_end = skip_value(meta, value_start)?;
        match key.cmp(b"resourceVersion".as_slice()) {
            std::cmp::Ordering::Less => {}
            std::cmp::Ordering::Equal => {
                out.extend_from_slice(&json[..start + value_start]);
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(&json[start + value_end..]);
                return Some(out);
            }
            std::cmp::Ordering::Greater => {
                out.extend_from_slice(&json[..start + key_start]);
                out.extend_from_slice(b"\"resourceVersion\":");
                out.extend_from_slice(value.as_bytes());
                out.push(b',');
                out.extend_from_slice(&json[start + key_start..]);
                return Some(out);
            }
        }
        i = skip_ws(meta, value_end);
        first = false;
    }
    if meta.get(i) != Some(&b'}') {
        return None;
    }
    // Every key sorts before it (or there are none): append.
    out.extend_from_slice(&json[..start + i]);
    if !first {
        out.push(b',');
    }
    out.extend_from_slice(b"\"resourceVersion\":");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(&json[start + i..]);
    Some(out)
}

/// The byte range of the top-level `metadata` object (from `{` to just
/// after `}`).
fn metadata_span(json: &[u8]) -> Option<(usize, usize)> {
    let mut i = skip_ws(json, 0);
    if json.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(json, i + 1);
    loop {
        if json.get(i)? == &b'}' {
            return None;
        }
        let key_end = skip_string(json, i)?;
        let key = &json[i + 1..key_end - 1];
        let colon = skip_ws(json, key_end);
        if json.get(colon) != Some(&b':') {
            return None;
        }
        let value_start = skip_ws(json, colon + 1);
        let value_end = skip_value(json, value_start)?;
        if key == b"metadata" {
            return (json.get(value_start) == Some(&b'{')).then_some((value_start, value_end));
        }
        i = skip_ws(json, value_end);
        match json.get(i)? {
            b',' => i = skip_ws(json, i + 1),
            _ => return None,
        }
    }
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
