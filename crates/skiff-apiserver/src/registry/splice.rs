//! Editing stored objects' JSON bytes without decoding them. Stored
//! objects are compact serde_json output with sorted keys and no
//! resourceVersion; every answer and cached copy needs the same bytes with
//! it, and a binding only adds `spec.nodeName` and a condition. Decoding a
//! ~3 KB Pod (most of it managedFields) into a `Value` and encoding it again
//! for that cost a noticeable share of a create and of a binding.
//!
//! An edit sets one member of an object at the place serde_json's sorted map
//! would put it, so the result is what decoding, setting and encoding would
//! give. The scan reads the keys of the objects on the path up to the
//! place it looks for and skips their values; it gives up (`None`, so
//! callers decode instead) on anything unusual it reads: a path that is not
//! objects, escaped, repeated or unsorted keys, malformed JSON.

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
/// `spec.nodeName` set and `conditions` (the JSON of the list it starts,
/// the PodScheduled one) added. Only the plain case: a pod not being
/// deleted, not yet assigned, and without conditions; anything else is
/// `None` (decode instead, which also tells the conflicts).
pub(crate) fn bound_pod(json: &[u8], node: &str, conditions: &[u8]) -> Option<Vec<u8>> {
    // One pass over the top level finds metadata, spec and where status is
    // or goes (it sorts after spec, so its edit comes second).
    let (mut meta, mut spec, mut status) = (None, None, None);
    let mut top = Members::new(json, skip_ws(json, 0))?;
    while status.is_none() {
        match top.next()? {
            Some(m) if m.key == b"metadata" => meta = Some(m.value.0),
            Some(m) if m.key == b"spec" => spec = Some(m.value.0),
            Some(m) if m.key == b"status" => status = Some(Place::Value(m.value.0, m.value.1)),
            Some(m) if m.key > b"status".as_slice() => status = Some(Place::Insert(m.key_start)),
            Some(_) => {}
            None => {
                status = Some(Place::Append {
                    close: top.i,
                    empty: top.first,
                })
            }
        }
    }
    if matches!(locate(json, meta?, b"deletionTimestamp")?, Place::Value(..)) {
        return None;
    }
    let node_place = match locate(json, spec?, b"nodeName")? {
        Place::Value(start, end) if &json[start..end] != b"\"\"" => return None,
        place => place,
    };
    let node = serde_json::to_string(node).ok()?;
    let status_edit = match status? {
        Place::Value(start, _) => match locate(json, start, b"conditions")? {
            Place::Value(..) => return None,
            place => Edit::new(place, "conditions", conditions),
        },
        place => {
            let mut status = b"{\"conditions\":".to_vec();
            status.extend_from_slice(conditions);
            status.push(b'}');
            Edit::new(place, "status", &status)
        }
    };
    let edits = [
        Edit::new(node_place, "nodeName", node.as_bytes()),
        status_edit,
    ];
    Some(Edit::apply(json, &edits))
}

/// `json` with member `key` of the object at `path` set to the JSON
/// `value` (replaced where present, else inserted in sorted place).
pub(crate) fn set_member(json: &[u8], path: &[&str], key: &str, value: &[u8]) -> Option<Vec<u8>> {
    let object = object_at(json, path)?;
    let place = locate(json, object, key.as_bytes())?;
    Some(Edit::apply(json, &[Edit::new(place, key, value)]))
}

/// Bytes `from..to` of the input replaced by `text`.
struct Edit {
    from: usize,
    to: usize,
    text: Vec<u8>,
}

impl Edit {
    /// Member `key` set to `value` at `place`.
    fn new(place: Place, key: &str, value: &[u8]) -> Edit {
        let member = |lead: &[u8], trail: &[u8]| {
            let mut text = Vec::with_capacity(key.len() + value.len() + 5);
            text.extend_from_slice(lead);
            text.push(b'"');
            text.extend_from_slice(key.as_bytes());
            text.extend_from_slice(b"\":");
            text.extend_from_slice(value);
            text.extend_from_slice(trail);
            text
        };
        match place {
            Place::Value(from, to) => Edit {
                from,
                to,
                text: value.to_vec(),
            },
            Place::Insert(at) => Edit {
                from: at,
                to: at,
                text: member(b"", b","),
            },
            Place::Append { close, empty } => Edit {
                from: close,
                to: close,
                text: member(if empty { b"" } else { b"," }, b""),
            },
        }
    }

