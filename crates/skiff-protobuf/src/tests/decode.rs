//! Decoding hand-built messages: Go's presence and `omitempty` rules and every
//! special JSON form.

use prost_reflect::{DynamicMessage, Value as PValue};
use serde_json::json;

use super::{F, body, decode_raw, msg, s};
use crate::schema;
use crate::to_json::Decoder;

fn meta(name: &str) -> F {
    // What Go writes for ObjectMeta{Name: name}: every value field, zero or not.
    F::L(
        1,
        msg(vec![
            s(1, name),
            s(2, ""),
            s(3, ""),
            s(4, ""),
            s(5, ""),
            s(6, ""),
            F::V(7, 0),
            F::L(8, vec![]),
        ]),
    )
}

#[test]
fn value_zeros_are_dropped_pointer_zeros_kept() {
    // DeploymentSpec: replicas is *int32, minReadySeconds int32 and paused
    // bool carry omitempty; selector is a pointer without omitempty.
    let spec = msg(vec![F::V(1, 0), F::V(5, 0), F::V(7, 0)]);
    let v = decode_raw("apps/v1", "Deployment", msg(vec![meta("d"), F::L(2, spec)]));
    assert_eq!(v["spec"]["replicas"], json!(0));
    assert!(v["spec"].get("minReadySeconds").is_none());
    assert!(v["spec"].get("paused").is_none());
    assert_eq!(v["spec"].get("selector"), Some(&json!(null)));
    // Value structs print even when absent from the wire (Go's zero struct).
    assert_eq!(v["spec"]["strategy"], json!({}));
    assert_eq!(
        v["spec"]["template"]["metadata"],
        json!({"creationTimestamp": null})
    );
    // Value strings and ints with omitempty vanish; creationTimestamp is null.
    assert_eq!(
        v["metadata"],
        json!({"name": "d", "creationTimestamp": null})
    );
    // status is a value struct: `{}` although the wire had none.
    assert_eq!(v["status"], json!({}));
    assert_eq!(v["apiVersion"], "apps/v1");
    assert_eq!(v["kind"], "Deployment");
}

#[test]
fn required_fields_print_zero_even_when_absent() {
    // Container.name has no omitempty; ContainerPort.containerPort neither.
    let port = msg(vec![s(1, "http")]);
    let container = msg(vec![s(1, ""), F::L(6, port)]);
    let spec = msg(vec![F::L(2, container)]);
    let v = decode_raw("v1", "Pod", msg(vec![meta("p"), F::L(2, spec)]));
    let c = &v["spec"]["containers"][0];
    assert_eq!(c["name"], "");
    assert_eq!(c["ports"], json!([{"name": "http", "containerPort": 0}]));
    assert_eq!(c["resources"], json!({}));
}

#[test]
fn time_prints_rfc3339_seconds_and_null_when_zero() {
    let ts = msg(vec![F::V(1, 1_700_000_000), F::V(2, 999_999_999)]);
    let m = F::L(1, msg(vec![s(1, "x"), F::L(8, ts), F::L(9, vec![])]));
    let v = decode_raw("v1", "ConfigMap", msg(vec![m]));
    // Go's Time.Unmarshal drops nanoseconds.
    assert_eq!(v["metadata"]["creationTimestamp"], "2023-11-14T22:13:20Z");
    // A present but empty pointer Time is Go's zero time: null.
    assert_eq!(v["metadata"]["deletionTimestamp"], json!(null));

    let zero = msg(vec![
        F::V(1, crate::gotime::GO_ZERO_UNIX as u64),
        F::V(2, 0),
    ]);
    let v = decode_raw(
        "v1",
        "ConfigMap",
        msg(vec![F::L(1, msg(vec![F::L(8, zero)]))]),
    );
    assert_eq!(v["metadata"]["creationTimestamp"], json!(null));
}

#[test]
fn micro_time_prints_six_fractional_digits() {
    let t = msg(vec![F::V(1, 1_700_000_000), F::V(2, 123_456_789)]);
    let v = decode_raw(
        "events.k8s.io/v1",
        "Event",
        msg(vec![meta("e"), F::L(2, t)]),
    );
    assert_eq!(v["eventTime"], "2023-11-14T22:13:20.123456Z");
    assert!(v.get("reportingController").is_none());
    // Value structs print as their zero values.
    assert_eq!(v["deprecatedFirstTimestamp"], json!(null));
    assert_eq!(v["regarding"], json!({}));
    // Whole seconds still get six zeros.
    let t = msg(vec![F::V(1, 0), F::V(2, 0)]);
    let v = decode_raw(
        "events.k8s.io/v1",
        "Event",
        msg(vec![meta("e"), F::L(2, t)]),
    );
    assert_eq!(v["eventTime"], "1970-01-01T00:00:00.000000Z");
}

