//! Malformed and hostile input: clear errors, never a panic, bounded depth.

use serde_json::json;

use super::{F, body, msg, s};
use crate::{MAGIC, ProtoError, decode};

#[test]
fn envelope_errors_match_upstream_wording() {
    assert_eq!(decode(b""), Err(ProtoError::Empty));
    assert_eq!(decode(b"k8s"), Err(ProtoError::BadMagic));
    assert_eq!(decode(b"{\"kind\":\"Pod\"}"), Err(ProtoError::BadMagic));
    assert_eq!(decode(MAGIC), Err(ProtoError::EmptyBody));
    let e = decode(b"json").expect_err("bad magic");
    assert_eq!(
        e.to_string(),
        "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]"
    );
    assert!(matches!(
        decode(&body("v1", "", vec![])),
        Err(ProtoError::MissingKind(_))
    ));
    assert!(matches!(
        decode(&body("", "Pod", vec![])),
        Err(ProtoError::MissingVersion(_))
    ));
    assert!(matches!(
        decode(&body("apps/", "Pod", vec![])),
        Err(ProtoError::MissingVersion(_))
    ));
}

#[test]
fn unknown_kinds_are_named() {
    for (api_version, kind) in [
        ("v1", "Frobnicator"),
        ("example.com/v1", "Widget"),
        ("apps/v2", "Deployment"),
        ("v1", "core.v1.Pod"),
        ("v1", "Pod.spec"),
        ("a/b/c", "Pod"),
        ("v1", "ObjectMeta2"),
    ] {
        let e = decode(&body(api_version, kind, vec![])).expect_err(kind);
        assert_eq!(
            e,
            ProtoError::UnknownKind {
                api_version: api_version.into(),
                kind: kind.into()
            }
        );
    }
    let e = decode(&body("v1", "Widget", vec![])).expect_err("unknown");
    assert_eq!(
        e.to_string(),
        r#"no kind "Widget" is registered for version "v1""#
    );
    // meta kinds exist only in v1 group versions.
    assert!(decode(&body("apps/v2", "DeleteOptions", vec![])).is_err());
}

#[test]
fn truncated_and_ill_typed_wire_data_is_malformed() {
    let mut truncated_varint = MAGIC.to_vec();
    truncated_varint.extend_from_slice(&[0x0a, 0xff]);
    assert!(matches!(
        decode(&truncated_varint),
        Err(ProtoError::Malformed { .. })
    ));

    let mut long_len = body("v1", "ConfigMap", msg(vec![s(1, "x")]));
    long_len.truncate(long_len.len() - 6);
    assert!(matches!(
        decode(&long_len),
        Err(ProtoError::Malformed { .. })
    ));

    // metadata (a message) sent as a varint.
    let wrong_wire = body("v1", "ConfigMap", msg(vec![F::V(1, 5)]));
    let e = decode(&wrong_wire).expect_err("wire type");
    assert!(
        e.to_string().contains("k8s.io.api.core.v1.ConfigMap"),
        "{e}"
    );

    // Invalid UTF-8 in a string field.
    let bad_utf8 = body(
        "v1",
        "ConfigMap",
        msg(vec![F::L(1, msg(vec![F::L(1, vec![0xff, 0xfe])]))]),
    );
    assert!(matches!(
        decode(&bad_utf8),
        Err(ProtoError::Malformed { .. })
    ));

    // A varint longer than ten bytes.
    let mut raw = vec![0x38];
    raw.extend_from_slice(&[0xff; 11]);
    let overlong = body("v1", "ConfigMap", msg(vec![F::L(1, raw)]));
    assert!(matches!(
        decode(&overlong),
        Err(ProtoError::Malformed { .. })
    ));
}

#[test]
fn nested_envelopes_are_bounded() {
    // A ControllerRevision whose data is a ControllerRevision whose data is ...
    let mut inner = body("v1", "ConfigMap", msg(vec![]));
    for _ in 0..100 {
        inner = body(
            "apps/v1",
            "ControllerRevision",
            msg(vec![F::L(2, msg(vec![F::L(1, inner)]))]),
        );
    }
    assert_eq!(decode(&inner), Err(ProtoError::TooDeep));
    // A few levels are fine.
    let mut inner = body("v1", "ConfigMap", msg(vec![]));
    for _ in 0..5 {
        inner = body(
            "apps/v1",
            "ControllerRevision",
            msg(vec![F::L(2, msg(vec![F::L(1, inner)]))]),
        );
    }
    let v = decode(&inner).expect("decodes");
    assert_eq!(
        v["data"]["data"]["data"]["data"]["data"]["kind"],
        "ConfigMap"
    );
}

#[test]
fn deeply_nested_unknown_groups_hit_the_recursion_limit() {
    // Start-group keys for unknown field 99, 10 000 deep, no end.
    let mut raw = Vec::new();
    for _ in 0..10_000 {
        raw.extend_from_slice(&[0x9b, 0x06]);
    }
    assert!(matches!(
        decode(&body("v1", "ConfigMap", raw)),
        Err(ProtoError::Malformed { .. })
    ));
}

#[test]
fn extreme_times_do_not_panic() {
    for (secs, nanos) in [
        (i64::MAX, i32::MAX as i64),
        (i64::MIN, i32::MIN as i64),
        (i64::MAX, 0),
    ] {
        let t = msg(vec![F::V(1, secs as u64), F::V(2, nanos as u64)]);
        let lease = msg(vec![F::L(3, t.clone()), F::L(4, t)]);
        let _ = decode(&body(
            "coordination.k8s.io/v1",
            "Lease",
            msg(vec![F::L(2, lease)]),
        ));
    }
}

/// A deterministic xorshift generator for the mutation test.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn mutated_and_truncated_bodies_never_panic() {
    let seeds = [
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}},
               "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}],
                                        "resources": {"limits": {"cpu": "1"}}}],
                        "volumes": [{"name": "v", "configMap": {"name": "c"}}]}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
               "spec": {"ports": [{"port": 80, "targetPort": "http"}]}}),
        json!({"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "r"},
               "data": {"a": [1, 2, {"b": null}]}, "revision": 1}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "AAE="}}),
    ];
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for seed in seeds {
        let good = crate::encode(&seed).expect("encodes");
        for len in 0..good.len() {
            let _ = decode(&good[..len]);
        }
        for _ in 0..3_000 {
            let mut bytes = good.clone();
            for _ in 0..1 + rng.next() % 4 {
                let i = (rng.next() as usize) % bytes.len();
                match rng.next() % 3 {
                    0 => bytes[i] = rng.next() as u8,
                    1 => bytes[i] ^= 1 << (rng.next() % 8),
                    _ => bytes.insert(i, rng.next() as u8),
                }
            }
            if let Ok(v) = decode(&bytes) {
                // Whatever decodes must encode again.
                let _ = crate::encode(&v);
            }
        }
    }
}
