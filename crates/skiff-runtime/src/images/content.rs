//! The content store: blobs addressed by digest under `content/blobs/sha256/<hex>`,
//! written through a temp file, hashed, fsynced and renamed into place.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use tempfile::NamedTempFile;

use super::digest::Digest;
use super::error::ImageError;

/// Content-addressed blobs on disk.
#[derive(Debug, Clone)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

impl ContentStore {
    /// Opens (creating if needed) the store under `root` (`root/blobs/sha256`,
    /// and `root/ingest` for writes in progress).
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        let blobs = root.join("blobs").join("sha256");
        let ingest = root.join("ingest");
        for dir in [&blobs, &ingest] {
            fs::create_dir_all(dir).map_err(ImageError::io("create", dir))?;
        }
        Ok(Self { blobs, ingest })
    }

    /// Discards partial writes; only safe while no other process uses the store.
    pub(crate) fn discard_partial_writes(&self) -> Result<(), ImageError> {
        let entries = fs::read_dir(&self.ingest).map_err(ImageError::io("read", &self.ingest))?;
        for entry in entries.flatten() {
            let _ = fs::remove_file(entry.path());
        }
        Ok(())
    }

    /// Where the blob with `digest` lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    /// Whether the blob is present.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// The blob's size in bytes, if present.
    pub fn size(&self, digest: &Digest) -> Option<u64> {
        fs::metadata(self.blob_path(digest)).ok().map(|m| m.len())
    }

    /// Reads a whole (small) blob, such as a manifest or config.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, ImageError> {
        let path = self.blob_path(digest);
        fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ImageError::NotFound(digest.to_string()),
            _ => ImageError::io("read", path)(e),
        })
    }

    /// Opens a blob for streaming.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, ImageError> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(ImageError::io("open", path))
    }

    /// Writes `data`, checking it against `expected` when given.
    pub fn write(&self, data: &[u8], expected: Option<&Digest>) -> Result<Digest, ImageError> {
        self.ingest(data, expected).map(|(d, _)| d)
    }

    /// Streams `reader` into the store, checking the digest against `expected`
    /// when given; returns the digest and size. Nothing lands in the store unless
    /// the digest matched.
    pub fn ingest(
        &self,
        mut reader: impl Read,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64), ImageError> {
        let mut temp = self.temp_file()?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut size = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ImageError::io("read content for", temp.path())(e)),
            };
            hasher.update(&buf[..n]);
            temp.write_all(&buf[..n])
                .map_err(ImageError::io("write", temp.path()))?;
            size += n as u64;
        }
        let digest = Digest::from_hasher(hasher);
        self.commit(temp, digest, expected).map(|d| (d, size))
    }

    /// A temp file in the ingest area, for callers that fill it themselves
    /// (registry pulls) and then call [`ContentStore::commit_file`].
    pub fn temp_file(&self) -> Result<NamedTempFile, ImageError> {
        NamedTempFile::new_in(&self.ingest)
            .map_err(ImageError::io("create temp file in", &self.ingest))
    }

    /// Hashes a filled temp file and moves it into the store if it matches `expected`.
    pub fn commit_file(
        &self,
        temp: NamedTempFile,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64), ImageError> {
        let mut file = File::open(temp.path()).map_err(ImageError::io("open", temp.path()))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut size = 0u64;
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ImageError::io("read", temp.path())(e)),
            };
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        let digest = Digest::from_hasher(hasher);
        self.commit(temp, digest, expected).map(|d| (d, size))
    }

    fn commit(
        &self,
        temp: NamedTempFile,
        digest: Digest,
        expected: Option<&Digest>,
    ) -> Result<Digest, ImageError> {
        if let Some(expected) = expected
            && *expected != digest
        {
            return Err(ImageError::DigestMismatch {
                expected: expected.to_string(),
                actual: digest.to_string(),
            });
        }
        let path = self.blob_path(&digest);
        if path.is_file() {
            return Ok(digest);
        }
        temp.as_file()
            .sync_all()
            .map_err(ImageError::io("fsync", temp.path()))?;
        temp.persist(&path)
            .map_err(|e| ImageError::io("rename into", &path)(e.error))?;
        sync_dir(&self.blobs)?;
        Ok(digest)
    }

    /// Removes a blob; absent blobs are not an error.
    pub fn remove(&self, digest: &Digest) -> Result<(), ImageError> {
        let path = self.blob_path(digest);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(ImageError::io("remove", path)(e)),
            _ => Ok(()),
        }
    }

    /// Every blob's digest (files with other names are ignored).
    pub fn list(&self) -> Result<Vec<Digest>, ImageError> {
        let entries = fs::read_dir(&self.blobs).map_err(ImageError::io("read", &self.blobs))?;
        Ok(entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                format!("sha256:{}", e.file_name().to_string_lossy())
                    .parse()
                    .ok()
            })
            .collect())
    }
}

/// Makes a rename in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), ImageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ImageError::io("fsync", dir))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn write_verifies_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let good = Digest::of(b"hello");
        assert_eq!(store.write(b"hello", Some(&good)).unwrap(), good);
        assert_eq!(store.read(&good).unwrap(), b"hello");
        assert_eq!(store.size(&good), Some(5));
        assert_eq!(
            store.blob_path(&good),
            dir.path().join("blobs/sha256").join(good.hex())
        );

        let err = store
            .write(b"tampered", Some(&Digest::of(b"other")))
            .unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
        assert!(!store.contains(&Digest::of(b"tampered")));
        // The rejected temp file does not linger in the ingest area.
        assert_eq!(fs::read_dir(dir.path().join("ingest")).unwrap().count(), 0);

        assert_eq!(store.list().unwrap(), vec![good.clone()]);
        store.remove(&good).unwrap();
        store.remove(&good).unwrap();
        assert!(!store.contains(&good));
    }

    #[test]
    fn commit_file_checks_expected() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let mut temp = store.temp_file().unwrap();
        temp.write_all(b"blob").unwrap();
        let err = store
            .commit_file(temp, Some(&Digest::of(b"blub")))
            .unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }));
        let mut temp = store.temp_file().unwrap();
        temp.write_all(b"blob").unwrap();
        let (d, size) = store.commit_file(temp, None).unwrap();
        assert_eq!((d, size), (Digest::of(b"blob"), 4));
    }
}
