//! Small file helpers shared by the PKI and the kubeconfig writer: atomic writes with an
//! explicit mode, and PEM reading that tells "absent" from "unreadable".

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rand::Rng;
use rcgen::KeyPair;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::PkiError;

/// Mode of private keys and the kubeconfig.
pub(crate) const PRIVATE_MODE: u32 = 0o600;
/// Mode of certificates (public material).
pub(crate) const PUBLIC_MODE: u32 = 0o644;
/// Mode of directories that hold private keys.
pub(crate) const PRIVATE_DIR_MODE: u32 = 0o700;

/// Creates `dir` and any missing parents with `mode` (existing directories are left alone).
pub(crate) fn create_dir_all(dir: &Path, mode: u32) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(mode).create(dir)
}

/// Writes `contents` to `path` atomically: a temporary file in the same directory with
/// `mode`, fsync, rename over `path`, fsync of the directory. A reader sees the old file or
/// the new one, never a torn one, and never the contents with a wider mode.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let suffix: u64 = rand::rng().random();
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{suffix:016x}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Reads a file to a string; `Ok(None)` when it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| PkiError::corrupt(path, "not valid UTF-8 PEM text")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Parses the first `CERTIFICATE` block of a PEM file.
pub(crate) fn parse_cert_pem(path: &Path, pem: &str) -> Result<CertificateDer<'static>, PkiError> {
    let first = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .ok_or_else(|| PkiError::corrupt(path, "no CERTIFICATE block"))?;
    let der = first.map_err(|e| PkiError::corrupt(path, format!("bad PEM: {e}")))?;
    // Reject garbage inside a well-formed PEM envelope here, so later code can rely on it.
    x509_parser::parse_x509_certificate(&der)
        .map_err(|e| PkiError::corrupt(path, format!("bad X.509 certificate: {e}")))?;
    Ok(der)
}

/// Parses a PEM private key. With ring, rcgen reads PKCS#8 (`PRIVATE KEY`) only, which is what
/// we write; SEC1 (`EC PRIVATE KEY`) keys from elsewhere are reported as corrupt.
pub(crate) fn parse_key_pem(path: &Path, pem: &str) -> Result<KeyPair, PkiError> {
    KeyPair::from_pem(pem).map_err(|e| PkiError::corrupt(path, format!("bad private key: {e}")))
}

/// Writes a private key (0600) and then its certificate (0644), each atomically.
pub(crate) fn write_pair(
    cert_path: &Path,
    cert_pem: &str,
    key_path: &Path,
    key_pem: &str,
) -> Result<(), PkiError> {
    write_atomic(key_path, key_pem.as_bytes(), PRIVATE_MODE).map_err(|source| PkiError::Io {
        path: key_path.to_path_buf(),
        source,
    })?;
    write_atomic(cert_path, cert_pem.as_bytes(), PUBLIC_MODE).map_err(|source| PkiError::Io {
        path: cert_path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn write_atomic_sets_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"one", 0o644).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // No temporary files left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn read_optional_tells_absent_from_present() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_optional(&dir.path().join("nope")).unwrap().is_none());
        let p = dir.path().join("bin");
        fs::write(&p, [0xff, 0xfe]).unwrap();
        let err = read_optional(&p).unwrap_err().to_string();
        assert!(err.contains("bin"), "{err}");
    }
}
