//! Image garbage collection (upstream's `pkg/kubelet/images/image_gc_manager.go`):
//! every [`IMAGE_GC_PERIOD`] the image filesystem's usage is checked and,
//! once it reaches the high threshold, images no container uses are removed
//! — least recently used first, never pinned ones, never ones detected less
//! than `min_age` ago — until usage would be back at the low threshold.
//!
//! [`ImageGcState`] is the sans-IO core: it tracks when each image was first
//! detected and last seen in use, and orders the candidates.
//! [`ImageGcManager`] feeds it from CRI and removes images through CRI; the
//! filesystem's capacity comes through the [`FsStats`] seam.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1 as api;
use k8s_openapi::api::core::v1::ObjectReference;
use skiff_client::events::{EventSink, PendingEvent};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cri::Cri;

/// How often image GC runs (upstream's `ImageGCPeriod`).
pub const IMAGE_GC_PERIOD: Duration = Duration::from_secs(5 * 60);
/// `--image-gc-high-threshold` default.
pub const DEFAULT_IMAGE_GC_HIGH_THRESHOLD_PERCENT: i32 = 85;
/// `--image-gc-low-threshold` default.
pub const DEFAULT_IMAGE_GC_LOW_THRESHOLD_PERCENT: i32 = 80;
/// `imageMinimumGCAge` default.
pub const DEFAULT_IMAGE_MINIMUM_GC_AGE: Duration = Duration::from_secs(2 * 60);

/// Event reasons (upstream's `pkg/kubelet/events`).
pub const FREE_DISK_SPACE_FAILED: &str = "FreeDiskSpaceFailed";
/// Event reason of repeated GC failures.
pub const IMAGE_GC_FAILED: &str = "ImageGCFailed";
/// Event reason of a zero-capacity image filesystem.
pub const INVALID_DISK_CAPACITY: &str = "InvalidDiskCapacity";

/// The band image GC keeps disk usage in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageGcPolicy {
    /// Usage (percent) at or above which GC runs; 100 disables GC.
    pub high_threshold_percent: i32,
    /// Usage (percent) GC frees down to.
    pub low_threshold_percent: i32,
    /// Images detected more recently than this are never removed.
    pub min_age: Duration,
}

impl Default for ImageGcPolicy {
    fn default() -> Self {
        Self {
            high_threshold_percent: DEFAULT_IMAGE_GC_HIGH_THRESHOLD_PERCENT,
            low_threshold_percent: DEFAULT_IMAGE_GC_LOW_THRESHOLD_PERCENT,
            min_age: DEFAULT_IMAGE_MINIMUM_GC_AGE,
        }
    }
}

impl ImageGcPolicy {
    /// Upstream's kubelet configuration validation of the two thresholds.
    pub fn validate(&self) -> Result<(), String> {
        let (high, low) = (self.high_threshold_percent, self.low_threshold_percent);
        let mut errors = Vec::new();
        if !(0..=100).contains(&high) {
            errors.push(format!(
                "invalid configuration: imageGCHighThresholdPercent (--image-gc-high-threshold) {high} must be between 0 and 100, inclusive"
            ));
        }
        if !(0..=100).contains(&low) {
            errors.push(format!(
                "invalid configuration: imageGCLowThresholdPercent (--image-gc-low-threshold) {low} must be between 0 and 100, inclusive"
            ));
        }
        if low >= high {
            errors.push(format!(
                "invalid configuration: imageGCLowThresholdPercent (--image-gc-low-threshold) {low} must be less than imageGCHighThresholdPercent (--image-gc-high-threshold) {high}"
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join(", "))
        }
    }

    /// A high threshold of 100 turns image GC off (as upstream).
    pub fn enabled(&self) -> bool {
        self.high_threshold_percent < 100
    }
}

/// An image as GC sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// Image ID.
    pub id: String,
    /// Tags.
    pub repo_tags: Vec<String>,
    /// Repo digests.
    pub repo_digests: Vec<String>,
    /// Size in bytes.
    pub size: u64,
    /// The runtime asks that it is never removed.
    pub pinned: bool,
}

impl ImageInfo {
    /// From a CRI image.
    pub fn from_cri(i: &api::Image) -> Self {
        Self {
            id: i.id.clone(),
            repo_tags: i.repo_tags.clone(),
            repo_digests: i.repo_digests.clone(),
            size: i.size,
            pinned: i.pinned,
        }
    }

    /// Whether a container's image reference (its `image_ref` or requested
    /// image) names this image.
    fn named_by(&self, reference: &str) -> bool {
        !reference.is_empty()
            && (self.id == reference
                || self.repo_digests.iter().any(|d| d == reference)
                || self.repo_tags.iter().any(|t| t == reference))
    }
}

