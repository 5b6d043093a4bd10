//! Containers: the persisted record, the OCI spec, and how the observed state
//! follows from the record plus the supervisor's exit file.

pub mod spec;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::shim::ExitRecord;

/// A bind mount as the CRI reported it (kept for `ContainerStatus`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MountRecord {
    /// Path in the container.
    pub container_path: String,
    /// Path on the host.
    pub host_path: String,
    /// Read-only.
    pub readonly: bool,
    /// Mounts made in the container show on the host (CRI
    /// `PROPAGATION_BIDIRECTIONAL`).
    #[serde(default)]
    pub bidirectional: bool,
}

/// Linux resources as last applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourcesRecord {
    /// CFS period (µs).
    pub cpu_period: i64,
    /// CFS quota (µs).
    pub cpu_quota: i64,
    /// CPU shares.
    pub cpu_shares: i64,
    /// Memory limit in bytes.
    pub memory_limit_in_bytes: i64,
    /// OOM score adjustment (never negative).
    pub oom_score_adj: i64,
}

/// What the runtime persists about a container: `containers/<id>/container.json`
/// under the runtime's root once it has started (beside the overlay's `upper`
/// and `work` and the supervisor's `exit.json`), under the run dir before.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// Container ID.
    pub id: String,
    /// Its sandbox.
    pub sandbox_id: String,
    /// Container name.
    pub name: String,
    /// Attempt number.
    pub attempt: u32,
    /// The image as requested.
    pub image: String,
    /// The resolved image reference (digest).
    pub image_ref: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Absolute log path, if any.
    pub log_path: String,
    /// Mounts.
    pub mounts: Vec<MountRecord>,
    /// Resources.
    pub resources: ResourcesRecord,
    /// The container's cgroup (absolute, the same in every hierarchy).
    pub cgroups_path: String,
    /// Creation time, Unix nanoseconds.
    pub created_at: i64,
    /// Start time, Unix nanoseconds (0 until started).
    pub started_at: i64,
    /// The init PID once started.
    pub pid: Option<i32>,
    /// The init's start time in clock ticks (tells it from a reused PID).
    pub start_ticks: u64,
    /// The supervisor's PID and start ticks: while it lives, the exit is not
    /// yet recorded even if the init is gone.
    #[serde(default)]
    pub shim: Option<(i32, u64)>,
    /// The signal that asks the container to stop (the image's StopSignal, else SIGTERM).
    #[serde(default = "default_stop_signal")]
    pub stop_signal: i32,
    /// Set when the start failed: the message, reported as the exit reason's message.
    pub start_error: Option<String>,
    /// The container's stdio: kept open stdin, once-only stdin, a terminal
    /// (what attach can reach).
    #[serde(default)]
    pub stdio: StdioRecord,
    /// Its OCI bundle (`config.json`, the rootfs mount point, the
    /// supervisor's log and control socket) live under the run dir, a tmpfs, rather than beside this record: they
    /// are rebuilt for every start and die with the host. Absent from
    /// records of older agents, whose containers keep all of it here.
    #[serde(default)]
    pub bundle_in_run_dir: bool,
    /// The boot of the host it was started in: in another boot its
    /// processes are gone, whatever now runs under their PIDs. Absent from
    /// records of older agents and of containers not started.
    #[serde(default)]
    pub boot_id: Option<String>,
}

impl ContainerRecord {
    /// Whether it was started in another boot of the host than
    /// `current_boot` (unknown for records without a boot id).
    pub fn started_in_other_boot(&self, current_boot: Option<&str>) -> bool {
        matches!(
            (self.boot_id.as_deref(), current_boot),
            (Some(started), Some(now)) if started != now
        )
    }
}

/// A container's stdio choices (CRI `ContainerConfig.stdin`/`stdin_once`/`tty`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StdioRecord {
    /// Stdin stays open for attach.
    pub stdin: bool,
    /// Stdin closes when the first attached client detaches.
    pub stdin_once: bool,
    /// A terminal.
    pub tty: bool,
}

fn default_stop_signal() -> i32 {
    15
}

