//! Image references, parsed and normalised as the Docker reference library does
//! (what containerd's CRI plugin uses): `busybox` is `docker.io/library/busybox:latest`.

use std::fmt;
use std::str::FromStr;

use super::digest::Digest;

/// The default registry domain of unqualified names.
pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// Why an image reference was rejected (messages as upstream's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The string does not match the reference grammar.
    #[error("invalid reference format")]
    InvalidFormat,
    /// Upper-case letters in the repository path.
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    NameNotLowercase(String),
    /// A bare 64-hex string is an image ID, not a name.
    #[error("invalid repository name ({0}), cannot specify 64-byte hexadecimal strings")]
    NameIsIdentifier(String),
    /// Longer than 255 characters.
    #[error("repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters")]
    NameTooLong,
    /// The digest part is malformed or uses an unsupported algorithm.
    #[error("invalid digest format")]
    InvalidDigest,
}

/// A normalised, fully qualified image reference.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses `s` the way `ParseDockerRef` does: qualify the domain and the
    /// `library/` prefix, default the tag to `latest`, and drop the tag when a digest
    /// is given (the digest alone names the content).
    pub fn parse_normalized(s: &str) -> Result<Self, ReferenceError> {
        if s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(ReferenceError::NameIsIdentifier(s.to_owned()));
        }
        let (domain, remainder) = split_docker_domain(s);
        let remote_name = match remainder.find(':') {
            Some(i) => &remainder[..i],
            None => remainder.split('@').next().unwrap_or(&remainder),
        };
        if remote_name.to_lowercase() != remote_name {
            return Err(ReferenceError::NameNotLowercase(remote_name.to_owned()));
        }
        let mut parsed = Self::parse_qualified(&format!("{domain}/{remainder}"))?;
        if parsed.digest.is_some() {
            parsed.tag = None;
        } else if parsed.tag.is_none() {
            parsed.tag = Some(DEFAULT_TAG.to_owned());
        }
        Ok(parsed)
    }

    /// Parses an already qualified `domain/path[:tag][@digest]` against the grammar.
    fn parse_qualified(s: &str) -> Result<Self, ReferenceError> {
        let (name_and_tag, digest) = match s.split_once('@') {
            Some((left, d)) => (
                left,
                Some(d.parse().map_err(|_| ReferenceError::InvalidDigest)?),
            ),
            None => (s, None),
        };
        let last_slash = name_and_tag
            .rfind('/')
            .ok_or(ReferenceError::InvalidFormat)?;
        let (name, tag) = match name_and_tag.rfind(':') {
            Some(i) if i > last_slash => (&name_and_tag[..i], Some(&name_and_tag[i + 1..])),
            _ => (name_and_tag, None),
        };
        if let Some(tag) = tag
            && !valid_tag(tag)
        {
            return Err(ReferenceError::InvalidFormat);
        }
        if name.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(ReferenceError::NameTooLong);
        }
        let (domain, path) = name.split_once('/').ok_or(ReferenceError::InvalidFormat)?;
        if !valid_domain(domain) || !path.split('/').all(valid_path_component) {
            return Err(ReferenceError::InvalidFormat);
        }
        Ok(Self {
            domain: domain.to_owned(),
            path: path.to_owned(),
            tag: tag.map(str::to_owned),
            digest,
        })
    }

    /// The registry domain, e.g. `docker.io` or `127.0.0.1:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry, e.g. `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `domain/path`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The tag, if any (absent when the reference names a digest).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference names one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// This repository at `digest` (a "repo digest": `name@sha256:...`).
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: Some(digest),
        }
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_normalized(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Splits off the registry domain: the first component is a domain only if it
/// has a `.` or `:`, is `localhost`, or has upper-case letters (which paths can't).
fn split_docker_domain(name: &str) -> (String, String) {
    let (mut domain, mut remainder) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            (first.to_owned(), rest.to_owned())
        }
        _ => (DEFAULT_DOMAIN.to_owned(), name.to_owned()),
    };
    if domain == LEGACY_DEFAULT_DOMAIN {
        domain = DEFAULT_DOMAIN.to_owned();
    }
    if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        remainder = format!("{OFFICIAL_REPO_PREFIX}{remainder}");
    }
    (domain, remainder)
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes[1..]
            .iter()
            .all(|&b| word(b) || b == b'.' || b == b'-')
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_path_component(component: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    let mut i = 0;
    let mut need_alnum = true;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            need_alnum = false;
            i += 1;
            continue;
        }
        if need_alnum {
            return false;
        }
        // A separator: one '.', one '_', two '_', or any run of '-'.
        let sep_len = match bytes[i] {
            b'.' => 1,
            b'_' if bytes.get(i + 1) == Some(&b'_') => 2,
            b'_' => 1,
            b'-' => bytes[i..].iter().take_while(|&&b| b == b'-').count(),
            _ => return false,
        };
        i += sep_len;
        need_alnum = true;
    }
    !need_alnum
}