    /// `json` with `edits` (in order, not overlapping) made.
    fn apply(json: &[u8], edits: &[Edit]) -> Vec<u8> {
        let grow: usize = edits.iter().map(|e| e.text.len()).sum();
        let mut out = Vec::with_capacity(json.len() + grow);
        let mut at = 0;
        for e in edits {
            out.extend_from_slice(&json[at..e.from]);
            out.extend_from_slice(&e.text);
            at = e.to;
        }
        out.extend_from_slice(&json[at..]);
        out
    }
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

/// Where `key` is, or goes, in the object whose `{` is at `start`. The
/// keys are read in order up to `key`'s place: stored objects are
/// serde_json's output, sorted without repeats, so a key is found where it
/// sorts; keys out of that order, or escaped, give up.
fn locate(json: &[u8], start: usize, key: &[u8]) -> Option<Place> {
    let mut members = Members::new(json, start)?;
    loop {
        let Some(m) = members.next()? else {
            return Some(Place::Append {
                close: members.i,
                empty: members.first,
            });
        };
        match m.key.cmp(key) {
            Ordering::Less => {}
            Ordering::Equal => return Some(Place::Value(m.value.0, m.value.1)),
            Ordering::Greater => return Some(Place::Insert(m.key_start)),
        }
    }
}

/// One member of an object.
struct Member<'a> {
    key: &'a [u8],
    /// Where its key's opening quote is.
    key_start: usize,
    /// Its value's byte range.
    value: (usize, usize),
}

/// Reads an object's members in order, checking that their keys are plain
/// and strictly increasing.
struct Members<'a> {
    json: &'a [u8],
    /// Where reading goes on; at the closing brace once the last member
    /// was read.
    i: usize,
    /// No member read yet.
    first: bool,
    previous: Option<&'a [u8]>,
}

impl<'a> Members<'a> {
    /// The members of the object whose `{` is at `start`.
    fn new(json: &'a [u8], start: usize) -> Option<Members<'a>> {
        (json.get(start) == Some(&b'{')).then(|| Members {
            json,
            i: skip_ws(json, start + 1),
            first: true,
            previous: None,
        })
    }

    /// The next member; `Some(None)` at the closing brace; `None` when the
    /// object is malformed or not as serde_json writes it.
    fn next(&mut self) -> Option<Option<Member<'a>>> {
        let json = self.json;
        match json.get(self.i)? {
            b'}' => return Some(None),
            b',' if !self.first => self.i = skip_ws(json, self.i + 1),
            _ if self.first => {}
            _ => return None,
        }
        self.first = false;
        let key_start = self.i;
        let key_end = skip_string(json, key_start)?;
        let key = &json[key_start + 1..key_end - 1];
        if key.contains(&b'\\') || self.previous.is_some_and(|p| p >= key) {
            return None;
        }
        self.previous = Some(key);
        let colon = skip_ws(json, key_end);
        if json.get(colon) != Some(&b':') {
            return None;
        }
        let value_start = skip_ws(json, colon + 1);
        let value_end = skip_value(json, value_start)?;
        self.i = skip_ws(json, value_end);
        Some(Some(Member {
            key,
            key_start,
            value: (value_start, value_end),
        }))
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\n' | b'\r' | b'\t') {
        i += 1;
    }
    i
}

/// Just after the string starting at `i` (which must be `"`). A byte loop:
/// the strings of stored objects are mostly short keys, for which a SIMD
/// search (memchr) measured slower.
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
            // Unsorted or repeated keys before the place: not serde_json's
            // output.
            b"{\"metadata\": {\"name\": \"a\", \"labels\": {}}}",
            b"{\"metadata\": {\"name\": \"a\", \"name\": \"b\"}}",
            b"{\"kind\": \"Pod\", \"apiVersion\": \"v1\", \"metadata\": {}}",
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
