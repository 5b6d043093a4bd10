//! The kubelet's volume manager: sets up a pod's volumes before its containers
//! are created, refreshes projected contents while it runs and removes them when
//! it is gone, as upstream's in-tree plugins (`pkg/volume/emptydir`, `configmap`,
//! `secret`, `downwardapi`, `projected`, `hostpath`) do.
//!
//! Volumes live at `<root>/pods/<uid>/volumes/kubernetes.io~<plugin>/<name>`,
//! upstream's layout. configMap volumes sit on the node's disk; secret,
//! downwardAPI and projected volumes on a tmpfs (upstream wraps them in a
//! `medium: Memory` emptyDir), so secrets never reach the disk.

mod api_source;
pub mod atomic_writer;
pub mod hostpath;
pub mod payload;
mod projected;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Volume};
use skiff_api::go_quote;
use skiff_api::quantity::Quantity;
use skiff_sys::Mounter;

pub use api_source::ApiObjectSource;
use atomic_writer::{AtomicWriter, Payload};
use payload::{DEFAULT_MODE, configmap_payload, downward_api_payload, secret_payload};

/// Where the kubelet reads the objects that volumes project.
///
/// `Ok(None)` means the object does not exist; `Err` carries a message for
/// the FailedMount event.
pub trait ObjectSource: Send + Sync {
    /// The ConfigMap `namespace/name`.
    fn get_configmap<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConfigMap>, String>>;

    /// The Secret `namespace/name`.
    fn get_secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Secret>, String>>;

    /// A token of `service_account` (TokenRequest) bound to `pod`.
    fn service_account_token<'a>(
        &'a self,
        namespace: &'a str,
        service_account: &'a str,
        audience: Option<&'a str>,
        expiration_seconds: i64,
        pod: &'a Pod,
    ) -> BoxFuture<'a, Result<String, String>>;
}

/// A volume that could not be set up or torn down. Display is the message of
/// upstream's FailedMount event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeError {
    /// `MountVolume.SetUp failed for volume "v" : <message>`.
    SetUp {
        /// The pod's name for the volume.
        volume: String,
        /// What went wrong (upstream's plugin error text).
        message: String,
    },
    /// Removing a pod's volume directory failed.
    TearDown {
        /// The pod's UID.
        pod_uid: String,
        /// What went wrong.
        message: String,
    },
}

impl std::fmt::Display for VolumeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SetUp { volume, message } => write!(
                f,
                "MountVolume.SetUp failed for volume {} : {message}",
                go_quote(volume)
            ),
            Self::TearDown { pod_uid, message } => write!(
                f,
                "UnmountVolume.TearDown failed for pod {} : {message}",
                go_quote(pod_uid)
            ),
        }
    }
}

impl std::error::Error for VolumeError {}

/// The in-tree plugins we implement, by the directory they use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plugin {
    EmptyDir,
    ConfigMap,
    Secret,
    DownwardApi,
    Projected,
}

impl Plugin {
    const ALL: [Plugin; 5] = [
        Plugin::EmptyDir,
        Plugin::ConfigMap,
        Plugin::Secret,
        Plugin::DownwardApi,
        Plugin::Projected,
    ];

    fn of(volume: &Volume) -> Option<Self> {
        if volume.empty_dir.is_some() {
            Some(Self::EmptyDir)
        } else if volume.config_map.is_some() {
            Some(Self::ConfigMap)
        } else if volume.secret.is_some() {
            Some(Self::Secret)
        } else if volume.downward_api.is_some() {
            Some(Self::DownwardApi)
        } else if volume.projected.is_some() {
            Some(Self::Projected)
        } else {
            None
        }
    }

    /// `kubernetes.io/<name>` escaped for the disk, as upstream.
    fn dir_name(self) -> &'static str {
        match self {
            Self::EmptyDir => "kubernetes.io~empty-dir",
            Self::ConfigMap => "kubernetes.io~configmap",
            Self::Secret => "kubernetes.io~secret",
            Self::DownwardApi => "kubernetes.io~downward-api",
            Self::Projected => "kubernetes.io~projected",
        }
    }
}

