//! The server over real HTTPS on 127.0.0.1, with client certificates from a
//! test CA.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::PathBuf;

use http_body_util::BodyExt;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use rustls::pki_types::{PrivatePkcs8KeyDer, ServerName};
use tokio_rustls::TlsConnector;

use super::*;

/// A CA that signs both the server's and the clients' certificates.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

type Creds = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

impl TestCa {
    fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        TestCa { issuer }
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    fn leaf(&self, cn: &str, sans: &[&str], usage: ExtendedKeyUsagePurpose) -> Creds {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }
}

/// Log files by (namespace, pod, container, previous).
struct FakeLocator {
    files: HashMap<(String, String, String, bool), PathBuf>,
}

impl LogLocator for FakeLocator {
    fn locate(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Result<LogTarget, (u16, String)> {
        let key = (namespace.into(), pod.into(), container.into(), previous);
        match self.files.get(&key) {
            Some(path) => Ok(LogTarget {
                path: path.clone(),
                running: Arc::new(|| true),
            }),
            None if previous => Err((
                400,
                format!("previous terminated container {container:?} in pod {pod:?} not found"),
            )),
            None => Err((404, format!("pod {pod:?} does not exist"))),
        }
    }
}

struct Fixture {
    addr: SocketAddr,
    ca: TestCa,
    client: Creds,
    log: PathBuf,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn start() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("0.log");
    std::fs::write(
        &log,
        "2026-11-29T22:33:10Z stdout F one\n2026-11-29T22:33:11Z stderr F two\n",
    )
    .unwrap();
    let ca = TestCa::new("test-client-ca");
    let (chain, key) = ca.leaf(
        "kubelet",
        &["127.0.0.1", "localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let client = ca.leaf(
        "kube-apiserver-kubelet-client",
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let config = KubeletServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        tls: tls_config(&[ca.der()], chain, key).unwrap(),
    };
    let server = KubeletServer::bind(config).await.unwrap();
    let addr = server.local_addr().unwrap();
    let locator = FakeLocator {
        files: HashMap::from([(
            ("default".into(), "web".into(), "nginx".into(), false),
            log.clone(),
        )]),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(server.serve(Arc::new(locator), None, async {
        let _ = stopped.await;
    }));
    Fixture {
        addr,
        ca,
        client,
        log,
        _dir: dir,
        stop: Some(stop),
        task,
    }
}

impl Fixture {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

/// Sends `GET path` over a new TLS connection trusting `ca`, presenting
/// `cert` if given.
async fn get(
    addr: SocketAddr,
    ca: &TestCa,
    cert: Option<&Creds>,
    path: &str,
) -> Result<Response<hyper::body::Incoming>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match cert {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header(header::HOST, "127.0.0.1")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    send.send_request(req).await.map_err(|e| e.to_string())
}

async fn body_text(resp: Response<hyper::body::Incoming>) -> String {
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn serves_container_logs_to_clients_of_the_ca() {
    let f = start().await;
    let cases: &[(&str, u16, &str)] = &[
        ("/containerLogs/default/web/nginx", 200, "one\ntwo\n"),
        ("/containerLogs/default/web/nginx?tailLines=1", 200, "two\n"),
        (
            "/containerLogs/default/web/nginx?timestamps=true&limitBytes=24",
            200,
            "2026-11-29T22:33:10Z one",
        ),
        (
            "/containerLogs/default/web/nginx?sinceTime=2026-11-29T22%3A33%3A11Z",
            200,
            "two\n",
        ),
        (
            "/containerLogs/default/web/nginx?previous=true",
            400,
            "previous terminated container \"nginx\" in pod \"web\" not found",
        ),
        (
            "/containerLogs/default/gone/nginx",
            404,
            "pod \"gone\" does not exist",
        ),
        (
            "/containerLogs/default/web/nginx?tailLines=-1",
            422,
            r#"{"message": "Invalid request."}"#,
        ),
        (
            "/containerLogs/default/web/nginx?tailLines=many",
            400,
            r#"{"message": "Unable to decode query."}"#,
        ),
        (
            "/containerLogs/default/web/",
            400,
            r#"{"message": "Missing container name."}"#,
        ),
        (
            "/containerLogs/default/web/nginx/more",
            404,
            "404 page not found",
        ),
        ("/healthz", 200, "ok"),
        ("/exec/default/web/nginx", 404, "404 page not found"),
    ];
    for (path, code, want) in cases {
        let resp = get(f.addr, &f.ca, Some(&f.client), path).await.unwrap();
        assert_eq!(resp.status().as_u16(), *code, "{path}");
        assert_eq!(body_text(resp).await, *want, "{path}");
    }
    f.stop().await;
}

#[tokio::test]
async fn refuses_clients_without_a_certificate_of_the_ca() {
    let f = start().await;
    // Anonymous: health only.
    let resp = get(f.addr, &f.ca, None, "/healthz").await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = get(f.addr, &f.ca, None, "/containerLogs/default/web/nginx")
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body_text(resp).await, "Unauthorized");
    // A certificate from another CA fails the handshake.
    let stranger = TestCa::new("someone-else").leaf(
        "kube-apiserver-kubelet-client",
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let refused = get(
        f.addr,
        &f.ca,
        Some(&stranger),
        "/containerLogs/default/web/nginx",
    )
    .await;
    assert!(
        refused.is_err(),
        "a foreign client certificate was accepted"
    );
    f.stop().await;
}

#[tokio::test]
async fn follow_streams_appended_lines_until_the_client_leaves() {
    let f = start().await;
    let resp = get(
        f.addr,
        &f.ca,
        Some(&f.client),
        "/containerLogs/default/web/nginx?follow=true&tailLines=1",
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut got = String::new();
    let mut next = async |got: &mut String, want: &str| {
        while !got.contains(want) {
            let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
                .await
                .expect("no data in time")
                .expect("body ended")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                got.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    };
    next(&mut got, "two\n").await;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&f.log)
        .unwrap();
    std::io::Write::write_all(&mut file, b"2026-11-29T22:33:12Z stdout F three\n").unwrap();
    next(&mut got, "three\n").await;
    assert_eq!(got, "two\nthree\n");
    drop(body);
    // The server's connections end with the client's, so it stops promptly.
    f.stop().await;
}
