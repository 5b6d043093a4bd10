//! The cluster PKI, in k3s's layout under `DATA_DIR/server/tls/`:
//!
//! | file | what |
//! |---|---|
//! | `server-ca.crt` / `server-ca.key` | CA that signs serving certificates (`skiff-server-ca@<unix time>`) |
//! | `client-ca.crt` / `client-ca.key` | CA that signs client certificates (`skiff-client-ca@<unix time>`) |
//! | `serving-kube-apiserver.crt` / `.key` | the API server's serving certificate |
//! | `client-admin.crt` / `.key` | the admin client certificate (`system:admin`, `system:masters`) |
//! | `client-kube-apiserver.crt` / `.key` | what the API server presents to kubelets (`kube-apiserver-kubelet-client`, `system:masters`) |
//!
//! Keys are ECDSA P-256, mode 0600, in directories of mode 0700. CAs live 10 years, leaf
//! certificates 1 year (as k3s). On every start the files are reused; a leaf certificate that no
//! longer fits (a SAN now required, another CA, expiring within 90 days, a key mismatch) is
//! re-issued from the same CA. A CA is never regenerated over existing files: an unreadable CA
//! file is an error that names the file, because a new CA would break every client.

mod files;
mod issue;
mod tls;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use rcgen::KeyPair;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

pub(crate) use files::{PRIVATE_MODE, write_atomic};
pub(crate) use issue::subject_names;
use issue::{Authority, LeafSpec, Usage};
pub use tls::accept;
pub(crate) use tls::webpki_client_verifier;

/// Common name of the API server's serving certificate.
pub const SERVING_COMMON_NAME: &str = "kube-apiserver";
/// User name of the admin client certificate.
pub const ADMIN_USER: &str = "system:admin";
/// Group of the admin client certificate (bound to cluster-admin by upstream's bootstrap RBAC).
pub const MASTERS_GROUP: &str = "system:masters";
/// User name of the client certificate the API server presents to kubelets (for logs, exec,
/// attach and port-forward), as kubeadm's `apiserver-kubelet-client`.
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";
/// Group of kubelet client certificates.
pub const NODES_GROUP: &str = "system:nodes";
/// Prefix of a kubelet's user name (`system:node:<node name>`).
pub const NODE_USER_PREFIX: &str = "system:node:";