/// A cached service account token: upstream's token manager reuses a token
/// until 80% of its lifetime (or 24 h) has passed.
#[derive(Debug, Clone)]
struct CachedToken {
    token: String,
    refresh_at: tokio::time::Instant,
}

/// (pod UID, namespace, service account, audience, expiration seconds).
type TokenKey = (String, String, String, Option<String>, i64);

/// Upstream's `maxTTL`: a token is refreshed at least daily.
const MAX_TOKEN_TTL_SECS: u64 = 24 * 60 * 60;

/// Sets up, refreshes and tears down pod volumes below one root directory.
#[derive(Debug)]
pub struct VolumeManager {
    root: PathBuf,
    mounter: Arc<dyn Mounter>,
    /// The node's allocatable resources: the value of a downward API
    /// `limits.*` a container does not set.
    node_allocatable: BTreeMap<String, Quantity>,
    tokens: Mutex<HashMap<TokenKey, CachedToken>>,
    write_lock: Mutex<()>,
}

impl VolumeManager {
    /// A manager for the kubelet root directory `root` (`/var/lib/kubelet`).
    pub fn new(root: PathBuf, mounter: Arc<dyn Mounter>) -> Self {
        Self {
            root,
            mounter,
            node_allocatable: BTreeMap::new(),
            tokens: Mutex::new(HashMap::new()),
            write_lock: Mutex::new(()),
        }
    }

    /// Sets the node's allocatable resources (see [`VolumeManager`]).
    pub fn with_node_allocatable(mut self, allocatable: BTreeMap<String, Quantity>) -> Self {
        self.node_allocatable = allocatable;
        self
    }

    /// `<root>/pods/<uid>`.
    pub fn pod_dir(&self, pod_uid: &str) -> PathBuf {
        self.root.join("pods").join(pod_uid)
    }

    fn volume_dir(&self, pod_uid: &str, plugin: Plugin, name: &str) -> PathBuf {
        self.pod_dir(pod_uid)
            .join("volumes")
            .join(plugin.dir_name())
            .join(name)
    }

    /// Prepares every volume of the pod; returns volume name -> host dir (or
    /// file, for a hostPath file). Safe to call again: mounts are not
    /// repeated and unchanged contents are not rewritten.
    #[tracing::instrument(skip_all, fields(pod = pod.metadata.name.as_deref()))]
    pub async fn setup(
        &self,
        pod: &Pod,
        source: &dyn ObjectSource,
    ) -> Result<BTreeMap<String, PathBuf>, VolumeError> {
        let uid = pod_uid(pod);
        let mut out = BTreeMap::new();
        for volume in pod_volumes(pod) {
            let fail = |message: String| VolumeError::SetUp {
                volume: volume.name.clone(),
                message,
            };
            if let Some(host) = &volume.host_path {
                hostpath::check_host_path(&host.path, host.type_.as_deref()).map_err(fail)?;
                out.insert(volume.name.clone(), PathBuf::from(&host.path));
                continue;
            }
            let uid = uid.map_err(|e| fail(e.to_string()))?;
            let plugin = Plugin::of(volume).ok_or_else(|| fail(unsupported(volume)))?;
            let dir = self.volume_dir(uid, plugin, &volume.name);
            self.setup_dir(pod, plugin, volume, &dir).map_err(fail)?;
            if plugin != Plugin::EmptyDir {
                self.write_contents(pod, uid, volume, &dir, source)
                    .await
                    .map_err(fail)?;
            }
            out.insert(volume.name.clone(), dir);
        }
        Ok(out)
    }