/// What GC remembers about an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageRecord {
    /// When GC first saw it; `None`: already there when the kubelet started
    /// (upstream's zero time: old enough for any `min_age`).
    pub first_detected: Option<Instant>,
    /// When a container was last seen using it.
    pub last_used: Option<Instant>,
    /// Size in bytes.
    pub size: u64,
}

/// A removal candidate, in eviction order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Image ID.
    pub id: String,
    /// Bytes its removal frees.
    pub size: u64,
}

/// The sans-IO core: image records and the eviction order.
#[derive(Debug, Default)]
pub struct ImageGcState {
    records: HashMap<String, ImageRecord>,
}

impl ImageGcState {
    /// The record of image `id`.
    pub fn record(&self, id: &str) -> Option<&ImageRecord> {
        self.records.get(id)
    }

    /// Updates the records from the runtime's images and the references of
    /// its containers at `now` (`None`: the first detection at start-up).
    /// Returns the IDs of images in use.
    pub fn detect(
        &mut self,
        images: &[ImageInfo],
        container_refs: &[String],
        now: Option<Instant>,
    ) -> HashSet<String> {
        let mut in_use = HashSet::new();
        for image in images {
            let record = self.records.entry(image.id.clone()).or_insert(ImageRecord {
                first_detected: now,
                last_used: None,
                size: image.size,
            });
            record.size = image.size;
            if container_refs.iter().any(|r| image.named_by(r)) {
                in_use.insert(image.id.clone());
                if let Some(now) = now {
                    record.last_used = Some(now);
                }
            }
        }
        let present: HashSet<&str> = images.iter().map(|i| i.id.as_str()).collect();
        self.records.retain(|id, _| present.contains(id.as_str()));
        in_use
    }

    /// Images that may go at `now`, least recently used first (ties: first
    /// detected first): not in use, not pinned, not used at or after `now`,
    /// detected at least `min_age` ago.
    pub fn eviction_order(
        &self,
        images: &[ImageInfo],
        in_use: &HashSet<String>,
        now: Instant,
        min_age: Duration,
    ) -> Vec<Candidate> {
        let mut eligible: Vec<(&String, &ImageRecord)> = images
            .iter()
            .filter(|i| !i.pinned && !in_use.contains(&i.id))
            .filter_map(|i| self.records.get_key_value(&i.id))
            .filter(|(_, r)| r.last_used.is_none_or(|t| t < now))
            .filter(|(_, r)| {
                r.first_detected
                    .is_none_or(|t| now.saturating_duration_since(t) >= min_age)
            })
            .collect();
        // `None` (never used / detected at start-up) sorts first: oldest.
        eligible.sort_by(|a, b| {
            (a.1.last_used, a.1.first_detected, a.0).cmp(&(b.1.last_used, b.1.first_detected, b.0))
        });
        eligible
            .into_iter()
            .map(|(id, r)| Candidate {
                id: id.clone(),
                size: r.size,
            })
            .collect()
    }

    /// Forgets a removed image.
    pub fn forget(&mut self, id: &str) {
        self.records.remove(id);
    }
}

/// What a removal walk did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FreeOutcome {
    /// Bytes freed.
    pub freed: u64,
    /// Images removed, in order.
    pub removed: Vec<String>,
    /// Removals that failed (the walk goes on past them).
    pub errors: Vec<String>,
}

/// The removal walk as a state machine (no I/O): hands out candidates in
/// order until `bytes_to_free` bytes are freed, going on past failures.
#[derive(Debug, Clone)]
pub struct FreeWalk {
    candidates: std::vec::IntoIter<Candidate>,
    bytes_to_free: u64,
    outcome: FreeOutcome,
}

impl FreeWalk {
    /// A walk over `candidates` (in eviction order).
    pub fn new(candidates: Vec<Candidate>, bytes_to_free: u64) -> Self {
        Self {
            candidates: candidates.into_iter(),
            bytes_to_free,
            outcome: FreeOutcome::default(),
        }
    }

    /// The next image to remove; `None` once enough is freed or none is left.
    pub fn next_candidate(&mut self) -> Option<Candidate> {
        if self.outcome.freed >= self.bytes_to_free {
            return None;
        }
        self.candidates.next()
    }

    /// Records how removing `c` went.
    pub fn report(&mut self, c: &Candidate, result: Result<(), String>) {
        match result {
            Ok(()) => {
                self.outcome.freed = self.outcome.freed.saturating_add(c.size);
                self.outcome.removed.push(c.id.clone());
            }
            Err(e) => self.outcome.errors.push(e),
        }
    }

    /// What the walk did.
    pub fn finish(self) -> FreeOutcome {
        self.outcome
    }
}

