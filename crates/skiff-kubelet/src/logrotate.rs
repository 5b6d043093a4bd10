//! The container log manager (upstream's `pkg/kubelet/logs`): every
//! [`LOG_MONITOR_PERIOD`] it looks at each running container's CRI log and,
//! once the log reaches the policy's maximum size, rotates it: stale
//! temporary and already-compressed leftovers go, the oldest rotated files
//! go until at most `max_files` remain after this rotation, older rotated
//! files are gzipped, and the live log is renamed to
//! `<log>.<YYYYMMDD-HHMMSS>` before the runtime is asked to reopen it
//! (`ReopenContainerLog`). If the reopen fails, the rename is undone so the
//! next round tries again.
//!
//! [`plan_rotation`] decides from file names alone; [`rotate_log`] carries
//! the plan out; [`ContainerLogManager`] drives it from CRI.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_cri::v1 as api;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::cri::Cri;

/// How often container logs are checked.
pub const LOG_MONITOR_PERIOD: Duration = Duration::from_secs(10);
/// `--container-log-max-size` default (10Mi).
pub const DEFAULT_CONTAINER_LOG_MAX_SIZE: &str = "10Mi";
/// `--container-log-max-files` default.
pub const DEFAULT_CONTAINER_LOG_MAX_FILES: usize = 5;

/// Suffix of compressed rotated logs.
const COMPRESS_SUFFIX: &str = ".gz";
/// Suffix of files being compressed.
const TMP_SUFFIX: &str = ".tmp";

/// When and how far logs are rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRotatePolicy {
    /// Rotate once the live log has at least this many bytes.
    pub max_size: u64,
    /// Files kept per container, the live log included (at least 2).
    pub max_files: usize,
}

/// Parses `--container-log-max-size`: a quantity (`10Mi`). `None` means
/// rotation is off (upstream: a negative size).
pub fn parse_max_size(value: &str) -> Result<Option<u64>, String> {
    let q = skiff_api::quantity::Quantity::parse(value)
        .map_err(|e| format!("failed to parse container log max size {value:?}: {e}"))?;
    if q.is_negative() {
        return Ok(None);
    }
    match u64::try_from(q.value()) {
        Ok(0) | Err(_) => Err(format!(
            "invalid configuration: containerLogMaxSize {value:?} must be a positive quantity"
        )),
        Ok(n) => Ok(Some(n)),
    }
}

/// Checks `--container-log-max-files` as upstream's validation does.
pub fn validate_max_files(max_files: usize) -> Result<usize, String> {
    if max_files <= 1 {
        return Err("invalid configuration: containerLogMaxFiles must be greater than 1".into());
    }
    Ok(max_files)
}

/// What one rotation of a log does, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationPlan {
    /// Files to delete: leftovers of interrupted rotations, then the oldest
    /// rotated files beyond the limit.
    pub remove: Vec<PathBuf>,
    /// Rotated files to gzip (each to `<file>.gz` via `<file>.tmp`).
    pub compress: Vec<PathBuf>,
    /// The new name of the live log.
    pub rotated: PathBuf,
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn has_suffix(path: &Path, suffix: &str) -> bool {
    path.as_os_str()
        .as_encoded_bytes()
        .ends_with(suffix.as_bytes())
}

/// Plans the rotation of `log` given `siblings`, the existing `<log>.*`
/// files, at time `now`.
pub fn plan_rotation(
    log: &Path,
    siblings: &[PathBuf],
    max_files: usize,
    now: OffsetDateTime,
) -> RotationPlan {
    // Temporary files are half-done compressions; an uncompressed file
    // whose `.gz` exists was compressed but not yet deleted.
    let (mut in_use, mut remove): (Vec<PathBuf>, Vec<PathBuf>) =
        siblings.iter().cloned().partition(|f| {
            !has_suffix(f, TMP_SUFFIX)
                && (has_suffix(f, COMPRESS_SUFFIX)
                    || !siblings.contains(&with_suffix(f, COMPRESS_SUFFIX)))
        });
    remove.sort();
    // Oldest first: the timestamp suffix sorts by time. The live log and the
    // one rotated now take two of the `max_files` places.
    in_use.sort();
    let keep = max_files.saturating_sub(2);
    let excess = in_use.len().saturating_sub(keep);
    remove.extend(in_use.drain(..excess));
    let compress = in_use
        .into_iter()
        .filter(|f| !has_suffix(f, COMPRESS_SUFFIX))
        .collect();
    // Upstream's suffix format `20060102-150405`, in UTC.
    let t = now.to_offset(time::UtcOffset::UTC);
    let stamp = format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    RotationPlan {
        remove,
        compress,
        rotated: with_suffix(log, &format!(".{stamp}")),
    }
}