/// Names of the `default/kubernetes` Service that in-cluster clients use.
const SERVICE_DNS_NAMES: [&str; 4] = [
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

/// Errors of the PKI. Every variant that concerns a file names it.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A PEM file exists but cannot be parsed.
    #[error(
        "{} is corrupt: {reason}; it is never regenerated silently: restore it, or move it \
         away to have it created anew",
        path.display()
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// One half of a CA (certificate or key) exists without the other.
    #[error(
        "{} exists but {} is missing; refusing to create a new CA over an existing one \
         (restore the missing file, or move both away to start a new CA)",
        present.display(),
        missing.display()
    )]
    IncompleteCa {
        /// The file that exists.
        present: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },
    /// A CA certificate parses but cannot serve as this CA.
    #[error("{}: {reason}", path.display())]
    InvalidCa {
        /// The CA certificate file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A subject alternative name given in the configuration is not a valid DNS name or IP.
    #[error("invalid subject alternative name {name:?}: {reason}")]
    InvalidSan {
        /// The name as given.
        name: String,
        /// Why it is invalid.
        reason: String,
    },
    /// Key or certificate generation failed.
    #[error("generating {what}: {source}")]
    Generate {
        /// What was being generated.
        what: String,
        /// The underlying error.
        source: rcgen::Error,
    },
    /// Building the rustls configuration failed.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// Building the client certificate verifier failed.
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

impl PkiError {
    pub(crate) fn corrupt(path: &Path, reason: impl Into<String>) -> Self {
        PkiError::Corrupt {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// The names the serving certificate must carry besides the fixed ones (`localhost`,
/// `127.0.0.1`, `::1`, `kubernetes`, `kubernetes.default`, `kubernetes.default.svc`,
/// `kubernetes.default.svc.cluster.local`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SanConfig {
    /// The node's host name(s) (and node name, when it differs).
    pub hostnames: Vec<String>,
    /// The node's IP addresses.
    pub node_ips: Vec<IpAddr>,
    /// Extra names or IPs, as k3s's `--tls-san`.
    pub extra_sans: Vec<String>,
    /// The first IP of the service CIDR, the ClusterIP of `default/kubernetes`.
    pub api_service_ip: IpAddr,
}

impl Default for SanConfig {
    /// No host names, node IPs or extra SANs; service IP 10.43.0.1 (the first IP of the
    /// default service CIDR 10.43.0.0/16).
    fn default() -> Self {
        SanConfig {
            hostnames: Vec::new(),
            node_ips: Vec::new(),
            extra_sans: Vec::new(),
            api_service_ip: IpAddr::V4(Ipv4Addr::new(10, 43, 0, 1)),
        }
    }
}

impl SanConfig {
    /// Every DNS name (lower-cased) and IP the serving certificate must carry.
    pub fn required(&self) -> Result<(BTreeSet<String>, BTreeSet<IpAddr>), PkiError> {
        let mut dns: BTreeSet<String> = BTreeSet::from(["localhost".to_string()]);
        dns.extend(SERVICE_DNS_NAMES.iter().map(|s| s.to_string()));
        let mut ips = BTreeSet::from([
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            self.api_service_ip,
        ]);
        ips.extend(self.node_ips.iter().copied());
        for (raw, from_user) in self
            .hostnames
            .iter()
            .map(|h| (h, false))
            .chain(self.extra_sans.iter().map(|s| (s, true)))
        {
            let name = raw.trim();
            if name.is_empty() {
                continue;
            }
            if let Ok(ip) = name.parse::<IpAddr>() {
                ips.insert(ip);
            } else if is_dns_name(name) {
                dns.insert(name.to_ascii_lowercase());
            } else if from_user {
                return Err(PkiError::InvalidSan {
                    name: raw.clone(),
                    reason: "not an IP address or DNS name".into(),
                });
            } else {
                // A detected host name should not stop the server.
                tracing::warn!(hostname = %raw, "host name is not a valid DNS name; left out of the serving certificate");
            }
        }
        Ok((dns, ips))
    }
}

/// Whether `name` can be a DNS subject alternative name (labels of letters, digits, `-`, `_`,
/// a leading `*` wildcard).
fn is_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'*')
        })
}

/// A certificate with its private key, both PEM-encoded.
#[derive(Clone)]
pub struct Credentials {
    cert_pem: String,
    key_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        f.debug_struct("Credentials")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    fn new(cert: &rcgen::Certificate, key: &KeyPair) -> Self {
        Credentials {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }

    /// The certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key, PEM (PKCS#8).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The private key, DER (PKCS#8).
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

/// The loaded PKI: both CAs and the certificates the server itself uses.
#[derive(Debug)]
pub struct Pki {
    dir: PathBuf,
    server_ca: Authority,
    client_ca: Authority,
    serving: Credentials,
    admin: Credentials,
    kubelet_client: Credentials,
}

/// File names of one certificate/key pair in the TLS directory.
struct PairFiles {
    cert: PathBuf,
    key: PathBuf,
}

impl PairFiles {
    fn new(dir: &Path, stem: &str) -> Self {
        PairFiles {
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
        }
    }
}

/// `DATA_DIR/server/tls/`: where the PKI lives.
pub fn tls_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("server").join("tls")
}

/// The client CA's certificate (PEM): kubelets trust the API server's
/// kubelet client certificate through it.
pub fn client_ca_file(data_dir: &Path) -> PathBuf {
    tls_dir(data_dir).join("client-ca.crt")
}

impl Pki {
    /// Loads the PKI from `DATA_DIR/server/tls/`, creating what is missing (everything on first
    /// start) and re-issuing leaf certificates that no longer fit; see the module docs.
    pub fn load_or_create(data_dir: &Path, sans: &SanConfig) -> Result<Pki, PkiError> {
        Self::load_or_create_at(data_dir, sans, OffsetDateTime::now_utc())
    }