    /// Rewrites configMap/secret/downwardAPI/projected contents that changed,
    /// each with one atomic swap. Volumes not set up yet are skipped; a volume
    /// that fails keeps its old contents, the others are still refreshed, and
    /// the first failure is returned. Returns whether anything changed.
    #[tracing::instrument(skip_all, fields(pod = pod.metadata.name.as_deref()))]
    pub async fn refresh(&self, pod: &Pod, source: &dyn ObjectSource) -> Result<bool, VolumeError> {
        let Ok(uid) = pod_uid(pod) else {
            return Ok(false);
        };
        let mut changed = false;
        let mut first_error = None;
        for volume in pod_volumes(pod) {
            let Some(plugin) = Plugin::of(volume) else {
                continue;
            };
            if plugin == Plugin::EmptyDir {
                continue;
            }
            let dir = self.volume_dir(uid, plugin, &volume.name);
            if !dir.is_dir() {
                continue;
            }
            match self.write_contents(pod, uid, volume, &dir, source).await {
                Ok(c) => changed |= c,
                Err(message) => {
                    tracing::warn!(volume = %volume.name, %message, "volume refresh failed");
                    first_error.get_or_insert(VolumeError::SetUp {
                        volume: volume.name.clone(),
                        message,
                    });
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(changed),
        }
    }

    /// Unmounts the pod's tmpfs volumes and removes `<root>/pods/<uid>`.
    /// Idempotent. Refuses to remove anything while a mount remains below the
    /// pod directory (a bind mount there would expose host files to deletion).
    #[tracing::instrument(skip(self))]
    pub async fn teardown(&self, pod_uid: &str) -> Result<(), VolumeError> {
        let fail = |message: String| VolumeError::TearDown {
            pod_uid: pod_uid.to_string(),
            message,
        };
        if pod_uid.is_empty() || pod_uid.contains('/') || pod_uid == "." || pod_uid == ".." {
            return Err(fail(format!("invalid pod UID {}", go_quote(pod_uid))));
        }
        self.forget_tokens(pod_uid);
        let pod_dir = self.pod_dir(pod_uid);
        if !pod_dir.exists() {
            return Ok(());
        }
        for plugin in Plugin::ALL {
            let plugin_dir = pod_dir.join("volumes").join(plugin.dir_name());
            let entries = match std::fs::read_dir(&plugin_dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(fail(e.to_string())),
            };
            for entry in entries {
                let dir = entry.map_err(|e| fail(e.to_string()))?.path();
                if self.mounter.is_mount_point(&dir).unwrap_or(false) {
                    self.mounter
                        .unmount(&dir)
                        .map_err(|e| fail(format!("unmount {}: {e}", dir.display())))?;
                }
            }
        }
        // Anything else still mounted below the pod dir (subPath bind mounts,
        // a tmpfs from an earlier kubelet) goes too, deepest first: removing
        // the tree through a bind mount would delete the host's files.
        let real_dir = std::fs::canonicalize(&pod_dir).unwrap_or_else(|_| pod_dir.clone());
        let mounts_left = || {
            std::fs::read_to_string("/proc/self/mountinfo")
                .map(|info| skiff_sys::mount::mounts_under(&info, &real_dir))
                .unwrap_or_default()
        };
        let mut left = mounts_left();
        left.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
        for mount in &left {
            self.mounter
                .unmount(mount)
                .map_err(|e| fail(format!("unmount {}: {e}", mount.display())))?;
        }
        if let Some(mount) = mounts_left().first() {
            return Err(fail(format!("{} is still mounted", mount.display())));
        }
        match std::fs::remove_dir_all(&pod_dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(fail(format!("remove {}: {e}", pod_dir.display()))),
        }
    }

    /// UIDs with a pod dir on disk (for orphan cleanup at start).
    pub fn pod_dirs(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.root.join("pods")) else {
            return Vec::new();
        };
        let mut out: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        out
    }

    /// Creates the volume directory (0777, as upstream's emptyDir) and, for
    /// memory-backed volumes, mounts a tmpfs on it once.
    fn setup_dir(
        &self,
        pod: &Pod,
        plugin: Plugin,
        volume: &Volume,
        dir: &Path,
    ) -> Result<(), String> {
        let (memory, size) = match plugin {
            Plugin::EmptyDir => {
                let empty_dir = volume.empty_dir.clone().unwrap_or_default();
                match empty_dir.medium.as_deref().unwrap_or_default() {
                    "" => (false, None),
                    "Memory" => (true, self.tmpfs_size(pod, empty_dir.size_limit.as_ref())?),
                    m if m.starts_with("HugePages") => {
                        return Err(format!("medium {m} is not supported on this node"));
                    }
                    m => return Err(format!("unknown storage medium {}", go_quote(m))),
                }
            }
            Plugin::ConfigMap => (false, None),
            Plugin::Secret | Plugin::DownwardApi | Plugin::Projected => {
                (true, self.tmpfs_size(pod, None)?)
            }
        };
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let mounted = memory
            && self
                .mounter
                .is_mount_point(dir)
                .map_err(|e| e.to_string())?;
        if !mounted {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
                .map_err(|e| e.to_string())?;
        }
        if memory && !mounted {
            self.mounter
                .mount_tmpfs(dir, size)
                .map_err(|e| format!("mount tmpfs on {}: {e}", dir.display()))?;
        }
        if let Some(gid) = fs_group(pod) {
            // The volume root only: what containers later create below an
            // emptyDir inherits the group through the set-group-ID bit.
            std::os::unix::fs::lchown(dir, None, Some(gid)).map_err(|e| e.to_string())?;
            let mode = std::fs::metadata(dir)
                .map_err(|e| e.to_string())?
                .permissions()
                .mode();
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o2000))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Computes a projected volume's files and writes them atomically.
    async fn write_contents(
        &self,
        pod: &Pod,
        uid: &str,
        volume: &Volume,
        dir: &Path,
        source: &dyn ObjectSource,
    ) -> Result<bool, String> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let payload: Payload = if let Some(cm) = &volume.config_map {
            let optional = cm.optional.unwrap_or(false);
            let object = match source.get_configmap(namespace, &cm.name).await? {
                Some(object) => object,
                None if optional => ConfigMap::default(),
                None => return Err(format!("configmap {} not found", go_quote(&cm.name))),
            };
            let mode = cm.default_mode.unwrap_or(DEFAULT_MODE);
            configmap_payload(cm.items.as_deref(), &object, mode, optional)?
        } else if let Some(secret) = &volume.secret {
            let optional = secret.optional.unwrap_or(false);
            let name = secret.secret_name.as_deref().unwrap_or_default();
            let object = match source.get_secret(namespace, name).await? {
                Some(object) => object,
                None if optional => Secret::default(),
                None => return Err(format!("secret {} not found", go_quote(name))),
            };
            let mode = secret.default_mode.unwrap_or(DEFAULT_MODE);
            secret_payload(secret.items.as_deref(), &object, mode, optional)?
        } else if let Some(dapi) = &volume.downward_api {
            let mode = dapi.default_mode.unwrap_or(DEFAULT_MODE);
            let items = dapi.items.as_deref().unwrap_or_default();
            downward_api_payload(items, pod, &self.node_allocatable, mode)?
        } else if let Some(projected) = &volume.projected {
            self.projected_payload(pod, uid, projected, source).await?
        } else {
            return Ok(false);
        };
        let fs_group = fs_group(pod);
        let mut payload = payload;
        if fs_group.is_some() {
            // Upstream's read-only volume mask: group may read every file.
            for file in payload.values_mut() {
                file.mode |= 0o440;
            }
        }
        // One writer at a time: a pod sync and a ConfigMap-triggered refresh
        // must not interleave their swaps in one directory.
        let _guard = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        AtomicWriter::new(dir)
            .with_fs_group(fs_group)
            .write(&payload)
            .map_err(|e| e.to_string())
    }

