#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;

use super::*;
use crate::kinds::core::util::messages;
use crate::kinds::{default, normalize, prepare_create, prepare_update, validate, validate_update};

#[test]
fn base64_round_trips_and_reports_the_bad_byte() {
    for s in ["", "f", "fo", "foo", "foob", "fooba", "foobar"] {
        let enc = base64_encode(s.as_bytes());
        assert_eq!(base64_decode(&enc).unwrap(), s.as_bytes(), "{enc}");
    }
    assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    assert_eq!(base64_encode(b"fo"), "Zm8=");
    assert_eq!(base64_decode("Zm9v\nYmFy").unwrap(), b"foobar");
    assert_eq!(base64_decode("Zm9v!mFy"), Err(4));
    assert_eq!(base64_decode("abc"), Err(0));
    assert_eq!(base64_decode("Zm9vab"), Err(4));
    assert_eq!(base64_decode("Z==="), Err(1));
    assert_eq!(base64_decode("Zm8=Zm8="), Err(4));
}

#[test]
fn string_data_is_folded_into_data() {
    let mut s = json!({"data": {"a": "eA==", "b": "eQ=="}, "stringData": {"b": "new", "c": "z"}});
    normalize("", "Secret", &mut s).unwrap();
    assert_eq!(
        s,
        json!({"data": {"a": "eA==", "b": base64_encode(b"new"), "c": "eg=="}})
    );
    let mut bad = json!({"data": {"a": "not base64!"}});
    assert_eq!(
        normalize("", "Secret", &mut bad).unwrap_err(),
        "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data at input byte 3"
    );
    let mut typed = json!({"stringData": {"n": 5}});
    assert_eq!(
        normalize("", "Secret", &mut typed).unwrap_err(),
        "Secret in version \"v1\" cannot be handled as a Secret: json: cannot unmarshal number into Go struct field Secret.stringData of type string"
    );
    let mut cm = json!({"binaryData": {"x": "%%%%"}});
    assert!(
        normalize("", "ConfigMap", &mut cm)
            .unwrap_err()
            .contains("input byte 0")
    );
}

#[test]
fn secret_type_defaults_to_opaque() {
    let mut s = json!({"data": {}});
    default("", "Secret", &mut s);
    assert_eq!(s["type"], "Opaque");
    let again = s.clone();
    default("", "Secret", &mut s);
    assert_eq!(s, again);
    let mut tls = json!({"type": "kubernetes.io/tls"});
    default("", "Secret", &mut tls);
    assert_eq!(tls["type"], "kubernetes.io/tls");
}

#[test]
fn config_keys_and_sizes() {
    let cm = json!({"data": {"bad key": "v", "..x": "v", "ok.key_1-A": "v"}});
    assert_eq!(
        messages(&validate("", "ConfigMap", &cm)),
        vec![
            "data[..x]: Invalid value: \"..x\": must not start with '..'".to_owned(),
            "data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".to_owned(),
        ]
    );
    let big = "x".repeat(1024 * 1024 + 1);
    let cm = json!({"data": {"a": big}});
    assert_eq!(
        messages(&validate("", "ConfigMap", &cm)),
        vec![": Too long: may not be more than 1048576 bytes"]
    );
    let dup = json!({"data": {"a": "1"}, "binaryData": {"a": "MQ=="}});
    assert_eq!(
        messages(&validate("", "ConfigMap", &dup)),
        vec!["data[a]: Invalid value: \"a\": duplicate of key present in binaryData"]
    );
    let big_secret =
        json!({"type": "Opaque", "data": {"a": base64_encode(&vec![0u8; 1024 * 1024 + 1])}});
    assert_eq!(
        messages(&validate("", "Secret", &big_secret)),
        vec!["data: Too long: may not be more than 1048576 bytes"]
    );
}