    /// [`Pki::load_or_create`] at a given time (for tests of expiry and renewal).
    pub fn load_or_create_at(
        data_dir: &Path,
        sans: &SanConfig,
        now: OffsetDateTime,
    ) -> Result<Pki, PkiError> {
        let (dns_names, ips) = sans.required()?;
        let dir = tls_dir(data_dir);
        files::create_dir_all(&dir, files::PRIVATE_DIR_MODE).map_err(|source| PkiError::Io {
            path: dir.clone(),
            source,
        })?;
        let server_ca = load_or_create_ca(&dir, "server-ca", "skiff-server-ca", now)?;
        let client_ca = load_or_create_ca(&dir, "client-ca", "skiff-client-ca", now)?;
        let serving = load_or_issue_leaf(
            &PairFiles::new(&dir, "serving-kube-apiserver"),
            &server_ca,
            &LeafSpec {
                common_name: SERVING_COMMON_NAME.to_string(),
                organizations: Vec::new(),
                dns_names,
                ips,
                usage: Usage::Server,
            },
            now,
        )?;
        let admin = load_or_issue_leaf(
            &PairFiles::new(&dir, "client-admin"),
            &client_ca,
            &client_spec(ADMIN_USER, &[MASTERS_GROUP]),
            now,
        )?;
        let kubelet_client = load_or_issue_leaf(
            &PairFiles::new(&dir, "client-kube-apiserver"),
            &client_ca,
            &client_spec(KUBELET_CLIENT_USER, &[MASTERS_GROUP]),
            now,
        )?;
        Ok(Pki {
            dir,
            server_ca,
            client_ca,
            serving,
            admin,
            kubelet_client,
        })
    }

    /// The TLS directory (`DATA_DIR/server/tls`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// An [`X509Authenticator`](crate::authn::X509Authenticator) trusting the client CA.
    pub fn x509_authenticator(&self) -> Result<crate::authn::X509Authenticator, PkiError> {
        crate::authn::X509Authenticator::new(std::slice::from_ref(self.client_ca_der()))
    }

    /// The server CA certificate (trust anchor for the API server's serving certificate), PEM.
    pub fn server_ca_pem(&self) -> &str {
        &self.server_ca.cert_pem
    }

    /// The server CA certificate, DER.
    pub fn server_ca_der(&self) -> &CertificateDer<'static> {
        &self.server_ca.cert_der
    }

    /// The client CA certificate (verifies client certificates), PEM.
    pub fn client_ca_pem(&self) -> &str {
        &self.client_ca.cert_pem
    }

    /// The client CA certificate, DER.
    pub fn client_ca_der(&self) -> &CertificateDer<'static> {
        &self.client_ca.cert_der
    }

    /// The API server's serving certificate and key.
    pub fn serving(&self) -> &Credentials {
        &self.serving
    }

    /// The admin client certificate and key (`system:admin`, group `system:masters`).
    pub fn admin(&self) -> &Credentials {
        &self.admin
    }

    /// The client certificate the API server presents to kubelets
    /// (`kube-apiserver-kubelet-client`, group `system:masters`).
    pub fn kubelet_client(&self) -> &Credentials {
        &self.kubelet_client
    }

    /// Issues a new client certificate from the client CA (not written to disk): user
    /// `common_name`, groups `organizations`.
    pub fn issue_client_cert(
        &self,
        common_name: &str,
        organizations: &[&str],
    ) -> Result<Credentials, PkiError> {
        let key = issue::new_key()?;
        let spec = client_spec(common_name, organizations);
        let cert = issue::signed_leaf(&self.client_ca, &spec, &key, OffsetDateTime::now_utc())?;
        Ok(Credentials::new(&cert, &key))
    }

    /// Issues a kubelet's client certificate: `system:node:<node_name>`, group `system:nodes`.
    pub fn issue_node_client_cert(&self, node_name: &str) -> Result<Credentials, PkiError> {
        self.issue_client_cert(&format!("{NODE_USER_PREFIX}{node_name}"), &[NODES_GROUP])
    }

    /// Issues a serving certificate from the server CA (e.g. for a kubelet's streaming server):
    /// `names` are DNS names or IP addresses.
    pub fn issue_serving_cert(
        &self,
        common_name: &str,
        names: &[String],
    ) -> Result<Credentials, PkiError> {
        let mut dns_names = BTreeSet::new();
        let mut ips = BTreeSet::new();
        for name in names {
            match name.parse::<IpAddr>() {
                Ok(ip) => {
                    ips.insert(ip);
                }
                Err(_) => {
                    dns_names.insert(name.to_ascii_lowercase());
                }
            }
        }
        let spec = LeafSpec {
            common_name: common_name.to_string(),
            organizations: Vec::new(),
            dns_names,
            ips,
            usage: Usage::Server,
        };
        let key = issue::new_key()?;
        let cert = issue::signed_leaf(&self.server_ca, &spec, &key, OffsetDateTime::now_utc())?;
        Ok(Credentials::new(&cert, &key))
    }
}

