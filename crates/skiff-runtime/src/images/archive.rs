//! Importing image archives: OCI layouts (`oci-layout` + `index.json`) and
//! docker-archives (`manifest.json`), as `docker save` / `skopeo copy` write them.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::digest::Digest;
use super::error::ImageError;
use super::oci::{
    Descriptor, Index, MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_OCI_LAYER, MEDIA_TYPE_OCI_LAYER_GZIP,
    MEDIA_TYPE_OCI_MANIFEST, Manifest, ManifestDocument, host_platform, is_index_type,
    select_platform,
};
use super::reference::Reference;
use super::store::{ImageRecord, ImageStore, Lease};

/// Annotation with the full image name (containerd, docker save).
const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// Annotation with the reference name (a tag or a full name).
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Metadata files read into memory rather than the content store.
const METADATA_FILES: &[&str] = &["index.json", "oci-layout", "manifest.json", "repositories"];
const METADATA_MAX: u64 = 16 << 20;

/// One image of a docker-archive's `manifest.json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerArchiveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

impl ImageStore {
    /// Imports every image of an OCI archive or docker-archive (optionally
    /// gzip-compressed). Blobs are verified against their digests.
    pub fn import(&self, path: &Path) -> Result<Vec<ImageRecord>, ImageError> {
        let file = File::open(path).map_err(ImageError::io("open", path))?;
        let mut reader = BufReader::new(file);
        let head = reader.fill_buf().map_err(ImageError::io("read", path))?;
        let reader: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::read::MultiGzDecoder::new(reader))
        } else {
            Box::new(reader)
        };
        let lease = self.lease();
        let mut metadata: HashMap<String, Vec<u8>> = HashMap::new();
        let mut files: HashMap<String, Digest> = HashMap::new();
        let mut links: Vec<(String, String)> = Vec::new();
        let mut archive = tar::Archive::new(reader);
        let io_err = || ImageError::io("read archive", path);
        for entry in archive.entries().map_err(io_err())? {
            let mut entry = entry.map_err(io_err())?;
            let name = clean(&entry.path().map_err(io_err())?);
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {}
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    if let Ok(Some(target)) = entry.link_name() {
                        let base = match entry.header().entry_type() {
                            tar::EntryType::Symlink => {
                                Path::new(&name).parent().map(Path::to_path_buf)
                            }
                            _ => None,
                        };
                        let target = base.unwrap_or_default().join(target);
                        links.push((name, clean(&target)));
                    }
                    continue;
                }
                _ => continue,
            }
            if METADATA_FILES.contains(&name.as_str()) {
                let mut bytes = Vec::new();
                (&mut entry)
                    .take(METADATA_MAX)
                    .read_to_end(&mut bytes)
                    .map_err(io_err())?;
                metadata.insert(name, bytes);
                continue;
            }
            let expected = name
                .strip_prefix("blobs/sha256/")
                .map(|hex| format!("sha256:{hex}").parse::<Digest>())
                .transpose()?;
            if let Some(expected) = &expected {
                lease.protect(expected);
            }
            let (digest, _) = self.content().ingest(&mut entry, expected.as_ref())?;
            lease.protect(&digest);
            files.insert(name, digest);
        }
        for (link, target) in links {
            if let Some(d) = files.get(&target).cloned() {
                files.insert(link, d);
            }
        }

        let images = if let (Some(_), Some(index)) =
            (metadata.get("oci-layout"), metadata.get("index.json"))
        {
            self.import_oci(&lease, index)?
        } else if let Some(manifest) = metadata.get("manifest.json") {
            self.import_docker(&lease, manifest, &files)?
        } else {
            return Err(ImageError::UnknownArchive {
                path: path.to_path_buf(),
            });
        };
        drop(lease);
        // Blobs of the archive no image uses (other platforms, for instance).
        self.discard_unreferenced(files.into_values())?;
        tracing::info!(archive = %path.display(), images = images.len(), "imported images");
        Ok(images)
    }

    fn import_oci(&self, lease: &Lease, index_json: &[u8]) -> Result<Vec<ImageRecord>, ImageError> {
        let index: Index =
            serde_json::from_slice(index_json).map_err(ImageError::json("index.json"))?;
        let mut out = Vec::new();
        for desc in &index.manifests {
            let names = oci_names(desc);
            let (digest, manifest) = self.resolve_manifest(desc, 0)?;
            out.push(self.commit_image(lease, &digest, &manifest, &names, &[])?);
        }
        Ok(out)
    }

    /// Follows indexes down to the manifest for the host platform.
    fn resolve_manifest(
        &self,
        desc: &Descriptor,
        depth: usize,
    ) -> Result<(Digest, Manifest), ImageError> {
        if depth > 4 {
            return Err(ImageError::Invalid("image indexes nested too deep".into()));
        }
        let bytes = self
            .content()
            .read(&desc.digest)
            .map_err(|_| missing(&desc.digest))?;
        match ManifestDocument::parse(&bytes, &desc.digest.to_string())? {
            ManifestDocument::Index(index) => {
                let platform = host_platform();
                let child = select_platform(&index, &platform).ok_or_else(|| {
                    ImageError::Invalid(format!(
                        "index {} has no manifest for {}/{}",
                        desc.digest, platform.os, platform.architecture
                    ))
                })?;
                self.resolve_manifest(child, depth + 1)
            }
            ManifestDocument::Manifest(m) if !is_index_type(&desc.media_type) => {
                for blob in std::iter::once(&m.config).chain(&m.layers) {
                    if !self.content().contains(&blob.digest) {
                        return Err(missing(&blob.digest));
                    }
                }
                Ok((desc.digest.clone(), m))
            }
            ManifestDocument::Manifest(_) => Err(ImageError::Invalid(format!(
                "{} is declared an index but is a manifest",
                desc.digest
            ))),
        }
    }

    fn import_docker(
        &self,
        lease: &Lease,
        manifest_json: &[u8],
        files: &HashMap<String, Digest>,
    ) -> Result<Vec<ImageRecord>, ImageError> {
        let entries: Vec<DockerArchiveEntry> =
            serde_json::from_slice(manifest_json).map_err(ImageError::json("manifest.json"))?;
        let lookup = |name: &str| {
            files.get(&clean(Path::new(name))).cloned().ok_or_else(|| {
                ImageError::Invalid(format!(
                    "docker-archive lists {name} but does not contain it"
                ))
            })
        };
        let mut out = Vec::new();
        for entry in entries {
            let config = lookup(&entry.config)?;
            let mut layers = Vec::with_capacity(entry.layers.len());
            for layer in &entry.layers {
                let digest = lookup(layer)?;
                layers.push(Descriptor {
                    media_type: self.layer_media_type(&digest)?.to_owned(),
                    size: self.content().size(&digest).unwrap_or(0),
                    digest,
                    platform: None,
                    annotations: Default::default(),
                });
            }
            // docker-archives carry no manifest: write the OCI one they imply.
            let manifest = Manifest {
                schema_version: 2,
                media_type: Some(MEDIA_TYPE_OCI_MANIFEST.into()),
                config: Descriptor {
                    media_type: MEDIA_TYPE_OCI_CONFIG.into(),
                    size: self.content().size(&config).unwrap_or(0),
                    digest: config,
                    platform: None,
                    annotations: Default::default(),
                },
                layers,
            };
            let bytes = serde_json::to_vec(&manifest).map_err(ImageError::json("manifest"))?;
            let digest = Digest::of(&bytes);
            lease.protect(&digest);
            self.content().write(&bytes, Some(&digest))?;
            let mut tags = Vec::new();
            for tag in entry.repo_tags.unwrap_or_default() {
                tags.push(Reference::parse_normalized(&tag).map_err(|source| {
                    ImageError::Reference {
                        reference: tag.clone(),
                        source,
                    }
                })?);
            }
            out.push(self.commit_image(lease, &digest, &manifest, &tags, &[])?);
        }
        Ok(out)
    }

    fn layer_media_type(&self, digest: &Digest) -> Result<&'static str, ImageError> {
        let mut head = [0u8; 2];
        let mut file = self.content().open_blob(digest)?;
        let n = file
            .read(&mut head)
            .map_err(ImageError::io("read", self.content().blob_path(digest)))?;
        Ok(if n == 2 && head == [0x1f, 0x8b] {
            MEDIA_TYPE_OCI_LAYER_GZIP
        } else {
            MEDIA_TYPE_OCI_LAYER
        })
    }
}

