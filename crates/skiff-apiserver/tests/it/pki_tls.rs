//! PKI on disk, certificate contents, and real TLS round trips (kube-rs, tokio-rustls and the
//! real kubectl) against a tiny HTTPS echo server built from `Pki::server_tls_config` and the
//! `Authenticator`.

use std::collections::BTreeMap;
use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use skiff_apiserver::authn::{Authenticator, PeerIdentity, StaticTokenAuthenticator};
use skiff_apiserver::kubeconfig;
use skiff_apiserver::pki::{self, Pki, SanConfig};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

const FILES: [&str; 10] = [
    "server-ca.crt",
    "server-ca.key",
    "client-ca.crt",
    "client-ca.key",
    "serving-kube-apiserver.crt",
    "serving-kube-apiserver.key",
    "client-admin.crt",
    "client-admin.key",
    "client-kube-apiserver.crt",
    "client-kube-apiserver.key",
];

fn tls_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("server").join("tls")
}

fn snapshot(data_dir: &Path) -> BTreeMap<&'static str, Vec<u8>> {
    FILES
        .iter()
        .map(|f| (*f, fs::read(tls_dir(data_dir).join(f)).unwrap()))
        .collect()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn sans_with_node(ip: &str) -> SanConfig {
    SanConfig {
        hostnames: vec!["skiff-node".into()],
        node_ips: vec![ip.parse().unwrap()],
        extra_sans: vec!["api.skiff.test".into()],
        ..SanConfig::default()
    }
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    x509_parser::parse_x509_certificate(der).unwrap().1
}

fn cn(cert: &X509Certificate<'_>) -> String {
    cert.subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

fn orgs(cert: &X509Certificate<'_>) -> Vec<String> {
    cert.subject()
        .iter_organization()
        .map(|o| o.as_str().unwrap().to_string())
        .collect()
}

fn san_strings(cert: &X509Certificate<'_>) -> Vec<String> {
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => d.to_string(),
            GeneralName::IPAddress(b) if b.len() == 4 => {
                IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string()
            }
            GeneralName::IPAddress(b) => {
                IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()).to_string()
            }
            other => format!("{other:?}"),
        })
        .collect()
}

fn lifetime_days(cert: &X509Certificate<'_>) -> i64 {
    (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp()) / 86400
}

// ---------------------------------------------------------------------------------------------
// Files on disk

#[test]
fn first_start_creates_files_with_private_modes() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(dir.path(), &SanConfig::default()).unwrap();
    let tls = tls_dir(dir.path());
    assert_eq!(pki.dir(), tls);
    assert_eq!(mode(&dir.path().join("server")), 0o700);
    assert_eq!(mode(&tls), 0o700);
    for f in FILES {
        let expected = if f.ends_with(".key") { 0o600 } else { 0o644 };
        assert_eq!(mode(&tls.join(f)), expected, "{f}");
    }
    // Nothing else (no leftover temporary files).
    let mut names: Vec<String> = fs::read_dir(&tls)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = FILES.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(names, expected);
    assert_eq!(
        fs::read_to_string(tls.join("server-ca.crt")).unwrap(),
        pki.server_ca_pem()
    );
    assert_eq!(
        fs::read_to_string(tls.join("client-admin.crt")).unwrap(),
        pki.admin().cert_pem()
    );
}