#[test]
fn duration_prints_go_duration_strings() {
    let s = schema::get().expect("schema");
    let desc = s
        .pool()
        .get_message_by_name("k8s.io.apimachinery.pkg.apis.meta.v1.Duration")
        .expect("Duration");
    for (nanos, want) in [
        (0i64, "0s"),
        (90_000_000_000, "1m30s"),
        (1_500_000, "1.5ms"),
    ] {
        let mut m = DynamicMessage::new(desc.clone());
        m.set_field_by_number(1, PValue::I64(nanos));
        let got = Decoder { schema: s }.message(&m, 0).expect("decodes");
        assert_eq!(got, json!(want));
    }
}

fn quantity(text: &str) -> Vec<u8> {
    msg(vec![s(1, text)])
}

fn map_entry(key: &str, value: F) -> Vec<u8> {
    msg(vec![s(1, key), value])
}

#[test]
fn quantity_maps_and_pointer_quantities() {
    let limits = map_entry("cpu", F::L(2, quantity("500m")));
    let memory = map_entry("memory", F::L(2, quantity("64Mi")));
    let resources = msg(vec![F::L(1, limits), F::L(1, memory)]);
    let empty_dir = msg(vec![s(1, ""), F::L(2, quantity("1Gi"))]);
    let volume_source = msg(vec![F::L(2, empty_dir)]);
    let volume = msg(vec![s(1, "scratch"), F::L(2, volume_source)]);
    let container = msg(vec![s(1, "c"), F::L(8, resources)]);
    let spec = msg(vec![F::L(1, volume), F::L(2, container)]);
    let v = decode_raw("v1", "Pod", msg(vec![meta("p"), F::L(2, spec)]));
    assert_eq!(
        v["spec"]["containers"][0]["resources"],
        json!({"limits": {"cpu": "500m", "memory": "64Mi"}})
    );
    // VolumeSource is inlined into Volume.
    assert_eq!(
        v["spec"]["volumes"][0],
        json!({"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}})
    );
    // An empty Quantity message is Go's zero Quantity.
    let hard = map_entry("pods", F::L(2, vec![]));
    let spec = msg(vec![F::L(1, hard)]);
    let v = decode_raw("v1", "ResourceQuota", msg(vec![meta("q"), F::L(2, spec)]));
    assert_eq!(v["spec"]["hard"], json!({"pods": "0"}));
}

#[test]
fn int_or_string_prints_a_number_or_a_string() {
    let port = |target: Vec<u8>| {
        let p = msg(vec![s(1, ""), s(2, "TCP"), F::V(3, 80), F::L(4, target)]);
        let spec = msg(vec![F::L(1, p)]);
        decode_raw("v1", "Service", msg(vec![meta("s"), F::L(2, spec)]))
    };
    let v = port(msg(vec![F::V(1, 0), F::V(2, 8080), s(3, "")]));
    assert_eq!(
        v["spec"]["ports"][0],
        json!({"protocol": "TCP", "port": 80, "targetPort": 8080})
    );
    let v = port(msg(vec![F::V(1, 1), F::V(2, 0), s(3, "http")]));
    assert_eq!(v["spec"]["ports"][0]["targetPort"], "http");
    // Go's zero IntOrString (a value struct) prints 0.
    let v = port(vec![]);
    assert_eq!(v["spec"]["ports"][0]["targetPort"], 0);
    // Negative ints survive the sign-extended varint.
    let v = port(msg(vec![F::V(1, 0), F::V(2, (-5i64) as u64)]));
    assert_eq!(v["spec"]["ports"][0]["targetPort"], -5);
    let bad = body(
        "v1",
        "Service",
        msg(vec![F::L(
            2,
            msg(vec![F::L(1, msg(vec![F::L(4, msg(vec![F::V(1, 2)]))]))]),
        )]),
    );
    let err = crate::decode(&bad).expect_err("type 2");
    assert!(
        err.to_string().contains("impossible IntOrString.Type 2"),
        "{err}"
    );
}

#[test]
fn bytes_are_base64_and_nil_is_null_without_omitempty() {
    let data = map_entry("k", F::L(2, b"v".to_vec()));
    let binary = map_entry("bin", F::L(2, vec![0xff, 0x00]));
    let v = decode_raw(
        "v1",
        "Secret",
        msg(vec![meta("s"), F::L(2, data), s(3, "Opaque")]),
    );
    assert_eq!(v["data"], json!({"k": "dg=="}));
    assert_eq!(v["type"], "Opaque");
    let v = decode_raw("v1", "ConfigMap", msg(vec![meta("c"), F::L(3, binary)]));
    assert_eq!(v["binaryData"], json!({"bin": "/wA="}));

    // CSR spec.request is a []byte without omitempty; usages a slice without.
    let spec = msg(vec![F::L(1, vec![]), s(7, "example.com/signer")]);
    let v = decode_raw(
        "certificates.k8s.io/v1",
        "CertificateSigningRequest",
        msg(vec![meta("csr"), F::L(2, spec)]),
    );
    assert_eq!(v["spec"]["request"], "");
    assert!(v["spec"].get("usages").is_none());
    let spec = msg(vec![s(7, "example.com/signer")]);
    let v = decode_raw(
        "certificates.k8s.io/v1",
        "CertificateSigningRequest",
        msg(vec![meta("csr"), F::L(2, spec)]),
    );
    assert_eq!(v["spec"]["request"], json!(null));
}

#[test]
fn string_list_messages_are_arrays() {
    let extra = map_entry("scopes", F::L(2, msg(vec![s(1, "a"), s(1, "b")])));
    let spec = msg(vec![s(7, "x/y"), F::L(6, extra)]);
    let v = decode_raw(
        "certificates.k8s.io/v1",
        "CertificateSigningRequest",
        msg(vec![meta("csr"), F::L(2, spec)]),
    );
    assert_eq!(v["spec"]["extra"], json!({"scopes": ["a", "b"]}));
}

#[test]
fn raw_extension_embeds_json_or_a_nested_object() {
    let data = msg(vec![F::L(1, br#"{"spec":{"x":[1,2]}}"#.to_vec())]);
    let v = decode_raw(
        "apps/v1",
        "ControllerRevision",
        msg(vec![meta("r"), F::L(2, data), F::V(3, 7)]),
    );
    assert_eq!(v["data"], json!({"spec": {"x": [1, 2]}}));
    assert_eq!(v["revision"], 7);

    let inner = body("v1", "ConfigMap", msg(vec![meta("inner")]));
    let data = msg(vec![F::L(1, inner)]);
    let v = decode_raw(
        "apps/v1",
        "ControllerRevision",
        msg(vec![meta("r"), F::L(2, data)]),
    );
    assert_eq!(
        v["data"],
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "inner", "creationTimestamp": null}})
    );
    // No raw bytes: Go's nil Raw prints null; revision has no omitempty.
    let v = decode_raw("apps/v1", "ControllerRevision", msg(vec![meta("r")]));
    assert_eq!(v["data"], json!(null));
    assert_eq!(v["revision"], 0);

    let data = msg(vec![F::L(1, b"{not json".to_vec())]);
    let err = crate::decode(&body(
        "apps/v1",
        "ControllerRevision",
        msg(vec![F::L(2, data)]),
    ))
    .expect_err("invalid JSON");
    assert!(err.to_string().contains("not JSON"), "{err}");
}

#[test]
fn managed_fields_embed_fields_v1() {
    let time = msg(vec![F::V(1, 1_700_000_000), F::V(2, 0)]);
    let entry = msg(vec![
        s(1, "kubectl"),
        s(2, "Update"),
        s(3, "v1"),
        F::L(4, time),
        s(6, "FieldsV1"),
        F::L(
            7,
            msg(vec![F::L(1, br#"{"f:data":{".":{},"f:a":{}}}"#.to_vec())]),
        ),
        s(8, ""),
    ]);
    let m = F::L(1, msg(vec![s(1, "c"), F::L(17, entry)]));
    let v = decode_raw("v1", "ConfigMap", msg(vec![m]));
    assert_eq!(
        v["metadata"]["managedFields"],
        json!([{"manager": "kubectl", "operation": "Update", "apiVersion": "v1",
                "time": "2023-11-14T22:13:20Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:data": {".": {}, "f:a": {}}}}])
    );
}

#[test]
fn inline_structs_merge_into_their_parent() {
    let cm = msg(vec![F::L(1, msg(vec![s(1, "cm")])), F::V(3, 420)]);
    let volume = msg(vec![s(1, "v"), F::L(2, msg(vec![F::L(19, cm)]))]);
    let exec = msg(vec![F::L(1, msg(vec![s(1, "true")]))]);
    let probe = msg(vec![F::L(1, exec), F::V(4, 5)]);
    let container = msg(vec![s(1, "c"), F::L(10, probe)]);
    let spec = msg(vec![F::L(1, volume), F::L(2, container)]);
    let v = decode_raw("v1", "Pod", msg(vec![meta("p"), F::L(2, spec)]));
    assert_eq!(
        v["spec"]["volumes"][0],
        json!({"name": "v", "configMap": {"name": "cm", "defaultMode": 420}})
    );
    assert_eq!(
        v["spec"]["containers"][0]["livenessProbe"],
        json!({"exec": {"command": ["true"]}, "periodSeconds": 5})
    );
}

#[test]
fn renamed_fields_use_their_json_names() {
    let bound = msg(vec![s(1, "Pod"), s(2, "v1"), s(3, "p"), s(4, "123")]);
    let spec = msg(vec![s(1, "aud"), F::L(3, bound)]);
    let v = decode_raw(
        "authentication.k8s.io/v1",
        "TokenRequest",
        msg(vec![meta("sa"), F::L(2, spec)]),
    );
    assert_eq!(
        v["spec"],
        json!({"audiences": ["aud"], "expirationSeconds": null,
               "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": "123"}})
    );
    assert_eq!(
        v["status"],
        json!({"token": "", "expirationTimestamp": null})
    );

    let params = msg(vec![s(1, "example.com"), s(2, "Params"), s(3, "p")]);
    let spec = msg(vec![s(1, "ctrl"), F::L(2, params)]);
    let v = decode_raw(
        "networking.k8s.io/v1",
        "IngressClass",
        msg(vec![meta("i"), F::L(2, spec)]),
    );
    assert_eq!(
        v["spec"]["parameters"],
        // scope is a *string without omitempty: Go prints null.
        json!({"apiGroup": "example.com", "kind": "Params", "name": "p", "scope": null})
    );
}

#[test]
fn meta_kinds_decode_under_any_group_version() {
    let opts = msg(vec![F::V(1, 0), s(4, "Background")]);
    let v = decode_raw("apps/v1", "DeleteOptions", opts.clone());
    assert_eq!(
        v,
        json!({"apiVersion": "apps/v1", "kind": "DeleteOptions",
               "gracePeriodSeconds": 0, "propagationPolicy": "Background"})
    );
    let eviction = msg(vec![meta("p"), F::L(2, opts)]);
    let v = decode_raw("policy/v1", "Eviction", eviction);
    assert_eq!(v["deleteOptions"]["gracePeriodSeconds"], 0);
    assert_eq!(v["metadata"]["name"], "p");

    let status = msg(vec![
        F::L(1, vec![]),
        s(2, "Failure"),
        s(3, "no"),
        s(4, "NotFound"),
        F::V(6, 404),
    ]);
    let v = decode_raw("v1", "Status", status);
    assert_eq!(
        v,
        json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
               "message": "no", "reason": "NotFound", "code": 404})
    );
}

#[test]
fn scale_and_unknown_fields() {
    // Field 99 is unknown to Scale: skipped, as Go skips it.
    let spec = msg(vec![F::V(1, 5)]);
    let raw = msg(vec![
        meta("d"),
        F::L(2, spec),
        F::V(99, 1),
        F::L(98, b"junk".to_vec()),
    ]);
    let v = decode_raw("autoscaling/v1", "Scale", raw);
    assert_eq!(v["spec"], json!({"replicas": 5}));
    assert_eq!(v["status"], json!({"replicas": 0}));
}

#[test]
fn empty_collections_without_omitempty_are_null() {
    // ClusterRole.rules has no omitempty.
    let v = decode_raw(
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        msg(vec![meta("r")]),
    );
    assert_eq!(v.get("rules"), Some(&json!(null)));
    let rule = msg(vec![s(1, "get"), s(3, "pods")]);
    let v = decode_raw(
        "rbac.authorization.k8s.io/v1",
        "Role",
        msg(vec![meta("r"), F::L(2, rule)]),
    );
    assert_eq!(
        v["rules"],
        json!([{"verbs": ["get"], "resources": ["pods"]}])
    );
}

#[test]
fn defaults_fill_a_missing_type_meta() {
    let raw = msg(vec![meta("c")]);
    let bytes = body("", "", raw.clone());
    let v = crate::decode_with_defaults(&bytes, "v1", "ConfigMap").expect("decodes");
    assert_eq!(v["kind"], "ConfigMap");
    assert_eq!(v["apiVersion"], "v1");
    let bytes = body("apps/", "", raw);
    let v = crate::decode_with_defaults(&bytes, "apps/v1", "Deployment").expect("decodes");
    assert_eq!(v["apiVersion"], "apps/v1");
    assert_eq!(v["kind"], "Deployment");
}