/// Bytes to free to bring usage from the high threshold down to the low
/// one; `None` while usage is under the high threshold.
pub fn amount_to_free(policy: &ImageGcPolicy, fs: FsCapacity) -> Option<u64> {
    let capacity = i128::from(fs.capacity_bytes);
    let available = i128::from(fs.available_bytes.min(fs.capacity_bytes));
    if capacity == 0 {
        return None;
    }
    let usage_percent = 100 - available * 100 / capacity;
    if usage_percent < i128::from(policy.high_threshold_percent) {
        return None;
    }
    let target = capacity * i128::from(100 - policy.low_threshold_percent) / 100 - available;
    Some(u64::try_from(target.max(0)).unwrap_or(u64::MAX))
}

/// Size and free space of a filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsCapacity {
    /// Total bytes.
    pub capacity_bytes: u64,
    /// Bytes available to unprivileged users.
    pub available_bytes: u64,
}

/// How GC learns the image filesystem's size (a seam for tests).
pub trait FsStats: Send + Sync + std::fmt::Debug {
    /// Capacity and free space of the filesystem holding `path`.
    fn stat(&self, path: &Path) -> std::io::Result<FsCapacity>;
}

/// `statvfs(2)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StatvfsFs;

impl FsStats for StatvfsFs {
    fn stat(&self, path: &Path) -> std::io::Result<FsCapacity> {
        let s = rustix::fs::statvfs(path)?;
        Ok(FsCapacity {
            capacity_bytes: s.f_blocks.saturating_mul(s.f_frsize),
            available_bytes: s.f_bavail.saturating_mul(s.f_frsize),
        })
    }
}

/// Why a GC pass failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageGcError {
    /// A CRI call failed.
    #[error("{what}: {status}")]
    Runtime {
        /// The call.
        what: &'static str,
        /// Its status.
        status: tonic::Status,
    },
    /// The image filesystem could not be measured.
    #[error("{0}")]
    FsStats(String),
    /// Not enough could be freed (or the filesystem reports no capacity).
    #[error("{0}")]
    Failed(String),
}

/// The reference to this node that GC events are about (upstream's nodeRef:
/// the UID is the node name).
pub fn node_reference(node_name: &str) -> ObjectReference {
    ObjectReference {
        kind: Some("Node".to_owned()),
        name: Some(node_name.to_owned()),
        uid: Some(node_name.to_owned()),
        ..Default::default()
    }
}

/// Runs image GC against a CRI runtime.
#[derive(Debug)]
pub struct ImageGcManager {
    cri: Cri,
    policy: ImageGcPolicy,
    fs: Arc<dyn FsStats>,
    events: Arc<dyn EventSink>,
    node: ObjectReference,
    state: ImageGcState,
    initialized: bool,
}

impl ImageGcManager {
    /// A manager for the node `node_name`.
    pub fn new(
        cri: Cri,
        policy: ImageGcPolicy,
        fs: Arc<dyn FsStats>,
        events: Arc<dyn EventSink>,
        node_name: &str,
    ) -> Self {
        Self {
            cri,
            policy,
            fs,
            events,
            node: node_reference(node_name),
            state: ImageGcState::default(),
            initialized: false,
        }
    }

    /// The sans-IO state (tests look at the records).
    pub fn state(&self) -> &ImageGcState {
        &self.state
    }

    fn warn(&self, reason: &str, note: String) {
        self.events.record(PendingEvent {
            regarding: self.node.clone(),
            normal: false,
            reason: reason.to_owned(),
            action: reason.to_owned(),
            note,
        });
    }

    async fn images(&mut self) -> Result<Vec<ImageInfo>, ImageGcError> {
        let images = self
            .cri
            .images
            .list_images(api::ListImagesRequest { filter: None })
            .await
            .map_err(|status| ImageGcError::Runtime {
                what: "list images",
                status,
            })?;
        Ok(images
            .into_inner()
            .images
            .iter()
            .map(ImageInfo::from_cri)
            .collect())
    }

    /// Every container's image references, whatever its state (upstream
    /// counts exited containers as users too).
    async fn container_refs(&mut self) -> Result<Vec<String>, ImageGcError> {
        let containers = self
            .cri
            .runtime
            .list_containers(api::ListContainersRequest { filter: None })
            .await
            .map_err(|status| ImageGcError::Runtime {
                what: "list containers",
                status,
            })?;
        Ok(containers
            .into_inner()
            .containers
            .into_iter()
            .flat_map(|c| [c.image_ref, c.image.map(|i| i.image).unwrap_or_default()])
            .filter(|r| !r.is_empty())
            .collect())
    }

    /// Records the runtime's images; the first detection dates them to the
    /// unknown past, as upstream.
    pub async fn detect(
        &mut self,
        now: Instant,
    ) -> Result<(Vec<ImageInfo>, HashSet<String>), ImageGcError> {
        let images = self.images().await?;
        let refs = self.container_refs().await?;
        let when = self.initialized.then_some(now);
        let in_use = self.state.detect(&images, &refs, when);
        self.initialized = true;
        Ok((images, in_use))
    }