#[test]
fn restart_reuses_everything_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let sans = sans_with_node("192.168.50.10");
    let first = Pki::load_or_create(dir.path(), &sans).unwrap();
    let before = snapshot(dir.path());
    let second = Pki::load_or_create(dir.path(), &sans).unwrap();
    assert_eq!(snapshot(dir.path()), before);
    assert_eq!(first.server_ca_pem(), second.server_ca_pem());
    assert_eq!(first.client_ca_pem(), second.client_ca_pem());
    assert_eq!(first.serving().cert_pem(), second.serving().cert_pem());
    assert_eq!(first.serving().key_pem(), second.serving().key_pem());
    assert_eq!(first.admin().cert_pem(), second.admin().cert_pem());
    assert_eq!(first.admin().key_pem(), second.admin().key_pem());
    // Fewer SANs than the certificate has does not re-issue it either.
    Pki::load_or_create(dir.path(), &SanConfig::default()).unwrap();
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn new_node_ip_reissues_only_the_serving_certificate() {
    let dir = tempfile::tempdir().unwrap();
    Pki::load_or_create(dir.path(), &sans_with_node("192.168.50.10")).unwrap();
    let before = snapshot(dir.path());
    let pki = Pki::load_or_create(dir.path(), &sans_with_node("192.168.50.11")).unwrap();
    let after = snapshot(dir.path());
    for f in FILES {
        if f == "serving-kube-apiserver.crt" {
            assert_ne!(after[f], before[f], "{f} should be re-issued");
        } else {
            // The key is kept: only the certificate changes.
            assert_eq!(after[f], before[f], "{f} should be unchanged");
        }
    }
    let serving = parse(pki.serving().cert_der());
    let sans = san_strings(&serving);
    assert!(sans.contains(&"192.168.50.11".to_string()), "{sans:?}");
    let server_ca = parse(pki.server_ca_der());
    serving
        .verify_signature(Some(server_ca.public_key()))
        .unwrap();
    // And the new state is stable.
    Pki::load_or_create(dir.path(), &sans_with_node("192.168.50.11")).unwrap();
    assert_eq!(snapshot(dir.path()), after);
}

#[test]
fn leaf_certificates_near_expiry_are_renewed_from_the_same_ca() {
    let dir = tempfile::tempdir().unwrap();
    Pki::load_or_create(dir.path(), &SanConfig::default()).unwrap();
    let before = snapshot(dir.path());
    let later = OffsetDateTime::now_utc() + time::Duration::days(300);
    let pki = Pki::load_or_create_at(dir.path(), &SanConfig::default(), later).unwrap();
    let after = snapshot(dir.path());
    for f in [
        "server-ca.crt",
        "server-ca.key",
        "client-ca.crt",
        "client-ca.key",
    ] {
        assert_eq!(after[f], before[f], "{f}");
    }
    assert_ne!(
        after["serving-kube-apiserver.crt"],
        before["serving-kube-apiserver.crt"]
    );
    assert_ne!(after["client-admin.crt"], before["client-admin.crt"]);
    let admin = parse(pki.admin().cert_der());
    assert!(
        admin.validity().not_after.timestamp()
            > (later + time::Duration::days(364)).unix_timestamp()
    );
}

