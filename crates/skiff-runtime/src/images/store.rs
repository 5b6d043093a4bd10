//! The image store: image records over the content store and the layer snapshots.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};

use super::content::{ContentStore, sync_dir};
use super::digest::{Digest, chain_ids};
use super::error::ImageError;
use super::oci::{ImageConfig, Manifest};
use super::reference::Reference;
use super::unpack::apply_layer_file;

const INDEX_FILE: &str = "images.json";
/// Held exclusively while the index is read, changed and written back, so that
/// the agent and `skiff images import` never lose each other's updates.
const INDEX_LOCK_FILE: &str = "index.lock";
/// Held shared by every process with the store open; whoever gets it
/// exclusively at open knows partial writes are leftovers of a crash.
const OPEN_LOCK_FILE: &str = "open.lock";
const INDEX_VERSION: u32 = 1;

/// One stored image: named by its config digest, as the CRI does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The image ID: its config digest.
    pub id: Digest,
    /// The manifest this image was stored from.
    pub manifest_digest: Digest,
    /// `name:tag` references, normalised.
    pub repo_tags: Vec<String>,
    /// `name@digest` references, normalised.
    pub repo_digests: Vec<String>,
    /// Layers, base first.
    pub layers: Vec<LayerRecord>,
    /// Manifest + config + compressed layers, in bytes.
    pub size: u64,
    /// Kept from image garbage collection (as k3s pins air-gap images).
    #[serde(default)]
    pub pinned: bool,
}

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// The (possibly compressed) blob.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// The blob's size.
    pub size: u64,
    /// The digest of the uncompressed tar.
    pub diff_id: Digest,
    /// The chain ID naming this layer's snapshot.
    pub chain_id: Digest,
}

#[derive(Serialize, Deserialize)]
struct IndexFile {
    version: u32,
    images: Vec<ImageRecord>,
}

/// What a garbage collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Blobs deleted.
    pub blobs: usize,
    /// Snapshots deleted.
    pub snapshots: usize,
}

/// Images, their blobs and their unpacked layers under one root directory.
#[derive(Debug)]
pub struct ImageStore {
    root: PathBuf,
    content: ContentStore,
    snapshots: PathBuf,
    /// Serialises index updates within this process (the file lock does
    /// between processes).
    index_mutex: Mutex<()>,
    _open_lock: File,
    leases: Leases,
    next_lease: AtomicU64,
}

/// Keeps blobs and snapshots being written from garbage collection until the
/// image referencing them is recorded.
type Leases = Arc<Mutex<HashMap<u64, HashSet<Digest>>>>;

#[derive(Debug)]
pub(crate) struct Lease {
    leases: Leases,
    id: u64,
}