fn client_spec(common_name: &str, organizations: &[&str]) -> LeafSpec {
    LeafSpec {
        common_name: common_name.to_string(),
        organizations: organizations.iter().map(|s| s.to_string()).collect(),
        dns_names: BTreeSet::new(),
        ips: BTreeSet::new(),
        usage: Usage::Client,
    }
}

fn load_or_create_ca(
    dir: &Path,
    stem: &str,
    cn_prefix: &str,
    now: OffsetDateTime,
) -> Result<Authority, PkiError> {
    let files = PairFiles::new(dir, stem);
    let cert_pem = files::read_optional(&files.cert)?;
    let key_pem = files::read_optional(&files.key)?;
    match (cert_pem, key_pem) {
        (Some(cert_pem), Some(key_pem)) => {
            let cert_der = files::parse_cert_pem(&files.cert, &cert_pem)?;
            let key = files::parse_key_pem(&files.key, &key_pem)?;
            let not_before = issue::check_ca(&files.cert, &cert_der, &key)?;
            Ok(Authority {
                cert_pem,
                cert_der,
                key,
                not_before,
            })
        }
        (None, None) => {
            let common_name = format!("{cn_prefix}@{}", now.unix_timestamp());
            let ca = issue::self_signed_ca(&common_name, issue::new_key()?, now)?;
            files::write_pair(
                &files.cert,
                &ca.cert_pem,
                &files.key,
                &ca.key.serialize_pem(),
            )?;
            tracing::info!(cert = %files.cert.display(), %common_name, "created certificate authority");
            Ok(ca)
        }
        (Some(_), None) => Err(PkiError::IncompleteCa {
            present: files.cert,
            missing: files.key,
        }),
        (None, Some(_)) => Err(PkiError::IncompleteCa {
            present: files.key,
            missing: files.cert,
        }),
    }
}

fn load_or_issue_leaf(
    files: &PairFiles,
    ca: &Authority,
    spec: &LeafSpec,
    now: OffsetDateTime,
) -> Result<Credentials, PkiError> {
    let cert_pem = files::read_optional(&files.cert)?;
    let key_pem = files::read_optional(&files.key)?;
    let key = match &key_pem {
        Some(pem) => Some(files::parse_key_pem(&files.key, pem)?),
        None => None,
    };
    let reason = match (&cert_pem, &key) {
        (Some(cert_pem), Some(key)) => {
            let der = files::parse_cert_pem(&files.cert, cert_pem)?;
            match issue::reissue_reason(&files.cert, &der, key, ca, spec, now)? {
                None => {
                    return Ok(Credentials {
                        cert_pem: cert_pem.clone(),
                        key_pem: key.serialize_pem(),
                        cert_der: der,
                        key_der: key.serialize_der(),
                    });
                }
                Some(reason) => reason,
            }
        }
        (None, None) => "first start".to_string(),
        (None, Some(_)) => "certificate missing".to_string(),
        (Some(_), None) => "private key missing".to_string(),
    };
    // Keep a readable key: after a crash between writing the key and the certificate this
    // pairs the new key with a new certificate.
    let key = match key {
        Some(key) => key,
        None => issue::new_key()?,
    };
    let cert = issue::signed_leaf(ca, spec, &key, now)?;
    let creds = Credentials::new(&cert, &key);
    files::write_pair(&files.cert, &creds.cert_pem, &files.key, &creds.key_pem)?;
    tracing::info!(cert = %files.cert.display(), %reason, "issued certificate");
    Ok(creds)
}

#[cfg(test)]
mod tests;