#[test]
fn corrupt_or_partial_ca_is_a_clear_error_and_never_regenerated() {
    let dir = tempfile::tempdir().unwrap();
    Pki::load_or_create(dir.path(), &SanConfig::default()).unwrap();
    let tls = tls_dir(dir.path());

    // Garbage certificate.
    let ca_crt = tls.join("server-ca.crt");
    let good = fs::read(&ca_crt).unwrap();
    fs::write(
        &ca_crt,
        b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = Pki::load_or_create(dir.path(), &SanConfig::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains(&ca_crt.display().to_string()), "{err}");
    assert!(err.contains("corrupt"), "{err}");
    assert!(
        fs::read(&ca_crt)
            .unwrap()
            .starts_with(b"-----BEGIN CERTIFICATE-----\nnot")
    );

    // Valid PEM envelope around garbage DER.
    fs::write(
        &ca_crt,
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = Pki::load_or_create(dir.path(), &SanConfig::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains(&ca_crt.display().to_string()), "{err}");
    fs::write(&ca_crt, &good).unwrap();

    // Garbage key.
    let ca_key = tls.join("client-ca.key");
    let good_key = fs::read(&ca_key).unwrap();
    fs::write(&ca_key, b"hello").unwrap();
    let err = Pki::load_or_create(dir.path(), &SanConfig::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains(&ca_key.display().to_string()), "{err}");

    // Missing key next to an existing certificate.
    fs::remove_file(&ca_key).unwrap();
    let err = Pki::load_or_create(dir.path(), &SanConfig::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains(&ca_key.display().to_string()), "{err}");
    assert!(err.contains("missing"), "{err}");
    assert!(!ca_key.exists(), "the CA key must not be regenerated");

    // The key of another CA.
    let other = tempfile::tempdir().unwrap();
    Pki::load_or_create(other.path(), &SanConfig::default()).unwrap();
    fs::copy(tls_dir(other.path()).join("client-ca.key"), &ca_key).unwrap();
    let err = Pki::load_or_create(dir.path(), &SanConfig::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not match"), "{err}");

    // Restored: everything works again, and nothing was replaced.
    fs::write(&ca_key, &good_key).unwrap();
    let before = snapshot(dir.path());
    Pki::load_or_create(dir.path(), &SanConfig::default()).unwrap();
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn corrupt_leaf_is_a_clear_error_and_a_missing_leaf_is_reissued() {
    let dir = tempfile::tempdir().unwrap();
    Pki::load_or_create(dir.path(), &SanConfig::default()).unwrap();
    let tls = tls_dir(dir.path());
    let admin_crt = tls.join("client-admin.crt");
    fs::write(&admin_crt, "junk").unwrap();
    let err = Pki::load_or_create(dir.path(), &SanConfig::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains(&admin_crt.display().to_string()), "{err}");

    fs::remove_file(&admin_crt).unwrap();
    let before = snapshot_without(dir.path(), "client-admin.crt");
    let pki = Pki::load_or_create(dir.path(), &SanConfig::default()).unwrap();
    assert_eq!(snapshot_without(dir.path(), "client-admin.crt"), before);
    assert_eq!(cn(&parse(pki.admin().cert_der())), "system:admin");
}

fn snapshot_without(data_dir: &Path, skip: &str) -> BTreeMap<&'static str, Vec<u8>> {
    FILES
        .iter()
        .filter(|f| **f != skip)
        .map(|f| (*f, fs::read(tls_dir(data_dir).join(f)).unwrap()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Certificate contents

#[test]
fn certificates_carry_the_right_names_usages_chain_and_validity() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(dir.path(), &sans_with_node("192.168.50.10")).unwrap();

    for (ca_der, prefix) in [
        (pki.server_ca_der(), "skiff-server-ca@"),
        (pki.client_ca_der(), "skiff-client-ca@"),
    ] {
        let ca = parse(ca_der);
        let name = cn(&ca);
        assert!(name.starts_with(prefix), "{name}");
        name[prefix.len()..].parse::<u64>().unwrap();
        assert!(ca.is_ca());
        assert_eq!(ca.issuer().as_raw(), ca.subject().as_raw());
        ca.verify_signature(None).unwrap();
        let ku = ca.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.digital_signature());
        assert_eq!(lifetime_days(&ca), 3650);
        assert!(ca.validity().is_valid());
    }

    let server_ca = parse(pki.server_ca_der());
    let client_ca = parse(pki.client_ca_der());

    let serving = parse(pki.serving().cert_der());
    assert_eq!(cn(&serving), "kube-apiserver");
    assert!(!serving.is_ca());
    let mut sans = san_strings(&serving);
    sans.sort();
    let mut expected: Vec<String> = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "skiff-node",
        "api.skiff.test",
        "127.0.0.1",
        "::1",
        "10.43.0.1",
        "192.168.50.10",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    expected.sort();
    assert_eq!(sans, expected);
    let eku = serving.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth);
    let ku = serving.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && !ku.key_cert_sign());
    assert_eq!(serving.issuer().as_raw(), server_ca.subject().as_raw());
    serving
        .verify_signature(Some(server_ca.public_key()))
        .unwrap();
    assert!(
        serving
            .verify_signature(Some(client_ca.public_key()))
            .is_err()
    );
    assert_eq!(
        serving.validity().not_before.timestamp(),
        server_ca.validity().not_before.timestamp()
    );
    assert!((365..=366).contains(&lifetime_days(&serving)));

    let admin = parse(pki.admin().cert_der());
    assert_eq!(cn(&admin), "system:admin");
    assert_eq!(orgs(&admin), vec!["system:masters"]);
    // What the API server presents to kubelets: a client of the client CA.
    let kubelet_client = parse(pki.kubelet_client().cert_der());
    assert_eq!(cn(&kubelet_client), "kube-apiserver-kubelet-client");
    assert_eq!(orgs(&kubelet_client), vec!["system:masters"]);
    let eku = kubelet_client.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
    kubelet_client
        .verify_signature(Some(client_ca.public_key()))
        .unwrap();
    let eku = admin.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
    assert_eq!(admin.issuer().as_raw(), client_ca.subject().as_raw());
    admin
        .verify_signature(Some(client_ca.public_key()))
        .unwrap();
    assert!(admin.subject_alternative_name().unwrap().is_none());

    let node = pki.issue_node_client_cert("worker-7").unwrap();
    let node = parse(node.cert_der());
    assert_eq!(cn(&node), "system:node:worker-7");
    assert_eq!(orgs(&node), vec!["system:nodes"]);
    node.verify_signature(Some(client_ca.public_key())).unwrap();

    let kubelet = pki
        .issue_serving_cert("worker-7", &["worker-7".into(), "192.168.50.20".into()])
        .unwrap();
    let kubelet = parse(kubelet.cert_der());
    assert_eq!(san_strings(&kubelet), vec!["worker-7", "192.168.50.20"]);
    kubelet
        .verify_signature(Some(server_ca.public_key()))
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// TLS round trips

struct EchoServer {
    addr: SocketAddr,
    _dir: tempfile::TempDir,
    data_dir: PathBuf,
    pki: Pki,
    kubeconfig: PathBuf,
}

const TOKEN_FILE: &str = "tok-alice,alice,uid-alice,\"dev,ops\"\ntok-bob,bob,uid-bob\n";

/// `/whoami` answers the authenticated user as JSON, or 401; `/healthz` answers anyone with
/// the user name (anonymous allowed), like the real server's exemptions.
async fn echo(
    auth: &Authenticator,
    peer: &PeerIdentity,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let result = auth.authenticate(peer, req.headers());
    let (status, body) = match (req.uri().path(), result) {
        ("/healthz", Ok(user)) => {
            let user = user.unwrap_or_else(skiff_apiserver::authn::UserInfo::anonymous);
            (StatusCode::OK, user.name)
        }
        (_, Ok(Some(user))) => (
            StatusCode::OK,
            serde_json::json!({
                "username": user.name,
                "uid": user.uid,
                "groups": user.groups,
                "extra": user.extra,
            })
            .to_string(),
        ),
        _ => (
            StatusCode::UNAUTHORIZED,
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#.to_string(),
        ),
    };
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

async fn start_echo_server() -> EchoServer {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let pki = Pki::load_or_create(&data_dir, &SanConfig::default()).unwrap();
    let token_path = dir.path().join("tokens.csv");
    fs::write(&token_path, TOKEN_FILE).unwrap();
    let auth = Arc::new(
        Authenticator::new()
            .with_x509(pki.x509_authenticator().unwrap())
            .with_token_authenticator(Arc::new(
                StaticTokenAuthenticator::load(&token_path).unwrap(),
            )),
    );
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(pki.server_tls_config().unwrap()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let auth = auth.clone();
            tokio::spawn(async move {
                let Ok((tls, certs)) = pki::accept(&acceptor, tcp).await else {
                    return;
                };
                let peer = Arc::new(auth.peer_identity(certs.as_deref()));
                let service = service_fn(move |req| {
                    let auth = auth.clone();
                    let peer = peer.clone();
                    async move { Ok::<_, std::convert::Infallible>(echo(&auth, &peer, req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    let kubeconfig = dir.path().join("etc").join("skiff").join("skiff.yaml");
    let url = format!("https://127.0.0.1:{}", addr.port());
    kubeconfig::write_admin(&kubeconfig, &url, &pki).unwrap();
    EchoServer {
        addr,
        _dir: dir,
        data_dir,
        pki,
        kubeconfig,
    }
}

async fn kube_config_from_file(path: &Path) -> kube::Config {
    let kc = kube::config::Kubeconfig::read_from(path).unwrap();
    kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap()
}

async fn get(config: kube::Config, path: &str) -> Result<serde_json::Value, kube::Error> {
    let client = kube::Client::try_from(config).unwrap();
    let text = client
        .request_text(http::Request::get(path).body(Vec::new()).unwrap())
        .await?;
    Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

fn status_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// A kube config trusting the server CA, with no credentials.
fn bare_config(server: &EchoServer) -> kube::Config {
    let mut config = kube::Config::new(
        format!("https://127.0.0.1:{}", server.addr.port())
            .parse()
            .unwrap(),
    );
    config.root_cert = Some(vec![server.pki.server_ca_der().to_vec()]);
    config
}

#[tokio::test]
async fn kubeconfig_is_k3s_like_and_private() {
    let server = start_echo_server().await;
    assert_eq!(mode(&server.kubeconfig), 0o600);
    let text = fs::read_to_string(&server.kubeconfig).unwrap();
    for needle in [
        "current-context: default",
        "certificate-authority-data:",
        "client-certificate-data:",
        "client-key-data:",
        "kind: Config",
        "apiVersion: v1",
    ] {
        assert!(text.contains(needle), "{needle} missing in\n{text}");
    }
    // One-line plain scalars, no folded blocks.
    assert!(!text.contains(">-") && !text.contains('|'), "{text}");
    let ca_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("certificate-authority-data:"))
        .unwrap();
    let ca_b64 = ca_line.split_once(": ").unwrap().1;
    assert_eq!(ca_b64, b64(server.pki.server_ca_pem()));
    let kc = kube::config::Kubeconfig::read_from(&server.kubeconfig).unwrap();
    assert_eq!(kc.current_context.as_deref(), Some("default"));
    assert_eq!(kc.clusters[0].name, "default");
    assert_eq!(kc.auth_infos[0].name, "default");
    assert_eq!(kc.contexts[0].name, "default");
    let cluster = kc.clusters[0].cluster.as_ref().unwrap();
    assert_eq!(
        cluster.server.as_deref(),
        Some(format!("https://127.0.0.1:{}", server.addr.port()).as_str())
    );
    // Rewriting replaces the file atomically and keeps the mode.
    kubeconfig::write_admin(&server.kubeconfig, "https://127.0.0.1:1", &server.pki).unwrap();
    assert_eq!(mode(&server.kubeconfig), 0o600);
    assert!(server.data_dir.join("server/tls/client-admin.crt").exists());
}

#[tokio::test]
async fn admin_kubeconfig_authenticates_as_system_admin_with_kube_rs() {
    let server = start_echo_server().await;
    let config = kube_config_from_file(&server.kubeconfig).await;
    let me = get(config, "/whoami").await.unwrap();
    assert_eq!(me["username"], "system:admin");
    assert_eq!(
        me["groups"],
        serde_json::json!(["system:masters", "system:authenticated"])
    );
    let id = me["extra"]["authentication.kubernetes.io/credential-id"][0]
        .as_str()
        .unwrap();
    assert!(id.starts_with("X509SHA256="), "{id}");
}

#[tokio::test]
async fn bearer_tokens_anonymous_and_bad_tokens() {
    let server = start_echo_server().await;

    let mut config = bare_config(&server);
    config.auth_info.token = Some("tok-alice".to_string().into());
    let me = get(config, "/whoami").await.unwrap();
    assert_eq!(me["username"], "alice");
    assert_eq!(me["uid"], "uid-alice");
    assert_eq!(
        me["groups"],
        serde_json::json!(["dev", "ops", "system:authenticated"])
    );

    // No credentials: anonymous, allowed on /healthz only.
    let anon = get(bare_config(&server), "/healthz").await.unwrap();
    assert_eq!(anon, serde_json::json!("system:anonymous"));
    let err = get(bare_config(&server), "/whoami").await.unwrap_err();
    assert_eq!(status_code(&err), Some(401), "{err}");

    // A bad token is 401 even where anonymous would be allowed.
    let mut config = bare_config(&server);
    config.auth_info.token = Some("tok-mallory".to_string().into());
    let err = get(config, "/healthz").await.unwrap_err();
    assert_eq!(status_code(&err), Some(401), "{err}");
}

#[tokio::test]
async fn client_certificate_from_another_ca_is_unauthorized() {
    let server = start_echo_server().await;
    let other = tempfile::tempdir().unwrap();
    let other_pki = Pki::load_or_create(other.path(), &SanConfig::default()).unwrap();
    let mut config = bare_config(&server);
    config.auth_info.client_certificate_data = Some(b64(other_pki.admin().cert_pem()));
    config.auth_info.client_key_data = Some(b64(other_pki.admin().key_pem()).into());
    // As kube-apiserver: the handshake completes, the request is 401.
    let err = get(config, "/whoami").await.unwrap_err();
    assert_eq!(status_code(&err), Some(401), "{err}");

    // A node certificate from the right CA works.
    let node = server.pki.issue_node_client_cert("worker-1").unwrap();
    let mut config = bare_config(&server);
    config.auth_info.client_certificate_data = Some(b64(node.cert_pem()));
    config.auth_info.client_key_data = Some(b64(node.key_pem()).into());
    let me = get(config, "/whoami").await.unwrap();
    assert_eq!(me["username"], "system:node:worker-1");
    assert_eq!(
        me["groups"],
        serde_json::json!(["system:nodes", "system:authenticated"])
    );
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn serving_certificate_verifies_for_service_names_and_negotiates_h2() {
    use rustls::pki_types::ServerName;
    let server = start_echo_server().await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server.pki.server_ca_der().clone()).unwrap();
    for (name, alpn) in [
        ("kubernetes.default.svc", b"h2".to_vec()),
        ("kubernetes.default.svc.cluster.local", b"http/1.1".to_vec()),
        ("localhost", b"h2".to_vec()),
        ("10.43.0.1", b"h2".to_vec()),
    ] {
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
        config.alpn_protocols = vec![alpn.clone()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let tls = connector
            .connect(ServerName::try_from(name.to_string()).unwrap(), tcp)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn.as_slice()));
    }
    // A name not in the certificate fails verification.
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    assert!(
        connector
            .connect(ServerName::try_from("example.com").unwrap(), tcp)
            .await
            .is_err()
    );
}

/// The real kubectl 1.33 and 1.32 (a Go client: HTTP/2, Go's TLS stack) with the generated kubeconfig.
#[tokio::test]
async fn kubectl_get_raw_with_the_admin_kubeconfig() {
    let server = start_echo_server().await;
    for version in ["1.33", "1.32"] {
        let kubectl = PathBuf::from(format!("/usr/lib/google-cloud-sdk/bin/kubectl.{version}"));
        if !kubectl.exists() {
            eprintln!("skipping: {} not installed", kubectl.display());
            continue;
        }
        kubectl_checks(&server, &kubectl).await;
    }
}

async fn kubectl_checks(server: &EchoServer, kubectl: &Path) {
    let out = tokio::process::Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(["get", "--raw", "/whoami"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kubectl failed: {stderr}");
    let me: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(me["username"], "system:admin");
    assert_eq!(
        me["groups"],
        serde_json::json!(["system:masters", "system:authenticated"])
    );

    // A bearer token and no kubeconfig at all.
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    let ca = server.data_dir.join("server/tls/server-ca.crt");
    let token_get = |token: &'static str| {
        tokio::process::Command::new(kubectl)
            .arg("--kubeconfig=/dev/null")
            .arg(format!("--server={url}"))
            .arg(format!("--certificate-authority={}", ca.display()))
            .arg(format!("--token={token}"))
            .args(["get", "--raw", "/whoami"])
            .output()
    };
    let out = token_get("tok-bob").await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let me: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(me["username"], "bob");
    assert_eq!(me["groups"], serde_json::json!(["system:authenticated"]));
    let out = token_get("tok-mallory").await.unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Unauthorized"), "{stderr}");
}