impl Lease {
    pub(crate) fn protect(&self, digest: &Digest) {
        if let Ok(mut leases) = self.leases.lock() {
            leases.entry(self.id).or_default().insert(digest.clone());
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Ok(mut leases) = self.leases.lock() {
            leases.remove(&self.id);
        }
    }
}

impl ImageStore {
    /// Opens (creating if needed) the store under `root`: `content/`, `snapshots/`
    /// and the image index `images.json`.
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        let content = ContentStore::open(&root.join("content"))?;
        let snapshots = root.join("snapshots");
        fs::create_dir_all(&snapshots).map_err(ImageError::io("create", &snapshots))?;
        let open_lock = lock_file(&root.join(OPEN_LOCK_FILE))?;
        let lock_err =
            |e: rustix::io::Errno| ImageError::io("lock", root.join(OPEN_LOCK_FILE))(e.into());
        if rustix::fs::flock(&open_lock, FlockOperation::NonBlockingLockExclusive).is_ok() {
            // Nobody else has the store open: partial writes are crash leftovers.
            content.discard_partial_writes()?;
            let entries = fs::read_dir(&snapshots).map_err(ImageError::io("read", &snapshots))?;
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
        rustix::fs::flock(&open_lock, FlockOperation::LockShared).map_err(lock_err)?;
        let store = Self {
            root: root.to_path_buf(),
            content,
            snapshots,
            index_mutex: Mutex::new(()),
            _open_lock: open_lock,
            leases: Arc::default(),
            next_lease: AtomicU64::new(0),
        };
        store.load()?; // fail early on a corrupt index
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The blob store.
    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    pub(crate) fn lease(&self) -> Lease {
        Lease {
            leases: Arc::clone(&self.leases),
            id: self.next_lease.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The index as last written (by this or another process).
    fn load(&self) -> Result<BTreeMap<Digest, ImageRecord>, ImageError> {
        let path = self.root.join(INDEX_FILE);
        match fs::read(&path) {
            Ok(bytes) => {
                let index: IndexFile = serde_json::from_slice(&bytes)
                    .map_err(ImageError::json(path.display().to_string()))?;
                Ok(index
                    .images
                    .into_iter()
                    .map(|i| (i.id.clone(), i))
                    .collect())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(ImageError::io("read", path)(e)),
        }
    }

    /// Runs `update` on the current index under both locks, then writes it back.
    fn update<T>(
        &self,
        update: impl FnOnce(&mut BTreeMap<Digest, ImageRecord>) -> Result<T, ImageError>,
    ) -> Result<T, ImageError> {
        let _guard = self
            .index_mutex
            .lock()
            .map_err(|_| ImageError::Task("image index lock poisoned".into()))?;
        let lock = lock_file(&self.root.join(INDEX_LOCK_FILE))?;
        rustix::fs::flock(&lock, FlockOperation::LockExclusive)
            .map_err(|e| ImageError::io("lock", self.root.join(INDEX_LOCK_FILE))(e.into()))?;
        let mut images = self.load()?;
        let out = update(&mut images)?;
        self.persist(&images)?;
        Ok(out)
    }

    /// Pins (or unpins) image `id`: CRI reports it `pinned`, and the
    /// kubelet's image garbage collection leaves it alone.
    pub fn set_pinned(&self, id: &Digest, pinned: bool) -> Result<(), ImageError> {
        self.update(|images| {
            if let Some(record) = images.get_mut(id) {
                record.pinned = pinned;
            }
            Ok(())
        })
    }

    /// Every image.
    pub fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        Ok(self.load()?.into_values().collect())
    }

    /// Finds an image by ID (`sha256:<hex>` or bare hex), by `name:tag` or by
    /// `name@digest` (names are normalised first: `busybox` finds
    /// `docker.io/library/busybox:latest`).
    pub fn resolve(&self, spec: &str) -> Result<Option<ImageRecord>, ImageError> {
        Ok(find(&self.load()?, spec).cloned())
    }

    /// The image's config document.
    pub fn config(&self, image: &ImageRecord) -> Result<ImageConfig, ImageError> {
        let bytes = self.content.read(&image.id)?;
        serde_json::from_slice(&bytes)
            .map_err(ImageError::json(format!("image config {}", image.id)))
    }

    /// The snapshot directory of a chain ID (`snapshots/<hex>/fs`).
    pub fn snapshot_dir(&self, chain_id: &Digest) -> PathBuf {
        self.snapshots.join(chain_id.hex()).join("fs")
    }

    /// The overlayfs `lowerdir` list for a container of `image`: the top layer
    /// first, as overlayfs wants it. Hex-only paths, so no `:` needs escaping.
    pub fn rootfs_lowerdirs(&self, image: &ImageRecord) -> Result<Vec<PathBuf>, ImageError> {
        image
            .layers
            .iter()
            .rev()
            .map(|l| {
                let dir = self.snapshot_dir(&l.chain_id);
                if dir.is_dir() {
                    Ok(dir)
                } else {
                    Err(ImageError::NotFound(format!(
                        "snapshot {} of image {}",
                        l.chain_id, image.id
                    )))
                }
            })
            .collect()
    }

    /// Records the image of `manifest` (already in the content store with its
    /// config and layers), unpacking any layer not yet unpacked and checking each
    /// diffID against the config. Given references move to this image.
    pub(crate) fn commit_image(
        &self,
        lease: &Lease,
        manifest_digest: &Digest,
        manifest: &Manifest,
        repo_tags: &[Reference],
        repo_digests: &[Reference],
    ) -> Result<ImageRecord, ImageError> {
        let config_digest = &manifest.config.digest;
        let config_bytes = self.content.read(config_digest)?;
        let config: ImageConfig = serde_json::from_slice(&config_bytes)
            .map_err(ImageError::json(format!("image config {config_digest}")))?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(ImageError::Invalid(format!(
                "manifest {manifest_digest} has {} layers but its config lists {} diff_ids",
                manifest.layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        let chains = chain_ids(&config.rootfs.diff_ids);
        let mut layers = Vec::with_capacity(manifest.layers.len());
        for ((desc, diff_id), chain_id) in manifest
            .layers
            .iter()
            .zip(&config.rootfs.diff_ids)
            .zip(chains)
        {
            lease.protect(&chain_id);
            self.prepare_snapshot(&desc.digest, diff_id, &chain_id)?;
            layers.push(LayerRecord {
                digest: desc.digest.clone(),
                media_type: desc.media_type.clone(),
                size: self.content.size(&desc.digest).unwrap_or(desc.size),
                diff_id: diff_id.clone(),
                chain_id,
            });
        }
        let manifest_size = self.content.size(manifest_digest).unwrap_or(0);
        let size =
            manifest_size + config_bytes.len() as u64 + layers.iter().map(|l| l.size).sum::<u64>();

        let tags: Vec<String> = repo_tags.iter().map(ToString::to_string).collect();
        let digests: Vec<String> = repo_digests.iter().map(ToString::to_string).collect();
        self.update(|images| {
            for other in images.values_mut() {
                other.repo_tags.retain(|t| !tags.contains(t));
                other.repo_digests.retain(|d| !digests.contains(d));
            }
            let record = images
                .entry(config_digest.clone())
                .or_insert_with(|| ImageRecord {
                    id: config_digest.clone(),
                    manifest_digest: manifest_digest.clone(),
                    repo_tags: Vec::new(),
                    repo_digests: Vec::new(),
                    layers: Vec::new(),
                    size: 0,
                    pinned: false,
                });
            record.manifest_digest = manifest_digest.clone();
            record.layers = layers;
            record.size = size;
            for t in tags {
                if !record.repo_tags.contains(&t) {
                    record.repo_tags.push(t);
                }
            }
            for d in digests {
                if !record.repo_digests.contains(&d) {
                    record.repo_digests.push(d);
                }
            }
            Ok(record.clone())
        })
    }

    /// Unpacks the layer blob into `snapshots/<chain hex>/fs` unless already there.
    fn prepare_snapshot(
        &self,
        blob: &Digest,
        diff_id: &Digest,
        chain_id: &Digest,
    ) -> Result<(), ImageError> {
        let final_dir = self.snapshots.join(chain_id.hex());
        if final_dir.is_dir() {
            return Ok(());
        }
        let temp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempdir_in(&self.snapshots)
            .map_err(ImageError::io("create temp dir in", &self.snapshots))?;
        let fs_dir = temp.path().join("fs");
        fs::create_dir(&fs_dir).map_err(ImageError::io("create", &fs_dir))?;
        let applied = apply_layer_file(&self.content.blob_path(blob), &fs_dir)?;
        if applied.diff_id != *diff_id {
            return Err(ImageError::DigestMismatch {
                expected: diff_id.to_string(),
                actual: applied.diff_id.to_string(),
            });
        }
        match fs::rename(temp.path(), &final_dir) {
            Ok(()) => sync_dir(&self.snapshots),
            // Someone else unpacked the same layer meanwhile; ours is dropped.
            Err(_) if final_dir.is_dir() => Ok(()),
            Err(e) => Err(ImageError::io("rename into", final_dir)(e)),
        }
    }

    /// Removes the image `spec` resolves to (all its names) and then every blob
    /// and snapshot no other image uses. Returns the removed image, if any.
    pub fn remove(&self, spec: &str) -> Result<Option<ImageRecord>, ImageError> {
        let removed = self.update(|images| {
            let id = find(images, spec).map(|i| i.id.clone());
            Ok(id.and_then(|id| images.remove(&id)))
        })?;
        if removed.is_none() {
            return Ok(None);
        }
        self.gc()?;
        Ok(removed)
    }

    /// Deletes blobs and snapshots referenced by no image and no lease.
    pub fn gc(&self) -> Result<GcStats, ImageError> {
        self.update(|images| self.collect_garbage(images))
    }

    /// Deletes those of `candidates` (blobs this process wrote) that no image
    /// and no lease uses; unlike [`ImageStore::gc`] it never touches what another
    /// process may be writing.
    pub(crate) fn discard_unreferenced(
        &self,
        candidates: impl IntoIterator<Item = Digest>,
    ) -> Result<usize, ImageError> {
        self.update(|images| {
            let live = self.live_set(images);
            let mut removed = 0;
            for blob in candidates {
                if !live.contains(&blob) && self.content.contains(&blob) {
                    self.content.remove(&blob)?;
                    removed += 1;
                }
            }
            Ok(removed)
        })
    }

    /// Everything an image or a lease of this process still uses.
    fn live_set(&self, images: &BTreeMap<Digest, ImageRecord>) -> HashSet<Digest> {
        let mut live: HashSet<Digest> = HashSet::new();
        for image in images.values() {
            live.insert(image.id.clone());
            live.insert(image.manifest_digest.clone());
            for layer in &image.layers {
                live.insert(layer.digest.clone());
                live.insert(layer.chain_id.clone());
            }
        }
        if let Ok(leases) = self.leases.lock() {
            live.extend(leases.values().flatten().cloned());
        }
        live
    }

    fn collect_garbage(
        &self,
        images: &BTreeMap<Digest, ImageRecord>,
    ) -> Result<GcStats, ImageError> {
        let live = self.live_set(images);
        let mut stats = GcStats::default();
        for blob in self.content.list()? {
            if !live.contains(&blob) {
                self.content.remove(&blob)?;
                stats.blobs += 1;
            }
        }
        let entries =
            fs::read_dir(&self.snapshots).map_err(ImageError::io("read", &self.snapshots))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(chain) = format!("sha256:{name}").parse::<Digest>() else {
                continue;
            };
            if !live.contains(&chain) {
                fs::remove_dir_all(entry.path()).map_err(ImageError::io("remove", entry.path()))?;
                stats.snapshots += 1;
            }
        }
        Ok(stats)
    }

    /// Bytes and inodes used by blobs and snapshots.
    pub fn usage(&self) -> (u64, u64) {
        let mut total = (0, 0);
        for dir in [self.root.join("content"), self.snapshots.clone()] {
            disk_usage(&dir, &mut total);
        }
        total
    }

    fn persist(&self, images: &BTreeMap<Digest, ImageRecord>) -> Result<(), ImageError> {
        let index = IndexFile {
            version: INDEX_VERSION,
            images: images.values().cloned().collect(),
        };
        let bytes = serde_json::to_vec_pretty(&index).map_err(ImageError::json("image index"))?;
        let mut temp = tempfile::NamedTempFile::new_in(&self.root)
            .map_err(ImageError::io("create temp file in", &self.root))?;
        io::Write::write_all(&mut temp, &bytes).map_err(ImageError::io("write", temp.path()))?;
        temp.as_file()
            .sync_all()
            .map_err(ImageError::io("fsync", temp.path()))?;
        let path = self.root.join(INDEX_FILE);
        temp.persist(&path)
            .map_err(|e| ImageError::io("rename into", &path)(e.error))?;
        sync_dir(&self.root)
    }
}

fn lock_file(path: &Path) -> Result<File, ImageError> {
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(ImageError::io("open", path))
}

/// Image lookup by ID, bare hex ID, tag or repo digest.
fn find<'a>(images: &'a BTreeMap<Digest, ImageRecord>, spec: &str) -> Option<&'a ImageRecord> {
    if let Ok(id) = spec.parse::<Digest>() {
        return images.get(&id);
    }
    if let Ok(id) = format!("sha256:{spec}").parse::<Digest>()
        && let Some(image) = images.get(&id)
    {
        return Some(image);
    }
    let reference = Reference::parse_normalized(spec).ok()?.to_string();
    images
        .values()
        .find(|i| i.repo_tags.contains(&reference) || i.repo_digests.contains(&reference))
}

fn disk_usage(path: &Path, total: &mut (u64, u64)) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    use std::os::unix::fs::MetadataExt;
    total.0 += meta.blocks() * 512;
    total.1 += 1;
    if meta.is_dir()
        && let Ok(entries) = fs::read_dir(path)
    {
        for entry in entries.flatten() {
            disk_usage(&entry.path(), total);
        }
    }
}