    async fn image_fs(&mut self) -> Result<FsCapacity, ImageGcError> {
        let info = self
            .cri
            .images
            .image_fs_info(api::ImageFsInfoRequest {})
            .await
            .map_err(|status| ImageGcError::Runtime {
                what: "image filesystem info",
                status,
            })?
            .into_inner();
        let mountpoint = info
            .image_filesystems
            .first()
            .and_then(|f| f.fs_id.as_ref())
            .map(|id| id.mountpoint.clone())
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                ImageGcError::FsStats("the runtime reports no image filesystem".into())
            })?;
        self.fs
            .stat(Path::new(&mountpoint))
            .map_err(|e| ImageGcError::FsStats(format!("statfs {mountpoint}: {e}")))
    }

    /// One GC pass at `now`: measure, and free down to the low threshold
    /// when usage is at or above the high one.
    #[tracing::instrument(skip_all)]
    pub async fn garbage_collect(&mut self, now: Instant) -> Result<(), ImageGcError> {
        let fs = self.image_fs().await?;
        if fs.capacity_bytes == 0 {
            let msg = "invalid capacity 0 on image filesystem".to_owned();
            self.warn(INVALID_DISK_CAPACITY, msg.clone());
            return Err(ImageGcError::Failed(msg));
        }
        let Some(to_free) = amount_to_free(&self.policy, fs) else {
            return Ok(());
        };
        let available = fs.available_bytes.min(fs.capacity_bytes);
        tracing::info!(
            usage = 100 - available.saturating_mul(100) / fs.capacity_bytes,
            high_threshold = self.policy.high_threshold_percent,
            amount_to_free = to_free,
            low_threshold = self.policy.low_threshold_percent,
            "Disk usage on image filesystem is over the high threshold, trying to free bytes down to the low threshold"
        );
        let freed = self.free_space(to_free, now).await?;
        if freed < to_free {
            let msg = format!(
                "Failed to garbage collect required amount of images. Attempted to free {to_free} bytes, but only found {freed} bytes eligible to free."
            );
            self.warn(FREE_DISK_SPACE_FAILED, msg.clone());
            return Err(ImageGcError::Failed(msg));
        }
        Ok(())
    }

    /// Removes unused images in eviction order until `bytes_to_free` bytes
    /// are freed; returns the bytes freed.
    pub async fn free_space(
        &mut self,
        bytes_to_free: u64,
        now: Instant,
    ) -> Result<u64, ImageGcError> {
        let (images, in_use) = self.detect(now).await?;
        let candidates = self
            .state
            .eviction_order(&images, &in_use, now, self.policy.min_age);
        let mut walk = FreeWalk::new(candidates, bytes_to_free);
        while let Some(c) = walk.next_candidate() {
            tracing::info!(image = %c.id, size = c.size, "Removing image to free bytes");
            let req = api::RemoveImageRequest {
                image: Some(api::ImageSpec {
                    image: c.id.clone(),
                    ..Default::default()
                }),
            };
            let result = self.cri.images.remove_image(req).await;
            walk.report(
                &c,
                result
                    .map(|_| ())
                    .map_err(|e| format!("{}: {}", c.id, e.message())),
            );
        }
        let out = walk.finish();
        for id in &out.removed {
            self.state.forget(id);
        }
        let (freed, errors) = (out.freed, out.errors);
        if !errors.is_empty() {
            return Err(ImageGcError::Failed(format!(
                "wanted to free {bytes_to_free} bytes, but freed {freed} bytes space with errors in image deletion: [{}]",
                errors.join(", ")
            )));
        }
        Ok(freed)
    }

    /// Runs a pass every `period` until `shutdown`; a failure twice in a row
    /// raises an `ImageGCFailed` event (the first may be start-up noise).
    pub async fn run(mut self, period: Duration, mut shutdown: watch::Receiver<bool>) {
        if !self.policy.enabled() {
            tracing::info!("ImageGCHighThresholdPercent is set 100, Disable image GC");
            return;
        }
        if let Err(e) = self.detect(Instant::now()).await {
            tracing::warn!(error = %e, "Failed to monitor images");
        }
        let mut previous_failed = false;
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {}
            }
            match self.garbage_collect(Instant::now()).await {
                Ok(()) => previous_failed = false,
                Err(e) => {
                    if previous_failed {
                        tracing::error!(error = %e, "Image garbage collection failed multiple times in a row");
                        self.warn(IMAGE_GC_FAILED, e.to_string());
                    } else {
                        tracing::error!(error = %e, "Image garbage collection failed once. Stats initialization may not have completed yet");
                    }
                    previous_failed = true;
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "images_gc_tests.rs"]
mod tests;
