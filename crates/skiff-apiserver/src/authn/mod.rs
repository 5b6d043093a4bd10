//! Request authentication, as kube-apiserver's authenticator chain:
//!
//! 1. **x509**: a client certificate chain that verifies against the client CA (for client
//!    auth, at the time of the request) → user = subject CN, groups = subject O values, extra
//!    `authentication.kubernetes.io/credential-id: X509SHA256=<hex>` (since 1.32). A chain that
//!    does not verify is an error, but later authenticators still run.
//! 2. **bearer token** (`Authorization: Bearer <token>`, scheme case-insensitive), tried on
//!    every [`TokenAuthenticator`] in order (static token file; later service-account JWTs,
//!    bootstrap tokens). A token no authenticator accepts is an error ("invalid bearer token").
//!    Only when at least one token authenticator is configured, as upstream.
//!
//! As upstream's union authenticator, the first success wins (so a valid client certificate
//! beats any token, and a valid token beats a certificate from another CA); with no success
//! the errors are returned (→ 401); with no credentials at all the result is `Ok(None)`: the
//! caller treats the request as [`UserInfo::anonymous`] (401 except the health and version
//! endpoints). Successful users get the `system:authenticated` group added (unless they
//! already have it or `system:unauthenticated`).
//!
//! Not done yet: the WebSocket `base64url.bearer.authorization.k8s.io.` subprotocol token,
//! front-proxy request headers, removal of the `Authorization` header after success.

mod tokenfile;
mod x509;

use std::collections::BTreeMap;
use std::sync::Arc;

use http::HeaderMap;
use rustls::pki_types::{CertificateDer, UnixTime};

pub use tokenfile::{StaticTokenAuthenticator, TokenFileError};
pub use x509::X509Authenticator;

/// User name of unauthenticated requests.
pub const ANONYMOUS_USER: &str = "system:anonymous";
/// Group of unauthenticated requests.
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
/// Group added to every authenticated user.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// Extra key identifying the credential used (upstream `user.CredentialIDKey`).
pub const CREDENTIAL_ID_KEY: &str = "authentication.kubernetes.io/credential-id";

/// Who made a request (upstream `user.Info`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInfo {
    /// User name.
    pub name: String,
    /// Unique id, may be empty.
    pub uid: String,
    /// Groups.
    pub groups: Vec<String>,
    /// Extra attributes.
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// The anonymous user: `system:anonymous`, group `system:unauthenticated`.
    pub fn anonymous() -> Self {
        UserInfo {
            name: ANONYMOUS_USER.to_string(),
            uid: String::new(),
            groups: vec![UNAUTHENTICATED_GROUP.to_string()],
            extra: BTreeMap::new(),
        }
    }

    /// Whether this is the anonymous user.
    pub fn is_anonymous(&self) -> bool {
        self.name == ANONYMOUS_USER
    }

    /// Upstream's `AuthenticatedGroupAdder`.
    fn with_authenticated_group(mut self) -> Self {
        let has_marker = self
            .groups
            .iter()
            .any(|g| g == AUTHENTICATED_GROUP || g == UNAUTHENTICATED_GROUP);
        if !self.is_anonymous() && !has_marker {
            self.groups.push(AUTHENTICATED_GROUP.to_string());
        }
        self
    }
}

/// Why credentials were rejected; every variant means 401 Unauthorized (the response body
/// stays generic, as upstream; the message is for logs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthnError {
    /// A bearer token no token authenticator accepted.
    #[error("invalid bearer token")]
    InvalidBearerToken,
    /// A client certificate that does not verify (other CA, expired, not for client auth).
    #[error("verifying certificate {certificate} failed: {reason}")]
    Certificate {
        /// Serial number and key identifiers of the leaf.
        certificate: String,
        /// Why verification failed.
        reason: String,
    },
    /// A token authenticator's own error (e.g. a malformed JWT).
    #[error("{0}")]
    Token(String),
    /// Several authenticators failed.
    #[error("[{}]", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    Multiple(Vec<AuthnError>),
}

/// Authenticates bearer tokens (upstream `authenticator.Token`): `Ok(None)` when the token is
/// not one of this authenticator's, `Err` when it is but is invalid.
pub trait TokenAuthenticator: std::fmt::Debug + Send + Sync {
    /// Authenticates `token`.
    fn authenticate_token(&self, token: &str) -> Result<Option<UserInfo>, AuthnError>;
}

/// The x509 result of one TLS connection, computed once by [`Authenticator::peer_identity`]
/// and reused for each request on the connection.
#[derive(Debug, Clone)]
pub struct PeerIdentity {
    x509: Result<Option<x509::X509Identity>, AuthnError>,
}