    /// A token for a projected volume, from the cache while it is fresh.
    async fn token(
        &self,
        pod: &Pod,
        uid: &str,
        service_account: &str,
        audience: Option<&str>,
        expiration_seconds: i64,
        source: &dyn ObjectSource,
    ) -> Result<String, String> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let key: TokenKey = (
            uid.to_string(),
            namespace.to_string(),
            service_account.to_string(),
            audience.map(str::to_string),
            expiration_seconds,
        );
        let now = tokio::time::Instant::now();
        if let Ok(cache) = self.tokens.lock()
            && let Some(cached) = cache.get(&key)
            && now < cached.refresh_at
        {
            return Ok(cached.token.clone());
        }
        let token = source
            .service_account_token(
                namespace,
                service_account,
                audience,
                expiration_seconds,
                pod,
            )
            .await
            .map_err(|e| format!("failed to fetch token: {e}"))?;
        let ttl = u64::try_from(expiration_seconds).unwrap_or(0);
        let refresh_after = std::time::Duration::from_secs(ttl.min(MAX_TOKEN_TTL_SECS) * 8 / 10);
        if let Ok(mut cache) = self.tokens.lock() {
            cache.insert(
                key,
                CachedToken {
                    token: token.clone(),
                    refresh_at: now + refresh_after,
                },
            );
        }
        Ok(token)
    }

    fn forget_tokens(&self, pod_uid: &str) {
        if let Ok(mut cache) = self.tokens.lock() {
            cache.retain(|key, _| key.0 != pod_uid);
        }
    }
}

