//! The part of an OCI runtime spec (`config.json`) that the runtime writes
//! (see `container::spec`), read back by the supervisor and turned into
//! what `skiff_sys::container` starts.

use std::path::Path;

use serde::Deserialize;
use skiff_sys::NamespaceKind;
use skiff_sys::cgroups::ResourceConfig;
use skiff_sys::container::{ContainerSpec, MountSpec, ProcessSpec};

use crate::container::spec::capability_number;

/// `config.json`.
#[derive(Debug, Deserialize)]
pub struct Spec {
    /// The container's process.
    pub process: Process,
    /// The root filesystem.
    pub root: Root,
    /// Mounts, in order.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// Namespaces, cgroup, resources, masked paths.
    pub linux: Linux,
}

/// `process`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    /// Run on a terminal.
    #[serde(default)]
    pub terminal: bool,
    /// User and groups.
    #[serde(default)]
    pub user: User,
    /// Program and arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment.
    #[serde(default)]
    pub env: Vec<String>,
    /// Working directory.
    #[serde(default)]
    pub cwd: String,
    /// Capability sets.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Resource limits.
    #[serde(default)]
    pub rlimits: Vec<Rlimit>,
    /// `no_new_privs`.
    #[serde(default)]
    pub no_new_privileges: bool,
    /// The init's `oom_score_adj`.
    #[serde(default)]
    pub oom_score_adj: Option<i64>,
}

/// `process.user`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// UID.
    #[serde(default)]
    pub uid: u32,
    /// GID.
    #[serde(default)]
    pub gid: u32,
    /// Supplementary groups.
    #[serde(default)]
    pub additional_gids: Vec<u32>,
}

/// `process.capabilities` (names).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Capabilities {
    /// Bounding set.
    #[serde(default)]
    pub bounding: Vec<String>,
    /// Effective set.
    #[serde(default)]
    pub effective: Vec<String>,
    /// Permitted set.
    #[serde(default)]
    pub permitted: Vec<String>,
}

/// One of `process.rlimits`.
#[derive(Debug, Clone, Deserialize)]
pub struct Rlimit {
    /// `RLIMIT_NOFILE`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Hard limit.
    pub hard: u64,
    /// Soft limit.
    pub soft: u64,
}

/// `root`.
#[derive(Debug, Deserialize)]
pub struct Root {
    /// Relative to the bundle, or absolute.
    pub path: String,
    /// Read-only root.
    #[serde(default)]
    pub readonly: bool,
}

/// One of `mounts`.
#[derive(Debug, Deserialize)]
pub struct Mount {
    /// Path in the container.
    pub destination: String,
    /// Filesystem type.
    #[serde(default, rename = "type")]
    pub kind: String,
    /// Source.
    #[serde(default)]
    pub source: String,
    /// Options.
    #[serde(default)]
    pub options: Vec<String>,
}

/// `linux`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Linux {
    /// Namespaces.
    #[serde(default)]
    pub namespaces: Vec<Namespace>,
    /// The container's cgroup.
    #[serde(default)]
    pub cgroups_path: String,
    /// Limits.
    #[serde(default)]
    pub resources: Resources,
    /// Masked paths.
    #[serde(default)]
    pub masked_paths: Vec<String>,
    /// Read-only paths.
    #[serde(default)]
    pub readonly_paths: Vec<String>,
}

/// One of `linux.namespaces`.
#[derive(Debug, Deserialize)]
pub struct Namespace {
    /// `pid`, `mount`, `network`, `ipc`, `uts`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Join this one instead of making a new one.
    #[serde(default)]
    pub path: Option<String>,
}

/// `linux.resources`.
#[derive(Debug, Default, Deserialize)]
pub struct Resources {
    /// CPU.
    #[serde(default)]
    pub cpu: Option<Cpu>,
    /// Memory.
    #[serde(default)]
    pub memory: Option<Memory>,
}

/// `linux.resources.cpu`.
#[derive(Debug, Default, Deserialize)]
pub struct Cpu {
    /// Shares.
    pub shares: Option<u64>,
    /// CFS quota (µs).
    pub quota: Option<i64>,
    /// CFS period (µs).
    pub period: Option<u64>,
    /// cpuset CPUs.
    pub cpus: Option<String>,
    /// cpuset memory nodes.
    pub mems: Option<String>,
}

/// `linux.resources.memory`.
#[derive(Debug, Default, Deserialize)]
pub struct Memory {
    /// Limit in bytes.
    pub limit: Option<i64>,
    /// Memory plus swap, in bytes.
    pub swap: Option<i64>,
}

/// Reads `config.json` from `bundle`.
pub fn load(bundle: &Path) -> Result<Spec, String> {
    let path = bundle.join("config.json");
    let data = std::fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
    serde_json::from_slice(&data).map_err(|e| format!("parse {}: {e}", path.display()))
}