#[test]
fn secret_types_need_their_keys() {
    let cases = [
        (
            json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}}),
            vec!["data[tls.key]: Required value"],
        ),
        (
            json!({"type": "kubernetes.io/tls"}),
            vec![
                "data[tls.crt]: Required value",
                "data[tls.key]: Required value",
            ],
        ),
        (
            json!({"type": "kubernetes.io/basic-auth", "data": {}}),
            vec![
                "data[username]: Required value",
                "data[password]: Required value",
            ],
        ),
        (
            json!({"type": "kubernetes.io/basic-auth", "data": {"password": ""}}),
            vec![],
        ),
        (
            json!({"type": "kubernetes.io/ssh-auth", "data": {"ssh-privatekey": ""}}),
            vec!["data[ssh-privatekey]: Required value"],
        ),
        (
            json!({"type": "kubernetes.io/dockerconfigjson"}),
            vec!["data[.dockerconfigjson]: Required value"],
        ),
        (
            json!({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": base64_encode(b"{\"auths\":{}}")}}),
            vec![],
        ),
        (
            json!({"type": "kubernetes.io/service-account-token", "metadata": {"annotations": {}}}),
            vec!["metadata.annotations[kubernetes.io/service-account.name]: Required value"],
        ),
        (
            json!({"type": "kubernetes.io/service-account-token", "metadata": {"annotations": {"kubernetes.io/service-account.name": "default"}}}),
            vec![],
        ),
        (json!({"type": "example.com/custom"}), vec![]),
    ];
    for (secret, want) in cases {
        assert_eq!(messages(&validate("", "Secret", &secret)), want, "{secret}");
    }
    let bad_json = json!({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": base64_encode(b"nope")}});
    let msgs = messages(&validate("", "Secret", &bad_json));
    assert_eq!(msgs.len(), 1);
    assert!(
        msgs[0].starts_with(
            "data[.dockerconfigjson]: Invalid value: \"<secret contents redacted>\": "
        )
    );
}

#[test]
fn immutable_payloads_and_types() {
    let old = json!({"type": "Opaque", "immutable": true, "data": {"a": "eA=="}});
    assert!(validate_update("", "Secret", &old, &old).is_empty());
    let changed = json!({"type": "Opaque", "immutable": true, "data": {"a": "eQ=="}});
    assert_eq!(
        messages(&validate_update("", "Secret", &changed, &old)),
        vec!["data: Forbidden: field is immutable when `immutable` is set"]
    );
    let unset = json!({"type": "Opaque", "immutable": false, "data": {"a": "eA=="}});
    assert_eq!(
        messages(&validate_update("", "Secret", &unset, &old)),
        vec!["immutable: Forbidden: field is immutable when `immutable` is set"]
    );
    let retyped = json!({"type": "kubernetes.io/basic-auth", "data": {"username": "eA=="}});
    assert_eq!(
        messages(&validate_update(
            "",
            "Secret",
            &retyped,
            &json!({"type": "Opaque"})
        )),
        vec!["type: Invalid value: \"kubernetes.io/basic-auth\": field is immutable"]
    );
    // A mutable ConfigMap may change and become immutable; then it is frozen.
    let cm_old = json!({"data": {"a": "1"}});
    let cm_new = json!({"data": {"a": "2"}, "immutable": true});
    assert!(validate_update("", "ConfigMap", &cm_new, &cm_old).is_empty());
    let cm_newer = json!({"data": {"a": "3"}, "binaryData": {"b": "eA=="}, "immutable": true});
    assert_eq!(
        messages(&validate_update("", "ConfigMap", &cm_newer, &cm_new)),
        vec![
            "data: Forbidden: field is immutable when `immutable` is set",
            "binaryData: Forbidden: field is immutable when `immutable` is set"
        ]
    );
}

#[test]
fn service_account_secret_references_keep_only_names() {
    let mut sa = json!({"secrets": [{"name": "tok", "namespace": "x", "uid": "u", "fieldPath": "f"}, {"kind": "Secret"}]});
    prepare_create("", "ServiceAccount", &mut sa);
    assert_eq!(sa["secrets"], json!([{"name": "tok"}, {}]));
    let old = sa.clone();
    let mut new = json!({"secrets": [{"name": "b", "apiVersion": "v1"}]});
    prepare_update("", "ServiceAccount", &mut new, &old);
    assert_eq!(new["secrets"], json!([{"name": "b"}]));
}
