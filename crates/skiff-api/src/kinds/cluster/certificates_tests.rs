#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};

use super::base64_encode;
use crate::kinds::core::util::messages;
use crate::kinds::{
    default, normalize, prepare_create, prepare_update, validate, validate_status_update,
};

const CERTS: &str = "certificates.k8s.io";
const KIND: &str = "CertificateSigningRequest";

fn pem(ty: &str, der: &[u8]) -> String {
    format!(
        "-----BEGIN {ty}-----\n{}\n-----END {ty}-----\n",
        base64_encode(der)
    )
}

fn csr(request: &str, signer: &str, usages: Value) -> Value {
    json!({"spec": {"request": base64_encode(request.as_bytes()), "signerName": signer, "usages": usages}})
}

#[test]
fn requests_and_signers() {
    let good = csr(
        &pem("CERTIFICATE REQUEST", &[0x30, 0x82, 0x01, 0x00]),
        "example.com/signer",
        json!(["client auth"]),
    );
    assert!(
        validate(CERTS, KIND, &good).is_empty(),
        "{:?}",
        messages(&validate(CERTS, KIND, &good))
    );

    let wrong_block = csr(
        &pem("CERTIFICATE", &[0x30, 0x01, 0x00]),
        "example.com/signer",
        json!(["client auth"]),
    );
    let msgs = messages(&validate(CERTS, KIND, &wrong_block));
    assert_eq!(msgs.len(), 1);
    assert!(
        msgs[0].starts_with("spec.request: Invalid value: []byte{0x2d, 0x2d, "),
        "{}",
        msgs[0]
    );
    assert!(
        msgs[0].ends_with("}: PEM block type must be CERTIFICATE REQUEST"),
        "{}",
        msgs[0]
    );

    let bad = csr(
        &pem("CERTIFICATE REQUEST", &[0x30, 0x82, 0x01]),
        "signer",
        json!(["client auth", "mind control", "client auth"]),
    );
    assert_eq!(
        messages(&validate(CERTS, KIND, &bad)),
        vec![
            "spec.usages[1]: Unsupported value: \"mind control\": supported values: \"any\", \"cert sign\", \"client auth\", \"code signing\", \"content commitment\", \"crl sign\", \"data encipherment\", \"decipher only\", \"digital signature\", \"email protection\", \"encipher only\", \"ipsec end system\", \"ipsec tunnel\", \"ipsec user\", \"key agreement\", \"key encipherment\", \"microsoft sgc\", \"netscape sgc\", \"ocsp signing\", \"s/mime\", \"server auth\", \"signing\", \"timestamping\"",
            "spec.usages[2]: Duplicate value: \"client auth\"",
            "spec.signerName: Invalid value: \"signer\": must be a fully qualified domain and path of the form 'example.com/signer-name'",
        ]
    );
    let legacy = csr(
        &pem("CERTIFICATE REQUEST", &[0x30, 0x82, 0x01]),
        "kubernetes.io/legacy-unknown",
        json!([]),
    );
    assert_eq!(
        messages(&validate(CERTS, KIND, &legacy)),
        vec![
            "spec.usages: Required value",
            "spec.signerName: Invalid value: \"kubernetes.io/legacy-unknown\": the legacy signerName is not allowed via this API version",
        ]
    );
    let one_label = csr(
        &pem("CERTIFICATE REQUEST", &[0x30, 0x82, 0x01]),
        "localhost/x",
        json!(["any"]),
    );
    assert_eq!(
        messages(&validate(CERTS, KIND, &one_label)),
        vec![
            "spec.signerName: Invalid value: \"localhost\": should be a domain with at least two segments separated by dots"
        ]
    );
}

#[test]
fn spec_is_fixed_and_status_is_the_servers() {
    let mut created = csr("x", "example.com/s", json!(["any"]));
    created["status"] = json!({"conditions": [{"type": "Approved"}]});
    prepare_create(CERTS, KIND, &mut created);
    assert_eq!(created["status"], json!({}));
    let mut new = created.clone();
    new["spec"]["signerName"] = json!("example.com/other");
    prepare_update(CERTS, KIND, &mut new, &created);
    assert_eq!(new["spec"], created["spec"]);

    let mut approved = created.clone();
    approved["status"] =
        json!({"conditions": [{"type": "Approved"}, {"type": "Denied", "status": "False"}]});
    default(CERTS, KIND, &mut approved);
    assert_eq!(approved["status"]["conditions"][0]["status"], "True");
    assert_eq!(
        messages(&validate_status_update(CERTS, KIND, &approved, &created)),
        vec![
            "status.conditions[1].status: Invalid value: \"False\": Denied condition may only have status=True",
            "status.conditions: Invalid value: Approved and Denied conditions are mutually exclusive",
        ]
    );
}

#[test]
fn decisions_and_certificates_are_final() {
    let mut approved = csr("x", "example.com/s", json!(["any"]));
    approved["status"] = json!({
        "conditions": [{"type": "Approved", "status": "True", "reason": "ok", "lastUpdateTime": "t1"}],
        "certificate": base64_encode(b"cert"),
    });
    let mut touched = approved.clone();
    touched["status"]["conditions"][0]["lastUpdateTime"] = json!("t2");
    assert!(validate_status_update(CERTS, KIND, &touched, &approved).is_empty());
    let mut revoked = approved.clone();
    revoked["status"]["conditions"] = json!([]);
    revoked["status"]["certificate"] = json!(base64_encode(b"other"));
    assert_eq!(
        messages(&validate_status_update(CERTS, KIND, &revoked, &approved)),
        vec![
            "status.conditions: Forbidden: updates may not remove a condition of type \"Approved\"",
            "status.certificate: Invalid value: \"<certificate data>\": updates may not modify existing certificate content",
        ]
    );
    let mut reasoned = approved.clone();
    reasoned["status"]["conditions"][0]["reason"] = json!("changed");
    assert_eq!(
        messages(&validate_status_update(CERTS, KIND, &reasoned, &approved)),
        vec![
            "status.conditions: Forbidden: updates may not modify a condition of type \"Approved\""
        ]
    );
}

#[test]
fn request_bytes_must_be_base64() {
    let mut bad = json!({"spec": {"request": "***"}});
    assert!(
        normalize(CERTS, KIND, &mut bad)
            .unwrap_err()
            .contains("illegal base64 data at input byte 0")
    );
}