impl Process {
    /// As `skiff_sys` runs it.
    pub fn to_spec(&self) -> Result<ProcessSpec, String> {
        let mut capabilities = 0u64;
        let c = &self.capabilities;
        for name in c.bounding.iter().chain(&c.effective).chain(&c.permitted) {
            let n =
                capability_number(name).ok_or_else(|| format!("unknown capability {name:?}"))?;
            capabilities |= 1u64 << n;
        }
        let mut nofile = None;
        for r in &self.rlimits {
            match r.kind.as_str() {
                "RLIMIT_NOFILE" if r.soft == r.hard => nofile = Some(r.hard),
                other => {
                    return Err(format!(
                        "unsupported rlimit {other} ({}/{})",
                        r.soft, r.hard
                    ));
                }
            }
        }
        Ok(ProcessSpec {
            args: self.args.clone(),
            env: self.env.clone(),
            cwd: self.cwd.clone(),
            uid: self.user.uid,
            gid: self.user.gid,
            additional_gids: self.user.additional_gids.clone(),
            capabilities,
            nofile,
            no_new_privileges: self.no_new_privileges,
        })
    }
}

impl Spec {
    /// The container as `skiff_sys` starts it, its rootfs under `bundle`.
    pub fn to_container(&self, bundle: &Path) -> Result<ContainerSpec, String> {
        let mut join = Vec::new();
        for ns in &self.linux.namespaces {
            let kind = match ns.kind.as_str() {
                // Always new.
                "pid" | "mount" if ns.path.is_none() => continue,
                "network" => NamespaceKind::Net,
                "ipc" => NamespaceKind::Ipc,
                "uts" => NamespaceKind::Uts,
                other => {
                    return Err(format!(
                        "unsupported namespace {other:?}{}",
                        ns.path
                            .as_deref()
                            .map(|p| format!(" at {p}"))
                            .unwrap_or_default()
                    ));
                }
            };
            let path = ns
                .path
                .as_ref()
                .ok_or_else(|| format!("a new {} namespace is not supported", ns.kind))?;
            join.push((kind, path.into()));
        }
        Ok(ContainerSpec {
            rootfs: bundle.join(&self.root.path),
            readonly_root: self.root.readonly,
            join,
            mounts: self
                .mounts
                .iter()
                .map(|m| MountSpec {
                    destination: m.destination.clone(),
                    fs_type: m.kind.clone(),
                    source: m.source.clone(),
                    options: skiff_sys::container::options::parse(&m.options),
                })
                .collect(),
            masked_paths: self.linux.masked_paths.clone(),
            readonly_paths: self.linux.readonly_paths.clone(),
            cgroups_path: self.linux.cgroups_path.clone(),
            process: self.process.to_spec()?,
        })
    }

    /// The cgroup limits of `linux.resources`.
    pub fn resource_config(&self) -> ResourceConfig {
        let cpu = self.linux.resources.cpu.as_ref();
        ResourceConfig {
            cpu_shares: cpu.and_then(|c| c.shares).filter(|s| *s > 0),
            cpu_quota: cpu.and_then(|c| c.quota).filter(|q| *q != 0),
            cpu_period: cpu.and_then(|c| c.period).filter(|p| *p > 0),
            memory_limit: self
                .linux
                .resources
                .memory
                .as_ref()
                .and_then(|m| m.limit)
                .filter(|m| *m > 0),
            pids_limit: None,
        }
    }

    /// Applies what [`ResourceConfig`] does not carry: cpuset CPUs and
    /// memory nodes, and the v1 memory+swap limit.
    pub fn apply_other_resources(&self) -> Result<(), String> {
        let path = &self.linux.cgroups_path;
        let unified = skiff_sys::cgroups::cgroup_mode() == skiff_sys::cgroups::CgroupMode::Unified;
        let dir = |controller: &str| {
            let root = if unified {
                Path::new("/sys/fs/cgroup").to_path_buf()
            } else {
                Path::new("/sys/fs/cgroup").join(controller)
            };
            skiff_sys::cgroups::cgroup_dir(&root, path)
        };
        let write = |controller: &str, file: &str, value: &str| {
            let file = dir(controller).join(file);
            std::fs::write(&file, value).map_err(|e| format!("{}: {e}", file.display()))
        };
        if let Some(cpu) = &self.linux.resources.cpu {
            if let Some(cpus) = cpu.cpus.as_deref().filter(|c| !c.is_empty()) {
                write("cpuset", "cpuset.cpus", cpus)?;
            }
            if let Some(mems) = cpu.mems.as_deref().filter(|m| !m.is_empty()) {
                write("cpuset", "cpuset.mems", mems)?;
            }
        }
        let swap = self.linux.resources.memory.as_ref().and_then(|m| m.swap);
        if let Some(swap) = swap.filter(|s| *s > 0)
            && !unified
            && dir("memory").join("memory.memsw.limit_in_bytes").exists()
        {
            write("memory", "memory.memsw.limit_in_bytes", &swap.to_string())?;
        }
        Ok(())
    }
}
