//! Where the runtime's records live and how they are written: durably on
//! the disk when they must survive a restart of the host, atomically on the
//! run dir's tmpfs when they are needed only while the host is up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{RuntimeConfig, RuntimeError, internal};
use crate::container::ContainerRecord;
use crate::shim::{write_atomic, write_durable};

/// A record as JSON.
pub(super) fn encode<T: Serialize>(path: &Path, value: &T) -> Result<Vec<u8>, RuntimeError> {
    serde_json::to_vec_pretty(value)
        .map_err(|e| RuntimeError::Internal(format!("encode {}: {e}", path.display())))
}

/// Writes a record that must survive a restart of the host.
pub(super) fn save<T: Serialize>(path: &Path, value: &T) -> Result<(), RuntimeError> {
    let data = encode(path, value)?;
    write_durable(path, &data).map_err(internal("persist state"))
}

/// [`save`] from async code: the write and its fsyncs wait for the disk on a
/// blocking thread, not on one of the few async workers that also serve the
/// API and every other pod.
pub(super) async fn save_blocking<T: Serialize>(
    path: PathBuf,
    value: &T,
) -> Result<(), RuntimeError> {
    let data = encode(&path, value)?;
    tokio::task::spawn_blocking(move || write_durable(&path, &data))
        .await
        .map_err(|e| RuntimeError::Internal(e.to_string()))?
        .map_err(internal("persist state"))
}

/// The file name of a container's record.
pub(super) const CONTAINER_RECORD: &str = "container.json";

/// Where a container's record goes.
#[derive(Debug, Clone)]
pub(super) struct RecordPaths {
    /// On the disk, beside the writable layer.
    pub(super) disk: PathBuf,
    /// Beside the bundle on the run dir (containers with their bundle there).
    pub(super) run: Option<PathBuf>,
}

/// Whether the container has never been started.
fn not_started(record: &ContainerRecord) -> bool {
    record.started_at == 0 && record.pid.is_none() && record.start_error.is_none()
}

/// Writes `record` where it belongs. A container that has not started keeps
/// its record beside its bundle on the run dir: an agent that restarts
/// before StartContainer still finds it there, and after a restart of the
/// host it could not start anyway (its bundle and rootfs mount died with the
/// host), so creating it costs no file and no fsync on the disk. From its
/// start on (that it ran, how it ended) the record is on the disk, once per
/// change.
pub(super) fn store_record(
    paths: &RecordPaths,
    record: &ContainerRecord,
) -> Result<(), RuntimeError> {
    let Some(run) = &paths.run else {
        return save(&paths.disk, record);
    };
    // (An older agent kept records of created containers on the disk too.)
    if not_started(record) && !paths.disk.exists() {
        let data = encode(run, record)?;
        return write_atomic(run, &data).map_err(internal("persist state"));
    }
    save(&paths.disk, record)?;
    // The run dir's copy, if any, is the record before the start.
    if let Err(e) = std::fs::remove_file(run)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %run.display(), error = %e, "removing an outdated container record");
    }
    Ok(())
}

pub(super) fn load_all<T: DeserializeOwned>(dir: &Path, file: &str) -> Vec<T> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let path = e.path().join(file);
            let data = std::fs::read(&path).ok()?;
            match serde_json::from_slice(&data) {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "skipping unreadable state");
                    None
                }
            }
        })
        .collect()
}

/// Every container record: on the disk (started containers) and on the run
/// dir (containers not started yet); then removes what is left of containers
/// without one.
pub(super) fn load_containers(config: &RuntimeConfig) -> BTreeMap<String, ContainerRecord> {
    let mut containers: BTreeMap<String, ContainerRecord> =
        load_all::<ContainerRecord>(&config.root.join("containers"), CONTAINER_RECORD)
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
    // The disk's record is the newer one if the agent stopped between
    // writing it and removing the run dir's.
    for c in load_all::<ContainerRecord>(&config.run_dir.join("containers"), CONTAINER_RECORD) {
        containers.entry(c.id.clone()).or_insert(c);
    }
    remove_unrecorded_container_dirs(config, &containers);
    containers
}

/// Removes the disk dirs of containers that have no record: created but
/// never started before the host restarted (their record was on the run
/// dir), or the agent stopped inside CreateContainer. Only dirs holding just
/// what CreateContainer makes before the record (`upper`, `work`) and with
/// no bundle left on the run dir are removed.
fn remove_unrecorded_container_dirs(
    config: &RuntimeConfig,
    known: &BTreeMap<String, ContainerRecord>,
) {
    let dir = config.root.join("containers");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        let id = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if known.contains_key(&id) || config.run_dir.join("containers").join(&id).exists() {
            continue;
        }
        let Ok(inside) = std::fs::read_dir(&path) else {
            continue;
        };
        let only_layer = inside
            .flatten()
            .all(|e| matches!(e.file_name().to_str(), Some("upper" | "work")));
        if !only_layer {
            continue;
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                tracing::info!(container = %id, "removed the writable layer of a container without a record")
            }
            Err(e) => {
                tracing::warn!(container = %id, error = %e, "removing a container dir without a record")
            }
        }
    }
}