/// Why a rotation failed.
#[derive(Debug, thiserror::Error)]
pub enum LogRotateError {
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// The operation.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The runtime did not reopen the log (the rename was undone).
    #[error("failed to reopen container log {id:?}: {status}")]
    Reopen {
        /// The container.
        id: String,
        /// The runtime's answer.
        status: tonic::Status,
    },
    /// The runtime could not say where the container's log is.
    #[error("failed to get container status {id:?}: {status}")]
    Status {
        /// The container.
        id: String,
        /// The runtime's answer.
        status: tonic::Status,
    },
    /// The blocking part of the rotation did not finish.
    #[error("log rotation task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

fn io<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> LogRotateError + 'a {
    move |source| LogRotateError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// The existing `<log>.*` files.
fn list_siblings(log: &Path) -> Result<Vec<PathBuf>, LogRotateError> {
    let (Some(dir), Some(name)) = (log.parent(), log.file_name()) else {
        return Ok(Vec::new());
    };
    let mut prefix = name.to_owned();
    prefix.push(".");
    let prefix = prefix.as_encoded_bytes().to_vec();
    let entries = std::fs::read_dir(dir).map_err(io("failed to list", dir))?;
    Ok(entries
        .flatten()
        .filter(|e| e.file_name().as_encoded_bytes().starts_with(&prefix))
        .map(|e| e.path())
        .collect())
}

/// Gzips `file` to `<file>.gz` through `<file>.tmp`, then deletes `file`.
fn compress(file: &Path) -> Result<(), LogRotateError> {
    let tmp = with_suffix(file, TMP_SUFFIX);
    let result = (|| {
        let mut input = std::fs::File::open(file).map_err(io("failed to open log", file))?;
        let out = std::fs::File::create(&tmp).map_err(io("failed to create", &tmp))?;
        let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
        std::io::copy(&mut input, &mut gz).map_err(io("failed to compress", file))?;
        gz.finish()
            .and_then(|mut f| f.flush())
            .map_err(io("failed to compress", file))?;
        let gz_path = with_suffix(file, COMPRESS_SUFFIX);
        std::fs::rename(&tmp, &gz_path).map_err(io("failed to rename", &tmp))?;
        std::fs::remove_file(file).map_err(io("failed to remove log after compress", file))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The blocking half of a rotation: list, delete and compress; returns the
/// name the live log gets.
fn prepare_rotation(
    log: &Path,
    max_files: usize,
    now: OffsetDateTime,
) -> Result<PathBuf, LogRotateError> {
    let plan = plan_rotation(log, &list_siblings(log)?, max_files, now);
    for f in &plan.remove {
        match std::fs::remove_file(f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("failed to remove old log", f)(e)),
        }
    }
    for f in &plan.compress {
        compress(f)?;
    }
    Ok(plan.rotated)
}

/// Rotates `log` now: prepares the rotated files, renames the live log and
/// awaits `reopen` (the runtime's `ReopenContainerLog` for container `id`);
/// if that fails, the live log gets its name back.
pub async fn rotate_log<F>(
    id: &str,
    log: &Path,
    max_files: usize,
    now: OffsetDateTime,
    reopen: F,
) -> Result<(), LogRotateError>
where
    F: Future<Output = Result<(), tonic::Status>>,
{
    let path = log.to_owned();
    let rotated =
        tokio::task::spawn_blocking(move || prepare_rotation(&path, max_files, now)).await??;
    std::fs::rename(log, &rotated).map_err(io("failed to rotate log", log))?;
    if let Err(status) = reopen.await {
        if let Err(e) = std::fs::rename(&rotated, log) {
            // The original log keeps its rotated name; nothing is lost but
            // the next round starts a fresh file.
            tracing::error!(error = %e, rotated = %rotated.display(), log = %log.display(), container = id, "cannot rename rotated log back");
        }
        return Err(LogRotateError::Reopen {
            id: id.to_owned(),
            status,
        });
    }
    Ok(())
}

/// The kubelet's container log manager.
#[derive(Debug, Clone)]
pub struct ContainerLogManager {
    cri: Cri,
    policy: LogRotatePolicy,
}

impl ContainerLogManager {
    /// A manager rotating the logs of `cri`'s containers by `policy`.
    pub fn new(cri: Cri, policy: LogRotatePolicy) -> Self {
        Self { cri, policy }
    }

    /// Checks logs every [`LOG_MONITOR_PERIOD`] until `shutdown`.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(
            max_size = self.policy.max_size,
            max_files = self.policy.max_files,
            "starting container log rotation"
        );
        let mut tick = tokio::time::interval(LOG_MONITOR_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // (The borrow `wait_for` returns is not Send: drop it inside.)
                _ = async { shutdown.wait_for(|s| *s).await.map(|_| ()) } => return,
                _ = tick.tick() => {
                    if let Err(e) = self.rotate_logs().await {
                        tracing::warn!(error = %e.message(), "failed to rotate container logs");
                    }
                }
            }
        }
    }