/// `host[:port]` where host is a DNS name, an IPv4 address or `[IPv6]`.
fn valid_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return false,
            },
        }
    } else {
        match domain.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (domain, None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    if host.is_empty() {
        return domain.starts_with('[');
    }
    host.split('.').all(|c| {
        let b = c.as_bytes();
        !b.is_empty()
            && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalisation_table() {
        let cases: &[(&str, &str)] = &[
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            ("index.docker.io/busybox:1", "docker.io/library/busybox:1"),
            ("rancher/pause:3.6", "docker.io/rancher/pause:3.6"),
            ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
            ("localhost/foo", "localhost/foo:latest"),
            ("localhost:5000/foo/bar", "localhost:5000/foo/bar:latest"),
            ("127.0.0.1:5000/busybox:v1", "127.0.0.1:5000/busybox:v1"),
            ("[::1]:5000/busybox", "[::1]:5000/busybox:latest"),
            (
                "quay.io/a/b/c-d__e.f:tag_1.0-x",
                "quay.io/a/b/c-d__e.f:tag_1.0-x",
            ),
            ("a---b", "docker.io/library/a---b:latest"),
            // The digest names the content; a tag beside it is dropped.
            (
                &format!("busybox@{D}"),
                &format!("docker.io/library/busybox@{D}"),
            ),
            (
                &format!("busybox:1.36@{D}"),
                &format!("docker.io/library/busybox@{D}"),
            ),
        ];
        for (input, want) in cases {
            let got = Reference::parse_normalized(input).map(|r| r.to_string());
            assert_eq!(got.as_deref(), Ok(*want), "{input}");
        }
    }

    #[test]
    fn invalid_references() {
        let id = &D["sha256:".len()..];
        let cases: &[(&str, ReferenceError)] = &[
            ("", ReferenceError::InvalidFormat),
            (
                "Busybox",
                ReferenceError::NameNotLowercase("library/Busybox".into()),
            ),
            (
                "foo/Bar:tag",
                ReferenceError::NameNotLowercase("foo/Bar".into()),
            ),
            (id, ReferenceError::NameIsIdentifier(id.into())),
            ("busybox:", ReferenceError::InvalidFormat),
            ("busybox:-tag", ReferenceError::InvalidFormat),
            ("busybox:tag:tag", ReferenceError::InvalidFormat),
            ("foo/_bar", ReferenceError::InvalidFormat),
            ("foo/bar_", ReferenceError::InvalidFormat),
            ("foo/bar___baz", ReferenceError::InvalidFormat),
            ("foo//bar", ReferenceError::InvalidFormat),
            ("-host.com/foo", ReferenceError::InvalidFormat),
            ("host.com:port/foo", ReferenceError::InvalidFormat),
            ("busybox@sha256:abc", ReferenceError::InvalidDigest),
            ("a b", ReferenceError::InvalidFormat),
        ];
        for (input, want) in cases {
            assert_eq!(
                Reference::parse_normalized(input).as_ref(),
                Err(want),
                "{input:?}"
            );
        }
        let long = format!("example.com/{}", "a".repeat(250));
        assert_eq!(
            Reference::parse_normalized(&long),
            Err(ReferenceError::NameTooLong)
        );
        let long_tag = format!("busybox:{}", "t".repeat(129));
        assert!(Reference::parse_normalized(&long_tag).is_err());
    }

    #[test]
    fn accessors() {
        let r: Reference = "127.0.0.1:5000/team/app:v2".parse().unwrap();
        assert_eq!(r.domain(), "127.0.0.1:5000");
        assert_eq!(r.path(), "team/app");
        assert_eq!(r.name(), "127.0.0.1:5000/team/app");
        assert_eq!(r.tag(), Some("v2"));
        let d: Digest = D.parse().unwrap();
        assert_eq!(
            r.with_digest(d).to_string(),
            format!("127.0.0.1:5000/team/app@{D}")
        );
    }
}
