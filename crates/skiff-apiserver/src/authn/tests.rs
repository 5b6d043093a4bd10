#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use http::HeaderValue;

use super::*;
use crate::pki::{Pki, SanConfig};

struct Fixture {
    _dir: tempfile::TempDir,
    pki: Pki,
    other: Pki,
    auth: Authenticator,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(&dir.path().join("a"), &SanConfig::default()).unwrap();
    let other = Pki::load_or_create(&dir.path().join("b"), &SanConfig::default()).unwrap();
    let tokens = StaticTokenAuthenticator::parse(
        Path::new("tokens.csv"),
        "good-token,alice,uid-1,\"dev,ops\"\nauth-token,bob,uid-2,system:authenticated\n",
    )
    .unwrap();
    let auth = Authenticator::new()
        .with_x509(X509Authenticator::new(std::slice::from_ref(pki.client_ca_der())).unwrap())
        .with_token_authenticator(Arc::new(tokens));
    Fixture {
        _dir: dir,
        pki,
        other,
        auth,
    }
}

fn headers(authorization: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(v) = authorization {
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn chain(c: &crate::pki::Credentials) -> Vec<CertificateDer<'static>> {
    vec![c.cert_der().clone()]
}

#[test]
fn bearer_token_parsing_follows_upstream() {
    let t = |v: &str| bearer_token(&headers(Some(v)));
    assert_eq!(t("Bearer abc").as_deref(), Some("abc"));
    assert_eq!(t("bearer abc").as_deref(), Some("abc"));
    assert_eq!(t("  BEARER abc  ").as_deref(), Some("abc"));
    assert_eq!(t("Bearer abc def").as_deref(), Some("abc"));
    assert_eq!(t("Bearer  abc"), None, "empty token before a double space");
    assert_eq!(t("Bearer"), None);
    assert_eq!(t("Basic abc"), None);
    assert_eq!(bearer_token(&headers(None)), None);
}

#[test]
fn client_certificate_identifies_user_and_groups() {
    let f = fixture();
    let user = f
        .auth
        .authenticate_request(Some(&chain(f.pki.admin())), &headers(None))
        .unwrap()
        .unwrap();
    assert_eq!(user.name, "system:admin");
    assert_eq!(user.groups, vec!["system:masters", "system:authenticated"]);
    let id = &user.extra[CREDENTIAL_ID_KEY];
    assert_eq!(id.len(), 1);
    assert!(
        id[0].starts_with("X509SHA256=") && id[0].len() == 11 + 64,
        "{id:?}"
    );
}

#[test]
fn node_certificate_identifies_the_node() {
    let f = fixture();
    let node = f.pki.issue_node_client_cert("worker-1").unwrap();
    let user = f
        .auth
        .authenticate_request(Some(&chain(&node)), &headers(None))
        .unwrap()
        .unwrap();
    assert_eq!(user.name, "system:node:worker-1");
    assert_eq!(user.groups, vec!["system:nodes", "system:authenticated"]);
}

#[test]
fn tokens_and_the_union_order() {
    let f = fixture();
    let admin = chain(f.pki.admin());
    let foreign = chain(f.other.admin());

    let alice = f
        .auth
        .authenticate_request(None, &headers(Some("Bearer good-token")))
        .unwrap()
        .unwrap();
    assert_eq!(alice.name, "alice");
    assert_eq!(alice.uid, "uid-1");
    assert_eq!(alice.groups, vec!["dev", "ops", "system:authenticated"]);

    // The group adder does not add system:authenticated twice.
    let bob = f
        .auth
        .authenticate_request(None, &headers(Some("Bearer auth-token")))
        .unwrap()
        .unwrap();
    assert_eq!(bob.groups, vec!["system:authenticated"]);

    assert_eq!(
        f.auth
            .authenticate_request(None, &headers(Some("Bearer nope"))),
        Err(AuthnError::InvalidBearerToken)
    );
    assert_eq!(f.auth.authenticate_request(None, &headers(None)), Ok(None));

    // x509 first: a valid certificate wins over any token.
    let user = f
        .auth
        .authenticate_request(Some(&admin), &headers(Some("Bearer nope")))
        .unwrap()
        .unwrap();
    assert_eq!(user.name, "system:admin");
    let user = f
        .auth
        .authenticate_request(Some(&admin), &headers(Some("Bearer good-token")))
        .unwrap()
        .unwrap();
    assert_eq!(user.name, "system:admin");

    // A certificate from another CA fails, but a valid token still authenticates.
    let err = f
        .auth
        .authenticate_request(Some(&foreign), &headers(None))
        .unwrap_err();
    assert!(matches!(err, AuthnError::Certificate { .. }), "{err}");
    assert!(err.to_string().contains("SN="), "{err}");
    let user = f
        .auth
        .authenticate_request(Some(&foreign), &headers(Some("Bearer good-token")))
        .unwrap()
        .unwrap();
    assert_eq!(user.name, "alice");
    let err = f
        .auth
        .authenticate_request(Some(&foreign), &headers(Some("Bearer nope")))
        .unwrap_err();
    assert!(
        matches!(&err, AuthnError::Multiple(v) if v.len() == 2),
        "{err}"
    );
}

#[test]
fn serving_certificate_is_not_a_client_certificate() {
    let f = fixture();
    // Signed by the server CA, and for server auth only.
    let err = f
        .auth
        .authenticate_request(Some(&chain(f.pki.serving())), &headers(None))
        .unwrap_err();
    assert!(matches!(err, AuthnError::Certificate { .. }), "{err}");
}

#[test]
fn without_token_authenticators_bearer_headers_are_ignored() {
    let f = fixture();
    let auth = Authenticator::new()
        .with_x509(X509Authenticator::new(std::slice::from_ref(f.pki.client_ca_der())).unwrap());
    assert_eq!(
        auth.authenticate_request(None, &headers(Some("Bearer anything"))),
        Ok(None)
    );
    // And with nothing configured, certificates are not trusted either.
    let none = Authenticator::new();
    assert_eq!(
        none.authenticate_request(Some(&chain(f.pki.admin())), &headers(None)),
        Ok(None)
    );
}

#[test]
fn peer_identity_is_checked_against_expiry_per_request() {
    let f = fixture();
    let now = UnixTime::now();
    let peer = f.auth.peer_identity_at(Some(&chain(f.pki.admin())), now);
    let user = f.auth.authenticate_at(&peer, &headers(None), now).unwrap();
    assert_eq!(user.unwrap().name, "system:admin");
    let later = UnixTime::since_unix_epoch(Duration::from_secs(now.as_secs() + 2 * 365 * 86400));
    let err = f
        .auth
        .authenticate_at(&peer, &headers(None), later)
        .unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    // A fresh verification at that time fails in webpki as well.
    let peer = f.auth.peer_identity_at(Some(&chain(f.pki.admin())), later);
    assert!(
        f.auth
            .authenticate_at(&peer, &headers(None), later)
            .is_err()
    );
    assert_eq!(
        f.auth
            .authenticate_at(&PeerIdentity::none(), &headers(None), now),
        Ok(None)
    );
}

#[test]
fn anonymous_user() {
    let anon = UserInfo::anonymous();
    assert_eq!(anon.name, "system:anonymous");
    assert_eq!(anon.groups, vec!["system:unauthenticated"]);
    assert!(anon.is_anonymous());
    assert_eq!(anon.clone().with_authenticated_group(), anon);
}