/// Imports every `*.tar` file in `dir` (the agent's air-gap image directory);
/// one archive failing does not stop the others. Returns each file's outcome.
pub fn import_dir(
    store: &ImageStore,
    dir: &Path,
) -> Vec<(PathBuf, Result<Vec<ImageRecord>, ImageError>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "tar"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let result = store.import(&p);
            if let Err(e) = &result {
                tracing::warn!(archive = %p.display(), error = %e, "image import failed");
            }
            (p, result)
        })
        .collect()
}

/// The names an OCI index entry gives its image.
fn oci_names(desc: &Descriptor) -> Vec<Reference> {
    let full = desc.annotations.get(ANNOTATION_IMAGE_NAME).or_else(|| {
        // A bare ref.name is only a tag; without a base name it names nothing.
        desc.annotations
            .get(ANNOTATION_REF_NAME)
            .filter(|n| n.contains(['/', ':', '@']))
    });
    full.and_then(|n| Reference::parse_normalized(n).ok())
        .into_iter()
        .collect()
}

fn missing(digest: &Digest) -> ImageError {
    ImageError::Invalid(format!("blob {digest} is missing from the archive"))
}

/// An archive member name without `./` or a leading `/`.
fn clean(path: &Path) -> String {
    let mut out: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n.to_string_lossy().into_owned()),
            std::path::Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out.join("/")
}