/// The container's state as the CRI reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// Created, never started.
    Created,
    /// The init process runs.
    Running,
    /// Ended.
    Exited {
        /// Exit code.
        exit_code: i32,
        /// Unix nanoseconds.
        finished_at: i64,
        /// `Completed`, `Error`, `OOMKilled`, `StartError` or `Unknown`.
        reason: &'static str,
        /// Details, if any.
        message: String,
    },
}

/// The CRI exit reason for an exit record (kubelet's vocabulary).
pub fn exit_reason(exit: &ExitRecord) -> &'static str {
    if exit.oom_killed {
        "OOMKilled"
    } else if exit.exit_code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

/// The observed state from the record, the exit file's contents, and whether
/// the recorded init process (or, failing that, its supervisor, which is about
/// to record the exit) is still alive.
pub fn observe(record: &ContainerRecord, exit: Option<&ExitRecord>, init_alive: bool) -> Observed {
    if let Some(msg) = &record.start_error {
        return Observed::Exited {
            exit_code: 128,
            finished_at: record.started_at.max(record.created_at),
            reason: "StartError",
            message: msg.clone(),
        };
    }
    if let Some(exit) = exit {
        return Observed::Exited {
            exit_code: exit.exit_code,
            finished_at: exit.finished_at,
            reason: exit_reason(exit),
            message: String::new(),
        };
    }
    match record.pid {
        None => Observed::Created,
        Some(_) if init_alive => Observed::Running,
        // The supervisor died without a record: the exit code is lost.
        Some(_) => Observed::Exited {
            exit_code: 255,
            finished_at: record.started_at,
            reason: "Unknown",
            message: "container supervisor exited without recording the exit status".into(),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn record(pid: Option<i32>, start_error: Option<&str>) -> ContainerRecord {
        ContainerRecord {
            id: "c".into(),
            sandbox_id: "s".into(),
            name: "n".into(),
            attempt: 0,
            image: "busybox".into(),
            image_ref: "sha256:x".into(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            log_path: String::new(),
            mounts: vec![],
            resources: ResourcesRecord::default(),
            cgroups_path: "/skiff/s/c".into(),
            created_at: 10,
            started_at: 20,
            pid,
            start_ticks: 0,
            shim: None,
            stop_signal: 15,
            start_error: start_error.map(str::to_owned),
            stdio: StdioRecord::default(),
            bundle_in_run_dir: true,
            boot_id: None,
        }
    }

    fn exit(code: i32, oom: bool) -> ExitRecord {
        ExitRecord {
            exit_code: code,
            signal: None,
            finished_at: 30,
            oom_killed: oom,
        }
    }

    #[test]
    fn started_in_other_boot_only_when_both_boots_are_known() {
        let started = |boot: Option<&str>| ContainerRecord {
            boot_id: boot.map(str::to_owned),
            ..record(Some(5), None)
        };
        assert!(started(Some("a")).started_in_other_boot(Some("b")));
        assert!(!started(Some("a")).started_in_other_boot(Some("a")));
        assert!(!started(None).started_in_other_boot(Some("b")));
        assert!(!started(Some("a")).started_in_other_boot(None));
    }

    #[test]
    fn observed_states() {
        let cases = [
            (record(None, None), None, false, "created"),
            (record(Some(5), None), None, true, "running"),
            (
                record(Some(5), None),
                Some(exit(0, false)),
                false,
                "Completed",
            ),
            (record(Some(5), None), Some(exit(3, false)), false, "Error"),
            (
                record(Some(5), None),
                Some(exit(137, true)),
                false,
                "OOMKilled",
            ),
            (record(Some(5), None), None, false, "Unknown"),
            (record(None, Some("boom")), None, false, "StartError"),
        ];
        for (rec, ex, alive, want) in cases {
            let got = match observe(&rec, ex.as_ref(), alive) {
                Observed::Created => "created",
                Observed::Running => "running",
                Observed::Exited { reason, .. } => reason,
            };
            assert_eq!(got, want);
        }
        match observe(&record(Some(5), None), Some(&exit(3, false)), false) {
            Observed::Exited {
                exit_code,
                finished_at,
                ..
            } => {
                assert_eq!((exit_code, finished_at), (3, 30));
            }
            other => panic!("{other:?}"),
        }
    }
}
