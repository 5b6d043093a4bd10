//! Client certificate authentication (upstream `request/x509`): the chain must verify against
//! the client CA for client auth; the user is the leaf's subject CN, the groups its O values.

use std::fmt::Write as _;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use x509_parser::certificate::X509Certificate;

use super::{AuthnError, CREDENTIAL_ID_KEY, UserInfo};
use crate::pki::PkiError;

/// Verifies client certificate chains and maps them to users.
#[derive(Debug, Clone)]
pub struct X509Authenticator {
    verifier: Arc<dyn ClientCertVerifier>,
}

/// What a verified certificate says about its holder, and until when.
#[derive(Debug, Clone)]
pub(crate) struct X509Identity {
    pub user: Option<UserInfo>,
    pub not_after: UnixTime,
}

impl X509Authenticator {
    /// An authenticator trusting the given client CA certificates.
    pub fn new(client_cas: &[CertificateDer<'static>]) -> Result<Self, PkiError> {
        Ok(X509Authenticator {
            verifier: crate::pki::webpki_client_verifier(client_cas)?,
        })
    }

    /// Verifies `chain` (leaf first) at `now`. `Ok(None)` when it verifies but names no user
    /// (empty CN), as upstream.
    pub fn authenticate(
        &self,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<Option<UserInfo>, AuthnError> {
        self.identify(chain, now).map(|id| id.user)
    }

    pub(crate) fn identify(
        &self,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<X509Identity, AuthnError> {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err(AuthnError::Certificate {
                certificate: String::new(),
                reason: "empty certificate chain".into(),
            });
        };
        let parsed = x509_parser::parse_x509_certificate(leaf)
            .map(|(_, c)| c)
            .map_err(|e| AuthnError::Certificate {
                certificate: String::new(),
                reason: format!("unparsable certificate: {e}"),
            })?;
        if let Err(e) = self.verifier.verify_client_cert(leaf, intermediates, now) {
            return Err(AuthnError::Certificate {
                certificate: certificate_identifier(&parsed),
                reason: e.to_string(),
            });
        }
        let not_after = u64::try_from(parsed.validity().not_after.timestamp()).unwrap_or(0);
        let names = crate::pki::subject_names(&parsed);
        let user = names
            .common_name
            .filter(|cn| !cn.is_empty())
            .map(|name| UserInfo {
                name,
                uid: String::new(),
                groups: names.organizations,
                extra: [(
                    CREDENTIAL_ID_KEY.to_string(),
                    vec![format!("X509SHA256={}", hex(&sha256(leaf)))],
                )]
                .into(),
            });
        Ok(X509Identity {
            user,
            not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(not_after)),
        })
    }
}

/// Upstream's `certificateIdentifier`: serial number and key identifiers, for error messages.
fn certificate_identifier(cert: &X509Certificate<'_>) -> String {
    let mut skid = Vec::new();
    let mut akid = Vec::new();
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => {
                skid = k.0.to_vec()
            }
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(k) => {
                akid = k
                    .key_identifier
                    .as_ref()
                    .map(|k| k.0.to_vec())
                    .unwrap_or_default()
            }
            _ => {}
        }
    }
    format!(
        "SN={}, SKID={}, AKID={}",
        cert.serial,
        colon_hex(&skid),
        colon_hex(&akid)
    )
}

fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// SHA-256 through the one crypto provider we ship (ring, via rustls).
fn sha256(data: &[u8]) -> Vec<u8> {
    match rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256.tls13() {
        Some(suite) => suite.common.hash_provider.hash(data).as_ref().to_vec(),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn sha256_matches_known_vector() {
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn colon_hex_formats_like_upstream() {
        assert_eq!(colon_hex(&[0x0a, 0xbc]), "0A:BC");
        assert_eq!(colon_hex(&[]), "");
    }
}