fn pod_uid(pod: &Pod) -> Result<&str, &'static str> {
    match pod.metadata.uid.as_deref() {
        Some(uid) if !uid.is_empty() && !uid.contains('/') && uid != "." && uid != ".." => Ok(uid),
        _ => Err("pod has no valid metadata.uid"),
    }
}

/// `spec.securityContext.fsGroup`: the group that owns the pod's volumes.
fn fs_group(pod: &Pod) -> Option<u32> {
    let gid = pod.spec.as_ref()?.security_context.as_ref()?.fs_group?;
    u32::try_from(gid).ok()
}

/// The user every container runs as, when they all name the same one
/// (upstream's `FsUserFrom`): the owner of projected token files.
pub(crate) fn fs_user(pod: &Pod) -> Option<u32> {
    let spec = pod.spec.as_ref()?;
    let pod_user = spec.security_context.as_ref().and_then(|s| s.run_as_user);
    let mut users = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .map(|c| {
            c.security_context
                .as_ref()
                .and_then(|s| s.run_as_user)
                .or(pod_user)
        })
        .chain(spec.ephemeral_containers.iter().flatten().map(|c| {
            c.security_context
                .as_ref()
                .and_then(|s| s.run_as_user)
                .or(pod_user)
        }));
    let first = users.next()??;
    if users.all(|u| u == Some(first)) {
        u32::try_from(first).ok()
    } else {
        None
    }
}

fn pod_volumes(pod: &Pod) -> &[Volume] {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default()
}

impl VolumeManager {
    /// The size of a memory-backed volume's tmpfs, as upstream's
    /// `calculateEmptyDirMemorySize`: the node's allocatable memory, lowered to
    /// the pod's memory limit and then to the volume's `sizeLimit` when those
    /// are positive and smaller. `None` (no `size=` option) when nothing is known.
    fn tmpfs_size(
        &self,
        pod: &Pod,
        size_limit: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    ) -> Result<Option<u64>, String> {
        let mut size = self
            .node_allocatable
            .get("memory")
            .map(Quantity::value)
            .filter(|v| *v > 0);
        let mut lower = |candidate: i64| {
            if candidate > 0 && size.is_none_or(|s| candidate <= s) {
                size = Some(candidate);
            }
        };
        if let Some(limit) = pod_memory_limit(pod) {
            lower(limit);
        }
        if let Some(limit) = size_limit {
            let q = Quantity::parse(&limit.0).map_err(|e| format!("invalid sizeLimit: {e}"))?;
            lower(q.value());
        }
        Ok(size.and_then(|s| u64::try_from(s).ok()))
    }
}

/// The pod's memory limit when every container declares one: the larger of
/// the app containers' sum and the largest init container (the pod cgroup's
/// limit upstream).
fn pod_memory_limit(pod: &Pod) -> Option<i64> {
    let spec = pod.spec.as_ref()?;
    let limit = |c: &k8s_openapi::api::core::v1::Container| {
        let q = c.resources.as_ref()?.limits.as_ref()?.get("memory")?;
        Quantity::parse(&q.0)
            .ok()
            .map(|q| q.value())
            .filter(|v| *v > 0)
    };
    let mut sum: i64 = 0;
    for c in &spec.containers {
        sum = sum.saturating_add(limit(c)?);
    }
    let mut init_max: i64 = 0;
    for c in spec.init_containers.iter().flatten() {
        init_max = init_max.max(limit(c)?);
    }
    Some(sum.max(init_max))
}

/// The message for a volume type this kubelet has no plugin for.
fn unsupported(volume: &Volume) -> String {
    if volume.persistent_volume_claim.is_some() || volume.ephemeral.is_some() {
        "persistent volumes are not supported by this kubelet yet".to_string()
    } else {
        "no volume plugin matched".to_string()
    }
}

#[cfg(test)]
mod tests;
