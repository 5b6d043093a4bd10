#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use time::Duration;

fn leaf_spec(ips: &[&str]) -> LeafSpec {
    LeafSpec {
        common_name: "kube-apiserver".into(),
        organizations: Vec::new(),
        dns_names: BTreeSet::from(["localhost".to_string()]),
        ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
        usage: Usage::Server,
    }
}

#[test]
fn required_sans_include_fixed_node_and_extra_names() {
    let sans = SanConfig {
        hostnames: vec!["Node-A".into()],
        node_ips: vec!["192.168.1.10".parse().unwrap()],
        extra_sans: vec!["api.example.com".into(), " 203.0.113.7 ".into(), "".into()],
        api_service_ip: "10.43.0.1".parse().unwrap(),
    };
    let (dns, ips) = sans.required().unwrap();
    for name in [
        "localhost",
        "node-a",
        "api.example.com",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ] {
        assert!(dns.contains(name), "{name} missing from {dns:?}");
    }
    for ip in [
        "127.0.0.1",
        "::1",
        "10.43.0.1",
        "192.168.1.10",
        "203.0.113.7",
    ] {
        assert!(
            ips.contains(&ip.parse().unwrap()),
            "{ip} missing from {ips:?}"
        );
    }
    assert_eq!(dns.len(), 7);
    assert_eq!(ips.len(), 5);
}

#[test]
fn invalid_extra_san_is_rejected() {
    let sans = SanConfig {
        extra_sans: vec!["bad name!".into()],
        ..SanConfig::default()
    };
    let err = sans.required().unwrap_err().to_string();
    assert!(err.contains("bad name!"), "{err}");
    // A detected host name that is not a DNS name is left out instead.
    let sans = SanConfig {
        hostnames: vec!["odd host".into(), "under_score".into()],
        ..SanConfig::default()
    };
    let (dns, _) = sans.required().unwrap();
    assert!(dns.contains("under_score") && !dns.contains("odd host"));
}

#[test]
fn reissue_reasons() {
    let now = OffsetDateTime::now_utc();
    let ca = issue::self_signed_ca("test-ca", issue::new_key().unwrap(), now).unwrap();
    let other_ca = issue::self_signed_ca("test-ca", issue::new_key().unwrap(), now).unwrap();
    let key = issue::new_key().unwrap();
    let spec = leaf_spec(&["127.0.0.1"]);
    let cert = issue::signed_leaf(&ca, &spec, &key, now).unwrap();
    let path = Path::new("x.crt");
    let reason = |ca: &Authority, spec: &LeafSpec, key: &KeyPair, at: OffsetDateTime| {
        issue::reissue_reason(path, cert.der(), key, ca, spec, at).unwrap()
    };

    assert_eq!(reason(&ca, &spec, &key, now), None);
    // A CA with the same name but another key did not sign it.
    assert_eq!(
        reason(&other_ca, &spec, &key, now).as_deref(),
        Some("not signed by the current CA")
    );
    let other_key = issue::new_key().unwrap();
    assert!(
        reason(&ca, &spec, &other_key, now)
            .unwrap()
            .contains("private key")
    );
    assert!(
        reason(&ca, &spec, &key, now + Duration::days(300))
            .unwrap()
            .contains("expires")
    );
    let wider = leaf_spec(&["127.0.0.1", "192.168.7.7"]);
    assert_eq!(
        reason(&ca, &wider, &key, now).as_deref(),
        Some("missing subject alternative names 192.168.7.7")
    );
    // Fewer required names than the certificate has is fine.
    let narrower = leaf_spec(&[]);
    assert_eq!(reason(&ca, &narrower, &key, now), None);
    let mut renamed = spec.clone();
    renamed.common_name = "other".into();
    assert_eq!(
        reason(&ca, &renamed, &key, now).as_deref(),
        Some("subject differs")
    );
}

#[test]
fn leaf_starts_with_its_ca_and_lasts_a_year() {
    let now = OffsetDateTime::now_utc();
    let ca = issue::self_signed_ca("c", issue::new_key().unwrap(), now).unwrap();
    let key = issue::new_key().unwrap();
    let later = now + Duration::days(30);
    let cert = issue::signed_leaf(&ca, &leaf_spec(&[]), &key, later).unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.der()).unwrap();
    let nb = parsed.validity().not_before.to_datetime();
    let na = parsed.validity().not_after.to_datetime();
    assert_eq!(nb.unix_timestamp(), ca.not_before.unix_timestamp());
    assert_eq!(na.unix_timestamp(), later.unix_timestamp() + 365 * 86400);
}

#[test]
fn credentials_debug_hides_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(dir.path(), &SanConfig::default()).unwrap();
    let debug = format!("{:?} {pki:?}", pki.admin());
    assert!(!debug.contains("PRIVATE KEY"), "{debug}");
}
