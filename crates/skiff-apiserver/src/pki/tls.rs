//! The API server's rustls configuration and the TLS accept helper.
//!
//! Client certificates are optional and, as in kube-apiserver (Go's `tls.RequestClientCert`),
//! the handshake does not judge them: the server asks for a certificate (hinting the client CA),
//! checks that the client holds its private key (the CertificateVerify signature), and leaves
//! chain verification to the x509 authenticator ([`crate::authn::X509Authenticator`]). So a
//! certificate from another CA yields 401 (or the identity of a valid bearer token sent with it)
//! instead of a failed handshake, and bearer tokens and anonymous `/healthz` share the port.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::{Pki, PkiError};

/// The crypto provider of the whole server: ring, explicitly (see HOST-NOTES: one provider).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A verifier of client certificates against `roots` (with the ring provider), anonymous
/// clients allowed.
pub(crate) fn webpki_client_verifier(
    roots: &[CertificateDer<'static>],
) -> Result<Arc<dyn ClientCertVerifier>, PkiError> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.clone())?;
    }
    Ok(
        WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider())
            .allow_unauthenticated()
            .build()?,
    )
}

/// Requests a client certificate and checks possession of its key, but accepts any chain: the
/// x509 authenticator verifies it per connection (upstream's behaviour, see the module docs).
#[derive(Debug)]
struct RequestClientCert {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

impl Pki {
    /// The API server's TLS configuration: ring provider, TLS 1.2 and 1.3, ALPN `h2` and
    /// `http/1.1`, the serving certificate, client certificates requested but optional (see the
    /// module docs: chains are verified by [`crate::authn::X509Authenticator`], never trust a
    /// peer certificate from this configuration without it).
    pub fn server_tls_config(&self) -> Result<ServerConfig, PkiError> {
        let verifier = Arc::new(RequestClientCert {
            inner: webpki_client_verifier(std::slice::from_ref(self.client_ca_der()))?,
        });
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![self.serving().cert_der().clone()],
                self.serving().key_der(),
            )?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// Completes the TLS handshake on `tcp` and returns the stream with the client's certificate
/// chain (leaf first), if it sent one. The chain is NOT verified: hand it to
/// [`crate::authn::Authenticator::peer_identity`]. Callers should bound the handshake with a
/// timeout.
pub async fn accept(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
) -> std::io::Result<(TlsStream<TcpStream>, Option<Vec<CertificateDer<'static>>>)> {
    let stream = acceptor.accept(tcp).await?;
    let peer = stream
        .get_ref()
        .1
        .peer_certificates()
        .filter(|chain| !chain.is_empty())
        .map(<[CertificateDer<'static>]>::to_vec);
    Ok((stream, peer))
}