impl PeerIdentity {
    /// A connection without a client certificate.
    pub fn none() -> Self {
        PeerIdentity { x509: Ok(None) }
    }
}

/// The authenticator chain of the API server; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    x509: Option<X509Authenticator>,
    tokens: Vec<Arc<dyn TokenAuthenticator>>,
}

impl Authenticator {
    /// An authenticator that accepts no credentials (every request is anonymous).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds client certificate authentication.
    pub fn with_x509(mut self, x509: X509Authenticator) -> Self {
        self.x509 = Some(x509);
        self
    }

    /// Appends a bearer token authenticator (tried in the order added).
    pub fn with_token_authenticator(mut self, tokens: Arc<dyn TokenAuthenticator>) -> Self {
        self.tokens.push(tokens);
        self
    }

    /// Verifies a connection's client certificate chain (from [`crate::pki::accept`]) once.
    pub fn peer_identity(&self, chain: Option<&[CertificateDer<'_>]>) -> PeerIdentity {
        self.peer_identity_at(chain, UnixTime::now())
    }

    fn peer_identity_at(
        &self,
        chain: Option<&[CertificateDer<'_>]>,
        now: UnixTime,
    ) -> PeerIdentity {
        let x509 = match (chain, &self.x509) {
            (Some(chain), Some(x509)) if !chain.is_empty() => x509.identify(chain, now).map(Some),
            _ => Ok(None),
        };
        PeerIdentity { x509 }
    }

    /// Authenticates one request on a connection: `Ok(Some(user))`, `Ok(None)` for no
    /// credentials (anonymous), `Err` for rejected credentials (401).
    pub fn authenticate(
        &self,
        peer: &PeerIdentity,
        headers: &HeaderMap,
    ) -> Result<Option<UserInfo>, AuthnError> {
        self.authenticate_at(peer, headers, UnixTime::now())
    }

    /// [`Authenticator::authenticate`] straight from the peer certificates (verifies the chain
    /// on every call; prefer [`Authenticator::peer_identity`] once per connection).
    pub fn authenticate_request(
        &self,
        chain: Option<&[CertificateDer<'_>]>,
        headers: &HeaderMap,
    ) -> Result<Option<UserInfo>, AuthnError> {
        let now = UnixTime::now();
        self.authenticate_at(&self.peer_identity_at(chain, now), headers, now)
    }

    fn authenticate_at(
        &self,
        peer: &PeerIdentity,
        headers: &HeaderMap,
        now: UnixTime,
    ) -> Result<Option<UserInfo>, AuthnError> {
        let mut errors = Vec::new();
        match &peer.x509 {
            Ok(Some(id)) if now.as_secs() > id.not_after.as_secs() => {
                // The connection outlived its certificate.
                errors.push(AuthnError::Certificate {
                    certificate: String::new(),
                    reason: "certificate has expired".into(),
                });
            }
            Ok(Some(id)) => {
                if let Some(user) = &id.user {
                    return Ok(Some(user.clone().with_authenticated_group()));
                }
            }
            Ok(None) => {}
            Err(e) => errors.push(e.clone()),
        }
        match self.authenticate_bearer(headers) {
            Ok(Some(user)) => return Ok(Some(user.with_authenticated_group())),
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
        match errors.len() {
            0 => Ok(None),
            1 => Err(errors.remove(0)),
            _ => Err(AuthnError::Multiple(errors)),
        }
    }

    /// Upstream `request/bearertoken` over the token union.
    fn authenticate_bearer(&self, headers: &HeaderMap) -> Result<Option<UserInfo>, AuthnError> {
        if self.tokens.is_empty() {
            return Ok(None);
        }
        let Some(token) = bearer_token(headers) else {
            return Ok(None);
        };
        let mut errors = Vec::new();
        for auth in &self.tokens {
            match auth.authenticate_token(&token) {
                Ok(Some(user)) => return Ok(Some(user)),
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        match errors.len() {
            0 => Err(AuthnError::InvalidBearerToken),
            1 => Err(errors.remove(0)),
            _ => Err(AuthnError::Multiple(errors)),
        }
    }
}

/// The token of the first `Authorization` header if it is `Bearer <token>` with a non-empty
/// token (upstream: trim, split on single spaces, scheme case-insensitive).
fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(http::header::AUTHORIZATION)?;
    let value = String::from_utf8_lossy(value.as_bytes());
    let mut parts = value.trim().splitn(3, ' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return None;
    }
    Some(token.to_string())
}

#[cfg(test)]
mod tests;