    /// One pass over the running containers; a failure on one container is
    /// logged and the others still get their turn.
    pub async fn rotate_logs(&mut self) -> Result<(), tonic::Status> {
        let containers = self
            .cri
            .runtime
            .list_containers(api::ListContainersRequest { filter: None })
            .await?
            .into_inner()
            .containers;
        for c in containers {
            // Stopped containers write nothing more: no empty live log for them.
            if c.state != api::ContainerState::ContainerRunning as i32 {
                continue;
            }
            if let Err(e) = self.rotate_container(&c.id).await {
                tracing::warn!(container = %c.id, error = %e, "failed to rotate container log");
            }
        }
        Ok(())
    }

    /// Rotates container `id`'s log if it reached the maximum size.
    pub async fn rotate_container(&mut self, id: &str) -> Result<(), LogRotateError> {
        let status = self
            .cri
            .runtime
            .container_status(api::ContainerStatusRequest {
                container_id: id.to_owned(),
                verbose: false,
            })
            .await
            .map_err(|status| LogRotateError::Status {
                id: id.to_owned(),
                status,
            })?
            .into_inner()
            .status;
        let Some(path) = status.map(|s| s.log_path).filter(|p| !p.is_empty()) else {
            return Ok(());
        };
        let path = PathBuf::from(path);
        let size = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Lost between a rename and a reopen (e.g. a kubelet restart):
                // have the runtime create it again.
                self.reopen(id).await?;
                std::fs::metadata(&path)
                    .map_err(io("failed to stat container log after reopen", &path))?
                    .len()
            }
            Err(e) => return Err(io("failed to stat container log", &path)(e)),
        };
        if size < self.policy.max_size {
            return Ok(());
        }
        let now = OffsetDateTime::now_utc();
        let mut cri = self.cri.clone();
        let reopen = async move {
            cri.runtime
                .reopen_container_log(api::ReopenContainerLogRequest {
                    container_id: id.to_owned(),
                })
                .await
                .map(|_| ())
        };
        rotate_log(id, &path, self.policy.max_files, now, reopen).await?;
        tracing::debug!(container = id, log = %path.display(), size, "rotated container log");
        Ok(())
    }

    async fn reopen(&mut self, id: &str) -> Result<(), LogRotateError> {
        self.cri
            .runtime
            .reopen_container_log(api::ReopenContainerLogRequest {
                container_id: id.to_owned(),
            })
            .await
            .map(|_| ())
            .map_err(|status| LogRotateError::Reopen {
                id: id.to_owned(),
                status,
            })
    }
}

#[cfg(test)]
#[path = "logrotate_tests.rs"]
mod tests;
