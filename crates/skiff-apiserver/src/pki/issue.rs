//! Certificate issuance (rcgen, ECDSA P-256) and the checks that decide whether a
//! certificate found on disk can be reused.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;

use rand::Rng;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::PkiError;

/// CA lifetime, as k3s: 10 years.
pub(crate) const CA_VALIDITY: Duration = Duration::days(3650);
/// Leaf lifetime, as k3s: 1 year.
pub(crate) const LEAF_VALIDITY: Duration = Duration::days(365);
/// Leaf certificates closer than this to expiry are re-issued at start (k3s renews within 90
/// days).
pub(crate) const RENEW_BEFORE: Duration = Duration::days(90);

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Usage {
    Server,
    Client,
}

/// What a leaf certificate must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeafSpec {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: BTreeSet<String>,
    pub ips: BTreeSet<IpAddr>,
    pub usage: Usage,
}

/// A certificate authority: its certificate and signing key.
pub(crate) struct Authority {
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub key: KeyPair,
    pub not_before: OffsetDateTime,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Authority")
            .field("not_before", &self.not_before)
            .finish_non_exhaustive()
    }
}

fn generate_error(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Generate {
        what: what.to_string(),
        source,
    }
}

/// A fresh ECDSA P-256 key.
pub(crate) fn new_key() -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(generate_error("private key"))
}

/// A random positive 128-bit serial number (RFC 5280: unique per issuer, at most 20 octets).
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::rng().random();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

fn truncate_to_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

/// A self-signed CA certificate for `key`, valid from `now` for [`CA_VALIDITY`].
pub(crate) fn self_signed_ca(
    common_name: &str,
    key: KeyPair,
    now: OffsetDateTime,
) -> Result<Authority, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    let not_before = truncate_to_seconds(now);
    params.not_before = not_before;
    params.not_after = not_before + CA_VALIDITY;
    params.serial_number = Some(random_serial());
    let cert = params
        .self_signed(&key)
        .map_err(generate_error(common_name))?;
    Ok(Authority {
        cert_pem: cert.pem(),
        cert_der: cert.der().clone(),
        key,
        not_before,
    })
}

/// A leaf certificate for `key` signed by `ca`. Like k3s (client-go's `NewSignedCert`) it is
/// valid from the CA's own start, so clock skew between machines never makes it "not yet
/// valid", until `now` + [`LEAF_VALIDITY`].
pub(crate) fn signed_leaf(
    ca: &Authority,
    spec: &LeafSpec,
    key: &KeyPair,
    now: OffsetDateTime,
) -> Result<rcgen::Certificate, PkiError> {
    let issuer = Issuer::from_ca_cert_der(&ca.cert_der, &ca.key)
        .map_err(generate_error("issuer from CA certificate"))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    for org in &spec.organizations {
        dn.push(DnType::OrganizationName, org.as_str());
    }
    dn.push(DnType::CommonName, spec.common_name.as_str());
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![match spec.usage {
        Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
        Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
    }];
    let mut sans = Vec::with_capacity(spec.dns_names.len() + spec.ips.len());
    for name in &spec.dns_names {
        let ia5 = name
            .as_str()
            .try_into()
            .map_err(generate_error("DNS subject alternative name"))?;
        sans.push(SanType::DnsName(ia5));
    }
    sans.extend(spec.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    params.subject_alt_names = sans;
    params.use_authority_key_identifier_extension = true;
    params.not_before = ca.not_before;
    params.not_after = truncate_to_seconds(now) + LEAF_VALIDITY;
    params.serial_number = Some(random_serial());
    params
        .signed_by(key, &issuer)
        .map_err(generate_error(&spec.common_name))
}

fn parse<'a>(path: &Path, der: &'a [u8]) -> Result<X509Certificate<'a>, PkiError> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|e| PkiError::corrupt(path, format!("bad X.509 certificate: {e}")))
}

/// Checks that a CA certificate read from disk is a CA and belongs to `key`; returns its
/// notBefore.
pub(crate) fn check_ca(path: &Path, der: &[u8], key: &KeyPair) -> Result<OffsetDateTime, PkiError> {
    let cert = parse(path, der)?;
    if !cert.is_ca() {
        return Err(PkiError::InvalidCa {
            path: path.to_path_buf(),
            reason: "certificate is not a CA (basicConstraints cA is not set)".into(),
        });
    }
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(PkiError::InvalidCa {
            path: path.to_path_buf(),
            reason: "certificate does not match its private key".into(),
        });
    }
    Ok(cert.validity().not_before.to_datetime())
}

/// Why a leaf certificate on disk cannot be reused, or `None` when it can.
pub(crate) fn reissue_reason(
    path: &Path,
    der: &[u8],
    key: &KeyPair,
    ca: &Authority,
    spec: &LeafSpec,
    now: OffsetDateTime,
) -> Result<Option<String>, PkiError> {
    let cert = parse(path, der)?;
    let ca_cert = parse(path, &ca.cert_der)?;
    if cert.issuer().as_raw() != ca_cert.subject().as_raw()
        || cert.verify_signature(Some(ca_cert.public_key())).is_err()
    {
        return Ok(Some("not signed by the current CA".into()));
    }
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Ok(Some("certificate does not match its private key".into()));
    }
    let not_after = cert.validity().not_after.to_datetime();
    if not_after - now < RENEW_BEFORE {
        return Ok(Some(format!("expires at {not_after}")));
    }
    let names = subject_names(&cert);
    if names.common_name.as_deref() != Some(spec.common_name.as_str())
        || names.organizations != spec.organizations
    {
        return Ok(Some("subject differs".into()));
    }
    let (dns, ips) = alt_names(&cert);
    let missing: Vec<String> = spec
        .dns_names
        .iter()
        .filter(|n| !dns.contains(*n))
        .cloned()
        .chain(
            spec.ips
                .iter()
                .filter(|ip| !ips.contains(*ip))
                .map(ToString::to_string),
        )
        .collect();
    if !missing.is_empty() {
        return Ok(Some(format!(
            "missing subject alternative names {}",
            missing.join(", ")
        )));
    }
    Ok(None)
}

/// CN and O values of a certificate subject, read as Go's `pkix.Name` does: the last CN,
/// every O in order.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SubjectNames {
    pub common_name: Option<String>,
    pub organizations: Vec<String>,
}

pub(crate) fn subject_names(cert: &X509Certificate<'_>) -> SubjectNames {
    let subject = cert.subject();
    SubjectNames {
        common_name: subject
            .iter_common_name()
            .filter_map(|a| a.as_str().ok())
            .last()
            .map(str::to_string),
        organizations: subject
            .iter_organization()
            .filter_map(|a| a.as_str().ok())
            .map(str::to_string)
            .collect(),
    }
}

/// DNS names (lower-cased) and IP addresses of the subjectAltName extension.
pub(crate) fn alt_names(cert: &X509Certificate<'_>) -> (BTreeSet<String>, BTreeSet<IpAddr>) {
    let mut dns = BTreeSet::new();
    let mut ips = BTreeSet::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) => {
                    dns.insert(n.to_ascii_lowercase());
                }
                GeneralName::IPAddress(bytes) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                        ips.insert(IpAddr::from(v4));
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                        ips.insert(IpAddr::from(v6));
                    }
                }
                _ => {}
            }
        }
    }
    (dns, ips)
}
